-- RPC routing: POST a small JSON-RPC body to PATH — the agent's /api directly, through
-- nginx, or Cutover's /agents/{id}/rpc — with non-2xx counting and the BENCHJSON summary from
-- common.lua.
-- wrk ... -s rpc.lua URL -- PATH
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = args[1] or "/api"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = '{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"content":"hi"}}'
end
