-- Deployment-scoped registrations: POST /agents/register, a new deployment_id on every request.
-- wrk ... -s registrations.lua URL -- RUN_TAG
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local prefix
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  -- Unique across threads (tid) and runs (RUN_TAG + a random part).
  math.randomseed(os.time() * 1000 + (tid or 0))
  prefix = string.format("b-%s-%d-%04x", args[1] or "run", tid or 0, math.random(0, 0xffff))
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name": "bench", "description": "b", "acp_url": "http://127.0.0.1:9/", "acp_type": "async", '
      .. '"registration_metadata": {"deployment_id": "%s-%d"}}', prefix, counter)
  return wrk.format("POST", "/agents/register", headers, body)
end
