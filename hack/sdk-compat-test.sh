#!/usr/bin/env bash
# End-to-end test of real agentex-sdk pods against Cutover: makes (or reuses) a Python >= 3.12 venv
# with agentex-sdk and agentex-client, starts `cutover serve` on SQLite and then on a throwaway
# PostgreSQL (hack/lib/postgres.sh), each with a second server that requires a registration token,
# and runs hack/sdk_compat_test.py against each: the pods in hack/sdk-pods/ (a sync echo agent and an
# async echo agent built with FastACP) driven only through the official agentex-client.
# hack/test.sh runs it. The first run installs the venv (about a minute, 1.1 GB under .build/).
#
#   CUTOVER_BIN=path/to/cutover hack/sdk-compat-test.sh   use that binary (default .build/debug/cutover)
#   SDK_BACKENDS="sqlite" hack/sdk-compat-test.sh         only these backends (default "sqlite postgres")
#   SDK_PYTHON=/path/to/python3.12 ...                    the interpreter for the venv
#   SDK_VENV_DIR=dir ...                                  where venvs are cached (default .build/sdk-venv)
#   SDK_KEEP_LOGS=1 ...                                   keep the temp dir (server and pod logs)
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTEX_SDK_VERSION=0.28.4
AGENTEX_CLIENT_VERSION=0.28.4
REG_TOKEN="reg-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
ADMIN_TOKEN="adm-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
PG_LOG_PREFIX=sdk-compat-test.sh
# shellcheck source=hack/lib/postgres.sh
source hack/lib/postgres.sh
# shellcheck source=hack/lib/serve.sh
source hack/lib/serve.sh

TMP=$(mktemp -d /tmp/cutover-sdk.XXXXXX)
SERVER_PIDS=()

stop_servers() {
  local pid
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  SERVER_PIDS=()
}

