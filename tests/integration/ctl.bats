#!/usr/bin/env bats
# allvarsctl for operators and social workers, against a real
# PostgreSQL server (PGHOST/PGPORT/PGUSER from tests/lib/pg.sh; started here when
# not given) and, for override and replay, librdkafka's mock cluster in a
# process of its own (tests/tools/mock-kafka.c). Each test gets a database of
# its own with the schema applied by psql and a fixed set of cases, and checks
# the exact output of the tables and, through jq, of the JSON.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash

NOW=2025-03-12T12:00:00Z

setup_file() {
        if [[ -z ${PGHOST:-} ]]; then
                source "$ROOT/tests/lib/pg.sh"
                pg_start
                export CTL_OWN_PG=1
        fi
}

teardown_file() {
        if [[ -n ${CTL_OWN_PG:-} ]]; then
                source "$ROOT/tests/lib/pg.sh"
                pg_stop
        fi
}

setup() {
        db_create
        for f in "$ROOT"/schemas/*.sql; do
                psql -Xq1 -v ON_ERROR_STOP=1 -d "$DB" -f "$f" >/dev/null
        done
        fixture
}

teardown() {
        teardown_daemons
        if [[ -n ${RT_USER:-} ]]; then
                psql -Xq -d postgres -c "DROP ROLE IF EXISTS $RT_USER" >/dev/null 2>&1 || true
        fi
}

# allvarsctl with the test's database and a fixed "now".
ctl() { "$BUILD/allvarsctl" "$@"; }
ctldb() {
        local cmd=$1
        shift
        "$BUILD/allvarsctl" "$cmd" --database "dbname=$DB" --now "$NOW" "$@"
}

# Six referrals: R-1 eligible with contact missing, R-2 overdue, R-3 deferred,
# R-4 held (closed), R-5 not eligible (no case), R-6 scheduled. R-1 carries
# personal data everywhere it can, so that the tests can check it never shows.
fixture() {
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'EOF'
SET search_path = allvarsd;
INSERT INTO persons VALUES (decode(repeat('ab', 32), 'hex'), '2025-03-01T00:00:00Z');
INSERT INTO referrals (referral_id, case_id, person_key, marks, district, reported_at, incident_at, feedback_requested,
        police_case_number, reporting_unit, source_topic, source_partition, source_offset, received_at) VALUES
 ('R-1', '00000000-0000-4000-8000-00000000000a', decode(repeat('ab', 32), 'hex'), 1, 'hisingen', '2025-03-11T10:00:00Z',
  '2025-03-10T20:00:00Z', true, '5000-K123-25', 'PO Hisingen', 'police.referrals.v1', 0, 10, '2025-03-11T10:00:02Z'),
 ('R-2', '00000000-0000-4000-8000-00000000000b', NULL, 1, 'centrum', '2025-03-10T08:00:00Z', NULL, false, '', '',
  'police.referrals.v1', 1, 11, '2025-03-10T08:00:01Z'),
 ('R-3', '00000000-0000-4000-8000-00000000000c', NULL, 1, 'hisingen', '2025-03-12T06:00:00Z', NULL, true, '', '',
  'police.referrals.v1', 2, 12, '2025-03-12T06:00:01Z'),
 ('R-4', '00000000-0000-4000-8000-00000000000d', NULL, 1, 'nordost', '2025-03-08T10:00:00Z', NULL, false, '', '',
  'police.referrals.v1', 3, 13, '2025-03-08T10:00:01Z'),
 ('R-5', '00000000-0000-4000-8000-00000000000e', NULL, 1, 'sydvast', '2025-03-12T07:00:00Z', NULL, false, '', '',
  'police.referrals.v1', 0, 14, '2025-03-12T07:00:01Z'),
 ('R-6', '00000000-0000-4000-8000-00000000000f', NULL, 1, 'centrum', '2025-03-12T10:00:00Z', NULL, false, '', '',
  'police.referrals.v1', 1, 15, '2025-03-12T10:00:01Z');
INSERT INTO referral_personal VALUES
 ('R-1', '201001012384', '2010-01-01', 'Testina', 'Exempelsson', 'A secret narrative about Testina', '\xdeadbeef');
INSERT INTO decisions VALUES
 ('R-1', 'ELIGIBLE', '', 'CONTACT_MISSING', 15, '2025-03-13T10:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  'min_age=10;max_age=17;limit_hours=48', 0, 0, '2025-03-11T10:00:02Z'),
 ('R-2', 'ELIGIBLE', '', '', 12, '2025-03-12T08:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  'min_age=10;max_age=17;limit_hours=48', 0, 0, '2025-03-10T08:00:01Z'),
 ('R-3', 'DEFERRED', 'PROTECTIVE_ASSESSMENT_FIRST,PRELIMINARY_INVESTIGATION', '', 14, NULL, NULL, '2025-03-13T06:00:00Z',
  'goteborg-motion-2024', 1, 'min_age=10;max_age=17;limit_hours=48', 0, 0, '2025-03-12T06:00:01Z'),
 ('R-4', 'ELIGIBLE', '', '', 16, '2025-03-10T10:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  'min_age=10;max_age=17;limit_hours=48', 0, 0, '2025-03-08T10:00:01Z'),
 ('R-5', 'NOT_ELIGIBLE', 'ABOVE_MAX_AGE', '', 19, NULL, NULL, NULL, 'goteborg-motion-2024', 1,
  'min_age=10;max_age=17;limit_hours=48', 0, 0, '2025-03-12T07:00:01Z'),
 ('R-6', 'ELIGIBLE', '', 'UNDER_15,REPEAT_REFERRAL', 13, '2025-03-14T10:00:00Z', 'CONVERSATION', NULL,
  'goteborg-motion-2024', 1, 'min_age=10;max_age=17;limit_hours=48', 2, 0, '2025-03-12T10:00:01Z');
INSERT INTO cases (case_id, referral_id, district, state, outcome, profile_name, limit_seconds, deadline, deadline_kind,
        protective_assessment_due, awaiting_assessment, awaiting_clearance, awaiting_contact, scheduled_at,
        police_attending, held_at, closed_at, feedback_requested, created_at, updated_at, revision) VALUES
 ('00000000-0000-4000-8000-00000000000a', 'R-1', 'hisingen', 'ELIGIBLE', 'ELIGIBLE', 'goteborg-motion-2024', 172800,
  '2025-03-13T10:00:00Z', 'CONVERSATION', NULL, false, false, true, NULL, false, NULL, NULL, true,
  '2025-03-11T10:00:02Z', '2025-03-11T13:00:00Z', 3),
 ('00000000-0000-4000-8000-00000000000b', 'R-2', 'centrum', 'ELIGIBLE', 'ELIGIBLE', 'goteborg-motion-2024', 172800,
  '2025-03-12T08:00:00Z', 'CONVERSATION', NULL, false, false, false, NULL, false, NULL, NULL, false,
  '2025-03-10T08:00:01Z', '2025-03-10T08:00:01Z', 1),
 ('00000000-0000-4000-8000-00000000000c', 'R-3', 'hisingen', 'DEFERRED', 'DEFERRED', 'goteborg-motion-2024', 172800,
  NULL, NULL, '2025-03-13T06:00:00Z', true, true, false, NULL, false, NULL, NULL, true,
  '2025-03-12T06:00:01Z', '2025-03-12T06:00:01Z', 1),
 ('00000000-0000-4000-8000-00000000000d', 'R-4', 'nordost', 'HELD', 'ELIGIBLE', 'goteborg-motion-2024', 172800,
  '2025-03-10T10:00:00Z', 'CONVERSATION', NULL, false, false, false, '2025-03-10T08:00:00Z', true,
  '2025-03-10T09:00:00Z', '2025-03-10T09:00:00Z', false, '2025-03-08T10:00:01Z', '2025-03-10T09:00:00Z', 3),
 ('00000000-0000-4000-8000-00000000000f', 'R-6', 'centrum', 'SCHEDULED', 'ELIGIBLE', 'goteborg-motion-2024', 172800,
  '2025-03-14T10:00:00Z', 'CONVERSATION', NULL, false, false, false, '2025-03-13T14:00:00Z', false, NULL, NULL, false,
  '2025-03-12T10:00:01Z', '2025-03-12T11:00:00Z', 2);
INSERT INTO case_contacts VALUES ('00000000-0000-4000-8000-00000000000a', 1, 'Provmamma Exempelsson', '+46701234567',
  'provmamma@example.se', 'Storgatan 1', '2025-03-11T12:00:00Z');
INSERT INTO case_alerts VALUES
 ('00000000-0000-4000-8000-00000000000b', 'AT_RISK', '2025-03-11T20:00:00Z', '2025-03-11T20:00:05Z'),
 ('00000000-0000-4000-8000-00000000000b', 'MISSED', '2025-03-12T08:00:00Z', '2025-03-12T08:00:05Z'),
 ('00000000-0000-4000-8000-00000000000d', 'AT_RISK', '2025-03-09T22:00:00Z', '2025-03-09T22:00:05Z');
INSERT INTO outcome_events VALUES
 ('11111111-1111-4111-8111-111111111111', '00000000-0000-4000-8000-00000000000a', 'CONTACT_DETAILS_SUPPLIED',
  '2025-03-11T11:59:00Z', '2025-03-11T12:00:00Z', 'allvarssamtal.outcomes.v1', 0, 1);
INSERT INTO audit (case_id, referral_id, at, actor_kind, actor_name, action, before, after, detail) VALUES
 ('00000000-0000-4000-8000-00000000000a', 'R-1', '2025-03-11T10:00:02Z', 'DAEMON', '', 'DECIDED', '',
  'state=ELIGIBLE;outcome=ELIGIBLE', ''),
 ('00000000-0000-4000-8000-00000000000a', 'R-1', '2025-03-11T12:00:00Z', 'POLICE', '', 'CONTACT_SUPPLIED',
  'state=ELIGIBLE;contact=missing', 'state=ELIGIBLE', ''),
 ('00000000-0000-4000-8000-00000000000a', 'R-1', '2025-03-11T13:00:00Z', 'SOCIAL_WORKER', 'anna.s', 'OVERRIDDEN',
  'state=MANUAL_REVIEW;outcome=MANUAL_REVIEW', 'state=ELIGIBLE;outcome=ELIGIBLE', 'Talked to Testina Exempelsson'),
 ('00000000-0000-4000-8000-00000000000e', 'R-5', '2025-03-12T07:00:01Z', 'DAEMON', '', 'DECIDED', '',
  'outcome=NOT_ELIGIBLE', '');
INSERT INTO outbox_sent (id, event_id, topic, key, ce_type, ce_time, payload_bytes, created_at, sent_at) VALUES
 (nextval('outbox_id_seq'), '22222222-2222-4222-8222-222222222221', 'police.feedback.v1',
  '00000000-0000-4000-8000-00000000000a', 'se.allvarssamtal.v1.PoliceFeedback', '2025-03-11T10:00:02Z', 1,
  '2025-03-11T10:00:02Z', '2025-03-11T10:00:03Z');
INSERT INTO outbox (event_id, topic, key, ce_type, ce_time, payload, created_at) VALUES
 ('22222222-2222-4222-8222-222222222222', 'police.feedback.v1', '00000000-0000-4000-8000-00000000000c',
  'se.allvarssamtal.v1.PoliceFeedback', '2025-03-12T10:30:00Z', '\x01', '2025-03-12T10:30:00Z'),
 ('22222222-2222-4222-8222-222222222223', 'allvarssamtal.scheduling.v1', '00000000-0000-4000-8000-00000000000f',
  'se.allvarssamtal.v1.SchedulingRequest', '2025-03-12T11:50:00Z', '\x01', '2025-03-12T11:50:00Z');
INSERT INTO consumer_offsets VALUES
 ('allvarsd', 'police.referrals.v1', 0, 120, '2025-03-12T11:59:00Z'),
 ('allvarsd', 'police.referrals.v1', 1, 80, '2025-03-12T11:58:00Z'),
 ('allvarsd', 'allvarssamtal.outcomes.v1', 0, 5, '2025-03-12T11:00:00Z');
-- Dead letter 1 as schema 8 keeps it: the key, the headers (header_blob.h: one
-- header ce_id = "ce-77") and the ce_id; 2 as written before (NULLs).
INSERT INTO dead_letters (id, event_id, source_topic, source_partition, source_offset, reason, detail, payload,
        received_at, replayed_at, source_key, source_headers, source_ce_id, source_event_id) VALUES
 (1, '33333333-3333-4333-8333-333333333331', 'police.referrals.v1', 2, 17, 'UNDECODABLE',
  'the message is not a PoliceReferral', '\xdeadbeef', '2025-03-12T09:00:00Z', NULL,
  'PM-1', '\x000563655f69640000000563652d3737', 'ce-77', NULL),
 (2, '33333333-3333-4333-8333-333333333332', 'allvarssamtal.outcomes.v1', 0, 3, 'ILLEGAL_TRANSITION',
  'CONVERSATION_HELD in state DEFERRED', NULL, '2025-03-10T12:00:00Z', '2025-03-11T09:00:00Z',
  NULL, NULL, NULL, NULL);
SELECT setval('dead_letters_id_seq', 2);
EOF
}

# No output of any command may carry R-1's personal data or payload bytes.
no_personal_data() {
        ! grep -Eiq 'testina|exempelsson|201001012384|2010-01-01|narrative|provmamma|46701234567|example\.se|storgatan|deadbeef|talked to' "$@"
}

# ---------------------------------------------------------------------------- status

@test "status: positions, outbox, dead letters, cases by district and state, alerts of the last day" {
        sql "INSERT INTO allvarsd.partition_gaps VALUES ('allvarsd', 'police.referrals.v1', 1, 40, 44, 44,
             '2025-03-12T09:30:00Z')"
        run --separate-stderr ctldb status
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
at             2025-03-12T12:00:00Z
open cases     4
overdue cases  1

Instances (decided and dead-lettered: since each one started)
  none

Outbox relay
  lock holders  0
  held by       -

Consumer positions
  GROUP     TOPIC                      PARTITION  NEXT OFFSET  HIGH WATERMARK  LAG  UPDATED AT
  allvarsd  allvarssamtal.outcomes.v1          0            5               -    -  2025-03-12T11:00:00Z
  allvarsd  police.referrals.v1                0          120               -    -  2025-03-12T11:59:00Z
  allvarsd  police.referrals.v1                1           80               -    -  2025-03-12T11:58:00Z

Outbox (database)
  unsent         2
  oldest unsent  2025-03-12T10:30:00Z
  oldest age     1h 30m

Dead letters (database)
  total         2
  last 24h      1
  not replayed  1
  latest        2025-03-12T09:00:00Z

Cases by district and state (database)
  DISTRICT  STATE      CASES  OVERDUE
  centrum   ELIGIBLE       1        1
  centrum   SCHEDULED      1        0
  hisingen  DEFERRED       1        0
  hisingen  ELIGIBLE       1        0
  nordost   HELD           1        0

Gaps: input gone from Kafka before it was read, never decided
  GROUP     TOPIC                PARTITION  FROM OFFSET  TO OFFSET  MESSAGES  DETECTED AT
  allvarsd  police.referrals.v1          1           40         43         4  2025-03-12T09:30:00Z

Alerts raised in the last 24 hours
  KIND     ALERTS
  AT_RISK       1
  MISSED        1

Last database error of each class (running instances)
  none
EOF
        [[ -z $stderr ]]
}

# instances: two instances as the daemon's heartbeat writes them; one running
# (relay active, a deployment error), one stopped an hour ago.
instances() {
        sql "INSERT INTO allvarsd.instances (instance_id, host, pid, version, started_at, heartbeat_at, stopped_at,
                     relay_active, partitions, decided, dead_lettered, error_deployment)
             VALUES ('h1:10:1', 'h1', 10, '0.1.0', '2025-03-12T08:00:00Z', now() - interval '5 seconds', NULL,
                     true, 4, 1200, 3, 'batch: permission denied for table cases (SQLSTATE 42501)'),
                    ('h2:20:1', 'h2', 20, '0.1.0', '2025-03-11T08:00:00Z', now() - interval '1 hour',
                     now() - interval '1 hour', false, 0, 7, 0, NULL)"
}

@test "status: each instance as it reports itself, the relay's holder, the last error of each class" {
        instances
        run --separate-stderr ctldb status
        [[ $status -eq 0 ]]
        echo "$output"
        grep -Eq '^  h1 +10 +0\.1\.0 +2025-03-12T08:00:00Z +[5-9] +running +active +4 +1200 +3$' <<<"$output"
        grep -Eq '^  h2 +20 +0\.1\.0 +2025-03-11T08:00:00Z +36[0-9][0-9] +stopped +standby +0 +7 +0$' <<<"$output"
        grep -q '^  held by       h1 pid 10$' <<<"$output"
        grep -Eq '^  h1 +10 +deployment +batch: permission denied for table cases \(SQLSTATE 42501\)$' <<<"$output"
        run --separate-stderr ctldb status --json
        [[ $(jq -c '[.instances[] | [.host, .state, .relay, .decided_since_start]]' <<<"$output") == \
                '[["h1","running","active",1200],["h2","stopped","standby",7]]' ]]
        [[ $(jq -c '.errors' <<<"$output") == \
                '[{"host":"h1","pid":10,"class":"deployment","error":"batch: permission denied for table cases (SQLSTATE 42501)"}]' ]]
}

# ---------------------------------------------------------------------------- check

@test "check: monitoring-plugins exit codes, one line, performance data" {
        # The fixture: no instance, no relay, an unsent event 1h 30m old, one overdue case.
        run --separate-stderr ctldb check
        [[ $status -eq 2 && ${#lines[@]} -eq 1 ]]
        [[ $output == "ALLVARSD CRITICAL - no running instance (no heartbeat in 60 s); no instance holds the outbox relay; oldest unsent event 5400 s old; 1 open case(s) past their deadline | instances=0;;1:;0; relay_holders=0;;1:;0; outbox_age=5400s;60;300;0; overdue_cases=1;0;;0; dead_letters_1h=0;0;;0;" ]]
        # A running instance, a session that holds the relay's lock, the outbox
        # empty: a WARNING for the overdue case.
        instances
        sql "DELETE FROM allvarsd.outbox"
        psql -XAtq -d "$DB" -c "SELECT pg_advisory_lock(x'616c6c7661727364'::bigint)" -c "SELECT pg_sleep(30)" >/dev/null &
        locker=$!
        wait_for 10 bash -c "[[ \$(psql -XAtq -d $DB -c \"select count(*) from pg_locks where locktype = 'advisory' and granted\") -eq 1 ]]"
        run --separate-stderr ctldb check
        st=$status out=$output
        # Thresholds as options; "off" turns one off.
        run --separate-stderr ctldb check --overdue-warning off
        st2=$status out2=$output
        run --separate-stderr ctldb check --overdue-warning off --overdue-critical 0
        st3=$status
        kill "$locker"; wait "$locker" 2>/dev/null || true
        [[ $st -eq 1 && $out == "ALLVARSD WARNING - 1 open case(s) past their deadline | instances=1;;1:;0; relay_holders=1;;1:;0; outbox_age=0s;60;300;0; overdue_cases=1;0;;0; dead_letters_1h=0;0;;0;" ]]
        [[ $st2 -eq 0 && $out2 == "ALLVARSD OK - 1 instance(s) running, relay held, outbox oldest 0 s, 1 overdue, 0 dead letter(s) in the last hour, lag unknown | "* ]]
        [[ $st3 -eq 2 ]]
        # UNKNOWN: wrong options, or a database that cannot be read.
        run --separate-stderr ctldb check --lag-warning many
        [[ $status -eq 3 && $output == "ALLVARSD UNKNOWN - bad options" ]]
        run --separate-stderr ctl check --database "dbname=${DB}_none"
        [[ $status -eq 3 && $output == "ALLVARSD UNKNOWN - cannot read the database (see stderr)" ]]
}

@test "--version prints the version" {
        run ctl --version
        [[ $status -eq 0 && $output =~ ^allvarsctl\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
}

@test "status --json: the same figures as JSON" {
        run --separate-stderr ctldb status --json
        [[ $status -eq 0 ]]
        j=$output
        [[ $(jq -r .summary.at <<<"$j") == 2025-03-12T12:00:00Z ]]
        [[ $(jq .summary.open_cases <<<"$j") -eq 4 ]]
        [[ $(jq .summary.overdue_cases <<<"$j") -eq 1 ]]
        [[ $(jq -c '[.consumers[] | [.topic, .partition, .next_offset, .high_watermark, .lag]]' <<<"$j") == \
                '[["allvarssamtal.outcomes.v1",0,5,null,null],["police.referrals.v1",0,120,null,null],["police.referrals.v1",1,80,null,null]]' ]]
        [[ $(jq -c .outbox <<<"$j") == \
                '{"unsent":2,"oldest_unsent":"2025-03-12T10:30:00Z","oldest_age":"1h 30m","oldest_age_seconds":5400}' ]]
        [[ $(jq -c .dead_letters <<<"$j") == \
                '{"total":2,"last_24h":1,"not_replayed":1,"latest":"2025-03-12T09:00:00Z"}' ]]
        [[ $(jq -c '[.cases[] | [.district, .state, .cases, .overdue]]' <<<"$j") == \
                '[["centrum","ELIGIBLE",1,1],["centrum","SCHEDULED",1,0],["hisingen","DEFERRED",1,0],["hisingen","ELIGIBLE",1,0],["nordost","HELD",1,0]]' ]]
        [[ $(jq -c .alerts <<<"$j") == '[{"kind":"AT_RISK","alerts":1},{"kind":"MISSED","alerts":1}]' ]]
}

@test "status: the lag per partition from the broker's high watermark" {
        mock_start
        sql "DELETE FROM allvarsd.consumer_offsets"
        # Three messages on one partition of the referrals topic (replays of dead letter 1).
        run ctldb dead-letters replay 1 --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        part=$(sed -n 's/.*\[\([0-9]*\)\].*/\1/p' <<<"$output")
        [[ -n $part ]]
        ctldb dead-letters replay 1 --force --bootstrap "$KAFKA"
        ctldb dead-letters replay 1 --force --bootstrap "$KAFKA"
        sql "INSERT INTO allvarsd.consumer_offsets VALUES ('allvarsd', 'police.referrals.v1', $part, 1, '$NOW')"
        run --separate-stderr ctldb status --json --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        [[ $(jq -c '[.consumers[] | [.partition, .next_offset, .high_watermark, .lag]]' <<<"$output") == \
                "[[$part,1,3,2]]" ]]
        run ctldb status --bootstrap "$KAFKA"
        grep -Eq "^  allvarsd  police.referrals.v1 +$part +1 +3 +2  $NOW\$" <<<"$output"
        # check takes the largest lag against its thresholds.
        run --separate-stderr ctldb check --bootstrap "$KAFKA" --lag-warning 1 --lag-critical 5
        [[ $status -eq 2 && $output == *"; a partition 2 messages behind; "*" lag=2;1;5;0; "* ]]
}

