# Shared helpers for the test scripts (bash; source it, do not run it).
#
#   allvars_free_port [VAR]      a free loopback TCP port into VAR (or printed)
#   allvars_wait SECS CMD...     run CMD every 0.2 s until it succeeds; fail after SECS seconds
#   allvars_cleanup_add CMD...   run CMD at exit (EXIT, INT, TERM, HUP), last added first
#   allvars_cleanup_run          run the registered cleanups now (each once)
#   allvars_as_test_user CMD...  run CMD as the unprivileged test user when we are root
#   allvars_test_user            print that user's name (creates it if needed; root only)
#
# Sourcing twice is harmless. Nothing here changes the caller's `set` options.

if [[ -z ${ALLVARS_COMMON_SH:-} ]]; then
ALLVARS_COMMON_SH=1

ALLVARS_ROOT=${ALLVARS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
ALLVARS_PORTS_GIVEN=" "
ALLVARS_CLEANUPS=()

allvars_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

# Ports with a socket bound to them, from /proc (no dependency on ss or python).
_allvars_ports_in_use() {
        local f
        for f in /proc/net/tcp /proc/net/tcp6; do
                [[ -r $f ]] || continue
                # mawk has no strtonum: convert the hex port in bash.
                awk 'NR > 1 { split($2, a, ":"); print a[2] }' "$f" |
                        while read -r h; do echo $((16#$h)); done
        done
}

# allvars_free_port [VAR]: a free loopback TCP port, into VAR (or printed). Below
# the kernel's ephemeral range (32768-60999), so that outgoing connections cannot
# take it between our check and the server's bind; callers still retry a start
# that fails to bind. With VAR the port is remembered in this shell and never
# handed out twice (a $(...) subshell cannot remember).
allvars_free_port() {
        local _used _p _i
        _used=" $(_allvars_ports_in_use | tr '\n' ' ') "
        for ((_i = 0; _i < 200; _i++)); do
                _p=$((16384 + RANDOM % 16000))
                [[ $_used == *" $_p "* || $ALLVARS_PORTS_GIVEN == *" $_p "* ]] && continue
                ALLVARS_PORTS_GIVEN+="$_p "
                if [[ -n ${1:-} ]]; then
                        printf -v "$1" '%s' "$_p"
                else
                        echo "$_p"
                fi
                return 0
        done
        allvars_log "no free port found"
        return 1
}

allvars_wait() {
        local limit=$1 deadline
        shift
        deadline=$((SECONDS + limit))
        while ((SECONDS < deadline)); do
                if "$@" >/dev/null 2>&1; then return 0; fi
                sleep 0.2
        done
        "$@" >/dev/null 2>&1 && return 0
        allvars_log "timed out after ${limit}s waiting for: $*"
        return 1
}

allvars_cleanup_run() {
        local i cmd
        for ((i = ${#ALLVARS_CLEANUPS[@]} - 1; i >= 0; i--)); do
                cmd=${ALLVARS_CLEANUPS[i]}
                unset "ALLVARS_CLEANUPS[i]"
                eval "$cmd" || true
        done
        ALLVARS_CLEANUPS=()
}

_allvars_on_exit() {
        local rc=$?
        allvars_cleanup_run
        return $rc
}

allvars_cleanup_add() {
        ALLVARS_CLEANUPS+=("$*")
        trap _allvars_on_exit EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        trap 'exit 129' HUP
}

# PostgreSQL's initdb refuses to run as root: when we are root, servers run as
# a dedicated system user (created on first use), or as nobody without useradd.
allvars_test_user() {
        if ((EUID != 0)); then
                id -un
                return 0
        fi
        local u=${ALLVARS_TEST_USER:-allvars-test}
        if ! id "$u" >/dev/null 2>&1; then
                if ! useradd --system --user-group --no-create-home --home-dir /nonexistent \
                        --shell /usr/sbin/nologin "$u" >/dev/null 2>&1 && ! id "$u" >/dev/null 2>&1; then
                        u=nobody
                fi
        fi
        echo "$u"
}

allvars_as_test_user() {
        if ((EUID == 0)); then
                local u
                u=$(allvars_test_user) || return 1
                runuser -u "$u" -- "$@"
        else
                "$@"
        fi
}

# allvars_tmpdir PREFIX: a fresh private directory owned by the test user,
# short enough for a unix socket path (108 bytes).
allvars_tmpdir() {
        local base=${TMPDIR:-/tmp} d
        if ((${#base} > 60)) || [[ ! -d $base ]]; then base=/tmp; fi
        d=$(mktemp -d "$base/$1.XXXXXX") || return 1
        if ((EUID == 0)); then
                local u
                u=$(allvars_test_user) || { rm -rf "$d"; return 1; }
                chown "$u:" "$d" || { rm -rf "$d"; return 1; }
                # The user must reach the directory through its parents.
                if ! runuser -u "$u" -- test -w "$d" 2>/dev/null; then
                        rm -rf "$d"
                        d=$(mktemp -d "/tmp/$1.XXXXXX") || return 1
                        chown "$u:" "$d" || { rm -rf "$d"; return 1; }
                fi
        fi
        echo "$d"
}

fi
