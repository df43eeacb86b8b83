#!/usr/bin/env bats
# The scheduling topic as the booking service consumes it (docs/contract.md
# "Requests and withdrawals"): the built daemon, a real Kafka broker and PostgreSQL drive a
# case down each path; then, reading allvarssamtal.scheduling.v1 from the start
# and telling the two messages apart by ce_type, the last message of each case
# says what the booking service must do, and the revisions of a case's messages
# only grow. Every outcome is keyed by its case id (the key rule).

load ../lib/daemon.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        db_create
        real_kafka_topics
        echo 2025-03-10T12:00:00Z > "$T/clock"
        daemon_conf a "clock.file = $T/clock"
        daemon_migrate a
        daemon_start a
        daemon_ready a 60
}

teardown() {
        teardown_daemons
}

# referral EXAMPLE ID: examples/referrals/EXAMPLE.txtpb under referral id ID, keyed by it.
referral() {
        sed "s/^referral_id: .*/referral_id: \"$2\"/" "$ROOT/examples/referrals/$1.txtpb" |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" -k "$2" "$T/msg.bin"
}

# outcome TEXT: one CaseOutcome in text format, keyed by its case id.
outcome() {
        printf '%s\n' "$1" | protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -k "$(outcome_key "$1")" "$T/msg.bin"
}

state_of() { sql "select state from allvarsd.cases where case_id = '$("$ROOT/examples/case-id" "$1")'"; }
state_is() { [[ $(state_of "$1") == "$2" ]]; }
count_is() { [[ $(sql "$1") -eq $2 ]]; }
by() { echo "actor { kind: ACTOR_KIND_$1 name: \"$2\" }"; }

# booking_view: what the booking service read, one line per scheduling message,
# in the order of the topic (a case's messages share a partition).
booking_view() {
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events_personal allvarssamtal.scheduling.v1 > "$T/scheduling"   # the booking service reads the contacts
}

# last_of REFERRAL_ID: the last scheduling message of its case; and its revisions
# must grow strictly from message to message.
last_of() {
        local cid prev=0 rev line
        cid=$("$ROOT/examples/case-id" "$1")
        grep -F "key=$cid " "$T/scheduling" > "$T/case" || { echo "no scheduling message for $1" >&2; return 1; }
        while IFS= read -r line; do
                rev=$(grep -o 'revision: [0-9]*' <<<"$line" | cut -d' ' -f2)
                [[ -n $rev ]] || { echo "$1: a message without revision: $line" >&2; return 1; }
                ((rev > prev)) || { echo "$1: revision $rev after $prev" >&2; return 1; }
                prev=$rev
        done < "$T/case"
        tail -n 1 "$T/case"
}

