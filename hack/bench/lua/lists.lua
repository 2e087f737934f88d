-- Lists of 50: GET /agents/{agent_id}/deployments?limit=50 (the agent has more than 50).
-- wrk ... -s lists.lua URL -- AGENT_ID
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "GET"
  wrk.path = "/agents/" .. args[1] .. "/deployments?limit=50"
end
