#!/usr/bin/env bats
# Every key allvarsd.conf(5) marks reloadable, changed in the file and applied
# by SIGHUP, observed in what the daemon then does (decisions, events, batches,
# the outbox relay, the periodic jobs, the log), not in the reload's log line.
# allvarsd as a process, librdkafka's mock cluster in a process of its own,
# the daemon's clock set by the test (clock.file).

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash

setup() {
        db_create
        mock_start
        echo 2025-03-10T12:00:00Z > "$T/clock"
}

teardown() {
        teardown_daemons
}

# start LINES...: the daemon with the test's configuration lines, ready.
start() {
        daemon_conf a "clock.file = $T/clock" "$@"
        daemon_migrate a >/dev/null
        daemon_start a
        daemon_ready a
}

reloads() { grep -c 'Configuration reloaded' "$T/a.log" || true; }
reloads_above() { [[ $(reloads) -gt $1 ]]; }

# reload LINES...: set each "key = value" in the file (replacing the key's line), SIGHUP,
# and wait until the daemon says it applied it.
reload() {
        local line key before
        for line in "$@"; do
                key=${line%% = *}
                grep -v -F "$key = " "$T/a.conf" > "$T/a.conf.new" || true
                echo "$line" >> "$T/a.conf.new"
                mv "$T/a.conf.new" "$T/a.conf"
        done
        before=$(reloads)
        kill -HUP "$(daemon_pid a)"
        wait_for 10 reloads_above "$before"
}

# reload_quiet LINES...: the same for a reload whose own log line goes elsewhere (log.*):
# wait for another key of the same reload to show in a decision instead.
reload_quiet() {
        local line key
        for line in "$@"; do
                key=${line%% = *}
                grep -v -F "$key = " "$T/a.conf" > "$T/a.conf.new" || true
                echo "$line" >> "$T/a.conf.new"
                mv "$T/a.conf.new" "$T/a.conf"
        done
        kill -HUP "$(daemon_pid a)"
}

# referral EXAMPLE ID [SED-EXPRESSION...]: examples/referrals/EXAMPLE.txtpb as referral ID, edited.
referral() {
        local example=$1 id=$2 e args=()
        shift 2
        for e in "$@"; do args+=(-e "$e"); done
        sed -e "s/^referral_id: .*/referral_id: \"$id\"/" "${args[@]}" "$ROOT/examples/referrals/$example.txtpb" |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t police.referrals.v1 -k "$id" "$T/msg.bin"
}
in_district() { echo "s/^district: .*/district: \"$1\"/"; }
NO_FEEDBACK='/^feedback_requested:/d'

outcome() {
        printf '%s\n' "$2" | protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto > "$T/msg.bin"
        kcat -P -b "$KAFKA" -t allvarssamtal.outcomes.v1 -k "$1" "$T/msg.bin"
}

decided() { [[ $(sql "select count(*) from allvarsd.decisions where referral_id = '$1'") -eq 1 ]]; }
count_is() { [[ $(sql "$1") -eq $2 ]]; }
case_of() { sql "select case_id from allvarsd.referrals where referral_id = '$1'"; }
drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
# feedback CASE_ID: the feedback statuses published for the case, in order.
feedback() {
        events police.feedback.v1 | grep "key=$1" | grep -o 'FEEDBACK_STATUS_[A-Z_]*' | tr '\n' ' '
}

