-- Version 10: the protective assessment of every child, what a conversation
-- led to, and the indexes of `allvarsctl report`.
--
-- 1. A referral about a child (under 18, or of unknown age) with acute risk
--    owes a protective assessment (SoL 11 kap. 1 a §; docs/domain.md
--    "Protective assessment") whatever the conversation decision. A case
--    carries its own (cases.awaiting_assessment); a NOT_ELIGIBLE referral
--    opens none, so its duty is a row of assessment_duties, written by the
--    referral batch, closed by PROTECTIVE_ASSESSMENT_RECORDED (by case id:
--    every referral has one) and alerted once by the deadline watch. When an
--    override opens a case for the referral, the case takes the duty over.
-- 2. CONVERSATION_HELD tells who took part and what followed
--    (proto/allvarssamtal/v1/outcome.proto): codes, never free text, kept on
--    the event's row in outcome_events (pseudonymous, kept by the purge).
-- 3. The report reads the pseudonymous tables by reported_at, a person's
--    later referrals, and each case's outcome events.
--
-- Self-contained: needs only 001_initial.sql. Safe to run again.

SET LOCAL search_path = allvarsd;

CREATE TABLE IF NOT EXISTS assessment_duties (
        case_id         uuid PRIMARY KEY,              -- referrals.case_id (no cases row)
        referral_id     text NOT NULL UNIQUE,          -- referrals.referral_id
        district        text NOT NULL,
        due_at          timestamptz NOT NULL,          -- reported_at + protective_assessment_hours
        recorded_at     timestamptz,                   -- the PROTECTIVE_ASSESSMENT_RECORDED event's occurred_at
        alerted_due     timestamptz,                   -- due_at once PROTECTIVE_ASSESSMENT_OVERDUE was raised
        alerted_at      timestamptz,                   -- when it was raised
        created_at      timestamptz NOT NULL
);
COMMENT ON TABLE assessment_duties IS
        'Protective assessments owed for referrals without a case (NOT_ELIGIBLE children with acute risk)';

-- The deadline watch (deadline_watch.c): the duties not yet recorded nor alerted.
CREATE INDEX IF NOT EXISTS assessment_duties_watch ON assessment_duties (due_at)
        WHERE recorded_at IS NULL AND alerted_due IS NULL;
-- The overdue figure of the periodic jobs (instances.c): the duties not recorded.
CREATE INDEX IF NOT EXISTS assessment_duties_pending ON assessment_duties (due_at) WHERE recorded_at IS NULL;

ALTER TABLE outcome_events
        ADD COLUMN IF NOT EXISTS participants text[],  -- CONVERSATION_HELD: CHILD, GUARDIANS, POLICE, SOCIAL_SERVICES
        ADD COLUMN IF NOT EXISTS follow_up text[];     -- CONVERSATION_HELD: NONE, ADVICE_SUPPORT, OPEN_CARE, INVESTIGATION, OTHER

-- The report: referrals of a period (the covering columns keep the range scan
-- off the heap's wide rows), a person's referrals in time order (new
-- referrals after a conversation), and a case's events of one kind.
CREATE INDEX IF NOT EXISTS referrals_reported ON referrals (reported_at)
        INCLUDE (district, case_id, referral_id, person_key);
CREATE INDEX IF NOT EXISTS referrals_person_reported ON referrals (person_key, reported_at)
        WHERE person_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS outcome_events_case ON outcome_events (case_id, kind, occurred_at);

-- The grants of the new table as grant_v010_assessment_duties(), which
-- grant_all() (007_instances.sql; deploy/roles.sql calls it too) applies
-- after the base sets: the daemon writes the duties (referral batch), records
-- them (outcome batch), locks and marks them (deadline watch); `allvarsctl
-- case` reads them. The report reads only tables the operator read already.
CREATE OR REPLACE FUNCTION allvarsd.grant_v010_assessment_duties() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT, UPDATE (recorded_at, alerted_due, alerted_at) ON assessment_duties
                        TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON assessment_duties TO allvarsd_operator;
        END IF;
END
$$;

REVOKE ALL ON FUNCTION allvarsd.grant_v010_assessment_duties() FROM PUBLIC;

SELECT allvarsd.grant_all();
