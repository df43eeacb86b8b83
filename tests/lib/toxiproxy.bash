# Toxiproxy for the fault suite (bash; source it, do not run it): a TCP proxy
# on 127.0.0.1 between the daemon and PostgreSQL or Kafka whose "toxics" break
# the link the way networks do, without a reset: a silent partition (`timeout`
# with timeout 0: every byte dropped, the connection left open), one direction
# only (the same toxic on one stream), a slow link (`latency`).
#
#   toxi_fetch                  build the pinned server once into the cache (go install
#                               from the Go module proxy); a no-op when cached
#   toxi_start                  start the server on a free 127.0.0.1 port (TOXI_API)
#   toxi_stop                   stop it (safe to call twice or without toxi_start)
#   toxi_proxy NAME UPSTREAM [LISTEN_PORT]
#                               a proxy 127.0.0.1:LISTEN_PORT (a free port when not
#                               given) -> UPSTREAM (host:port); prints the listen port
#   toxi_partition NAME [both|up|down]
#                               drop everything from now on in both directions (default),
#                               only daemon -> server (up) or only server -> daemon (down)
#   toxi_latency NAME MS        MS of latency each way (a round trip of 2 x MS)
#   toxi_heal NAME              remove every toxic of NAME
#
# The version is pinned (TOXI_VERSION) and the binary cached under
# ALLVARS_TOXI_CACHE (default <repo>/.cache/toxiproxy, ignored by git), as
# tests/lib/kafka.sh caches the Kafka jars. Needs go (1.19 or later: Debian's
# golang-go, tests/lib/deps.sh) and curl. The caller registers the cleanup:
#   source tests/lib/toxiproxy.bash; allvars_cleanup_add toxi_stop; toxi_start || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TOXI_VERSION=v2.5.0
TOXI_MODULE=github.com/Shopify/toxiproxy/v2

_toxi_bin() { echo "${ALLVARS_TOXI_CACHE:-$ALLVARS_ROOT/.cache/toxiproxy}/$TOXI_VERSION/toxiproxy-server"; }

toxi_fetch() {
        local bin tmp
        bin=$(_toxi_bin)
        [[ -x $bin ]] && return 0
        command -v go >/dev/null || { allvars_log "toxi_fetch: go not found (make deps: golang-go)"; return 1; }
        mkdir -p "$(dirname "$bin")" || return 1
        tmp=$(mktemp -d "$(dirname "$bin")/fetch.XXXXXX") || return 1
        # A module build of the pinned version, its dependencies checked against
        # the module's go.sum and the checksum database.
        if ! GOBIN=$tmp GOFLAGS=-mod=mod GOPATH=${GOPATH:-$HOME/go} timeout 900 \
                go install "$TOXI_MODULE/cmd/server@$TOXI_VERSION" >"$tmp/go.log" 2>&1; then
                allvars_log "toxi_fetch: go install failed:"
                tail -n 20 "$tmp/go.log" >&2
                rm -rf "$tmp"
                return 1
        fi
        mv "$tmp/server" "$bin" && rm -rf "$tmp"
}

TOXI_PID=
TOXI_API=

toxi_start() {
        local port attempt
        toxi_fetch || return 1
        TOXI_DIR=$(mktemp -d) || return 1
        for attempt in 1 2 3; do
                allvars_free_port port || return 1
                "$(_toxi_bin)" -host 127.0.0.1 -port "$port" >"$TOXI_DIR/server.log" 2>&1 &
                TOXI_PID=$!
                TOXI_API=http://127.0.0.1:$port
                if allvars_wait 10 curl -fsS -o /dev/null "$TOXI_API/version"; then
                        return 0
                fi
                kill "$TOXI_PID" 2>/dev/null
                wait "$TOXI_PID" 2>/dev/null
                TOXI_PID=
        done
        allvars_log "toxiproxy did not start:"
        tail -n 20 "$TOXI_DIR/server.log" >&2
        return 1
}

toxi_stop() {
        if [[ -n ${TOXI_PID:-} ]]; then
                kill "$TOXI_PID" 2>/dev/null
                wait "$TOXI_PID" 2>/dev/null
                TOXI_PID=
        fi
        [[ -n ${TOXI_DIR:-} ]] && rm -rf "$TOXI_DIR"
        TOXI_DIR=
        return 0
}

_toxi() {
        local method=$1 path=$2 body=${3:-}
        curl -fsS -X "$method" -H 'Content-Type: application/json' ${body:+--data "$body"} "$TOXI_API$path"
}

toxi_proxy() {
        local name=$1 upstream=$2 port=${3:-} attempt
        for attempt in 1 2 3; do
                [[ -n $port && $attempt == 1 ]] || allvars_free_port port || return 1
                if _toxi POST /proxies "{\"name\":\"$name\",\"listen\":\"127.0.0.1:$port\",\"upstream\":\"$upstream\",\"enabled\":true}" \
                        >/dev/null; then
                        echo "$port"
                        return 0
                fi
        done
        allvars_log "toxi_proxy: cannot create $name -> $upstream"
        return 1
}

# _toxi_add NAME TOXIC TYPE STREAM ATTRIBUTES
_toxi_add() {
        _toxi POST "/proxies/$1/toxics" \
                "{\"name\":\"$2\",\"type\":\"$3\",\"stream\":\"$4\",\"toxicity\":1,\"attributes\":$5}" >/dev/null
}

toxi_partition() {
        local name=$1 dir=${2:-both} s
        for s in upstream downstream; do
                [[ $dir == both || $dir == "${s%stream}" ]] || continue
                _toxi_add "$name" "cut_$s" timeout "$s" '{"timeout":0}' || return 1
        done
}

toxi_latency() {
        local name=$1 ms=$2 s
        for s in upstream downstream; do
                _toxi_add "$name" "slow_$s" latency "$s" "{\"latency\":$ms,\"jitter\":0}" || return 1
        done
}

toxi_heal() {
        local name=$1 t
        for t in $(_toxi GET "/proxies/$name/toxics" | jq -r '.[].name'); do
                _toxi DELETE "/proxies/$name/toxics/$t" >/dev/null || return 1
        done
}