@test "reload: profile.name, profile.<parameter>, district.<name>.profile, district.<name>.<parameter> decide the next referral" {
        start
        referral eligible-13-no-guardian-phone R-1 "$(in_district angered)"
        wait_for 30 decided R-1
        [[ $(sql "select profile_name || ' ' || profile_version from allvarsd.decisions where referral_id = 'R-1'") == \
           "goteborg-motion-2024 1" ]]
        reload "profile.name = stockholm-2019" "profile.limit_hours = 72" "profile.version = 7" \
                "district.hisingen.profile = ds-2024-30" "district.hisingen.limit_hours = 12"
        referral eligible-13-no-guardian-phone R-2 "$(in_district angered)"
        referral eligible-13-no-guardian-phone R-3 "$(in_district hisingen)"
        wait_for 30 decided R-2
        wait_for 30 decided R-3
        [[ $(sql "select profile_name || ' ' || profile_version from allvarsd.decisions where referral_id = 'R-2'") == \
           "stockholm-2019 7" ]]
        [[ $(sql "select params from allvarsd.decisions join allvarsd.profile_params using (params_key) where referral_id = 'R-2'") == *"limit_hours=72"* ]]
        [[ $(sql "select profile_name from allvarsd.decisions where referral_id = 'R-3'") == ds-2024-30 ]]
        [[ $(sql "select params from allvarsd.decisions join allvarsd.profile_params using (params_key) where referral_id = 'R-3'") == *"limit_hours=12"* ]]
}

@test "reload: feedback.always and feedback.level decide what the police are told" {
        start
        # Without feedback_requested: only the request for contact details (the police must act).
        referral eligible-13-no-guardian-phone R-1 "$NO_FEEDBACK"
        wait_for 30 decided R-1
        reload "feedback.always = true"
        referral eligible-13-no-guardian-phone R-2 "$NO_FEEDBACK"
        wait_for 30 decided R-2
        reload "feedback.level = statutory"
        referral eligible-13-no-guardian-phone R-3 "$NO_FEEDBACK"
        wait_for 30 decided R-3
        wait_for 30 drained
        [[ $(feedback "$(case_of R-1)") == "FEEDBACK_STATUS_CONTACT_INFO_REQUESTED " ]]
        [[ $(feedback "$(case_of R-2)") == *FEEDBACK_STATUS_RECEIVED*FEEDBACK_STATUS_CONTACT_INFO_REQUESTED* ]]
        [[ $(feedback "$(case_of R-3)") == *FEEDBACK_STATUS_RECEIVED* ]]
        [[ $(feedback "$(case_of R-3)") != *CONTACT_INFO_REQUESTED* ]]
}

# The transactions that wrote the referrals of one generated run (--first N --count M).
transactions() {
        sql "select count(distinct xmin::text) from allvarsd.referrals where referral_id in
             ($(awk '$1 == "valid" { printf "%s\x27%s\x27", (n++ ? "," : ""), $2 }' "$1"))"
}
valid_count() { awk '$1 == "valid"' "$1" | wc -l; }
all_decided() { [[ $(decided_count) -ge $1 ]]; }

@test "reload: batch.max_messages, batch.max_wait_ms and limits.max_message_bytes shape the next batches" {
        start "batch.connections = 1" "batch.max_wait_ms = 1000"
        # Up to 500 a batch: the burst is stored in a few transactions.
        gen --count 30 --seed 41 --ids-out "$T/ids1"
        wait_for 30 all_decided "$(valid_count "$T/ids1")"
        [[ $(transactions "$T/ids1") -le 10 ]]
        # One a batch: a transaction each.
        reload "batch.max_messages = 1"
        gen --count 30 --first 30 --seed 42 --ids-out "$T/ids2"
        wait_for 30 all_decided $(($(valid_count "$T/ids1") + $(valid_count "$T/ids2")))
        [[ $(transactions "$T/ids2") -eq $(valid_count "$T/ids2") ]]
        # A long wait holds a lone referral back; a short one lets it through.
        reload "batch.max_messages = 500" "batch.max_wait_ms = 60000"
        referral eligible-13-no-guardian-phone R-WAIT
        if wait_for 3 decided R-WAIT 2>/dev/null; then false; fi
        reload "batch.max_wait_ms = 10"
        wait_for 10 decided R-WAIT
        # A larger message than the new limit is dead-lettered unread; it was accepted before.
        long="s/^narrative: .*/narrative: \"$(head -c 1200 /dev/zero | tr '\0' 'x')\"/"
        referral eligible-13-no-guardian-phone R-BIG-1 "$long"
        wait_for 30 decided R-BIG-1
        reload "limits.max_message_bytes = 1024"
        referral eligible-13-no-guardian-phone R-BIG-2 "$long"
        wait_for 30 count_is "select count(*) from allvarsd.dead_letters where reason = 'OVERSIZED'" 1
        ! decided R-BIG-2
}

