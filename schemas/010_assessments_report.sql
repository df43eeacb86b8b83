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
-- Needs 001_initial.sql and the grant functions of 006_operator_role.sql.

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

-- The roles' grants (schemas/006_operator_role.sql) with assessment_duties:
-- the functions again, each starting from nothing, so that deploy/roles.sql
-- applies the same when the roles come after the schema. The report reads
-- only tables the operator could read already, and this one.
CREATE OR REPLACE FUNCTION allvarsd.grant_runtime() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                RETURN;
        END IF;

        REVOKE ALL ON ALL TABLES IN SCHEMA allvarsd FROM allvarsd_runtime;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA allvarsd FROM allvarsd_runtime;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA allvarsd FROM allvarsd_runtime;
        GRANT USAGE ON SCHEMA allvarsd TO allvarsd_runtime;

        -- The schema check at start (store_check_schema). The migrator makes
        -- this table, before the first migration.
        IF to_regclass('allvarsd.schema_migrations') IS NOT NULL THEN
                GRANT SELECT ON schema_migrations TO allvarsd_runtime;
        END IF;
        -- The referral batch: the person's row locked (FOR UPDATE needs
        -- UPDATE; persons are never changed) and the history read.
        GRANT SELECT, INSERT, UPDATE (first_seen_at) ON persons TO allvarsd_runtime;
        -- Pseudonymous rows stay as written; the purge only marks them.
        GRANT SELECT, INSERT, UPDATE (purged_at) ON referrals TO allvarsd_runtime;
        -- Personal rows: written by the batch, read by the lifecycle for a
        -- scheduling request, deleted by the retention purge.
        GRANT SELECT, INSERT, DELETE ON referral_personal TO allvarsd_runtime;
        GRANT SELECT, INSERT, UPDATE, DELETE ON case_contacts TO allvarsd_runtime;
        GRANT SELECT, INSERT ON decisions TO allvarsd_runtime;
        -- Cases move through the lifecycle and the deadline watch.
        GRANT SELECT, INSERT, UPDATE ON cases TO allvarsd_runtime;
        GRANT SELECT, INSERT ON case_alerts TO allvarsd_runtime;
        -- The protective assessments owed without a case: written by the
        -- referral batch, recorded by the outcome batch, alerted (locked and
        -- marked) by the deadline watch.
        GRANT SELECT, INSERT, UPDATE (recorded_at, alerted_due, alerted_at) ON assessment_duties TO allvarsd_runtime;
        -- An outcome event is recorded before the lifecycle decides and taken
        -- back, in the same transaction, when it is rejected.
        GRANT SELECT, INSERT, DELETE ON outcome_events TO allvarsd_runtime;
        -- The audit is append only; the purge clears an override's free text.
        GRANT SELECT, INSERT, UPDATE (detail) ON audit TO allvarsd_runtime;
        GRANT USAGE ON SEQUENCE audit_id_seq TO allvarsd_runtime;
        -- The outbox is a queue: written by the batches and the watch, read
        -- and emptied by the relay, which records what it delivered.
        GRANT SELECT, INSERT, DELETE ON outbox TO allvarsd_runtime;
        GRANT USAGE ON SEQUENCE outbox_id_seq TO allvarsd_runtime;
        GRANT SELECT, INSERT ON outbox_sent TO allvarsd_runtime;
        -- Offsets by compare-and-set.
        GRANT SELECT, INSERT, UPDATE ON consumer_offsets TO allvarsd_runtime;
        -- Dead letters are written once; the purge clears their payload.
        GRANT SELECT, INSERT, UPDATE (payload) ON dead_letters TO allvarsd_runtime;
        GRANT USAGE ON SEQUENCE dead_letters_id_seq TO allvarsd_runtime;
        GRANT INSERT ON purges TO allvarsd_runtime;
        GRANT USAGE ON SEQUENCE purges_id_seq TO allvarsd_runtime;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_runtime() FROM PUBLIC;

-- allvarsctl: status, cases, case, dead-letters, override --wait, report.
CREATE OR REPLACE FUNCTION allvarsd.grant_operator() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                RETURN;
        END IF;

        REVOKE ALL ON ALL TABLES IN SCHEMA allvarsd FROM allvarsd_operator;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA allvarsd FROM allvarsd_operator;
        REVOKE ALL ON ALL FUNCTIONS IN SCHEMA allvarsd FROM allvarsd_operator;
        GRANT USAGE ON SCHEMA allvarsd TO allvarsd_operator;

        GRANT SELECT ON referrals, decisions, cases, case_alerts, outcome_events, consumer_offsets,
                        audit_trail, dead_letter_summary
                TO allvarsd_operator;
        -- case (a NOT_ELIGIBLE child's assessment) and report.
        GRANT SELECT ON assessment_duties TO allvarsd_operator;
        -- The outbox backlog (its size and age), never a payload (a
        -- scheduling request's names and contacts).
        GRANT SELECT (created_at) ON outbox TO allvarsd_operator;
        -- override --wait: whether its event was applied or dead-lettered.
        GRANT SELECT (id, source_topic, source_partition, source_offset, reason, detail) ON dead_letters
                TO allvarsd_operator;

        GRANT EXECUTE ON FUNCTION read_personal_data(text, text), read_dead_letter_payload(bigint, text),
                                  mark_dead_letter_replayed(bigint, timestamptz, text)
                TO allvarsd_operator;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_operator() FROM PUBLIC;

SELECT allvarsd.grant_runtime();
SELECT allvarsd.grant_operator();