# ---------------------------------------------------------------------------- cases

@test "cases: one line per case, open cases by deadline, time left or overdue, flags" {
        run --separate-stderr ctldb cases
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
CASE ID                               DISTRICT  STATE      OUTCOME   DEADLINE              DEADLINE KIND  TIME LEFT       FLAGS
00000000-0000-4000-8000-00000000000b  centrum   ELIGIBLE   ELIGIBLE  2025-03-12T08:00:00Z  CONVERSATION   overdue 4h 00m  -
00000000-0000-4000-8000-00000000000a  hisingen  ELIGIBLE   ELIGIBLE  2025-03-13T10:00:00Z  CONVERSATION   in 22h 00m      CONTACT_MISSING,AWAITING_CONTACT
00000000-0000-4000-8000-00000000000f  centrum   SCHEDULED  ELIGIBLE  2025-03-14T10:00:00Z  CONVERSATION   in 1d 22h       UNDER_15,REPEAT_REFERRAL
00000000-0000-4000-8000-00000000000c  hisingen  DEFERRED   DEFERRED  -                     -              -               AWAITING_ASSESSMENT,AWAITING_CLEARANCE
00000000-0000-4000-8000-00000000000d  nordost   HELD       ELIGIBLE  2025-03-10T10:00:00Z  CONVERSATION   -               -
EOF
        no_personal_data <<<"$output"
}

