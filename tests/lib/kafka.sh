# A real Apache Kafka broker for tests (bash; source it, do not run it).
#
# One node in KRaft mode, broker and controller combined, from the Maven Central
# jars named in tests/kafka/pom.xml (Kafka 4; ALLVARS_KAFKA_POM=tests/kafka-3.9/pom.xml
# picks Kafka 3.9, see that pom), run with Debian's Java 17, on loopback only.
# A short broker session (2.5 s) lets a broker restarted after SIGKILL rejoin quickly:
# the controller must first fence the old incarnation.
#
#   kafka_fetch                    resolve the jars once into the cache (mvn); no-op when cached
#   kafka_start [PROPS_FUNC [FORMAT_ARG...]]
#                                  format storage in a new temp dir, start, wait until ready;
#                                  PROPS_FUNC (optional) is called with the server.properties
#                                  path once it is written (again on a port retry), FORMAT_ARGs
#                                  go to `kafka-storage format` (e.g. --add-scram CREDENTIAL)
#   kafka_stop                     stop (TERM, then KILL) and remove the dir; safe to call twice;
#                                  a broker inherited from tests/run is only forgotten (see pg.sh)
#   kafka_restart [term|kill]      stop the broker (gracefully, or SIGKILL) and start it again,
#                                  same data, same ports
#   kafka_stop_only [term|kill]    stop, keep the data;  kafka_start_again  start the kept data
#   kafka_create_topic NAME PARTITIONS [KEY=VALUE...]
#                                  create a topic (replication factor 1, topic configs optional)
#                                  and wait until every partition has a leader
#   kafka_park NAME                set the current broker aside, still running and owned: its
#                                  variables are saved under NAME and unset, so that kafka_start
#                                  starts a second one;  kafka_unpark NAME  makes it current
#                                  again (after kafka_stop or kafka_park of the other one)
#
# kafka_start exports
#   ALLVARS_KAFKA_BOOTSTRAP=127.0.0.1:PORT, ALLVARS_KAFKA_PORT, ALLVARS_KAFKA_CONTROLLER_PORT,
#   ALLVARS_KAFKA_DIR (temp dir: server.properties, data/, server.log, stdout.log),
#   ALLVARS_KAFKA_PID (the java process; $ALLVARS_KAFKA_DIR/kafka.pid stays current
#   after a kafka_restart in another process)
# kafka_fetch exports ALLVARS_KAFKA_LIB (the jar directory) and ALLVARS_KAFKA_ETC (the pom's
# directory, which holds the log configuration: log4j2.xml and log4j2-tools.xml for Kafka 4,
# log4j.properties and log4j-tools.properties for Kafka 3.9's reload4j).
#
# Settings: ALLVARS_KAFKA_POM (default tests/kafka/pom.xml), ALLVARS_KAFKA_CACHE (default
# $XDG_CACHE_HOME/allvarsd/kafka when XDG_CACHE_HOME is set, else <repo>/.cache/kafka; one
# subdirectory per pom content), ALLVARS_JAVA (default java), ALLVARS_KAFKA_START_TIMEOUT
# (seconds, default 120), ALLVARS_KAFKA_HEAP (default 512m).
# The caller registers the cleanup first:
#   source tests/lib/kafka.sh; allvars_cleanup_add kafka_stop; kafka_start || exit 1

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

_kafka_pom() { echo "${ALLVARS_KAFKA_POM:-$ALLVARS_ROOT/tests/kafka/pom.xml}"; }

_kafka_cache() {
        if [[ -n ${ALLVARS_KAFKA_CACHE:-} ]]; then
                echo "$ALLVARS_KAFKA_CACHE"
        elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
                echo "$XDG_CACHE_HOME/allvarsd/kafka"
        else
                echo "$ALLVARS_ROOT/.cache/kafka"
        fi
}

