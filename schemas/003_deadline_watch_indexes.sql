-- allvarsd schema, version 3: the deadline watch reads only the cases that are due.
--
-- Before, each pass (deadline_watch.c) tested every open case against an OR
-- of three anti-joins: 0.8-2 s with 380,000 open cases, on the connection the
-- batch needs (bench/README.md "What limits the daemon"). Now each alert kind
-- is a range scan of its own partial index on its due time, and a case leaves
-- that index once its alert for the current due time is in case_alerts:
--
--   <kind>_alerted_due  the due time (deadline, or protective_assessment_due)
--                       whose alert of that kind case_alerts holds; written by
--                       the watch, in the transaction that locks the case,
--                       only when that case_alerts row exists. A hint, never
--                       the truth: the watch still inserts ON CONFLICT DO
--                       NOTHING on case_alerts' primary key. A deadline that
--                       moves differs from the mark, so the case is watched
--                       again, at its new due time.
--
-- Nothing else writes the marks; NULL (a new case, or an alert the batch
-- raised on arrival) only means the watch looks once more.
-- Self-contained: it needs only 001_initial.sql. Safe to run again (IF NOT
-- EXISTS; the UPDATE only sets marks that case_alerts backs).

SET LOCAL search_path = allvarsd;

ALTER TABLE cases
        ADD COLUMN IF NOT EXISTS at_risk_alerted_due timestamptz,
        ADD COLUMN IF NOT EXISTS missed_alerted_due timestamptz,
        ADD COLUMN IF NOT EXISTS assessment_alerted_due timestamptz;

-- The alerts raised so far, so that the first pass after the upgrade does not
-- lock every case whose alerts were all raised. Open cases only: the watch
-- never reads closed ones.
UPDATE cases c
   SET at_risk_alerted_due = CASE WHEN m.at_risk THEN c.deadline END,
       missed_alerted_due = CASE WHEN m.missed THEN c.deadline END,
       assessment_alerted_due = CASE WHEN m.assessment THEN c.protective_assessment_due END
  FROM (SELECT c2.case_id,
               EXISTS (SELECT 1 FROM case_alerts a WHERE a.case_id = c2.case_id AND a.kind = 'AT_RISK'
                          AND a.due_at = c2.deadline) AS at_risk,
               EXISTS (SELECT 1 FROM case_alerts a WHERE a.case_id = c2.case_id AND a.kind = 'MISSED'
                          AND a.due_at = c2.deadline) AS missed,
               EXISTS (SELECT 1 FROM case_alerts a WHERE a.case_id = c2.case_id
                          AND a.kind = 'PROTECTIVE_ASSESSMENT_OVERDUE'
                          AND a.due_at = c2.protective_assessment_due) AS assessment
          FROM cases c2
         WHERE c2.closed_at IS NULL) m
 WHERE c.case_id = m.case_id AND (m.at_risk OR m.missed OR m.assessment);

-- AT_RISK: ELIGIBLE, deadline - limit * (1 - fraction) <= now < deadline. The
-- limit leads: the watch walks its few distinct values (a loose index scan)
-- and reads one deadline range per limit, so that a 14-day limit's long
-- at-risk window does not pull in every 24 h and 48 h case.
CREATE INDEX IF NOT EXISTS cases_watch_at_risk ON cases (limit_seconds, deadline)
        WHERE closed_at IS NULL AND state = 'ELIGIBLE' AND at_risk_alerted_due IS DISTINCT FROM deadline;

-- MISSED: deadline <= now, ELIGIBLE or SCHEDULED for a CONVERSATION deadline
-- (a SCHEDULED SUMMONS case met its deadline: DS 2024:30).
CREATE INDEX IF NOT EXISTS cases_watch_missed ON cases (deadline)
        WHERE closed_at IS NULL
          AND (state = 'ELIGIBLE' OR (state = 'SCHEDULED' AND deadline_kind IS DISTINCT FROM 'SUMMONS'))
          AND missed_alerted_due IS DISTINCT FROM deadline;

-- PROTECTIVE_ASSESSMENT_OVERDUE: awaited and protective_assessment_due <= now.
CREATE INDEX IF NOT EXISTS cases_watch_assessment ON cases (protective_assessment_due)
        WHERE closed_at IS NULL AND awaiting_assessment
          AND assessment_alerted_due IS DISTINCT FROM protective_assessment_due;
