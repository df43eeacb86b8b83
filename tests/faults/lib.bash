# Shared helpers of the fault suite (bash; source it from tests/faults/*.sh, do
# not run it). Named .bash so that `tests/run faults`, which runs every
# tests/faults/*.sh, does not take it for a test.
#
# A scenario script:
#   source "$(dirname "$0")/lib.bash"
#   faults_begin kill9                  # fresh database, work dir, scenario name
#   faults_real_kafka | faults_mock_kafka
#   faults_conf a [EXTRA CONFIG LINES]; daemon_migrate a; daemon_start a; daemon_ready a
#   feed_start RATE                     # referral-gen runs in the background, dups + malformed
#   outcomes_start                      # outcome events for the decided cases, in the background
#   ... t0=$(now_s); fault; recovery_after WHAT "$t0" ...
#   feed_stop
#   faults_finish                       # converge, check, measure, record; sets FAULTS_FAILED
#   faults_exit                         # exit 1 if any check of the script failed
#
# Every scenario ends with the same checks against the expected set written by
# referral-gen (--ids-out): every valid referral decided exactly once (decisions
# and their DECIDED entries in the audit trail), every malformed message dead-lettered once, the
# outbox entirely published and nothing published that is not in it, one event
# id per (case, event name) on the topics, every decision's events there, and
# every case with a passed deadline or overdue assessment alerted once. With
# outcome events (outcomes_start): each applied exactly once or dead-lettered
# once, every case they drove in its final state, its feedback published once.
# "duplicate decisions" and "lost" count what a double decision or a lost
# referral leaves behind (faults_finish); tests/faults/90-mutants.sh shows that
# each count fires on a build broken on purpose.
# The figures go to tests/faults/results.json (see faults_record).

set -uo pipefail

FAULTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ALLVARS_ROOT=${ALLVARS_ROOT:-$(cd "$FAULTS_DIR/../.." && pwd)}
source "$ALLVARS_ROOT/tests/lib/pg.sh"
source "$ALLVARS_ROOT/tests/lib/kafka.sh"
source "$ALLVARS_ROOT/tests/lib/daemon.bash"

# The size of the run: `full` (tests/run faults, make faults) or `small` (the
# default tests/run, 8 to 11 minutes on two cores): the same scenarios, faults and
# checks, fewer repetitions of each fault and shorter referral-gen runs. Each
# script's own knobs (ALLVARS_FAULTS_KILLS...) override what the size chooses.
FAULTS_SIZE=${ALLVARS_FAULTS_SIZE:-full}
case $FAULTS_SIZE in
small | full) ;;
*)
        echo "faults: ALLVARS_FAULTS_SIZE must be small or full, not '$FAULTS_SIZE'" >&2
        exit 2
        ;;
esac
# by_size SMALL FULL: the value for this run's size.
by_size() { if [[ $FAULTS_SIZE == small ]]; then echo "$1"; else echo "$2"; fi; }
# Messages per referral-gen run of the stream (feed_start): feed_stop waits for
# the run in progress, so shorter runs end a small scenario sooner.
FAULTS_CHUNK=${ALLVARS_FAULTS_CHUNK:-$(by_size 600 1500)}

FAULTS_RESULTS=${ALLVARS_FAULTS_RESULTS:-$FAULTS_DIR/results.json}
FAULTS_LOGS=$ALLVARS_ROOT/build/test-logs/faults
FAULTS_BASE=$T                  # daemon.bash made it (mktemp -d)
FAULTS_FAILED=0                 # checks failed in this script, all scenarios
FAULTS_DBS=()
SCENARIO=
GEN_PIDS=()
FEED_PID=
# Referrals reported long ago, so that alerts are produced all through the faults:
# four days ago, every ELIGIBLE case arrives with its deadline (48 h) passed and
# its MISSED alert is raised in the deciding transaction; 40 h ago, the deadline
# is 8 h ahead and 75 % of it has passed, so the deadline watch (every second
# here) raises AT_RISK. Acute-risk referrals of both have their protective
# assessment overdue, also raised by the watch.
FAULTS_REPORTED_LATE=$(date -u -d '4 days ago' +%Y-%m-%dT%H:%M:%SZ)
FAULTS_REPORTED_AT_RISK=$(date -u -d '40 hours ago' +%Y-%m-%dT%H:%M:%SZ)

# A private copy of the binaries: the whole run uses one build even when the
# tree is rebuilt meanwhile (a relink makes a binary briefly unusable).
_faults_bins=(allvarsd allvarsctl tests/referral-gen tests/outcome-gen tests/mock-kafka tests/kafka-topics tests/notify-listen)
mkdir -p "$FAULTS_BASE/build/tests"
for _b in "${_faults_bins[@]}"; do
        for _i in 1 2 3 4 5 6 7 8 9 10; do
                [[ -x $BUILD/$_b ]] && cp "$BUILD/$_b" "$FAULTS_BASE/build/$_b" 2>/dev/null && break
                sleep 1
        done
        if [[ ! -x $FAULTS_BASE/build/$_b ]]; then
                echo "faults: $BUILD/$_b is missing (make tests-build)" >&2
                exit 2
        fi
done
BUILD=$FAULTS_BASE/build

for _tool in jq psql "$BUILD/allvarsd" "$BUILD/allvarsctl" "$BUILD/tests/referral-gen" "$BUILD/tests/mock-kafka"; do
        if ! command -v "$_tool" >/dev/null 2>&1 && [[ ! -x $_tool ]]; then
                echo "faults: $_tool is missing (make tests-build; jq and postgresql-client from make deps)" >&2
                exit 2
        fi
done
if [[ -z ${PGHOST:-} || -z ${ALLVARS_PG_DIR:-} ]]; then
        echo "faults: no PostgreSQL server in the environment (run through tests/run faults)" >&2
        exit 2
fi

say() { printf '%s %s\n' "$(date -u +%H:%M:%S.%N | cut -c1-12)" "$*"; }