# end_run (hack/lib/serve.sh) stops what kill_replicas names and PostgreSQL, and keeps the logs on
# failure or with SDK_KEEP_LOGS.
kill_replicas() { stop_servers; }
cleanup() {
  end_run $? "${SDK_KEEP_LOGS:-}"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- Python >= 3.12 -------------------------------------------------------------------------------
find_python() {
  local candidate
  for candidate in "${SDK_PYTHON:-}" python3.13 python3.12 \
    "$HOME"/.pyenv/versions/3.1[2-9]*/bin/python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3 \
    /usr/local/bin/python3.1[2-9] /usr/bin/python3.1[2-9] python3; do
    [[ -n $candidate ]] || continue
    command -v "$candidate" >/dev/null 2>&1 || [[ -x $candidate ]] || continue
    if "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
if ! PY=$(find_python); then
  echo "sdk-compat-test.sh: agentex-sdk $AGENTEX_SDK_VERSION needs Python >= 3.12; none found" \
    "(tried \$SDK_PYTHON, python3.13, python3.12, ~/.pyenv/versions/3.12+, /usr/local/bin/python3.12+," \
    "python3 = $(python3 --version 2>&1 || echo missing)). Install one (e.g. pyenv install 3.12) or set SDK_PYTHON." >&2
  exit 2
fi
PY_VERSION=$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')

# The SDK imports litellm, which otherwise fetches a model price list from GitHub at import time
# (seconds of retries without network); the pods and the test use its bundled copy.
export LITELLM_LOCAL_MODEL_COST_MAP=True

# --- the venv, cached by the versions ---------------------------------------------------------------
VENV_ROOT=${SDK_VENV_DIR:-.build/sdk-venv}
VENV="$VENV_ROOT/py$PY_VERSION-sdk$AGENTEX_SDK_VERSION-client$AGENTEX_CLIENT_VERSION"
if [[ ! -f $VENV/.complete ]]; then
  echo "sdk-compat-test.sh: creating $VENV (Python $PY_VERSION; about a minute)"
  rm -rf "$VENV"
  mkdir -p "$VENV_ROOT"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "agentex-sdk==$AGENTEX_SDK_VERSION" "agentex-client==$AGENTEX_CLIENT_VERSION"
  touch "$VENV/.complete"
fi
VENV=$(readlink -f "$VENV")
"$VENV/bin/python" -c 'import agentex, agentex.lib.sdk.fastacp' \
  || { echo "sdk-compat-test.sh: the venv $VENV is broken; remove it and rerun" >&2; exit 1; }

# --- the server binary ---------------------------------------------------------------------------
SRC_BIN=${CUTOVER_BIN:-.build/debug/cutover}
if [[ ! -x $SRC_BIN ]]; then
  swift build --product cutover
fi
cp "$(readlink -f "$SRC_BIN")" "$TMP/cutover"   # a concurrent `swift build` cannot swap it under us
BIN=$TMP/cutover

# start_server NAME DATABASE_URL [FLAGS...]: `cutover serve` on a free port; sets URL.
start_server() {
  local name=$1 database_url=$2
  shift 2
  local port pid i
  port=$(free_port)
  URL="http://127.0.0.1:$port"
  "$BIN" serve --database-url "$database_url" --listen "127.0.0.1:$port" --log-format json "$@" \
    >"$TMP/server-$name.log" 2>&1 &
  pid=$!
  SERVER_PIDS+=("$pid")
  for ((i = 0; ; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "sdk-compat-test.sh: cutover serve ($name) exited before it was healthy:" >&2
      tail -n 20 "$TMP/server-$name.log" >&2
      exit 1
    fi
    [[ $(curl -s -m 2 -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
    if ((i >= 120)); then
      echo "sdk-compat-test.sh: $URL/healthz not 200 after 60 s" >&2
      exit 1
    fi
    sleep 0.5
  done
}

FAILED_BACKENDS=""
for backend in ${SDK_BACKENDS:-sqlite postgres}; do
  case $backend in
    sqlite)
      DB_OPEN="sqlite://$TMP/open.sqlite"
      DB_TOKEN="sqlite://$TMP/token.sqlite"
      ;;
    postgres)
      start_pg
      DB_OPEN=$(create_pg_db sdk_open)
      DB_TOKEN=$(create_pg_db sdk_token)
      "$BIN" migrate --database-url "$DB_OPEN" >"$TMP/migrate.log" 2>&1
      "$BIN" migrate --database-url "$DB_TOKEN" >>"$TMP/migrate.log" 2>&1
      ;;
    *)
      echo "sdk-compat-test.sh: unknown backend $backend" >&2
      exit 2
      ;;
  esac
  start_server "$backend-open" "$DB_OPEN"
  OPEN_URL=$URL
  start_server "$backend-token" "$DB_TOKEN" --registration-token "$REG_TOKEN" --admin-token "$ADMIN_TOKEN"
  TOKEN_URL=$URL
  mkdir -p "$TMP/pods-$backend"
  echo "sdk-compat-test.sh: $backend: $OPEN_URL (open), $TOKEN_URL (registration token)"
  if ! CUTOVER_URL=$OPEN_URL CUTOVER_TOKEN_URL=$TOKEN_URL REG_TOKEN=$REG_TOKEN ADMIN_TOKEN=$ADMIN_TOKEN \
    SDK_PODS_DIR="$PWD/hack/sdk-pods" SDK_LOG_DIR="$TMP/pods-$backend" SDK_BACKEND=$backend \
    timeout 300 "$VENV/bin/python" hack/sdk_compat_test.py; then
    FAILED_BACKENDS="$FAILED_BACKENDS $backend"
  fi
  stop_servers
  if [[ $backend == postgres ]]; then stop_pg; fi
done

if [[ -n $FAILED_BACKENDS ]]; then
  echo "sdk-compat-test.sh: failures on:$FAILED_BACKENDS (server and pod logs in $TMP)" >&2
  exit 1
fi
echo "sdk-compat-test.sh: all checks passed"
