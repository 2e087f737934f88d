#!/usr/bin/env bash
# Full test run: a throwaway PostgreSQL on loopback, then `swift build --build-tests`,
# `swift test "$@"` and, if present, hack/compat-test.sh (the agentex-client check),
# hack/sdk-compat-test.sh (real agentex-sdk pods driven by agentex-client), and
# hack/hostile-test.sh (hostile clients and misbehaving pods, on SQLite and its own PostgreSQL) and
# hack/e2e.sh (three replicas on one PostgreSQL: leadership, failover, cross-replica routing, a restart).
#
#   SKIP_SWIFT=1 hack/test.sh   only start PostgreSQL, check it answers, stop it
#   CUTOVER_TEST_POSTGRES_URL=postgres://... hack/test.sh   use that server instead
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh

cleanup() {
  local rc=$?
  stop_pg
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${CUTOVER_TEST_POSTGRES_URL:-} ]]; then
  start_pg CUTOVER_TEST_POSTGRES_URL
fi
if command -v psql >/dev/null; then
  psql "$CUTOVER_TEST_POSTGRES_URL" -X -q -t -A -v ON_ERROR_STOP=1 \
    -c 'show max_connections' | sed 's/^/test.sh: max_connections = /'
fi

if [[ ${SKIP_SWIFT:-0} != 1 ]]; then
  if [[ -x hack/validate-manifests.sh ]]; then hack/validate-manifests.sh; fi
  swift build --build-tests
  swift test "$@"
  if [[ -x hack/compat-test.sh ]]; then
    hack/compat-test.sh
  fi
  if [[ -x hack/sdk-compat-test.sh ]]; then
    hack/sdk-compat-test.sh
  fi
  if [[ -x hack/hostile-test.sh ]]; then
    hack/hostile-test.sh
  fi
  if [[ -x hack/fuzz.sh ]]; then hack/fuzz.sh --short; fi
  if [[ -x hack/cli-test.sh ]]; then hack/cli-test.sh; fi
  if [[ -x hack/e2e.sh ]]; then
    hack/e2e.sh
  fi
fi
