#!/bin/bash
# Fault scenario 8: the wall clock steps while cases are open. The daemon runs
# under libfaketime (Debian's faketime; LD_PRELOAD of libfaketimeMT), its real
# clock path (clock_gettime, not clock.file), with the offset read from a file
# at every call (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE), so that it changes
# while the daemon runs; the monotonic clock is left alone, as a step of the
# wall clock leaves it (FAKETIME_DONT_FAKE_MONOTONIC). During a stream whose
# even runs are reported 46.5 hours ago (their 48 h deadline 1.5 h ahead):
#   +3 h    every such open case is past its deadline: MISSED is due, raised once.
#           The broker (Kafka 4: log.message.timestamp.after.max.ms, 1 h) refuses
#           every event the relay produces, whose CreateTime is the daemon's
#           clock: the relay must say so (log, STATUS=) and hold them, not lose
#           or dead-letter them
#   -1 h    (2 h ahead of the real clock) still past: nothing raised again;
#           still refused
#   -2 h    the clock corrected (NTP): the held events go out by themselves
# Checked besides the suite's checks: each alert (case, kind) raised once, none
# raised before it was due by the daemon's clock at the time, decisions made
# after each step record the daemon's time then (decided_at), no duration is
# negative (an alert raised before its case's decision, a case closed or
# updated before it opened), the relay's log line within NOTICE_BOUND_S of the
# step and its STATUS=, and the line saying the brokers accept events again.
source "$(dirname "$0")/lib.bash"

FAKETIME_LIB=${ALLVARS_FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1}
[[ -r $FAKETIME_LIB ]] || { echo "faults: $FAKETIME_LIB is missing (make deps: faketime)" >&2; exit 2; }

# The bound on the relay's word about refused events (REFUSAL_LOG_EVERY in
# daemon/relay_dead.c says a lasting refusal again every minute; the first
# refusal comes with the first delivery report after the step, well within it).
NOTICE_BOUND_S=${ALLVARS_FAULTS_NOTICE_BOUND_S:-15}
REFUSED='the brokers refuse events (INVALID_TIMESTAMP'

# Deadlines 1.5 h ahead at arrival for the even runs (feed_start).
# (Not '46 hours 30 minutes ago': GNU date's "ago" negates only the item before it.)
FAULTS_REPORTED_AT_RISK=$(date -u -d '2790 minutes ago' +%Y-%m-%dT%H:%M:%SZ)

faults_begin clock-step
faults_real_kafka
faults_conf a
daemon_migrate a >/dev/null || check_fail "migration failed"

# The daemon under libfaketime: a wrapper in this scenario's copy of the binaries.
echo "+0" >"$T/faketime"
mkdir -p "$T/bin"
# Its sd_notify messages (STATUS=) to a socket of the scenario's own.
"$BUILD/tests/notify-listen" "$T/notify.sock" >"$T/notify.out" 2>&1 &
GEN_PIDS+=($!)
NOTIFY_PID=$!
cat >"$T/bin/allvarsd" <<EOF
#!/bin/sh
exec env NOTIFY_SOCKET="$T/notify.sock" LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 \\
        FAKETIME_DONT_FAKE_MONOTONIC=1 "$BUILD/allvarsd" "\$@"
EOF
chmod +x "$T/bin/allvarsd"
REAL_BUILD=$BUILD
BUILD=$T/bin daemon_start a
BUILD=$REAL_BUILD
daemon_ready a 60 || check_fail "the daemon did not become ready"

# step OFFSET HOURS: the daemon's clock now reads real time + HOURS.
step() {
        echo "$1" >"$T/faketime"
        say "the daemon's wall clock steps to real time $1"
        fault_struck
}

# decided_ahead_h: hours by which the latest decision's decided_at is ahead of
# the real clock.
decided_ahead_h() {
        sql "select round(extract(epoch from max(decided_at) - now()) / 3600)::int from allvarsd.decisions
             where decided_at > now() - interval '1 minute' or decided_at > now() + interval '1 minute'"
}

