#!/usr/bin/env bash
# Full test run: a throwaway PostgreSQL on loopback, then `swift build --build-tests`,
# `swift test "$@"` and, if present, hack/compat-test.sh (the agentex-client check).
#
#   SKIP_SWIFT=1 hack/test.sh   only start PostgreSQL, check it answers, stop it
#   CUTOVER_TEST_POSTGRES_URL=postgres://... hack/test.sh   use that server instead
set -euo pipefail
cd "$(dirname "$0")/.."

PGTMP=""
PG_BIN=""

# Directory holding pg_ctl and initdb: from PATH, else Debian's versioned directory.
find_pg_bin() {
  if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
    PG_BIN=$(dirname "$(readlink -f "$(command -v pg_ctl)")")
  else
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  fi
  [[ -n $PG_BIN && -x $PG_BIN/pg_ctl && -x $PG_BIN/initdb ]]
}

install_pg() {
  echo "test.sh: PostgreSQL server not found, installing it from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends postgresql
}

# PostgreSQL refuses to run as root: run its tools as the postgres user when we are root.
as_pg() {
  if [[ $EUID -eq 0 ]]; then (cd "$PGTMP" && runuser -u postgres -- "$@"); else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_pg() {
  if ! find_pg_bin; then
    install_pg
    find_pg_bin || { echo "test.sh: no pg_ctl/initdb after installing postgresql" >&2; exit 1; }
  fi
  PGTMP=$(mktemp -d /tmp/cutover-pg.XXXXXX)
  if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres: "$PGTMP"
  fi
  local port
  port=$(free_port)
  as_pg "$PG_BIN/initdb" -D "$PGTMP/data" -A trust -U postgres -E UTF8 >"$PGTMP/initdb.log" \
    || { cat "$PGTMP/initdb.log" >&2; exit 1; }
  as_pg "$PG_BIN/pg_ctl" -D "$PGTMP/data" -l "$PGTMP/log" -w -t 60 start \
    -o "-h 127.0.0.1 -p $port -k $PGTMP -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    || { cat "$PGTMP/log" >&2; exit 1; }
  export CUTOVER_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "test.sh: PostgreSQL ($("$PG_BIN/postgres" --version)) at $CUTOVER_TEST_POSTGRES_URL"
}

cleanup() {
  local rc=$?
  if [[ -n $PGTMP ]]; then
    if [[ -f $PGTMP/data/postmaster.pid ]]; then
      as_pg "$PG_BIN/pg_ctl" -D "$PGTMP/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$PGTMP"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${CUTOVER_TEST_POSTGRES_URL:-} ]]; then
  start_pg
fi
if command -v psql >/dev/null; then
  psql "$CUTOVER_TEST_POSTGRES_URL" -X -q -t -A -v ON_ERROR_STOP=1 \
    -c 'show max_connections' | sed 's/^/test.sh: max_connections = /'
fi

if [[ ${SKIP_SWIFT:-0} != 1 ]]; then
  swift build --build-tests
  swift test "$@"
  if [[ -x hack/compat-test.sh ]]; then
    hack/compat-test.sh
  fi
fi
