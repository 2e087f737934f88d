#!/usr/bin/env bash
# Client-command test: runs the built `cutover` binary as a CLI (agents, deployments, promote,
# rollback, delete, restore, events, --watch, wait, apply; -o table|json|yaml; --dry-run; server
# errors; an unreachable server) against a real `cutover serve` with an admin token, first on a
# throwaway SQLite file, then on a throwaway PostgreSQL cluster this script starts, and checks exit
# codes, stdout and stderr against the contract of the client commands. hack/cli_test.py (Python
# standard library only) starts the server and a healthy stand-in agent pod on loopback and compares
# the CLI's output with the API's own JSON. Bounded: about a minute in all, 110 s per backend at most.
#
#   CUTOVER_BIN=path/to/cutover hack/cli-test.sh   use that binary (default .build/debug/cutover)
#   CLI_BACKENDS="sqlite" hack/cli-test.sh         only these backends (default "sqlite postgres")
#   CLI_SKIP=check_watch,check_apply hack/cli-test.sh   skip these checks (debugging)
#   CLI_KEEP=1 hack/cli-test.sh                    keep the temp dir (server logs) after the run
set -euo pipefail
cd "$(dirname "$0")/.."

PG_LOG_PREFIX=cli-test.sh
# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

TMP=$(mktemp -d /tmp/cutover-cli.XXXXXX)

# Every process cli_test.py (the server, background CLI runs) starts is listed in $TMP/pids; kill_listed_copies (hack/lib/serve.sh)
# is the safety net if the run is killed before it could stop them itself.
kill_replicas() { kill_listed_copies; }

cleanup() {
  end_run $? "${CLI_KEEP:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

private_binary "$TMP"
if ! timeout 10 "$BIN" agents --help 2>&1 | grep -q 'cutover agents'; then
  echo "cli-test.sh: $BIN has no client commands (\`cutover agents --help\` does not describe them); build it" >&2
  exit 1
fi

started=$(date +%s)
FAILED_BACKENDS=""
for backend in ${CLI_BACKENDS:-sqlite postgres}; do
  case $backend in
  sqlite) url="sqlite://$TMP/sqlite/cutover.sqlite" ;;
  postgres)
    start_pg
    url=$PG_URL
    ;;
  *)
    echo "cli-test.sh: unknown backend '$backend' (sqlite or postgres)" >&2
    exit 2
    ;;
  esac
  mkdir -p "$TMP/$backend"
  echo "cli-test.sh: $backend"
  rc=0
  CLI_BIN=$BIN CLI_DATABASE_URL=$url CLI_TMP=$TMP/$backend CLI_BACKEND=$backend CLI_PIDS=$TMP/pids \
    timeout -k 10 110 python3 hack/cli_test.py || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "cli-test.sh: $backend: the suite did not finish within 110 s" >&2
  fi
  kill_replicas
  if [[ $backend == postgres ]]; then stop_pg; fi
  if ((rc != 0)); then FAILED_BACKENDS+=" $backend"; fi
done
echo "cli-test.sh: done in $(($(date +%s) - started)) s"
if [[ -n $FAILED_BACKENDS ]]; then
  echo "cli-test.sh: failed on:$FAILED_BACKENDS" >&2
  exit 1
fi
echo "cli-test.sh: all backends passed"
