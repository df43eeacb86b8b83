#!/usr/bin/env bats
# allvarsd as a process against a real PostgreSQL server and librdkafka's mock
# cluster (in a process of its own): the service's promises (README "Running it with
# systemd", "Effectively once"), checked end to end.

load ../lib/daemon.bash

setup() {
        db_create
        mock_start
        daemon_conf a
        daemon_migrate a
}

teardown() {
        teardown_daemons
}

# outbox_drained: every outbox row has been published (delivered rows move to outbox_sent).
outbox_drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
# committed_is N: the group's offsets committed to Kafka add up to N.
committed_is() {
        [[ $("$BUILD/tests/kafka-topics" "$KAFKA" committed allvarsd police.referrals.v1 |
             awk '{ s += $2 } END { print s + 0 }') -eq $1 ]]
}

@test "every referral is decided exactly once; duplicates ignored; poison dead-lettered while the rest flow" {
        daemon_start a
        daemon_ready a
        gen --count 400 --seed 11 --duplicates 10 --malformed 20 --ids-out "$T/ids1"
        want=$(expected_ids "$T/ids1" | wc -l)
        wait_for 60 decided_at_least "$want"
        wait_for 30 outbox_drained
        check_exactly_once "$T/ids1"
        # As deployed: every session of the daemon (batches, relay, jobs) is the
        # runtime role's, and the schema is the owner's.
        [[ $(sql "select string_agg(distinct usename, ',') from pg_stat_activity
                  where datname = current_database() and application_name like 'allvarsd%'") == allvarsd_runtime ]]
        [[ $(sql "select nspowner::regrole from pg_namespace where nspname = 'allvarsd'") == allvarsd_owner ]]
        # The partition moved past the poison: the stored positions cover every message.
        total=$(wc -l < "$T/ids1")
        [[ $(sql "select sum(next_offset) from allvarsd.consumer_offsets where topic='police.referrals.v1'") -eq $total ]]
        # Kafka's own committed offsets follow, so that ordinary lag tools see the progress.
        wait_for 10 committed_is "$total"
        grep -q 'dead-lettered' "$T/a.log"
        grep -q 'REASON=UNDECODABLE\|REASON=MISSING_FIELD\|REASON=EMPTY\|REASON=INVALID' "$T/a.log"
}

@test "outbox events are published once each, with stable ids and CloudEvents headers" {
        daemon_start a
        daemon_ready a
        gen --count 100 --seed 12 --ids-out "$T/ids"
        wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 30 outbox_drained
        "$BUILD/allvarsctl" events --bootstrap "$KAFKA" --from-beginning --idle-exit 2000 > "$T/events"
        [[ $(wc -l < "$T/events") -eq $(sql "select count(*) from allvarsd.outbox_sent") ]]
        sed -n 's/.* ce_id=\([^ ]*\) .*/\1/p' "$T/events" | sort > "$T/published_ids"
        sql "select event_id from allvarsd.outbox_sent order by 1" > "$T/outbox_ids"
        diff "$T/outbox_ids" "$T/published_ids"
        # The key is the case id, the type names the message.
        grep -q 'ce_type=se.allvarssamtal.v1.PoliceFeedback' "$T/events"
        grep -q 'ce_type=se.allvarssamtal.v1.SchedulingRequest' "$T/events"
        # Statuses go only to referrals that asked for feedback (requests for
        # contact details and clearance go regardless: the police must act).
        grep 'FEEDBACK_STATUS_RECEIVED' "$T/events" | sed -n 's/.* key=\([^ ]*\) .*/\1/p' | sort -u > "$T/keys"
        sql "select case_id::text from allvarsd.referrals where feedback_requested order by 1" > "$T/cases"
        [[ -s $T/keys ]]
        comm -23 "$T/keys" "$T/cases" | { ! grep -q .; }
}

@test "positions resume from PostgreSQL after a restart" {
        daemon_start a
        daemon_ready a
        gen --count 150 --seed 13 --ids-out "$T/ids1"
        wait_for 60 decided_at_least "$(expected_ids "$T/ids1" | wc -l)"
        daemon_stop a TERM
        [[ $DAEMON_RC -eq 0 ]]
        gen --count 150 --first 150 --seed 13 --ids-out "$T/ids2"
        daemon_start a
        daemon_ready a
        wait_for 60 decided_at_least "$(cat "$T/ids1" "$T/ids2" | awk '$1!="malformed"{print $2}' | sort -u | wc -l)"
        sleep 1
        check_exactly_once "$T/ids1" "$T/ids2"
        # The second start assigned from the stored offsets, not from the beginning.
        grep 'Assigned' "$T/a.log" | tail -1 | grep -o 'police.referrals.v1\[[0-9]*\]@[-0-9]*' | sort -u > "$T/assigned"
        [[ $(wc -l < "$T/assigned") -eq 4 ]]
        ! grep -q '@-' "$T/assigned"
}

@test "kill -9 in the middle of a stream loses nothing and decides nothing twice" {
        daemon_start a
        daemon_ready a
        gen --count 3000 --seed 14 --duplicates 5 --rate 3000 --ids-out "$T/ids" &
        gen_pid=$!
        wait_for 30 decided_at_least 300
        daemon_stop a KILL
        daemon_start a
        wait "$gen_pid"
        wait_for 90 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        sleep 1
        check_exactly_once "$T/ids"
        wait_for 30 outbox_drained
}

@test "a second instance joining the group takes partitions without double decisions" {
        daemon_conf b
        daemon_start a
        daemon_ready a
        gen --count 4000 --seed 15 --rate 2000 --ids-out "$T/ids" &
        gen_pid=$!
        wait_for 30 decided_at_least 500
        daemon_start b
        daemon_ready b 60
        wait "$gen_pid"
        wait_for 120 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        sleep 2
        check_exactly_once "$T/ids"
        # Both took part: each logged an assignment with partitions after b joined.
        grep -q 'Assigned [1-9]' "$T/b.log"
        grep -q ' decided: ' "$T/b.log"
}

@test "SIGHUP switches the profile without leaving the group" {
        daemon_start a
        daemon_ready a
        gen --count 20 --seed 16 --ids-out "$T/ids1"
        wait_for 30 decided_at_least 20
        daemon_conf a "profile.name = stockholm-2019"
        kill -HUP "$(daemon_pid a)"
        wait_for 10 grep -q 'reloaded; default profile stockholm-2019' "$T/a.log"
        gen --count 20 --first 20 --seed 16 --ids-out "$T/ids2"
        wait_for 30 decided_at_least 40
        [[ $(sql "select count(*) from allvarsd.decisions where profile_name='goteborg-motion-2024'") -eq 20 ]]
        [[ $(sql "select count(*) from allvarsd.decisions where profile_name='stockholm-2019'") -eq 20 ]]
        # No rebalance happened: one assignment only.
        [[ $(grep -c 'Assigned' "$T/a.log") -eq 1 ]]
        # A reload that needs a restart is refused and the old configuration stays.
        daemon_conf a "profile.name = stockholm-2019" "topics.referrals = other.topic"
        kill -HUP "$(daemon_pid a)"
        wait_for 10 grep -q 'Reload refused' "$T/a.log"
        kill -0 "$(daemon_pid a)"
}

@test "SIGTERM drains the batch in hand, flushes and exits 0; nothing is lost" {
        daemon_start a
        daemon_ready a
        gen --count 2000 --seed 17 --rate 2000 --ids-out "$T/ids" &
        gen_pid=$!
        wait_for 30 decided_at_least 200
        daemon_stop a TERM
        [[ $DAEMON_RC -eq 0 ]]
        grep -q 'Stopping' "$T/a.log"
        # Whatever was decided before the stop was also published.
        outbox_drained
        wait "$gen_pid"
        daemon_start a
        wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        check_exactly_once "$T/ids"
}

@test "sd_notify: READY, STATUS with figures, RELOADING, STOPPING" {
        "$BUILD/tests/notify-listen" "$T/notify.sock" > "$T/notify.out" &
        listener=$!
        wait_for 5 test -S "$T/notify.sock"
        NOTIFY_SOCKET=$T/notify.sock daemon_start a
        daemon_ready a
        wait_for 10 grep -q '^READY=1' "$T/notify.out"
        gen --count 30 --seed 18 --ids-out "$T/ids"
        wait_for 30 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 10 grep -q "STATUS=.*$(decided_count) decided" "$T/notify.out"
        kill -HUP "$(daemon_pid a)"
        wait_for 10 grep -q '^RELOADING=1' "$T/notify.out"
        grep -A1 '^RELOADING=1' "$T/notify.out" | grep -q '^MONOTONIC_USEC=[0-9]'
        daemon_stop a TERM
        grep -q '^STOPPING=1' "$T/notify.out"
        kill "$listener"
}

@test "refuses to run on a schema it does not know" {
        sql "insert into allvarsd.schema_migrations (version, name, sha256, applied_at) values (999, 'future', '', now())"
        run deployed_run "$T/a.conf" "$BUILD/allvarsd" --config "$T/a.conf"
        [[ $status -ne 0 ]]
        [[ $output == *"schema"* ]]
}

@test "non-dumpable: another process of the daemon's own user cannot read its memory or environment" {
        # Run as the unprivileged test user, so that only the dumpable flag
        # stands between the daemon and a process of that same user.
        source "$ROOT/tests/lib/common.sh"
        user=$(allvars_test_user)
        creds=$(deployed_credentials "$(deployed_conf_role "$T/a.conf")")
        D=$(mktemp -d)
        cp "$T/a.conf" "$D/a.conf"
        cp -r "$creds" "$D/creds"
        chown -R "$user" "$D"
        CREDENTIALS_DIRECTORY=$D/creds setpriv --reuid="$user" --regid="$user" --clear-groups \
                "$BUILD/allvarsd" --config "$D/a.conf" >> "$T/a.log" 2>&1 &
        DAEMON_PIDS[a]=$!
        daemon_ready a
        pid=$(daemon_pid a)
        # /proc/PID/environ and mem belong to root for a non-dumpable process.
        [[ $(stat -c %U "/proc/$pid/environ") == root ]]
        run setpriv --reuid="$user" --regid="$user" --clear-groups cat "/proc/$pid/environ"
        [[ $status -ne 0 ]]
        run setpriv --reuid="$user" --regid="$user" --clear-groups head -c 1 "/proc/$pid/mem"
        [[ $status -ne 0 ]]
        daemon_stop a TERM
        rm -rf "$D"
}

@test "watchdog: batch sessions time out (lock_timeout) below half the interval, handled, no abort" {
        # WATCHDOG_USEC=3 s: statement and lock timeouts of 1 s.
        WATCHDOG_USEC=3000000 daemon_start a
        daemon_ready a
        gen --count 5 --seed 19 --ids-out "$T/ids1"
        wait_for 30 decided_at_least 5
        # Hold the offsets' lock for 6 s in another session: the next batch waits for it.
        psql -Xq -d "$DB" -c "BEGIN; LOCK TABLE allvarsd.consumer_offsets IN ACCESS EXCLUSIVE MODE;
                              SELECT pg_sleep(6); COMMIT" >/dev/null &
        locker=$!
        wait_for 10 bash -c "[[ \$(psql -XAtq -d '$DB' -c \"select count(*) from pg_locks l join pg_class c
                on c.oid = l.relation where c.relname = 'consumer_offsets' and l.mode = 'AccessExclusiveLock'
                and l.granted and l.database = (select oid from pg_database where datname = current_database())\") -eq 1 ]]"
        gen --count 5 --first 5 --seed 19 --ids-out "$T/ids2"
        wait_for 10 grep -q 'lock timeout' "$T/a.log"
        wait "$locker"
        # Handled as a lost batch: retried once the lock is gone, nothing lost, still running.
        wait_for 60 decided_at_least 10
        check_exactly_once "$T/ids1" "$T/ids2"
        kill -0 "$(daemon_pid a)"
}

@test "TLS enforced: a remote server without verified TLS is refused; insecure.allow_plaintext warns and shows" {
        # Refused before anything is contacted: PostgreSQL, then Kafka, then a verification turned off.
        creds=$(deployed_credentials "$(deployed_conf_role "$T/a.conf")")
        daemon_conf r "database.conninfo = host=192.0.2.1 dbname=allvarsd user=allvarsd_runtime sslmode=require"
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsd" --config "$T/r.conf"
        [[ $status -ne 0 ]]
        [[ $output == *"sslmode=verify-full"*"insecure.allow_plaintext"* ]]
        daemon_conf k "kafka.bootstrap.servers = broker.example.org:9092"
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsd" --check-config --config "$T/k.conf"
        [[ $status -ne 0 ]]
        [[ $output == *"kafka.security.protocol"* ]]
        daemon_conf v "kafka.enable.ssl.certificate.verification = false"
        # allvarsctl refuses it too, in the file it is given (the daemon's, here).
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsctl" status --config "$T/v.conf"
        [[ $status -ne 0 ]]
        [[ $output == *"certificates"* ]]
        daemon_conf n "kafka.ssl.endpoint.identification.algorithm = none"
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsd" --check-config --config "$T/n.conf"
        [[ $status -ne 0 ]]
        [[ $output == *"host names"* ]]

        # The explicit key: it runs, warns at start, and allvarsctl status says so.
        daemon_conf a "insecure.allow_plaintext = true" "kafka.enable.ssl.certificate.verification = false"
        daemon_start a
        daemon_ready a
        grep -q 'warning insecure.allow_plaintext = true: TLS to PostgreSQL and Kafka is not enforced' "$T/a.log"
        # (The configuration's flag, the test's superuser connection.)
        db="host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB"
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsctl" status --config "$T/a.conf" --database "$db"
        [[ $status -eq 0 ]] || { echo "$output"; false; }
        [[ $output == *"transport"*"insecure.allow_plaintext = true"* ]]
        run env CREDENTIALS_DIRECTORY="$creds" "$BUILD/allvarsctl" status --config "$T/a.conf" --database "$db" --json
        [[ $(jq -r .summary.transport <<<"$output") == "insecure.allow_plaintext = true: TLS to PostgreSQL and Kafka not enforced" ]]
}

# deploy_documented: $T/rt.conf for the daemon as allvarsd_runtime; setup() made
# $DB the documented way already (tests/lib/deployed.bash: roles.sql, the
# migrations as allvarsd_owner).
deploy_documented() {
        daemon_conf rt
        [[ $(deployed_conf_role "$T/rt.conf") == allvarsd_runtime ]]
}

@test "a revoked grant is told as a deployment error, not an outage, every time; the daemon resumes once granted" {
        deploy_documented
        sql "revoke insert on allvarsd.decisions from allvarsd_runtime"
        "$BUILD/tests/notify-listen" "$T/notify.sock" > "$T/notify.out" &
        listener=$!
        wait_for 5 test -S "$T/notify.sock"
        NOTIFY_SOCKET=$T/notify.sock daemon_start rt
        daemon_ready rt
        gen --count 20 --seed 31 --ids-out "$T/ids"
        wait_for 30 bash -c "[[ \$(grep -c 'fix the deployment' '$T/rt.log') -ge 2 ]]"
        grep 'fix the deployment' "$T/rt.log" | head -1 | grep -q 'SQLSTATE 42501'
        ! grep -q 'unavailable' "$T/rt.log"
        wait_for 10 grep -q '^STATUS=.*deployment: .*42501' "$T/notify.out"
        [[ $(decided_count) -eq 0 ]]
        sql "grant insert on allvarsd.decisions to allvarsd_runtime"
        wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        check_exactly_once "$T/ids"
        kill "$listener"
}

@test "at start, a database that refuses the daemon is one clear line and exit status 78 (EX_CONFIG)" {
        daemon_conf nodb "database.conninfo = $(deployed_conninfo "" "${DB}_missing" "$PGHOST" "$PGPORT")"
        run deployed_run "$T/nodb.conf" timeout 20 "$BUILD/allvarsd" --config "$T/nodb.conf"
        [[ $status -eq 78 ]]
        [[ $output == *"PostgreSQL refused the connection"*"does not exist"*"Fix"* ]]
        [[ $output != *unavailable* ]]
        deploy_documented
        sql "revoke select on allvarsd.schema_migrations from allvarsd_runtime"
        run deployed_run "$T/rt.conf" timeout 20 "$BUILD/allvarsd" --config "$T/rt.conf"
        [[ $status -eq 78 ]]
        [[ $output == *"schema_migrations"*"Fix the deployment"* ]]
}
