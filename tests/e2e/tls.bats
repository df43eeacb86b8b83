#!/usr/bin/env bats
# allvarsd over TLS: PostgreSQL with sslmode=verify-full and a
# SCRAM password from a file, Kafka over SASL_SSL, against a throwaway CA made
# here. The file starts its own servers (the shared ones from tests/run have no
# TLS): a PostgreSQL cluster (tests/lib/pg.sh) that takes TCP connections only
# with TLS (hostssl + scram-sha-256, everything else rejected), and a Kafka broker
# (tests/lib/kafka_tls.sh) with a SASL_SSL listener beside its PLAINTEXT one;
# the test producers and the topic tool use PLAINTEXT, the daemon only SASL_SSL.
#
# SASL mechanism: SCRAM-SHA-512 needs librdkafka >= 2.6.1 against Kafka >= 4.0.
# Older librdkafka (Debian 12 has 2.0.2) repeats the client nonce in the SCRAM
# client-final-message, which Kafka 4.x rejects as invalid credentials
# (librdkafka#4895, fixed in 2.6.1; the Java client logs in with the same
# credential). With such a librdkafka the stream to the Kafka 4 broker runs over
# SASL_SSL with PLAIN, and a test shows the SCRAM failure there is a clear log
# line, not a crash. SCRAM itself is shown against a second broker, Kafka 3.9
# (tests/kafka-3.9/pom.xml), which accepts that librdkafka's proof: its SASL_SSL
# listener takes SCRAM-SHA-512 and SCRAM-SHA-256 only, so a login that works
# there is a SCRAM login.

load ../lib/daemon.bash
source "$ROOT/tests/lib/tls.bash"
source "$ROOT/tests/lib/pg.sh"
source "$ROOT/tests/lib/kafka_tls.sh"

KAFKA_USER=allvarsd

# librdkafka's version as the daemon links it (kcat uses the same system library).
librdkafka_version() {
        kcat -V 2>&1 | sed -n 's/.*librdkafka \([0-9][0-9.]*\).*/\1/p' | head -n 1
}

scram_works() {
        local v
        v=$(librdkafka_version)
        [[ -n $v ]] && [[ $(printf '%s\n2.6.1\n' "$v" | sort -V | head -n 1) == 2.6.1 ]]
}

setup_file() {
        command -v openssl >/dev/null || skip "openssl not installed"
        export TLS=$BATS_FILE_TMPDIR/tls
        mkdir -p "$TLS"
        tls_ca "$TLS/ca" "allvarsd test CA"
        # A second CA, which signed nothing the servers present.
        tls_ca "$TLS/wrong-ca" "some other CA"
        tls_server_cert "$TLS/ca" "$TLS/pg" localhost "DNS:localhost,IP:127.0.0.1"
        tls_server_cert "$TLS/ca" "$TLS/kafka" 127.0.0.1 "DNS:localhost,IP:127.0.0.1"
        openssl rand -hex 16 >"$TLS/keystore-password"
        tls_pem_keystore "$TLS/kafka" "$(cat "$TLS/keystore-password")"
        (umask 077
         openssl rand -hex 24 >"$TLS/owner-password"
         openssl rand -hex 24 >"$TLS/runtime-password"
         openssl rand -hex 24 >"$TLS/kafka-password")

        # PostgreSQL: a cluster of this file's own (the inherited one is only forgotten).
        pg_stop
        pg_start 3>&-
        local data=$ALLVARS_PG_DIR/data
        cp "$TLS/pg.chain.pem" "$data/server.crt"
        cp "$TLS/pg.key" "$data/server.key"
        chown --reference="$data" "$data/server.crt" "$data/server.key"
        chmod 0600 "$data/server.key"
        cat >>"$data/postgresql.auto.conf" <<EOF
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
EOF
        # The socket stays trust (the test's superuser); TCP only with TLS and a SCRAM password.
        cat >"$data/pg_hba.conf" <<EOF
local     all all                trust
hostssl   all all 127.0.0.1/32   scram-sha-256
hostnossl all all 127.0.0.1/32   reject
EOF
        pg_restart fast 3>&-

        # Kafka: brokers of this file's own with a SASL_SSL listener. First Kafka 3.9
        # for SCRAM (set aside with kafka_park), then the Kafka 4 of every other test.
        kafka_stop
        ALLVARS_KAFKA_POM=$ROOT/tests/kafka-3.9/pom.xml \
                kafka_tls_start "$TLS/kafka.keystore.pem" "$(cat "$TLS/keystore-password")" "$TLS/ca/ca.pem" \
                "$KAFKA_USER" "$(cat "$TLS/kafka-password")" SCRAM-SHA-512,SCRAM-SHA-256 3>&-
        export SCRAM_KAFKA=$ALLVARS_KAFKA_BOOTSTRAP SCRAM_KAFKA_TLS=$ALLVARS_KAFKA_TLS_BOOTSTRAP
        kafka_park scram
        kafka_tls_start "$TLS/kafka.keystore.pem" "$(cat "$TLS/keystore-password")" "$TLS/ca/ca.pem" \
                "$KAFKA_USER" "$(cat "$TLS/kafka-password")" 3>&-
}