@test "each path: the last scheduling message of the case tells the booking service the right thing" {
        # Eligible at once (a 13-year-old, no phone for the guardian: CONTACT_MISSING).
        for id in R-CANCEL R-DECLINE R-NOTELIG R-CONTACT R-HELD; do
                referral eligible-13-no-guardian-phone "$id"
        done
        referral preliminary-investigation R-CLEARED    # DEFERRED until the police clear it
        referral acute-risk R-ASSESS                    # DEFERRED: protective assessment first
        for id in R-CANCEL R-DECLINE R-NOTELIG R-CONTACT R-HELD; do
                wait_for 30 state_is "$id" ELIGIBLE
        done
        wait_for 30 state_is R-CLEARED DEFERRED
        wait_for 30 state_is R-ASSESS DEFERRED

        # cancel: withdrawn.
        outcome "event_id: \"c-1\" referral_id: \"R-CANCEL\" occurred_at { seconds: 1741611600 }
                 $(by SOCIAL_WORKER sw.berg) cancelled { reason: CANCEL_REASON_MOVED }"
        # decline, after a booking: withdrawn.
        outcome "event_id: \"d-1\" referral_id: \"R-DECLINE\" occurred_at { seconds: 1741611600 } $(by BOOKING_SERVICE bokning)
                 conversation_scheduled { scheduled_at { seconds: 1741705200 } }"
        outcome "event_id: \"d-2\" referral_id: \"R-DECLINE\" occurred_at { seconds: 1741615200 }
                 $(by BOOKING_SERVICE bokning) family_declined {}"
        # a social worker's override to NOT_ELIGIBLE: withdrawn.
        outcome "event_id: \"n-1\" referral_id: \"R-NOTELIG\" occurred_at { seconds: 1741611600 }
                 $(by SOCIAL_WORKER sw.lind) override { outcome: OUTCOME_NOT_ELIGIBLE reason: \"Redan insats\" }"
        # contact details supplied: an updated request, with the phone, no letter.
        outcome "event_id: \"k-1\" referral_id: \"R-CONTACT\" occurred_at { seconds: 1741611600 } $(by POLICE LPO)
                 contact_details_supplied { guardians { name: \"Sara Exempelsson\" phone: \"070-123 45 67\" } }"
        # held: nothing more to book.
        outcome "event_id: \"h-1\" referral_id: \"R-HELD\" occurred_at { seconds: 1741611600 }
                 $(by BOOKING_SERVICE bokning) conversation_held {}"
        # deferral cleared: the first request, the deadline counted from now.
        outcome "event_id: \"p-1\" referral_id: \"R-CLEARED\" occurred_at { seconds: 1741942800 }
                 $(by POLICE LPO) investigation_cleared {}"
        # booked by an override, then the protective assessment finds the family
        # must not be summoned: withdrawn.
        outcome "event_id: \"a-1\" referral_id: \"R-ASSESS\" occurred_at { seconds: 1741611600 }
                 $(by SOCIAL_WORKER sw.berg) override { outcome: OUTCOME_ELIGIBLE reason: \"Samtal snarast\" }"
        outcome "event_id: \"a-2\" referral_id: \"R-ASSESS\" occurred_at { seconds: 1741615200 }
                 $(by SOCIAL_WORKER sw.berg) protective_assessment_recorded { do_not_summon: true }"

        wait_for 30 state_is R-CANCEL CANCELLED
        wait_for 30 state_is R-DECLINE DECLINED
        wait_for 30 state_is R-NOTELIG NOT_ELIGIBLE
        wait_for 30 count_is "select count(*) from allvarsd.outcome_events where event_id = 'k-1'" 1
        wait_for 30 state_is R-HELD HELD
        wait_for 30 state_is R-CLEARED ELIGIBLE
        wait_for 30 state_is R-ASSESS MANUAL_REVIEW
        [[ $(sql "select count(*) from allvarsd.dead_letters") -eq 0 ]]
        booking_view

        last_of R-CANCEL | grep -q 'ce_type=se.allvarssamtal.v1.SchedulingWithdrawn .*reason: WITHDRAWAL_REASON_CANCELLED'
        last_of R-DECLINE | grep -q 'SchedulingWithdrawn .*reason: WITHDRAWAL_REASON_FAMILY_DECLINED'
        last_of R-NOTELIG | grep -q 'SchedulingWithdrawn .*reason: WITHDRAWAL_REASON_NOT_ELIGIBLE'
        last_of R-HELD | grep -q 'SchedulingWithdrawn .*reason: WITHDRAWAL_REASON_HELD'
        last_of R-ASSESS | grep -q 'SchedulingWithdrawn .*reason: WITHDRAWAL_REASON_PROTECTIVE_ASSESSMENT'
        last_of R-CONTACT > "$T/last"
        grep -q 'ce_type=se.allvarssamtal.v1.SchedulingRequest .*kind: SCHEDULING_REQUEST_KIND_CONTACT_DETAILS_UPDATED' "$T/last"
        grep -q '070-123 45 67' "$T/last"
        ! grep -q 'letter_fallback: true' "$T/last"
        last_of R-CLEARED > "$T/last"
        grep -q 'SchedulingRequest .*deadline: 2025-03-16T09:00:00Z.*kind: SCHEDULING_REQUEST_KIND_DEFERRAL_RESOLVED' "$T/last"
        # Before the change, each had its request in force: two messages per case
        # (the request and its withdrawal or update), and the one deferred case one.
        [[ $(grep -c "key=$("$ROOT/examples/case-id" R-DECLINE) " "$T/scheduling") -eq 2 ]]
        [[ $(grep -c "key=$("$ROOT/examples/case-id" R-CLEARED) " "$T/scheduling") -eq 1 ]]
        [[ $(grep -c "key=$("$ROOT/examples/case-id" R-ASSESS) " "$T/scheduling") -eq 2 ]]
        # A withdrawal carries no personal data.
        ! grep 'SchedulingWithdrawn' "$T/scheduling" | grep -q 'Exempel'
}

@test "an outcome keyed by anything but its case id is a dead letter WRONG_KEY with its key and event id" {
        referral eligible-13-no-guardian-phone R-KEY
        wait_for 30 state_is R-KEY ELIGIBLE
        printf '%s\n' "event_id: \"wk-1\" referral_id: \"R-KEY\" occurred_at { seconds: 1741611600 }
                 $(by SOCIAL_WORKER sw.berg) cancelled {}" |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -k R-KEY -H ce_id=prod-77 "$T/msg.bin"
        wait_for 30 count_is "select count(*) from allvarsd.dead_letters where reason = 'WRONG_KEY'" 1
        [[ $(sql "select convert_from(source_key, 'UTF8') || '|' || source_ce_id || '|' || source_event_id
                  from allvarsd.dead_letters") == 'R-KEY|prod-77|wk-1' ]]
        state_is R-KEY ELIGIBLE                 # not applied
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events allvarssamtal.deadletter.v1 > "$T/dl"
        grep 'DEAD_LETTER_REASON_WRONG_KEY' "$T/dl" > "$T/wrong" || { cat "$T/dl"; false; }
        grep -q 'source_key: <5 bytes>' "$T/wrong"
        grep -q 'source_ce_id: "prod-77"' "$T/wrong"
        grep -q 'source_event_id: "wk-1"' "$T/wrong"
        # Sent again with the case id as key, it applies.
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -k "$("$ROOT/examples/case-id" R-KEY)" "$T/msg.bin"
        wait_for 30 state_is R-KEY CANCELLED
}
