#!/usr/bin/env bash
# Chaos run: starts a throwaway PostgreSQL cluster, applies the migrations with `cutover migrate`, and
# runs hack/chaos.py, which starts three `cutover serve` replicas on that database (--gc-interval 1s
# --deletion-grace 2s --retain-inactive 5 --retain-previous-production 2 --probe http
# --progress-deadline 30s) and three healthy stand-in pods, then for ~60 s runs concurrent clients
# (registrations of new deployment ids of five agents, promotions, rollbacks, deletes, restores and
# RPCs, spread over the replicas) while every ~5 s one replica, chosen at random and sometimes the
# leader, is killed with `kill -9` and restarted. Then, once every replica is up and the controllers
# are quiet, it checks every invariant of the records with psql, that no acknowledged write was lost,
# and that an RPC through the replica that acknowledged a promotion never reaches the demoted
# deployment. Prints the counts of every operation by outcome and "N passed, M failed".
# Python standard library only; loopback only; bounded (timeout 180 s around the run).
#
#   CUTOVER_BIN=path/to/cutover hack/chaos.sh   use that binary (default .build/debug/cutover)
#   CHAOS_DURATION=60 CHAOS_KILL_EVERY=5 CHAOS_CLIENTS=8 CHAOS_SEED=N hack/chaos.sh   the knobs
#   CHAOS_KEEP=1 hack/chaos.sh                  keep the temp dir (replica logs) after the run
set -euo pipefail
cd "$(dirname "$0")/.."

PG_LOG_PREFIX=chaos.sh
# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

TMP=$(mktemp -d /tmp/cutover-chaos.XXXXXX)

# Every process chaos.py starts is listed in $TMP/pids; kill_listed_copies (hack/lib/serve.sh)
# is the safety net if the run is killed before it could stop them itself.
kill_replicas() { kill_listed_copies; }

cleanup() {
  end_run $? "${CHAOS_KEEP:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

private_binary "$TMP"
start_pg
migrate_pg "$TMP"

PSQL=psql
command -v psql >/dev/null || PSQL=$PG_BIN/psql
[[ $PSQL == psql || -x $PSQL ]] || { echo "chaos.sh: psql not found" >&2; exit 1; }

rc=0
started=$(date +%s)
CHAOS_BIN=$BIN CHAOS_DATABASE_URL=$PG_URL CHAOS_TMP=$TMP CHAOS_PSQL=$PSQL \
  timeout -k 10 180 python3 hack/chaos.py || rc=$?
if ((rc == 124 || rc == 137)); then
  echo "chaos.sh: the run did not finish within 180 s" >&2
fi
echo "chaos.sh: done in $(($(date +%s) - started)) s (exit $rc)"
exit "$rc"