teardown_file() {
        kafka_stop
        if kafka_unpark scram; then kafka_stop; fi
        pg_stop
}

setup() {
        db_create
        # roles.sql (the DBA's script) makes allvarsd_owner and allvarsd_runtime with passwords.
        "$ROOT/tests/lib/roles-sql" "$DB" \
                -v owner_password="$(cat "$TLS/owner-password")" \
                -v runtime_password="$(cat "$TLS/runtime-password")" >/dev/null
        real_kafka_topics
        PLAIN_KAFKA=$KAFKA
        MECH=PLAIN
        if scram_works; then MECH=SCRAM-SHA-512; fi
}

teardown() {
        teardown_daemons
}

# tls_conf NAME ROLE CA MECHANISM [EXTRA LINES...]: a configuration for the daemon that
# reaches PostgreSQL and Kafka only over TLS, verifying both servers against CA.
tls_conf() {
        local name=$1 role=$2 ca=$3 mech=$4
        shift 4
        KAFKA=$ALLVARS_KAFKA_TLS_BOOTSTRAP daemon_conf "$name" \
                "database.conninfo = host=localhost port=$PGPORT dbname=$DB user=allvarsd_$role sslmode=verify-full sslrootcert=$ca" \
                "database.password = @file:$TLS/$role-password" \
                "kafka.security.protocol = SASL_SSL" \
                "kafka.sasl.mechanisms = $mech" \
                "kafka.sasl.username = $KAFKA_USER" \
                "kafka.sasl.password = @file:$TLS/kafka-password" \
                "kafka.ssl.ca.location = $ca" \
                "$@"
}

# The broker takes PLAIN logins too (JAAS user_<name>), for librdkafka < 2.6.1.
tls_kcat() { kafka_tls_kcat "$TLS/ca/ca.pem" "$KAFKA_USER" "$(cat "$TLS/kafka-password")" -X sasl.mechanisms="$MECH" "$@"; }

# use_scram_broker: the rest of this test talks to the Kafka 3.9 broker (SCRAM only),
# on topics of its own there; the PLAINTEXT listener is for the test's producer.
use_scram_broker() {
        ALLVARS_KAFKA_BOOTSTRAP=$SCRAM_KAFKA
        ALLVARS_KAFKA_TLS_BOOTSTRAP=$SCRAM_KAFKA_TLS
        real_kafka_topics
        PLAIN_KAFKA=$KAFKA
        MECH=SCRAM-SHA-512
}

# published_is_outbox: the events, read back over SASL_SSL ($MECH), are exactly the
# outbox, by CloudEvents id, and every ELIGIBLE decision has its scheduling request.
published_is_outbox() {
        local t
        for t in allvarssamtal.scheduling.v1 police.feedback.v1 allvarssamtal.alerts.v1 allvarssamtal.deadletter.v1; do
                # kcat's simple consumer reads one topic (all its partitions) per run.
                tls_kcat -C -e -q -f '%h\n' -t "$TOPIC_PREFIX$t" || return 1
        done >"$T/headers"
        tr ',' '\n' <"$T/headers" | sed -n 's/^ce_id=//p' | sort >"$T/published"
        sql "select event_id from allvarsd.outbox_sent order by 1" >"$T/outbox"
        [[ -s $T/outbox ]] || return 1
        diff "$T/outbox" "$T/published" || return 1
        [[ $(grep -c 'ce_type=se.allvarssamtal.v1.SchedulingRequest' "$T/headers") -eq \
           $(sql "select count(*) from allvarsd.decisions where outcome = 'ELIGIBLE'") ]]
}