# The most events of a run marked delivered in one statement (one sent_at). The relay
# reads at most relay.batch rows a pass and keeps at most 4 x relay.batch in flight, and
# marks what was delivered once per pass (relay.c work): so at most 5 x relay.batch.
largest_mark() {
        sql "select max(n) from (select count(*) as n from allvarsd.outbox_sent s
             join allvarsd.referrals r on s.key = r.case_id::text where r.referral_id in
             ($(awk '$1 == "valid" { printf "%s\x27%s\x27", (n++ ? "," : ""), $2 }' "$1")) group by s.sent_at) m"
}

@test "reload: relay.batch, relay.poll_ms and event.source change how the outbox is published" {
        start "relay.batch = 1000"
        gen --count 20 --seed 51 --ids-out "$T/ids1"
        wait_for 30 all_decided "$(valid_count "$T/ids1")"
        wait_for 30 drained
        (($(largest_mark "$T/ids1") > 5))
        # One row a pass.
        reload "relay.batch = 1"
        gen --count 20 --first 20 --seed 52 --ids-out "$T/ids2"
        wait_for 30 all_decided $(($(valid_count "$T/ids1") + $(valid_count "$T/ids2")))
        wait_for 30 drained
        (($(largest_mark "$T/ids2") <= 5))
        # A row written without waking the relay waits for its poll: an hour, then 100 ms.
        reload "relay.poll_ms = 3600000"
        sql "insert into allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload) values
             ('99999999-9999-4999-8999-999999999999', 'allvarssamtal.alerts.v1', 'k', 'se.allvarssamtal.v1.DeadlineAlert',
              now(), '\x00')" >/dev/null
        if wait_for 3 drained 2>/dev/null; then false; fi
        reload "relay.poll_ms = 100"
        wait_for 5 drained
        # The CloudEvents source of what is published from now on.
        reload "event.source = urn:allvarsd:reloaded"
        referral eligible-13-no-guardian-phone R-SRC
        wait_for 30 decided R-SRC
        wait_for 30 drained
        kcat -C -b "$KAFKA" -t police.feedback.v1 -o beginning -e -q -f '%k %h\n' > "$T/headers"
        grep "^$(case_of R-SRC) " "$T/headers" | grep -q 'ce_source=urn:allvarsd:reloaded'
        grep -v "^$(case_of R-SRC) " "$T/headers" | grep -q 'ce_source=urn:allvarsd\(,\|$\)'
}

