-- Shared by every wrk script of hack/bench/: per-thread counting of non-2xx responses and a
-- one-line machine-readable summary (prefixed "BENCHJSON ") printed by done(), which benchlib.run_wrk reads.
-- Each wrk thread has its own Lua state: setup() (main state) gives each one a thread id `tid`;
-- done() (main state) collects the per-thread counters with thread:get().

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- Per-thread globals (thread:get reads globals only).
non2xx = 0
statuses = {}   -- "409" -> count
samples = {}    -- "409" -> first response body seen with that status (truncated)

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    local k = tostring(status)
    statuses[k] = (statuses[k] or 0) + 1
    if samples[k] == nil then
      samples[k] = string.sub(body or "", 1, 300)
    end
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local function json_object(t, quote_values)
  local parts = {}
  for k, v in pairs(t) do
    local value = quote_values and json_string(tostring(v)) or tostring(v)
    table.insert(parts, json_string(tostring(k)) .. ":" .. value)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local total_non2xx, all_statuses, all_samples = 0, {}, {}
  for _, thread in ipairs(threads) do
    total_non2xx = total_non2xx + (thread:get("non2xx") or 0)
    for k, v in pairs(thread:get("statuses") or {}) do
      all_statuses[k] = (all_statuses[k] or 0) + v
    end
    for k, v in pairs(thread:get("samples") or {}) do
      if all_samples[k] == nil then all_samples[k] = v end
    end
  end
  local e = summary.errors
  io.write("BENCHJSON {",
    '"requests":', summary.requests, ",",
    '"duration_us":', summary.duration, ",",
    '"bytes":', summary.bytes, ",",
    '"errors":{"connect":', e.connect, ',"read":', e.read, ',"write":', e.write,
    ',"status":', e.status, ',"timeout":', e.timeout, "},",
    '"non2xx":', total_non2xx, ",",
    '"statuses":', json_object(all_statuses, false), ",",
    '"samples":', json_object(all_samples, true), ",",
    '"latency_us":{"min":', latency.min, ',"mean":', latency.mean, ',"max":', latency.max,
    ',"p50":', latency:percentile(50), ',"p90":', latency:percentile(90),
    ',"p99":', latency:percentile(99), ',"p999":', latency:percentile(99.9), "}",
    "}\n")
end