outbox_drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
log_has() { grep -qE "$2" "$T/$1.log"; }
alive() { kill -0 "$(daemon_pid "$1")" 2>/dev/null; }
# refused_cleanly SECRET_FILE...: daemon a is alive but never became ready; it stops
# with 0 on SIGTERM, logged no crash, and none of the secrets.
refused_cleanly() {
        local f
        alive a
        refute log_has a 'ready: group'
        daemon_stop a
        [[ $DAEMON_RC -eq 0 ]]
        refute grep -qiE 'segfault|sanitizer|assert|core dumped' "$T/a.log"
        for f in "$@"; do
                refute grep -qF "$(cat "$f")" "$T/a.log"
        done
}
# refute CMD...: CMD must fail. (bats' errexit ignores a "! CMD" that is not a test's last line.)
refute() {
        if "$@"; then
                echo "expected to fail: $*" >&2
                return 1
        fi
}

@test "tls: only TLS with a verified certificate and a SCRAM password reaches PostgreSQL" {
        local pw ci="host=localhost port=$PGPORT dbname=$DB user=allvarsd_runtime"
        pw=$(cat "$TLS/runtime-password")
        run env PGPASSWORD="$pw" psql -XAtq -d "$ci sslmode=verify-full sslrootcert=$TLS/ca/ca.pem" \
                -c "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"
        [[ $status -eq 0 && $output == t\|TLSv1.[23] ]]
        run env PGPASSWORD="$pw" psql -XAtq -d "$ci sslmode=disable" -c "select 1"
        [[ $status -ne 0 && $output == *'no encryption'* ]]
        run env PGPASSWORD="$pw" psql -XAtq -d "$ci sslmode=verify-full sslrootcert=$TLS/wrong-ca/ca.pem" -c "select 1"
        [[ $status -ne 0 && $output == *'certificate verify failed'* ]]
        # verify-full checks the name too (hostaddr connects, host is what the certificate must name).
        run env PGPASSWORD="$pw" psql -XAtq -d "host=elsewhere.test hostaddr=127.0.0.1 port=$PGPORT dbname=$DB
                user=allvarsd_runtime sslmode=verify-full sslrootcert=$TLS/ca/ca.pem" -c "select 1"
        [[ $status -ne 0 && $output == *'does not match host name "elsewhere.test"'* ]]
        run env PGPASSWORD=wrong psql -XAtq -d "$ci sslmode=verify-full sslrootcert=$TLS/ca/ca.pem" -c "select 1"
        [[ $status -ne 0 && $output == *'password authentication failed'* ]]
        # And the Kafka listener talks to nobody without TLS.
        run timeout 15 kcat -b "$ALLVARS_KAFKA_TLS_BOOTSTRAP" -L -m 3
        [[ $status -ne 0 ]]
}

