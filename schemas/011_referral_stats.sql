-- Version 11: one narrow statistics row per referral, for `allvarsctl report`.
--
-- Until version 10 the report joined every referral of its period to its
-- decision, case, MISSED alert and outcome events (hash joins over whole
-- tables: 51 s over a million referrals). Now each referral has one row of
-- referral_stats with the facts the report counts, so that the report is one
-- scan of one table (docs/domain.md "Follow-up report").
--
-- What a row holds is defined once, by the view referral_stats_source, from
-- the tables it summarises. The daemon writes a referral's row in the
-- transaction that changes one of those facts (daemon/store_rows.c
-- "rows_stats": the referral batch for a new referral, the outcome batch for
-- an outcome event or an override, the deadline watch for a MISSED alert),
-- by selecting the referral's row of the view, and this migration fills the
-- table the same way for the referrals already stored. The row is recomputed,
-- never patched: whatever wrote it last, it says what the tables say.
--
-- Pseudonymous (the person key is the HMAC the referrals table keeps; no
-- personal data), so the retention purge keeps it, as it keeps the tables it
-- is made from. Safe to run again.

SET LOCAL search_path = allvarsd;

CREATE TABLE IF NOT EXISTS referral_stats (
        case_id         uuid PRIMARY KEY,              -- referrals.case_id (every referral has one)
        district        text NOT NULL,
        reported_at     timestamptz NOT NULL,
        person_key      bytea,                         -- referrals.person_key: new referrals after a conversation
        outcome         text NOT NULL,                 -- the decision's (decisions.outcome), not an override's
        profile_name    text NOT NULL,
        profile_version integer NOT NULL,
        state           text,                          -- the case's, NULL when no case was opened
        -- What the report counts of the referral, one bit each (below), so
        -- that the report groups a million rows by a few columns instead of
        -- testing forty conditions on each.
        facts           integer NOT NULL,
        -- the protective assessment: due (the decision's), recorded (the first
        -- PROTECTIVE_ASSESSMENT_RECORDED); the first INVESTIGATION_CLEARED and
        -- CONTACT_DETAILS_SUPPLIED; the case's deadline, conversation and closing
        assessment_due  timestamptz,
        assessed_at     timestamptz,
        cleared_at      timestamptz,
        contact_at      timestamptz,
        deadline        timestamptz,
        held_at         timestamptz,
        closed_at       timestamptz
);
-- The bits of facts (daemon/ctl/report.c names them alike):
--     1  BELOW_MIN_AGE among the decision's reasons
--     2  ABOVE_MAX_AGE
--     4  NO_QUALIFYING_CONCERN
--     8  NOT_IMPRISONABLE
--    16  NOT_FIRST_SUSPICION
--    32  PROTECTIVE_ASSESSMENT_FIRST
--    64  PRELIMINARY_INVESTIGATION
--   128  CONTACT_MISSING among the decision's flags
--   256  LATE_REFERRAL
--   512  a case was opened
--  1024  held by the deadline: the conversation (CONVERSATION), or its scheduling
--        (SUMMONS: the first CONVERSATION_SCHEDULED, else the conversation; DS 2024:30)
--  2048  a MISSED alert was raised
--  4096  held, the police present
--  8192  held, guardians present (CONVERSATION_HELD's participants)
-- 16384  held, followed by nothing further (CONVERSATION_HELD's follow-up)
-- 32768  held, followed by advice and support
-- 65536  held, followed by open care
-- 131072 held, followed by an investigation
-- 262144 held, followed by something else
-- 524288 held (held_at)
-- 1048576 a protective assessment due (assessment_due)
-- 2097152 recorded at or before its due time
-- 4194304 recorded after it
COMMENT ON TABLE referral_stats IS
        'One pseudonymous row per referral with what allvarsctl report counts (referral_stats_source)';

-- The report's period: referrals arrive in about the order they were
-- reported, so a block range index finds a period's rows at almost no cost
-- to the insert (a B-tree here would be one more index entry per referral).
CREATE INDEX IF NOT EXISTS referral_stats_reported ON referral_stats USING brin (reported_at);

-- A referral's row as the tables say it is now. Selected by case id (an
-- index lookup per table) by the daemon; whole by the backfill below.
CREATE OR REPLACE VIEW referral_stats_source AS
SELECT r.case_id, r.district, r.reported_at, r.person_key, d.outcome, d.profile_name, d.profile_version, c.state,
       (d.reasons LIKE '%BELOW_MIN_AGE%')::int
       | ((d.reasons LIKE '%ABOVE_MAX_AGE%')::int << 1)
       | ((d.reasons LIKE '%NO_QUALIFYING_CONCERN%')::int << 2)
       | ((d.reasons LIKE '%NOT_IMPRISONABLE%')::int << 3)
       | ((d.reasons LIKE '%NOT_FIRST_SUSPICION%')::int << 4)
       | ((d.reasons LIKE '%PROTECTIVE_ASSESSMENT_FIRST%')::int << 5)
       | ((d.reasons LIKE '%PRELIMINARY_INVESTIGATION%')::int << 6)
       | ((d.flags LIKE '%CONTACT_MISSING%')::int << 7)
       | ((d.flags LIKE '%LATE_REFERRAL%')::int << 8)
       | ((c.case_id IS NOT NULL)::int << 9)
       | (coalesce(c.held_at IS NOT NULL AND c.deadline IS NOT NULL
                  AND CASE WHEN c.deadline_kind = 'SUMMONS' THEN coalesce(ev.scheduled_at, c.held_at) <= c.deadline
                           ELSE c.held_at <= c.deadline END, false)::int << 10)
       | ((EXISTS (SELECT 1 FROM case_alerts a WHERE a.case_id = r.case_id AND a.kind = 'MISSED'))::int << 11)
       | (coalesce(c.held_at IS NOT NULL AND c.police_attending, false)::int << 12)
       | (coalesce(c.held_at IS NOT NULL AND ev.guardians, false)::int << 13)
       | (coalesce(c.held_at IS NOT NULL AND ev.f_none, false)::int << 14)
       | (coalesce(c.held_at IS NOT NULL AND ev.f_advice, false)::int << 15)
       | (coalesce(c.held_at IS NOT NULL AND ev.f_open_care, false)::int << 16)
       | (coalesce(c.held_at IS NOT NULL AND ev.f_investigation, false)::int << 17)
       | (coalesce(c.held_at IS NOT NULL AND ev.f_other, false)::int << 18)
       | ((c.held_at IS NOT NULL)::int << 19)
       | ((d.protective_assessment_due IS NOT NULL)::int << 20)
       | (coalesce(ev.assessed_at <= d.protective_assessment_due, false)::int << 21)
       | (coalesce(ev.assessed_at > d.protective_assessment_due, false)::int << 22) AS facts,
       d.protective_assessment_due AS assessment_due, ev.assessed_at, ev.cleared_at, ev.contact_at,
       c.deadline, c.held_at, c.closed_at
  FROM referrals r
  JOIN decisions d ON d.referral_id = r.referral_id
  LEFT JOIN cases c ON c.case_id = r.case_id
  CROSS JOIN LATERAL (
        SELECT min(e.occurred_at) FILTER (WHERE e.kind = 'PROTECTIVE_ASSESSMENT_RECORDED') AS assessed_at,
               min(e.occurred_at) FILTER (WHERE e.kind = 'INVESTIGATION_CLEARED') AS cleared_at,
               min(e.occurred_at) FILTER (WHERE e.kind = 'CONTACT_DETAILS_SUPPLIED') AS contact_at,
               min(e.occurred_at) FILTER (WHERE e.kind = 'CONVERSATION_SCHEDULED') AS scheduled_at,
               bool_or('GUARDIANS' = ANY (e.participants)) AS guardians,
               bool_or('NONE' = ANY (e.follow_up)) AS f_none,
               bool_or('ADVICE_SUPPORT' = ANY (e.follow_up)) AS f_advice,
               bool_or('OPEN_CARE' = ANY (e.follow_up)) AS f_open_care,
               bool_or('INVESTIGATION' = ANY (e.follow_up)) AS f_investigation,
               bool_or('OTHER' = ANY (e.follow_up)) AS f_other
          FROM outcome_events e
         WHERE e.case_id = r.case_id) ev;
COMMENT ON VIEW referral_stats_source IS 'What referral_stats holds for each referral, from the tables it summarises';

-- Version 10's indexes for the report's joins: nothing reads by them any
-- more (the new referrals after a conversation are a hash join of
-- referral_stats), and each cost two index entries per referral on the hot path.
DROP INDEX IF EXISTS referrals_reported;
DROP INDEX IF EXISTS referrals_person_reported;

-- The referrals stored before this version.
INSERT INTO referral_stats SELECT * FROM referral_stats_source ON CONFLICT (case_id) DO NOTHING;

-- The grants as grant_v011_referral_stats(), which grant_all()
-- (schemas/007_instances.sql; deploy/roles.sql calls it too) applies after the
-- base sets: the daemon selects a referral's row of the view and writes it
-- (insert, or update when it differs); the operator's report reads the table.
CREATE OR REPLACE FUNCTION allvarsd.grant_v011_referral_stats() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT ON referral_stats_source TO allvarsd_runtime;
                GRANT SELECT, INSERT, UPDATE ON referral_stats TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON referral_stats TO allvarsd_operator;
        END IF;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_v011_referral_stats() FROM PUBLIC;

SELECT allvarsd.grant_all();
