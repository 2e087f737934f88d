#!/usr/bin/env bash
# Contract fuzzing: serves Cutover on a throwaway SQLite file, then on a throwaway PostgreSQL cluster,
# and runs schemathesis against each server's own GET /openapi.json: every operation (schemathesis
# leaves out the one serving the document itself, which the Swift tests cover), valid and hostile
# input, with the checks not_a_server_error, status_code_conformance, content_type_conformance and
# response_schema_conformance. Any failure (or a run that does not finish in time) exits 1.
#
# Each server has an admin token (sent on every request) and `--probe none`, and a fixture agent with
# three deployments: fuzz-live (Ready, production), fuzz-preview (Ready) and fuzz-pending (Pending),
# whose pods' URL is a closed loopback port. Two schemathesis hooks (written to the temp dir):
#   map_case        points about two thirds of the generated path parameters at the fixture, so that
#                   requests reach the routes' logic rather than a 404; makes a request that would
#                   delete the fixture agent a dry run; gives a watch of the events an `after` that
#                   names no event (a 422), since a watch of an existing agent streams until the
#                   client leaves.
#   filter_failure  accepts, on the /rpc routes only, the documented gateway errors of an RPC that
#                   passed every check and found no agent: 502 with JSON-RPC error -32003, 504 with
#                   -32005. Every other 5xx fails the run.
#
#   hack/fuzz.sh             thorough: FUZZ_MAX_EXAMPLES (default 100) examples per operation and phase
#   hack/fuzz.sh --short     quick: 5 examples, seed 1, each backend's run bounded to 90 s; hack/test.sh runs it
#   FUZZ_BACKENDS=sqlite     only these backends (default "sqlite postgres")
#   FUZZ_SEED=N              replay a run (each backend's line of the summary names its seed)
#   FUZZ_WORKERS=N           concurrent schemathesis workers (default 1: with more, Python 3.11 can fail
#                            inside schemathesis with "AST constructor recursion depth mismatch")
#   FUZZ_KEEP=1              keep the temp dir (server logs, JUnit reports) after the run
#   FUZZ_ARGS="--report har" more schemathesis arguments (reports go to the temp dir's report-BACKEND/)
#   FUZZ_VENV=DIR            where schemathesis is installed (default .build/schemathesis-venv)
#   CUTOVER_BIN=PATH         the binary to serve (default .build/debug/cutover, built when missing)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
SHORT=0
for arg in "$@"; do
  case $arg in
  --short) SHORT=1 ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "fuzz.sh: unknown argument '$arg' (only --short)" >&2
    exit 2
    ;;
  esac
done
if ((SHORT)); then
  MAX_EXAMPLES=5
  RUN_TIMEOUT=90
  SEED=${FUZZ_SEED:-1} # the gate draws the same cases every time
else
  MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-100}
  RUN_TIMEOUT=${FUZZ_TIMEOUT:-3600}
  SEED=${FUZZ_SEED:-}
fi

# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

TMP=$(mktemp -d /tmp/cutover-fuzz.XXXXXX)
SERVER_PID=""
SERVER_LOG=""
TOKEN="fuzz-admin-$RANDOM$RANDOM"

stop_server() {
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}

