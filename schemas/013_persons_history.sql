-- Version 13: a person's history on the person's row.
--
-- Until version 12 the referral batch took each person of its new referrals in
-- two statements: an insert-or-lock of the persons row, then the history read,
-- which counted the person's referrals by their marks through an index on
-- referrals (person_key): one index scan and one heap fetch of each earlier
-- referral, and one more random-key index entry for every referral stored.
-- Over a replay of 300,000 referrals the history read was the second most
-- expensive statement of the batch, and that index a third of the referrals
-- insert's indexes (bench/README.md "The runs of 2026-12-04 22:45-23:29 UTC").
--
-- Now persons.marks holds the marks (MARK_*, daemon/profiles.h) of each of the
-- person's referrals, one element per referral stored. The batch adds its new
-- referrals' marks to their persons' rows in the statement that inserts or
-- locks them, and reads the history back from what that statement returns
-- (daemon/store_referrals.c "ref_persons_history"): one statement, one index
-- lookup per person, and the row locked as before, so that two transactions
-- deciding referrals of one person still serialise on it and the second counts
-- the first's referral. The marks of a referral are known before its decision,
-- so they can be added before the rules run; the batch takes its own out again,
-- as it did from the history read.
--
-- The row changes now at each referral of a known person, where it was only
-- locked. fillfactor 80 leaves room on each page for the new version next to
-- the old one (a HOT update: no new entry in persons_pkey). It applies to the
-- pages written from now on; VACUUM FULL persons gives it to the old ones.
--
-- Pseudonymous (a person key and bit masks), kept by the retention purge as the
-- referrals it counts are (their rows stay, with purged_at). Safe to run again.

SET LOCAL search_path = allvarsd;

ALTER TABLE persons ADD COLUMN IF NOT EXISTS marks int4[] NOT NULL DEFAULT '{}';
ALTER TABLE persons SET (fillfactor = 80);
COMMENT ON COLUMN persons.marks IS
        'The marks (MARK_*) of each of the person''s referrals, one element per referral: the history the rules count';

-- The referrals stored before this version, once: a row that has marks already
-- was counted (a second run leaves it).
UPDATE persons p SET marks = h.marks
  FROM (SELECT r.person_key, array_agg(r.marks ORDER BY r.received_at, r.referral_id) AS marks
          FROM referrals r WHERE r.person_key IS NOT NULL GROUP BY r.person_key) h
 WHERE h.person_key = p.person_key AND p.marks = '{}';

-- Nothing reads referrals by person any more (the report reads referral_stats).
DROP INDEX IF EXISTS referrals_person;

-- The daemon's grant on persons, as grant_v013_persons_history(), which
-- grant_all() (schemas/007_instances.sql; deploy/roles.sql calls it too)
-- applies after the base sets: it updates marks, and no longer first_seen_at,
-- which the base set grants for the lock the batch took until this version.
CREATE OR REPLACE FUNCTION allvarsd.grant_v013_persons_history() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                REVOKE UPDATE (first_seen_at) ON persons FROM allvarsd_runtime;
                GRANT UPDATE (marks) ON persons TO allvarsd_runtime;
        END IF;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_v013_persons_history() FROM PUBLIC;

SELECT allvarsd.grant_all();
