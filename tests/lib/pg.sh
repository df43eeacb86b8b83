# A private PostgreSQL server for tests (bash; source it, do not run it).
#
#   pg_start                  initdb a fresh cluster in a new temp dir and start it
#   pg_stop                   stop it (fast, then immediate, then SIGKILL) and remove the dir;
#                             safe to call twice or without pg_start. A server inherited
#                             through the environment (started by tests/run) is only
#                             forgotten, never stopped: only the process (or its subshells)
#                             that ran pg_start stops it; pg_start in such a child starts
#                             a server of its own.
#   pg_restart fast|immediate restart the running server (immediate = crash + recovery)
#   pg_stop_only [fast|immediate]  stop the server, keep the data (default fast)
#   pg_start_again            start the kept data again, same ports
#
# pg_start exports
#   PGHOST=$ALLVARS_PG_DIR (the unix socket directory), PGPORT, PGUSER=postgres,
#   PGDATABASE=postgres, ALLVARS_PG_DIR (temp dir; data in $ALLVARS_PG_DIR/data,
#   server log in $ALLVARS_PG_DIR/log), ALLVARS_PG_TCP_PORT (= PGPORT, also on 127.0.0.1),
#   ALLVARS_PG_URI (postgresql://postgres@127.0.0.1:PORT/postgres).
# Authentication is trust on the socket and on 127.0.0.1 only; fsync is on.
# As root the server runs as the unprivileged test user (see common.sh), since
# initdb refuses root. The caller registers the cleanup first (pg_stop does
# nothing without a server, and an interrupted pg_start is cleaned up too):
#   source tests/lib/pg.sh; allvars_cleanup_add pg_stop; pg_start || exit 1
# pg_start cleans up after itself when it fails. It installs no trap itself (bats
# owns its traps): from bats, call pg_start in setup_file and pg_stop in teardown_file.
#
# ALLVARS_PG_BIN overrides the server binaries (default: Debian's PostgreSQL 15).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_pg_bin() {
        if [[ -n ${ALLVARS_PG_BIN:-} ]]; then
                echo "$ALLVARS_PG_BIN"
        elif [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
                echo /usr/lib/postgresql/15/bin
        else
                local d
                d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
                [[ -n $d ]] || { allvars_log "no PostgreSQL server binaries (install postgresql-15)"; return 1; }
                echo "$d"
        fi
}

# Run a server binary as the cluster's owner, from a directory it can read.
_pg_as() {
        (cd "$ALLVARS_PG_DIR" && allvars_as_test_user "$@")
}

_pg_ctl() {
        local bin
        bin=$(_pg_bin) || return 1
        _pg_as "$bin/pg_ctl" -D "$ALLVARS_PG_DIR/data" "$@"
}

_pg_running() {
        [[ -n ${ALLVARS_PG_DIR:-} && -f $ALLVARS_PG_DIR/data/postmaster.pid ]] &&
                _pg_ctl status >/dev/null 2>&1
}

_pg_tail_log() {
        [[ -f ${ALLVARS_PG_DIR:-}/log ]] && tail -n 20 "$ALLVARS_PG_DIR/log" >&2
        return 0
}

_pg_launch() {
        if ! _pg_ctl start -w -t "${ALLVARS_PG_START_TIMEOUT:-60}" -l "$ALLVARS_PG_DIR/log" >/dev/null; then
                allvars_log "PostgreSQL did not start; server log:"
                _pg_tail_log
                return 1
        fi
}

