#!/usr/bin/env bats
# The built daemon as a process against a real Apache Kafka broker (KRaft, from
# the Maven Central jars: tests/lib/kafka.sh) and a real PostgreSQL server.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash
load ../lib/stored.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        db_create
        real_kafka_topics
        daemon_conf a
        daemon_migrate a
}

teardown() {
        teardown_daemons
}

outbox_drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }

@test "real broker: referrals in, decisions stored once, events out with CloudEvents headers" {
        daemon_start a
        daemon_ready a 60
        gen --count 300 --seed 21 --duplicates 10 --malformed 10 --ids-out "$T/ids"
        wait_for 90 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 60 outbox_drained
        check_exactly_once "$T/ids"

        events allvarssamtal.scheduling.v1 police.feedback.v1 allvarssamtal.alerts.v1 \
                allvarssamtal.deadletter.v1 > "$T/events"
        # Exactly the outbox, each event once (a clean run has no redeliveries).
        [[ $(wc -l < "$T/events") -eq $(sql "select count(*) from allvarsd.outbox_sent") ]]
        sed -n 's/.* ce_id=\([^ ]*\) .*/\1/p' "$T/events" | sort > "$T/published"
        sql "select event_id from allvarsd.outbox_sent order by 1" > "$T/outbox"
        diff "$T/outbox" "$T/published"
        # A scheduling request for every ELIGIBLE decision, keyed by its case.
        [[ $(grep -c 'ce_type=se.allvarssamtal.v1.SchedulingRequest' "$T/events") -eq \
           $(sql "select count(*) from allvarsd.decisions where outcome = 'ELIGIBLE'") ]]
        # Dead letters reach their topic too.
        [[ $(grep -c 'ce_type=se.allvarssamtal.v1.DeadLetter' "$T/events") -eq $(malformed_count "$T/ids") ]]
}

@test "real broker: the police feedback topic carries no personal data" {
        daemon_start a
        daemon_ready a 60
        gen --count 200 --seed 22 --ids-out "$T/ids"
        wait_for 90 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        wait_for 60 outbox_drained
        events police.feedback.v1 > "$T/feedback"
        [[ $(wc -l < "$T/feedback") -gt 0 ]]
        # Names, identity numbers, phone numbers, addresses and narrative words of the inputs.
        # From the stored messages (tests/lib/stored.bash): one set per referral.
        stored_referrals_text "$T" > "$T/stored.txt"
        [[ $(grep -c '^r {' "$T/stored.txt") -eq $(sql "select count(*) from allvarsd.referral_personal") ]]
        text_values "$T/stored.txt" > "$T/values"
        # At least as many identity numbers as persons (a number may come in two spellings).
        [[ $(awk -F '\t' '$1 == "identity_number"' "$T/values" | sort -u | wc -l) -ge \
           $(sql "select count(distinct person_key) from allvarsd.referrals") ]]
        awk -F '\t' '$1 ~ /^(given_name|family_name|identity_number)$/ { print $2 }' "$T/values" |
                sort -u > "$T/personal"
        while read -r word; do
                [[ -z $word ]] && continue
                if grep -qF -- "$word" "$T/feedback"; then echo "personal data in feedback: [redacted]"; false; fi
        done < "$T/personal"
        ! grep -qE '070-|Storgatan|polisen|ungdomen' "$T/feedback"
}

@test "real broker: allvarsctl events exits 1 for a topic that does not exist, 0 with --config for one that does" {
        run --separate-stderr "$BUILD/allvarsctl" events --bootstrap "$KAFKA" --topic "${TOPIC_PREFIX}no.such.topic" \
                --idle-exit 100
        [[ $status -eq 1 && $stderr == *"${TOPIC_PREFIX}no.such.topic"* ]]
        # The topic names (and TLS/SASL) come from the configuration.
        run --separate-stderr deployed_run "$T/a.conf" "$BUILD/allvarsctl" events --config "$T/a.conf" \
                --from-beginning --idle-exit 500
        [[ $status -eq 0 ]]
}
