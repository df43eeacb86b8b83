# Helpers for tests that run allvarsd as a process (bats). Needs a PostgreSQL
# server in the environment (PGHOST, PGPORT, PGUSER: tests/lib/pg.sh) and the
# build (build/ or $ALLVARS_BUILD). Kafka is either librdkafka's mock cluster in
# a process of its own (mock_start) or a real broker ($ALLVARS_KAFKA_BOOTSTRAP).
# Every wait is bounded; teardown_daemons stops everything a test started.
# Everything runs as deployed (tests/lib/deployed.bash): the database made by
# the superuser with deploy/roles.sql, the migrations as allvarsd_owner, the
# daemon as the role of deploy/allvarsd.conf.example, from that example.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${ALLVARS_BUILD:-$ROOT/build}
source "$ROOT/tests/lib/deployed.bash"
# The test's own directory: bats gives one per test; a plain script gets a
# fresh one (removed by its own trap). Never created at bats' file load.
if [[ -n ${BATS_TEST_TMPDIR:-} ]]; then
        T=$BATS_TEST_TMPDIR
elif [[ -z ${BATS_VERSION:-} && -z ${T:-} ]]; then
        T=$(mktemp -d)
fi

# wait_for SECONDS COMMAND...: run COMMAND every 0.1 s until it succeeds.
wait_for() {
        local limit=$1 i
        shift
        for ((i = 0; i < limit * 10; i++)); do
                if "$@" >/dev/null 2>&1; then return 0; fi
                sleep 0.1
        done
        echo "timed out after ${limit}s waiting for: $*" >&2
        return 1
}

sql() { psql -XAtq -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }

# db_create: a fresh database for this test as a DBA makes it (createdb and
# deploy/roles.sql, as the superuser); the schema comes from daemon_migrate.
# The name is unique on the cluster: the process ($BASHPID, not $$, which a
# bats test's subshell shares with its siblings), a count of this process's
# databases and 32 random bits. With $$ and $RANDOM alone two scenarios of one
# fault script once drew the same name, and the second, its createdb refused,
# ran on the first one's database (2026-12-05).
DB_CREATED=0
db_create() {
        DB_CREATED=$((DB_CREATED + 1))
        DB=t_$(printf '%s' "${BATS_TEST_NAME:-x}" | md5sum | cut -c1-12)_${BASHPID}_${DB_CREATED}_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
        DEPLOYED_SECRETS=$T/secrets
        deployed_db "$DB" || { echo "db_create: cannot create database $DB" >&2; return 1; }
        cp "$DEPLOYED_SECRETS/pepper" "$T/pepper"
}

# mock_start [BROKERS]: librdkafka's mock cluster with the allvarsd topics (4 partitions).
mock_start() {
        mkfifo "$T/mock.in"
        "$BUILD/tests/mock-kafka" -b "${1:-1}" -p 4 police.referrals.v1 allvarssamtal.outcomes.v1 \
                allvarssamtal.scheduling.v1 police.feedback.v1 allvarssamtal.alerts.v1 \
                allvarssamtal.deadletter.v1 < "$T/mock.in" > "$T/mock.out" 2> "$T/mock.err" &
        MOCK_PID=$!
        exec {MOCK_FD}> "$T/mock.in"
        wait_for 10 grep -q BOOTSTRAP= "$T/mock.out"
        KAFKA=$(sed -n 's/^BOOTSTRAP=//p' "$T/mock.out")
}

# mock_cmd LINE: send a fault-injection command to the mock cluster.
# (The line count is read on every try: a "$(...)" argument of wait_for would be read once.)
_mock_lines_above() { [[ $(wc -l < "$T/mock.out") -gt $1 ]]; }
mock_cmd() {
        local before
        before=$(wc -l < "$T/mock.out")
        echo "$*" >&"$MOCK_FD"
        wait_for 5 _mock_lines_above "$before"
        tail -1 "$T/mock.out" | grep -q '^OK'
}

mock_stop() {
        if [[ -n ${MOCK_FD:-} ]]; then exec {MOCK_FD}>&-; MOCK_FD=; fi
        if [[ -n ${MOCK_PID:-} ]]; then wait_for 10 bash -c "! kill -0 $MOCK_PID" || kill -9 "$MOCK_PID"; MOCK_PID=; fi
}

# The timings the tests need to be quick (the example's defaults are for
# production: a 45 s session timeout would make every rebalance test wait it out).
DAEMON_TEST_TIMINGS=("kafka.session.timeout.ms = 6000" "kafka.heartbeat.interval.ms = 500"
        "kafka.topic.metadata.refresh.interval.ms = 2000" "batch.max_wait_ms = 10" "relay.poll_ms = 100")

