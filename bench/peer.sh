# bench/peer.sh: the benchmark's peer, sourced by bench/run (bash; do not run it).
#
# What an integrator would pick instead of allvarsd to get the referral topic into
# PostgreSQL: Kafka Connect in standalone mode, from Apache Kafka's own jars (the test
# broker's version, bench/connect/pom.xml), with Debezium's JDBC sink connector
# (bench/connect/plugin/pom.xml), both from Maven Central, fetched once and cached
# like the broker's jars (tests/lib/kafka.sh's kafka_fetch, keyed by the pom).
# It consumes the same referrals (same generator, seed, duplicates and malformed
# messages: tests/tools/referral-gen --format json) as Connect JSON records with
# their schema, into one table, upsert on referral_id. It does far less than
# allvarsd: no rules, one row per referral, no outbox, no events.
#
#   peer_fetch                   resolve the jars (cached after the first run); sets
#                                PEER_LIB (the worker's classpath) and PEER_PLUGINS
#                                (plugin.path: one directory, the sink's jars)
#   peer_run COUNT               produce COUNT JSON records, start the worker on them and
#                                measure until every distinct referral is in the table
#                                (or PEER_TIMEOUT seconds, default 300, have passed);
#                                sets PEER_PER_S PEER_SECS PEER_PRODUCE_SECS PEER_START_SECS
#                                PEER_RUNNING_PER_S PEER_ROWS PEER_EXPECTED PEER_RSS_MIB PEER_CPU_S
#                                PEER_CPU_PER_1000 PEER_SHARE_CONNECT PEER_SHARE_PG
#                                PEER_SHARE_BUSY PEER_TOPIC_MIB PEER_COMPLETE (true|false)
#   peer_stop                    stop the worker (safe to call twice; for the cleanup)
#
# Uses from bench/run: $W $B $KAFKA $ROOT, sql, say, calc, now_s, stop_pid,
# proc_cpu_ticks, pg_cpu_ticks, pg_postmaster, machine_ticks, vm_hwm_kib.
#
# Tuning, as the connector's documentation asks (bench/README.md cites it):
# * batch.size 2000 (the default 500 commits every 500 rows), and the task's consumer
#   polls as many (consumer.override.max.poll.records; the worker allows the override),
#   since the sink writes what one poll returned: a poll of 500 records, Connect's
#   default, would cap every batch at 500;
# * tasks.max 2, one per core (the topic has 4 partitions);
# * a pool of one or two connections per task (connection.pool.min_size 1, max_size 2,
#   acquire_increment 1): a task writes one batch at a time on one connection, where the
#   defaults (5 to 32) keep idle connections open;
# * the JVM as Apache Kafka's connect-standalone.sh starts it (-Xms256M -Xmx2G, G1 with
#   a 20 ms pause goal), plugin.discovery=service_load (no scan of every jar at start).

PEER_DB=peer
PEER_TOPIC=bench.referrals.json
PEER_PID=

peer_fetch() {
        local etc
        PEER_LIB=$( (ALLVARS_KAFKA_POM=$ROOT/bench/connect/pom.xml && kafka_fetch && echo "$ALLVARS_KAFKA_LIB") | tail -n 1) &&
                [[ -d $PEER_LIB ]] || return 1
        etc=$( (ALLVARS_KAFKA_POM=$ROOT/bench/connect/plugin/pom.xml && kafka_fetch && echo "$ALLVARS_KAFKA_LIB") | tail -n 1) &&
                [[ -d $etc ]] || return 1
        # plugin.path names directories whose subdirectories are plugins: the cache
        # entry, whose lib/ is the sink's.
        PEER_PLUGINS=$(dirname "$etc")
}

peer_stop() {
        stop_pid "$PEER_PID" 30
        PEER_PID=
}

