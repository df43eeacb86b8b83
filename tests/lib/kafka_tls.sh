# A Kafka broker with a TLS + SASL listener, for tests (bash; source it).
# Built on tests/lib/kafka.sh: the same one-node KRaft broker, which keeps its
# PLAINTEXT client listener and its controller listener on loopback (tools and
# test producers use those), and gains a SASL_SSL listener on 127.0.0.1.
#
#   kafka_tls_start KEYSTORE_PEM KEY_PASSWORD CA_PEM SASL_USER SASL_PASSWORD [MECHANISMS]
#       KEYSTORE_PEM: the server's key (encrypted PKCS#8) and certificate chain in
#       one PEM file (tests/lib/tls.bash: tls_pem_keystore); the listener uses
#       ssl.keystore.type=PEM and does not ask for client certificates.
#       MECHANISMS: the SASL mechanisms the listener takes, comma separated, from
#       SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN; default SCRAM-SHA-512,PLAIN (PLAIN
#       because librdkafka < 2.6.1 cannot log in to Kafka 4.x with SCRAM:
#       librdkafka#4895). The SCRAM credentials of SASL_USER are written into the
#       cluster metadata when the storage is formatted (kafka-storage format
#       --add-scram, KIP-900: KRaft has no ZooKeeper to hold them), so they are
#       there before the broker takes its first connection; PLAIN checks the JAAS
#       user_SASL_USER entry. Returns once kcat logs in over TLS, verifying the
#       broker against CA_PEM, with PLAIN when the listener takes it (any
#       librdkafka can), else with the first mechanism.
#       The broker is the one ALLVARS_KAFKA_POM names (kafka.sh: Kafka 4 by default,
#       tests/kafka-3.9/pom.xml for Kafka 3.9, which accepts librdkafka 2.0.2's SCRAM).
#       Exports, besides what kafka_start exports: ALLVARS_KAFKA_TLS_PORT and
#       ALLVARS_KAFKA_TLS_BOOTSTRAP (127.0.0.1:PORT, the SASL_SSL listener).
#   kafka_tls_kcat CA_PEM USER PASSWORD KCAT-ARGS...
#       kcat over the SASL_SSL listener, verifying the broker against CA_PEM and its
#       name (ssl.endpoint.identification.algorithm=https) (SCRAM-SHA-512; a later
#       -X sasl.mechanisms=... overrides it).
#   kafka_tls_java_login CA_PEM USER PASSWORD MECHANISM
#       log in over the SASL_SSL listener with Kafka's own Java client (it describes
#       USER's SCRAM credentials); 0 when that worked. About 2 s (a JVM start).
#
# Stop it with kafka_stop (kafka.sh).

source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"

kafka_tls_start() {
        local keystore=${1:-} keypass=${2:-} ca=${3:-} user=${4:-} pass=${5:-} mechs=${6:-SCRAM-SHA-512,PLAIN}
        local tls_port= login_mech m format=()
        [[ -r $keystore && -n $keypass && -r $ca && -n $user && -n $pass ]] || {
                allvars_log "kafka_tls_start KEYSTORE_PEM KEY_PASSWORD CA_PEM SASL_USER SASL_PASSWORD [MECHANISMS]"
                return 2
        }
        # Values go unquoted into server.properties and the --add-scram syntax.
        [[ $user =~ ^[A-Za-z0-9_.-]+$ && $pass =~ ^[A-Za-z0-9_.-]+$ ]] || {
                allvars_log "kafka_tls_start: user and password: letters, digits, _ . - only"
                return 2
        }
        for m in ${mechs//,/ }; do
                case $m in
                SCRAM-SHA-256 | SCRAM-SHA-512) format+=(--add-scram "$m=[name=$user,password=$pass]") ;;
                PLAIN) login_mech=PLAIN ;;
                *) allvars_log "kafka_tls_start: unknown SASL mechanism $m"; return 2 ;;
                esac
        done
        login_mech=${login_mech:-${mechs%%,*}}
        # _kafka_tls_props sees this function's locals (bash's dynamic scope) and sets tls_port.
        kafka_start _kafka_tls_props "${format[@]}" || return 1
        export ALLVARS_KAFKA_TLS_PORT=$tls_port
        export ALLVARS_KAFKA_TLS_BOOTSTRAP=127.0.0.1:$tls_port
        if ! allvars_wait 30 _kafka_tls_ready "$ca" "$user" "$pass" "$login_mech"; then
                allvars_log "kafka_tls_start: no $login_mech login over TLS; last attempt:"
                _kafka_tls_ready "$ca" "$user" "$pass" "$login_mech" verbose
                _kafka_show_log
                kafka_stop
                unset ALLVARS_KAFKA_TLS_PORT ALLVARS_KAFKA_TLS_BOOTSTRAP
                return 1
        fi
}

# _kafka_tls_props SERVER_PROPERTIES: kafka_start's hook, called for each attempt (fresh ports).
_kafka_tls_props() {
        local props=$1 m lower
        allvars_free_port tls_port || return 1
        # The listener is named after its protocol: listener.name.sasl_ssl.* configure it alone.
        sed -i -e "s|^listeners=.*|&,SASL_SSL://127.0.0.1:$tls_port|" \
                -e "s|^advertised.listeners=.*|&,SASL_SSL://127.0.0.1:$tls_port|" \
                -e "s|^listener.security.protocol.map=.*|&,SASL_SSL:SASL_SSL|" "$props" || return 1
        {
                echo "sasl.enabled.mechanisms=$mechs"
                for m in ${mechs//,/ }; do
                        lower=${m,,}
                        case $m in
                        SCRAM-*)
                                echo "listener.name.sasl_ssl.$lower.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
                                ;;
                        PLAIN)
                                echo "listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$user=\"$pass\";"
                                ;;
                        esac
                done
                echo "listener.name.sasl_ssl.ssl.keystore.type=PEM"
                echo "listener.name.sasl_ssl.ssl.keystore.location=$keystore"
                echo "listener.name.sasl_ssl.ssl.key.password=$keypass"
                echo "listener.name.sasl_ssl.ssl.client.auth=none"
        } >>"$props"
}

# _kafka_tls_ready CA USER PASSWORD MECHANISM [verbose]
_kafka_tls_ready() {
        local out
        _kafka_tls_kcat_argv "$1" "$2" "$3"
        out=$(timeout 10 "${_KAFKA_TLS_KCAT[@]}" -X sasl.mechanisms="$4" -L -m 5 -X topic.metadata.refresh.interval.ms=-1 2>&1)
        [[ ${5:-} == verbose ]] && printf '%s\n' "$out" | tail -n 5 >&2
        grep -q '^ *broker 1 at 127.0.0.1:' <<<"$out"
}

# The kcat command line, as an array (timeout(1) cannot run a shell function).
_kafka_tls_kcat_argv() {
        _KAFKA_TLS_KCAT=(kcat -b "${ALLVARS_KAFKA_TLS_BOOTSTRAP:?no TLS broker}" -X security.protocol=SASL_SSL
                -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username="$2" -X sasl.password="$3"
                -X ssl.ca.location="$1" -X ssl.endpoint.identification.algorithm=https)
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
