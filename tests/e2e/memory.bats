#!/usr/bin/env bats
# Bounded memory on a real Kafka broker: 1 MB referrals that each carry
# 500,000 unknown fields (protobuf-c would take ~50 MB to decode one) stream
# through the daemon; each is dead-lettered as OVERSIZED, and the daemon's
# peak RSS (VmHWM) stays under its 64 MiB target. ALLVARS_HOSTILE_BIG sets
# the number of such messages (default 60).

load ../lib/daemon.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        db_create
        real_kafka_topics
        daemon_conf a
        daemon_migrate a
}

teardown() {
        teardown_daemons
}

next_offsets_are() {
        [[ $(sql "select coalesce(sum(next_offset), 0) from allvarsd.consumer_offsets
                  where topic = '${TOPIC_PREFIX}police.referrals.v1'") -eq $1 ]]
}
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }

@test "real broker: 1 MB referrals of 500,000 unknown fields keep the daemon under 64 MiB" {
        n=${ALLVARS_HOSTILE_BIG:-60}
        daemon_start a
        daemon_ready a 60
        "$BUILD/tests/hostile-gen" --bootstrap "$KAFKA" --topic "${TOPIC_PREFIX}police.referrals.v1" --count "$n" \
                --seed 8 --unknown-fields 500000
        wait_for 180 next_offsets_are "$n"
        [[ $(sql "select count(*) from allvarsd.dead_letters where reason = 'OVERSIZED'") -eq $n ]]
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$(daemon_pid a)/status")
        echo "peak RSS ${hwm} KiB" >&3
        [[ $hwm -lt $((64 * 1024)) ]]
        gen --count 1 --seed 98 --ids-out "$T/ids"
        wait_for 20 decided_at_least 1
}