# peer_properties PORT: the worker's and the connector's configuration into $W.
peer_properties() {
        cat >"$W/connect-worker.properties" <<EOF
bootstrap.servers=$KAFKA
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$W/connect.offsets
offset.flush.interval.ms=10000
plugin.path=$PEER_PLUGINS
plugin.discovery=service_load
listeners=http://127.0.0.1:$1
connector.client.config.override.policy=All
EOF
        cat >"$W/connect-sink.properties" <<EOF
name=peer-jdbc-sink
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=2
topics=$PEER_TOPIC
connection.url=jdbc:postgresql://127.0.0.1:$ALLVARS_PG_TCP_PORT/$PEER_DB
connection.username=$PGUSER
connection.password=unused
connection.pool.min_size=1
connection.pool.max_size=2
connection.pool.acquire_increment=1
insert.mode=upsert
primary.key.mode=record_value
primary.key.fields=referral_id
schema.evolution=none
collection.name.format=referrals
batch.size=2000
consumer.override.max.poll.records=2000
errors.tolerance=all
EOF
}

peer_run() {
        local count=$1 port t0 t_start pm pg0 pg1 m_busy0 m_io0 m_tot0 m_busy1 m_io1 m_tot1 rows=0 first= hwm ticks mt
        createdb "$PEER_DB" || return 1
        # The table as the sink's schema.evolution=basic creates it from the records'
        # schema (its own DDL, from its log): created first, as a DBA would, because two
        # tasks that both find it missing race on CREATE TABLE, and one fails and retries.
        sql "create table referrals (referral_id text not null, police_case_number text not null,
               reported_at timestamp(6) not null, incident_at timestamp(6) null, district text not null,
               identity_number text null, birth_date text null, given_name text not null, family_name text not null,
               guardians text null, concerns text null, offence_code text null, offence_severity integer null,
               offence_imprisonable boolean null, acute_risk boolean not null, preliminary_investigation boolean not null,
               feedback_requested boolean not null, reporting_unit text not null, narrative text not null,
               primary key (referral_id))" "$PEER_DB" || return 1
        "$B/tests/kafka-topics" "$KAFKA" create 4 "$PEER_TOPIC" >/dev/null || return 1
        say "peer: producing $count referrals as Connect JSON records with schemas (same seed, duplicates, malformed)"
        t0=$(now_s)
        "$B/tests/referral-gen" --bootstrap "$KAFKA" --topic "$PEER_TOPIC" --count "$count" --seed 7 \
                --duplicates 10 --malformed 1 --format json --ids-out "$W/peer.ids" >"$W/gen-peer.out" 2>&1 ||
                { cat "$W/gen-peer.out" >&2; return 1; }
        PEER_PRODUCE_SECS=$(calc "int(10 * ($(now_s) - $t0)) / 10")
        PEER_EXPECTED=$(awk '$1 == "valid" || $1 == "dup" { print $2 }' "$W/peer.ids" | sort -u | wc -l)
        PEER_TOPIC_MIB=$(($(cat "$ALLVARS_KAFKA_DIR/data/$PEER_TOPIC"-*/*.log | wc -c) / 1048576))
        say "peer: produced in ${PEER_PRODUCE_SECS}s: $(cat "$W/gen-peer.out"); $PEER_TOPIC_MIB MiB of log"

        allvars_free_port port || return 1
        peer_properties "$port"
        sql 'checkpoint' postgres
        pm=$(pg_postmaster)
        pg0=$(pg_cpu_ticks "$pm")
        read -r m_busy0 m_io0 m_tot0 < <(machine_ticks)
        t_start=$(now_s)
        # As Apache Kafka's bin/connect-standalone.sh and kafka-run-class.sh start it.
        java -Xms256M -Xmx2G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
                -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
                -Dlog4j2.configurationFile="$ROOT/bench/connect/log4j2.xml" -Dconnect.log.file="$W/connect.log" \
                -cp "$PEER_LIB/*" org.apache.kafka.connect.cli.ConnectStandalone \
                "$W/connect-worker.properties" "$W/connect-sink.properties" >"$W/connect.out" 2>&1 &
        PEER_PID=$!
        # Until every distinct referral is in the table. The table's statistics (rows
        # inserted; the upsert of a duplicate updates) are cheap but lag: a backend
        # that goes idle less than a second after its last report holds its counts up
        # to 10 s. So the exact count is asked from 90 % of the estimate on.
        PEER_COMPLETE=false
        while :; do
                if ! kill -0 "$PEER_PID" 2>/dev/null; then
                        tail -n 20 "$W/connect.log" "$W/connect.out" >&2
                        say "peer: Kafka Connect exited"
                        break
                fi
                rows=$(sql "select coalesce((select n_tup_ins from pg_stat_user_tables where relname = 'referrals'), 0)" \
                        "$PEER_DB" 2>/dev/null || echo 0)
                [[ -z $first && ${rows:-0} -gt 0 ]] && first=$(now_s)
                if ((${rows:-0} >= PEER_EXPECTED * 9 / 10)) &&
                   (($(sql 'select count(*) from referrals' "$PEER_DB") >= PEER_EXPECTED)); then
                        PEER_COMPLETE=true
                        break
                fi
                if (($(calc "$(now_s) - $t_start > ${PEER_TIMEOUT:-300}"))); then
                        say "peer: not done after ${PEER_TIMEOUT:-300}s"
                        break
                fi
                grep -q 'ERROR.*Task.*threw an uncaught' "$W/connect.log" 2>/dev/null &&
                        { grep -m 3 -A 5 'ERROR' "$W/connect.log" >&2; say "peer: the task failed"; break; }
                sleep 0.5
        done
        PEER_SECS=$(calc "$(now_s) - $t_start")
        pg1=$(pg_cpu_ticks "$pm")
        read -r m_busy1 m_io1 m_tot1 < <(machine_ticks)
        ticks=$(proc_cpu_ticks "$PEER_PID")
        hwm=$(vm_hwm_kib "$PEER_PID")
        peer_stop
        PEER_ROWS=$(sql 'select count(*) from referrals' "$PEER_DB" 2>/dev/null || echo 0)
        PEER_START_SECS=$([[ -n $first ]] && calc "int(10 * ($first - $t_start)) / 10" || echo null)
        # Once running (from its first row on): the JVM's start and the group join are
        # a fixed cost, 10 to 20 s here, that a long-running worker pays once.
        PEER_RUNNING_PER_S=$([[ -n $first && $PEER_COMPLETE == true ]] && calc "int($count / ($t_start + $PEER_SECS - $first))" || echo null)
        # Cut short: the messages behind the rows written so far (rows are distinct referrals).
        if [[ $PEER_COMPLETE == true ]]; then
                PEER_PER_S=$(calc "int($count / $PEER_SECS)")
        else
                PEER_PER_S=$(calc "int(${PEER_ROWS:-0} * $count / $PEER_EXPECTED / $PEER_SECS)")
        fi
        PEER_RSS_MIB=$(calc "int(10 * $hwm / 1024) / 10")
        PEER_CPU_S=$(calc "int(10 * $ticks / $HZ) / 10")
        PEER_CPU_PER_1000=$(calc "$ticks / $HZ / ($count / 1000)")
        mt=$((m_tot1 - m_tot0))
        PEER_SHARE_BUSY=$(calc "int(100 * ($m_busy1 - $m_busy0) / $mt)")
        PEER_SHARE_CONNECT=$(calc "int(100 * $ticks / $mt)")
        PEER_SHARE_PG=$(calc "int(100 * ($pg1 - $pg0) / $mt)")
        say "peer: $count records in ${PEER_SECS}s = $PEER_PER_S/s (first row after ${PEER_START_SECS}s;" \
            "$PEER_RUNNING_PER_S/s from then on);" \
            "$PEER_ROWS rows of $PEER_EXPECTED distinct referrals; peak RSS $PEER_RSS_MIB MiB;" \
            "CPU ${PEER_CPU_S}s ($PEER_CPU_PER_1000 s per 1000);" \
            "% of the machine: busy $PEER_SHARE_BUSY, Connect $PEER_SHARE_CONNECT, PostgreSQL $PEER_SHARE_PG"
        [[ $PEER_COMPLETE == true ]]
}
