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

# As deployed (README "Setting it up"; tests/lib/deployed.bash): the superuser
# only creates the database and runs deploy/roles.sql; allvarsd_owner migrates;
# the daemon runs as the example configuration's role (allvarsd_runtime) with
# its secrets as credentials; allvarsctl as the operator's role.
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
m=0
for f in $(for f in examples/outcomes/*.txtpb; do
                echo "$(sed -n 's/^occurred_at { seconds: \([0-9]*\).*/\1/p' "$f") $f"
           done | sort -n | cut -d' ' -f2); do
        protoc --proto_path=proto --proto_path=/usr/include --encode=allvarssamtal.v1.CaseOutcome \
                allvarssamtal/v1/outcome.proto < "$f" > "$WORK/outcome.bin"
        kcat -P -b "$BOOTSTRAP" -t allvarssamtal.outcomes.v1 -k "$(basename "$f" .txtpb)" "$WORK/outcome.bin"
        echo "  $(basename "$f" .txtpb)"
        m=$((m + 1))
done
wait_count "select (select count(*) from allvarsd.outcome_events)
                 + (select count(*) from allvarsd.dead_letters where source_topic like '%outcomes%')" "$m"

say "Five days later (clock moved to 2025-03-15T12:00:00Z): the deadline watch raises what was missed"
echo 2025-03-15T12:00:00Z > "$WORK/clock"
sleep 3
ctl cases

say "The audit trail of one case"
ctl case PM-2025-0310-000123 | sed -n '/^Audit/,$p'

say "Dead letters"
ctl dead-letters list

say "Events published (the first 200 characters of each)"
sleep 1
"${CTL[@]}" events --bootstrap "$BOOTSTRAP" --from-beginning --idle-exit 1500 | cut -c1-200
echo
"${CTL[@]}" events --bootstrap "$BOOTSTRAP" --from-beginning --idle-exit 1500 \
        | awk '{split($1, t, "/"); n[t[1]]++} END {for (k in n) printf "  %-32s %d events\n", k, n[k]}'

say "allvarsctl status"
ctl status --bootstrap "$BOOTSTRAP"

say "What allvarsd logged (journald fields; here on stderr)"
grep -E ' decided: |dead-lettered|applied to case|Deadline watch|ready' "$WORK/allvarsd.log" | cut -c1-200 | head -24

say "Stopping allvarsd (SIGTERM drains and exits 0)"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; echo "exit status $?"; DAEMON_PID=