@test "tls: referrals decided and events published over PostgreSQL TLS (verify-full) and Kafka SASL_SSL" {
        tls_conf owner owner "$TLS/ca/ca.pem" "$MECH"
        daemon_migrate owner
        tls_conf a runtime "$TLS/ca/ca.pem" "$MECH"
        daemon_start a
        daemon_ready a 60
        KAFKA=$PLAIN_KAFKA gen --count 120 --seed 61 --duplicates 10 --malformed 20 --ids-out "$T/ids"
        wait_for 90 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 60 outbox_drained
        check_exactly_once "$T/ids"

        # Every connection of the daemon's role came over TCP with TLS (the consumer's and the relay's).
        local conns
        conns=$(sql "select count(*) || ' ' || count(*) filter (where s.ssl and a.client_addr = '127.0.0.1')
                     from pg_stat_activity a join pg_stat_ssl s using (pid)
                     where a.usename = 'allvarsd_runtime' and a.datname = current_database()")
        read -r total tls <<<"$conns"
        [[ $total -ge 2 && $tls -eq $total ]]

        published_is_outbox

        # No TLS or authentication trouble was logged on the way.
        refute grep -qiE 'SSL error|SSL handshake|certificate verify|authentication (error|failed)' "$T/a.log"
        daemon_stop a
        [[ $DAEMON_RC -eq 0 ]]
}

@test "tls: PostgreSQL with a certificate from another CA: a clear log line, retries, no crash" {
        tls_conf owner owner "$TLS/ca/ca.pem" "$MECH"
        daemon_migrate owner
        # Only the database side has the wrong CA.
        tls_conf a runtime "$TLS/wrong-ca/ca.pem" "$MECH" "kafka.ssl.ca.location = $TLS/ca/ca.pem"
        daemon_start a
        wait_for 20 log_has a 'PostgreSQL unavailable: .*certificate verify failed'
        # It keeps trying (backoff) instead of exiting.
        wait_for 10 bash -c "[[ \$(grep -c 'PostgreSQL unavailable' '$T/a.log') -ge 2 ]]"
        # The password never reaches a server it could not verify, nor the log.
        refused_cleanly "$TLS/runtime-password"
}

@test "tls: Kafka with a certificate from another CA: a clear log line, no crash" {
        tls_conf owner owner "$TLS/ca/ca.pem" "$MECH"
        daemon_migrate owner
        tls_conf a runtime "$TLS/ca/ca.pem" "$MECH" "kafka.ssl.ca.location = $TLS/wrong-ca/ca.pem"
        daemon_start a
        wait_for 30 log_has a 'certificate verify failed'
        sleep 2
        refused_cleanly "$TLS/kafka-password"
}

@test "tls: SASL/SCRAM-SHA-512 over TLS to Kafka 4: decisions with librdkafka >= 2.6.1; older ones fail clearly, no crash" {
        tls_conf owner owner "$TLS/ca/ca.pem" SCRAM-SHA-512
        daemon_migrate owner
        tls_conf a runtime "$TLS/ca/ca.pem" SCRAM-SHA-512
        daemon_start a
        if scram_works; then
                daemon_ready a 60
                KAFKA=$PLAIN_KAFKA gen --count 30 --seed 62 --ids-out "$T/ids"
                wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
                check_exactly_once "$T/ids"
        else
                # librdkafka#4895: Kafka 4.x refuses the proof of librdkafka < 2.6.1.
                wait_for 30 log_has a 'SASL authentication error.*SCRAM-SHA-512'
                alive a
                refute log_has a 'ready: group'
                # The broker's SCRAM credential is right: Kafka's own (Java) client logs in with it.
                kafka_tls_java_login "$TLS/ca/ca.pem" "$KAFKA_USER" "$(cat "$TLS/kafka-password")" SCRAM-SHA-512
        fi
        daemon_stop a
        [[ $DAEMON_RC -eq 0 ]]
        refute grep -qF "$(cat "$TLS/kafka-password")" "$T/a.log"
}

@test "tls: SASL/SCRAM-SHA-512 over TLS to Kafka 3.9: referrals decided and events published, the broker verified" {
        use_scram_broker
        tls_conf owner owner "$TLS/ca/ca.pem" SCRAM-SHA-512
        daemon_migrate owner
        # The broker's certificate is checked against the test's CA and for its name
        # (127.0.0.1 is in its subjectAltName): librdkafka >= 2.0's default, said here.
        tls_conf a runtime "$TLS/ca/ca.pem" SCRAM-SHA-512 "kafka.ssl.endpoint.identification.algorithm = https"
        daemon_start a
        daemon_ready a 60
        KAFKA=$PLAIN_KAFKA gen --count 60 --seed 63 --duplicates 5 --malformed 10 --ids-out "$T/ids"
        wait_for 90 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 60 outbox_drained
        check_exactly_once "$T/ids"
        published_is_outbox

        # The listener takes SCRAM only: the stream above cannot have been a PLAIN login.
        run tls_kcat -X sasl.mechanisms=PLAIN -L -m 5 -X topic.metadata.refresh.interval.ms=-1
        [[ $status -ne 0 && $output == *'Unsupported SASL mechanism'* ]]
        # SCRAM-SHA-256 with the same library and credential works too.
        run tls_kcat -X sasl.mechanisms=SCRAM-SHA-256 -L -m 5 -X topic.metadata.refresh.interval.ms=-1
        [[ $status -eq 0 && $output == *"broker 1 at $SCRAM_KAFKA_TLS"* ]]

        refute grep -qiE 'SSL error|SSL handshake|certificate verify|authentication (error|failed)' "$T/a.log"
        daemon_stop a
        [[ $DAEMON_RC -eq 0 ]]
        refute grep -qF "$(cat "$TLS/kafka-password")" "$T/a.log"
}

@test "tls: SASL/SCRAM over TLS to Kafka 3.9 with a wrong password: a clear log line, no crash" {
        use_scram_broker
        tls_conf owner owner "$TLS/ca/ca.pem" SCRAM-SHA-512
        daemon_migrate owner
        (umask 077 && openssl rand -hex 24 >"$T/wrong-kafka-password")
        tls_conf a runtime "$TLS/ca/ca.pem" SCRAM-SHA-512 "kafka.sasl.password = @file:$T/wrong-kafka-password"
        daemon_start a
        wait_for 30 log_has a 'SASL authentication error.*invalid credentials.*SCRAM-SHA-512'
        # Not a TLS problem: the broker's certificate was accepted before the SASL exchange.
        refute log_has a 'certificate verify failed'
        sleep 2
        refused_cleanly "$T/wrong-kafka-password" "$TLS/kafka-password"
}
