# Shared steps of the network fault scenarios (06-pg-partition.sh,
# 07-kafka-partition.sh, 08-slow-links.sh); source it after lib.bash. Toxiproxy
# (tests/lib/toxiproxy.bash) runs for the whole script and is stopped at its
# exit, whatever happens.
#
#   net_pg_proxy NAME           a proxy NAME to the runner's PostgreSQL; prints its port
#   net_kafka_start             a broker of this script's own whose PROXIED listener is
#                               advertised at a proxy "kafka" (NET_KAFKA_PROXIED=127.0.0.1:PORT);
#                               its direct bootstrap becomes ALLVARS_KAFKA_BOOTSTRAP, which the
#                               generators and the checks use; the runner's broker is left alone
#   (notice_watch, notice_s and faults_record_extra are lib.bash's)
#   net_latency T0 T1           p50 and p99 decision latency (ms) of the referrals produced
#                               between T0 and T1, and their count
#   slow_link NAME PROXY MS SECONDS   the slow-link scenario: MS of latency each way on PROXY
#                               for SECONDS during a stream (the daemon's configuration and
#                               the proxy made by the caller's CONF_FUNC, see the scripts)

source "$ALLVARS_ROOT/tests/lib/toxiproxy.bash"

allvars_cleanup_add toxi_stop
toxi_start || { echo "faults: toxiproxy did not start" >&2; exit 2; }

net_pg_proxy() { toxi_proxy "$1" "127.0.0.1:$ALLVARS_PG_TCP_PORT"; }

# The listeners of the script's broker: PLAINTEXT (direct, for everything but
# the daemon) and PROXIED on a port of its own, advertised at the proxy's port,
# so that a client that bootstraps through the proxy stays behind it for every
# broker connection it makes afterwards.
_net_kafka_props() {
        sed -i -e "s|^listeners=.*|&,PROXIED://127.0.0.1:$NET_KAFKA_INNER|" \
                -e "s|^advertised.listeners=.*|&,PROXIED://127.0.0.1:$NET_KAFKA_OUTER|" \
                -e "s|^listener.security.protocol.map=.*|&,PROXIED:PLAINTEXT|" "$1"
}

net_kafka_start() {
        allvars_free_port NET_KAFKA_INNER || return 1
        allvars_free_port NET_KAFKA_OUTER || return 1
        [[ -n ${ALLVARS_KAFKA_DIR:-} ]] && kafka_park runner
        allvars_cleanup_add kafka_stop
        kafka_start _net_kafka_props >"$FAULTS_BASE/kafka-start.log" 2>&1 || {
                cat "$FAULTS_BASE/kafka-start.log" >&2
                return 1
        }
        toxi_proxy kafka "127.0.0.1:$NET_KAFKA_INNER" "$NET_KAFKA_OUTER" >/dev/null || return 1
        NET_KAFKA_PROXIED=127.0.0.1:$NET_KAFKA_OUTER
}

# net_latency T0 T1: the decision latency of the referrals produced between T0
# and T1 (epoch seconds): from the message's Kafka timestamp to decided_at.
# Prints "P50_MS P99_MS DECISIONS"; the same latency for a window before the
# fault is the baseline the scenario compares with.
net_latency() {
        local t0=$1 t1=$2
        timeout 60 kcat -C -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" -o beginning -e -q \
                -f '%k %T\n' 2>/dev/null | sort -k1,1 -u >"$T/input_ts"
        sql "select referral_id, (extract(epoch from decided_at) * 1000)::bigint from allvarsd.decisions" |
                tr '|' ' ' | sort -k1,1 >"$T/decided_ts"
        join "$T/input_ts" "$T/decided_ts" |
                awk -v a="$t0" -v b="$t1" '$2 >= a * 1000 && $2 < b * 1000 { print $3 - $2 }' | sort -n >"$T/latency"
        awk '{ v[NR] = $1 } END {
                if (NR == 0) { print "0 0 0"; exit }
                i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
                i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
                print v[i50], v[i99], NR }' "$T/latency"
}

# slow_link NAME PROXY ONE_WAY_MS SECONDS CONF_FUNC: a stream, a baseline
# window, then ONE_WAY_MS of latency each way on PROXY for SECONDS, then
# healed. CONF_FUNC writes the daemon's configuration "a" (through the proxy).
# Throughput and latency are reported (p99_ms in results.json: during the slow
# window); the checks are the suite's: nothing times out into a wrong state.
slow_link() {
        local name=$1 proxy=$2 ms=$3 secs=$4 conf=$5 b0 b1 t0 t1 base slow n
        faults_begin "$name"
        faults_real_kafka
        "$conf"
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 300
        b0=$(now_s)
        sleep "$(by_size 4 10)"         # the baseline
        b1=$(now_s)
        say "slow link to $proxy: $((2 * ms)) ms round trip for $secs s"
        t0=$(now_s)
        toxi_latency "$proxy" "$ms" || check_fail "cannot slow the link"
        fault_struck
        sleep "$secs"
        toxi_heal "$proxy" || check_fail "cannot heal the link"
        t1=$(now_s)
        recovery_after "slow link" "$t0" "$t1" 120
        sleep 2
        feed_stop
        faults_finish 180
        base=$(net_latency "$b0" "$b1")
        slow=$(net_latency "$t0" "$t1")
        read -r -a n <<<"$slow"
        say "decision latency before: p50 ${base%% *} ms, p99 $(cut -d' ' -f2 <<<"$base") ms" \
                "($(cut -d' ' -f3 <<<"$base") in $(elapsed "$b0" "$b1") s);" \
                "slow: p50 ${n[0]} ms, p99 ${n[1]} ms (${n[2]} in $(elapsed "$t0" "$t1") s)"
        ((n[2] > 0)) || check_fail "nothing produced during the slow window was decided"
        faults_record_extra p99_ms "${n[1]}"
        faults_record_extra p99_ms_before "$(cut -d' ' -f2 <<<"$base")"
        kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone"
        faults_stop_all
}
