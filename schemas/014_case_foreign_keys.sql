-- Version 14: the cases' tables without foreign keys.
--
-- cases referenced referrals, case_contacts and case_alerts referenced cases.
-- Each such key is checked row by row when a row is inserted: a lookup of the
-- parent through its primary key and a KEY SHARE lock on it, which writes a
-- lock record to the WAL and marks the parent's row, although the parent was
-- written by the same transaction a moment before (the referral batch writes
-- the referral, its case and the case's contacts together). Version 1 left the
-- keys out of referral_personal and decisions for that reason (about an eighth
-- of the batch's server time then, 001_initial.sql); these three remained. By
-- hand, 200,000 referrals with 80,000 cases and contacts each: 1.8 s with the
-- keys, 1.25 s without. In two 300,000-referral replays side by side
-- (bench/README.md), the cases insert 1.90-2.08 s -> 1.37-1.42 s of server
-- time, the contacts insert 0.96-0.98 s -> 0.48-0.55 s.
--
-- Who writes these rows, and why the parent is always there: the referral batch
-- writes a case with its referral, and the case's contacts and MISSED alert
-- with the case; the outcome batch writes contacts and the deadline watch
-- alerts for a case it has just read (and locked) from cases. No role deletes
-- from referrals or cases (the retention purge updates them). Safe to run
-- again.

SET LOCAL search_path = allvarsd;

ALTER TABLE cases DROP CONSTRAINT IF EXISTS cases_referral_id_fkey;
ALTER TABLE case_contacts DROP CONSTRAINT IF EXISTS case_contacts_case_id_fkey;
ALTER TABLE case_alerts DROP CONSTRAINT IF EXISTS case_alerts_case_id_fkey;
