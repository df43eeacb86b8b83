#!/bin/bash
# Fault scenario 8: the wall clock steps while cases are open. The daemon runs
# under libfaketime (Debian's faketime; LD_PRELOAD of libfaketimeMT), its real
# clock path (clock_gettime, not clock.file), with the offset read from a file
# at every call (FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE), so that it changes
# while the daemon runs; the monotonic clock is left alone, as a step of the
# wall clock leaves it (FAKETIME_DONT_FAKE_MONOTONIC). During a stream whose
# even runs are reported 46.5 hours ago (their 48 h deadline 1.5 h ahead):
#   +3 h    every such open case is past its deadline: MISSED is due, raised once
#   -1 h    (2 h ahead of the real clock) still past: nothing raised again
# Checked besides the suite's checks: each alert (case, kind) raised once, none
# raised before it was due by the daemon's clock at the time, decisions made
# after each step record the daemon's time then (decided_at), and no duration
# is negative (an alert raised before its case's decision, a case closed
# before it opened).
source "$(dirname "$0")/../lib.bash"

# Not in tests/run's fault phase (it discovers tests/faults/*.sh only): it
# fails, on a finding (tests/faults/README.md "Findings"): a wall clock more
# than an hour ahead makes the broker refuse every event the relay produces
# (their CreateTime is past the broker's log.message.timestamp.after.max.ms,
# 1 h by default in Kafka 4), and the relay holds them in the outbox without a
# line in the log. Run it by hand with the servers of tests/run faults.

FAKETIME_LIB=${ALLVARS_FAKETIME_LIB:-/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1}
[[ -r $FAKETIME_LIB ]] || { echo "faults: $FAKETIME_LIB is missing (make deps: faketime)" >&2; exit 2; }

# Deadlines 1.5 h ahead at arrival for the even runs (feed_start).
FAULTS_REPORTED_AT_RISK=$(date -u -d '46 hours 30 minutes ago' +%Y-%m-%dT%H:%M:%SZ)

faults_begin clock-step
faults_real_kafka
faults_conf a
daemon_migrate a >/dev/null || check_fail "migration failed"

# The daemon under libfaketime: a wrapper in this scenario's copy of the binaries.
echo "+0" >"$T/faketime"
mkdir -p "$T/bin"
cat >"$T/bin/allvarsd" <<EOF
#!/bin/sh
exec env LD_PRELOAD="$FAKETIME_LIB" FAKETIME_TIMESTAMP_FILE="$T/faketime" FAKETIME_NO_CACHE=1 \\
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
sleep "$(by_size 4 8)"
t0=$(now_s)
step +3h
sleep "$(by_size 6 15)"
ahead=$(decided_ahead_h)
say "decisions now recorded $ahead h ahead of the real clock"
[[ $ahead == 3 ]] || check_fail "decisions made after +3 h record $ahead h ahead, not 3"
missed_after_forward=$(sql "select count(*) from allvarsd.case_alerts where kind = 'MISSED'")
step +2h
t1=$(now_s)
sleep "$(by_size 6 15)"
ahead=$(sql "select round(extract(epoch from max(d.decided_at) - now()) / 3600)::int from allvarsd.decisions d
             join allvarsd.referrals r using (referral_id)
             where d.decided_at < now() + interval '2 hours 30 minutes'")
say "after the step back, decisions recorded $ahead h ahead"
[[ $ahead == 2 ]] || check_fail "decisions made after the step back record $ahead h ahead, not 2"
feed_stop
faults_finish 120

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
before_due=$(sql "select count(*) from allvarsd.case_alerts where raised_at < due_at")
((before_due == 0)) || check_fail "$before_due alerts raised before they were due"
# No negative durations.
neg=$(sql "select (select count(*) from allvarsd.case_alerts a join allvarsd.referrals r using (case_id)
                    join allvarsd.decisions d using (referral_id) where a.raised_at < d.decided_at - interval '1 second')
                + (select count(*) from allvarsd.cases where closed_at < created_at or updated_at < created_at)")
((neg == 0)) || check_fail "$neg negative durations (an alert raised before its decision, a case closed or updated before it was created)"
faults_stop_all
faults_exit