# daemon_conf NAME [KEY = VALUE...]: $T/NAME.conf, deploy/allvarsd.conf.example
# with its endpoints changed to Kafka $KAFKA and database $DB (on $PGHOST, a
# socket directory or 127.0.0.1), the log on stderr, DAEMON_TEST_TIMINGS, this
# test's topics (TOPIC_PREFIX), and the test's own KEY = VALUE lines
# (deployed_conf). The role is the example's; the secrets its credentials.
daemon_conf() {
        local name=$1 lines=()
        shift
        lines+=("kafka.bootstrap.servers = $KAFKA"
                "database.conninfo = $(deployed_conninfo "" "$DB" "$PGHOST" "$PGPORT")"
                "log.target = stderr" "${DAEMON_TEST_TIMINGS[@]}")
        if [[ -n ${TOPIC_PREFIX:-} ]]; then
                local t
                for t in referrals:police.referrals.v1 outcomes:allvarssamtal.outcomes.v1 \
                        scheduling:allvarssamtal.scheduling.v1 feedback:police.feedback.v1 \
                        alerts:allvarssamtal.alerts.v1 dead_letter:allvarssamtal.deadletter.v1; do
                        lines+=("topics.${t%%:*} = $TOPIC_PREFIX${t#*:}")
                done
                lines+=("kafka.group.id = ${TOPIC_PREFIX}allvarsd")
        fi
        deployed_conf "$T/$name.conf" "${lines[@]}" "$@"
}

# daemon_migrate NAME: `allvarsd --migrate` as allvarsd_owner (deployed_migrate).
daemon_migrate() {
        deployed_migrate "$T/$1.conf"
}

# ctl NAME CMD [ARGS...]: allvarsctl CMD as the operator's role, with the
# endpoints of $T/NAME.conf (deployed_ctl).
ctl_as_operator() {
        local name=$1
        shift
        deployed_ctl "$T/$name.conf" "$@"
}

# daemon_start NAME: start allvarsd with $T/NAME.conf and its role's credentials
# ($CREDENTIALS_DIRECTORY, as LoadCredential= gives them); its log is $T/NAME.log.
declare -gA DAEMON_PIDS=()
daemon_start() {
        local name=$1 creds
        creds=$(deployed_credentials "$(deployed_conf_role "$T/$name.conf")") || return 1
        CREDENTIALS_DIRECTORY=$creds "$BUILD/allvarsd" --config "$T/$name.conf" >> "$T/$name.log" 2>&1 &
        DAEMON_PIDS[$name]=$!
}

daemon_pid() { echo "${DAEMON_PIDS[$1]}"; }

daemon_ready() {
        local name=$1
        wait_for "${2:-30}" grep -q 'ready: group' "$T/$name.log"
}

# daemon_stop NAME [SIGNAL]: signal it (TERM by default) and wait; prints the exit status.
daemon_stop() {
        local name=$1 sig=${2:-TERM} pid=${DAEMON_PIDS[$1]:-} rc=0
        [[ -z $pid ]] && return 0
        kill -"$sig" "$pid" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; echo "daemon $name did not stop" >&2; }
        wait "$pid" || rc=$?
        unset "DAEMON_PIDS[$name]"
        DAEMON_RC=$rc
        return 0
}

# teardown_daemons: stop what the test left running (SIGTERM, so that a
# sanitizer build reports leaks at exit) and fail when any daemon log holds a
# sanitizer report.
teardown_daemons() {
        local n rc=0
        for n in "${!DAEMON_PIDS[@]}"; do daemon_stop "$n" TERM; done
        mock_stop
        if [[ -n ${DB:-} ]]; then dropdb --if-exists --force "$DB" 2>/dev/null || true; fi
        if grep -l -E 'ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$T"/*.log 2>/dev/null; then
                grep -h -A30 -E 'ERROR: (Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$T"/*.log | head -60 >&2
                rc=1
        fi
        return $rc
}

