-- Promotes alternating between two Ready deployments of one agent:
-- POST /agents/{id}/deployments/{did}/promote, did = A, B, A, B, ... per connection-thread.
-- wrk ... -s promotes.lua URL -- AGENT_ID DEPLOYMENT_A DEPLOYMENT_B
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local reqs
local counter = 0

function init(args)
  local headers = { ["Content-Type"] = "application/json" }
  reqs = {}
  for i = 2, 3 do
    table.insert(reqs, wrk.format("POST", "/agents/" .. args[1] .. "/deployments/" .. args[i] .. "/promote",
      headers, "{}"))
  end
  -- Threads start on different targets so they do not all move in step.
  counter = tid or 0
end

function request()
  counter = counter + 1
  return reqs[counter % 2 + 1]
end
