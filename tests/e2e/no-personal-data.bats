#!/usr/bin/env bats
# No personal data leaves allvarsd through its log or its feedback to the police
# (docs/domain.md "Feedback to the police"; the project's rule: never log
# personal data). One full stream on the real broker and PostgreSQL of
# tests/run e2e, with log.level=debug: several hundred generated referrals
# (duplicates, malformed messages), the sample referrals and outcome events of
# examples/, the deadline watch, a reload, the retention purge and a clean stop.
# Everything the daemon writes to stderr is captured, and so is every STATUS=
# it sends to systemd (NOTIFY_SOCKET, tests/tools/notify-listen.c), the police
# feedback, alerts and dead-letter topics (raw bytes with keys and headers, and
# decoded by allvarsctl), the scheduling topic's keys and headers (its values
# carry the names and contacts the booking service needs, by design), and the
# output of every allvarsctl subcommand, run as the operator's role. Then every identity number, name, guardian name, phone
# number, e-mail, postal address, birth date and narrative word (>= 8 letters)
# of the inputs is read back (PostgreSQL, the consumed payloads, the example
# files) and must occur in none of the captures.

load ../lib/daemon.bash
load ../lib/stored.bash

PROTO=(protoc --proto_path="$ROOT/proto" --proto_path=/usr/include)

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        command -v protoc >/dev/null || skip "protoc not installed"
        db_create
        real_kafka_topics
        # The samples were reported in March 2025: the daemon's settable clock starts there.
        echo 2025-03-10T12:00:00Z >"$T/clock"
        daemon_conf a "log.level = debug" "clock.file = $T/clock" "feedback.always = true" \
                "deadline_watch.interval_s = 1" "retention.interval_s = 1"
        daemon_migrate a
}

teardown() {
        [[ -z ${NOTIFY_PID:-} ]] || kill "$NOTIFY_PID" 2>/dev/null || true
        teardown_daemons
}

outbox_drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
count_at_least() { [[ $(sql "$1") -ge $2 ]]; }
log_has() { grep -qE "$1" "$T/a.log"; }