feed_start 300
sleep "$(by_size 3 8)"
notice_watch "$REFUSED"
t0=$(now_s)
step +3h
sleep "$(by_size 5 15)"
ahead=$(decided_ahead_h)
say "decisions now recorded $ahead h ahead of the real clock"
[[ $ahead == 3 ]] || check_fail "decisions made after +3 h record $ahead h ahead, not 3"
missed_after_forward=$(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED'")
if wait_for "$NOTICE_BOUND_S" test -s "$T/noticed"; then
        noticed=$(notice_s "$t0")
        say "the relay said the brokers refuse its events $noticed s after the step:" \
                "$(grep -m1 -o "$REFUSED.*" "$T/a.log" | cut -c1-160)..."
        awk -v n="$noticed" -v b="$NOTICE_BOUND_S" 'BEGIN { exit !(n <= b) }' ||
                check_fail "the relay's refusal said after $noticed s, bound $NOTICE_BOUND_S s"
        faults_noticed=$noticed
else
        check_fail "the relay never said that the brokers refuse its events (no '$REFUSED' in the log)"
fi
kill "$NOTICE_PID" 2>/dev/null
step +2h
sleep "$(by_size 5 15)"
ahead=$(sql "select round(extract(epoch from max(d.decided_at) - now()) / 3600)::int from allvarsd.decisions d
             join allvarsd.referrals r using (referral_id)
             where d.decided_at < now() + interval '2 hours 30 minutes'")
say "after the step back, decisions recorded $ahead h ahead"
[[ $ahead == 2 ]] || check_fail "decisions made after the step back record $ahead h ahead, not 2"
feed_stop
# Every alert due by the daemon's clock raised before the clock is corrected.
sleep 3
held=$(unsent)
say "the outbox holds $held events while the clock is 2 h ahead"
((held > 0)) || check_fail "nothing held in the outbox: did the broker accept events 2 h ahead?"
grep -q 'STATUS=.*events held: INVALID_TIMESTAMP' "$T/notify.out" ||
        check_fail "STATUS= never said that events are held (INVALID_TIMESTAMP)"
# The clock corrected (an NTP step back to the real time): the held events go
# out by themselves, and the relay says so.
step +0
t_fix=$(now_s)
outbox_empty() { [[ $(unsent) -eq 0 ]]; }
if wait_for 120 outbox_empty; then
        RECOVERIES=("$(elapsed "$t_fix" "$(now_s)")")
        say "the outbox drained ${RECOVERIES[0]} s after the clock was corrected"
fi
grep -q 'the brokers accept events again' "$T/a.log" ||
        check_fail "the relay never said that the brokers accept its events again"
faults_finish 120
[[ -n ${faults_noticed:-} ]] && faults_record_extra notice_s "$faults_noticed"
grep -q 'STATUS=.*events held' <(tail -n 5 "$T/notify.out") &&
        check_fail "STATUS= still says events are held after the outbox drained"
# The lanes' turns are bounded on the monotonic clock, which the steps leave
# alone: no batch may give up on a turn because the wall clock moved (under
# libfaketime a pthread_cond_timedwait on CLOCK_MONOTONIC timed out at once,
# daemon/lanes.c wait_done).
turns=$(grep -c 'did not show their persons in time\|a lower lane did not finish in time' "$T/a.log")
((turns == 0)) || check_fail "$turns batches gave up waiting for a lane's turn (daemon/lanes.c)"

# Each (case, kind) alerted once, whatever the clock did.
twice=$(sql "select count(*) from (select case_id, kind from allvarsd.case_alerts group by 1, 2 having count(*) > 1) t")
((twice == 0)) || check_fail "$twice (case, kind) alerts raised twice"
# MISSED for the deadlines the step forward passed (1.5 h ahead at arrival,
# reached by +3 h), none of which the real clock has reached.
early=$(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED' and due_at > now()")
say "MISSED raised: $(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED'") in all," \
        "$missed_after_forward by the end of the +3 h step, $early for deadlines still ahead of the real clock"
((early > 0)) || check_fail "no MISSED for the deadlines the step forward passed"
# Never raised before due (by the daemon's clock, which was at most 3 h ahead).
# (AT_RISK is due before its due_at, the deadline, by design.)
before_due=$(sql "select count(*) from allvarsd.case_alerts where raised_at < due_at and kind <> 'AT_RISK'")
# No AT_RISK raised after MISSED for the same deadline (the step back made the
# deadline look ahead again).
late_risk=$(sql "select count(*) from allvarsd.case_alerts a join allvarsd.case_alerts m using (case_id, due_at)
                 where a.kind = 'AT_RISK' and m.kind = 'MISSED' and a.raised_at > m.raised_at")
((late_risk == 0)) || check_fail "$late_risk AT_RISK alerts raised after MISSED for the same deadline"
((before_due == 0)) || check_fail "$before_due alerts raised before they were due"
# No negative durations on the daemon's own clock: an alert raised before its
# case's decision, a case changed before it was created (the outcome update
# keeps updated_at from going back, daemon/store_outcomes.c). held_at and
# closed_at are the booking service's occurred_at, on its own (right) clock: a
# case created while the daemon's clock was ahead is "closed before it was
# created" by up to the step, which is the truth of the two clocks, not the
# daemon's arithmetic; only reported.
neg=$(sql "select (select count(*) from allvarsd.case_alerts a join allvarsd.referrals r using (case_id)
                    join allvarsd.decisions d using (referral_id) where a.raised_at < d.decided_at - interval '1 second')
                + (select count(*) from allvarsd.cases where updated_at < created_at)")
((neg == 0)) || check_fail "$neg negative durations (an alert raised before its decision, a case updated before it was created)"
say "cases closed (the booking service's occurred_at) before the daemon's clock said they were created:" \
        "$(sql "select count(*) from allvarsd.cases where closed_at < created_at")"
((SCENARIO_FAILED > 0)) && faults_keep_logs
faults_stop_all
faults_exit
