#!/usr/bin/env bats
# The Prometheus endpoint (daemon/metrics.c, metrics_http.c) and the instances
# table, as deployed: deploy/roles.sql, the schema migrated by allvarsd_owner,
# the daemon as allvarsd_runtime. Against a real PostgreSQL, librdkafka's mock
# cluster, Debian's promtool and Debian's Prometheus server.

load ../lib/daemon.bash
source "$ROOT/tests/lib/common.sh"

setup() {
        db_create
        "$ROOT/tests/lib/roles-sql" "$DB" >/dev/null
        mock_start
        allvars_free_port MPORT
        daemon_conf owner
        sed -i "s/ user=$PGUSER / user=allvarsd_owner /" "$T/owner.conf"
        daemon_migrate owner
}

teardown() {
        if [[ -n ${PROM_PID:-} ]]; then kill "$PROM_PID" 2>/dev/null; wait "$PROM_PID" 2>/dev/null || true; fi
        teardown_daemons
}

# conf NAME [EXTRA LINES...]: the daemon as the runtime role, metrics on $MPORT.
conf() {
        local name=$1
        shift
        daemon_conf "$name" "metrics.listen = 127.0.0.1:$MPORT" "$@"
        sed -i "s/ user=$PGUSER / user=allvarsd_runtime /" "$T/$name.conf"
}

scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics"; }
# value PREFIX: the values of the samples in $T/scrape that start with PREFIX, a
# name or a name with its first labels ('NAME{a="x"'), summed.
value() { awk -v m="$1" 'index($0, m) == 1 && substr($0, length(m) + 1, 1) ~ /[ {,}]/ { s += $NF } END { print s + 0 }' "$T/scrape"; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }
outbox_drained() { [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]; }
scrape_shows() { scrape > "$T/scrape" && [[ $(value "$1") == "$2" ]]; }