# check_fail MESSAGE: a failed check; the scenario goes on so that every figure is reported.
check_fail() {
        say "CHECK FAILED [$SCENARIO]: $*"
        FAULTS_FAILED=$((FAULTS_FAILED + 1))
        SCENARIO_FAILED=$((SCENARIO_FAILED + 1))
}

# now_s: wall clock seconds with microseconds (for recovery times).
now_s() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

faults_cleanup() {
        local pid n
        touch "$T/feed.stop" "$T/outcomes.stop" 2>/dev/null
        for pid in "${GEN_PIDS[@]}"; do
                pkill -KILL -P "$pid" 2>/dev/null
                kill -KILL "$pid" 2>/dev/null
        done
        for n in "${!DAEMON_PIDS[@]}"; do daemon_stop "$n" KILL; done
        mock_stop
        if [[ -z ${ALLVARS_FAULTS_KEEP:-} ]]; then
                for n in "${FAULTS_DBS[@]}"; do dropdb --if-exists --force "$n" 2>/dev/null; done
        fi
        if ((FAULTS_FAILED == 0)) && [[ -z ${ALLVARS_FAULTS_KEEP:-} ]]; then rm -rf "$FAULTS_BASE"; fi
        return 0
}
allvars_cleanup_add faults_cleanup

# faults_begin NAME: a scenario with its own database and work directory ($T).
faults_begin() {
        SCENARIO=$1
        SCENARIO_FAILED=0
        RECOVERIES=()
        FAULTS_STRUCK=0
        T=$FAULTS_BASE/$SCENARIO
        mkdir -p "$T"
        KAFKA= TOPIC_PREFIX= MOCK_PID= MOCK_FD=
        if ! db_create; then
                say "faults: cannot create the scenario's database" >&2
                exit 2
        fi
        FAULTS_DBS+=("$DB")
        say "==== scenario $SCENARIO, $FAULTS_SIZE size (database $DB, files in $T)"
}

# faults_real_kafka [PREFIX]: this scenario's own topics on the runner's broker
# (those that exist already are kept).
faults_real_kafka() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || { echo "faults: no Kafka broker (ALLVARS_KAFKA_BOOTSTRAP)" >&2; exit 2; }
        KAFKA=$ALLVARS_KAFKA_BOOTSTRAP
        TOPIC_PREFIX=${1:-flt$RANDOM$RANDOM.}
        local t topics=()
        for t in police.referrals.v1 allvarssamtal.outcomes.v1 allvarssamtal.scheduling.v1 police.feedback.v1 \
                allvarssamtal.alerts.v1 allvarssamtal.deadletter.v1; do
                topics+=("$TOPIC_PREFIX$t")
        done
        "$BUILD/tests/kafka-topics" "$KAFKA" create 4 "${topics[@]}" >/dev/null || check_fail "cannot create the topics"
}

# fault_struck: count a fault of the scenario as it strikes (results.json's
# `faults`; a scenario in which none struck fails).
fault_struck() { FAULTS_STRUCK=$((FAULTS_STRUCK + 1)); }

# faults_mock_kafka [BROKERS]: librdkafka's mock cluster in a process of its own.
faults_mock_kafka() {
        TOPIC_PREFIX=
        mock_start "${1:-1}" || { check_fail "mock cluster did not start"; return 1; }
}

# faults_conf NAME [LINES...]: the daemon's configuration. PostgreSQL over TCP (the
# relay's backend is then found by its client port), the deadline watch every second.
faults_conf() {
        local name=$1
        shift
        PGHOST=127.0.0.1 daemon_conf "$name" "deadline_watch.interval_s = 1" "log.level = info" "$@"
}

# feed_start RATE [CHUNK]: a feeder in the background that streams referrals
# in chunks of CHUNK (default FAULTS_CHUNK: 1500, 600 in the small size)
# messages at RATE per second, one referral-gen run per chunk with its own ids
# file ($T/ids.N) and seed, until feed_stop.
# Duplicates 5 %, malformed messages 1 %. A fault can thus last as long as it
# needs to: the stream goes on until the scenario is done with its faults.
feed_start() {
        local rate=$1 chunk=${2:-$FAULTS_CHUNK}
        rm -f "$T/feed.stop"
        # Each scenario its own referrals (seeds from its name).
        FAULTS_SEED_BASE=$(($(printf '%s' "$SCENARIO" | cksum | cut -d' ' -f1) % 100000 * 1000))
        (
                n=0
                while [[ ! -e $T/feed.stop ]]; do
                        n=$((n + 1))
                        # Odd runs: deadlines passed before arrival; even runs: at risk.
                        reported=$FAULTS_REPORTED_LATE
                        ((n % 2 == 0)) && reported=$FAULTS_REPORTED_AT_RISK
                        gen --seed "$((FAULTS_SEED_BASE + n))" --count "$chunk" --rate "$rate" \
                                --duplicates 5 --malformed 10 --reported-at "$reported" \
                                --ids-out "$T/ids.$n" >"$T/gen.$n.out" 2>&1
                        rc=$?
                        ((rc == 0)) || echo "referral-gen run $n exited $rc: $(tail -n 2 "$T/gen.$n.out" | tr '\n' ' ')" >>"$T/feed.failed"
                done
        ) &
        FEED_PID=$!
        GEN_PIDS+=("$FEED_PID")
        wait_for 20 test -s "$T/ids.1" || check_fail "the feeder did not start"
        # Outcome events under the same faults (ALLVARS_FAULTS_OUTCOMES=0: none).
        [[ ${ALLVARS_FAULTS_OUTCOMES:-1} == 0 ]] || outcomes_start
}

# feed_stop: let the chunk in progress finish (every message delivered), stop;
# the outcome events too.
feed_stop() {
        touch "$T/feed.stop"
        wait "$FEED_PID"
        outcomes_stop
        GEN_PIDS=()
        if [[ -s $T/feed.failed ]]; then
                check_fail "$(cat "$T/feed.failed")"
        fi
        say "stream: $(cat "$T"/ids.* | wc -l) messages in $(ls "$T"/ids.* | wc -l) referral-gen runs"
}

