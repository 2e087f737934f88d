#!/usr/bin/env bash
# Wire-compatibility test: starts `cutover serve` on a throwaway SQLite file and runs
# hack/compat_test.py (the official agentex-client + agentex-sdk's registration) against it.
#
#   CUTOVER_BIN=path/to/cutover hack/compat-test.sh   use that binary (default .build/debug/cutover)
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTEX_CLIENT_VERSION=0.28.4
TMP=$(mktemp -d /tmp/cutover-compat.XXXXXX)
SERVER_PID=""

cleanup() {
  local rc=$?
  if [[ -n $SERVER_PID ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ $rc -ne 0 && -s $TMP/server.log ]]; then
    echo "compat-test.sh: last lines of the server log:" >&2
    tail -n 40 "$TMP/server.log" >&2
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install -q --disable-pip-version-check "agentex-client==$AGENTEX_CLIENT_VERSION"

BIN=${CUTOVER_BIN:-.build/debug/cutover}
if [[ ! -x $BIN ]]; then
  swift build --product cutover
fi

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
"$BIN" serve --database-url "sqlite://$TMP/cutover.sqlite" --listen "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

for ((i = 0; ; i++)); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "compat-test.sh: cutover serve exited before it was healthy" >&2
    exit 1
  fi
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" || true) == 200 ]] && break
  if ((i >= 120)); then
    echo "compat-test.sh: $URL/healthz not 200 after 60 s" >&2
    exit 1
  fi
  sleep 0.5
done

CUTOVER_URL=$URL "$TMP/venv/bin/python" hack/compat_test.py
