#!/usr/bin/env bash
# The README's first command: allvarsd on an embedded default.
# Installs what is missing, builds, starts a private PostgreSQL and the daemon
# with librdkafka's in-process Kafka, feeds the sample referrals in examples/,
# and shows the decisions and the events that come out. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing what is missing and building"
make -s deps
make -s all

# shellcheck source=../tests/lib/pg.sh
source tests/lib/pg.sh
WORK=$(mktemp -d /tmp/allvarsd-demo.XXXXXX)
DAEMON_PID=
cleanup() {
        [[ -n $DAEMON_PID ]] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true
        pg_stop || true
        rm -rf "$WORK"
}
trap cleanup EXIT

say "Starting a private PostgreSQL"
pg_start

# As deployed (README "Running it with systemd"; tests/lib/deployed.bash): the superuser
# only creates the database and runs deploy/roles.sql; allvarsd_owner migrates;
# the daemon runs as the example configuration's role (allvarsd_runtime) with
# its secrets as credentials; allvarsctl as the operator's role.
# allvarsctl runs as the operator's role (schemas/006_operator_role.sql): the
# runtime role no longer reads the audit trail.
export ALLVARS_CTL_ROLE=${ALLVARS_CTL_ROLE:-allvarsd_operator}
# shellcheck source=../tests/lib/deployed.bash
source tests/lib/deployed.bash
BUILD=$ROOT/build
T=$WORK DEPLOYED_SECRETS=$WORK/secrets

say "The database, as the DBA makes it: createdb, then deploy/roles.sql in it"
deployed_db allvarsd
echo "  roles: $(psql -XAtq -d allvarsd -c "select string_agg(rolname, ', ' order by rolname) from pg_roles where rolname like 'allvarsd%'")"

# The sample referrals were reported in March 2025: the demo runs on the
# daemon's settable clock, starting on 2025-03-10 at 12:00 UTC.
echo 2025-03-10T12:00:00Z > "$WORK/clock"
# deploy/allvarsd.conf.example with the demo's endpoints: the embedded Kafka (an
# in-process mock cluster, not for production) and the private PostgreSQL.
deployed_conf "$WORK/allvarsd.conf" "kafka.embedded = true" "#kafka.bootstrap.servers" \
        "database.conninfo = $(deployed_conninfo "" allvarsd "$PGHOST" "$PGPORT")" \
        "log.target = stderr" "deadline_watch.interval_s = 1" "clock.file = $WORK/clock"
echo "  $WORK/allvarsd.conf: deploy/allvarsd.conf.example with these lines changed:"
diff deploy/allvarsd.conf.example "$WORK/allvarsd.conf" | sed -n 's/^> /    /p' || true
CTL=(build/allvarsctl)
ctl() { local c=$1; shift; deployed_ctl "$WORK/allvarsd.conf" "$c" "$@"; }

say "Creating the schema (allvarsd --migrate, as allvarsd_owner)"
deployed_migrate "$WORK/allvarsd.conf"

say "Starting allvarsd (as $(deployed_conf_role "$WORK/allvarsd.conf"), the secrets from \$CREDENTIALS_DIRECTORY)"
CREDS=$(deployed_credentials "$(deployed_conf_role "$WORK/allvarsd.conf")")
: > "$WORK/allvarsd.log"
CREDENTIALS_DIRECTORY=$CREDS build/allvarsd --config "$WORK/allvarsd.conf" 2>> "$WORK/allvarsd.log" &
DAEMON_PID=$!
BOOTSTRAP=
for _ in $(seq 100); do
        BOOTSTRAP=$(sed -n 's/.*BOOTSTRAP=\([^ ]*\).*/\1/p' "$WORK/allvarsd.log" | head -1)
        [[ -n $BOOTSTRAP ]] && grep -q 'ready' "$WORK/allvarsd.log" && break
        kill -0 "$DAEMON_PID" || { cat "$WORK/allvarsd.log"; exit 1; }
        sleep 0.1
done
grep -m1 EMBEDDED "$WORK/allvarsd.log" || true
echo "Kafka (embedded): $BOOTSTRAP"

say "Producing the sample referrals from examples/referrals/"
n=0
for f in examples/referrals/*.txtpb; do
        protoc --proto_path=proto --proto_path=/usr/include --encode=allvarssamtal.v1.PoliceReferral \
                allvarssamtal/v1/referral.proto < "$f" > "$WORK/$(basename "$f" .txtpb).bin"
        id=$(sed -n 's/^referral_id: *"\(.*\)"/\1/p' "$f")
        kcat -P -b "$BOOTSTRAP" -t police.referrals.v1 -k "$id" "$WORK/$(basename "$f" .txtpb).bin"
        echo "  $id  ($(basename "$f"))"
        n=$((n + 1))
done
# One message that is not a referral at all, to show the dead-letter path.
printf 'this is not a protobuf referral' > "$WORK/garbage.bin"
kcat -P -b "$BOOTSTRAP" -t police.referrals.v1 -k garbage "$WORK/garbage.bin"
echo "  (and one malformed message)"

wait_count() { # SQL EXPECTED: wait (bounded) until the query's count reaches EXPECTED
        for _ in $(seq 150); do
                [[ $(psql -XAtq -d allvarsd -c "$1") -ge $2 ]] && return 0
                sleep 0.1
        done
        echo "timed out waiting for: $1 >= $2" >&2
}
wait_count "select count(*) from allvarsd.decisions" "$n"

say "Decisions on $(cat "$WORK/clock") (recommendations; social workers decide)"
psql -Xq -d allvarsd -P pager=off -c "
select r.referral_id, d.outcome, d.age, d.reasons, d.flags,
       to_char(d.deadline at time zone 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"') as deadline, d.deadline_kind
  from allvarsd.decisions d join allvarsd.referrals r using (referral_id)
 order by r.referral_id"

say "One decision explained, as a social worker sees it"
ctl case PM-2025-0310-000123 | sed -n '1,/^Audit/p'

say "What happens next: outcome events from the booking service, social workers and the police"
# The key of every outcome is its case id (docs/contract.md "Keys and ids"): the case_id
# the event names, or the one computed from the police's referral id
# (examples/case-id), so that a case's events stay on one partition, in order.
outcome_key() {
        local cid
        cid=$(sed -n 's/^case_id: *"\(.*\)"/\1/p' "$1")
        [[ -n $cid ]] || cid=$(examples/case-id "$(sed -n 's/^referral_id: *"\(.*\)"/\1/p' "$1")")
        echo "$cid"
}
m=0
for f in $(for f in examples/outcomes/*.txtpb; do
                echo "$(sed -n 's/^occurred_at { seconds: \([0-9]*\).*/\1/p' "$f") $f"
           done | sort -n | cut -d' ' -f2); do
        protoc --proto_path=proto --proto_path=/usr/include --encode=allvarssamtal.v1.CaseOutcome \
                allvarssamtal/v1/outcome.proto < "$f" > "$WORK/outcome.bin"
        kcat -P -b "$BOOTSTRAP" -t allvarssamtal.outcomes.v1 -k "$(outcome_key "$f")" "$WORK/outcome.bin"
        echo "  $(basename "$f" .txtpb)  (key $(outcome_key "$f"))"
        m=$((m + 1))
