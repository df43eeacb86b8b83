#!/usr/bin/env bats
# allvarsd and allvarsctl set up as README "Roles" says: the DBA runs
# deploy/roles.sql (with passwords), allvarsd_owner migrates, the daemon runs
# as allvarsd_runtime and allvarsctl as allvarsd_operator, both with their
# passwords from files over TCP. A PostgreSQL server of this file's own, whose
# pg_hba.conf asks those two roles for their SCRAM password on 127.0.0.1 (the
# shared test server trusts everyone), so that a wrong password is refused.
#
#   - a rejected outcome under the runtime role is a dead letter with its
#     reason; its partition moves on and the others are not held up; no
#     outage is logged;
#   - allvarsd --migrate and every allvarsctl subcommand fail at once, with one
#     line naming the fix, on a missing database, a wrong password, an unknown
#     role and a missing grant;
#   - --check-config refuses a configuration without Kafka and a pepper file
#     that group or others can read.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash

RUNTIME_PW=runtime-secret-1
OPERATOR_PW=operator-secret-2

setup_file() {
        source "$ROOT/tests/lib/pg.sh"
        pg_start
        export DEPLOYMENT_OWN_PG=$ALLVARS_PG_DIR
        local hba=$ALLVARS_PG_DIR/data/pg_hba.conf
        { echo "host all allvarsd_runtime 127.0.0.1/32 scram-sha-256"
          echo "host all allvarsd_operator 127.0.0.1/32 scram-sha-256"
          cat "$hba"; } > "$hba.new"
        cat "$hba.new" > "$hba"
        psql -XAtq -d postgres -c "select pg_reload_conf()" >/dev/null
        export PGHOST PGPORT PGUSER PGDATABASE ALLVARS_PG_DIR
}

teardown_file() {
        [[ -n ${DEPLOYMENT_OWN_PG:-} ]] || return 0
        source "$ROOT/tests/lib/pg.sh"
        ALLVARS_PG_DIR=$DEPLOYMENT_OWN_PG _ALLVARS_PG_MINE=$DEPLOYMENT_OWN_PG pg_stop
}

setup() {
        db_create
        # The DBA, as README says: the roles and their passwords, in the database.
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" -v runtime_password="$RUNTIME_PW" -v operator_password="$OPERATOR_PW" \
                -f "$ROOT/deploy/roles.sql" >/dev/null
        printf '%s\n' "$RUNTIME_PW" > "$T/runtime.pw"
        printf '%s\n' "$OPERATOR_PW" > "$T/operator.pw"
        chmod 600 "$T/runtime.pw" "$T/operator.pw" "$T/pepper"
        KAFKA=127.0.0.1:1       # replaced by mock_start where a test needs Kafka
        # The pepper as systemd hands it over (the example's @credential:pepper).
        export CREDENTIALS_DIRECTORY
        CREDENTIALS_DIRECTORY=$(deployed_credentials allvarsd_runtime)
        runtime_conf a
        # The owner migrates (on the socket, as the DBA's shell would).
        "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas" \
                --database "host=$PGHOST port=$PGPORT dbname=$DB user=allvarsd_owner"
        ctl_conf ctl
}

teardown() {
        teardown_daemons
}

# runtime_conf NAME [LINES...]: the daemon's configuration (the example's role,
# allvarsd_runtime) over TCP, its password from a file.
runtime_conf() {
        local name=$1
        shift
        PGHOST=127.0.0.1 daemon_conf "$name" "database.password = @file:$T/runtime.pw" "$@"
}

# ctl_conf NAME [DBNAME [PASSWORD_FILE]]: allvarsctl's own file, as allvarsd_operator over TCP.
ctl_conf() {
        printf 'database.conninfo = host=127.0.0.1 port=%s dbname=%s user=allvarsd_operator\n' "$PGPORT" "${2:-$DB}" \
                > "$T/$1.conf"
        printf 'database.password = @file:%s\nkafka.bootstrap.servers = %s\n' "${3:-$T/operator.pw}" "$KAFKA" \
                >> "$T/$1.conf"
}

ctl() { "$BUILD/allvarsctl" "$@"; }

# referral EXAMPLE ID: examples/referrals/EXAMPLE.txtpb under referral id ID, keyed by it.
referral() {
        sed "s/^referral_id: .*/referral_id: \"$2\"/" "$ROOT/examples/referrals/$1.txtpb" |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t police.referrals.v1 -k "$2" "$T/msg.bin"
}

# outcome KEY TEXT: one CaseOutcome in text format, keyed by KEY (one key: one partition, in order).
outcome() {
        printf '%s\n' "$2" | protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t allvarssamtal.outcomes.v1 -k "$1" "$T/msg.bin"
}

