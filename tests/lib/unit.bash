# allvarsd under a real systemd (tests/lib/systemd.bash), set up as deployed:
# the database made with deploy/roles.sql and migrated as allvarsd_owner, the
# daemon as allvarsd_runtime, its configuration made from
# deploy/allvarsd.conf.example with only endpoints and topics changed, the
# pepper and the database password as the unit's credentials. bats; needs the
# PostgreSQL of tests/lib/pg.sh and a real broker ($ALLVARS_KAFKA_BOOTSTRAP).

source "$(dirname "${BASH_SOURCE[0]}")/systemd.bash"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${ALLVARS_BUILD:-$ROOT/build}
# The file state shared by the tests of one bats file.
S=${BATS_FILE_TMPDIR:-${T:-/tmp}}

unit_skip_unless_possible() {
        [[ $EUID -eq 0 ]] || skip "needs root (namespaces, mounts, cgroups)"
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        [[ -x /lib/systemd/systemd ]] || skip "no systemd (Debian package systemd)"
}

sql() { psql -XAtq -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

# unit_db: a database set up as README says: createdb, roles.sql in it (as the
# superuser, the DBA's part), then the migrations as allvarsd_owner.
unit_db() {
        DB=sd_${BASHPID}_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
        echo "DB=$DB" >> "$S/env"
        createdb "$DB" || return 1
        "$ROOT/tests/lib/roles-sql" "$DB" \
                -v owner_password=owner-secret -v runtime_password=runtime-secret >/dev/null
        head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$S/pepper"
        printf '%s\n' runtime-secret > "$S/db-password"
        cat > "$S/migrate.conf" <<EOF
kafka.embedded = true
database.conninfo = host=127.0.0.1 port=$PGPORT dbname=$DB user=allvarsd_owner
database.password = @file:$S/owner-password
pepper = @file:$S/pepper
EOF
        printf '%s\n' owner-secret > "$S/owner-password"
        "$BUILD/allvarsd" --config "$S/migrate.conf" --migrate --schemas "$ROOT/schemas"
}

# unit_topics: this file's own topics on the shared broker, under a fresh prefix.
unit_topics() {
        PREFIX=sd$RANDOM$RANDOM.
        echo "PREFIX=$PREFIX" >> "$S/env"
        "$BUILD/tests/kafka-topics" "$ALLVARS_KAFKA_BOOTSTRAP" create 4 "${PREFIX}police.referrals.v1" \
                "${PREFIX}allvarssamtal.outcomes.v1" "${PREFIX}allvarssamtal.scheduling.v1" \
                "${PREFIX}police.feedback.v1" "${PREFIX}allvarssamtal.alerts.v1" \
                "${PREFIX}allvarssamtal.deadletter.v1"
}

# unit_conf [EXTRA LINES...]: the example configuration with this test's
# endpoints and topics, on stdout.
unit_conf() {
        # The test broker on loopback speaks plaintext: the example's TLS lines go.
        sed -e "s|^kafka.bootstrap.servers = .*|kafka.bootstrap.servers = $ALLVARS_KAFKA_BOOTSTRAP|" \
            -e "/^kafka.security.protocol = /d" -e "/^kafka.ssl.ca.location = /d" \
            -e "s|^database.conninfo = .*|database.conninfo = host=127.0.0.1 port=$PGPORT dbname=$DB user=allvarsd_runtime application_name=allvarsd|" \
            "$ROOT/deploy/allvarsd.conf.example"
        local t
        for t in referrals:police.referrals.v1 outcomes:allvarssamtal.outcomes.v1 \
                 scheduling:allvarssamtal.scheduling.v1 feedback:police.feedback.v1 \
                 alerts:allvarssamtal.alerts.v1 dead_letter:allvarssamtal.deadletter.v1; do
                echo "topics.${t%%:*} = $PREFIX${t#*:}"
        done
        echo "kafka.group.id = ${PREFIX}allvarsd"
        # A quick group join; the rest is the example's.
        echo "kafka.session.timeout.ms = 6000"
        echo "kafka.heartbeat.interval.ms = 500"
        echo "relay.poll_ms = 100"
        local l
        for l in "$@"; do echo "$l"; done
}

# unit_write_conf [EXTRA LINES...]: /etc/allvarsd/allvarsd.conf inside.
unit_write_conf() { unit_conf "$@" > "$(sd_path /etc/allvarsd/allvarsd.conf)"; }

# unit_credentials: the secrets where the unit's LoadCredential= reads them,
# root-only, as the tmpfiles.d file declares.
unit_credentials() {
        local d
        d=$(sd_path /etc/allvarsd/credentials)
        install -d -m 0700 "$d"
        install -m 0600 "$S/pepper" "$d/pepper"
        install -m 0600 "$S/db-password" "$d/db-password"
}

unit_load_env() { [[ -f $S/env ]] && source "$S/env"; }

# referral EXAMPLE ID: produce examples/referrals/EXAMPLE.txtpb as referral ID.
referral() {
        sed "s/^referral_id: .*/referral_id: \"$2\"/" "$ROOT/examples/referrals/$1.txtpb" |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto > "$S/msg.bin"
        kcat -P -b "$ALLVARS_KAFKA_BOOTSTRAP" -t "${PREFIX}police.referrals.v1" -k "$2" "$S/msg.bin"
}

decided() { [[ $(sql "select count(*) from allvarsd.decisions where referral_id = '$1'") -eq 1 ]]; }

# show PROPERTY...: systemctl show -p ... --value for allvarsd.service.
show() {
        local args=() p
        for p in "$@"; do args+=(-p "$p"); done
        sd_systemctl show "${args[@]}" --value allvarsd.service
}

# journal_since CURSOR_FILE ARGS...: the unit's journal after the cursor in the file.
unit_journal() { sd_journal -u allvarsd.service "$@"; }

unit_teardown_file() {
        unit_load_env
        if [[ -n ${SD_PID:-} ]]; then
                echo "--- systemctl status allvarsd ---"
                sd_systemctl status allvarsd.service 2>&1 || true
                echo "--- journal of allvarsd.service (last 60 lines) ---"
                sd_journal -u allvarsd.service -n 60 2>&1 || true
        fi
        sd_poweroff
        [[ -n ${DB:-} ]] && dropdb --if-exists --force "$DB" 2>/dev/null
        return 0
}
