-- POST the same JSON BODY to PATH on every request: deployment creates, and the RPCs (event/send on
-- one task, task/create without a name, so each call makes a new task).
-- wrk ... -s post.lua URL -- PATH BODY
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "POST"
  wrk.path = args[1]
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = args[2] or "{}"
end
