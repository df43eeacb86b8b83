#!/usr/bin/env bats
# allvarsctl's views for operators and social workers (status, check, cases,
# case) against a real PostgreSQL server (PGHOST/PGPORT/PGUSER from
# tests/lib/pg.sh; started here when not given). Each test gets a database of
# its own with the schema applied by psql and a fixed set of cases
# (tests/lib/ctl.bash), and checks the exact output of the tables and, through
# jq, of the JSON. The commands that act: ctl-ops.bats.

bats_require_minimum_version 1.5.0

load ../lib/daemon.bash
load ../lib/ctl.bash

@test "status: positions, outbox, dead letters, cases by district and state, alerts of the last day" {
        sql "INSERT INTO allvarsd.partition_gaps VALUES ('allvarsd', 'police.referrals.v1', 1, 40, 44, 44,
             '2025-03-12T09:30:00Z')"
        # The relay's lock held in another database is not this one's (0 holders).
        relay_lock_elsewhere
        run --separate-stderr ctldb status
        relay_lock_elsewhere_end
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
        # Another database on the same server has its own relay: its lock is not
        # this database's (an advisory lock belongs to the database it is taken in).
        relay_lock_elsewhere
        run --separate-stderr ctldb check
        [[ $status -eq 2 && ${#lines[@]} -eq 1 ]]
        [[ $output == "ALLVARSD CRITICAL - no running instance (no heartbeat in 60 s); no instance holds the outbox relay; oldest unsent event 5400 s old; 1 open case(s) past their deadline | instances=0;;1:;0; relay_holders=0;;1:;0; outbox_age=5400s;60;300;0; overdue_cases=1;0;;0; dead_letters_1h=0;0;;0;" ]]
        # A running instance, a session that holds the relay's lock, the outbox
        # empty: a WARNING for the overdue case.
        instances
        sql "DELETE FROM allvarsd.outbox"
        psql -XAtq -d "$DB" -c "SELECT pg_advisory_lock(x'616c6c7661727364'::bigint)" -c "SELECT pg_sleep(30)" >/dev/null &
        locker=$!
        wait_for 10 bash -c "[[ \$(psql -XAtq -d $DB -c \"select count(*) from pg_locks where locktype = 'advisory' and granted
                and database = (select oid from pg_database where datname = current_database())\") -eq 1 ]]"
        run --separate-stderr ctldb check
        st=$status out=$output
        # Thresholds as options; "off" turns one off.
        run --separate-stderr ctldb check --overdue-warning off
        st2=$status out2=$output
        run --separate-stderr ctldb check --overdue-warning off --overdue-critical 0
        st3=$status
        kill "$locker"; wait "$locker" 2>/dev/null || true
        relay_lock_elsewhere_end
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
INSERT INTO decisions (referral_id, outcome, reasons, flags, age, deadline, deadline_kind, protective_assessment_due,
        profile_name, profile_version, params_key, prior_referrals, prior_qualifying, decided_at)
SELECT 'R-' || n, 'ELIGIBLE', '', '', 15, '2025-03-12T09:00:00Z',
       CASE WHEN n = 9 THEN 'CONVERSATION' ELSE 'SUMMONS' END, NULL, 'ds-2024-30', 1, md5('limit_hours=24')::uuid, 0, 0,
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
