#!/bin/bash
# Fault scenario 11: the relay's topic refuses writes. During a stream the
# scheduling topic's max.message.bytes is lowered under the relay (Admin API
# AlterConfigs, tests/tools/kafka-topics.c) below the size of a scheduling
# request, held there, then given back the broker's default:
#   topic-refuses   100 bytes for 6 s (the small size) or 30 s
#                   (ALLVARS_FAULTS_TOPIC_REFUSES_S)
# The broker answers MESSAGE_TOO_LARGE for every batch of that topic. The
# relay treats a refusal for size as final (daemon/relay_dead.h): the row
# leaves the outbox for outbox_undeliverable (its record, not its payload), and
# a DeadLetter (OVERSIZED) and an EVENT_UNDELIVERABLE alert of the case take
# its place, with a log line for each, so that the case's later events go on
# and the duty officer knows that the booking service never got the request.
# Checked besides the suite's checks (which count a request so replaced as
# dead-lettered, not lost): the fault struck (some events refused), each refused
# event has its DeadLetter and its alert on the topics, a log line said so
# within NOTICE_BOUND_S, the other topics went on, and the scheduling topic
# takes the relay's events again once its limit is back.
source "$(dirname "$0")/lib.bash"

HOLD_S=${ALLVARS_FAULTS_TOPIC_REFUSES_S:-$(by_size 6 30)}
NOTICE_BOUND_S=${ALLVARS_FAULTS_NOTICE_BOUND_S:-15}
LIMIT=100

faults_begin topic-refuses
faults_real_kafka
faults_conf a
daemon_migrate a >/dev/null || check_fail "migration failed"
daemon_start a
daemon_ready a 60 || check_fail "the daemon did not become ready"
SCHED=${TOPIC_PREFIX}allvarssamtal.scheduling.v1
sched_count() { "$BUILD/tests/kafka-topics" "$KAFKA" watermarks "$SCHED" | awk '{ n += $2 } END { print n + 0 }'; }

feed_start 300
sleep "$(by_size 4 8)"          # events flowing
notice_watch 'refused by the brokers\|the brokers refuse events'
say "the scheduling topic's max.message.bytes lowered to $LIMIT for $HOLD_S s"
t0=$(now_s)
"$BUILD/tests/kafka-topics" "$KAFKA" config "$SCHED" max.message.bytes "$LIMIT" || check_fail "cannot lower max.message.bytes"
fault_struck
noticed=
if wait_for "$NOTICE_BOUND_S" test -s "$T/noticed"; then
        noticed=$(notice_s "$t0")
        say "the relay said so $noticed s after: $(grep -m1 -o 'Outbox row.*refused by the brokers.*\|Outbox relay: the brokers refuse.*' "$T/a.log" | cut -c1-200)"
else
        check_fail "the relay did not say within $NOTICE_BOUND_S s that the brokers refuse its events"
fi
sleep "$HOLD_S"
before=$(sched_count)
"$BUILD/tests/kafka-topics" "$KAFKA" config "$SCHED" || check_fail "cannot give the topic its default configuration back"
t_end=$(now_s)
say "the topic's limit is back after $(elapsed "$t0" "$t_end") s"
# The scheduling topic takes the relay's events again.
sched_grew() { [[ $(sched_count) -gt $before ]]; }
if wait_for 60 sched_grew; then
        RECOVERIES+=("$(elapsed "$t0" "$(now_s)")")
        say "the scheduling topic took events again ${RECOVERIES[-1]} s after the limit was lowered"
else
        check_fail "nothing reached the scheduling topic after its limit was back"
fi
kill "$NOTICE_PID" 2>/dev/null
sleep 2
feed_stop
faults_finish 120
[[ -n $noticed ]] && faults_record_extra notice_s "$noticed"

# Every refused event replaced by its DeadLetter (source offset = the outbox
# row's id, daemon/relay_dead.c) and its case's EVENT_UNDELIVERABLE alert, on
# the topics.
sql "select id, key, event_id from allvarsd.outbox_undeliverable" | tr '|' ' ' >"$T/undeliverable"
n_undeliverable=$(wc -l <"$T/undeliverable")
say "events refused for good: $n_undeliverable ($(sql "select string_agg(distinct error, ', ') from allvarsd.outbox_undeliverable"))," \
        "$(grep -c 'refused by the brokers' "$T/a.log") log lines"
((n_undeliverable > 0)) || check_fail "no event refused: did the lowered limit strike?"
faults_record_extra undeliverable "$n_undeliverable"
no_dl=$(awk 'NR == FNR { if ($1 ~ /\/-1$/ && $3 ~ /^DeadLetter\//) have[substr($3, 12)] = 1; next } !($1 in have)' \
        "$T/event_names" "$T/undeliverable" | wc -l)
no_alert=$(awk 'NR == FNR { if ($3 ~ /^DeadlineAlert\/ALERT_KIND_EVENT_UNDELIVERABLE\//) have[$1 " " substr($3, 46)] = 1; next }
                !(($2 " " $3) in have)' "$T/event_names" "$T/undeliverable" | wc -l)
((no_dl == 0)) || check_fail "$no_dl refused events without their DeadLetter on the dead-letter topic"
((no_alert == 0)) || check_fail "$no_alert refused events without their case's EVENT_UNDELIVERABLE alert on the alerts topic"
kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone"
((SCENARIO_FAILED > 0)) && faults_keep_logs
faults_stop_all
faults_exit
