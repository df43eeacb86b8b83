-- The report's test data: 600 referrals from 2025-01-01 to 2025-03-29 in
-- three districts and, every 50th, a small one (angered), with every
-- situation the report counts, as the batches and the lifecycle leave them:
-- the pseudonymous rows, and the personal rows the retention purge removes.
-- Deterministic: each attribute is a function of the referral's number i.
SET search_path = allvarsd;

CREATE TEMP TABLE g AS
SELECT i,
       CASE WHEN i % 50 = 0 THEN 'angered' ELSE (ARRAY['centrum', 'hisingen', 'nordost'])[1 + i % 3] END AS district,
       '2025-01-01T08:00:00Z'::timestamptz + i * interval '3 hours 30 minutes' AS reported_at,
       i % 10 AS j,
       decode(md5('p' || (i % 200)) || md5('q' || (i % 200)), 'hex') AS person_key,
       md5('case-' || i)::uuid AS case_id
  FROM generate_series(1, 600) AS i;

INSERT INTO persons (person_key, first_seen_at)
SELECT DISTINCT ON (person_key) person_key, '2025-01-01T00:00:00Z' FROM g;

INSERT INTO referrals (referral_id, case_id, person_key, marks, district, reported_at, incident_at, feedback_requested,
        police_case_number, reporting_unit, source_topic, source_partition, source_offset, received_at)
SELECT 'R-' || i, case_id, person_key, 1, district, reported_at, reported_at - (i % 20) * interval '1 day', i % 2 = 0,
       '5000-K' || i || '-25', 'PO', 'police.referrals.v1', i % 4, i, reported_at + interval '2 seconds'
  FROM g;

INSERT INTO referral_personal (referral_id, identity_number, birth_date, given_name, family_name, narrative, payload)
SELECT 'R-' || i, '20110101' || lpad((i % 1000)::text, 4, '0'), '', 'Barn', 'Barnsson', 'A narrative', '\x00'
  FROM g;

CREATE TEMP TABLE dd AS
SELECT g.*,
       CASE WHEN j <= 4 THEN 'ELIGIBLE' WHEN j <= 6 THEN 'NOT_ELIGIBLE' WHEN j <= 8 THEN 'DEFERRED'
            ELSE 'MANUAL_REVIEW' END AS outcome,
       CASE j WHEN 5 THEN 'ABOVE_MAX_AGE'
              WHEN 6 THEN 'NO_QUALIFYING_CONCERN' || CASE WHEN i % 4 = 0 THEN ',NOT_FIRST_SUSPICION' ELSE '' END
              WHEN 7 THEN 'PROTECTIVE_ASSESSMENT_FIRST' || CASE WHEN i % 3 = 0 THEN ',PRELIMINARY_INVESTIGATION' ELSE '' END
              WHEN 8 THEN 'PRELIMINARY_INVESTIGATION'
              WHEN 9 THEN 'AGE_UNKNOWN' ELSE '' END AS reasons,
       concat_ws(',', CASE WHEN i % 7 = 0 THEN 'CONTACT_MISSING' END, CASE WHEN i % 20 > 14 THEN 'LATE_REFERRAL' END)
         AS flags,
       CASE WHEN i % 13 = 0 THEN 'stockholm-2019' ELSE 'goteborg-motion-2024' END AS profile_name,
       CASE WHEN j = 7 OR j = 9 OR j = 6 THEN reported_at + interval '24 hours' END AS pad
  FROM g;

INSERT INTO decisions (referral_id, outcome, reasons, flags, age, deadline, deadline_kind, protective_assessment_due,
        profile_name, profile_version, profile_params, prior_referrals, prior_qualifying, decided_at)
SELECT 'R-' || i, outcome, reasons, flags, CASE WHEN j = 9 THEN NULL ELSE 14 END,
       CASE WHEN outcome = 'ELIGIBLE' THEN reported_at + interval '48 hours' END,
       CASE WHEN outcome = 'ELIGIBLE' THEN 'CONVERSATION' END, pad, profile_name, 1, 'limit_hours=48', 0, 0,
       reported_at + interval '2 seconds'
  FROM dd;

-- Cases: ELIGIBLE j 0-2 held (after 2 to 61 hours), 3 declined, 4 still
-- eligible (missed); DEFERRED stays deferred; MANUAL_REVIEW cancelled.
INSERT INTO cases (case_id, referral_id, district, state, outcome, profile_name, limit_seconds, deadline,
        deadline_kind, protective_assessment_due, awaiting_assessment, awaiting_clearance, awaiting_contact,
        scheduled_at, police_attending, held_at, closed_at, feedback_requested, created_at, updated_at)
