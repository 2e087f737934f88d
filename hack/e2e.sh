#!/usr/bin/env bash
# Multi-replica end-to-end test: starts a throwaway PostgreSQL cluster, applies the migrations with
# `cutover migrate`, and runs hack/e2e.py, which starts three `cutover serve` replicas on that one
# database plus healthy stand-in agent pods, and checks leadership (exactly one leader), reconcile
# through a standby, promotion visibility across replicas, failover after `kill -9` of the leader,
# hand-over on SIGTERM, and a database outage (the suite stops and restarts the cluster mid-run).
# Python standard library only; loopback only; bounded (timeout 300 s around the suite).
#
#   CUTOVER_BIN=path/to/cutover hack/e2e.sh   use that binary (default .build/debug/cutover)
#   E2E_SKIP=check_sigterm_handover hack/e2e.sh   skip these checks (comma-separated, debugging)
#   E2E_KEEP=1 hack/e2e.sh                     keep the temp dir (replica logs) after the run
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh

TMP=$(mktemp -d /tmp/cutover-e2e.XXXXXX)

# Every replica e2e.py starts is listed in $TMP/pids ("pid" per line): a safety net if the suite
# is killed before it could stop them itself.
kill_replicas() {
  if [[ -f $TMP/pids ]]; then
    while read -r pid; do
      [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
    done <"$TMP/pids"
  fi
}

cleanup() {
  local rc=$?
  kill_replicas
  stop_pg
  if [[ -n ${E2E_KEEP:-} || $rc -ne 0 ]]; then
    echo "e2e.sh: replica logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SRC_BIN=${CUTOVER_BIN:-.build/debug/cutover}
if [[ ! -x $SRC_BIN ]]; then
  echo "e2e.sh: $SRC_BIN not found or not executable (build it, or set CUTOVER_BIN)" >&2
  exit 2
fi
# A private copy: a concurrent `swift build` cannot swap the binary under a running replica.
cp "$(readlink -f "$SRC_BIN")" "$TMP/cutover"
BIN=$TMP/cutover

start_pg
"$BIN" migrate --database-url "$PG_URL" >"$TMP/migrate.log" 2>&1 \
  || { echo "e2e.sh: cutover migrate failed:" >&2; cat "$TMP/migrate.log" >&2; exit 1; }
echo "e2e.sh: migrations applied"

# The suite stops and restarts this cluster: the same pg_ctl lines postgres.sh uses.
pg_as=""
if [[ $EUID -eq 0 ]]; then pg_as="runuser -u postgres --"; fi
export E2E_PG_STOP="cd $PGTMP && $pg_as $PG_BIN/pg_ctl -D $PGTMP/data -m fast -w -t 60 stop"
export E2E_PG_START="cd $PGTMP && $pg_as $PG_BIN/pg_ctl -D $PGTMP/data -l $PGTMP/log -w -t 60 start \
-o '-h 127.0.0.1 -p $PG_PORT -k $PGTMP -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off'"

rc=0
E2E_BIN=$BIN E2E_DATABASE_URL=$PG_URL E2E_TMP=$TMP \
  timeout -k 10 300 python3 hack/e2e.py || rc=$?
if ((rc == 124 || rc == 137)); then
  echo "e2e.sh: the suite did not finish within 300 s" >&2
fi
exit "$rc"
