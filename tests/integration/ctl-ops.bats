#!/usr/bin/env bats
# allvarsctl's commands that act or reach beyond the database's tables, against
# a real PostgreSQL server and, for override and replay, librdkafka's mock
# cluster in a process of its own (tests/tools/mock-kafka.c): dead letters and
# their replay, overrides, events, usage errors, connections, the operator
# role, check-config and migrate. The shared setup: tests/lib/ctl.bash.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash
load ../lib/ctl.bash

# ---------------------------------------------------------------------------- dead letters

@test "dead-letters: list, show (never the payload), and JSON" {
        run --separate-stderr ctldb dead-letters
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
ID  RECEIVED AT           SOURCE                         REASON              DETAIL                               REPLAYED AT
 1  2025-03-12T09:00:00Z  police.referrals.v1/2@17       UNDECODABLE         the message is not a PoliceReferral  -
 2  2025-03-10T12:00:00Z  allvarssamtal.outcomes.v1/0@3  ILLEGAL_TRANSITION  CONVERSATION_HELD in state DEFERRED  2025-03-11T09:00:00Z
EOF
        run ctldb dead-letters list --limit 1
        [[ ${#lines[@]} -eq 2 && ${lines[1]} == " 2  "* ]]
        run --separate-stderr ctldb dead-letters show 1
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
id               1
event id         33333333-3333-4333-8333-333333333331
received at      2025-03-12T09:00:00Z
topic            police.referrals.v1
partition        2
offset           17
reason           UNDECODABLE
detail           the message is not a PoliceReferral
payload bytes    4
replayed at      -
source key       PM-1
source ce id     ce-77
source event id  -
EOF
        no_personal_data <<<"$output"
        run ctldb dead-letters show 2 --json
        [[ $(jq -c . <<<"$output") == '{"id":2,"event_id":"33333333-3333-4333-8333-333333333332","received_at":"2025-03-10T12:00:00Z","topic":"allvarssamtal.outcomes.v1","partition":0,"offset":3,"reason":"ILLEGAL_TRANSITION","detail":"CONVERSATION_HELD in state DEFERRED","payload_bytes":null,"replayed_at":"2025-03-11T09:00:00Z","source_key":null,"source_ce_id":null,"source_event_id":null}' ]]
        run ctldb dead-letters list --json
        [[ $(jq -c '[.[] | [.id, .topic, .partition, .offset, .reason]]' <<<"$output") == \
                '[[1,"police.referrals.v1",2,17,"UNDECODABLE"],[2,"allvarssamtal.outcomes.v1",0,3,"ILLEGAL_TRANSITION"]]' ]]
        no_personal_data <<<"$output"
        run --separate-stderr ctldb dead-letters show 9
        [[ $status -eq 1 && $stderr == "allvarsctl dead-letters: no dead letter 9" ]]
}

@test "dead-letters replay: the stored payload goes back to its topic with its key and headers, once unless forced" {
        mock_start
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        [[ $output =~ ^replayed\ dead\ letter\ 1\ to\ police.referrals.v1\ \[([0-9])\]\ at\ offset\ 0$ ]]
        part=${BASH_REMATCH[1]}
        [[ $(sql "select replayed_at = '$NOW' from allvarsd.dead_letters where id = 1") == t ]]
        ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning --idle-exit 1500 > "$T/events"
        [[ $(wc -l < "$T/events") -eq 1 ]]
        # With its original key and headers (ce_id), not the dead letter's id.
        LC_ALL=C grep -aq "^police.referrals.v1/$part@0 key=PM-1 ce_id=ce-77 .*<4 bytes" "$T/events"
        # Once replayed, again only with --force.
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == *"was replayed at 2025-03-12T12:00:00Z; --force replays it again" ]]
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA" --force --json
        [[ $status -eq 0 ]]
        [[ $(jq -c . <<<"$output") == "{\"id\":1,\"topic\":\"police.referrals.v1\",\"partition\":$part,\"offset\":1,\"replayed_at\":\"$NOW\"}" ]]
        # A purged payload cannot be replayed; nothing more was produced.
        run --separate-stderr ctldb dead-letters replay 2 --bootstrap "$KAFKA" --force
        [[ $status -eq 1 && $stderr == "allvarsctl dead-letters: dead letter 2 has no payload any more (purged)" ]]
        ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --topic allvarssamtal.outcomes.v1 \
                --from-beginning --idle-exit 1500 > "$T/events"
        [[ $(wc -l < "$T/events") -eq 2 ]]
}

# ---------------------------------------------------------------------------- override

# The CaseOutcome lines on the outcomes topic.
outcome_events() {
        ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning --idle-exit 1500
}
outcome_has_key() { outcome_events | grep -q "key=$1 "; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }

@test "override: a CaseOutcome from the social worker on the outcomes topic, keyed by the case id" {
        mock_start
        run --separate-stderr ctldb override R-1 --outcome MANUAL_REVIEW --reason-file <(echo "Needs a closer look") \
                --by anna.s --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        [[ $output =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
        id=$output
        outcome_events > "$T/events"
        [[ $(wc -l < "$T/events") -eq 1 ]]
        line=$(cat "$T/events")
        [[ $line == "allvarssamtal.outcomes.v1/"*" key=00000000-0000-4000-8000-00000000000a ce_id=$id ce_type=se.allvarssamtal.v1.CaseOutcome "* ]]
        [[ $line == *"event_id: \"$id\""* ]]
        [[ $line == *'case_id: "00000000-0000-4000-8000-00000000000a"'* ]]
        [[ $line == *'actor: {kind: ACTOR_KIND_SOCIAL_WORKER, name: "anna.s"}'* ]]
        # The reason is free text about a child: masked unless shown on purpose (and audited).
        [[ $line == *'override: {outcome: OUTCOME_MANUAL_REVIEW, reason: (personal)}'* ]]
        [[ $line != *"Needs a closer look"* ]]
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB"
        [[ $status -eq 0 && $output == *'override: {outcome: OUTCOME_MANUAL_REVIEW, reason: "Needs a closer look"}'* ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN' and actor_kind = 'OPERATOR'
                  and case_id = '00000000-0000-4000-8000-00000000000a' and detail like '%ce_id=$id'") -eq 1 ]]
        # occurred_at is "now" (here: --now).
        [[ $line == *"occurred_at: $NOW"* ]]

        # By case id, with a fresh event id each time; the reason on standard input.
        run ctldb override 00000000-0000-4000-8000-00000000000e --outcome ELIGIBLE \
                --by bo.k --bootstrap "$KAFKA" < <(echo "Age was wrong")
        [[ $status -eq 0 && $output != "$id" ]]
        outcome_events > "$T/events"
        [[ $(wc -l < "$T/events") -eq 2 ]]
        grep -q 'key=00000000-0000-4000-8000-00000000000e .*referral_id: "R-5".*override: {outcome: OUTCOME_ELIGIBLE, reason: (personal)' "$T/events"
        ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning --idle-exit 1500 \
                --show-personal-data --database "dbname=$DB" | grep -q 'reason: "Age was wrong"'
}

@test "events: personal data masked by default; shown only to a role that may, audited; errors exit non-zero" {
        mock_start
        gen --count 3 --seed 31 --ids-out "$T/ids"
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning --idle-exit 1500
        [[ $status -eq 0 && ${#lines[@]} -eq 3 ]]
        # The input topics are decoded too; names, identity numbers, contacts and the narrative masked.
        [[ $output == *'ce_type= {referral_id: "gen-31-'* ]]
        [[ $output == *'given_name: (personal)'* && $output == *'narrative: (personal)'* ]]
        ! grep -Eq '(given_name|family_name|identity_number|birth_date|name|phone|postal_address|narrative): "' <<<"$output"
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --json
        [[ $status -eq 0 && $(jq -r .topic <<<"${lines[0]}") == police.referrals.v1 ]]
        [[ $(jq -r .message <<<"${lines[0]}") == *'given_name: (personal)'* ]]

        # Shown: only with a connection whose role may read the personal rows, each case audited first.
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB"
        [[ $status -eq 0 && ${#lines[@]} -eq 3 && $output == *'given_name: "'* ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN'") -eq 3 ]]
        RT_USER=ctl_ev_$$_$RANDOM
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE ROLE $RT_USER LOGIN; GRANT CONNECT ON DATABASE \"$DB\" TO $RT_USER;
                GRANT USAGE ON SCHEMA allvarsd TO $RT_USER; GRANT SELECT ON allvarsd.cases TO $RT_USER" >/dev/null
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB user=$RT_USER"
        [[ $status -eq 1 && -z $output && $stderr == *"may not read personal data"* ]] || { echo "$status $stderr"; false; }
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN'") -eq 3 ]]

        # Usage errors exit 2; an unreachable cluster exits 1 (a missing topic: tests/e2e/real-kafka.bats,
        # the mock cluster creates every topic asked for).
        run --separate-stderr ctl events --bootstrap "$KAFKA" --idle-exit abc
        [[ $status -eq 2 && $stderr == *"--idle-exit"* ]]
        run --separate-stderr ctl events --bootstrap 127.0.0.1:1 --idle-exit 100
        [[ $status -eq 1 ]]
}

@test "override: unknown cases and bad arguments send nothing" {
        mock_start
        run --separate-stderr ctldb override R-404 --outcome ELIGIBLE --reason-file <(echo x) --by a --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == "allvarsctl override: no case or referral with the id R-404" ]]
        for args in "R-1 --outcome MAYBE --reason-file /dev/null --by a" "R-1 --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason-file /dev/null" "--outcome ELIGIBLE --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason-file /dev/null --by a --wait soon" \
                "R-1 R-2 --outcome ELIGIBLE --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason x --by a"; do
                # shellcheck disable=SC2086
                run --separate-stderr ctldb override $args --bootstrap "$KAFKA"
                [[ $status -eq 2 && -z $output && $(wc -l <<<"$stderr") -eq 1 ]] || { echo "$args: $status $stderr"; false; }
        done
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason-file /nonexistent --by a --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == *"/nonexistent: No such file"* ]]
        # Never on the command line (/proc/PID/cmdline, the shell's history).
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason "Free text" --by a --bootstrap "$KAFKA"
        [[ $status -eq 2 && $stderr == *"not on the command line"* ]]
        # A blank reason (standard input here is empty) is refused by the daemon's own validation, before sending.
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason-file <(printf '  \n') --by a --bootstrap "$KAFKA"
        [[ $status -eq 2 && $stderr == *"override.reason is required"* ]]
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --by a --bootstrap "$KAFKA" < /dev/null
        [[ $status -eq 2 && $stderr == *"override.reason is required"* ]]
        [[ -z $(outcome_events) ]]
}

@test "override --wait: reports applied, rejected, or not applied in time" {
        mock_start
        # allvarsd's part is played by SQL here: it records the event once it sees it.
        ctldb override R-1 --outcome MANUAL_REVIEW --reason-file <(echo Check) --by anna.s --bootstrap "$KAFKA" --wait 20 \
                > "$T/out" 2> "$T/err" &
        pid=$!
        wait_for 10 grep -q . "$T/out"
        id=$(head -1 "$T/out")
        sql "UPDATE allvarsd.cases SET state = 'MANUAL_REVIEW', outcome = 'MANUAL_REVIEW'
             WHERE case_id = '00000000-0000-4000-8000-00000000000a';
             INSERT INTO allvarsd.outcome_events VALUES ('$id', '00000000-0000-4000-8000-00000000000a', 'OVERRIDE',
             '$NOW', '2025-03-12T12:00:01Z', 'allvarssamtal.outcomes.v1', 0, 0)"
        rc=0
        wait "$pid" || rc=$?
        [[ $rc -eq 0 ]]
        [[ $(sed -n 2p "$T/out") == "applied at 2025-03-12T12:00:01Z: the case is now MANUAL_REVIEW (outcome MANUAL_REVIEW)" ]]
        [[ ! -s $T/err ]]

        # Rejected: a dead letter at the event's position.
        ctldb override R-4 --outcome ELIGIBLE --reason-file <(echo Reopen) --by anna.s --bootstrap "$KAFKA" --wait 20 --json \
                > "$T/out" 2> "$T/err" &
        pid=$!
        wait_for 10 outcome_has_key 00000000-0000-4000-8000-00000000000d
        pos=$(outcome_events | grep 'key=00000000-0000-4000-8000-00000000000d' | sed 's,^allvarssamtal.outcomes.v1/\([0-9]*\)@\([0-9]*\) .*,\1 \2,')
        read -r p o <<<"$pos"
        sql "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset, reason, detail,
             payload, received_at) VALUES ('44444444-4444-4444-8444-444444444444', 'allvarssamtal.outcomes.v1', $p, $o,
             'ILLEGAL_TRANSITION', 'OVERRIDE in state HELD', '\x00', '$NOW')"
        rc=0
        wait "$pid" || rc=$?
        [[ $rc -eq 1 ]]
        [[ $(jq -r .result "$T/out") == rejected ]]
        [[ $(jq -c '.dead_letter | [.reason, .detail]' "$T/out") == '["ILLEGAL_TRANSITION","OVERRIDE in state HELD"]' ]]
        [[ $(jq -r .case_id "$T/out") == 00000000-0000-4000-8000-00000000000d ]]
        grep -q '^allvarsctl override: rejected by allvarsd: ILLEGAL_TRANSITION: OVERRIDE in state HELD (dead letter 3)$' "$T/err"

        # Nobody applies it.
        run --separate-stderr ctldb override R-2 --outcome ELIGIBLE --reason-file <(echo x) --by a --bootstrap "$KAFKA" --wait 1
        [[ $status -eq 1 && ${#lines[@]} -eq 1 && $stderr == *"not applied within 1 s"* ]]
}

@test "override through allvarsd: applied once, audited, the case changes" {
        [[ -x $BUILD/allvarsd && -x $BUILD/tests/referral-gen ]] || skip "allvarsd or referral-gen not built"
        sql "DROP SCHEMA allvarsd CASCADE"
        mock_start
        daemon_conf a
        daemon_migrate a
        daemon_start a
        daemon_ready a
        gen --count 20 --seed 5 --ids-out "$T/ids"
        wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        case_id=$(sql "select case_id from allvarsd.cases where closed_at is null order by case_id limit 1")
        [[ -n $case_id ]]
        run --separate-stderr ctl_as_operator a override "$case_id" --outcome NOT_ELIGIBLE \
                --reason-file <(echo "Handled in another case") --by anna.s --wait 60
        [[ $status -eq 0 ]] || { echo "$output $stderr"; cat "$T/a.log"; false; }
        [[ ${lines[1]} == "applied at "*": the case is now NOT_ELIGIBLE (outcome NOT_ELIGIBLE)" ]]
        run ctl_as_operator a case "$case_id" --json
        [[ $(jq -r .case.outcome <<<"$output") == NOT_ELIGIBLE ]]
        [[ $(jq -c '[.audit[] | select(.action == "OVERRIDDEN") | [.who, .reason_recorded]]' <<<"$output") == \
                '[["SOCIAL_WORKER:anna.s",true]]' ]]
        [[ $(jq '.events | length' <<<"$output") -eq 1 ]]
}

# ---------------------------------------------------------------------------- usage, connection, config

@test "usage errors exit 2 with one line on stderr; --help exits 0" {
        for args in "status --bogus" "status extra" "cases --limit x" "cases --state FLYING" "cases --district" \
                "dead-letters frob" "dead-letters show" "dead-letters show x" "dead-letters show 1 --limit 2" \
                "dead-letters list --force" "case" "status --now yesterday" "check-config --json" "migrate extra"; do
                # shellcheck disable=SC2086
                run --separate-stderr ctl $args
                [[ $status -eq 2 && -z $output && $(wc -l <<<"$stderr") -eq 1 && $stderr == "allvarsctl "* ]] ||
                        { echo "$args: $status '$stderr'"; false; }
        done
        for c in status cases case override dead-letters migrate check-config; do
                run --separate-stderr ctl "$c" --help
                [[ $status -eq 0 && $output == Usage:\ allvarsctl\ $c* && -z $stderr ]] || { echo "$c"; false; }
        done
}

@test "connection: --database, the PG* environment, a configuration file, and their failures" {
        # libpq's environment when neither --database nor --config is given (and no default file exists).
        if [[ ! -e /etc/allvarsd/allvarsd.conf ]]; then
                run env PGDATABASE="$DB" "$BUILD/allvarsctl" cases --state DEFERRED --json
                [[ $status -eq 0 && $(jq -r '.[0].case_id' <<<"$output") == 00000000-0000-4000-8000-00000000000c ]]
        fi
        run --separate-stderr ctl status --database "host=$PGHOST port=$PGPORT dbname=${DB}_missing"
        [[ $status -eq 1 && $(wc -l <<<"$stderr") -eq 1 && $stderr == "allvarsctl status: cannot connect to PostgreSQL: "* ]]
        # A configuration that cannot be loaded (here: an unknown key) says so and points to --database.
        printf 'database.conninfo = dbname=%s\nno.such.key = 1\n' "$DB" > "$T/bad.conf"
        run --separate-stderr ctl status --config "$T/bad.conf"
        [[ $status -eq 1 && $(wc -l <<<"$stderr") -eq 1 && $stderr == *"no.such.key"*"--database CONNINFO"* ]]
        # allvarsctl's own file needs no pepper (the daemon's, named with --config, may have one).
        printf 'database.conninfo = host=%s port=%s user=%s dbname=%s\n' \
                "$PGHOST" "$PGPORT" "$PGUSER" "$DB" > "$T/good.conf"
        run --separate-stderr ctl dead-letters --config "$T/good.conf" --json
        [[ $status -eq 0 && $(jq length <<<"$output") -eq 2 ]]
        head -c 48 /dev/urandom > "$T/pepper"
        echo "pepper = @file:$T/pepper" >> "$T/good.conf"
        run --separate-stderr ctl dead-letters --config "$T/good.conf" --json
        [[ $status -eq 0 && $(jq length <<<"$output") -eq 2 ]]
        # The tool only reads, except where it must write (replay).
        run --separate-stderr ctl status --database "dbname=$DB" --json
        [[ $status -eq 0 ]]
}

@test "the operator role (schemas/006_operator_role.sql) is enough for every command, and reads personal data only audited" {
        mock_start
        user=ctl_op_$$_$RANDOM
        RT_USER=$user
        # Roles are cluster-wide: create the operator role once, race-free, and a login of our own in it.
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<EOF
DO \$\$ BEGIN CREATE ROLE allvarsd_operator NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;
CREATE ROLE $user LOGIN IN ROLE allvarsd_operator;
SELECT allvarsd.grant_all();
EOF
        db="dbname=$DB user=$user"
        ctl status --database "$db" --now "$NOW" --json --bootstrap "$KAFKA" | jq -e '.summary.open_cases == 4'
        # check reads the instances and pg_locks too: a verdict, not UNKNOWN (3).
        run --separate-stderr ctl check --database "$db" --now "$NOW"
        [[ $status -eq 2 && -z $stderr ]]
        ctl cases --database "$db" --now "$NOW" --overdue | grep -q 00000000-0000-4000-8000-00000000000b
        ctl case R-1 --database "$db" --now "$NOW" --json | jq -e '.audit | length == 3'
        ctl dead-letters show 1 --database "$db" | grep -Eq '^payload bytes +4$'
        ctl dead-letters replay 1 --database "$db" --bootstrap "$KAFKA" --by anna.s | grep -q '^replayed dead letter 1 '
        ctl override R-1 --database "$db" --bootstrap "$KAFKA" --outcome ELIGIBLE --reason-file <(echo x) --by a
        [[ $(sql "select replayed_at is not null from allvarsd.dead_letters where id = 1") == t ]]
        # Personal data: only with --personal, and the read is in the case's audit trail.
        run --separate-stderr ctl case R-1 --database "$db" --personal --by anna.s
        [[ $status -eq 0 && -z $stderr ]] || { echo "$status $stderr"; false; }
        # The child's fields, decoded from the stored message (schemas/017_personal_payload.sql).
        grep -Eq '^identity number +201001012384$' <<<"$output"
        grep -Eq '^birth date +2010-01-01$' <<<"$output"
        grep -Eq '^name +Testina Exempelsson$' <<<"$output"
        grep -Eq '^narrative +A secret narrative about Testina$' <<<"$output"
        [[ $(sql "select string_agg(actor_kind || ':' || actor_name || ' ' || action || ' ' || after, ',' order by id)
                  from allvarsd.audit where actor_kind = 'OPERATOR'") == \
           "OPERATOR:anna.s DEAD_LETTER_READ db_user=$user;dead_letter=1,OPERATOR:anna.s DEAD_LETTER_REPLAYED db_user=$user;dead_letter=1,OPERATOR:anna.s PERSONAL_DATA_READ db_user=$user" ]]
        ctl case R-1 --database "$db" --now "$NOW" --json | jq -e '.audit | map(select(.action == "PERSONAL_DATA_READ")) | length == 1'
        # The JSON form: the same fields, made by PostgreSQL; the read audited again.
        ctl case R-1 --database "$db" --personal --json | jq -e '.[0] | .person == "child" and .ordinal == 0
                and .identity_number == "201001012384" and .name == "Testina Exempelsson"
                and .narrative == "A secret narrative about Testina" and (has("referral") | not)'
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_READ'") -eq 2 ]]
        # It cannot read personal tables, nor write anything, itself.
        run psql -Xq -d "$db" -c "select payload from allvarsd.referral_personal"
        [[ $status -ne 0 && $output == *"permission denied"* ]]
        run psql -Xq -d "$db" -c "update allvarsd.cases set state = 'HELD'"
        [[ $status -ne 0 && $output == *"permission denied"* ]]
}

@test "check-config prints the effective values; a bad file fails with one line" {
        head -c 48 /dev/urandom > "$T/pepper"
        chmod 600 "$T/pepper"
        printf 'database.conninfo = dbname=%s\npepper = @file:%s\ntopics.outcomes = my.outcomes\nkafka.bootstrap.servers = 127.0.0.1:1\n' \
                "$DB" "$T/pepper" > "$T/c.conf"
        run --separate-stderr ctl check-config --config "$T/c.conf"
        [[ $status -eq 0 ]]
        grep -q '^topics.outcomes = my.outcomes$' <<<"$output"
        [[ ${lines[-1]} == "# $T/c.conf: OK" ]]
        if grep -q "$(od -An -tx1 "$T/pepper" | tr -d ' \n' | cut -c1-16)" <<<"$output"; then false; fi
        echo "no.such.key = 1" >> "$T/c.conf"
        run --separate-stderr ctl check-config --config "$T/c.conf"
        [[ $status -eq 1 && -z $output && $(wc -l <<<"$stderr") -eq 1 && $stderr == *no.such.key* ]]
}

@test "migrate applies the schema once, like allvarsd --migrate" {
        createdb "${DB}_m"
        run --separate-stderr ctl migrate --database "dbname=${DB}_m" --schemas "$ROOT/schemas"
        st=$status out=$output err=$stderr
        n=$(ls "$ROOT"/schemas/*.sql | wc -l)
        run2=$(ctl migrate --database "dbname=${DB}_m" --schemas "$ROOT/schemas" 2>/dev/null) || true
        tables=$(psql -XAtq -d "${DB}_m" -c "select count(*) from information_schema.tables where table_schema = 'allvarsd'")
        dropdb --force "${DB}_m"
        [[ $st -eq 0 ]] || { echo "$err"; false; }
        [[ $out == "$n migration(s) applied; the schema is at version "* ]]
        [[ $run2 == "0 migration(s) applied; the schema is at version "* ]]
        [[ $tables -ge 13 ]]
}