kafka_fetch() {
        local pom key dest tmp
        pom=$(_kafka_pom)
        [[ -r $pom ]] || { allvars_log "kafka_fetch: no $pom"; return 1; }
        # Keyed by the pom's content: a new version in the pom fetches anew, and the
        # Kafka 4 and 3.9 jars sit side by side.
        key=$(sha256sum "$pom" | cut -c1-16) || return 1
        dest=$(_kafka_cache)/$key
        if [[ ! -f $dest/complete ]]; then
                command -v mvn >/dev/null || { allvars_log "kafka_fetch: mvn not found (install maven)"; return 1; }
                mkdir -p "$(dirname "$dest")" || return 1
                tmp=$(mktemp -d "$(dirname "$dest")/fetch.XXXXXX") || return 1
                if ! timeout --kill-after=10 "${ALLVARS_KAFKA_FETCH_TIMEOUT:-900}" \
                        mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
                        -DoutputDirectory="$tmp/lib" </dev/null >"$tmp/mvn.log" 2>&1; then
                        allvars_log "kafka_fetch: mvn failed:"
                        tail -n 30 "$tmp/mvn.log" >&2
                        rm -rf "$tmp"
                        return 1
                fi
                touch "$tmp/complete"
                rm -rf "$dest"
                # Another run may have finished first: either copy will do.
                mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"
                [[ -f $dest/complete ]] || return 1
        fi
        export ALLVARS_KAFKA_LIB=$dest/lib
        ALLVARS_KAFKA_ETC=$(cd "$(dirname "$pom")" && pwd) || return 1
        export ALLVARS_KAFKA_ETC
}

# The java command line, as an array (timeout(1) cannot run a shell function).
_kafka_java_argv() {
        _KAFKA_JAVA=("${ALLVARS_JAVA:-java}" -Djava.awt.headless=true -cp "$ALLVARS_KAFKA_LIB/*")
}

# _kafka_log_argv server|tools: the logging properties for the jars' logging library.
# ALLVARS_KAFKA_ETC may be unset in a script that inherited the runner's broker (Kafka 4).
_kafka_log_argv() {
        local etc=${ALLVARS_KAFKA_ETC:-$ALLVARS_ROOT/tests/kafka} suffix=
        [[ $1 == tools ]] && suffix=-tools
        _KAFKA_LOG=()
        if [[ -f $etc/log4j2$suffix.xml ]]; then
                _KAFKA_LOG+=(-Dlog4j2.configurationFile="$etc/log4j2$suffix.xml")
        fi
        if [[ -f $etc/log4j$suffix.properties ]]; then
                _KAFKA_LOG+=(-Dlog4j.configuration="file:$etc/log4j$suffix.properties")
        fi
}

_kafka_tool_argv() {
        _kafka_java_argv
        _kafka_log_argv tools
        _KAFKA_TOOL=("${_KAFKA_JAVA[@]}" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "${_KAFKA_LOG[@]}")
}

_kafka_tool() {
        _kafka_tool_argv
        timeout --kill-after=5 60 "${_KAFKA_TOOL[@]}" "$@"
}

