#!/bin/bash
# Fault scenario 4: several instances in one consumer group (real broker), with
# rebalances and the outbox relay's lock changing hands during the stream:
#   a and b decide; the instance whose relay holds the advisory lock is killed
#   (kill -9); the other must take over its partitions (after the session
#   timeout, 6 s) and the relay lock; c joins (a rebalance to two); the relay
#   holder is killed once more; both killed instances come back (three).
#   The small size kills the relay holder once (before c joins), and the killed
#   instance comes back (three); ALLVARS_FAULTS_GROUP_KILLS (1 or 2).
# The instances have no static membership (unlike scenario 1): every change is a
# full rebalance (eager range assignment, consumer.c). The relay holder is the
# instance whose relay backend holds the lock (relay_holder in lib.bash).
# Time to recover here: from the kill to the first decision of a referral from
# a partition the killed instance had (the others go on deciding meanwhile).
source "$(dirname "$0")/lib.bash"

GROUP_KILLS=${ALLVARS_FAULTS_GROUP_KILLS:-$(by_size 1 2)}
((GROUP_KILLS == 1 || GROUP_KILLS == 2)) || { echo "ALLVARS_FAULTS_GROUP_KILLS: 1 or 2" >&2; exit 2; }

# kill_relay_holder: kill -9 the instance holding the relay lock, measure the
# recovery of its partitions, check that another instance took the relay.
kill_relay_holder() {
        local victim parts t0 t_end holder n
        victim=$(relay_holder) || { check_fail "no instance holds the relay lock"; return 1; }
        parts=$(assigned_partitions "$victim")
        say "killing $victim: holds the relay lock and referral partitions ${parts:-none}"
        t0=$(now_s)
        { daemon_stop "$victim" KILL; } 2>/dev/null
        fault_struck
        t_end=$(now_s)          # dead and reaped: later decisions are the others'
        # The lock goes with the killed session; a standby takes it on its next poll.
        if wait_for 30 relay_holder; then
                holder=$(relay_holder)
                say "relay lock moved from $victim to $holder in $(elapsed "$t0" "$(now_s)") s"
                n=$(grep -c 'Outbox relay active' "$T/$holder.log")
                ((n >= 1)) || check_fail "$holder holds the lock but never logged it"
        else
                check_fail "the relay lock did not move within 30 s after $victim was killed"
        fi
        if [[ -n $parts ]]; then
                RECOVERY_PARTITIONS=$parts recovery_after "partitions $parts of $victim" "$t0" "$t_end" 90
        fi
        KILLED+=("$victim")
}

KILLED=()

faults_begin group
faults_real_kafka
for n in a b c; do faults_conf "$n"; done
daemon_migrate a >/dev/null || check_fail "migration failed"
daemon_start a
daemon_start b
daemon_ready a 60 || check_fail "a did not become ready"
daemon_ready b 60 || check_fail "b did not become ready"
feed_start 300
sleep 4
say "a has referral partitions $(assigned_partitions a), b has $(assigned_partitions b)"

kill_relay_holder
sleep 2
say "adding c"
daemon_start c
daemon_ready c 60 || check_fail "c did not become ready"
sleep "$(by_size 2 4)"
say "instances: ${!DAEMON_PIDS[*]}"
if ((GROUP_KILLS == 2)); then
        kill_relay_holder
        sleep 1
fi
say "restarting ${KILLED[*]}: three instances"
for n in "${KILLED[@]}"; do
        daemon_start "$n"
done
for n in "${KILLED[@]}"; do daemon_ready "$n" 60 || check_fail "$n did not become ready again"; done
sleep "$(by_size 3 5)"
for n in "${!DAEMON_PIDS[@]}"; do say "$n has referral partitions $(assigned_partitions "$n")"; done
feed_stop
faults_finish 120
# Every instance took part: an assignment with partitions, and decisions.
for n in a b c; do
        grep -q 'Assigned [1-9]' "$T/$n.log" || check_fail "$n was never assigned partitions"
        grep -q ' decided: ' "$T/$n.log" || check_fail "$n never decided a referral"
done
n=$(sql "select count(*) from allvarsd.consumer_offsets where topic = '${TOPIC_PREFIX}police.referrals.v1'")
((n == 4)) || check_fail "stored positions for $n referral partitions, expected 4"
relays=$(grep -l 'Outbox relay active' "$T"/[abc].log | wc -l)
((relays >= 2)) || check_fail "the relay ran in $relays instance(s) only"
say "the relay was active in $relays instances"
faults_stop_all
faults_exit
