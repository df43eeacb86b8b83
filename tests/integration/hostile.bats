#!/usr/bin/env bats
# Hostile input through the running daemon (librdkafka's mock cluster in a
# process of its own, the real PostgreSQL): mutated referrals and outcomes
# (tests/tools/hostile-gen.c), each decided, applied or dead-lettered exactly
# once; the daemon never exits, its peak RSS stays under 64 MiB, and a valid
# referral after the storm is decided promptly. ALLVARS_HOSTILE_COUNT sets the
# number of referrals (default 160; the outcomes are half as many).

load ../lib/daemon.bash

setup() {
        db_create
        mock_start
        daemon_conf a
        daemon_migrate a
}

teardown() {
        teardown_daemons
}

next_offsets_are() {
        [[ $(sql "select coalesce(sum(next_offset), 0) from allvarsd.consumer_offsets where topic = '$1'") -eq $2 ]]
}
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
# fuzz_in_chunks TOPIC COUNT SEED MODE: COUNT mutated messages in chunks of 200
# (each its own seed), each chunk consumed before the next is sent. The mock
# cluster keeps at most 5 MB per partition and drops the oldest beyond that
# (librdkafka's rdkafka_mock.c); one mutation in eight is a 200 KB repeated
# field, so a stream of thousands sent at once would lose its start before the
# daemon read it (a partition gap, not hostile input).
fuzz_in_chunks() {
        local topic=$1 count=$2 seed=$3 mode=$4 sent=0 k=0 c
        while ((sent < count)); do
                c=$((count - sent < 200 ? count - sent : 200))
                "$BUILD/tests/hostile-gen" --bootstrap "$KAFKA" --topic "$topic" --count "$c" \
                        --seed $((seed + 1000 * k)) "$mode"
                sent=$((sent + c)) k=$((k + 1))
                wait_for 120 next_offsets_are "$topic" "$sent"
        done
}
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$(daemon_pid a)/status"; }

@test "a fuzzing stream: every message decided or dead-lettered once, the daemon stays up and small" {
        n=${ALLVARS_HOSTILE_COUNT:-160}
        m=$((n / 2))
        daemon_start a
        daemon_ready a
        fuzz_in_chunks police.referrals.v1 "$n" 5 --fuzz-referrals
        fuzz_in_chunks allvarssamtal.outcomes.v1 "$m" 6 --fuzz-outcomes
        kill -0 "$(daemon_pid a)"
        # Referrals: a decision or a dead letter for every offset, never both.
        [[ $(sql "select count(*) from allvarsd.referrals") -gt 0 ]]
        [[ $(sql "select count(*) from allvarsd.dead_letters where source_topic = 'police.referrals.v1'") -gt 0 ]]
        [[ $(sql "select (select count(*) from allvarsd.referrals)
                       + (select count(*) from allvarsd.dead_letters where source_topic = 'police.referrals.v1')") -eq $n ]]
        [[ $(sql "select count(*) from allvarsd.referrals r join allvarsd.dead_letters d
                  on d.source_topic = r.source_topic and d.source_partition = r.source_partition
                  and d.source_offset = r.source_offset") -eq 0 ]]
        [[ $(sql "select count(*) from (select source_topic, source_partition, source_offset from allvarsd.dead_letters
                  group by 1, 2, 3 having count(*) > 1) x") -eq 0 ]]
        # Outcomes (of cases that do not exist): each applied or dead-lettered once.
        [[ $(sql "select (select count(*) from allvarsd.outcome_events)
                       + (select count(*) from allvarsd.dead_letters
                          where source_topic = 'allvarssamtal.outcomes.v1')") -eq $m ]]
        # Every kind of mutation was met: huge repeated fields and unknown fields
        # beyond the budget are OVERSIZED, not an allocation of gigabytes.
        sql "select distinct reason from allvarsd.dead_letters order by 1" > "$T/reasons"
        grep -qx OVERSIZED "$T/reasons"
        grep -qx UNDECODABLE "$T/reasons"
        grep -qx INVALID_TEXT "$T/reasons"
        grep -qx TIMESTAMP_OUT_OF_RANGE "$T/reasons"
        [[ $(peak_rss_kib) -lt $((64 * 1024)) ]]
        # After the storm a valid referral is decided promptly.
        before=$(decided_count)
        gen --count 1 --seed 99 --ids-out "$T/ids"
        wait_for 10 decided_at_least $((before + 1))
        kill -0 "$(daemon_pid a)"
}

# The daemon asks librdkafka for 256 KiB per partition and fetch
# (daemon/consumer.c): a message larger than that must still be fetched whole,
# and the partition go on after it. Two of 700,000 random bytes and a short one,
# all on partition 0: each dead-lettered with all of its bytes, the partition's
# position past the three, and a valid referral after them decided.
@test "messages larger than a fetch are consumed whole, and the partition goes on after them" {
        daemon_start a
        daemon_ready a
        head -c 700000 /dev/urandom >"$T/big1"
        head -c 700000 /dev/urandom >"$T/big2"
        printf 'not a referral' >"$T/small"
        for f in big1 big2 small; do
                kcat -P -b "$KAFKA" -t police.referrals.v1 -p 0 -k "k-$f" "$T/$f"
        done
        wait_for 60 next_offsets_are police.referrals.v1 3
        [[ $(sql "select string_agg(source_offset || ':' || coalesce(octet_length(payload), -1), ' ' order by source_offset)
                  from allvarsd.dead_letters where source_topic = 'police.referrals.v1' and source_partition = 0") == \
           "0:700000 1:700000 2:14" ]]
        gen --count 1 --seed 7 --ids-out "$T/ids"
        wait_for 20 decided_at_least 1
        kill -0 "$(daemon_pid a)"
}
