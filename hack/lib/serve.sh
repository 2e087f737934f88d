# shellcheck shell=bash
# Start-up and clean-up shared by hack/e2e.sh, hack/chaos.sh and hack/hostile-test.sh. Source it after
# hack/lib/postgres.sh (messages are prefixed with its PG_LOG_PREFIX), then:
#
#   private_binary TMP   check ${CUTOVER_BIN:-.build/debug/cutover} (exit 2 if it is not an
#                        executable) and copy it to TMP/cutover, so a concurrent `swift build` cannot
#                        swap the binary under a running replica; sets BIN to the copy.
#   migrate_pg TMP       `$BIN migrate` on $PG_URL (start_pg ran), log in TMP/migrate.log; exit 1
#                        (showing the log) if it fails.
#   kill_listed_copies   kill -9 the pids in TMP/pids still running TMP/cutover (an EXIT-trap safety net).
#   export_pg_ctl PREFIX export PREFIX_PG_STOP and PREFIX_PG_START: the shell commands (the same
#                        pg_ctl lines postgres.sh uses) with which a suite stops and restarts the
#                        cluster start_pg started, on the same port.

private_binary() {
  local tmp=$1 src=${CUTOVER_BIN:-.build/debug/cutover}
  if [[ ! -x $src ]]; then
    echo "$PG_LOG_PREFIX: $src not found or not executable (build it, or set CUTOVER_BIN)" >&2
    exit 2
  fi
  cp "$(readlink -f "$src")" "$tmp/cutover"
  BIN=$tmp/cutover
}

migrate_pg() {
  local tmp=$1
  "$BIN" migrate --database-url "$PG_URL" >"$tmp/migrate.log" 2>&1 \
    || { echo "$PG_LOG_PREFIX: cutover migrate failed:" >&2; cat "$tmp/migrate.log" >&2; exit 1; }
  echo "$PG_LOG_PREFIX: migrations applied"
}

export_pg_ctl() {
  local prefix=$1 pg_as=""
  if [[ $EUID -eq 0 ]]; then pg_as="runuser -u postgres --"; fi
  export "${prefix}_PG_STOP=cd $PGTMP && $pg_as $PG_BIN/pg_ctl -D $PGTMP/data -m fast -w -t 60 stop"
  export "${prefix}_PG_START=cd $PGTMP && $pg_as $PG_BIN/pg_ctl -D $PGTMP/data -l $PGTMP/log -w -t 60 start \
-o '-h 127.0.0.1 -p $PG_PORT -k $PGTMP -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off'"
}

# kill_listed_copies: kill -9 every pid listed in $TMP/pids that still runs our private copy of the
# binary ($TMP/cutover), so a pid reused by another process is never touched.
kill_listed_copies() {
  local pid
  if [[ -f $TMP/pids ]]; then
    while read -r pid; do
      [[ -n $pid ]] || continue
      if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$TMP/cutover" ]]; then
        kill -9 "$pid" 2>/dev/null || true
      fi
    done <"$TMP/pids"
  fi
}

# end_run RC KEEP: the body of the suites' EXIT traps. Calls the caller's kill_replicas and
# stop_pg, then removes $TMP unless KEEP is non-empty or RC is not 0 (then says where the
# logs are); exits RC.
end_run() {
  local rc=$1 keep=$2
  kill_replicas
  stop_pg
  if [[ -n $keep || $rc -ne 0 ]]; then
    echo "$PG_LOG_PREFIX: logs kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit "$rc"
}
