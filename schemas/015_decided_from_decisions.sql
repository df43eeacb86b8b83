-- Version 15: a decision's audit entry is its decisions row; cases has one
-- unique index.
--
-- Until version 14 the referral batch wrote, for each referral it decided, an
-- audit row (action DECIDED, actor DAEMON) whose "after" repeated what the
-- decisions row of the same transaction holds: the outcome, the reasons, the
-- flags and the deadline. A heap row and two index entries per referral, one
-- of them on a random key (audit_case): 1.64 s of the 20 s of statements in a
-- replay of 300,000 referrals (bench/README.md "The runs of 2026-12-05
-- 01:24-02:40 UTC").
--
-- What an auditor relies on holds for the decisions row as it did for the
-- audit row: the runtime role may only insert it (no UPDATE, no DELETE: the
-- grant functions), it is written in the transaction that decides, and it
-- records the time (decided_at, the same clock reading the audit row took).
-- So audit_trail, what allvarsctl and the operators read, now shows each
-- decision as the DECIDED entry it was, made from the decisions row: the same
-- columns and the same "after" text (referral_batch.c wrote
-- "outcome=O;reasons=R;flags=F;deadline=D", D in RFC 3339 UTC with
-- microseconds only when there are some, clock.c). Its id is 0: such an entry
-- has no place in the audit's sequence, and allvarsctl orders by time first.
-- The DECIDED rows written before this version stay in audit (it is append
-- only); a decision that has one is shown by it and not a second time.
--
-- cases.referral_id was UNIQUE, a second random-key index entry per case. A
-- case's id is the name-based UUID of its referral's id (ids.c), so the primary
-- key on case_id already allows one case per referral; the readers that
-- joined on cases.referral_id join on case_id (referrals.case_id is indexed).
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

CREATE OR REPLACE VIEW audit_trail AS
        SELECT id, case_id, referral_id, at, actor_kind, actor_name, action, before, after,
               detail <> '' AS reason_recorded
          FROM audit
        UNION ALL
        SELECT 0::bigint, r.case_id, d.referral_id, d.decided_at, 'DAEMON'::text, ''::text, 'DECIDED'::text,
               ''::text,
               'outcome=' || d.outcome || ';reasons=' || d.reasons || ';flags=' || d.flags || ';deadline='
                       || CASE WHEN d.deadline IS NULL THEN ''
                               ELSE to_char(d.deadline AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
                                    || CASE WHEN extract(microseconds FROM d.deadline)::bigint % 1000000 <> 0
                                            THEN to_char(d.deadline AT TIME ZONE 'UTC', '.US') ELSE '' END
                                    || 'Z' END,
               false
          FROM decisions d JOIN referrals r ON r.referral_id = d.referral_id
         WHERE NOT EXISTS (SELECT 1 FROM audit a
                            WHERE a.case_id = r.case_id AND a.action = 'DECIDED' AND a.actor_kind = 'DAEMON');
COMMENT ON VIEW audit_trail IS
        'The audit without the free text of overrides, and each decision as its DECIDED entry: what allvarsctl reads (schemas/015_decided_from_decisions.sql)';

ALTER TABLE cases DROP CONSTRAINT IF EXISTS cases_referral_id_key;