# outcomes_start: outcome events in the background, as the booking service
# sends them (key = case id), for cases the daemon has decided: every second,
# up to FAULTS_OUTCOME_CASES (8) open ELIGIBLE cases not driven before each get
#   scheduled E1, held E2           valid: the case ends HELD, SCHEDULED and HELD feedback
#   declined E3                     illegal: HELD is closed (ILLEGAL_TRANSITION)
#   scheduled E1 again              a duplicate, byte for byte: ignored
# and one event for a case that does not exist (UNKNOWN_CASE). What must
# happen is written to $T/outcomes.expected ("applied|illegal|dup|unknown
# EVENT_ID CASE_ID") once outcome-gen has had every message delivered.
outcomes_start() {
        rm -f "$T/outcomes.stop" "$T/outcomes.failed"
        : >"$T/outcomes.expected"
        : >"$T/outcomes.driven"
        (
                round=0
                at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
                while [[ ! -e $T/outcomes.stop ]]; do
                        round=$((round + 1))
                        sleep 1
                        # Between PostgreSQL's restarts, like every client.
                        sql "select case_id from allvarsd.cases where state = 'ELIGIBLE' order by case_id" \
                                >"$T/outcomes.open" 2>/dev/null || continue
                        grep -vxF -f "$T/outcomes.driven" "$T/outcomes.open" | shuf -n "${FAULTS_OUTCOME_CASES:-8}" \
                                >"$T/outcomes.pick" || true
                        : >"$T/outcomes.lines"
                        : >"$T/outcomes.want"
                        k=0
                        while read -r c; do
                                k=$((k + 1))
                                e=o-$SCENARIO-$round-$k
                                printf 'scheduled %s-s %s\nheld %s-h %s\ndeclined %s-d %s\nscheduled %s-s %s\n' \
                                        "$e" "$c" "$e" "$c" "$e" "$c" "$e" "$c" >>"$T/outcomes.lines"
                                printf 'applied %s-s %s\napplied %s-h %s\nillegal %s-d %s\ndup %s-s %s\n' \
                                        "$e" "$c" "$e" "$c" "$e" "$c" "$e" "$c" >>"$T/outcomes.want"
                        done <"$T/outcomes.pick"
                        u=$(cat /proc/sys/kernel/random/uuid)
                        echo "held o-$SCENARIO-$round-unknown $u" >>"$T/outcomes.lines"
                        echo "unknown o-$SCENARIO-$round-unknown $u" >>"$T/outcomes.want"
                        if "$BUILD/tests/outcome-gen" --bootstrap "$KAFKA" --topic "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" \
                                --at "$at" <"$T/outcomes.lines" >"$T/outcomes.gen.out" 2>&1; then
                                cat "$T/outcomes.want" >>"$T/outcomes.expected"
                                cat "$T/outcomes.pick" >>"$T/outcomes.driven"
                        else
                                echo "outcome-gen round $round: $(tail -n 2 "$T/outcomes.gen.out" | tr '\n' ' ')" >>"$T/outcomes.failed"
                        fi
                done
        ) &
        OUTCOMES_PID=$!
        GEN_PIDS+=("$OUTCOMES_PID")
}

# outcomes_stop: let the round in progress finish, stop.
outcomes_stop() {
        [[ -n ${OUTCOMES_PID:-} ]] || return 0
        touch "$T/outcomes.stop"
        wait "$OUTCOMES_PID"
        OUTCOMES_PID=
        [[ -s $T/outcomes.failed ]] && check_fail "$(cat "$T/outcomes.failed")"
        say "outcomes: $(wc -l <"$T/outcomes.expected") expected results for $(wc -l <"$T/outcomes.driven") cases"
}

# outcomes_input_check: every acknowledged outcome message is on the outcomes
# topic (messages per key). A case whose messages are not all there leaves the
# expected set, noted with FAULTS_INPUT_LOSS_OK (the mock cluster's known loss),
# a failed check otherwise.
outcomes_input_check() {
        [[ -s $T/outcomes.expected ]] || return 0
        timeout 60 kcat -C -b "$KAFKA" -t "${TOPIC_PREFIX}allvarssamtal.outcomes.v1" -o beginning -e -q \
                -f '%k\n' 2>/dev/null | sort | uniq -c | awk '{ print $2, $1 }' >"$T/outcomes.on_topic"
        awk '{ n[$3]++ } END { for (k in n) print k, n[k] }' "$T/outcomes.expected" | sort >"$T/outcomes.sent_per_key"
        join -a1 -e 0 -o 0,1.2,2.2 "$T/outcomes.sent_per_key" <(sort "$T/outcomes.on_topic") |
                awk '$3 < $2 { print $1 }' >"$T/outcomes.not_on_topic"
        [[ -s $T/outcomes.not_on_topic ]] || return 0
        local msg
        msg="$(wc -l <"$T/outcomes.not_on_topic") cases' acknowledged outcome messages are not all on the topic (lost before the daemon)"
        if [[ -n ${FAULTS_INPUT_LOSS_OK:-} ]]; then
                say "NOTE [$SCENARIO]: $msg; those cases leave the expected set"
        else
                check_fail "$msg"
        fi
        grep -vF -f "$T/outcomes.not_on_topic" "$T/outcomes.expected" >"$T/outcomes.kept" || true
        mv "$T/outcomes.kept" "$T/outcomes.expected"
        grep -vxF -f "$T/outcomes.not_on_topic" "$T/outcomes.driven" >"$T/outcomes.kept" || true
        mv "$T/outcomes.kept" "$T/outcomes.driven"
}

outcome_want() { awk -v k="$1" '$1 == k' "$T/outcomes.expected" | wc -l; }
outcome_dead() {
        sql "select count(*) from allvarsd.dead_letters where source_topic = '${TOPIC_PREFIX}allvarssamtal.outcomes.v1'
             ${1:+and reason = '$1'}"
}
# outcomes_converged: every outcome applied or dead-lettered.
outcomes_converged() {
        [[ -s ${T}/outcomes.expected ]] || return 0
        [[ $(sql "select count(*) from allvarsd.outcome_events where event_id like 'o-%'") -ge $(outcome_want applied) ]] &&
                [[ $(outcome_dead) -ge $(($(outcome_want illegal) + $(outcome_want unknown))) ]]
}

