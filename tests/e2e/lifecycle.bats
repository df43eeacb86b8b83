#!/usr/bin/env bats
# The case lifecycle end to end (docs/domain.md "The case lifecycle"): the built daemon, a real Kafka broker and a real
# PostgreSQL server drive cases through every path of the state machine, with
# the daemon's clock set by the test (clock.file).

load ../lib/daemon.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        db_create
        real_kafka_topics
        echo 2025-03-10T12:00:00Z > "$T/clock"
        daemon_conf a "clock.file = $T/clock" "deadline_watch.interval_s = 1" "retention.interval_s = 1"
        daemon_migrate a
        daemon_start a
        daemon_ready a 60
}

teardown() {
        teardown_daemons
}

set_clock() { echo "$1" > "$T/clock"; }

# referral EXAMPLE ID [feedback]: produce examples/referrals/EXAMPLE.txtpb under
# referral id ID (asking the police's feedback when the third argument says so).
referral() {
        local drop=
        [[ ${3:-} == feedback ]] && drop='/^feedback_requested:/d'
        { sed "s/^referral_id: .*/referral_id: \"$2\"/; $drop" "$ROOT/examples/referrals/$1.txtpb"
          [[ ${3:-} != feedback ]] || echo "feedback_requested: true"; } |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" -k "$2" "$T/msg.bin"
}

# outcome TEXT: produce one CaseOutcome given in text format, keyed by its case id.
outcome() {
        printf '%s\n' "$1" | protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -k "$(outcome_key "$1")" "$T/msg.bin"
}

state_of() { sql "select state from allvarsd.cases c join allvarsd.referrals r using (case_id) where r.referral_id = '$1'"; }
case_of() { sql "select case_id from allvarsd.referrals where referral_id = '$1'"; }
state_is() { [[ $(state_of "$1") == "$2" ]]; }
applied() { [[ $(sql "select count(*) from allvarsd.outcome_events where event_id = '$1'") -eq 1 ]]; }
count_is() { [[ $(sql "$1") -eq $2 ]]; }

