#!/usr/bin/env bats
# referral-gen --format json, the input of the benchmark's peer (bench/peer.sh):
# the same referrals as the protobuf run of the same seed (same ids, duplicates and
# malformed messages, in the same order), each a Kafka Connect JSON record whose
# payload has exactly the fields of its schema, typed as the schema says.
# librdkafka's mock cluster in a process of its own; kcat reads the topic back.

load ../lib/daemon.bash

teardown() {
        mock_stop
}

@test "referral-gen --format json: the protobuf run's referrals as Connect records that match their schema" {
        [[ -x $BUILD/tests/referral-gen && -x $BUILD/tests/mock-kafka ]] || skip "referral-gen or mock-kafka not built"
        mock_start
        mock_cmd topic bench.referrals.json 4
        local args=(--count 400 --seed 7 --duplicates 10 --malformed 20)
        "$BUILD/tests/referral-gen" --bootstrap "$KAFKA" --topic police.referrals.v1 "${args[@]}" \
                --ids-out "$T/ids.protobuf" >"$T/gen.protobuf"
        "$BUILD/tests/referral-gen" --bootstrap "$KAFKA" --topic bench.referrals.json "${args[@]}" --format json \
                --ids-out "$T/ids.json" >"$T/gen.json"
        diff "$T/ids.protobuf" "$T/ids.json"
        diff "$T/gen.protobuf" "$T/gen.json"
        grep -q ' dup ' <(sed 's/^/ /' "$T/ids.json")
        grep -q '^malformed ' "$T/ids.json"

        # Every JSON object in the topic (the malformed messages are random bytes):
        # [payload keys == schema fields in order, every value of its schema type
        # (null only where optional), referral id].
        kcat -C -b "$KAFKA" -t bench.referrals.json -e -q -f '%s\n' >"$T/values"
        jq -R -r 'fromjson? | objects
                  | [((.schema.fields | map(.field)) == (.payload | keys_unsorted)),
                     all(.schema.fields[] as $f | .payload[$f.field] as $v
                         | if $v == null then $f.optional
                           else ({"string": "string", "int64": "number", "int32": "number",
                                  "boolean": "boolean"}[$f.type]) == ($v | type) end; .),
                     .payload.referral_id] | map(tostring) | join(" ")' "$T/values" >"$T/checked"
        [[ -s $T/checked ]]
        # (not "! grep": bats does not fail a test on a negated command)
        [[ $(grep -cv '^true true gen-7-' "$T/checked") -eq 0 ]] || { grep -v '^true true' "$T/checked" | head -n 3; false; }
        # One record per valid or duplicate message, with the ids the protobuf run sent.
        diff <(awk '$1 != "malformed" { print $2 }' "$T/ids.protobuf" | sort) <(awk '{ print $3 }' "$T/checked" | sort)
        # A timestamp is Connect's Timestamp in milliseconds, near the generator's time.
        now_ms=$(($(date +%s) * 1000))
        jq -R -r 'fromjson? | objects | .payload.reported_at' "$T/values" |
                awk -v now="$now_ms" '$1 < now - 400 * 86400000 || $1 > now + 86400000 { bad++ } END { exit bad > 0 }'
}