# check_outcomes: each outcome applied exactly once or dead-lettered once, the
# cases they drove HELD, their feedback on the topic once. Sets OUTCOMES_LOST
# (applied events missing, cases not HELD) for "lost".
check_outcomes() {
        OUTCOMES_LOST=0
        [[ -s $T/outcomes.expected ]] || return 0
        local want have n
        awk '$1 == "applied" { print $2 }' "$T/outcomes.expected" | sort >"$T/outcomes.want_applied"
        sql "select event_id from allvarsd.outcome_events where event_id like 'o-%'" | sort >"$T/outcomes.applied"
        n=$(comm -23 "$T/outcomes.want_applied" "$T/outcomes.applied" | wc -l)
        OUTCOMES_LOST=$((OUTCOMES_LOST + n))
        ((n == 0)) || check_fail "lost: $n outcome events never applied, e.g. $(comm -23 "$T/outcomes.want_applied" "$T/outcomes.applied" | head -2 | tr '\n' ' ')"
        n=$(comm -13 "$T/outcomes.want_applied" "$T/outcomes.applied" | wc -l)
        ((n == 0)) || check_fail "$n outcome events applied that must not be (illegal, unknown), e.g. $(comm -13 "$T/outcomes.want_applied" "$T/outcomes.applied" | head -2 | tr '\n' ' ')"
        # Applied once: one audit row per applied event, by its actor.
        n=$(sql "select count(*) from allvarsd.audit where actor_name = 'outcome-gen'")
        want=$(wc -l <"$T/outcomes.want_applied")
        ((n == want)) || check_fail "outcome audit rows: $n, expected $want (one per applied event)"
        # Dead-lettered once, for the reason each deserves.
        for k in illegal:ILLEGAL_TRANSITION unknown:UNKNOWN_CASE; do
                want=$(outcome_want "${k%%:*}")
                have=$(outcome_dead "${k#*:}")
                ((have == want)) || check_fail "outcome dead letters ${k#*:}: $have, expected $want"
                ((have >= want)) || OUTCOMES_LOST=$((OUTCOMES_LOST + want - have))
        done
        have=$(outcome_dead)
        want=$(($(outcome_want illegal) + $(outcome_want unknown)))
        ((have == want)) || check_fail "outcome dead letters: $have in all, expected $want"
        # No case state lost: every driven case is HELD.
        sort -u "$T/outcomes.driven" >"$T/outcomes.cases"
        n=$(sql "select count(*) from allvarsd.cases where state = 'HELD' and closed_at is not null
                 and case_id in (select unnest(string_to_array('$(paste -sd, "$T/outcomes.cases")', ','))::uuid)")
        want=$(wc -l <"$T/outcomes.cases")
        ((n == want)) || { check_fail "lost: $((want - n)) of $want driven cases are not HELD"; OUTCOMES_LOST=$((OUTCOMES_LOST + want - n)); }
        # Their feedback once each (check_events: one id per case and status).
        sql "select case_id || ' PoliceFeedback/FEEDBACK_STATUS_' || s from allvarsd.cases,
               unnest(array['SCHEDULED', 'HELD']) s where feedback_requested
               and case_id in (select unnest(string_to_array('$(paste -sd, "$T/outcomes.cases")', ','))::uuid)" |
                sort >"$T/outcomes.want_feedback"
        n=$(comm -23 "$T/outcomes.want_feedback" "$T/have_events" | wc -l)
        ((n == 0)) || check_fail "$n SCHEDULED/HELD feedback events missing on the topic"
        say "outcomes: $(wc -l <"$T/outcomes.applied") applied, $(outcome_dead) dead-lettered, $want cases HELD," \
                "$(wc -l <"$T/outcomes.want_feedback") feedback events"
}

decided_now() { sql "select count(*) from allvarsd.decisions" 2>/dev/null || echo -1; }

# decisions_flowing SECONDS: let the stream run SECONDS, then until a decision
# is stored while we watch. A fault meant to strike a daemon at work must not
# strike an idle one: a link cut while no statement waits is noticed by the
# next statement's reply timeout, counted from that statement (README.md
# "Silent failures"). In CI on 2026-12-05 (faults/06 pg-partition-long) the
# statement that noticed began about 6 s into the partition, and the notice
# came after 18.2 s against a bound of 15.
decisions_flowing() {
        local before
        sleep "$1"
        before=$(decided_now)
        wait_for 60 decided_past "$before" || check_fail "no decision stored within 60 s of the stream's start"
}
decided_past() { (($(decided_now) > $1)); }

# relay_holder: the name of the instance (DAEMON_PIDS) whose relay holds the
# advisory lock (relay.h: RELAY_LOCK_KEY), found through its backend's client
# port (the daemons connect over TCP, faults_conf) and the socket inode in /proc.
relay_holder() {
        # A few tries: a single lookup found no holder once (the final rehearsal
        # of 2026-12-06, 6 s after both instances were ready, with the relay
        # active in one of them; which step came up empty is not known).
        local try
        for ((try = 0; try < 10; try++)); do
                relay_holder_once && return 0
                sleep 0.5
        done
        return 1
}
relay_holder_once() {
        local port hex inode n pid
        port=$(sql "select a.client_port from pg_locks l join pg_stat_activity a on a.pid = l.pid
                    where l.locktype = 'advisory' and l.granted and l.database = (select oid from pg_database
                    where datname = current_database()) and l.classid = $((0x616c6c76)) and l.objid = $((0x61727364))
                    and a.application_name = 'allvarsd-relay'" 2>/dev/null)
        [[ $port =~ ^[0-9]+$ ]] || return 1
        printf -v hex '%04X' "$port"
        inode=$(awk -v a="0100007F:$hex" '$2 == a { print $10; exit }' /proc/net/tcp)
        [[ -n $inode ]] || return 1
        for n in "${!DAEMON_PIDS[@]}"; do
                pid=${DAEMON_PIDS[$n]}
                # Not `ls | grep -q`: under pipefail, grep's early exit makes ls's SIGPIPE the pipeline's status.
                if grep -q "socket:\[$inode\]" < <(ls -l "/proc/$pid/fd" 2>/dev/null); then
                        echo "$n"
                        return 0
                fi
        done
        return 1
}

# assigned_partitions NAME: the referral partitions of the instance's last assignment, "0,2".
assigned_partitions() {
        grep 'Assigned' "$T/$1.log" | tail -n 1 | grep -o "${TOPIC_PREFIX//./\.}police\.referrals\.v1\[[0-9]*\]" |
                sed 's/.*\[\([0-9]*\)\]/\1/' | sort -un | paste -sd, -
}

# recovery_after WHAT T0 [T_END [LIMIT]]: the time to recover from a fault that
# struck at T0 and ended at T_END (default T0; both from now_s): from T0 to the
# first decision made after T_END (decisions.decided_at, the daemon's clock when
# it stored the batch, so a commit in flight when the fault struck does not
# count). With RECOVERY_PARTITIONS="0,2", only decisions of referrals from those
# partitions count. Waits for it (bounded) and adds it to RECOVERIES.
recovery_after() {
        local what=$1 t0=$2 t_end=${3:-$2} limit=${4:-90} deadline first r
        deadline=$((SECONDS + limit))
        while ((SECONDS < deadline)); do
                first=$(sql "select extract(epoch from min(d.decided_at)) from allvarsd.decisions d
                             join allvarsd.referrals r using (referral_id)
                             where d.decided_at > to_timestamp($t_end)
                             ${RECOVERY_PARTITIONS:+and r.source_partition in ($RECOVERY_PARTITIONS)}" 2>/dev/null)
                if [[ -n $first ]]; then
                        r=$(elapsed "$t0" "$first")
                        RECOVERIES+=("$r")
                        say "$what: first decision $r s after the fault struck (it lasted $(elapsed "$t0" "$t_end") s)"
                        return 0
                fi
                sleep 0.1
        done
        check_fail "$what: no decision within ${limit}s after the fault"
        RECOVERIES+=("$limit")
        return 1
}

# Expected figures from the ids files.
expected_valid() { cat "$T"/ids.* | awk '$1 == "valid" || $1 == "dup" { print $2 }' | sort -u; }

# Every outbox row is unsent: a delivered one moves to outbox_sent (schemas/004_outbox_sent.sql).
unsent() { sql "select count(*) from allvarsd.outbox"; }

# Cases that should have an alert and have none (deadline_watch.c's rules, with
# the default profile's 75 % for AT_RISK, which MISSED for the same deadline
# makes moot: a clock stepped back past it, 08-clock-step.sh).
missing_alerts() {
        sql "select count(*) from allvarsd.cases c where c.closed_at is null and (
               (c.state = 'ELIGIBLE' and c.deadline > now()
                and c.deadline - c.limit_seconds * 0.25 * interval '1 second' <= now()
                and not exists (select 1 from allvarsd.case_alerts a where a.case_id = c.case_id
                                and a.kind in ('AT_RISK', 'MISSED') and a.due_at = c.deadline))
            or (c.deadline <= now() and (c.state = 'ELIGIBLE' or (c.state = 'SCHEDULED'
                  and c.deadline_kind is distinct from 'SUMMONS'))
                and not exists (select 1 from allvarsd.case_alerts a where a.case_id = c.case_id
                                and a.kind = 'MISSED' and a.due_at = c.deadline))
            or (c.awaiting_assessment and c.protective_assessment_due <= now()
                and not exists (select 1 from allvarsd.case_alerts a where a.case_id = c.case_id
                                and a.kind = 'PROTECTIVE_ASSESSMENT_OVERDUE'
                                and a.due_at = c.protective_assessment_due)))"
}

# converged: every expected referral decided, every malformed one dead-lettered,
# no alert due unraised, the outbox published.
converged() {
        local want=$1 want_bad=$2
        [[ $(decided_now) -ge $want ]] &&
                [[ $(sql "select count(*) from allvarsd.dead_letters where source_topic = '${TOPIC_PREFIX}police.referrals.v1'") -ge $want_bad ]] &&
                [[ $(missing_alerts) -eq 0 ]] && [[ $(unsent) -eq 0 ]] && outcomes_converged
}

# faults_finish [LIMIT]: wait for the daemons to converge (bounded), then check
# everything against the expected set and record the scenario's figures.
faults_finish() {
        local limit=${1:-120} want want_bad t0=$SECONDS i
        # The input first: every message the generator had acknowledged must be on
        # the referrals topic. One that is not was lost before the daemon could see
        # it (by the producer or the broker): a failed check, but not counted as
        # lost by the daemon, and taken out of the expected set.
        for i in 1 2 3 4 5; do
                timeout 60 kcat -C -b "$KAFKA" -t "${TOPIC_PREFIX}police.referrals.v1" -o beginning -e -q \
                        -f '%k\n' 2>"$T/input.err" | sort -u >"$T/input_keys" && [[ -s $T/input_keys ]] && break
                sleep 1         # an error injected into the mock cluster and not consumed yet
        done
        cat "$T"/ids.* | awk '{ print $2 }' | sort -u >"$T/sent_keys"
        comm -23 "$T/sent_keys" "$T/input_keys" >"$T/not_on_topic"
        if [[ -s $T/not_on_topic ]]; then
                local msg
                msg="$(wc -l <"$T/not_on_topic") acknowledged messages are not on the referrals topic (lost before the daemon; not counted as lost): $(head -3 "$T/not_on_topic" | tr '\n' ' ')"
                # FAULTS_INPUT_LOSS_OK: the mock cluster's known loss (03-kafka.sh).
                if [[ -n ${FAULTS_INPUT_LOSS_OK:-} ]]; then
                        say "NOTE [$SCENARIO]: $msg"
                else
                        check_fail "$msg"
                fi
        fi
        outcomes_input_check
        expected_valid | comm -23 - "$T/not_on_topic" >"$T/expected"
        want=$(wc -l <"$T/expected")
        want_bad=$(cat "$T"/ids.* | awk '$1 == "malformed" { print $2 }' | sort | comm -23 - "$T/not_on_topic" | wc -l)
        if ! wait_for "$limit" converged "$want" "$want_bad"; then
                check_fail "not converged after ${limit}s: decided $(decided_now)/$want," \
                        "unsent outbox rows $(unsent), cases missing an alert $(missing_alerts)"
        else
                say "converged in $((SECONDS - t0)) s after the stream"
        fi
        # Late duplicates of a delivery would land now: give the relay a moment.
        sleep 1

        local sent decided dead dup_dec lost published deliveries dup_del unexpected
        sent=$(cat "$T"/ids.* | wc -l)
        sql "select referral_id from allvarsd.decisions order by 1" | sort >"$T/decided"
        decided=$(wc -l <"$T/decided")
        lost=$(comm -23 "$T/expected" "$T/decided" | wc -l)
        unexpected=$(comm -13 "$T/expected" "$T/decided" | wc -l)
        ((lost == 0)) || check_fail "lost: $lost referrals not decided, e.g. $(comm -23 "$T/expected" "$T/decided" | head -3 | tr '\n' ' ')"
        ((unexpected == 0)) || check_fail "$unexpected decisions for referrals never sent"
        local audited
        # A decision's audit entry is its decisions row, shown by audit_trail
        # (schemas/015_decided_from_decisions.sql): once each, none without a decision.
        audited=$(sql "select count(*) from allvarsd.audit_trail a where action = 'DECIDED'
                       and exists (select 1 from allvarsd.decisions d where d.referral_id = a.referral_id)")
        ((audited == decided)) || check_fail "$audited DECIDED entries in the audit trail for $decided decisions"
        dead=$(sql "select count(*) from allvarsd.dead_letters where source_topic = '${TOPIC_PREFIX}police.referrals.v1'")
        if ((dead < want_bad)); then
                lost=$((lost + want_bad - dead))
                check_fail "lost: dead letters: $dead, expected $want_bad"
        elif ((dead > want_bad)); then
                check_fail "dead letters: $dead, expected $want_bad (a valid referral dead-lettered?)"
        fi

        check_events
        published=$EVENTS_DISTINCT
        deliveries=$EVENTS_MESSAGES
        dup_del=$((deliveries - published))
        check_outcomes

        # Duplicate decisions: what deciding a referral twice would leave behind,
        # whichever guard failed (the primary keys make a second decisions row
        # impossible, so that row is not what to count): two ASSESSED feedback
        # events or two scheduling requests for one case under different ids on
        # the topics, two cases for one referral, a decision changed after the
        # fact (decided later than its referral arrived in the same transaction,
        # or not the outcome its DECIDED entry in the audit trail shows, or that
        # entry not exactly once), or a decision's events stored twice (the
        # referral batch makes them once, only for a referral its insert has just
        # created: schemas/012_outbox_once.sql; two rows of one event id, sent or
        # not, are a second decision's, since the DECIDED entry is made from the
        # one decisions row: schemas/015_decided_from_decisions.sql). Counted by case.
        awk '$3 == "PoliceFeedback/FEEDBACK_STATUS_ASSESSED" || $3 == "SchedulingRequest" { print $1, $3 }' \
                "$T/event_names" | sort | uniq -d | cut -d' ' -f1 | sort -u >"$T/twice.events"
        sql "select case_id from allvarsd.cases where referral_id in
               (select referral_id from allvarsd.cases group by 1 having count(*) > 1)" | sort -u >"$T/twice.cases"
        sql "select r.case_id from allvarsd.referrals r join allvarsd.decisions d using (referral_id)
               left join (select referral_id, count(*) n, min(after) after from allvarsd.audit_trail
                           where action = 'DECIDED' group by 1) a using (referral_id)
              where d.decided_at <> r.received_at or a.n is distinct from 1
                 or a.after not like 'outcome=' || d.outcome || ';%'" | sort -u >"$T/twice.changed"
        sql "select distinct key from (select key, event_id from allvarsd.outbox_sent where not once
                                       union all
                                       select key, event_id from allvarsd.outbox where not once) e
              group by key, event_id having count(*) > 1" | sort -u >"$T/twice.stored"
        sort -u "$T/twice.events" "$T/twice.cases" "$T/twice.changed" "$T/twice.stored" >"$T/decided_twice"
        dup_dec=$(wc -l <"$T/decided_twice")
        ((dup_dec == 0)) || check_fail "duplicate decisions: $dup_dec cases decided twice ($(wc -l <"$T/twice.events") with" \
                "two ASSESSED or scheduling events, $(wc -l <"$T/twice.cases") with two cases, $(wc -l <"$T/twice.changed")" \
                "with the decision changed after the fact, $(wc -l <"$T/twice.stored") with its events stored twice)," \
                "e.g. $(head -3 "$T/decided_twice" | tr '\n' ' ')"
        # Lost also counts what a lost referral or outcome leaves behind past its
        # decision: a decision whose events never reached the topics, an outcome
        # neither applied nor dead-lettered, a driven case not in its final state.
        lost=$((lost + EVENTS_LOST_CASES + OUTCOMES_LOST))
        ((EVENTS_LOST_CASES == 0)) || check_fail "lost: $EVENTS_LOST_CASES decided cases without their events on the topics"

        ((FAULTS_STRUCK > 0)) || check_fail "no fault struck in this scenario"
        local rec
        rec=$(printf '%s\n' "${RECOVERIES[@]:-0}" | sort -g | tail -n 1)
        say "figures: faults=$FAULTS_STRUCK sent=$sent decided=$decided dead_lettered=$dead duplicate_decisions=$dup_dec lost=$lost" \
                "events_published=$published duplicate_deliveries=$dup_del recovery_s=$rec (each: ${RECOVERIES[*]:-none})"
        faults_record "$SCENARIO" "$sent" "$decided" "$dead" "$dup_dec" "$lost" "$published" "$dup_del" "$rec"
        if ((SCENARIO_FAILED > 0)); then
                say "==== scenario $SCENARIO FAILED ($SCENARIO_FAILED checks)"
                faults_keep_logs
        else
                say "==== scenario $SCENARIO passed"
        fi
}

# check_events: the output topics against the outbox. Sets EVENTS_MESSAGES (all
# messages read) and EVENTS_DISTINCT (distinct ce_id).
check_events() {
        events police.feedback.v1 allvarssamtal.scheduling.v1 allvarssamtal.alerts.v1 \
                allvarssamtal.deadletter.v1 >"$T/events" 2>"$T/events.err"
        EVENTS_MESSAGES=$(wc -l <"$T/events")
        # key ce_id name: the name is what makes an event unique within its case
        # (events.h): the feedback status, the alert kind and due time (or, for
        # EVENT_UNDELIVERABLE, the event it replaces), the dead letter's source
        # offset; one scheduling request per case here.
        sed -n 's/^[^ ]* key=\([^ ]*\) ce_id=\([^ ]*\) ce_type=se\.allvarssamtal\.v1\.\([A-Za-z]*\) \(.*\)$/\1 \2 \3 \4/p' \
                "$T/events" | awk '{
                        key = $1; id = $2; type = $3; rest = $0; name = type
                        if (type == "PoliceFeedback" && match(rest, /status: [A-Z_]+/)) name = name "/" substr(rest, RSTART + 8, RLENGTH - 8)
                        if (type == "DeadlineAlert") {
                                if (match(rest, /kind: [A-Z_]+/)) name = name "/" substr(rest, RSTART + 6, RLENGTH - 6)
                                if (match(rest, /due_at: [^ ,}]+/)) name = name "/" substr(rest, RSTART + 8, RLENGTH - 8)
                                if (match(rest, /undeliverable_event_id: "[^"]+/)) name = name "/" substr(rest, RSTART + 25, RLENGTH - 25)
                        }
                        if (type == "DeadLetter" && match(rest, /source_offset: [0-9]+/)) name = name "/" substr(rest, RSTART + 15, RLENGTH - 15)
                        print key, id, name
                }' | sort -u >"$T/event_names"
        cut -d' ' -f2 "$T/event_names" | sort -u >"$T/published_ids"
        EVENTS_DISTINCT=$(wc -l <"$T/published_ids")
        local parsed
        parsed=$(sed -n 's/^[^ ]* key=[^ ]* ce_id=\([^ ]*\) .*/\1/p' "$T/events" | sort -u | wc -l)
        ((parsed == EVENTS_DISTINCT)) || check_fail "some events could not be parsed ($parsed ids, $EVENTS_DISTINCT named)"

        # Every event written published, nothing published that was not written
        # (the delivered ones in outbox_sent, any left in the outbox).
        sql "select event_id from allvarsd.outbox_sent union all select event_id from allvarsd.outbox" |
                sort >"$T/outbox_ids"
        local missing extra
        missing=$(comm -23 "$T/outbox_ids" "$T/published_ids" | wc -l)
        extra=$(comm -13 "$T/outbox_ids" "$T/published_ids" | wc -l)
        ((missing == 0)) || check_fail "$missing outbox events never published, e.g. $(comm -23 "$T/outbox_ids" "$T/published_ids" | head -2 | tr '\n' ' ')"
        ((extra == 0)) || check_fail "$extra published events not in the outbox"
        # One event id per (case, event name); one name per event id.
        local two_ids two_names
        two_ids=$(awk '{ print $1, $3 }' "$T/event_names" | sort | uniq -d | wc -l)
        two_names=$(awk '{ print $2 }' "$T/event_names" | sort | uniq -d | wc -l)
        ((two_ids == 0)) || check_fail "$two_ids (case, event) pairs published under two event ids, e.g. $(awk '{ print $1, $3 }' "$T/event_names" | sort | uniq -d | head -2 | tr '\n' ' ')"
        ((two_names == 0)) || check_fail "$two_names event ids carry two different events"

        # Every decision's events: RECEIVED and ASSESSED when feedback was asked
        # for, a scheduling request for every ELIGIBLE decision, unless the
        # brokers refused that request for good and it was dead-lettered with an
        # alert in its place (outbox_undeliverable, 11-topic-refuses.sh checks those).
        sql "select r.case_id || ' PoliceFeedback/FEEDBACK_STATUS_RECEIVED' from allvarsd.referrals r
               join allvarsd.decisions d using (referral_id) where r.feedback_requested
             union all
             select r.case_id || ' PoliceFeedback/FEEDBACK_STATUS_ASSESSED' from allvarsd.referrals r
               join allvarsd.decisions d using (referral_id) where r.feedback_requested
             union all
             select r.case_id || ' SchedulingRequest' from allvarsd.referrals r
               join allvarsd.decisions d using (referral_id) where d.outcome = 'ELIGIBLE'
               and not exists (select 1 from allvarsd.outbox_undeliverable u
                                where u.key = r.case_id::text and u.ce_type like '%.SchedulingRequest')" |
                sort >"$T/want_events"
        awk '{ print $1, $3 }' "$T/event_names" | sort -u >"$T/have_events"
        missing=$(comm -23 "$T/want_events" "$T/have_events" | wc -l)
        EVENTS_LOST_CASES=$(comm -23 "$T/want_events" "$T/have_events" | cut -d' ' -f1 | sort -u | wc -l)
        ((missing == 0)) || check_fail "$missing decision events missing on the topics, e.g. $(comm -23 "$T/want_events" "$T/have_events" | head -2 | tr '\n' ' ')"
        # Every alert raised is on the alerts topic (no case missing its alerts;
        # missing_alerts() checked that every due alert was raised).
        sql "select case_id || ' DeadlineAlert/ALERT_KIND_' || kind from allvarsd.case_alerts" | sort -u >"$T/want_alerts"
        awk '$3 ~ /^DeadlineAlert/ { split($3, p, "/"); print $1, p[1] "/" p[2] }' "$T/event_names" | sort -u >"$T/have_alerts"
        missing=$(comm -23 "$T/want_alerts" "$T/have_alerts" | wc -l)
        ((missing == 0)) || check_fail "$missing raised alerts not on the alerts topic"
        local due
        due=$(missing_alerts)
        ((due == 0)) || check_fail "$due cases missing an alert that is due"
        local alerts
        alerts=$(wc -l <"$T/want_alerts")
        ((alerts > 0)) || check_fail "no alert at all: the scenario should produce some"
        say "events: $EVENTS_MESSAGES messages, $EVENTS_DISTINCT distinct ids, outbox $(wc -l <"$T/outbox_ids"), alerts $alerts"
}