SELECT case_id, 'R-' || i, district,
       CASE WHEN j <= 2 THEN 'HELD' WHEN j = 3 THEN 'DECLINED' WHEN j = 4 THEN 'ELIGIBLE' WHEN j <= 8 THEN 'DEFERRED'
            ELSE 'CANCELLED' END,
       outcome, profile_name, 172800,
       CASE WHEN outcome = 'ELIGIBLE' THEN reported_at + interval '48 hours' END,
       CASE WHEN outcome = 'ELIGIBLE' THEN 'CONVERSATION' END,
       CASE WHEN i % 3 = 1 THEN pad END, pad IS NOT NULL AND i % 3 = 1, j = 8, i % 7 = 0,
       NULL, j <= 2 AND i % 4 = 0,
       CASE WHEN j <= 2 THEN reported_at + ((i * 7) % 60 + 2) * interval '1 hour' END,
       CASE WHEN j <= 2 THEN reported_at + ((i * 7) % 60 + 2) * interval '1 hour'
            WHEN j = 3 THEN reported_at + interval '30 hours' WHEN j = 9 THEN reported_at + interval '5 days' END,
       i % 2 = 0, reported_at + interval '2 seconds', reported_at + interval '2 seconds'
  FROM dd WHERE outcome <> 'NOT_ELIGIBLE';

INSERT INTO case_alerts (case_id, kind, due_at, raised_at)
SELECT case_id, 'MISSED', reported_at + interval '48 hours', reported_at + interval '48 hours 5 seconds'
  FROM dd WHERE j = 4;

INSERT INTO assessment_duties (case_id, referral_id, district, due_at, recorded_at, created_at)
SELECT case_id, 'R-' || i, district, pad,
       CASE WHEN i % 3 <> 1 THEN reported_at + (i % 40) * interval '1 hour' END, reported_at + interval '2 seconds'
  FROM dd WHERE outcome = 'NOT_ELIGIBLE' AND pad IS NOT NULL;

CREATE TEMP TABLE ev (case_id uuid, kind text, occurred_at timestamptz, participants text[], follow_up text[]);
INSERT INTO ev
SELECT case_id, 'CONVERSATION_HELD', reported_at + ((i * 7) % 60 + 2) * interval '1 hour',
       array_remove(ARRAY['CHILD', CASE WHEN i % 5 <> 0 THEN 'GUARDIANS' END, CASE WHEN i % 4 = 0 THEN 'POLICE' END,
                          'SOCIAL_SERVICES'], NULL),
       (ARRAY[ARRAY['NONE', 'NONE'], ARRAY['ADVICE_SUPPORT', 'ADVICE_SUPPORT'], ARRAY['OPEN_CARE', 'ADVICE_SUPPORT'],
              ARRAY['INVESTIGATION', 'INVESTIGATION'], ARRAY['OTHER', 'OTHER']])[1 + i % 5:1 + i % 5][1:2]
  FROM dd WHERE j <= 2;
INSERT INTO ev
SELECT case_id, 'PROTECTIVE_ASSESSMENT_RECORDED', reported_at + (i % 40) * interval '1 hour', NULL, NULL
  FROM dd WHERE pad IS NOT NULL AND i % 3 <> 1;
INSERT INTO ev
SELECT case_id, 'INVESTIGATION_CLEARED', reported_at + (i % 70) * interval '1 hour', NULL, NULL
  FROM dd WHERE reasons LIKE '%PRELIMINARY_INVESTIGATION%' AND i % 2 = 0;
INSERT INTO ev
SELECT case_id, 'CONTACT_DETAILS_SUPPLIED', reported_at + (i % 50) * interval '1 hour', NULL, NULL
  FROM dd WHERE flags LIKE '%CONTACT_MISSING%' AND i % 2 = 1 AND outcome <> 'NOT_ELIGIBLE';

INSERT INTO outcome_events (event_id, case_id, kind, occurred_at, applied_at, source_topic, source_partition,
        source_offset, participants, follow_up)
SELECT 'ev-' || row_number() OVER (), case_id, kind, occurred_at, occurred_at, 'allvarssamtal.outcomes.v1', 0,
       row_number() OVER (), participants, (SELECT array_agg(DISTINCT x) FROM unnest(follow_up) x)
  FROM ev;

INSERT INTO case_contacts (case_id, ordinal, name, phone, supplied_at)
SELECT case_id, 1, 'Förälder', '+46701234567', reported_at FROM dd WHERE outcome <> 'NOT_ELIGIBLE';
