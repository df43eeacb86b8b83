#!/usr/bin/env bats
# No silent gaps, on a real Kafka broker: records deleted under a stopped
# daemon (kafka-delete-records) are a gap it reports when it starts; the
# offsets a transactional producer's commit markers take are not.

load ../lib/daemon.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        source "$ROOT/tests/lib/kafka.sh"
        db_create
        real_kafka_topics
        daemon_conf a
        daemon_migrate a
}

teardown() {
        teardown_daemons
}

decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
next_offset_is() {
        [[ $(sql "select next_offset from allvarsd.consumer_offsets
                  where topic = '${TOPIC_PREFIX}police.referrals.v1' and partition = 0") -eq $1 ]]
}

@test "real broker: records deleted while the daemon was stopped are a gap: error, alert, status" {
        daemon_start a
        daemon_ready a 60
        gen --count 20 --seed 41 --partition 0 --ids-out "$T/ids1"
        wait_for 90 next_offset_is 20
        daemon_stop a TERM
        gen --count 10 --first 20 --seed 41 --partition 0 --ids-out "$T/ids2"
        # The log now starts at 25: offsets 20-24 were never read.
        printf '{"version":1,"partitions":[{"topic":"%s","partition":0,"offset":25}]}\n' \
                "${TOPIC_PREFIX}police.referrals.v1" > "$T/delete.json"
        _kafka_tool org.apache.kafka.tools.DeleteRecordsCommand --bootstrap-server "$KAFKA" \
                --offset-json-file "$T/delete.json" > "$T/delete.out" 2>&1
        gen --count 5 --first 30 --seed 41 --partition 0 --ids-out "$T/ids3"
        daemon_start a
        daemon_ready a 60
        wait_for 90 next_offset_is 35
        [[ $(decided_count) -eq 30 ]]
        # One error line with the range, at priority err.
        grep -q "police.referrals.v1 \[0\]: offsets 20-24 were gone from Kafka (log start 25)" "$T/a.log"
        # The record an operator sees, and the alert on the alerts topic.
        [[ $(sql "select from_offset || '-' || to_offset || '/' || log_start from allvarsd.partition_gaps") == 20-25/25 ]]
        run "$BUILD/allvarsctl" status --database "dbname=$DB"
        [[ $status -eq 0 ]]
        grep -Eq "police\.referrals\.v1 +0 +20 +24 +5 " <<<"$output"
        wait_for 30 bash -c "[[ \$(psql -XAtq -d '$DB' -c 'select count(*) from allvarsd.outbox') -eq 0 ]]"
        events allvarssamtal.alerts.v1 > "$T/alerts"
        grep -q "ALERT_KIND_PARTITION_GAP" "$T/alerts"
        grep -q "gap_from_offset: 20" "$T/alerts"
        # The daemon goes on.
        kill -0 "$(daemon_pid a)"
}

@test "real broker: transaction markers are offsets Kafka explains, not a gap" {
        daemon_start a
        daemon_ready a 60
        # Four transactions of five: a commit marker after each takes an offset.
        gen --count 20 --seed 42 --partition 0 --transactional "tx-$TOPIC_PREFIX" --tx-size 5 --ids-out "$T/ids"
        wait_for 90 decided_at_least 20
        wait_for 30 next_offset_is 23
        check_exactly_once "$T/ids"
        [[ $(sql "select count(*) from allvarsd.partition_gaps") -eq 0 ]]
        ! grep -q "gone from Kafka" "$T/a.log"
}
