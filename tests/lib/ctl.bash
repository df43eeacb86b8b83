# What the allvarsctl tests share (tests/integration/ctl.bats, ctl-ops.bats):
# a PostgreSQL server (the runner's, or one of the file's own), a database per
# test with the schema applied by psql and a fixed set of cases, allvarsctl
# against it, and the check that no output carries the fixture's personal data.
# Loaded by bats (load ../lib/ctl.bash); needs tests/lib/daemon.bash loaded first.

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
 -- The PoliceReferral (protoc --encode) of: referral_id "R-1", police_case_number "5000-K123-25",
 -- reported 2025-03-11T10:00:00Z, incident 2025-03-10T20:00:00Z, district "hisingen", subject
 -- {identity_number "201001012384", birth_date "2010-01-01", given_name "Testina", family_name
 -- "Exempelsson"}, CONCERN_SUSPECTED_CRIME, feedback_requested, reporting_unit "PO Hisingen",
 -- narrative "A secret narrative about Testina".
 ('R-1', '\x0a03522d31120c353030302d4b3132332d32351a0608a093c0be06220608c089bdbe062a08686973696e67656e32300a0c323031303031303132333834120a323031302d30312d30311a0754657374696e61220b4578656d70656c73736f6e42010360016a0b504f20486973696e67656e72204120736563726574206e61727261746976652061626f75742054657374696e61');
INSERT INTO profile_params (params_key, params) VALUES
 (md5('min_age=10;max_age=17;limit_hours=48')::uuid, 'min_age=10;max_age=17;limit_hours=48');
INSERT INTO decisions (referral_id, outcome, reasons, flags, age, deadline, deadline_kind, protective_assessment_due,
        profile_name, profile_version, params_key, prior_referrals, prior_qualifying, decided_at) VALUES
 ('R-1', 'ELIGIBLE', '', 'CONTACT_MISSING', 15, '2025-03-13T10:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  md5('min_age=10;max_age=17;limit_hours=48')::uuid, 0, 0, '2025-03-11T10:00:02Z'),
 ('R-2', 'ELIGIBLE', '', '', 12, '2025-03-12T08:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  md5('min_age=10;max_age=17;limit_hours=48')::uuid, 0, 0, '2025-03-10T08:00:01Z'),
 ('R-3', 'DEFERRED', 'PROTECTIVE_ASSESSMENT_FIRST,PRELIMINARY_INVESTIGATION', '', 14, NULL, NULL, '2025-03-13T06:00:00Z',
  'goteborg-motion-2024', 1, md5('min_age=10;max_age=17;limit_hours=48')::uuid, 0, 0, '2025-03-12T06:00:01Z'),
 ('R-4', 'ELIGIBLE', '', '', 16, '2025-03-10T10:00:00Z', 'CONVERSATION', NULL, 'goteborg-motion-2024', 1,
  md5('min_age=10;max_age=17;limit_hours=48')::uuid, 0, 0, '2025-03-08T10:00:01Z'),
 ('R-5', 'NOT_ELIGIBLE', 'ABOVE_MAX_AGE', '', 19, NULL, NULL, NULL, 'goteborg-motion-2024', 1,
  md5('min_age=10;max_age=17;limit_hours=48')::uuid, 0, 0, '2025-03-12T07:00:01Z'),
 ('R-6', 'ELIGIBLE', '', 'UNDER_15,REPEAT_REFERRAL', 13, '2025-03-14T10:00:00Z', 'CONVERSATION', NULL,
  'goteborg-motion-2024', 1, md5('min_age=10;max_age=17;limit_hours=48')::uuid, 2, 0, '2025-03-12T10:00:01Z');
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
        ! grep -Eiq 'testina|exempelsson|201001012384|2010-01-01|narrative|provmamma|46701234567|example\.se|storgatan|deadbeef|0a03522d31|talked to' "$@"
}

# ---------------------------------------------------------------------------- status