@test "reload: deadline_watch.interval_s, retention.interval_s, retention.not_eligible_days, retention.closed_case_days" {
        start "deadline_watch.interval_s = 86400" "retention.interval_s = 604800" \
                "retention.not_eligible_days = 36500" "retention.closed_case_days = 36500"
        referral eligible-13-no-guardian-phone R-1
        referral eligible-13-no-guardian-phone R-2
        referral too-old R-OLD
        wait_for 30 decided R-1
        wait_for 30 decided R-2
        wait_for 30 decided R-OLD
        # R-2 closes (cancelled) now.
        outcome "$(case_of R-2)" 'event_id: "cancel-2" referral_id: "R-2" occurred_at { seconds: 1741608000 }
                 actor { kind: ACTOR_KIND_SOCIAL_WORKER name: "sw" } cancelled { reason: CANCEL_REASON_MOVED }'
        wait_for 30 count_is "select count(*) from allvarsd.cases where state = 'CANCELLED'" 1
        # Ten days on: R-1's deadline has passed, R-OLD and the closed R-2 are old.
        echo 2025-03-20T12:00:00Z > "$T/clock"
        missed="select count(*) from allvarsd.case_alerts where kind = 'MISSED'"
        personal() { sql "select count(*) from allvarsd.referral_personal where referral_id = '$1'"; }
        # The watch runs daily: nothing yet. Every second: the MISSED alert.
        if wait_for 3 count_is "$missed" 1 2>/dev/null; then false; fi
        reload "deadline_watch.interval_s = 1"
        wait_for 10 count_is "$missed" 1
        # Purge NOT_ELIGIBLE personal data after a day, but the purge runs weekly: nothing yet.
        reload "retention.not_eligible_days = 1"
        [[ $(personal R-OLD) -eq 1 ]]
        if wait_for 3 count_is "select count(*) from allvarsd.referral_personal where referral_id = 'R-OLD'" 0 \
                2>/dev/null; then false; fi
        # Every second: gone. Closed cases are kept for 36500 days still.
        reload "retention.interval_s = 1"
        wait_for 10 count_is "select count(*) from allvarsd.referral_personal where referral_id = 'R-OLD'" 0
        [[ $(personal R-2) -eq 1 ]]
        reload "retention.closed_case_days = 1"
        wait_for 10 count_is "select count(*) from allvarsd.referral_personal where referral_id = 'R-2'" 0
        # The open case keeps its personal data.
        [[ $(personal R-1) -eq 1 ]]
}

# probe_version V: one more referral; true when it was decided under profile version V.
PROBES=0
probe_version() {
        PROBES=$((PROBES + 1))
        referral eligible-13-no-guardian-phone "R-PROBE-$PROBES"
        wait_for 30 decided "R-PROBE-$PROBES"
        [[ $(sql "select profile_version from allvarsd.decisions where referral_id = 'R-PROBE-$PROBES'") -eq $1 ]]
}

@test "reload: log.level and log.target change what reaches the log" {
        start "log.level = info"
        referral eligible-13-no-guardian-phone R-1
        wait_for 30 decided R-1
        grep -q 'Referral R-1 decided' "$T/a.log"
        # At notice, single decisions are not logged (the reload's own line is a notice).
        reload "log.level = notice" "profile.version = 2"
        referral eligible-13-no-guardian-phone R-2
        wait_for 30 decided R-2
        [[ $(sql "select profile_version from allvarsd.decisions where referral_id = 'R-2'") -eq 2 ]]
        if grep 'R-2' "$T/a.log"; then false; fi
        # To the journal: nothing more on stderr, decisions included.
        # (The reload says so in the journal: a referral decided under the
        # profile version of the same reload shows it applied.)
        reload_quiet "log.target = journal" "log.level = info" "profile.version = 3"
        wait_for 20 probe_version 3
        lines=$(wc -l < "$T/a.log")
        referral eligible-13-no-guardian-phone R-4
        wait_for 30 decided R-4
        if grep 'R-4' "$T/a.log"; then false; fi
        [[ $(wc -l < "$T/a.log") -eq $lines ]]
}

# The keys allvarsd.conf(5) (written from the one table of keys, config_write_man) marks
# reloadable, as "profile.<parameter>" for families.
reloadable_keys() {
        awk '/^\.B / { key = substr($0, 4) } /reloadable \(SIGHUP\)/ { print key }' "$ROOT/deploy/allvarsd.conf.5" |
                sed -e 's/\\fI\([a-z]*\)\\fR/<\1>/g' -e 's/\\//g'
}

@test "reload: every key marked reloadable is exercised by a test of this file" {
        reloadable_keys > "$T/keys"
        [[ $(wc -l < "$T/keys") -ge 15 ]]
        while read -r key; do
                grep '^@test "reload: ' "$BATS_TEST_FILENAME" | grep -q -F " $key" ||
                        { echo "no reload test names $key" >&2; return 1; }
        done < "$T/keys"
}