# faults_record SCENARIO SENT DECIDED DEAD DUP_DECISIONS LOST PUBLISHED DUP_DELIVERIES RECOVERY_S:
# replace this scenario's object in results.json (a JSON list), or append it;
# with the run's size and the number of faults that struck (FAULTS_STRUCK).
faults_record() {
        local obj tmp
        obj=$(jq -n --arg scenario "$1" --arg size "$FAULTS_SIZE" --argjson faults "${FAULTS_STRUCK:-0}" \
                --argjson sent "$2" --argjson decided "$3" --argjson dead_lettered "$4" \
                --argjson duplicate_decisions "$5" --argjson lost "$6" --argjson events_published "$7" \
                --argjson duplicate_deliveries "$8" --argjson recovery_s "$9" \
                '{scenario: $scenario, size: $size, faults: $faults, sent: $sent, decided: $decided, dead_lettered: $dead_lettered,
                  duplicate_decisions: $duplicate_decisions, lost: $lost, events_published: $events_published,
                  duplicate_deliveries: $duplicate_deliveries, recovery_s: $recovery_s}') || {
                check_fail "cannot build the JSON figures"
                return 1
        }
        tmp=$(mktemp "$FAULTS_DIR/.results.XXXXXX") || return 1
        if [[ -s $FAULTS_RESULTS ]] && jq -e 'type == "array"' "$FAULTS_RESULTS" >/dev/null 2>&1; then
                jq --argjson o "$obj" 'map(select(.scenario != $o.scenario)) + [$o]' "$FAULTS_RESULTS" >"$tmp"
        else
                jq -n --argjson o "$obj" '[$o]' >"$tmp"
        fi && mv "$tmp" "$FAULTS_RESULTS" || rm -f "$tmp"
}

