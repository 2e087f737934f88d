-- Deployment creates: POST /agents/{agent_id}/deployments {"docker_image": "img:1"} (server ids).
-- wrk ... -s creates.lua URL -- AGENT_ID
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = "/agents/" .. args[1] .. "/deployments"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"docker_image": "img:1"}'
end
