#!/bin/bash
# Fault scenario 7: silent partitions between the daemon and Kafka. The script
# runs a broker of its own whose second listener is advertised at a Toxiproxy
# port (tests/faults/net.bash): the daemon's consumer and its relay's producer
# reach the broker only through the proxy, for every connection (bootstrap,
# group coordinator, partition leaders); the referral generator and the checks
# use the direct listener, so the input keeps flowing. During the stream the
# proxy drops every byte both ways without a reset, then heals:
#   kafka-partition-5s    5 s: under the test's 6 s session timeout (full size only)
#   kafka-partition-long  60 s (the small size: 15 s; ALLVARS_FAULTS_KAFKA_PARTITION_S):
#                         the group coordinator drops the member, its partitions are
#                         revoked; the relay's deliveries wait (message.timeout.ms) and
#                         the outbox grows meanwhile, then drains
#   kafka-slow-200ms, kafka-slow-1s  200 ms and 1 s round trips for a minute (the
#                         small size: only 1 s, for 10 s); the decision latency's p99
# The daemon's PostgreSQL link is untouched: the relay keeps its lock. Nothing may
# be lost or doubled; the outbox must drain once healed.
source "$(dirname "$0")/lib.bash"
source "$(dirname "$0")/net.bash"

LONG_S=${ALLVARS_FAULTS_KAFKA_PARTITION_S:-$(by_size 15 60)}

net_kafka_start || { echo "faults: the script's broker did not start" >&2; exit 2; }

# partition NAME SECONDS
partition() {
        local name=$1 secs=$2 t0 t_end noticed max_outbox=0 n
        faults_begin "$name"
        faults_real_kafka
        KAFKA=$NET_KAFKA_PROXIED faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 400
        decisions_flowing "$(by_size 2 4)"
        notice_watch 'librdkafka\|Kafka\|partitions revoked\|Revoked'
        say "partition from Kafka for $secs s"
        t0=$(now_s)
        toxi_partition kafka both || check_fail "cannot cut the link"
        fault_struck
        for ((n = 0; n < secs; n++)); do
                sleep 1
                o=$(sql "select count(*) from allvarsd.outbox")
                ((o > max_outbox)) && max_outbox=$o
        done
        toxi_heal kafka || check_fail "cannot heal the link"
        t_end=$(now_s)
        say "healed; the outbox held up to $max_outbox rows during the partition"
        recovery_after "partition $secs s" "$t0" "$t_end" 120
        noticed=$(notice_s "$t0")
        say "first word of Kafka trouble in the log: ${noticed:-none} s after the cut"
        kill "$NOTICE_PID" 2>/dev/null
        sleep 2
        feed_stop
        faults_finish 180
        [[ -n $noticed ]] && faults_record_extra notice_s "$noticed"
        faults_record_extra outbox_max "$max_outbox"
        kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone"
        faults_stop_all
}

# The small size (CI's time budget) leaves out the 5 s partition.
[[ $FAULTS_SIZE == full ]] && partition kafka-partition-5s 5
partition kafka-partition-long "$LONG_S"

# Slow links: 200 ms and 1 s round trips to the broker (the small size: 1 s
# only), for a minute (small: 10 s; ALLVARS_FAULTS_SLOW_S).
SLOW_S=${ALLVARS_FAULTS_SLOW_S:-$(by_size 10 60)}
kafka_slow_conf() { KAFKA=$NET_KAFKA_PROXIED faults_conf a; }
[[ $FAULTS_SIZE == full ]] && slow_link kafka-slow-200ms kafka 100 "$SLOW_S" kafka_slow_conf
slow_link kafka-slow-1s kafka 500 "$SLOW_S" kafka_slow_conf
faults_exit
