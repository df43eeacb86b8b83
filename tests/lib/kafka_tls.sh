# A Kafka broker with a TLS + SASL/SCRAM listener, for tests (bash; source it).
# Built on tests/lib/kafka.sh: the same one-node KRaft broker, which keeps its
# PLAINTEXT client listener and its controller listener on loopback (tools and
# test producers use those), and gains a SASL_SSL listener on 127.0.0.1.
#
#   kafka_tls_start KEYSTORE_PEM KEY_PASSWORD CA_PEM SCRAM_USER SCRAM_PASSWORD
#       KEYSTORE_PEM: the server's key (encrypted PKCS#8) and certificate chain in
#       one PEM file (tests/lib/tls.bash: tls_pem_keystore); the listener uses
#       ssl.keystore.type=PEM. The SCRAM-SHA-512 credential is created through
#       the PLAINTEXT listener (ConfigCommand, KIP-554). The listener also takes
#       SASL/PLAIN for the same user and password (librdkafka < 2.6.1 cannot log in
#       to Kafka 4.x with SCRAM: librdkafka#4895). Returns once kcat logs in over
#       TLS (PLAIN), verifying the broker against CA_PEM.
#       Exports, besides what kafka_start exports: ALLVARS_KAFKA_TLS_PORT and
#       ALLVARS_KAFKA_TLS_BOOTSTRAP (127.0.0.1:PORT, the SASL_SSL listener).
#   kafka_tls_kcat CA_PEM USER PASSWORD KCAT-ARGS...
#       kcat over the SASL_SSL listener, verifying the broker against CA_PEM
#       (SCRAM-SHA-512; a later -X sasl.mechanisms=PLAIN overrides it).
#   kafka_tls_java_login CA_PEM USER PASSWORD MECHANISM
#       log in over the SASL_SSL listener with Kafka's own Java client (it describes
#       USER's SCRAM credentials); 0 when that worked. About 2 s (a JVM start).
#
# Stop it with kafka_stop (kafka.sh). kafka.sh has no hook between writing
# server.properties and starting the broker, so the broker is started plain
# once, stopped, given the listener and started again (about 4 s more).

source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"

kafka_tls_start() {
        local keystore=${1:-} keypass=${2:-} ca=${3:-} user=${4:-} pass=${5:-} props port
        [[ -r $keystore && -n $keypass && -r $ca && -n $user && -n $pass ]] || {
                allvars_log "kafka_tls_start KEYSTORE_PEM KEY_PASSWORD CA_PEM SCRAM_USER SCRAM_PASSWORD"
                return 2
        }
        kafka_start || return 1
        props=$ALLVARS_KAFKA_DIR/server.properties
        allvars_free_port port || { kafka_stop; return 1; }
        kafka_stop_only term || { kafka_stop; return 1; }
        # The listener is named after its protocol: listener.name.sasl_ssl.* configure it alone.
        sed -i -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$port|" \
                -e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$port|" \
                -e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" "$props" || {
                kafka_stop; return 1; }
        cat >>"$props" <<EOF
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user="$pass";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$keystore
listener.name.sasl_ssl.ssl.key.password=$keypass
listener.name.sasl_ssl.ssl.client.auth=none
EOF
        if ! kafka_start_again; then
                allvars_log "kafka_tls_start: the broker did not start with the SASL_SSL listener"
                kafka_stop
                return 1
        fi
        if ! _kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$ALLVARS_KAFKA_BOOTSTRAP" --alter \
                --entity-type users --entity-name "$user" \
                --add-config "SCRAM-SHA-512=[iterations=4096,password=$pass]" >>"$ALLVARS_KAFKA_DIR/stdout.log" 2>&1; then
                allvars_log "kafka_tls_start: creating the SCRAM credential failed"
                _kafka_show_log
                kafka_stop
                return 1
        fi
        export ALLVARS_KAFKA_TLS_PORT=$port
        export ALLVARS_KAFKA_TLS_BOOTSTRAP=127.0.0.1:$port
        if ! allvars_wait 30 _kafka_tls_ready "$ca" "$user" "$pass"; then
                allvars_log "kafka_tls_start: no login over TLS; last attempt:"
                _kafka_tls_ready "$ca" "$user" "$pass" verbose
                _kafka_show_log
                kafka_stop
                unset ALLVARS_KAFKA_TLS_PORT ALLVARS_KAFKA_TLS_BOOTSTRAP
                return 1
        fi
}

_kafka_tls_ready() {
        local out
        _kafka_tls_kcat_argv "$1" "$2" "$3"
        out=$(timeout 10 "${_KAFKA_TLS_KCAT[@]}" -X sasl.mechanisms=PLAIN -L -m 5 -X topic.metadata.refresh.interval.ms=-1 2>&1)
        [[ ${4:-} == verbose ]] && printf '%s\n' "$out" | tail -n 5 >&2
        grep -q '^ *broker 1 at 127.0.0.1:' <<<"$out"
}

# The kcat command line, as an array (timeout(1) cannot run a shell function).
_kafka_tls_kcat_argv() {
        _KAFKA_TLS_KCAT=(kcat -b "${ALLVARS_KAFKA_TLS_BOOTSTRAP:?no TLS broker}" -X security.protocol=SASL_SSL
                -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username="$2" -X sasl.password="$3"
                -X ssl.ca.location="$1")
}

kafka_tls_kcat() {
        _kafka_tls_kcat_argv "$1" "$2" "$3"
        shift 3
        "${_KAFKA_TLS_KCAT[@]}" "$@"
}

kafka_tls_java_login() {
        local ca=$1 user=$2 pass=$3 mech=$4 module props out rc
        case $mech in
        SCRAM-*) module=org.apache.kafka.common.security.scram.ScramLoginModule ;;
        PLAIN) module=org.apache.kafka.common.security.plain.PlainLoginModule ;;
        *) allvars_log "kafka_tls_java_login: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN"; return 2 ;;
        esac
        props=$(mktemp "${TMPDIR:-/tmp}/allvars-kafka-client.XXXXXX") || return 1
        cat >"$props" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=$mech
sasl.jaas.config=$module required username="$user" password="$pass";
ssl.truststore.type=PEM
ssl.truststore.location=$ca
EOF
        out=$(_kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$ALLVARS_KAFKA_TLS_BOOTSTRAP" \
                --command-config "$props" --describe --entity-type users --entity-name "$user" 2>&1)
        rc=$?
        rm -f "$props"
        if ((rc != 0)) || ! grep -q "user-principal '$user'" <<<"$out"; then
                printf '%s\n' "$out" | tail -n 5 >&2
                return 1
        fi
}