@test "deferral then clearance: ELIGIBLE from the moment of clearance, scheduling request sent then" {
        referral preliminary-investigation R-DEFER-1
        wait_for 30 state_is R-DEFER-1 DEFERRED
        outcome 'event_id: "clear-1" referral_id: "R-DEFER-1" occurred_at { seconds: 1741942800 }
                 actor { kind: ACTOR_KIND_POLICE name: "LPO Centrum" } investigation_cleared {}'
        wait_for 30 state_is R-DEFER-1 ELIGIBLE
        # 48 h from the clearance (2025-03-14T09:00:00Z), not from the report.
        [[ $(sql "select to_char(deadline at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') from allvarsd.cases
                  where case_id = '$(case_of R-DEFER-1)'") == 2025-03-16T09:00:00 ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events police.feedback.v1 allvarssamtal.scheduling.v1 > "$T/events"
        grep "key=$(case_of R-DEFER-1)" "$T/events" > "$T/case_events"
        grep -q 'FEEDBACK_STATUS_CLEARANCE_REQUESTED' "$T/case_events"
        grep 'SchedulingRequest' "$T/case_events" | grep -q 'deadline: 2025-03-16T09:00:00Z'
}

@test "acute risk: protective assessment first, then ELIGIBLE, declined; another case cancelled; overdue assessment alerted" {
        referral acute-risk R-ACUTE-1
        referral acute-risk R-ACUTE-2
        referral preliminary-investigation R-CANCEL-1
        wait_for 30 state_is R-ACUTE-1 DEFERRED
        wait_for 30 state_is R-ACUTE-2 DEFERRED
        wait_for 30 state_is R-CANCEL-1 DEFERRED
        outcome 'event_id: "assess-1" referral_id: "R-ACUTE-1" occurred_at { seconds: 1741707600 }
                 actor { kind: ACTOR_KIND_SOCIAL_WORKER name: "sw.berg" } protective_assessment_recorded {}'
        wait_for 30 state_is R-ACUTE-1 ELIGIBLE
        outcome 'event_id: "declined-1" referral_id: "R-ACUTE-1" occurred_at { seconds: 1741773600 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" } family_declined {}'
        outcome 'event_id: "cancel-1" referral_id: "R-CANCEL-1" occurred_at { seconds: 1742036400 }
                 actor { kind: ACTOR_KIND_SOCIAL_WORKER name: "sw.berg" } cancelled { reason: CANCEL_REASON_MOVED }'
        wait_for 30 state_is R-ACUTE-1 DECLINED
        wait_for 30 state_is R-CANCEL-1 CANCELLED
        # R-ACUTE-2's assessment (due 24 h after 2025-03-11T08:15Z) was never recorded.
        set_clock 2025-03-12T09:00:00Z
        wait_for 30 count_is "select count(*) from allvarsd.case_alerts
                              where kind = 'PROTECTIVE_ASSESSMENT_OVERDUE' and case_id = '$(case_of R-ACUTE-2)'" 1
        [[ $(sql "select count(*) from allvarsd.case_alerts where case_id = '$(case_of R-ACUTE-1)'") -eq 0 ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events police.feedback.v1 allvarssamtal.alerts.v1 > "$T/events"
        grep "key=$(case_of R-ACUTE-1)" "$T/events" | grep -q 'FEEDBACK_STATUS_FAMILY_DECLINED'
        grep "key=$(case_of R-CANCEL-1)" "$T/events" | grep -q 'FEEDBACK_STATUS_CANCELLED'
        grep "key=$(case_of R-ACUTE-2)" "$T/events" | grep -q 'ALERT_KIND_PROTECTIVE_ASSESSMENT_OVERDUE'
}

@test "contact requested then supplied: a new scheduling request without the letter fallback" {
        referral eligible-13-no-guardian-phone R-CONTACT-1
        wait_for 30 state_is R-CONTACT-1 ELIGIBLE
        outcome 'event_id: "contact-1" referral_id: "R-CONTACT-1" occurred_at { seconds: 1741611600 }
                 actor { kind: ACTOR_KIND_POLICE name: "LPO Hisingen" }
                 contact_details_supplied { guardians { name: "Sara Exempelsson" phone: "070-123 45 67" } }'
        wait_for 30 applied contact-1
        [[ $(sql "select awaiting_contact from allvarsd.cases where case_id = '$(case_of R-CONTACT-1)'") == f ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        # The phone number is personal data: shown (and audited) on purpose only.
        events_personal police.feedback.v1 allvarssamtal.scheduling.v1 > "$T/events"
        grep "key=$(case_of R-CONTACT-1)" "$T/events" > "$T/case_events"
        grep -q 'FEEDBACK_STATUS_CONTACT_INFO_REQUESTED' "$T/case_events"
        [[ $(grep -c 'SchedulingRequest' "$T/case_events") -eq 2 ]]
        grep 'SchedulingRequest' "$T/case_events" | head -1 | grep -q 'letter_fallback: true'
        grep 'SchedulingRequest' "$T/case_events" | tail -1 | grep -v 'letter_fallback' | grep -q '070-123 45 67'
}

@test "scheduled, held; illegal transitions are dead-lettered and the next event still applies" {
        referral eligible-13-no-guardian-phone R-HELD-1
        wait_for 30 state_is R-HELD-1 ELIGIBLE
        # No preliminary investigation runs: a clearance is illegal here.
        outcome 'event_id: "clear-not-pending" referral_id: "R-HELD-1" occurred_at { seconds: 1741610000 }
                 actor { kind: ACTOR_KIND_POLICE name: "LPO Hisingen" } investigation_cleared {}'
        outcome 'event_id: "sched-1" referral_id: "R-HELD-1" occurred_at { seconds: 1741617000 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" }
                 conversation_scheduled { scheduled_at { seconds: 1741705200 } police_attending: true }'
        outcome 'event_id: "held-1" referral_id: "R-HELD-1" occurred_at { seconds: 1741708800 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" } conversation_held { police_attended: true }'
        # The case is closed: holding it again is illegal.
        outcome 'event_id: "held-again" referral_id: "R-HELD-1" occurred_at { seconds: 1741709800 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" } conversation_held {}'
        # The same event again: applied once only.
        outcome 'event_id: "held-1" referral_id: "R-HELD-1" occurred_at { seconds: 1741708800 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" } conversation_held { police_attended: true }'
        wait_for 30 count_is "select count(*) from allvarsd.dead_letters where reason = 'ILLEGAL_TRANSITION'" 2
        wait_for 30 state_is R-HELD-1 HELD
        applied sched-1
        applied held-1
        [[ $(sql "select count(*) from allvarsd.audit where case_id = '$(case_of R-HELD-1)' and action = 'HELD'") -eq 1 ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events police.feedback.v1 allvarssamtal.deadletter.v1 > "$T/events"
        grep "key=$(case_of R-HELD-1)" "$T/events" | grep -q 'FEEDBACK_STATUS_SCHEDULED.*meeting_at: 2025-03-11T15:00:00Z'
        grep "key=$(case_of R-HELD-1)" "$T/events" | grep -q 'FEEDBACK_STATUS_HELD'
        [[ $(grep -c 'DEAD_LETTER_REASON_ILLEGAL_TRANSITION' "$T/events") -eq 2 ]]
}

@test "override through allvarsctl opens a case for a NOT_ELIGIBLE referral and corrects the police's status" {
        referral too-old R-OVR-1 feedback
        wait_for 30 count_is "select count(*) from allvarsd.decisions where referral_id = 'R-OVR-1'" 1
        [[ -z $(state_of R-OVR-1) ]]
        run ctl_as_operator a override R-OVR-1 --outcome ELIGIBLE \
                --reason-file <(echo "Utvecklingsmässigt yngre; handläggaren bedömer att samtal behövs") --by sw.lind \
                --wait 30
        [[ $status -eq 0 ]]
        state_is R-OVR-1 ELIGIBLE
        [[ $(sql "select actor_kind || ':' || actor_name from allvarsd.audit where action = 'OVERRIDDEN'") == SOCIAL_WORKER:sw.lind ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events police.feedback.v1 > "$T/events"
        grep "key=$(case_of R-OVR-1)" "$T/events" | grep 'ASSESSED' | tail -1 | grep -q 'OUTCOME_ELIGIBLE'
        # The reason stays in the audit trail and never reaches the police.
        ! grep -q 'Utvecklings' "$T/events"
}

@test "a deadline missed on the set clock raises MISSED and NOT_HELD_IN_TIME once" {
        referral eligible-13-no-guardian-phone R-MISS-1
        wait_for 30 state_is R-MISS-1 ELIGIBLE
        set_clock 2025-03-11T23:00:00Z        # 75 % of 48 h after 2025-03-10T10:00Z is 2025-03-11T22:00Z
        wait_for 30 count_is "select count(*) from allvarsd.case_alerts where kind = 'AT_RISK'" 1
        set_clock 2025-03-12T10:00:01Z
        wait_for 30 count_is "select count(*) from allvarsd.case_alerts where kind = 'MISSED'" 1
        sleep 3                               # several more watch rounds
        [[ $(sql "select count(*) from allvarsd.case_alerts") -eq 2 ]]
        wait_for 30 count_is "select count(*) from allvarsd.outbox" 0
        events allvarssamtal.alerts.v1 police.feedback.v1 > "$T/events"
        [[ $(grep -c 'ALERT_KIND_MISSED' "$T/events") -eq 1 ]]
        [[ $(grep -c 'ALERT_KIND_AT_RISK' "$T/events") -eq 1 ]]
        [[ $(grep -c 'FEEDBACK_STATUS_NOT_HELD_IN_TIME' "$T/events") -eq 1 ]]
}

@test "retention purges the personal data of closed cases on the set clock, and audits it" {
        referral eligible-13-no-guardian-phone R-PURGE-1
        referral preliminary-investigation R-KEEP-1
        wait_for 30 state_is R-PURGE-1 ELIGIBLE
        wait_for 30 state_is R-KEEP-1 DEFERRED
        outcome 'event_id: "purge-held" referral_id: "R-PURGE-1" occurred_at { seconds: 1741708800 }
                 actor { kind: ACTOR_KIND_BOOKING_SERVICE name: "bokning" } conversation_held {}'
        wait_for 30 state_is R-PURGE-1 HELD
        [[ $(sql "select count(*) from allvarsd.referral_personal where referral_id = 'R-PURGE-1'") -eq 1 ]]
        set_clock 2030-03-12T00:00:00Z        # five years and a day after the case closed
        wait_for 30 count_is "select count(*) from allvarsd.referral_personal where referral_id = 'R-PURGE-1'" 0
        # The pseudonymous rows stay; the open case keeps its personal data; the purge is audited.
        [[ $(sql "select count(*) from allvarsd.decisions where referral_id = 'R-PURGE-1'") -eq 1 ]]
        [[ $(sql "select count(*) from allvarsd.referral_personal where referral_id = 'R-KEEP-1'") -eq 1 ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PURGED' and referral_id = 'R-PURGE-1'") -eq 1 ]]
        [[ $(sql "select count(*) from allvarsd.case_contacts where case_id = '$(case_of R-PURGE-1)'") -eq 0 ]]
}

# watch_blocked NAME: daemon NAME's deadline watch is in its pass, in the INSERT
# of the alerts (deadline_watch.c step 3), waiting for the table lock the test holds.
watch_blocked() {
        local pids
        pids=$(daemon_backends "$1" | awk '$2 == "allvarsd-jobs" { print $1 }' | paste -sd,)
        [[ -n $pids ]] || return 1
        [[ $(sql "select count(*) from pg_stat_activity where pid in ($pids) and wait_event_type = 'Lock'
                  and query like 'INSERT INTO allvarsd.case_alerts%'") -eq 1 ]]
}

watch_blocked_any() { watch_blocked a || watch_blocked b; }

@test "alerts are raised exactly once with two instances and a kill -9 in the middle of the watch" {
        # Both instances over TCP, so that the test can tell their backends apart.
        daemon_stop a
        PGHOST=127.0.0.1 daemon_conf a "clock.file = $T/clock" "deadline_watch.interval_s = 1"
        PGHOST=127.0.0.1 daemon_conf b "clock.file = $T/clock" "deadline_watch.interval_s = 1"
        daemon_start a
        daemon_start b
        daemon_ready a 60
        daemon_ready b 60
        gen --count 400 --seed 31 --reported-at 2025-03-10T10:00:00Z --ids-out "$T/ids"
        wait_for 90 count_is "select count(*) from allvarsd.decisions" "$(expected_ids "$T/ids" | wc -l)"
        eligible=$(sql "select count(*) from allvarsd.cases where state = 'ELIGIBLE'")
        [[ $eligible -gt 20 ]]
        # The test holds the alerts table (reads allowed, inserts wait): a watch pass
        # that has locked its due cases stops at its INSERT until the lock goes.
        PGAPPNAME=test-locker psql -XAtq -d "$DB" -c "begin; lock table allvarsd.case_alerts in share mode;
                select pg_sleep(120)" >/dev/null 2>&1 &
        locker=$!
        wait_for 10 count_is "select count(*) from pg_locks l join pg_stat_activity a using (pid)
                               where a.application_name = 'test-locker' and l.relation = 'allvarsd.case_alerts'::regclass
                               and l.granted" 1
        set_clock 2025-03-20T00:00:00Z        # every deadline has passed
        # The marker: one instance's watch is in its pass (pg_stat_activity shows
        # its INSERT waiting; whichever locked the due cases first, the other skips
        # them). The kill lands there; nothing of the pass is committed.
        wait_for 30 watch_blocked_any
        victim=$(watch_blocked a && echo a || echo b)
        watch_blocked "$victim"
        daemon_stop "$victim" KILL
        [[ $(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED'") -eq 0 ]]
        sql "select pg_cancel_backend(pid) from pg_stat_activity where application_name = 'test-locker'" >/dev/null
        wait "$locker" || true
        daemon_start "$victim"
        wait_for 60 count_is "select count(distinct case_id) from allvarsd.case_alerts where kind = 'MISSED'" "$eligible"
        sleep 3
        [[ $(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED'") -eq $eligible ]]
        wait_for 60 count_is "select count(*) from allvarsd.outbox" 0
        events allvarssamtal.alerts.v1 > "$T/alerts"
        # One event id per case and kind on the topic, however often it was delivered.
        grep 'ALERT_KIND_MISSED' "$T/alerts" | sed -n 's/.*key=\([^ ]*\) ce_id=\([^ ]*\) .*/\1 \2/p' | sort -u > "$T/pairs"
        [[ $(wc -l < "$T/pairs") -eq $eligible ]]
        [[ $(cut -d' ' -f1 "$T/pairs" | sort -u | wc -l) -eq $eligible ]]
}