state_is() {
        [[ $(sql "select state from allvarsd.cases c join allvarsd.referrals r using (case_id)
                  where r.referral_id = '$1'") == "$2" ]]
}
count_is() { [[ $(sql "$1") -eq $2 ]]; }

# fails_at_once SECONDS NEEDLE CMD...: CMD exits non-zero within SECONDS with exactly one
# line of output (stdout and stderr together) that contains NEEDLE; $status is its exit status.
fails_at_once() {
        local limit=$1 needle=$2
        shift 2
        local start=$SECONDS
        run timeout 60 "$@"
        local took=$((SECONDS - start))
        echo "[$took s, status $status] $output" >&2
        [[ $status -ne 0 && $status -ne 124 ]] || return 1
        ((took <= limit)) || return 1
        [[ $(printf '%s\n' "$output" | wc -l) -eq 1 ]] || return 1
        [[ $output == *"$needle"* ]] || return 1
        # No secret in the line.
        [[ $output != *"$RUNTIME_PW"* && $output != *"$OPERATOR_PW"* ]]
}

@test "as deployed: a rejected outcome is dead-lettered under the runtime role, its partition moves on, no outage" {
        mock_start
        echo 2025-03-10T12:00:00Z > "$T/clock"
        runtime_conf a "clock.file = $T/clock"
        daemon_start a
        daemon_ready a
        [[ $(sql "select usename from pg_stat_activity where datname = current_database() and application_name like 'allvarsd%'
                  group by 1") == allvarsd_runtime ]]
        referral eligible-13-no-guardian-phone R-1
        wait_for 30 state_is R-1 ELIGIBLE
        case_id=$(sql "select case_id from allvarsd.referrals where referral_id = 'R-1'")
        # An outcome for a case that does not exist, under that case's own id (the
        # key rule, docs/contract.md "Keys and ids"); then, under R-1's case id, so on
        # one partition and in this order, an illegal transition (no clearance was
        # pending) and a valid event.
        outcome "$("$ROOT/examples/case-id" NO-SUCH-REFERRAL)" 'event_id: "unknown-1" referral_id: "NO-SUCH-REFERRAL"
                 occurred_at { seconds: 1741610000 } actor { kind: ACTOR_KIND_POLICE name: "LPO" } investigation_cleared {}'
        outcome "$case_id" 'event_id: "illegal-1" referral_id: "R-1" occurred_at { seconds: 1741610000 }
                 actor { kind: ACTOR_KIND_POLICE name: "LPO" } investigation_cleared {}'
        outcome "$case_id" 'event_id: "sched-1" referral_id: "R-1" occurred_at { seconds: 1741617000 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" }
                 conversation_scheduled { scheduled_at { seconds: 1741705200 } }'
        # The valid event after the rejected one is applied: the partition moved on.
        wait_for 30 state_is R-1 SCHEDULED
        wait_for 30 count_is "select count(*) from allvarsd.dead_letters where source_topic = 'allvarssamtal.outcomes.v1'" 2
        [[ $(sql "select string_agg(reason, ',' order by reason) from allvarsd.dead_letters
                  where source_topic = 'allvarssamtal.outcomes.v1'") == "ILLEGAL_TRANSITION,UNKNOWN_CASE" ]]
        [[ $(sql "select string_agg(event_id, ',') from allvarsd.outcome_events") == sched-1 ]]
        read -r partition offset < <(sql "select source_partition || ' ' || source_offset from allvarsd.dead_letters
                                          where reason = 'ILLEGAL_TRANSITION'")
        [[ $(sql "select next_offset from allvarsd.consumer_offsets
                  where topic = 'allvarssamtal.outcomes.v1' and partition = $partition") -eq $((offset + 2)) ]]
        # The dead letters reach their topic, with the reason.
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events allvarssamtal.deadletter.v1 > "$T/events"
        grep -q 'ILLEGAL_TRANSITION' "$T/events"
        grep -q 'UNKNOWN_CASE' "$T/events"
        # The other partitions flow as before.
        gen --count 40 --seed 31 --ids-out "$T/ids"
        wait_for 30 decided_at_least $(($(expected_ids "$T/ids" | wc -l) + 1))
        # Rejections are not outages.
        grep -q 'REASON=ILLEGAL_TRANSITION\|ILLEGAL_TRANSITION' "$T/a.log"
        if grep -i 'unavailable\|partitions paused\|c8f215f97cee4d8e9721ab141238b858' "$T/a.log"; then false; fi
}
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }

@test "allvarsd --migrate fails at once with its fix: a dropped database, a wrong password, an unknown role, a missing grant" {
        # A dropped database.
        createdb "${DB}_gone"
        dropdb "${DB}_gone"
        fails_at_once 5 "createdb" "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas" \
                --database "host=127.0.0.1 port=$PGPORT dbname=${DB}_gone user=allvarsd_owner"
        [[ $status -eq 78 ]]
        # A wrong password (the daemon's own configuration).
        echo wrong > "$T/runtime.pw"
        fails_at_once 5 "password" "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas"
        [[ $status -eq 78 ]]
        # A role that does not exist.
        fails_at_once 5 "roles.sql" "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas" \
                --database "host=127.0.0.1 port=$PGPORT dbname=$DB user=allvarsd_nosuchrole"
        [[ $status -eq 78 ]]
        # A missing grant: the owner may not create the schema in a new database.
        createdb "${DB}_g"
        psql -Xq -v ON_ERROR_STOP=1 -d "${DB}_g" -f "$ROOT/deploy/roles.sql" >/dev/null
        psql -Xq -v ON_ERROR_STOP=1 -d "${DB}_g" -c "REVOKE CREATE ON DATABASE ${DB}_g FROM allvarsd_owner" >/dev/null
        fails_at_once 5 "grant" "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas" \
                --database "host=127.0.0.1 port=$PGPORT dbname=${DB}_g user=allvarsd_owner"
        st=$status
        dropdb --force "${DB}_g"
        [[ $st -eq 78 ]]
        # An unreachable server is not the deployment's fault: a temporary failure, still at once.
        fails_at_once 12 "PostgreSQL" "$BUILD/allvarsd" --config "$T/a.conf" --migrate --schemas "$ROOT/schemas" \
                --database "host=127.0.0.1 port=1 dbname=$DB user=allvarsd_owner"
        [[ $status -eq 75 ]]
}

# Every subcommand that reads the database, with arguments that would otherwise work.
CTL_COMMANDS=(
        "status"
        "cases"
        "cases --overdue"
        "case R-1"
        "case R-1 --personal"
        "dead-letters list"
        "dead-letters show 1"
        "dead-letters replay 1"
        "override R-1 --outcome ELIGIBLE --reason-file /dev/null --by y"
        "migrate --schemas $ROOT/schemas"
)

# ctl_all_fail NEEDLE CONF: every subcommand with --config CONF fails at once, naming NEEDLE.
ctl_all_fail() {
        local cmd
        for cmd in "${CTL_COMMANDS[@]}"; do
                # shellcheck disable=SC2086
                fails_at_once 5 "$1" "$BUILD/allvarsctl" $cmd --config "$2" ||
                        { echo "allvarsctl $cmd did not fail at once naming '$1'" >&2; return 1; }
                [[ $status -eq 1 ]]
                [[ $output == "allvarsctl ${cmd%% *}: "* ]]
        done
}

@test "every allvarsctl subcommand fails at once with its fix: a dropped database, a wrong password, a revoked grant" {
        # As deployed, the operator's role reads what it needs.
        ctl status --config "$T/ctl.conf" >/dev/null
        ctl cases --config "$T/ctl.conf" >/dev/null
        # A dropped database.
        createdb "${DB}_gone"
        dropdb "${DB}_gone"
        ctl_conf gone "${DB}_gone"
        ctl_all_fail "createdb" "$T/gone.conf"
        # A wrong password.
        echo wrong > "$T/wrong.pw"
        ctl_conf wrong "$DB" "$T/wrong.pw"
        ctl_all_fail "password" "$T/wrong.conf"
        # A revoked grant.
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" -c "REVOKE USAGE ON SCHEMA allvarsd FROM allvarsd_operator" >/dev/null
        ctl_all_fail "grant" "$T/ctl.conf"
}

@test "--check-config wants a Kafka and a pepper that only its owner can read" {
        for prog in "$BUILD/allvarsd --check-config" "$BUILD/allvarsctl check-config"; do
                # No Kafka at all.
                sed '/^kafka\.bootstrap\.servers/d' "$T/a.conf" > "$T/nokafka.conf"
                # shellcheck disable=SC2086
                fails_at_once 5 "kafka.bootstrap.servers" $prog --config "$T/nokafka.conf"
                # The embedded cluster counts (for trying it out).
                echo "kafka.embedded = true" >> "$T/nokafka.conf"
                # shellcheck disable=SC2086
                $prog --config "$T/nokafka.conf" | tail -1 | grep -q ': OK$'
                # A pepper (the credential the example names) readable by group or others:
                # the mode, and the expected one.
                chmod 640 "$CREDENTIALS_DIRECTORY/pepper"
                # shellcheck disable=SC2086
                fails_at_once 5 "permissions 0640" $prog --config "$T/a.conf"
                [[ $output == *"chmod 600 or 400"* ]]
                chmod 604 "$CREDENTIALS_DIRECTORY/pepper"
                # shellcheck disable=SC2086
                fails_at_once 5 "permissions 0604" $prog --config "$T/a.conf"
                chmod 400 "$CREDENTIALS_DIRECTORY/pepper"
                # shellcheck disable=SC2086
                $prog --config "$T/a.conf" | tail -1 | grep -q ': OK$'
                chmod 600 "$CREDENTIALS_DIRECTORY/pepper"
        done
}
