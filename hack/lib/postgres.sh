# shellcheck shell=bash
# Throwaway PostgreSQL on a loopback port, for hack/test.sh and the benchmarks under hack/bench/.
# Source it, then:
#
#   start_pg [VAR]   find (or install from Debian's packages) initdb/pg_ctl, initdb a cluster in a
#                    temp dir, start it on a free 127.0.0.1 port; exports PG_URL (and VAR, if
#                    given) = postgres://postgres@127.0.0.1:PORT/postgres, plus PG_PORT, PG_BIN
#                    and PGTMP (the cluster's directory). Exits 1 if it cannot.
#   create_pg_db NAME  create database NAME in that cluster; prints its URL.
#   stop_pg          stop the cluster and remove its directory; safe to call twice, or when
#                    start_pg never ran. Call it from the caller's EXIT trap.
#
# Messages are prefixed with PG_LOG_PREFIX (default: the calling script's name).

PGTMP=""
PG_BIN=""
PG_PORT=""
PG_URL=""
: "${PG_LOG_PREFIX:=$(basename "$0")}"

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
  echo "$PG_LOG_PREFIX: PostgreSQL server not found, installing it from Debian's packages" >&2
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
  local var=${1:-}
  if ! find_pg_bin; then
    install_pg
    find_pg_bin || { echo "$PG_LOG_PREFIX: no pg_ctl/initdb after installing postgresql" >&2; exit 1; }
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
  PG_PORT=$port
  export PG_PORT PG_BIN PGTMP
  export PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  if [[ -n $var ]]; then
    export "$var=$PG_URL"
  fi
  echo "$PG_LOG_PREFIX: PostgreSQL ($("$PG_BIN/postgres" --version)) at $PG_URL"
}

create_pg_db() {
  local name=$1
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$name" >&2 \
    || { echo "$PG_LOG_PREFIX: createdb $name failed" >&2; return 1; }
  echo "postgres://postgres@127.0.0.1:$PG_PORT/$name"
}

stop_pg() {
  if [[ -n $PGTMP ]]; then
    if [[ -f $PGTMP/data/postmaster.pid ]]; then
      as_pg "$PG_BIN/pg_ctl" -D "$PGTMP/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$PGTMP"
    PGTMP=""
  fi
}
