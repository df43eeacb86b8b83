#!/bin/bash
# Fault scenario 1: kill -9 of the daemon at random points of a stream, 20 times
# in a row (8 in the small size), restarting it each time (real broker). Most
# kills strike while it decides (0.2-2.5 s after its first decision since the
# last restart); about one in four strikes during the restart itself (0-0.5 s
# after exec: connecting, joining the group, reading positions), and at least
# one does (the last kill when none did before). The choices come from
# ALLVARS_FAULTS_SEED (printed) so a failing sequence can be replayed.
#
# The instance has a static group membership (kafka.group.instance.id), as a
# systemd-restarted production instance would: its successor takes the same
# partitions at once instead of waiting out the session timeout (6 s) of the
# killed member, which keeps 20 restarts within about a minute. The rebalance
# path is scenario 4's.
source "$(dirname "$0")/lib.bash"

KILLS=${ALLVARS_FAULTS_KILLS:-$(by_size 8 20)}
SEED=${ALLVARS_FAULTS_SEED:-$((($$ * 7919 + $(date +%s)) % 32768))}
RANDOM=$SEED
# rand_s LOW_MS HIGH_MS: a random duration in seconds.
rand_s() { awk -v ms="$(($1 + RANDOM % ($2 - $1 + 1)))" 'BEGIN { printf "%.3f", ms / 1000 }'; }

faults_begin kill9
say "seed $SEED, $KILLS kills"
faults_real_kafka
faults_conf a "kafka.group.instance.id = faults-kill9-a"
daemon_migrate a >/dev/null || check_fail "migration failed"
daemon_start a
daemon_ready a 60 || check_fail "the daemon did not become ready"
feed_start 300

# A function, so that the count is read on every try (not once, as "$(...)" would be).
some_decided() { [[ $(decided_now) -gt 0 ]]; }
wait_for 30 some_decided || check_fail "nothing decided before the first kill"
t0=
in_restart=0
for ((k = 1; k <= KILLS; k++)); do
        # (RANDOM is drawn first, so a seed replays the same sequence.)
        if ((k > 1 && (RANDOM % 4 == 0 || (k == KILLS && in_restart == 0)))); then
                in_restart=$((in_restart + 1))
                pause=$(rand_s 0 500)
                say "kill $k: during the restart, $pause s after exec (kill $((k - 1))'s recovery not measured)"
        else
                [[ -n $t0 ]] && recovery_after "kill $((k - 1))" "$t0" "$t_end" 60
                pause=$(rand_s 200 2500)
                say "kill $k: $pause s into decisions"
        fi
        sleep "$pause"
        t0=$(now_s)
        # (bash's "Killed" notice for its job is noise here.)
        { daemon_stop a KILL; } 2>/dev/null
        fault_struck
        # Dead and reaped: a decision stored after this is the successor's (one
        # committed by the victim between t0 and the signal does not count).
        t_end=$(now_s)
        daemon_start a
done
recovery_after "kill $KILLS" "$t0" "$t_end" 60
# A few more seconds of stream after the last restart.
sleep 2
feed_stop
faults_finish 120
faults_stop_all
restarts=$(grep -c 'ready: group' "$T/a.log")
say "the daemon logged ready $restarts times; $in_restart of $KILLS kills struck during a restart"
faults_exit