# end_run (hack/lib/serve.sh) stops what kill_replicas names and PostgreSQL, and keeps the logs and
# reports on failure or with FUZZ_KEEP.
kill_replicas() { stop_server; }
cleanup() {
  end_run $? "${FUZZ_KEEP:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# schemathesis, pinned, in its own virtualenv (installed from PyPI on first use).
VENV=${FUZZ_VENV:-.build/schemathesis-venv}
if [[ $("$VENV/bin/schemathesis" --version 2>/dev/null || true) != *" $SCHEMATHESIS_VERSION" ]]; then
  echo "fuzz.sh: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
SCHEMATHESIS=$(readlink -f "$VENV/bin/schemathesis")

if [[ ! -x ${CUTOVER_BIN:-.build/debug/cutover} ]]; then
  swift build --product cutover
fi
private_binary "$TMP"

cat >"$TMP/fuzz_hooks.py" <<'PY'
"""Points generated requests at the fixture agent (see hack/fuzz.sh)."""
import os
import zlib

import schemathesis

AGENT = os.environ["FUZZ_AGENT_ID"]
NAME = os.environ["FUZZ_AGENT_NAME"]
DEPLOYMENTS = os.environ["FUZZ_DEPLOYMENT_IDS"].split(",")
AGENT_DELETES = ("/agents/{id}", "/agents/name/{name}")


def truthy(value):
    """Whether Cutover reads a query flag as true (true, 1 or empty, any case; the last of repeated ones)."""
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return value is not None and str(value).lower() in ("true", "1", "")


@schemathesis.hook
def map_case(context, case):
    params = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    # The same generated parameters always map the same way, so a failure shrinks and replays.
    pick = zlib.crc32(repr(sorted(params.items())).encode())
    if params and pick % 3:
        if "id" in params:
            params["id"] = AGENT
        if "name" in params:
            params["name"] = NAME
        if "did" in params:
            params["did"] = DEPLOYMENTS[(pick >> 2) % len(DEPLOYMENTS)]
    if not isinstance(case.query, dict):
        case.query = {}
    query = case.query
    if case.method.upper() == "DELETE" and case.path in AGENT_DELETES and params.get("id", params.get("name")) in (AGENT, NAME):
        query["dry_run"] = "true"
    if case.path.endswith("/events") and truthy(query.get("watch")) and query.get("after") in (None, []):
        query["after"] = "fuzz-no-such-event"
    return case


# The fixture's pods are a closed port: an RPC that passes every check gets the documented gateway errors.
UPSTREAM_ERRORS = {502: -32003, 504: -32005}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure except a /rpc route's documented JSON-RPC 502/504 for the fixture's absent agent."""
    if type(failure).__name__ != "ServerError" or not case.path.endswith("/rpc"):
        return True
    try:
        body = response.json()
    except Exception:
        return True
    error = body.get("error") if isinstance(body, dict) else None
    expected = UPSTREAM_ERRORS.get(response.status_code)
    return not (expected is not None and isinstance(error, dict) and error.get("code") == expected)
PY

# api METHOD PATH [BODY]: an admin request; prints the answer, fails unless 200.
api() {
  curl -sS -f -m 10 -X "$1" -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$URL$2"
}

json_field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# start_server NAME DATABASE_URL: `cutover serve` on a free port, healthy, with the fixture agent.
start_server() {
  local name=$1 database_url=$2 port dead i
  port=$(free_port)
  dead=$(free_port) # nothing listens there: the fixture's RPCs answer 502
  URL="http://127.0.0.1:$port"
  SERVER_LOG="$TMP/server-$name.log"
  "$BIN" serve --database-url "$database_url" --listen "127.0.0.1:$port" --admin-token "$TOKEN" \
    --probe none --rpc-timeout 2s --log-format json >"$SERVER_LOG" 2>&1 &
  SERVER_PID=$!
  for ((i = 0; ; i++)); do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "fuzz.sh: cutover serve ($name) exited before it was healthy:" >&2
      tail -n 20 "$SERVER_LOG" >&2
      exit 1
    fi
    [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
    if ((i >= 120)); then
      echo "fuzz.sh: $URL/healthz not 200 after 60 s" >&2
      exit 1
    fi
    sleep 0.5
  done
  local pod='"name":"fuzz-fixture","acp_url":"http://127.0.0.1:'$dead'","acp_type":"async"'
  FUZZ_AGENT_ID=$(api POST /agents/register \
    '{'"$pod"',"registration_metadata":{"deployment_id":"fuzz-live","docker_image":"fuzz:1"}}' | json_field id)
  api POST /agents/register '{'"$pod"',"registration_metadata":{"deployment_id":"fuzz-preview","docker_image":"fuzz:2"}}' >/dev/null
  api POST "/agents/$FUZZ_AGENT_ID/deployments" '{"docker_image":"fuzz:3","id":"fuzz-pending"}' >/dev/null
  for ((i = 0; ; i++)); do
    [[ $(api GET "/agents/$FUZZ_AGENT_ID" | json_field production_deployment_id) == fuzz-live ]] && break
    if ((i >= 100)); then
      echo "fuzz.sh: the fixture's fuzz-live never became production" >&2
      exit 1
    fi
    sleep 0.1
  done
}

# run_fuzz NAME: schemathesis against the running server, then stops it. A failed run is remembered
# (the other backend still runs) and shows the server log's last lines.
FAILED_BACKENDS=""
SUMMARY=""
run_fuzz() {
  local name=$1 rc=0 started=$SECONDS
  local out="$TMP/schemathesis-$name.txt"
  local args=(
    run "$URL/openapi.json"
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
    --header "Authorization: Bearer $TOKEN"
    --max-examples "$MAX_EXAMPLES"
    --workers "${FUZZ_WORKERS:-1}"
    --request-timeout 10
    --suppress-health-check all
    --generation-database none
    --report junit --report-dir "$TMP/report-$name"
    --no-color
  )
  if [[ -n $SEED ]]; then args+=(--seed "$SEED"); fi
  # shellcheck disable=SC2206 # FUZZ_ARGS is split into words on purpose
  if [[ -n ${FUZZ_ARGS:-} ]]; then args+=(${FUZZ_ARGS}); fi
  echo "fuzz.sh: $name: $URL, $MAX_EXAMPLES examples per operation and phase"
  FUZZ_AGENT_ID=$FUZZ_AGENT_ID FUZZ_AGENT_NAME=fuzz-fixture FUZZ_DEPLOYMENT_IDS=fuzz-live,fuzz-preview,fuzz-pending \
    SCHEMATHESIS_HOOKS="$TMP/fuzz_hooks.py" \
    timeout -k 10 "$RUN_TIMEOUT" "$SCHEMATHESIS" "${args[@]}" >"$out" 2>&1 || rc=$?
  if ((rc == 124 || rc == 137)); then
    echo "fuzz.sh: $name: schemathesis did not finish within $RUN_TIMEOUT s" >&2
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "fuzz.sh: $name: cutover serve died during the run" >&2
    rc=1
  fi
  stop_server
  local selected tested cases seed
  selected=$(sed -n 's/^ *Selected: *//p' "$out" | head -n 1)
  tested=$(sed -n 's/^ *Tested: *//p' "$out" | head -n 1)
  cases=$(grep -A1 -E '^Test cases:' "$out" | tail -n 1 | sed 's/^ *//')
  seed=$(sed -n 's/^Seed: *//p' "$out" | head -n 1)
  SUMMARY+="fuzz.sh: $name: ${tested:-?} operations tested (${selected:-?} selected); test cases: ${cases:-?}; seed ${seed:-?}; $((SECONDS - started)) s"$'\n'
  if ((rc != 0)); then
    FAILED_BACKENDS+=" $name"
    echo "fuzz.sh: $name failed (exit $rc); schemathesis said:" >&2
    sed -n '/= FAILURES =/,$p' "$out" | head -n 300 >&2
    grep -q '= FAILURES =' "$out" || tail -n 60 "$out" >&2
    echo "fuzz.sh: $name: last lines of the server log:" >&2
    tail -n 20 "$SERVER_LOG" >&2
  fi
}

for backend in ${FUZZ_BACKENDS:-sqlite postgres}; do
  case $backend in
  sqlite)
    start_server sqlite "sqlite://$TMP/cutover.sqlite"
    run_fuzz sqlite
    ;;
  postgres)
    start_pg
    start_server postgres "$PG_URL"
    run_fuzz postgres
    stop_pg
    ;;
  *)
    echo "fuzz.sh: unknown backend '$backend' (sqlite or postgres)" >&2
    exit 2
    ;;
  esac
done
printf '%s' "$SUMMARY"
if [[ -n $FAILED_BACKENDS ]]; then
  echo "fuzz.sh: failed on:$FAILED_BACKENDS" >&2
  exit 1
fi
echo "fuzz.sh: all backends passed"
