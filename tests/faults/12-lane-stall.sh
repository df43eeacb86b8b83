#!/bin/bash
# Fault scenario 12: one batch lane stalls while the other goes on. The stream
# runs fast enough (2,000 referrals a second) that the batches split over both
# lanes and each lane takes its next part as soon as it is done with its last
# (docs/design.md "Effectively once"). Then, 8 times (small: 4;
# ALLVARS_FAULTS_STALLS), the backend of a lane that is inside a transaction is
# stopped (SIGSTOP) for 3 s (small: 2 s; ALLVARS_FAULTS_STALL_S), as a backend
# stuck on a slow disk or a lock would be, and continued; every fourth time it
# is terminated instead once stopped (the lane's transaction lost with its
# connection, the lane reconnecting while the other stores). Meanwhile the
# other lane may take no partition the stalled one holds, a younger transaction
# that shares a person with the stalled one waits for its turn (lanes.h) within
# its bound, and the outcome events of the stream make the lanes land together
# between the free parts. Checks besides the suite's (nothing lost, nothing
# decided twice, every event): a stall never counts as an outage (no more
# "PostgreSQL unavailable" lines than rounds that terminated), and the decisions committed
# while each stall lasted are recorded (`during_stalls` in results.json): how
# far the other lane got, which its persons shared with the stalled
# transaction may hold back.
source "$(dirname "$0")/lib.bash"

STALLS=${ALLVARS_FAULTS_STALLS:-$(by_size 4 8)}
STALL_S=${ALLVARS_FAULTS_STALL_S:-$(by_size 2 3)}

# lane_backend_in_transaction: the pid of one of the daemon's batch backends
# (application_name allvarsd: the lanes; the relay and the jobs name theirs)
# inside a transaction, polled for up to 2 s; nothing when none was.
lane_backend_in_transaction() {
        local i pid
        for ((i = 0; i < 100; i++)); do
                pid=$(sql "select pid from pg_stat_activity
                           where datname = current_database() and application_name = 'allvarsd'
                             and backend_type = 'client backend' and xact_start is not null
                             and state in ('active', 'idle in transaction')
                           order by random() limit 1" 2>/dev/null)
                if [[ $pid =~ ^[0-9]+$ ]]; then
                        echo "$pid"
                        return 0
                fi
                sleep 0.02
        done
        return 1
}

decided_between() {
        sql "select count(*) from allvarsd.decisions where decided_at > to_timestamp($1) and decided_at <= to_timestamp($2)"
}

faults_begin lane-stall
faults_real_kafka
faults_conf a "batch.connections = 2"
daemon_migrate a >/dev/null || check_fail "migration failed"
daemon_start a
daemon_ready a 60 || check_fail "the daemon did not become ready"
feed_start 2000 "$(by_size 4000 8000)"
decisions_flowing 2
during=()
terminated=0
for ((k = 1; k <= STALLS; k++)); do
        pid=$(lane_backend_in_transaction) || { say "round $k: no lane inside a transaction within 2 s"; continue; }
        t0=$(now_s)
        kill -STOP "$pid" || { say "round $k: backend $pid gone before the stall"; continue; }
        fault_struck
        how=continued
        sleep "$STALL_S"
        t1=$(now_s)
        if ((k % 4 == 0)); then
                # Terminated while stopped: the signal is handled once it runs again.
                sql "select pg_terminate_backend($pid)" >/dev/null
                how=terminated
                terminated=$((terminated + 1))
        fi
        kill -CONT "$pid" 2>/dev/null
        n=$(decided_between "$t0" "$t1")
        during+=("$n")
        say "round $k: backend $pid stopped for ${STALL_S} s, then $how; $n decisions committed meanwhile"
        recovery_after "round $k" "$t0" "$t1" 60
        sleep "0.$((3 + RANDOM % 7))"
done
((FAULTS_STRUCK > 0)) || check_fail "no lane was caught inside a transaction"
sleep 2
feed_stop
faults_finish 120
# An outage line for a stall alone: each round that terminated may log one, a stall none.
unavailable=$(grep -c 'PostgreSQL unavailable' "$T/a.log")
say "the daemon logged PostgreSQL unavailable $unavailable times ($terminated terminations)"
((unavailable <= terminated)) || check_fail "a stalled lane was taken for an outage"
faults_record_extra during_stalls "[$(IFS=,; echo "${during[*]}")]"
faults_stop_all
faults_exit