# notice_watch PATTERN: from now on, note in $T/noticed when the daemon's log
# ($T/a.log) first has a line matching PATTERN; notice_s T0 prints the seconds
# from T0 to it ("" when none). NOTICE_PID is the watcher (stopped with the
# generators, or by the caller). faults_record_extra KEY VALUE adds KEY (a
# number) to this scenario's row in results.json.
notice_watch() {
        local pattern=$1 from
        from=$(wc -l <"$T/a.log")
        rm -f "$T/noticed"
        (
                while sleep 0.1; do
                        # Not `tail | grep -q`: under pipefail, once grep stops at its match the
                        # rest of tail's output kills tail (SIGPIPE, 141) and the pipeline fails;
                        # with more than a pipe's 64 KiB after the match it always did.
                        if grep -q -- "$pattern" < <(tail -n +"$((from + 1))" "$T/a.log"); then
                                now_s >"$T/noticed"
                                exit 0
                        fi
                done
        ) &
        NOTICE_PID=$!
        GEN_PIDS+=("$NOTICE_PID")
}

notice_s() {
        [[ -s $T/noticed ]] && elapsed "$1" "$(cat "$T/noticed")"
}

faults_record_extra() {
        local tmp
        tmp=$(mktemp "$FAULTS_DIR/.results.XXXXXX") || return 1
        jq --arg s "$SCENARIO" --arg k "$1" --argjson v "$2" 'map(if .scenario == $s then .[$k] = $v else . end)' \
                "$FAULTS_RESULTS" >"$tmp" && mv "$tmp" "$FAULTS_RESULTS" || rm -f "$tmp"
}