# Every personal value of the inputs, "KIND<TAB>VALUE", into $T/personal.
collect_personal() {
        {
                sql "select 'name', name from allvarsd.case_contacts
                     union select 'phone', phone from allvarsd.case_contacts
                     union select 'email', email from allvarsd.case_contacts
                     union select 'postal_address', postal_address from allvarsd.case_contacts" |
                        sed 's/|/\t/'
                # The payloads as consumed: the child's identity, names and the narrative (their
                # only copy, schemas/017_personal_payload.sql), and the guardians of referrals
                # that opened no case too.
                stored_referrals_text "$T" >"$T/payloads.txt"
                text_values "$T/payloads.txt"
                text_values "$ROOT"/examples/referrals/*.txtpb
                # Outcomes: the guardians the police supplied, the override's free-text reason.
                text_values "$ROOT"/examples/outcomes/*.txtpb
        } | awk -F '\t' 'length($2) > 0' | sort -u >"$T/personal"
}

# From $T/personal, the search patterns: $T/pat.fixed (whole values and their
# other spellings, matched anywhere) and $T/pat.words (single names and
# narrative words, matched as whole words).
build_patterns() {
        # One perl over every value (a loop in bash with a tr, sed or awk for most
        # of them took 25 s of this test on a slow machine). By kind:
        #  identity_number  as given, and as a log line might normalise it: its
        #                   digits (10 or 12), the 10 with '-' and '+' after six,
        #                   and the birth date a 12-digit number contains;
        #  phone            as given, its digits, and 07... for 467... and back;
        #  postal_address   whole, and each part between commas of 6 bytes or
        #                   more ("Storgatan 1" and "411 01 Göteborg" are
        #                   specific on their own);
        #  name             whole, and each name in it (2 bytes or more) as a word;
        #  given_name, family_name  as words;
        #  narrative, reason  whole texts are long: each word of 8 letters or
        #                   more, but the daemon's own vocabulary (below);
        #  anything else    as given.
        perl -e '
                use Encode qw(decode_utf8);
                my ($fixed, $words, $narr) = @ARGV;
                open(my $F, ">", $fixed) or die; open(my $W, ">", $words) or die; open(my $N, ">", $narr) or die;
                while (my $line = <STDIN>) {
                        chomp $line;
                        my ($kind, $value) = split /\t/, $line, 2;
                        $value //= "";
                        if ($kind eq "identity_number") {
                                (my $d = $value) =~ s/[^0-9]//g;
                                my $short = length($d) == 12 ? substr($d, 2) : $d;
                                print $F "$_\n" for $value, $d, $short, substr($short, 0, 6) . "-" . substr($short, 6),
                                        substr($short, 0, 6) . "+" . substr($short, 6);
                                print $F substr($d, 0, 4) . "-" . substr($d, 4, 2) . "-" . substr($d, 6, 2) . "\n" if length($d) == 12;
                        } elsif ($kind eq "phone") {
                                (my $d = $value) =~ s/[^0-9]//g;
                                print $F "$value\n$d\n";
                                print $F "0" . substr($d, 2) . "\n" if $d =~ /^46/;
                                print $F "46" . substr($d, 1) . "\n" if $d =~ /^0/;
                        } elsif ($kind eq "postal_address") {
                                print $F "$value\n";
                                for (split /,/, $value, -1) { s/^ +//; s/ +$//; print $F "$_\n" if length($_) >= 6 }
                        } elsif ($kind eq "given_name" || $kind eq "family_name") {
                                print $W "$value\n";
                        } elsif ($kind eq "name") {
                                print $F "$value\n";
                                for (split / /, $value, -1) { print $W "$_\n" if length($_) >= 2 }
                        } elsif ($kind eq "narrative" || $kind eq "reason") {
                                for (split /[[:space:][:punct:]]+/, $value) {
                                        print $N "$_\n" if length(decode_utf8($_)) >= 8;
                                }
                        } else {
                                print $F "$value\n";
                        }
                }
        ' "$T/pat.fixed.tmp" "$T/pat.words" "$T/narrative.words" <"$T/personal"
        { grep -v '^$' "$T/pat.fixed.tmp" || true; } | sort -u >"$T/pat.fixed"
        rm -f "$T/pat.fixed.tmp"
        # The narratives' words but the daemon's own vocabulary ("förundersökning" is a
        # reason it explains in words, daemon/reasons.c): those of them that occur as a
        # whole word in its sources, in any case, found in one pass (a grep per word
        # took 40 s of this test on a slow machine).
        sort -u -o "$T/narrative.words" "$T/narrative.words"
        if [[ -s $T/narrative.words ]]; then
                { grep -ohiwF -f "$T/narrative.words" "$ROOT"/daemon/*.c || true; } | sort -u >"$T/narrative.own"
                { grep -vixF -f "$T/narrative.own" "$T/narrative.words" || true; } >>"$T/pat.words"
        fi
        sort -u -o "$T/pat.words" "$T/pat.words"
}

# scan FILE...: no pattern occurs in any FILE. Reports where, with the value masked.
scan() {
        local f hits=0 out
        for f in "$@"; do
                [[ -s $f ]] || { echo "nothing captured in $f" >&2; return 1; }
                out=$( { grep -a -n -o -i -F -f "$T/pat.fixed" "$f"; grep -a -n -o -i -w -F -f "$T/pat.words" "$f"; } || true)
                if [[ -n $out ]]; then
                        hits=$((hits + $(wc -l <<<"$out")))
                        echo "personal data in ${f##*/}:" >&2
                        # line:value -> line: first letter and length only
                        awk -F: '{ v = substr($0, length($1) + 2); printf "  line %s: %s... (%d bytes)\n", $1, substr(v, 1, 1), length(v) }' \
                                <<<"$out" | head -n 20 >&2
                fi
        done
        ((hits == 0))
}

