-- GET PATH: the baselines (/healthz, /readyz) and the lists of 50.
-- wrk ... -s get.lua URL -- PATH
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "GET"
  wrk.path = args[1] or "/healthz"
end