@test "overdue has one meaning: a scheduled SUMMONS case past its deadline met it, as the deadline watch says" {
        # R-7: summoned (SCHEDULED) under a SUMMONS deadline that has passed: met (DS 2024:30).
        # R-8: the same deadline, nothing scheduled: overdue. R-9: SCHEDULED for a CONVERSATION
        # deadline that passed without the conversation held: overdue.
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'EOF'
SET search_path = allvarsd;
INSERT INTO referrals (referral_id, case_id, marks, district, reported_at, feedback_requested, source_topic,
        source_partition, source_offset, received_at)
SELECT 'R-' || n, ('00000000-0000-4000-8000-00000000001' || n)::uuid, 1, 'angered', '2025-03-11T09:00:00Z', false,
       'police.referrals.v1', 0, 20 + n, '2025-03-11T09:00:01Z' FROM generate_series(7, 9) n;
INSERT INTO decisions SELECT 'R-' || n, 'ELIGIBLE', '', '', 15, '2025-03-12T09:00:00Z',
       CASE WHEN n = 9 THEN 'CONVERSATION' ELSE 'SUMMONS' END, NULL, 'ds-2024-30', 1, 'limit_hours=24', 0, 0,
       '2025-03-11T09:00:01Z' FROM generate_series(7, 9) n;
INSERT INTO cases (case_id, referral_id, district, state, outcome, profile_name, limit_seconds, deadline, deadline_kind,
        scheduled_at, feedback_requested, created_at, updated_at)
SELECT ('00000000-0000-4000-8000-00000000001' || n)::uuid, 'R-' || n, 'angered',
       CASE WHEN n = 8 THEN 'ELIGIBLE' ELSE 'SCHEDULED' END, 'ELIGIBLE', 'ds-2024-30', 86400, '2025-03-12T09:00:00Z',
       CASE WHEN n = 9 THEN 'CONVERSATION' ELSE 'SUMMONS' END,
       CASE WHEN n = 8 THEN NULL ELSE timestamptz '2025-03-12T08:00:00Z' END, false,
       '2025-03-11T09:00:01Z', '2025-03-11T09:00:01Z' FROM generate_series(7, 9) n;
EOF
        run --separate-stderr ctldb cases --overdue --district angered --json
        [[ $status -eq 0 ]]
        [[ $(jq -c 'map(.case_id)' <<<"$output") == \
           '["00000000-0000-4000-8000-000000000018","00000000-0000-4000-8000-000000000019"]' ]]
        # Its time left is not "overdue" either.
        run --separate-stderr ctldb cases --district angered --json
        [[ $(jq -c 'map([.case_id, .time_left])' <<<"$output") == \
           '[["00000000-0000-4000-8000-000000000017",null],["00000000-0000-4000-8000-000000000018","overdue 3h 00m"],["00000000-0000-4000-8000-000000000019","overdue 3h 00m"]]' ]]
        run --separate-stderr ctldb status --json
        [[ $(jq -c '[.summary.overdue_cases, (.cases[] | select(.district == "angered") | [.state, .overdue])]' <<<"$output") == \
           '[3,["ELIGIBLE",1],["SCHEDULED",1]]' ]]
        # The deadline watch's MISSED alerts are due for exactly these cases: its partial
        # index (schemas/003) holds the same ones.
        [[ $(sql "select string_agg(case_id::text, ',' order by case_id) from allvarsd.cases c
                  where c.district = 'angered' and c.closed_at IS NULL AND (c.state = 'ELIGIBLE' OR (c.state =
                  'SCHEDULED' AND c.deadline_kind IS DISTINCT FROM 'SUMMONS')) and c.deadline <= '$NOW'") == \
           "00000000-0000-4000-8000-000000000018,00000000-0000-4000-8000-000000000019" ]]
}

@test "cases: --overdue, --district, --state and --limit filter" {
        run ctldb cases --overdue
        [[ $status -eq 0 ]]
        [[ ${#lines[@]} -eq 2 && ${lines[1]} == 00000000-0000-4000-8000-00000000000b* ]]
        # Later the held case stays off the list and R-1 joins it.
        run ctldb cases --overdue --now 2025-03-13T10:00:01Z
        [[ $(awk 'NR > 1 { print $1 }' <<<"$output" | tr '\n' ' ') == \
                "00000000-0000-4000-8000-00000000000b 00000000-0000-4000-8000-00000000000a " ]]
        run ctldb cases --district HISINGEN
        [[ $(awk 'NR > 1 { print $1 }' <<<"$output" | tr '\n' ' ') == \
                "00000000-0000-4000-8000-00000000000a 00000000-0000-4000-8000-00000000000c " ]]
        run ctldb cases --state SCHEDULED --district centrum
        [[ ${#lines[@]} -eq 2 && ${lines[1]} == 00000000-0000-4000-8000-00000000000f* ]]
        run ctldb cases --limit 2
        [[ ${#lines[@]} -eq 3 ]]
        run ctldb cases --state CANCELLED
        [[ $status -eq 0 && $output == "No cases." ]]
}

@test "cases --json: an array with the seconds left" {
        run --separate-stderr ctldb cases --json
        [[ $status -eq 0 ]]
        [[ $(jq length <<<"$output") -eq 5 ]]
        [[ $(jq -c '.[0]' <<<"$output") == '{"case_id":"00000000-0000-4000-8000-00000000000b","district":"centrum","state":"ELIGIBLE","outcome":"ELIGIBLE","deadline":"2025-03-12T08:00:00Z","deadline_kind":"CONVERSATION","time_left":"overdue 4h 00m","seconds_left":-14400,"flags":null}' ]]
        [[ $(jq -c '[.[] | .seconds_left]' <<<"$output") == '[-14400,79200,165600,null,null]' ]]
        run ctldb cases --json --state CANCELLED
        [[ $output == '[]' ]]
}

@test "cases: the time comes from the configuration's clock.file like the daemon's" {
        echo 2025-03-13T09:30:00Z > "$T/clock"
        head -c 48 /dev/urandom > "$T/pepper"
        cat > "$T/ctl.conf" <<EOF
database.conninfo = host=$PGHOST port=$PGPORT user=$PGUSER dbname=$DB
pepper = @file:$T/pepper
clock.file = $T/clock
EOF
        run --separate-stderr ctl cases --config "$T/ctl.conf" --overdue --json
        [[ $status -eq 0 ]]
        [[ $(jq -c '[.[] | [.case_id, .time_left]]' <<<"$output") == \
                '[["00000000-0000-4000-8000-00000000000b","overdue 1d 1h"]]' ]]
        run ctl cases --config "$T/ctl.conf" --district hisingen
        grep -q 'in 30m' <<<"$output"
}

# ---------------------------------------------------------------------------- case

@test "case: the case, its decision in words, deadlines, alerts, events and audit trail" {
        run --separate-stderr ctldb case R-1
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
case id                    00000000-0000-4000-8000-00000000000a
referral id                R-1
police case number         5000-K123-25
district                   hisingen
state                      ELIGIBLE
outcome                    ELIGIBLE
decided outcome            ELIGIBLE
reported at                2025-03-11T10:00:00Z
incident at                2025-03-10T20:00:00Z
received at                2025-03-11T10:00:02Z
decided at                 2025-03-11T10:00:02Z
deadline                   2025-03-13T10:00:00Z
deadline kind              CONVERSATION
time left                  in 22h 00m
protective assessment due  -
assessed at                -
scheduled at               -
police attending           no
held at                    -
closed at                  -
waiting for                contact details
feedback requested         yes
profile                    goteborg-motion-2024
profile version            1
profile params             min_age=10;max_age=17;limit_hours=48
age                        15
prior referrals            0
prior qualifying           0
revision                   3
opened at                  2025-03-11T10:00:02Z
updated at                 2025-03-11T13:00:00Z
personal data purged at    -

Reasons
  none

Flags
  code  CONTACT_MISSING
  sv    Inget telefonnummer till vårdnadshavarna finns i anmälan. Polisen tillfrågas om kontaktuppgifter; kallelsen kan behöva skickas med brev.
  en    The referral has no phone number for the guardians. The police are asked for contact details; the invitation may have to go by letter.

Alerts raised
  none

Outcome events applied
  EVENT ID                              KIND                      OCCURRED AT           APPLIED AT            PARTICIPANTS  FOLLOW UP
  11111111-1111-4111-8111-111111111111  CONTACT_DETAILS_SUPPLIED  2025-03-11T11:59:00Z  2025-03-11T12:00:00Z  -             -

Audit trail
  AT                    WHO                   ACTION            CHANGE
  2025-03-11T10:00:02Z  DAEMON                DECIDED           - -> state=ELIGIBLE;outcome=ELIGIBLE
  2025-03-11T12:00:00Z  POLICE                CONTACT_SUPPLIED  state=ELIGIBLE;contact=missing -> state=ELIGIBLE
  2025-03-11T13:00:00Z  SOCIAL_WORKER:anna.s  OVERRIDDEN        state=MANUAL_REVIEW;outcome=MANUAL_REVIEW -> state=ELIGIBLE;outcome=ELIGIBLE
EOF
        no_personal_data <<<"$output"
}

@test "case: found by case id in any letter case; reasons explained in Swedish and English; alerts" {
        run ctldb case 00000000-0000-4000-8000-00000000000C
        [[ $status -eq 0 ]]
        grep -q '^referral id                R-3$' <<<"$output"
        grep -q '^waiting for                protective assessment, clearance from the police$' <<<"$output"
        grep -q '^protective assessment due  2025-03-13T06:00:00Z$' <<<"$output"
        # Each reason code with both explanations, from reasons.c's table.
        grep -A2 '^  code  PROTECTIVE_ASSESSMENT_FIRST$' <<<"$output" | grep -q '^  sv    .*skyddsbedömning'
        grep -A2 '^  code  PROTECTIVE_ASSESSMENT_FIRST$' <<<"$output" | grep -q '^  en    .*protective assessment'
        grep -A2 '^  code  PRELIMINARY_INVESTIGATION$' <<<"$output" | grep -q '^  en    .*clearance'
        run ctldb case R-2
        sed -n '/^Alerts raised$/,/^$/p' <<<"$output" > "$T/alerts"
        diff -u - "$T/alerts" <<'EOF'
Alerts raised
  KIND     DUE AT                RAISED AT
  AT_RISK  2025-03-11T20:00:00Z  2025-03-11T20:00:05Z
  MISSED   2025-03-12T08:00:00Z  2025-03-12T08:00:05Z

EOF
        grep -q '^time left                  overdue 4h 00m$' <<<"$output"
}

@test "case: a NOT_ELIGIBLE referral has no case but its decision is shown" {
        run ctldb case R-5
        [[ $status -eq 0 ]]
        grep -q '^case id                    00000000-0000-4000-8000-00000000000e$' <<<"$output"
        grep -q '^state                      -$' <<<"$output"
        grep -q '^outcome                    NOT_ELIGIBLE$' <<<"$output"
        grep -q '^  code  ABOVE_MAX_AGE$' <<<"$output"
        grep -q '^  2025-03-12T07:00:01Z  DAEMON  DECIDED  - -> outcome=NOT_ELIGIBLE$' <<<"$output"
}

@test "case: a held conversation's participants and follow-up; a NOT_ELIGIBLE child's protective assessment" {
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'EOF'
INSERT INTO allvarsd.outcome_events (event_id, case_id, kind, occurred_at, applied_at, source_topic, source_partition,
        source_offset, participants, follow_up)
VALUES ('ev-held', '00000000-0000-4000-8000-00000000000d', 'CONVERSATION_HELD', '2025-03-09T10:00:00Z',
        '2025-03-09T10:00:01Z', 'allvarssamtal.outcomes.v1', 0, 7, '{CHILD,GUARDIANS,SOCIAL_SERVICES}', '{OPEN_CARE}');
INSERT INTO allvarsd.assessment_duties (case_id, referral_id, district, due_at, alerted_due, alerted_at, created_at)
VALUES ('00000000-0000-4000-8000-00000000000e', 'R-5', 'sydvast', '2025-03-13T07:00:00Z', '2025-03-13T07:00:00Z',
        '2025-03-13T07:00:04Z', '2025-03-12T07:00:01Z');
EOF
        run ctldb case R-4
        [[ $status -eq 0 ]]
        grep -Eq '^  ev-held +CONVERSATION_HELD +2025-03-09T10:00:00Z +2025-03-09T10:00:01Z +CHILD,GUARDIANS,SOCIAL_SERVICES +OPEN_CARE$' <<<"$output"
        run ctldb case R-5
        [[ $status -eq 0 ]]
        grep -q '^protective assessment due  2025-03-13T07:00:00Z$' <<<"$output"
        grep -q '^waiting for                protective assessment$' <<<"$output"
        grep -Eq '^  PROTECTIVE_ASSESSMENT_OVERDUE +2025-03-13T07:00:00Z +2025-03-13T07:00:04Z$' <<<"$output"
}

@test "case --json: one object made by PostgreSQL, with no personal data" {
        run --separate-stderr ctldb case R-1 --json
        [[ $status -eq 0 ]]
        j=$output
        [[ $(jq -r .case.case_id <<<"$j") == 00000000-0000-4000-8000-00000000000a ]]
        [[ $(jq -r .case.deadline <<<"$j") == 2025-03-13T10:00:00Z ]]
        [[ $(jq .case.seconds_left <<<"$j") -eq 79200 ]]
        [[ $(jq .case.police_attending <<<"$j") == false ]]
        [[ $(jq -c .reasons <<<"$j") == '[]' ]]
        [[ $(jq -r '.flags[0].code' <<<"$j") == CONTACT_MISSING ]]
        [[ $(jq -r '.flags[0].sv' <<<"$j") == Inget\ telefonnummer* ]]
        [[ $(jq -c '[.audit[] | [.who, .action, .before, .after, .reason_recorded]]' <<<"$j") == \
                '[["DAEMON","DECIDED","","state=ELIGIBLE;outcome=ELIGIBLE",false],["POLICE","CONTACT_SUPPLIED","state=ELIGIBLE;contact=missing","state=ELIGIBLE",false],["SOCIAL_WORKER:anna.s","OVERRIDDEN","state=MANUAL_REVIEW;outcome=MANUAL_REVIEW","state=ELIGIBLE;outcome=ELIGIBLE",true]]' ]]
        [[ $(jq -c '[.events[] | .kind]' <<<"$j") == '["CONTACT_DETAILS_SUPPLIED"]' ]]
        [[ $(jq -c .alerts <<<"$j") == '[]' ]]
        no_personal_data <<<"$j"
}

@test "case: an unknown id fails with one line; no id is a usage error" {
        run --separate-stderr ctldb case R-404
        [[ $status -eq 1 && -z $output ]]
        [[ $stderr == "allvarsctl case: no case or referral with the id R-404" ]]
        run --separate-stderr ctldb case
        [[ $status -eq 2 && $(wc -l <<<"$stderr") -eq 1 ]]
}

# ---------------------------------------------------------------------------- dead letters

@test "dead-letters: list, show (never the payload), and JSON" {
        run --separate-stderr ctldb dead-letters
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
ID  RECEIVED AT           SOURCE                         REASON              DETAIL                               REPLAYED AT
 1  2025-03-12T09:00:00Z  police.referrals.v1/2@17       UNDECODABLE         the message is not a PoliceReferral  -
 2  2025-03-10T12:00:00Z  allvarssamtal.outcomes.v1/0@3  ILLEGAL_TRANSITION  CONVERSATION_HELD in state DEFERRED  2025-03-11T09:00:00Z
EOF
        run ctldb dead-letters list --limit 1
        [[ ${#lines[@]} -eq 2 && ${lines[1]} == " 2  "* ]]
        run --separate-stderr ctldb dead-letters show 1
        [[ $status -eq 0 ]]
        diff -u - <(printf '%s\n' "$output") <<'EOF'
id               1
event id         33333333-3333-4333-8333-333333333331
received at      2025-03-12T09:00:00Z
topic            police.referrals.v1
partition        2
offset           17
reason           UNDECODABLE
detail           the message is not a PoliceReferral
payload bytes    4
replayed at      -
source key       PM-1
source ce id     ce-77
source event id  -
EOF
        no_personal_data <<<"$output"
        run ctldb dead-letters show 2 --json
        [[ $(jq -c . <<<"$output") == '{"id":2,"event_id":"33333333-3333-4333-8333-333333333332","received_at":"2025-03-10T12:00:00Z","topic":"allvarssamtal.outcomes.v1","partition":0,"offset":3,"reason":"ILLEGAL_TRANSITION","detail":"CONVERSATION_HELD in state DEFERRED","payload_bytes":null,"replayed_at":"2025-03-11T09:00:00Z","source_key":null,"source_ce_id":null,"source_event_id":null}' ]]
        run ctldb dead-letters list --json
        [[ $(jq -c '[.[] | [.id, .topic, .partition, .offset, .reason]]' <<<"$output") == \
                '[[1,"police.referrals.v1",2,17,"UNDECODABLE"],[2,"allvarssamtal.outcomes.v1",0,3,"ILLEGAL_TRANSITION"]]' ]]
        no_personal_data <<<"$output"
        run --separate-stderr ctldb dead-letters show 9
        [[ $status -eq 1 && $stderr == "allvarsctl dead-letters: no dead letter 9" ]]
}

@test "dead-letters replay: the stored payload goes back to its topic with its key and headers, once unless forced" {
        mock_start
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        [[ $output =~ ^replayed\ dead\ letter\ 1\ to\ police.referrals.v1\ \[([0-9])\]\ at\ offset\ 0$ ]]
        part=${BASH_REMATCH[1]}
        [[ $(sql "select replayed_at = '$NOW' from allvarsd.dead_letters where id = 1") == t ]]
        ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning --idle-exit 1500 > "$T/events"
        [[ $(wc -l < "$T/events") -eq 1 ]]
        # With its original key and headers (ce_id), not the dead letter's id.
        LC_ALL=C grep -aq "^police.referrals.v1/$part@0 key=PM-1 ce_id=ce-77 .*<4 bytes" "$T/events"
        # Once replayed, again only with --force.
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == *"was replayed at 2025-03-12T12:00:00Z; --force replays it again" ]]
        run --separate-stderr ctldb dead-letters replay 1 --bootstrap "$KAFKA" --force --json
        [[ $status -eq 0 ]]
        [[ $(jq -c . <<<"$output") == "{\"id\":1,\"topic\":\"police.referrals.v1\",\"partition\":$part,\"offset\":1,\"replayed_at\":\"$NOW\"}" ]]
        # A purged payload cannot be replayed; nothing more was produced.
        run --separate-stderr ctldb dead-letters replay 2 --bootstrap "$KAFKA" --force
        [[ $status -eq 1 && $stderr == "allvarsctl dead-letters: dead letter 2 has no payload any more (purged)" ]]
        ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --topic allvarssamtal.outcomes.v1 \
                --from-beginning --idle-exit 1500 > "$T/events"
        [[ $(wc -l < "$T/events") -eq 2 ]]
}

# ---------------------------------------------------------------------------- override

# The CaseOutcome lines on the outcomes topic.
outcome_events() {
        ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning --idle-exit 1500
}
outcome_has_key() { outcome_events | grep -q "key=$1 "; }
decided_at_least() { [[ $(decided_count) -ge $1 ]]; }

@test "override: a CaseOutcome from the social worker on the outcomes topic, keyed by the case id" {
        mock_start
        run --separate-stderr ctldb override R-1 --outcome MANUAL_REVIEW --reason-file <(echo "Needs a closer look") \
                --by anna.s --bootstrap "$KAFKA"
        [[ $status -eq 0 ]]
        [[ $output =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]]
        id=$output
        outcome_events > "$T/events"
        [[ $(wc -l < "$T/events") -eq 1 ]]
        line=$(cat "$T/events")
        [[ $line == "allvarssamtal.outcomes.v1/"*" key=00000000-0000-4000-8000-00000000000a ce_id=$id ce_type=se.allvarssamtal.v1.CaseOutcome "* ]]
        [[ $line == *"event_id: \"$id\""* ]]
        [[ $line == *'case_id: "00000000-0000-4000-8000-00000000000a"'* ]]
        [[ $line == *'actor: {kind: ACTOR_KIND_SOCIAL_WORKER, name: "anna.s"}'* ]]
        # The reason is free text about a child: masked unless shown on purpose (and audited).
        [[ $line == *'override: {outcome: OUTCOME_MANUAL_REVIEW, reason: (personal)}'* ]]
        [[ $line != *"Needs a closer look"* ]]
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB"
        [[ $status -eq 0 && $output == *'override: {outcome: OUTCOME_MANUAL_REVIEW, reason: "Needs a closer look"}'* ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN' and actor_kind = 'OPERATOR'
                  and case_id = '00000000-0000-4000-8000-00000000000a' and detail like '%ce_id=$id'") -eq 1 ]]
        # occurred_at is "now" (here: --now).
        [[ $line == *"occurred_at: $NOW"* ]]

        # By case id, with a fresh event id each time; the reason on standard input.
        run ctldb override 00000000-0000-4000-8000-00000000000e --outcome ELIGIBLE \
                --by bo.k --bootstrap "$KAFKA" < <(echo "Age was wrong")
        [[ $status -eq 0 && $output != "$id" ]]
        outcome_events > "$T/events"
        [[ $(wc -l < "$T/events") -eq 2 ]]
        grep -q 'key=00000000-0000-4000-8000-00000000000e .*referral_id: "R-5".*override: {outcome: OUTCOME_ELIGIBLE, reason: (personal)' "$T/events"
        ctl events --bootstrap "$KAFKA" --topic allvarssamtal.outcomes.v1 --from-beginning --idle-exit 1500 \
                --show-personal-data --database "dbname=$DB" | grep -q 'reason: "Age was wrong"'
}

@test "events: personal data masked by default; shown only to a role that may, audited; errors exit non-zero" {
        mock_start
        gen --count 3 --seed 31 --ids-out "$T/ids"
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning --idle-exit 1500
        [[ $status -eq 0 && ${#lines[@]} -eq 3 ]]
        # The input topics are decoded too; names, identity numbers, contacts and the narrative masked.
        [[ $output == *'ce_type= {referral_id: "gen-31-'* ]]
        [[ $output == *'given_name: (personal)'* && $output == *'narrative: (personal)'* ]]
        ! grep -Eq '(given_name|family_name|identity_number|birth_date|name|phone|postal_address|narrative): "' <<<"$output"
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --json
        [[ $status -eq 0 && $(jq -r .topic <<<"${lines[0]}") == police.referrals.v1 ]]
        [[ $(jq -r .message <<<"${lines[0]}") == *'given_name: (personal)'* ]]

        # Shown: only with a connection whose role may read the personal rows, each case audited first.
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB"
        [[ $status -eq 0 && ${#lines[@]} -eq 3 && $output == *'given_name: "'* ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN'") -eq 3 ]]
        RT_USER=ctl_ev_$$_$RANDOM
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" -c "CREATE ROLE $RT_USER LOGIN; GRANT USAGE ON SCHEMA allvarsd TO $RT_USER;
                GRANT SELECT ON allvarsd.cases TO $RT_USER" >/dev/null
        run --separate-stderr ctl events --bootstrap "$KAFKA" --topic police.referrals.v1 --from-beginning \
                --idle-exit 1500 --show-personal-data --database "dbname=$DB user=$RT_USER"
        [[ $status -eq 1 && -z $output && $stderr == *"may not read personal data"* ]]
        [[ $(sql "select count(*) from allvarsd.audit where action = 'PERSONAL_DATA_SHOWN'") -eq 3 ]]

        # Usage errors exit 2; an unreachable cluster exits 1 (a missing topic: tests/e2e/real-kafka.bats,
        # the mock cluster creates every topic asked for).
        run --separate-stderr ctl events --bootstrap "$KAFKA" --idle-exit abc
        [[ $status -eq 2 && $stderr == *"--idle-exit"* ]]
        run --separate-stderr ctl events --bootstrap 127.0.0.1:1 --idle-exit 100
        [[ $status -eq 1 ]]
}

@test "override: unknown cases and bad arguments send nothing" {
        mock_start
        run --separate-stderr ctldb override R-404 --outcome ELIGIBLE --reason-file <(echo x) --by a --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == "allvarsctl override: no case or referral with the id R-404" ]]
        for args in "R-1 --outcome MAYBE --reason-file /dev/null --by a" "R-1 --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason-file /dev/null" "--outcome ELIGIBLE --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason-file /dev/null --by a --wait soon" \
                "R-1 R-2 --outcome ELIGIBLE --reason-file /dev/null --by a" \
                "R-1 --outcome ELIGIBLE --reason x --by a"; do
                # shellcheck disable=SC2086
                run --separate-stderr ctldb override $args --bootstrap "$KAFKA"
                [[ $status -eq 2 && -z $output && $(wc -l <<<"$stderr") -eq 1 ]] || { echo "$args: $status $stderr"; false; }
        done
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason-file /nonexistent --by a --bootstrap "$KAFKA"
        [[ $status -eq 1 && $stderr == *"/nonexistent: No such file"* ]]
        # Never on the command line (/proc/PID/cmdline, the shell's history).
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason "Free text" --by a --bootstrap "$KAFKA"
        [[ $status -eq 2 && $stderr == *"not on the command line"* ]]
        # A blank reason (standard input here is empty) is refused by the daemon's own validation, before sending.
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --reason-file <(printf '  \n') --by a --bootstrap "$KAFKA"
        [[ $status -eq 2 && $stderr == *"override.reason is required"* ]]
        run --separate-stderr ctldb override R-1 --outcome ELIGIBLE --by a --bootstrap "$KAFKA" < /dev/null
        [[ $status -eq 2 && $stderr == *"override.reason is required"* ]]
        [[ -z $(outcome_events) ]]
}

@test "override --wait: reports applied, rejected, or not applied in time" {
        mock_start
        # allvarsd's part is played by SQL here: it records the event once it sees it.
        ctldb override R-1 --outcome MANUAL_REVIEW --reason-file <(echo Check) --by anna.s --bootstrap "$KAFKA" --wait 20 \
                > "$T/out" 2> "$T/err" &
        pid=$!
        wait_for 10 grep -q . "$T/out"
        id=$(head -1 "$T/out")
        sql "UPDATE allvarsd.cases SET state = 'MANUAL_REVIEW', outcome = 'MANUAL_REVIEW'
             WHERE case_id = '00000000-0000-4000-8000-00000000000a';
             INSERT INTO allvarsd.outcome_events VALUES ('$id', '00000000-0000-4000-8000-00000000000a', 'OVERRIDE',
             '$NOW', '2025-03-12T12:00:01Z', 'allvarssamtal.outcomes.v1', 0, 0)"
        rc=0
        wait "$pid" || rc=$?
        [[ $rc -eq 0 ]]
        [[ $(sed -n 2p "$T/out") == "applied at 2025-03-12T12:00:01Z: the case is now MANUAL_REVIEW (outcome MANUAL_REVIEW)" ]]
        [[ ! -s $T/err ]]

        # Rejected: a dead letter at the event's position.
        ctldb override R-4 --outcome ELIGIBLE --reason-file <(echo Reopen) --by anna.s --bootstrap "$KAFKA" --wait 20 --json \
                > "$T/out" 2> "$T/err" &
        pid=$!
        wait_for 10 outcome_has_key 00000000-0000-4000-8000-00000000000d
        pos=$(outcome_events | grep 'key=00000000-0000-4000-8000-00000000000d' | sed 's,^allvarssamtal.outcomes.v1/\([0-9]*\)@\([0-9]*\) .*,\1 \2,')
        read -r p o <<<"$pos"
        sql "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset, reason, detail,
             payload, received_at) VALUES ('44444444-4444-4444-8444-444444444444', 'allvarssamtal.outcomes.v1', $p, $o,
             'ILLEGAL_TRANSITION', 'OVERRIDE in state HELD', '\x00', '$NOW')"
        rc=0
        wait "$pid" || rc=$?
        [[ $rc -eq 1 ]]
        [[ $(jq -r .result "$T/out") == rejected ]]
        [[ $(jq -c '.dead_letter | [.reason, .detail]' "$T/out") == '["ILLEGAL_TRANSITION","OVERRIDE in state HELD"]' ]]
        [[ $(jq -r .case_id "$T/out") == 00000000-0000-4000-8000-00000000000d ]]
        grep -q '^allvarsctl override: rejected by allvarsd: ILLEGAL_TRANSITION: OVERRIDE in state HELD (dead letter 3)$' "$T/err"

        # Nobody applies it.
        run --separate-stderr ctldb override R-2 --outcome ELIGIBLE --reason-file <(echo x) --by a --bootstrap "$KAFKA" --wait 1
        [[ $status -eq 1 && ${#lines[@]} -eq 1 && $stderr == *"not applied within 1 s"* ]]
}

@test "override through allvarsd: applied once, audited, the case changes" {
        [[ -x $BUILD/allvarsd && -x $BUILD/tests/referral-gen ]] || skip "allvarsd or referral-gen not built"
        sql "DROP SCHEMA allvarsd CASCADE"
        mock_start
        daemon_conf a
        daemon_migrate a
        daemon_start a
        daemon_ready a
        gen --count 20 --seed 5 --ids-out "$T/ids"
        wait_for 60 decided_at_least "$(expected_ids "$T/ids" | wc -l)"
        case_id=$(sql "select case_id from allvarsd.cases where closed_at is null order by case_id limit 1")
        [[ -n $case_id ]]
        run --separate-stderr ctl_as_operator a override "$case_id" --outcome NOT_ELIGIBLE \
                --reason-file <(echo "Handled in another case") --by anna.s --wait 60
        [[ $status -eq 0 ]] || { echo "$output $stderr"; cat "$T/a.log"; false; }
        [[ ${lines[1]} == "applied at "*": the case is now NOT_ELIGIBLE (outcome NOT_ELIGIBLE)" ]]
        run ctl_as_operator a case "$case_id" --json
        [[ $(jq -r .case.outcome <<<"$output") == NOT_ELIGIBLE ]]
        [[ $(jq -c '[.audit[] | select(.action == "OVERRIDDEN") | [.who, .reason_recorded]]' <<<"$output") == \
                '[["SOCIAL_WORKER:anna.s",true]]' ]]
        [[ $(jq '.events | length' <<<"$output") -eq 1 ]]
}

# ---------------------------------------------------------------------------- usage, connection, config

@test "usage errors exit 2 with one line on stderr; --help exits 0" {
        for args in "status --bogus" "status extra" "cases --limit x" "cases --state FLYING" "cases --district" \
                "dead-letters frob" "dead-letters show" "dead-letters show x" "dead-letters show 1 --limit 2" \
                "dead-letters list --force" "case" "status --now yesterday" "check-config --json" "migrate extra"; do
                # shellcheck disable=SC2086
                run --separate-stderr ctl $args
                [[ $status -eq 2 && -z $output && $(wc -l <<<"$stderr") -eq 1 && $stderr == "allvarsctl "* ]] ||
                        { echo "$args: $status '$stderr'"; false; }
        done
        for c in status cases case override dead-letters migrate check-config; do
                run --separate-stderr ctl "$c" --help
                [[ $status -eq 0 && $output == Usage:\ allvarsctl\ $c* && -z $stderr ]] || { echo "$c"; false; }
        done
}

@test "connection: --database, the PG* environment, a configuration file, and their failures" {
        # libpq's environment when neither --database nor --config is given (and no default file exists).
        if [[ ! -e /etc/allvarsd/allvarsd.conf ]]; then
                run env PGDATABASE="$DB" "$BUILD/allvarsctl" cases --state DEFERRED --json
                [[ $status -eq 0 && $(jq -r '.[0].case_id' <<<"$output") == 00000000-0000-4000-8000-00000000000c ]]
        fi
        run --separate-stderr ctl status --database "host=$PGHOST port=$PGPORT dbname=${DB}_missing"
        [[ $status -eq 1 && $(wc -l <<<"$stderr") -eq 1 && $stderr == "allvarsctl status: cannot connect to PostgreSQL: "* ]]
        # A configuration that cannot be loaded (here: an unknown key) says so and points to --database.
        printf 'database.conninfo = dbname=%s\nno.such.key = 1\n' "$DB" > "$T/bad.conf"
        run --separate-stderr ctl status --config "$T/bad.conf"
        [[ $status -eq 1 && $(wc -l <<<"$stderr") -eq 1 && $stderr == *"no.such.key"*"--database CONNINFO"* ]]
        # allvarsctl's own file needs no pepper (the daemon's, named with --config, may have one).
        printf 'database.conninfo = host=%s port=%s user=%s dbname=%s\n' \
                "$PGHOST" "$PGPORT" "$PGUSER" "$DB" > "$T/good.conf"
        run --separate-stderr ctl dead-letters --config "$T/good.conf" --json
        [[ $status -eq 0 && $(jq length <<<"$output") -eq 2 ]]
        head -c 48 /dev/urandom > "$T/pepper"
        echo "pepper = @file:$T/pepper" >> "$T/good.conf"
        run --separate-stderr ctl dead-letters --config "$T/good.conf" --json
        [[ $status -eq 0 && $(jq length <<<"$output") -eq 2 ]]
        # The tool only reads, except where it must write (replay).
        run --separate-stderr ctl status --database "dbname=$DB" --json
        [[ $status -eq 0 ]]
}

@test "the operator role (schemas/006_operator_role.sql) is enough for every command, and reads personal data only audited" {
        mock_start
        user=ctl_op_$$_$RANDOM
        RT_USER=$user
        # Roles are cluster-wide: create the operator role once, race-free, and a login of our own in it.
        psql -Xq -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<EOF
DO \$\$ BEGIN CREATE ROLE allvarsd_operator NOLOGIN; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END \$\$;
CREATE ROLE $user LOGIN IN ROLE allvarsd_operator;
SELECT allvarsd.grant_all();
EOF
        db="dbname=$DB user=$user"
        ctl status --database "$db" --now "$NOW" --json --bootstrap "$KAFKA" | jq -e '.summary.open_cases == 4'
        # check reads the instances and pg_locks too: a verdict, not UNKNOWN (3).
        run --separate-stderr ctl check --database "$db" --now "$NOW"
        [[ $status -eq 2 && -z $stderr ]]
        ctl cases --database "$db" --now "$NOW" --overdue | grep -q 00000000-0000-4000-8000-00000000000b
        ctl case R-1 --database "$db" --now "$NOW" --json | jq -e '.audit | length == 3'
        ctl dead-letters show 1 --database "$db" | grep -Eq '^payload bytes +4$'
        ctl dead-letters replay 1 --database "$db" --bootstrap "$KAFKA" --by anna.s | grep -q '^replayed dead letter 1 '
        ctl override R-1 --database "$db" --bootstrap "$KAFKA" --outcome ELIGIBLE --reason-file <(echo x) --by a
        [[ $(sql "select replayed_at is not null from allvarsd.dead_letters where id = 1") == t ]]
        # Personal data: only with --personal, and the read is in the case's audit trail.
        run --separate-stderr ctl case R-1 --database "$db" --personal --by anna.s
        [[ $status -eq 0 && $output == *"identity number"* ]]
        [[ $(sql "select string_agg(actor_kind || ':' || actor_name || ' ' || action || ' ' || after, ',' order by id)
                  from allvarsd.audit where actor_kind = 'OPERATOR'") == \
           "OPERATOR:anna.s DEAD_LETTER_READ db_user=$user;dead_letter=1,OPERATOR:anna.s DEAD_LETTER_REPLAYED db_user=$user;dead_letter=1,OPERATOR:anna.s PERSONAL_DATA_READ db_user=$user" ]]
        ctl case R-1 --database "$db" --now "$NOW" --json | jq -e '.audit | map(select(.action == "PERSONAL_DATA_READ")) | length == 1'
        # It cannot read personal tables, nor write anything, itself.
        run psql -Xq -d "$db" -c "select identity_number from allvarsd.referral_personal"
        [[ $status -ne 0 && $output == *"permission denied"* ]]
        run psql -Xq -d "$db" -c "update allvarsd.cases set state = 'HELD'"
        [[ $status -ne 0 && $output == *"permission denied"* ]]
}

@test "check-config prints the effective values; a bad file fails with one line" {
        head -c 48 /dev/urandom > "$T/pepper"
        chmod 600 "$T/pepper"
        printf 'database.conninfo = dbname=%s\npepper = @file:%s\ntopics.outcomes = my.outcomes\nkafka.bootstrap.servers = 127.0.0.1:1\n' \
                "$DB" "$T/pepper" > "$T/c.conf"
        run --separate-stderr ctl check-config --config "$T/c.conf"
        [[ $status -eq 0 ]]
        grep -q '^topics.outcomes = my.outcomes$' <<<"$output"
        [[ ${lines[-1]} == "# $T/c.conf: OK" ]]
        if grep -q "$(od -An -tx1 "$T/pepper" | tr -d ' \n' | cut -c1-16)" <<<"$output"; then false; fi
        echo "no.such.key = 1" >> "$T/c.conf"
        run --separate-stderr ctl check-config --config "$T/c.conf"
        [[ $status -eq 1 && -z $output && $(wc -l <<<"$stderr") -eq 1 && $stderr == *no.such.key* ]]
}

@test "migrate applies the schema once, like allvarsd --migrate" {
        createdb "${DB}_m"
        run --separate-stderr ctl migrate --database "dbname=${DB}_m" --schemas "$ROOT/schemas"
        st=$status out=$output err=$stderr
        n=$(ls "$ROOT"/schemas/*.sql | wc -l)
        run2=$(ctl migrate --database "dbname=${DB}_m" --schemas "$ROOT/schemas" 2>/dev/null) || true
        tables=$(psql -XAtq -d "${DB}_m" -c "select count(*) from information_schema.tables where table_schema = 'allvarsd'")
        dropdb --force "${DB}_m"
        [[ $st -eq 0 ]] || { echo "$err"; false; }
        [[ $out == "$n migration(s) applied; the schema is at version "* ]]
        [[ $run2 == "0 migration(s) applied; the schema is at version "* ]]
        [[ $tables -ge 13 ]]
}