_kafka_pid() {
        local pid
        pid=$(cat "${ALLVARS_KAFKA_DIR:-/nonexistent}/kafka.pid" 2>/dev/null)
        [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
}

_kafka_alive() {
        local pid
        pid=$(_kafka_pid) && kill -0 "$pid" 2>/dev/null
}

# Ready when the broker answers a metadata request on its client listener.
_kafka_ready() {
        timeout 10 kcat -b "127.0.0.1:$ALLVARS_KAFKA_PORT" -L -m 5 -X topic.metadata.refresh.interval.ms=-1 \
                2>/dev/null | grep -q '^ *broker 1 at 127.0.0.1:'
}

_kafka_show_log() {
        local f
        for f in stdout.log server.log; do
                [[ -f ${ALLVARS_KAFKA_DIR:-}/$f ]] || continue
                echo "--- $f (tail) ---" >&2
                tail -n 25 "$ALLVARS_KAFKA_DIR/$f" >&2
        done
        return 0
}

_kafka_launch() {
        local dir=$ALLVARS_KAFKA_DIR deadline
        _kafka_java_argv
        _kafka_log_argv server
        "${_KAFKA_JAVA[@]}" -Xms128m -Xmx"${ALLVARS_KAFKA_HEAP:-512m}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
                "${_KAFKA_LOG[@]}" -Dkafka.logs.dir="$dir" \
                kafka.Kafka "$dir/server.properties" </dev/null >>"$dir/stdout.log" 2>&1 &
        export ALLVARS_KAFKA_PID=$!
        # Not a job of this shell: no "Killed" notices, and no wait needed (bash reaps it).
        disown "$ALLVARS_KAFKA_PID" 2>/dev/null
        # The pid file, not the variable, is the truth: a child process may restart the broker.
        echo "$ALLVARS_KAFKA_PID" >"$dir/kafka.pid"
        deadline=$((SECONDS + ${ALLVARS_KAFKA_START_TIMEOUT:-120}))
        while ((SECONDS < deadline)); do
                if ! _kafka_alive; then
                        allvars_log "the Kafka broker exited during startup"
                        _kafka_show_log
                        return 1
                fi
                _kafka_ready && return 0
                sleep 0.3
        done
        allvars_log "the Kafka broker was not ready after ${ALLVARS_KAFKA_START_TIMEOUT:-120}s"
        _kafka_show_log
        return 1
}

kafka_start() {
        if [[ -n ${ALLVARS_KAFKA_DIR:-} && ${_ALLVARS_KAFKA_MINE:-} == "$ALLVARS_KAFKA_DIR" ]]; then
                allvars_log "kafka_start: a broker is already running in $ALLVARS_KAFKA_DIR"
                return 1
        fi
        command -v kcat >/dev/null || { allvars_log "kafka_start: kcat not found"; return 1; }
        kafka_fetch || return 1
        local props_func=${1:-} dir attempt cluster_id
        (($# > 0)) && shift
        dir=$(mktemp -d "${TMPDIR:-/tmp}/allvars-kafka.XXXXXX") || return 1
        ALLVARS_KAFKA_DIR=$dir
        export ALLVARS_KAFKA_DIR
        _ALLVARS_KAFKA_MINE=$dir        # not exported: see pg.sh
        for attempt in 1 2 3; do
                allvars_free_port ALLVARS_KAFKA_PORT || { kafka_stop; return 1; }
                allvars_free_port ALLVARS_KAFKA_CONTROLLER_PORT || { kafka_stop; return 1; }
                rm -rf "$dir/data" "$dir/server.log" "$dir/stdout.log"
                cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$ALLVARS_KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$ALLVARS_KAFKA_PORT,CONTROLLER://127.0.0.1:$ALLVARS_KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$ALLVARS_KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=16777216
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=2500
EOF
                if [[ -n $props_func ]] && ! "$props_func" "$dir/server.properties"; then
                        allvars_log "kafka_start: $props_func failed"
                        kafka_stop
                        return 1
                fi
                cluster_id=$(_kafka_tool kafka.tools.StorageTool random-uuid 2>>"$dir/stdout.log") || {
                        allvars_log "StorageTool random-uuid failed"; _kafka_show_log; kafka_stop; return 1; }
                if ! _kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
                        --standalone "$@" >>"$dir/stdout.log" 2>&1; then
                        allvars_log "StorageTool format failed"
                        _kafka_show_log
                        kafka_stop
                        return 1
                fi
                if _kafka_launch; then
                        break
                fi
                _kafka_kill KILL
                # Retry only when a port was taken between the check and the bind.
                if ((attempt == 3)) || ! grep -qi 'Address already in use' "$dir"/*.log 2>/dev/null; then
                        kafka_stop
                        return 1
                fi
        done
        export ALLVARS_KAFKA_PORT ALLVARS_KAFKA_CONTROLLER_PORT
        export ALLVARS_KAFKA_BOOTSTRAP=127.0.0.1:$ALLVARS_KAFKA_PORT
}

# _kafka_kill TERM|KILL: stop the java process, bounded.
_kafka_kill() {
        local sig=${1:-TERM} pid
        pid=$(_kafka_pid) || return 0
        if kill -0 "$pid" 2>/dev/null; then
                kill -"$sig" "$pid" 2>/dev/null
                # A controlled shutdown takes a few seconds; do not wait forever.
                if ! allvars_wait 30 bash -c "! kill -0 $pid"; then
                        kill -KILL "$pid" 2>/dev/null
                        allvars_wait 10 bash -c "! kill -0 $pid" || true
                fi
        fi
        rm -f "$ALLVARS_KAFKA_DIR/kafka.pid"
        return 0
}

kafka_stop() {
        [[ -n ${ALLVARS_KAFKA_DIR:-} ]] || return 0
        if [[ ${_ALLVARS_KAFKA_MINE:-} == "$ALLVARS_KAFKA_DIR" ]]; then
                _kafka_kill TERM
                rm -rf "$ALLVARS_KAFKA_DIR"
        fi
        # A broker inherited from the runner is only forgotten here.
        unset _ALLVARS_KAFKA_MINE ALLVARS_KAFKA_DIR ALLVARS_KAFKA_BOOTSTRAP ALLVARS_KAFKA_PORT ALLVARS_KAFKA_CONTROLLER_PORT ALLVARS_KAFKA_PID
        return 0
}

# Everything kafka_park sets aside: kafka_start's and kafka_fetch's exports, kafka_tls.sh's,
# and the ownership mark.
_KAFKA_PARK_VARS=(ALLVARS_KAFKA_DIR ALLVARS_KAFKA_BOOTSTRAP ALLVARS_KAFKA_PORT ALLVARS_KAFKA_CONTROLLER_PORT
        ALLVARS_KAFKA_PID ALLVARS_KAFKA_LIB ALLVARS_KAFKA_ETC ALLVARS_KAFKA_TLS_PORT ALLVARS_KAFKA_TLS_BOOTSTRAP
        _ALLVARS_KAFKA_MINE)

kafka_park() {
        local name=${1:-} v
        [[ $name =~ ^[A-Za-z0-9_]+$ ]] || { allvars_log "kafka_park NAME (letters, digits, _)"; return 2; }
        [[ -n ${ALLVARS_KAFKA_DIR:-} ]] || { allvars_log "kafka_park: no broker"; return 1; }
        for v in "${_KAFKA_PARK_VARS[@]}"; do
                if [[ -v $v ]]; then
                        declare -g "_KAFKA_PARKED_${name}_$v=${!v}"
                else
                        unset "_KAFKA_PARKED_${name}_$v"
                fi
                unset "$v"
        done
        declare -g "_KAFKA_PARKED_$name=1"
}

kafka_unpark() {
        local name=${1:-} v saved
        [[ $name =~ ^[A-Za-z0-9_]+$ ]] || { allvars_log "kafka_unpark NAME"; return 2; }
        saved=_KAFKA_PARKED_$name
        [[ -n ${!saved:-} ]] || return 1
        if [[ -n ${ALLVARS_KAFKA_DIR:-} ]]; then
                allvars_log "kafka_unpark: a broker is current (kafka_stop or kafka_park it first)"
                return 1
        fi
        for v in "${_KAFKA_PARK_VARS[@]}"; do
                saved=_KAFKA_PARKED_${name}_$v
                unset "$v"
                if [[ -v $saved ]]; then
                        declare -g "$v=${!saved}"
                        [[ $v == _* ]] || export "${v?}"
                        unset "$saved"
                fi
        done
        unset "_KAFKA_PARKED_$name"
}

kafka_stop_only() {
        local mode=${1:-term}
        [[ -n ${ALLVARS_KAFKA_DIR:-} ]] || { allvars_log "kafka_stop_only: no broker"; return 1; }
        case $mode in
        term) _kafka_kill TERM ;;
        kill) _kafka_kill KILL ;;
        *) allvars_log "kafka_stop_only [term|kill]"; return 2 ;;
        esac
}

kafka_start_again() {
        [[ -n ${ALLVARS_KAFKA_DIR:-} ]] || { allvars_log "kafka_start_again: no data (kafka_start first)"; return 1; }
        _kafka_alive && return 0
        _kafka_launch
}

kafka_restart() {
        kafka_stop_only "${1:-term}" && kafka_start_again
}

kafka_create_topic() {
        local name=${1:-} parts=${2:-} kv args=()
        [[ -n $name && $parts =~ ^[0-9]+$ ]] || { allvars_log "kafka_create_topic NAME PARTITIONS [KEY=VALUE...]"; return 2; }
        shift 2
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || { allvars_log "kafka_create_topic: no broker"; return 1; }
        for kv in "$@"; do args+=(--config "$kv"); done
        _kafka_tool org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "$ALLVARS_KAFKA_BOOTSTRAP" --create --if-not-exists \
                --topic "$name" --partitions "$parts" --replication-factor 1 "${args[@]}" >/dev/null || {
                allvars_log "kafka_create_topic $name $parts failed"
                return 1
        }
        # Every partition has a leader before a test produces to it.
        allvars_wait 30 _kafka_topic_ready "$name" "$parts"
}

_kafka_topic_ready() {
        local n
        n=$(timeout 10 kcat -b "$ALLVARS_KAFKA_BOOTSTRAP" -L -t "$1" -m 5 2>/dev/null |
                grep -c 'partition [0-9]*, leader 1,')
        [[ $n -eq $2 ]]
}
