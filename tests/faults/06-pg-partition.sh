#!/bin/bash
# Fault scenario 6: silent partitions between the daemon and PostgreSQL. The
# daemon reaches the server only through Toxiproxy (tests/lib/toxiproxy.bash);
# during a stream the proxy drops every byte in both directions without a reset
# (a `timeout` toxic with timeout 0), then heals:
#   pg-partition-5s    5 s, in the middle of the stream (full size only)
#   pg-partition-long  60 s (the small size: 18 s; ALLVARS_FAULTS_PG_PARTITION_S),
#                      longer than every client-side bound, so that each of the
#                      daemon's connections must be found dead and replaced
#   pg-partition-up    one direction only: the daemon's packets pass, the replies
#                      are dropped (a `timeout` toxic on the downstream), 5 s; the
#                      server runs what it gets, COMMITs included, the daemon never
#                      hears of it: a COMMIT whose outcome the daemon cannot know
# The daemon must notice (its log says the database is unavailable) within the
# bound README.md "Reliability" gives, must not hang past it (the watchdog would
# kill it), and must go on without losing or doubling anything once healed.
# Bytes dropped by the proxy are gone for good, as on a link that drops them: a
# connection that was mid-statement never gets its reply, even after the heal.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/net.bash"

LONG_S=${ALLVARS_FAULTS_PG_PARTITION_S:-$(by_size 18 60)}
# The bound on noticing (README.md "Reliability"): the reply timeout on every
# statement (PG_REPLY_TIMEOUT_DEFAULT in daemon/pg.h, 12 s) and a little slack
# for a loaded machine. A partition shorter than that is noticed when it heals
# (the server closes the session whose bytes were dropped) or not at all.
NOTICE_BOUND_S=${ALLVARS_FAULTS_NOTICE_BOUND_S:-15}

# partition NAME SECONDS DIRECTION
partition() {
        local name=$1 secs=$2 dir=$3 port t0 t_end noticed
        faults_begin "$name"
        faults_real_kafka
        port=$(net_pg_proxy "$name") || { check_fail "no proxy"; return; }
        PGPORT=$port faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 400
        decisions_flowing "$(by_size 2 4)"
        notice_watch 'PostgreSQL unavailable\|Periodic jobs: PostgreSQL'
        say "partition from PostgreSQL ($dir) for $secs s"
        t0=$(now_s)
        toxi_partition "$name" "$dir" || check_fail "cannot cut the link"
        fault_struck
        sleep "$secs"
        toxi_heal "$name" || check_fail "cannot heal the link"
        t_end=$(now_s)
        say "healed"
        recovery_after "partition $secs s" "$t0" "$t_end" 90
        noticed=
        if wait_for "$((NOTICE_BOUND_S + 5))" test -s "$T/noticed"; then
                noticed=$(notice_s "$t0")
                say "noticed after $noticed s"
                awk -v n="$noticed" -v b="$NOTICE_BOUND_S" 'BEGIN { exit !(n <= b) }' ||
                        check_fail "noticed after $noticed s, bound $NOTICE_BOUND_S s"
                # A partition longer than the bound is noticed while it lasts,
                # not only when the link comes back.
                ((secs <= NOTICE_BOUND_S)) || awk -v n="$noticed" -v s="$secs" 'BEGIN { exit !(n < s) }' ||
                        check_fail "noticed only when the link came back ($noticed s)"
        elif ((secs >= NOTICE_BOUND_S)); then
                check_fail "the daemon never said the database is unavailable"
        fi
        kill "$NOTICE_PID" 2>/dev/null
        say "the relay: $(grep -c 'Outbox relay standby' "$T/a.log") times standby, $(grep -c 'Outbox relay active' "$T/a.log") active"
        sleep 2
        feed_stop
        faults_finish 120
        [[ -n $noticed ]] && faults_record_extra notice_s "$noticed"
        kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone"
        faults_stop_all
}

# The small size (CI's time budget) leaves out the 5 s partition: the long one
# and the one-way cut cover its paths (a reset at the heal, a reply lost).
[[ $FAULTS_SIZE == full ]] && partition pg-partition-5s 5 both
partition pg-partition-long "$LONG_S" both
partition pg-partition-up 5 down

# Slow links: 200 ms and 1 s round trips to PostgreSQL (the small size: 1 s
# only), for a minute (small: 10 s; ALLVARS_FAULTS_SLOW_S).
SLOW_S=${ALLVARS_FAULTS_SLOW_S:-$(by_size 10 60)}
pg_slow_conf() { PGPORT=$(net_pg_proxy "$SCENARIO") faults_conf a; }
[[ $FAULTS_SIZE == full ]] && slow_link pg-slow-200ms "pg-slow-200ms" 100 "$SLOW_S" pg_slow_conf
slow_link pg-slow-1s "pg-slow-1s" 500 "$SLOW_S" pg_slow_conf
faults_exit