# outcome_key TEXT: the Kafka key of a CaseOutcome in text format (docs/contract.md
# "Keys and ids"): its case_id, or the case id of its referral_id (examples/case-id).
outcome_key() {
        local key
        key=$(sed -n 's/.*case_id: *"\([^"]*\)".*/\1/p' <<<"$1" | head -n 1)
        [[ -n $key ]] || key=$("$ROOT/examples/case-id" "$(sed -n 's/.*referral_id: *"\([^"]*\)".*/\1/p' <<<"$1" | head -n 1)")
        echo "$key"
}

# gen ARGS...: produce generated referrals to $KAFKA (tests/tools/referral-gen.c).
gen() { "$BUILD/tests/referral-gen" --bootstrap "$KAFKA" --topic "${TOPIC_PREFIX:-}police.referrals.v1" "$@"; }

# real_kafka_topics: on a real broker ($ALLVARS_KAFKA_BOOTSTRAP), this test's own
# topics under a fresh prefix, so that tests sharing the broker do not meet.
real_kafka_topics() {
        KAFKA=$ALLVARS_KAFKA_BOOTSTRAP
        TOPIC_PREFIX=e2e$RANDOM$RANDOM.
        "$BUILD/tests/kafka-topics" "$KAFKA" create 4 "${TOPIC_PREFIX}police.referrals.v1" \
                "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" "${TOPIC_PREFIX}allvarssamtal.scheduling.v1" \
                "${TOPIC_PREFIX}police.feedback.v1" "${TOPIC_PREFIX}allvarssamtal.alerts.v1" \
                "${TOPIC_PREFIX}allvarssamtal.deadletter.v1"
}

# events TOPIC...: every event on this test's output topics, one readable line each.
events() {
        local args=() t
        for t in "$@"; do args+=(--topic "${TOPIC_PREFIX:-}$t"); done
        "$BUILD/allvarsctl" events --bootstrap "$KAFKA" --from-beginning --idle-exit 2000 "${args[@]}"
}

# events_personal TOPIC...: the same with personal data shown (allvarsctl events
# --show-personal-data, as the test's database superuser: audited).
events_personal() {
        local args=() t
        for t in "$@"; do args+=(--topic "${TOPIC_PREFIX:-}$t"); done
        "$BUILD/allvarsctl" events --bootstrap "$KAFKA" --from-beginning --idle-exit 2000 --show-personal-data \
                --database "host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB" "${args[@]}"
}

# relay_lock_elsewhere / relay_lock_elsewhere_end: the relay's advisory lock key
# held by a session of another database on the same server (${DB}_elsewhere,
# made here and dropped after), as another allvarsd database's relay would: it is
# not this database's lock. A database of the test's own, so that tests side by
# side do not wait for each other's lock.
relay_lock_elsewhere() {
        createdb "${DB}_elsewhere"
        psql -XAtq -d "${DB}_elsewhere" -c "SELECT pg_advisory_lock(x'616c6c7661727364'::bigint)" \
                -c "SELECT pg_sleep(60)" >/dev/null &
        RELAY_ELSEWHERE=$!
        wait_for 10 bash -c "[[ \$(psql -XAtq -d '${DB}_elsewhere' -c \"select count(*) from pg_locks
                where locktype = 'advisory' and granted
                  and database = (select oid from pg_database where datname = current_database())\") -eq 1 ]]"
}
relay_lock_elsewhere_end() {
        kill "$RELAY_ELSEWHERE" 2>/dev/null || true
        wait "$RELAY_ELSEWHERE" 2>/dev/null || true
        dropdb --force "${DB}_elsewhere"
}

# expected_ids FILE: the referral ids that must be decided (valid or duplicated), sorted, unique.
expected_ids() { awk '$1 == "valid" || $1 == "dup" { print $2 }' "$1" | sort -u; }
malformed_count() { awk '$1 == "malformed"' "$1" | wc -l; }

decided_count() { sql "select count(*) from allvarsd.decisions"; }

# check_exactly_once IDSFILE...: every expected referral decided exactly once, nothing else,
# and every malformed message dead-lettered once.
check_exactly_once() {
        cat "$@" | awk '$1 == "valid" || $1 == "dup" { print $2 }' | sort -u > "$T/expected"
        sql "select referral_id from allvarsd.decisions order by 1" | sort > "$T/decided"
        local want_bad
        want_bad=$(cat "$@" | awk '$1 == "malformed"' | wc -l)
        if ! diff -q "$T/expected" "$T/decided" >/dev/null; then
                echo "decided set differs from expected:" >&2
                diff "$T/expected" "$T/decided" | head -20 >&2
                return 1
        fi
        local dup
        # The primary key forbids two decision rows; the audit trail would show a
        # second decision (a DECIDED entry is made from the decisions row, or is a
        # row of audit: schemas/015_decided_from_decisions.sql).
        dup=$(sql "select count(*) from (select referral_id from allvarsd.audit_trail where action = 'DECIDED'
                   group by 1 having count(*) > 1) d")
        [[ $dup -eq 0 ]] || { echo "$dup referrals decided more than once" >&2; return 1; }
        local bad
        bad=$(sql "select count(*) from allvarsd.dead_letters where source_topic = '${TOPIC_PREFIX:-}police.referrals.v1'")
        [[ $bad -eq $want_bad ]] || { echo "dead letters: $bad, expected $want_bad" >&2; return 1; }
}

# daemon_backends NAME: the PostgreSQL backends (pid application_name) of daemon
# NAME, found through the client ports of its TCP sockets (its configuration
# must reach PostgreSQL over TCP: PGHOST=127.0.0.1 daemon_conf NAME).
daemon_backends() {
        local pid=${DAEMON_PIDS[$1]} inodes ports
        inodes=$(ls -l "/proc/$pid/fd" 2>/dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]$/\1/p' | paste -sd'|')
        [[ -n $inodes ]] || return 1
        ports=$(awk -v re="^($inodes)\$" 'NR > 1 && $10 ~ re { split($2, a, ":"); print a[2] }' /proc/net/tcp |
                while read -r h; do echo $((16#$h)); done | paste -sd,)
        [[ -n $ports ]] || return 1
        sql "select pid || ' ' || application_name from pg_stat_activity where client_port in ($ports)
             and client_addr = '127.0.0.1' and datname = current_database()"
}