pg_start() {
        if [[ -n ${ALLVARS_PG_DIR:-} && ${_ALLVARS_PG_MINE:-} == "$ALLVARS_PG_DIR" ]]; then
                allvars_log "pg_start: a server is already running in $ALLVARS_PG_DIR"
                return 1
        fi
        local bin dir port attempt
        bin=$(_pg_bin) || return 1
        dir=$(allvars_tmpdir allvars-pg) || return 1
        ALLVARS_PG_DIR=$dir
        # Not exported: subshells (bats' setup_file/teardown_file) inherit it, child
        # processes do not, so a test script's pg_stop never removes its runner's server.
        _ALLVARS_PG_MINE=$dir
        # Traversable, so that clients of any local user reach the socket (trust
        # on 127.0.0.1 already lets them in; this is a throwaway test cluster).
        chmod 0711 "$dir"
        if ! _pg_as "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
                --no-instructions >"$dir/initdb.log" 2>&1; then
                allvars_log "initdb failed:"
                tail -n 20 "$dir/initdb.log" >&2
                pg_stop
                return 1
        fi
        # A port found free can still be taken before the server binds it: retry.
        for attempt in 1 2 3; do
                allvars_free_port port || { pg_stop; return 1; }
                cat >"$dir/data/postgresql.auto.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
fsync = on
synchronous_commit = on
max_connections = 200
shared_buffers = 64MB
shared_preload_libraries = 'pg_stat_statements'
log_min_messages = warning
log_line_prefix = '%m [%p] %d '
EOF
                chown --reference="$dir/data" "$dir/data/postgresql.auto.conf"
                if _pg_launch; then
                        break
                fi
                if ((attempt == 3)) || ! grep -q 'could not bind\|Address already in use' "$dir/log" 2>/dev/null; then
                        pg_stop
                        return 1
                fi
        done
        export ALLVARS_PG_DIR
        export PGHOST=$dir PGPORT=$port PGUSER=postgres PGDATABASE=postgres
        export ALLVARS_PG_TCP_PORT=$port
        export ALLVARS_PG_URI="postgresql://postgres@127.0.0.1:$port/postgres"
        # Ready on the socket and on TCP (pg_ctl -w checks only one of them).
        if ! allvars_wait 30 "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres; then
                _pg_tail_log
                pg_stop
                return 1
        fi
}

pg_stop() {
        [[ -n ${ALLVARS_PG_DIR:-} ]] || return 0
        local dir=$ALLVARS_PG_DIR pid
        if [[ ${_ALLVARS_PG_MINE:-} != "$dir" ]]; then
                # Inherited from the runner: forget it here, leave it running.
                unset ALLVARS_PG_DIR ALLVARS_PG_TCP_PORT ALLVARS_PG_URI PGHOST PGPORT PGUSER PGDATABASE
                return 0
        fi
        if [[ -f $dir/data/postmaster.pid ]]; then
                pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null)
                _pg_ctl stop -m fast -w -t 20 >/dev/null 2>&1 ||
                        _pg_ctl stop -m immediate -w -t 10 >/dev/null 2>&1 || true
                if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
                        kill -KILL "$pid" 2>/dev/null
                        allvars_wait 10 bash -c "! kill -0 $pid" || true
                fi
        fi
        rm -rf "$dir"
        unset _ALLVARS_PG_MINE ALLVARS_PG_DIR ALLVARS_PG_TCP_PORT ALLVARS_PG_URI PGHOST PGPORT PGUSER PGDATABASE
        return 0
}

pg_restart() {
        local mode=${1:-fast}
        [[ $mode == fast || $mode == immediate ]] || { allvars_log "pg_restart fast|immediate"; return 2; }
        [[ -n ${ALLVARS_PG_DIR:-} ]] || { allvars_log "pg_restart: no server"; return 1; }
        pg_stop_only "$mode" && pg_start_again
}

# The huge pages (2 MiB) the stopped server's shared memory needs with its
# configuration as it is (PostgreSQL 15's shared_memory_size_in_huge_pages, which
# postgres -C computes only for a server that is not running).
pg_huge_pages_needed() {
        local bin
        bin=$(_pg_bin) || return 1
        _pg_running && { allvars_log "pg_huge_pages_needed: stop the server first"; return 1; }
        _pg_as "$bin/postgres" -D "$ALLVARS_PG_DIR/data" -C shared_memory_size_in_huge_pages
}

pg_stop_only() {
        local mode=${1:-fast}
        [[ $mode == fast || $mode == immediate || $mode == smart ]] || { allvars_log "pg_stop_only [fast|immediate]"; return 2; }
        [[ -n ${ALLVARS_PG_DIR:-} ]] || { allvars_log "pg_stop_only: no server"; return 1; }
        _pg_running || return 0
        if ! _pg_ctl stop -m "$mode" -w -t 30 >/dev/null; then
                allvars_log "pg_ctl stop -m $mode failed"
                return 1
        fi
}

pg_start_again() {
        [[ -n ${ALLVARS_PG_DIR:-} ]] || { allvars_log "pg_start_again: no data (pg_start first)"; return 1; }
        _pg_running && return 0
        _pg_launch || return 1
        allvars_wait 30 "$(_pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres
}