@test "the endpoint serves the metrics in the Prometheus text format; promtool accepts a scrape taken mid-stream" {
        conf a
        daemon_start a
        daemon_ready a
        gen --count 3000 --seed 41 --duplicates 10 --malformed 10 --rate 600 --ids-out "$T/ids" > /dev/null &
        gen_pid=$!
        wait_for 30 decided_at_least 200
        scrape > "$T/mid"
        wait "$gen_pid"
        promtool check metrics < "$T/mid"
        [[ $(awk '/^allvarsd_referrals_decided_total/ { s += $2 } END { print s }' "$T/mid") -gt 0 ]]

        want=$(expected_ids "$T/ids" | wc -l)
        wait_for 60 decided_at_least "$want"
        wait_for 30 outbox_drained
        # The counters agree with the database once the last batch is counted.
        wait_for 10 scrape_shows allvarsd_referrals_decided_total "$(decided_count)"
        promtool check metrics < "$T/scrape"
        for o in ELIGIBLE NOT_ELIGIBLE DEFERRED MANUAL_REVIEW; do
                [[ $(value "allvarsd_referrals_decided_total{outcome=\"$o\"}") -eq \
                   $(sql "select count(*) from allvarsd.decisions where outcome = '$o'") ]]
        done
        [[ $(value allvarsd_dead_letters_total) -eq $(sql "select count(*) from allvarsd.dead_letters") ]]
        [[ $(value allvarsd_referrals_consumed_total) -eq $(wc -l < "$T/ids") ]]
        # A repeated id, whatever came first (gen may repeat a repeat or a malformed slot).
        dups=$(($(grep -cE '^(valid|dup) ' "$T/ids") - $(expected_ids "$T/ids" | wc -l)))
        [[ $(value 'allvarsd_duplicates_total{kind="referral"}') -eq $dups ]]
        [[ $(value allvarsd_events_published_total) -eq $(sql "select count(*) from allvarsd.outbox_sent") ]]
        [[ $(value allvarsd_batch_messages_sum) -eq $(wc -l < "$T/ids") ]]
        # Positions per partition as stored, and no lag once everything is read.
        # (Published by the main loop every second.)
        stored=$(sql "select sum(next_offset) from allvarsd.consumer_offsets where topic = 'police.referrals.v1'")
        wait_for 5 scrape_shows 'allvarsd_consumer_stored_offset{topic="police.referrals.v1"' "$stored" ||
                { grep consumer "$T/scrape"; false; }
        [[ $(value 'allvarsd_consumer_lag_messages{topic="police.referrals.v1"') -eq 0 ]]
        [[ $(value allvarsd_relay_lock_held) -eq 1 ]]
        [[ $(value allvarsd_partitions_assigned) -eq 8 ]]
        grep -q '^allvarsd_build_info{version="[^"]*",schema_version="[0-9]*"} 1$' "$T/scrape"
        # librdkafka's statistics arrive every 5 s.
        wait_for 15 bash -c "curl -fsS http://127.0.0.1:$MPORT/metrics | grep -q '^allvarsd_kafka_broker_rtt_avg_seconds{client=\"producer\"'"
        # The requests each client has sent: the consumer fetched, the relay produced.
        curl -fsS "http://127.0.0.1:$MPORT/metrics" > "$T/scrape"
        for c in consumer producer; do
                awk -v c="$c" 'index($1, "allvarsd_kafka_broker_requests_sent_total{client=\"" c "\"") == 1 { s += $2 }
                               END { exit !(s > 0) }' "$T/scrape"
        done
        # Every family has its HELP and TYPE; no label holds a referral or case id.
        for f in $(grep -o '^allvarsd_[a-z_]*' "$T/scrape" | sed -E 's/_(bucket|sum|count)$//' | sort -u); do
                grep -q "^# HELP $f " "$T/scrape" && grep -q "^# TYPE $f " "$T/scrape"
        done
        if grep -E 'gen-41-|[0-9a-f]{8}-[0-9a-f]{4}-' "$T/scrape"; then false; fi
        # Each series once (librdkafka lists a coordinator's connection as a second broker).
        [[ -z $(grep -v '^#' "$T/scrape" | awk '{ print $1 }' | sort | uniq -d) ]]
        # The journal's positions are readable: where each partition started
        # (a fresh database: the beginning) and, on leaving, where it stands.
        grep -q 'Assigned 8 partition(s): .*police.referrals.v1\[0\]@beginning' "$T/a.log"
        # Anything but GET /metrics is refused.
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/") -eq 404 ]]
        [[ $(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$MPORT/metrics") -eq 405 ]]
        daemon_stop a
        p0=$(sql "select next_offset from allvarsd.consumer_offsets where topic = 'police.referrals.v1' and partition = 0")
        grep -q "Revoked 8 partition(s): .*police.referrals.v1\[0\]@$p0 " "$T/a.log"
        if grep -E '(Assigned|Revoked) .*@-[0-9]' "$T/a.log"; then false; fi
}

@test "the daemon reports itself in allvarsd.instances: a heartbeat, the relay, and a clean stop" {
        conf a
        daemon_start a
        daemon_ready a
        wait_for 20 bash -c "[[ \$(psql -XAtq -d $DB -c \"select count(*) from allvarsd.instances where pid = $(daemon_pid a) and relay_active\") -eq 1 ]]"
        [[ $(sql "select host = '$(hostname)' and version <> '' and heartbeat_at > now() - interval '1 minute'
                  from allvarsd.instances where pid = $(daemon_pid a)") == t ]]
        # The relay's lock holder, from pg_locks, in the metrics: this database's
        # only, whatever another database's relay holds (read after the figures
        # that follow the other lock, every 15 s).
        scrape > "$T/scrape"
        before=$(awk '$1 == "allvarsd_database_figures_timestamp_seconds" { print $2 }' "$T/scrape")
        relay_lock_elsewhere
        wait_for 20 bash -c "curl -fsS http://127.0.0.1:$MPORT/metrics | awk -v b=$before \
                '\$1 == \"allvarsd_database_figures_timestamp_seconds\" && \$2 > b { f = 1 } END { exit !f }'"
        scrape > "$T/scrape"
        relay_lock_elsewhere_end
        [[ $(value allvarsd_relay_lock_holders) -eq 1 ]]
        daemon_stop a
        [[ $(sql "select stopped_at is not null from allvarsd.instances") == t ]]
}

@test "metrics.listen takes loopback only unless metrics.allow_remote; a bad address stops the start" {
        conf a
        sed -i "s/^metrics.listen = .*/metrics.listen = 0.0.0.0:$MPORT/" "$T/a.conf"
        run deployed_run "$T/a.conf" "$BUILD/allvarsd" --config "$T/a.conf"
        [[ $status -ne 0 && $output == *"not a loopback address"* ]]
        sed -i "s/^metrics.listen = .*/metrics.listen = localhost:$MPORT/" "$T/a.conf"
        run deployed_run "$T/a.conf" "$BUILD/allvarsd" --config "$T/a.conf"
        [[ $status -ne 0 && $output == *"not a numeric"* ]]
        sed -i "s/^metrics.listen = .*/metrics.listen = [::1]:$MPORT/" "$T/a.conf"
        daemon_start a
        daemon_ready a
        curl -fsS "http://[::1]:$MPORT/metrics" | grep -q '^allvarsd_build_info'
}

# prom_query EXPR [TIME]: the first value of an instant query to the test's Prometheus.
prom_query() {
        curl -fsS --max-time 5 "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1" \
                ${2:+--data-urlencode "time=$2"} | jq -r '.data.result[0].value[1] // empty'
}
prom_has() { [[ $(prom_query "$1") == "$2" ]]; }

@test "Debian's Prometheus scrapes the daemon: rate() and a histogram quantile agree with the database" {
        conf a
        daemon_start a
        daemon_ready a
        allvars_free_port PPORT
        mkdir -p "$T/prom"
        cat > "$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: allvarsd
    static_configs:
      - targets: ['127.0.0.1:$MPORT']
EOF
        promtool check config "$T/prometheus.yml"
        prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom" \
                --web.listen-address="127.0.0.1:$PPORT" > "$T/prometheus.log" 2>&1 &
        PROM_PID=$!
        wait_for 60 curl -fsS "http://127.0.0.1:$PPORT/-/ready"
        # A first sample before the stream: every counter's series starts at 0.
        wait_for 30 prom_has 'up{job="allvarsd"}' 1
        wait_for 10 prom_has 'count(allvarsd_referrals_decided_total)' 4

        gen --count 2000 --seed 42 --rate 400 --embed-produce-time --ids-out "$T/ids" > /dev/null
        wait_for 60 decided_at_least 2000
        n=$(decided_count)
        wait_for 20 prom_has 'sum(allvarsd_referrals_decided_total)' "$n"
        sleep 2         # a few more samples of the final value

        # The raw samples of one series: the first (0) and the last scrape's times.
        curl -fsS "http://127.0.0.1:$PPORT/api/v1/query" \
                --data-urlencode 'query=allvarsd_referrals_decided_total{outcome="ELIGIBLE"}[10m]' > "$T/raw"
        t0=$(jq -r '.data.result[0].values[0][0]' "$T/raw")
        t1=$(jq -r '.data.result[0].values[-1][0]' "$T/raw")
        [[ $(jq -r '.data.result[0].values[0][1]' "$T/raw") == 0 ]]
        # Over a window from just before the first sample to the last, rate()
        # times the window is the whole stream: no extrapolation past a
        # counter's zero or past the last sample (Prometheus' extrapolatedRate).
        w=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", b - a + 1 }')
        rate=$(prom_query "sum(rate(allvarsd_referrals_decided_total[${w}s]))" "$t1")
        awk -v r="$rate" -v w="$w" -v n="$n" 'BEGIN { d = r * w - n; exit !(d < 1 && d > -1) }'
        for o in ELIGIBLE NOT_ELIGIBLE; do
                r=$(prom_query "sum(rate(allvarsd_referrals_decided_total{outcome=\"$o\"}[${w}s]))" "$t1")
                want=$(sql "select count(*) from allvarsd.decisions where outcome = '$o'")
                awk -v r="$r" -v w="$w" -v n="$want" 'BEGIN { d = r * w - n; exit !(d < 1 && d > -1) }'
        done

        # The median age of a referral at its decision, from the histogram and
        # from the database (the produce time rides in police_case_number): the
        # exact median lies in the bucket histogram_quantile interpolated in,
        # or next to it (the metric counts to the COMMIT, decided_at is the
        # batch's start).
        q=$(prom_query "histogram_quantile(0.5, sum by (le) (rate(allvarsd_referral_decision_age_seconds_bucket[${w}s])))" "$t1")
        m=$(sql "select percentile_cont(0.5) within group (order by extract(epoch from d.decided_at)
                        - substr(r.police_case_number, 2)::bigint / 1e6)
                   from allvarsd.decisions d join allvarsd.referrals r using (referral_id)")
        bounds="0 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 300 1e9"
        awk -v q="$q" -v m="$m" -v b="$bounds" 'BEGIN {
                n = split(b, e, " ")
                for (i = 1; i < n; i++) { if (q > e[i] && q <= e[i + 1]) qi = i; if (m > e[i] && m <= e[i + 1]) mi = i }
                printf "histogram_quantile %s (bucket %d), database median %s (bucket %d)\n", q, qi, m, mi
                exit !(qi > 0 && mi >= qi - 1 && mi <= qi + 1)
        }'
}
