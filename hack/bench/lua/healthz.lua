-- Baseline, not a target workload: GET /healthz (HTTP stack only, no database), to show the
-- floor under the control requests' req/s and CPU. BENCH_WORKLOADS="... healthz" to include it.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  wrk.method = "GET"
  wrk.path = "/healthz"
end
