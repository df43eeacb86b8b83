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
createdb allvarsd

head -c 48 /dev/urandom > "$WORK/pepper"
cat > "$WORK/allvarsd.conf" <<CONF
# The embedded default: an in-process Kafka (not for production) and the demo's PostgreSQL.
kafka.embedded = true
database.conninfo = host=$PGHOST port=$PGPORT user=$PGUSER dbname=allvarsd
pepper = @file:$WORK/pepper
profile.name = goteborg-motion-2024
log.target = stderr
batch.max_wait_ms = 20
CONF

say "Creating the schema (allvarsd --migrate)"
build/allvarsd --config "$WORK/allvarsd.conf" --migrate --schemas schemas

say "Starting allvarsd"
build/allvarsd --config "$WORK/allvarsd.conf" 2> "$WORK/allvarsd.log" &
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

for _ in $(seq 100); do
        d=$(psql -XAtq -d allvarsd -c "select count(*) from allvarsd.decisions")
        [[ $d -ge $n ]] && break
        sleep 0.1
done

say "Decisions (recommendations; social workers decide)"
psql -Xq -d allvarsd -P pager=off -c "
select r.referral_id, d.outcome, d.age, d.reasons, d.flags,
       to_char(d.deadline at time zone 'UTC', 'YYYY-MM-DD HH24:MI\"Z\"') as deadline, d.deadline_kind,
       d.profile_name as profile
  from allvarsd.decisions d join allvarsd.referrals r using (referral_id)
 order by r.referral_id"

say "Dead letters"
psql -Xq -d allvarsd -P pager=off -c \
  "select source_topic, source_partition, source_offset, reason, detail from allvarsd.dead_letters"

say "Events published (scheduling, police feedback, alerts, dead letters)"
sleep 1
build/allvarsctl events --bootstrap "$BOOTSTRAP" --from-beginning --idle-exit 1500

say "What allvarsd logged (the journal fields, here on stderr)"
grep -E 'DECIDED|DEAD_LETTER|ready' "$WORK/allvarsd.log" | cut -c1-220 | head -20

say "Stopping allvarsd (SIGTERM drains and exits 0)"
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID"; echo "exit status $?"; DAEMON_PID=