done
# And one deliberately wrong: an outcome keyed by the police's referral id instead
# of the case id. It could land on another partition than its case's events and
# overtake them, so it is refused on its first message (WRONG_KEY), not applied.
printf '%s\n' 'event_id: "demo-wrong-key-1" referral_id: "PM-2025-0310-000123"' \
        'occurred_at { seconds: 1741615200 } actor { kind: ACTOR_KIND_POLICE name: "LPO Hisingen" }' \
        'contact_details_supplied { guardians { name: "Sara Exempelsson" phone: "070-123 45 67" } }' |
        protoc --proto_path=proto --proto_path=/usr/include --encode=allvarssamtal.v1.CaseOutcome \
                allvarssamtal/v1/outcome.proto > "$WORK/wrong-key.bin"
kcat -P -b "$BOOTSTRAP" -t allvarssamtal.outcomes.v1 -k PM-2025-0310-000123 "$WORK/wrong-key.bin"
echo "  (and one keyed by the referral id instead of the case id: a dead letter WRONG_KEY)"
m=$((m + 1))
wait_count "select (select count(*) from allvarsd.outcome_events)
                 + (select count(*) from allvarsd.dead_letters where source_topic like '%outcomes%')" "$m"

say "Five days later (clock moved to 2025-03-15T12:00:00Z): the deadline watch raises what was missed"
echo 2025-03-15T12:00:00Z > "$WORK/clock"
sleep 3
ctl cases

say "The audit trail of one case"
ctl case PM-2025-0310-000123 | sed -n '/^Audit/,$p'

say "The follow-up report of the demo data (allvarsctl report: counts of 1-4 are shown as <5)"
ctl report --from 2025-03-01 --to 2025-03-31 --format text | sed -n '1,/^  Reasons/p' | head -20
ctl report --from 2025-03-01 --to 2025-03-31 --format html --output "$ROOT/examples/report-sample.html"
echo "  The whole report, with its charts: examples/report-sample.html (one self-contained file)"

say "Dead letters"
echo "Two, both on purpose: the malformed referral (UNDECODABLE) and the outcome keyed by"
echo "the referral id instead of the case id (WRONG_KEY). Each names the rejected message's"
echo "key and ids, so that its producer can find it; the payload stays in the database."
ctl dead-letters list

say "Events published (the first 200 characters of each)"
sleep 1
"${CTL[@]}" events --bootstrap "$BOOTSTRAP" --from-beginning --idle-exit 1500 | cut -c1-200
echo
"${CTL[@]}" events --bootstrap "$BOOTSTRAP" --from-beginning --idle-exit 1500 \
        | awk '{split($1, t, "/"); n[t[1]]++} END {for (k in n) printf "  %-32s %d events\n", k, n[k]}'

say "What the booking service is to do: the last scheduling message of each case"
echo "(the highest revision wins: a request, an updated request, or a withdrawal with its reason)"
"${CTL[@]}" events --bootstrap "$BOOTSTRAP" --topic allvarssamtal.scheduling.v1 --from-beginning --idle-exit 1500 |
        awk '{ key = $2; sub(/^key=/, "", key); type = $4; sub(/^ce_type=se.allvarssamtal.v1./, "", type)
               rev = ""; if (match($0, /revision: [0-9]+/)) rev = substr($0, RSTART + 10, RLENGTH - 10)
               what = ""; if (match($0, /(kind: SCHEDULING_REQUEST_KIND|reason: WITHDRAWAL_REASON)_[A-Z_]+/)) what = substr($0, RSTART, RLENGTH)
               last[key] = sprintf("  %s  %-19s revision %s  %s", key, type, rev, what) }
             END { for (k in last) print last[k] }' | sort

say "allvarsctl status"
ctl status --bootstrap "$BOOTSTRAP"

say "What allvarsd logged (journald fields; here on stderr)"
grep -E ' decided: |dead-lettered|applied to case|Deadline watch|ready' "$WORK/allvarsd.log" | cut -c1-200 | head -24

say "Stopping allvarsd (SIGTERM drains and exits 0)"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; echo "exit status $?"; DAEMON_PID=