# ctl_every_subcommand: every allvarsctl subcommand, as the operator runs it
# (ctl_as_operator), its output (stdout and stderr) into $T/ctl.NAME.txt: status,
# cases, case (every case, text and JSON), dead-letters list / show (every one) /
# replay, override (its reason is personal data the audit keeps), events,
# decide --explain on every example referral, check-config, migrate.
ctl_every_subcommand() {
        local c id f
        ctl_as_operator a status --bootstrap "$KAFKA" >"$T/ctl.status.txt" 2>&1
        ctl_as_operator a status --json --bootstrap "$KAFKA" >>"$T/ctl.status.txt" 2>&1
        { ctl_as_operator a cases; ctl_as_operator a cases --overdue --json; } >"$T/ctl.cases.txt" 2>&1
        : >"$T/ctl.case.txt"
        # Every case, with the operator's configuration written above by
        # ctl_as_operator (a.ctl.conf), not written again for each one.
        [[ -s $T/a.ctl.conf ]]
        for c in $(sql "select case_id from allvarsd.cases order by case_id"); do
                echo "CASE $c" >>"$T/ctl.case.txt"
                "$BUILD/allvarsctl" case "$c" --config "$T/a.ctl.conf" >>"$T/ctl.case.txt" 2>&1
                "$BUILD/allvarsctl" case "$c" --json --config "$T/a.ctl.conf" >>"$T/ctl.case.txt" 2>&1
        done
        ctl_as_operator a dead-letters list --json >"$T/ctl.dead-letters.txt" 2>&1
        ctl_as_operator a dead-letters list >>"$T/ctl.dead-letters.txt" 2>&1
        for id in $(sql "select id from allvarsd.dead_letters order by id"); do
                ctl_as_operator a dead-letters show "$id" >>"$T/ctl.dead-letters.txt" 2>&1
        done
        id=$(sql "select min(id) from allvarsd.dead_letters where source_topic like '%referrals%' and payload is not null")
        ctl_as_operator a dead-letters replay "$id" >>"$T/ctl.dead-letters.txt" 2>&1
        # An override whose reason names the child: stored for the audit, never shown.
        local rid given=
        for rid in $(sql "select referral_id from allvarsd.cases where closed_at is null order by case_id"); do
                given=$(stored_referral_text "$rid" | text_values /dev/stdin |
                        awk -F '\t' '$1 == "given_name" { print $2; exit }')
                [[ -z $given ]] || break
        done
        [[ -n $given ]]
        c="$(sql "select case_id from allvarsd.cases where referral_id = '$rid' limit 1") $given"
        printf 'reason\tSamtal med %s behövs enligt handläggaren\n' "${c#* }" >>"$T/personal"
        ctl_as_operator a override "${c%% *}" --outcome ELIGIBLE --by sw.test --wait 60 \
                >"$T/ctl.override.txt" 2>&1 < <(echo "Samtal med ${c#* } behövs enligt handläggaren")
        grep -q 'applied' "$T/ctl.override.txt"
        "$BUILD/allvarsctl" events --bootstrap "$KAFKA" --from-beginning --idle-exit 2000 \
                --topic "${TOPIC_PREFIX}police.feedback.v1" --topic "${TOPIC_PREFIX}allvarssamtal.alerts.v1" \
                --topic "${TOPIC_PREFIX}allvarssamtal.deadletter.v1" >"$T/ctl.events.txt" 2>&1
        : >"$T/ctl.decide.txt"
        for f in "$ROOT"/examples/referrals/*.txtpb; do
                "${PROTO[@]}" --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto \
                        <"$f" >"$T/decide.bin"
                "$BUILD/allvarsctl" decide --now 2025-03-10T12:00:00Z --explain "$T/decide.bin" >>"$T/ctl.decide.txt" 2>&1
        done
        # (The operator's file has no pepper, and the operator may not migrate: their
        # refusals are output to scan too.)
        ctl_as_operator a check-config >"$T/ctl.check-config.txt" 2>&1 || true
        ctl_as_operator a migrate --schemas "$ROOT/schemas" >"$T/ctl.migrate.txt" 2>&1 || true
}

@test "no identity number, name, phone, address or narrative from the inputs in the debug log or the police feedback" {
        "$BUILD/tests/notify-listen" "$T/notify.sock" >"$T/notify.out" &
        NOTIFY_PID=$!
        wait_for 5 test -S "$T/notify.sock"
        NOTIFY_SOCKET=$T/notify.sock daemon_start a
        daemon_ready a 60

        # The sample referrals of examples/, as examples/demo.sh sends them.
        local f n_examples=0
        for f in "$ROOT"/examples/referrals/*.txtpb; do
                "${PROTO[@]}" --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto \
                        <"$f" >"$T/example.bin"
                kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" \
                        -k "$(sed -n 's/^referral_id: *"\(.*\)"/\1/p' "$f")" "$T/example.bin"
                n_examples=$((n_examples + 1))
        done
        gen --count 400 --seed 71 --duplicates 10 --malformed 20 --reported-at 2025-03-10T08:00:00Z \
                --ids-out "$T/ids"
        wait_for 90 decided_at_least "$(($(expected_ids "$T/ids" | wc -l) + n_examples))"

        # The outcome examples, in the order they happened (demo.sh).
        local n_outcomes=0
        for f in $(for f in "$ROOT"/examples/outcomes/*.txtpb; do
                        echo "$(sed -n 's/^occurred_at { seconds: \([0-9]*\).*/\1/p' "$f") $f"
                   done | sort -n | cut -d' ' -f2); do
                "${PROTO[@]}" --encode=allvarssamtal.v1.CaseOutcome allvarssamtal/v1/outcome.proto \
                        <"$f" >"$T/outcome.bin"
                kcat -P -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -k "$(outcome_key "$(cat "$f")")" \
                        "$T/outcome.bin"
                n_outcomes=$((n_outcomes + 1))
        done
        wait_for 60 count_at_least "select (select count(*) from allvarsd.outcome_events)
                + (select count(*) from allvarsd.dead_letters where source_topic like '%outcomes%')" "$n_outcomes"
        [[ $(sql "select count(*) from allvarsd.outcome_events") -ge 6 ]]

        # Read the inputs' personal data now: the retention purge below deletes some of it.
        collect_personal
        # The collection itself is right: every stored message decoded on its own, and the
        # children's identity numbers among what it found
        [[ $(grep -c '^r {' "$T/payloads.txt") -eq $(sql "select count(*) from allvarsd.referral_personal") ]]
        # (a person's number may come in two spellings, 10 and 12 digits: at least as many
        # numbers as persons)
        [[ $(awk -F '\t' '$1 == "identity_number"' "$T/personal" | wc -l) -ge \
           $(sql "select count(distinct person_key) from allvarsd.referrals") ]]

        # Five days on: the deadline watch raises alerts (and feedback NOT_HELD_IN_TIME).
        echo 2025-03-15T12:00:00Z >"$T/clock"
        wait_for 30 count_at_least "select count(*) from allvarsd.case_alerts" 1
        # A reload logs the effective configuration again.
        kill -HUP "$(daemon_pid a)"
        wait_for 10 log_has 'Configuration reloaded'
        # Seven months on: the retention purge of NOT_ELIGIBLE referrals.
        echo 2025-10-15T12:00:00Z >"$T/clock"
        wait_for 30 log_has 'Retention purged'
        wait_for 60 outbox_drained
        ctl_every_subcommand
        wait_for 60 outbox_drained
        daemon_stop a
        [[ $DAEMON_RC -eq 0 ]]
        kill "$NOTIFY_PID"
        # The delivered scheduling requests (names, contacts) left the database
        # with their outbox rows: only their records stay, without a payload.
        [[ $(sql "select count(*) from allvarsd.outbox_sent
                   where ce_type = 'se.allvarssamtal.v1.SchedulingRequest'") -ge 1 ]]
        [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]

        # (The dead letter replayed by ctl_every_subcommand is dead-lettered once more.)
        echo "malformed replayed" >"$T/replayed.ids"
        check_exactly_once "$T/ids" <(sed -n 's/^referral_id: *"\(.*\)"/valid \1/p' "$ROOT"/examples/referrals/*.txtpb) \
                "$T/replayed.ids"

        # The captures: the daemon's whole log, the feedback and alert topics raw
        # (key, headers, value) and decoded.
        local t
        for t in police.feedback.v1 allvarssamtal.alerts.v1 allvarssamtal.deadletter.v1; do
                kcat -C -b "$KAFKA" -t "$TOPIC_PREFIX$t" -e -q -f '%k\t%h\t%s\n' >"$T/$t.raw"
        done
        kcat -C -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.scheduling.v1" -e -q -f '%k\t%h\n' \
                >"$T/scheduling.keys-headers"
        events police.feedback.v1 allvarssamtal.alerts.v1 allvarssamtal.deadletter.v1 >"$T/events.txt"
        grep '^STATUS=' "$T/notify.out" >"$T/status.txt"
        # Not vacuous: the log covers the stream, and the feedback is there for every referral.
        local decided
        decided=$(decided_count)
        [[ $(grep -c ' decided: ' "$T/a.log") -ge $decided ]]
        local line
        for line in 'dead-lettered' 'seen before' 'Outcome .* applied to case' 'Deadline watch raised' \
                'Configuration reloaded' 'Retention purged' 'Stopping'; do
                log_has "$line" || { echo "the log lacks: $line" >&2; false; }
        done
        [[ $(grep -c . "$T/police.feedback.v1.raw") -ge $decided ]]
        [[ $(grep -c '^police.feedback.v1\|feedback.v1/' "$T/events.txt") -ge $decided ]]
        [[ -s $T/allvarssamtal.alerts.v1.raw ]]
        [[ $(grep -c . "$T/allvarssamtal.deadletter.v1.raw") -ge $(malformed_count "$T/ids") ]]
        [[ $(grep -c 'ce_type=se.allvarssamtal.v1.SchedulingRequest' "$T/scheduling.keys-headers") -ge 1 ]]
        [[ $(grep -c 'decided' "$T/status.txt") -ge 1 ]]
        [[ $(grep -c '^CASE ' "$T/ctl.case.txt") -ge $(sql "select count(*) from allvarsd.cases") ]]

        build_patterns
        # Not vacuous: the inputs' personal data is there to look for, of every kind.
        local kind
        for kind in identity_number birth_date given_name family_name name phone email postal_address narrative reason; do
                [[ $(grep -c "^$kind	" "$T/personal") -ge 1 ]] || { echo "no $kind values collected" >&2; false; }
        done
        [[ $(wc -l <"$T/pat.fixed") -ge 500 && $(wc -l <"$T/pat.words") -ge 30 ]]

        scan "$T/a.log" "$T/police.feedback.v1.raw" "$T/allvarssamtal.alerts.v1.raw" "$T/events.txt" \
                "$T/allvarssamtal.deadletter.v1.raw" "$T/scheduling.keys-headers" "$T/status.txt" "$T"/ctl.*.txt
}
