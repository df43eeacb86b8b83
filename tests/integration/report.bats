#!/usr/bin/env bats
# allvarsctl report against a real PostgreSQL server (tests/lib/pg.sh): the
# schema applied by psql, tests/integration/report-fixture.sql's 600 referrals
# stored at version 10 and migrated, and the report read by a role that may
# read the pseudonymous tables only.
# Small counts are never shown and cannot be derived; the figures survive the
# retention purge unchanged; the HTML renders in Debian's headless Chromium.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash

NOW=2026-06-01T00:00:00Z
LOGS=$ROOT/build/test-logs

setup_file() {
        if [[ -z ${PGHOST:-} ]]; then
                source "$ROOT/tests/lib/pg.sh"
                pg_start
                export REPORT_OWN_PG=1
        fi
}

teardown_file() {
        if [[ -n ${REPORT_OWN_PG:-} ]]; then
                source "$ROOT/tests/lib/pg.sh"
                pg_stop
        fi
}

# The migrations numbered from $1 to $2.
migrate_range() {
        local f n
        for f in "$ROOT"/schemas/*.sql; do
                n=$(basename "$f")
                n=$((10#${n%%_*}))
                ((n >= $1 && n <= $2)) || continue
                psql -Xq1 -v ON_ERROR_STOP=1 -d "$DB" -f "$f" >/dev/null
        done
}

setup() {
        db_create
        # The fixture's rows in a database of version 10, then the migrations
        # since: version 11 makes the report's rows (referral_stats) from them,
        # as it does for a database upgraded with its data.
        migrate_range 1 10
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" -f "$ROOT/tests/integration/report-fixture.sql" >/dev/null
        migrate_range 11 999
        # The report's reader as deployed: a login in allvarsd_operator, with what
        # the migrations grant that role, in deploy/roles.sql's order (the
        # pseudonymous tables, never referral_personal, case_contacts or the
        # audit's free text). Roles are cluster-wide: the role once, race-free.
        OP_USER=report_op_$$_$RANDOM
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<EOF
DO \$\$ BEGIN CREATE ROLE allvarsd_operator NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;
CREATE ROLE $OP_USER LOGIN IN ROLE allvarsd_operator;
GRANT CONNECT ON DATABASE "$DB" TO $OP_USER;
SELECT allvarsd.grant_all();
EOF
}

teardown() {
        if [[ -n ${OP_USER:-} ]]; then
                psql -Xq -d "$DB" -c "REVOKE CONNECT ON DATABASE \"$DB\" FROM $OP_USER" >/dev/null 2>&1 || true
                psql -Xq -d postgres -c "DROP ROLE IF EXISTS $OP_USER" >/dev/null 2>&1 || true
        fi
}

report() {
        "$BUILD/allvarsctl" report --database "host=$PGHOST port=$PGPORT user=$OP_USER dbname=$DB" --now "$NOW" \
                --from 2025-01-01 --to 2025-03-31 "$@"
}

# Every derivation a reader could try from one output (JSON), using the
# relations the output itself states: a partition whose total is shown and
# one part hidden; a part shown beside its total with a difference of 1-4; a
# share shown whose numerator is hidden. Prints what it derived; [] is none.
DERIVE='
def hidden: . == null or . == "<5";
.figures as $F
| [ .rows[] as $r
    | ( ($F | map(select(.partition)) | group_by(.partition))[] as $g
        | $r.values[$g[0].part_of] as $t
        | select($t | type == "number")
        | [$g[] | select($r.values[.key] | hidden) | .key] as $h
        | select($h | length == 1)
        | {district: $r.district, period: $r.period, figure: $h[0],
           derived: ($t - ([$g[] | $r.values[.key] | numbers] | add // 0))} ),
      ( $F[] | select(.subset_of) as $f
        | $r.values[$f.subset_of] as $t | $r.values[$f.key] as $p
        | select(($t | type == "number") and ($p | type == "number") and $t - $p >= 1 and $t - $p <= 4)
        | {district: $r.district, period: $r.period, figure: ("not " + $f.key), derived: ($t - $p)} ),
      ( $F[] | select(.kind == "share") as $s
        | select(($r.values[$s.key] | type == "number") and ($r.values[$s.numerator] | hidden))
        | {district: $r.district, period: $r.period, figure: $s.numerator, derived: "from the share"} ) ]'

@test "report: counts of 1-4 are never shown, in any format" {
        run --separate-stderr report --format csv
        [[ $status -eq 0 ]]
        [[ ${lines[0]} == $'district,period,figure,value\r' ]]
        # 4 districts x 3 months x every figure.
        local figures
        figures=$(report --format json | jq '.figures | length')
        [[ $(wc -l <<<"$output") -eq $((1 + 4 * 3 * figures)) ]]
        # A count cell is a number of 0 or 5 and more, "<5", or ".." (hidden).
        run awk -F, 'NR > 1 { sub(/\r$/, "", $4) } NR > 1 && $4 ~ /^[1-4]$/' <<<"$output"
        [[ -z $output ]]
        run --separate-stderr report --format csv
        grep -q ',held,<5' <<<"$output"
        grep -q '^centrum,2025-01,referrals,68' <<<"$output"
        # The same figures in JSON and text.
        run --separate-stderr report --format json
        [[ $(jq -r '.rows[] | select(.district == "centrum" and .period == "2025-01") | .values.referrals' <<<"$output") == 68 ]]
        [[ $(jq '. as $d | [$d.figures[] | select(.kind == "count") | .key] as $c
                 | [$d.rows[].values as $v | $c[] | $v[.] | select(type == "number" and . >= 1 and . <= 4)]
                 | length' <<<"$output") -eq 0 ]]
        run --separate-stderr report --format text --district centrum
        [[ $status -eq 0 ]]
        grep -Eq '^    Referrals \(orosanmälningar\) +68 +63 +65$' <<<"$output"
        grep -q 'Descriptive, not causal' <<<"$output"
        ! grep -q '^District hisingen' <<<"$output"
}

@test "report: a database migrated from version 10 with its data reports what version 10 did" {
        # report-v10-*.csv: the output of version 10's allvarsctl report (which
        # joined referrals, decisions, cases, case_alerts and outcome_events)
        # over the same fixture, as of the same NOW. Version 11 reads only
        # referral_stats, which its migration made from those tables.
        report --format csv --by month > "$T/month.csv"
        diff -u "$ROOT/tests/integration/report-v10-month.csv" "$T/month.csv"
        report --format csv --by week > "$T/week.csv"
        diff -u "$ROOT/tests/integration/report-v10-week.csv" "$T/week.csv"
        # Every referral has its row, and each row is the view's.
        [[ $(sql "SELECT count(*) FROM allvarsd.referral_stats") -eq 600 ]]
        [[ $(sql "SELECT count(*) FROM (SELECT * FROM allvarsd.referral_stats
                                        EXCEPT SELECT * FROM allvarsd.referral_stats_source) d") -eq 0 ]]
}

@test "report: no suppressed cell can be derived from the totals shown" {
        run --separate-stderr report --format json
        [[ $status -eq 0 ]]
        json=$output
        # There is something to protect: primary ("<5") and secondary (null) suppression both happened.
        [[ $(jq '[.rows[].values[] | select(. == "<5")] | length' <<<"$json") -gt 10 ]]
        [[ $(jq '. as $d | [$d.figures[] | select(.kind == "count") | .key] as $c
                 | [$d.rows[].values as $v | $c[] | select($v[.] == null)] | length' <<<"$json") -gt 0 ]]
        run jq -c "$DERIVE" <<<"$json"
        [[ $status -eq 0 ]]
        echo "derived: $output"
        [[ $output == "[]" ]]
        # Weekly periods: many more small cells, the same guarantee.
        run --separate-stderr report --format json --by week
        [[ $(jq -c "$DERIVE" <<<"$output") == "[]" ]]
        [[ $(jq '. as $d | [$d.figures[] | select(.kind == "count") | .key] as $c
                 | [$d.rows[].values as $v | $c[] | select($v[.] == null)] | length' <<<"$output") -gt 20 ]]
        [[ $(jq -r '[.rows[].period] | min' <<<"$output") == 2025-W01 ]]
        run --separate-stderr report --format json --by quarter
        [[ $(jq -c "$DERIVE" <<<"$output") == "[]" ]]
        [[ $(jq -r '[.rows[].period] | unique | join(" ")' <<<"$output") == 2025-Q1 ]]
}

@test "report: the same before and after the retention purge" {
        report --format csv > "$T/before.csv"
        report --format json > "$T/before.json"
        # The daemon's purge (daemon/retention.c), one pass, as of NOW.
        chmod 600 "$T/pepper"
        cat > "$T/purge.conf" <<EOF
kafka.embedded = true
database.conninfo = host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB
pepper = @file:$T/pepper
log.target = stderr
retention.closed_case_days = 1
retention.not_eligible_days = 1
EOF
        run "$BUILD/tests/retention-run" "$T/purge.conf" "$NOW"
        echo "$output"
        [[ $status -eq 0 ]]
        # The purge removed personal data: what the report reads stayed.
        [[ $(sql "SELECT count(*) FROM allvarsd.referral_personal") -lt 600 ]]
        [[ $(sql "SELECT count(*) FROM allvarsd.referrals WHERE purged_at IS NOT NULL") -gt 0 ]]
        report --format csv > "$T/after.csv"
        report --format json > "$T/after.json"
        diff -u "$T/before.csv" "$T/after.csv"
        diff -u "$T/before.json" "$T/after.json"
}

@test "report: protective assessments of children with and without a case; a NOT_ELIGIBLE child's counted" {
        run --separate-stderr report --format json --district nordost
        [[ $status -eq 0 ]]
        v=$(jq -c '.rows[] | select(.period == "2025-01") | .values' <<<"$output")
        due=$(sql "SELECT count(*) FROM allvarsd.decisions d JOIN allvarsd.referrals r USING (referral_id)
                   WHERE r.district = 'nordost' AND d.protective_assessment_due IS NOT NULL
                     AND r.reported_at < '2025-01-31T23:00:00Z'")
        [[ $(jq .assessments_due <<<"$v") -eq $due ]]
        without=$(sql "SELECT count(*) FROM allvarsd.assessment_duties WHERE district = 'nordost'
                         AND due_at < '2025-02-01T23:00:00Z'")
        [[ $(jq .assessments_without_case <<<"$v") -eq $without ]]
        [[ $without -ge 5 ]]
}

@test "report: the operator's role (allvarsd_operator) is enough; it cannot read personal data" {
        run --separate-stderr report --format csv
        [[ $status -eq 0 ]]
        # The role cannot read personal data: the report never touched it.
        run psql -XAtq -d "host=$PGHOST port=$PGPORT user=$OP_USER dbname=$DB" \
                -c "SELECT count(*) FROM allvarsd.referral_personal"
        [[ $status -ne 0 ]]
        grep -q 'permission denied' <<<"$output"
}

@test "report: usage errors exit 2 with one line" {
        run --separate-stderr "$BUILD/allvarsctl" report --from 2025-01-01
        [[ $status -eq 2 ]]
        [[ $stderr == *"--from and --to are required"* ]]
        run --separate-stderr "$BUILD/allvarsctl" report --from 2025-13-01 --to 2025-12-31
        [[ $status -eq 2 ]]
        run --separate-stderr "$BUILD/allvarsctl" report --from 2025-01-01 --to 2025-12-31 --by day
        [[ $status -eq 2 ]]
        run --separate-stderr "$BUILD/allvarsctl" report --from 2025-01-01 --to 2025-12-31 --format pdf
        [[ $status -eq 2 ]]
}

@test "report --format html: self-contained, its charts rendered by headless Chromium" {
        command -v chromium >/dev/null || skip "chromium is not installed (tests/lib/deps.sh)"
        report --format html --output "$T/report.html"
        # One file: nothing to fetch (no script, link, image, font, or src/href).
        ! grep -Eiq '<script|<link|<img|@import|url\(|src=|href=' "$T/report.html"
        rows=$(report --format json | jq '.rows | length')
        [[ $rows -eq 12 ]]
        profile=$(mktemp -d)
        mkdir -p "$LOGS"
        run timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
                --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
                --window-size=1000,3000 --screenshot="$LOGS/report-chromium.png" "file://$T/report.html"
        [[ -s $LOGS/report-chromium.png ]]
        timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
                --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
                --dump-dom "file://$T/report.html" > "$T/dom.html" 2>"$T/chromium.err"
        rm -rf "$profile"
        # Three charts, each a bar and a label per district and period.
        [[ $(grep -o '<svg class="chart"' "$T/dom.html" | wc -l) -eq 3 ]]
        local id
        for id in chart-held-in-time chart-hours chart-police; do
                chart=$(sed -n "/<svg class=\"chart\" id=\"$id\"/,/<\/svg>/p" "$T/dom.html")
                [[ $(grep -o '<rect class="bar"' <<<"$chart" | wc -l) -eq $rows ]]
                [[ $(grep -o '<text class="label"' <<<"$chart" | wc -l) -eq $rows ]]
                [[ $(grep -o '<text class="value"' <<<"$chart" | wc -l) -eq $rows ]]
                grep -q '>centrum 2025-01</text>' <<<"$chart"
        done
        # A shown share is a bar of its length; a hidden one is empty and says "..".
        grep -q 'width="[1-9][0-9.]*" height="16"><title>centrum 2025-01: 68%</title>' "$T/dom.html"
        grep -q '<title>angered 2025-01: ..</title>' "$T/dom.html"
        grep -q 'Descriptive, not causal' "$T/dom.html"
}
