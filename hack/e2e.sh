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
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

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
  end_run $? "${E2E_KEEP:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

private_binary "$TMP"
start_pg
migrate_pg "$TMP"

# The suite stops and restarts this cluster (E2E_PG_STOP / E2E_PG_START).
export_pg_ctl E2E

rc=0
E2E_BIN=$BIN E2E_DATABASE_URL=$PG_URL E2E_TMP=$TMP \
  timeout -k 10 300 python3 hack/e2e.py || rc=$?
if ((rc == 124 || rc == 137)); then
  echo "e2e.sh: the suite did not finish within 300 s" >&2
fi
exit "$rc"
