#!/usr/bin/env bash
# Hostile-client test: starts `cutover serve` on a throwaway SQLite file, then on its own throwaway
# PostgreSQL cluster (the suite stops and restarts that cluster mid-run), and runs
# hack/hostile_test.py against each: malformed chunked bodies, HTTP/1.0, hostile JSON, trickling and
# refused probes, stalled and refused RPC upstreams, a database outage, and a last look at the
# server's liveness and log. Python standard library only; loopback only.
#
#   CUTOVER_BIN=path/to/cutover hack/hostile-test.sh   use that binary (default .build/debug/cutover)
#   HOSTILE_BACKENDS="sqlite" hack/hostile-test.sh     only these backends (default "sqlite postgres")
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

TMP=$(mktemp -d /tmp/cutover-hostile.XXXXXX)
SERVER_PID=""
SERVER_LOG=""

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

cleanup() {
  local rc=$?
  stop_server
  if [[ $rc -ne 0 && -n $SERVER_LOG && -s $SERVER_LOG ]]; then
    echo "hostile-test.sh: last lines of the server log ($SERVER_LOG):" >&2
    tail -n 40 "$SERVER_LOG" >&2
  fi
  stop_pg
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

BIN=${CUTOVER_BIN:-.build/debug/cutover}
if [[ ! -x $BIN ]]; then
  swift build --product cutover
fi
BIN=$(readlink -f "$BIN")

# start_server NAME DATABASE_URL: starts `cutover serve` on a free port and waits for /healthz.
start_server() {
  local name=$1 database_url=$2
  local port
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  SERVER_LOG="$TMP/server-$name.log"
  "$BIN" serve --database-url "$database_url" --listen "127.0.0.1:$port" --log-format json \
    --rpc-timeout 2s --progress-deadline 20s --probe http >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; ; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "hostile-test.sh: cutover serve ($name) exited before it was healthy" >&2
      exit 1
    fi
    [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
    if ((i >= 120)); then
      echo "hostile-test.sh: $URL/healthz not 200 after 60 s" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# run_suite NAME: runs hack/hostile_test.py against the running server, then stops the server. A
# failed suite prints the server log's tail and is remembered; the other backend still runs.
FAILED_BACKENDS=""
run_suite() {
  local name=$1 rc=0
  echo "hostile-test.sh: $name: $URL"
  CUTOVER_URL=$URL CUTOVER_PID=$SERVER_PID CUTOVER_LOG=$SERVER_LOG CUTOVER_BACKEND=$name CUTOVER_BIN=$BIN \
    timeout 300 python3 hack/hostile_test.py || rc=$?
  stop_server
  if ((rc != 0)); then
    FAILED_BACKENDS+=" $name"
    echo "hostile-test.sh: $name failed (exit $rc); last lines of the server log:" >&2
    tail -n 40 "$SERVER_LOG" >&2
  fi
  SERVER_LOG=""
}

for backend in ${HOSTILE_BACKENDS:-sqlite postgres}; do
  case $backend in
  sqlite)
    start_server sqlite "sqlite://$TMP/cutover.sqlite"
    run_suite sqlite
    ;;
  postgres)
    start_pg
    # The suite stops and restarts this cluster (HOSTILE_PG_STOP / HOSTILE_PG_START).
    export_pg_ctl HOSTILE
    start_server postgres "$PG_URL"
    run_suite postgres
    ;;
  *)
    echo "hostile-test.sh: unknown backend '$backend' (sqlite or postgres)" >&2
    exit 2
    ;;
  esac
done
if [[ -n $FAILED_BACKENDS ]]; then
  echo "hostile-test.sh: failed on:$FAILED_BACKENDS" >&2
  exit 1
fi
echo "hostile-test.sh: all backends passed"