# faults_reset_results: the first script of a run starts a new results.json.
faults_reset_results() {
        echo '[]' >"$FAULTS_RESULTS"
}

# faults_keep_logs: the scenario's files next to the runner's logs.
faults_keep_logs() {
        local dest=$FAULTS_LOGS/$SCENARIO
        mkdir -p "$dest" && cp -r "$T"/. "$dest"/ 2>/dev/null
        say "files kept in ${dest#"$ALLVARS_ROOT"/}"
}

# The daemons' logs, when something went wrong, for the runner's tail.
faults_show_daemon_logs() {
        local f
        for f in "$T"/*.log; do
                [[ -f $f ]] || continue
                # Errors first (the outage lines), then the last warnings: a
                # stream's dead letters would push the errors out of a plain tail.
                echo "--- $(basename "$f"): errors (first 8) ---"
                grep -E '^(err|crit|alert|emerg)' "$f" | head -n 8
                echo "--- $(basename "$f"): warnings and errors (last 8) ---"
                grep -E '^(warning|err|crit|alert|emerg)' "$f" | tail -n 8
        done
}

# faults_stop_all: stop this scenario's daemons (TERM), generators and mock cluster.
faults_stop_all() {
        local n
        for n in "${!DAEMON_PIDS[@]}"; do
                daemon_stop "$n" TERM
                ((DAEMON_RC == 0)) || check_fail "daemon $n exited $DAEMON_RC on SIGTERM"
        done
        mock_stop
        if ((SCENARIO_FAILED > 0)); then faults_show_daemon_logs; fi
}

faults_exit() {
        if ((FAULTS_FAILED > 0)); then
                say "$FAULTS_FAILED checks failed"
                exit 1
        fi
        exit 0
}

# The first scenario script of a run starts a new results.json.
_faults_first=$(compgen -G "$FAULTS_DIR/*.sh" | sort | head -n 1)
if [[ -n $_faults_first && $(realpath "$0") == $(realpath "$_faults_first") ]]; then
        faults_reset_results
fi
