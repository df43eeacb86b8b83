-- Version 19: a referral's statistics row is keyed by its referral id.
--
-- Until version 18 referral_stats had its primary key on case_id. A case id is
-- a name-based UUID (ids.c: uuid5 of the referral id, docs/contract.md "Keys
-- and ids"), so each new referral put its entry on a leaf page somewhere in
-- the whole index: as the table grows, more of those pages are cold, and the
-- insert costs more. That growth is what keeps the replay's last tenth from
-- the first (bench/README.md "One random case-id index less": without this
-- index the replay was 6 % faster and grew less). A referral id is the
-- police's own key (docs/contract.md "Keys and ids": opaque to us). Issued
-- with a running number, as the bench's are, consecutive referrals' ids sort
-- together and an index on them is written near a few edges, like the
-- referrals' primary key, which already holds them; issued at random, it is
-- no worse than the case id's.
--
-- The row keeps its case_id column (nothing else changes for the report); the
-- daemon still selects a referral's row of the view by case id, through
-- referrals' unique index on case_id, and writes it ON CONFLICT (referral_id)
-- (daemon/store_rows.c "rows_stats"). The view gains referral_id as its last
-- column, as the table does, so that its rows and the table's still match
-- column for column (the upsert's ROW(excluded.*)).
--
-- The table is rewritten once (the new column filled from referrals), under
-- the migration's lock, with the daemon stopped as for every migration.
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

DO $$
BEGIN
        IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'allvarsd.referral_stats'::regclass
                                             AND attname = 'referral_id' AND NOT attisdropped) THEN
                RETURN;
        END IF;
        ALTER TABLE referral_stats ADD COLUMN referral_id text COLLATE "C";
        UPDATE referral_stats s SET referral_id = r.referral_id FROM referrals r WHERE r.case_id = s.case_id;
        -- Every row has its referral (the view made it from one).
        ALTER TABLE referral_stats ALTER COLUMN referral_id SET NOT NULL;
        ALTER TABLE referral_stats DROP CONSTRAINT referral_stats_pkey;
        ALTER TABLE referral_stats ADD CONSTRAINT referral_stats_pkey PRIMARY KEY (referral_id);
END
$$;

-- Version 11's view with the referral id at its end (CREATE OR REPLACE may add
-- columns only there).
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
       c.deadline, c.held_at, c.closed_at, r.referral_id
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

SELECT allvarsd.grant_all();
