#!/bin/bash
# Fault scenario 3: Kafka breaks in the middle of a stream.
#
#   kafka-restart  the real broker (one KRaft node) stopped and started again:
#                  first gracefully (SIGTERM), then killed (SIGKILL), each time
#                  down for a moment before it starts again with the same data
#                  (the small size only kills it; ALLVARS_FAULTS_KAFKA_RESTARTS,
#                  a list of term and kill).
#                  The producer of the stream (referral-gen, idempotent) waits
#                  for it like the daemon's consumer, relay and group do.
#   kafka-mock     librdkafka's mock cluster (3 brokers, in a process of its own),
#                  with faults injected through tests/tools/mock-kafka.c: one
#                  broker down and up, all three down and up (each for 3 s, 2 s
#                  in the small size), 500 ms round trips on every broker for 4 s
#                  (2 s), and request errors: Fetch (API key 1)
#                  answered NOT_LEADER_FOR_PARTITION (6), then Produce (0) and
#                  Fetch answered REQUEST_TIMED_OUT (7). The errors hit whichever
#                  client sends the next such requests: the relay's producer,
#                  the generator's producer or the daemon's consumer.
#                  Not Produce with NOT_LEADER_FOR_PARTITION: with librdkafka
#                  2.0.2 the mock cluster then loses one message of an idempotent
#                  producer that was reported delivered, every time (reproduced
#                  with referral-gen or kcat alone, no daemon; README.md). The
#                  same happens now and then around a broker outage: the input
#                  check (every acknowledged message on the referrals topic)
#                  notes it and the lost input leaves the expected set.
source "$(dirname "$0")/lib.bash"

KAFKA_RESTARTS=${ALLVARS_FAULTS_KAFKA_RESTARTS:-$(by_size kill "term kill")}
# kafka-mock: how long an outage and the slow round trips last, and the stream
# between two faults.
MOCK_DOWN_S=$(by_size 2 3)
MOCK_RTT_S=$(by_size 2 4)
MOCK_GAP_S=$(by_size 1 2)

# input_back_after T: when (epoch seconds) the broker appended the first referral
# after T (the referrals topic has LogAppendTime): the generator's own recovery,
# which bounds the daemon's.
input_back_after() {
        timeout 30 kcat -C -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" -o beginning -e -q -f '%T\n' 2>/dev/null |
                awk -v t="$1" '$1 / 1000 > t { if (min == "" || $1 < min) min = $1 } END { if (min != "") printf "%.3f", min / 1000 }'
}

kafka_real() {
        local t0 t_end back mode f faults=()
        faults_begin kafka-restart
        KAFKA=$ALLVARS_KAFKA_BOOTSTRAP
        TOPIC_PREFIX=flt$RANDOM$RANDOM.
        # The broker's append time on the input, to tell the generator's recovery
        # from the daemon's; faults_real_kafka creates the other topics.
        kafka_create_topic "${TOPIC_PREFIX}police.referrals.v1" 4 message.timestamp.type=LogAppendTime ||
                check_fail "cannot create the referrals topic"
        faults_real_kafka "$TOPIC_PREFIX"
        faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 300
        for mode in $KAFKA_RESTARTS; do
                decisions_flowing "$(by_size 2 3)"
                say "broker: stop ($mode), 2 s down, start again"
                t0=$(now_s)
                kafka_stop_only "$mode" || check_fail "kafka_stop_only $mode failed"
                fault_struck
                sleep 2
                kafka_start_again || check_fail "the broker did not start again"
                t_end=$(now_s)
                recovery_after "broker restart ($mode)" "$t0" "$t_end" 90
                faults+=("$mode $t0 $t_end")
        done
        sleep 2
        feed_stop
        # Read the input once the topic is quiet (a read right after a restart can
        # wait long for every partition's end).
        for f in "${faults[@]}"; do
                read -r mode t0 t_end <<<"$f"
                back=$(input_back_after "$t_end")
                [[ -n $back ]] && say "broker restart ($mode): the broker was back $(elapsed "$t0" "$t_end") s" \
                        "after the fault, new referrals on the topic after $(elapsed "$t0" "$back") s"
        done
        faults_finish 120
        faults_stop_all
}

# mock_fault WHAT SECONDS CMD... -- UNDO...: a fault on the mock cluster for SECONDS.
mock_fault() {
        local what=$1 secs=$2 t0 t_end cmds=() undo=() c
        shift 2
        while (($#)) && [[ $1 != -- ]]; do cmds+=("$1"); shift; done
        (($#)) && shift
        undo=("$@")
        say "mock: $what for $secs s"
        t0=$(now_s)
        for c in "${cmds[@]}"; do mock_cmd "$c" || check_fail "mock command failed: $c"; done
        fault_struck
        sleep "$secs"
        for c in "${undo[@]}"; do mock_cmd "$c" || check_fail "mock command failed: $c"; done
        t_end=$(now_s)
        recovery_after "$what" "$t0" "$t_end" 90
}

kafka_mock() {
        faults_begin kafka-mock
        # With librdkafka 2.0.2 the mock cluster now and then loses a message of the
        # generator's idempotent producer that was reported delivered, around a
        # broker outage or an injected Produce error (README.md, "Findings"): such
        # a message never reaches the daemon, so it is noted and taken out of the
        # expected set instead of failing the scenario. On the real broker it fails.
        FAULTS_INPUT_LOSS_OK=1
        faults_mock_kafka 3
        faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 300
        sleep 2
        mock_fault "broker 2 down" "$MOCK_DOWN_S" "down 2" -- "up 2"
        sleep "$MOCK_GAP_S"
        mock_fault "all brokers down" "$MOCK_DOWN_S" "down 1" "down 2" "down 3" -- "up 1" "up 2" "up 3"
        sleep "$MOCK_GAP_S"
        mock_fault "500 ms round trips" "$MOCK_RTT_S" "rtt 1 500" "rtt 2 500" "rtt 3 500" -- "rtt 1 0" "rtt 2 0" "rtt 3 0"
        sleep "$MOCK_GAP_S"
        mock_fault "Fetch: NOT_LEADER_FOR_PARTITION x 5" 0 "error 1 5 6" --
        sleep "$MOCK_GAP_S"
        mock_fault "Produce and Fetch: REQUEST_TIMED_OUT x 3" 0 "error 0 3 7" "error 1 3 7" --
        sleep 2
        feed_stop
        faults_finish 120
        faults_stop_all
}

kafka_real
kafka_mock
faults_exit
