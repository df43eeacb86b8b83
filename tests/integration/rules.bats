#!/usr/bin/env bats
# The alert rules (deploy/allvarsd.rules.yml): valid for Prometheus, each one
# unit-tested firing (tests/rules/allvarsd.rules.test.yml), and naming only
# metrics the daemon serves (daemon/metrics.c). No servers needed.

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
RULES=$ROOT/deploy/allvarsd.rules.yml
TESTS=$ROOT/tests/rules/allvarsd.rules.test.yml

@test "promtool check rules accepts deploy/allvarsd.rules.yml" {
        promtool check rules "$RULES"
}

@test "promtool test rules: every unit test of the rules passes" {
        run promtool test rules "$TESTS"
        echo "$output"
        [[ $status -eq 0 && $output == *SUCCESS* ]]
}

@test "every alert has a unit test in which it fires" {
        # Alert names whose test expects at least one alert (an exp_labels after its alertname).
        awk '/alertname:/ { a = $2 } /exp_labels:/ { print a }' "$TESTS" | sort -u > "$BATS_TEST_TMPDIR/fired"
        sed -n 's/^ *- alert: *//p' "$RULES" | sort -u > "$BATS_TEST_TMPDIR/alerts"
        [[ $(wc -l < "$BATS_TEST_TMPDIR/alerts") -ge 8 ]]
        diff "$BATS_TEST_TMPDIR/alerts" "$BATS_TEST_TMPDIR/fired"
}

@test "the rules name only metrics the daemon serves" {
        for m in $(grep -o 'allvarsd_[a-z_]*' "$RULES" | sort -u); do
                grep -q "\"$m\"" "$ROOT/daemon/metrics.c" || { echo "not served: $m"; false; }
        done
}
