-- Version 16: a profile's parameters stored once, not in every decision.
--
-- Until version 15 each decisions row held profile_params, the text of every
-- effective parameter of the profile that decided it (profiles.c
-- profile_describe, about 330 bytes): about 330 of the row's 509 bytes, and
-- about 11 % of the WAL the daemon wrote per referral. There are only as many
-- distinct texts as profiles, versions and parameter sets ever used.
--
-- Now profile_params holds each distinct text once, under params_key =
-- md5(params)::uuid, and decisions.params_key names it. The key is the text's
-- own digest, so the daemon needs no lookup to know it: its decisions insert
-- (daemon/store_referrals.c "ref_decisions_insert") takes the batch's
-- distinct texts once, computes the keys, and inserts in a CTE, ON CONFLICT
-- DO NOTHING, any text not stored yet, so that a decision never names a text
-- that is not there (the CTE's row commits or rolls back with the decision).
-- Two transactions inserting the same new key make the second wait for the
-- first; the daemon's lanes (daemon/lanes.h) also wait for each other in ways
-- PostgreSQL does not see, which could then stall until a timeout. So the
-- daemon stores its profiles' texts in autocommit before the first batch of
-- a configuration, at start and after each reload (consumer_batch.c,
-- "ref_params_register"): the batches then meet them committed, found in the
-- index, and write nothing to this table. Only when that failed (the batch
-- goes on) can two lanes both insert a new text; the wait is then bounded
-- by lock_timeout and the turn timeout, and the batch is retried.
--
-- No foreign key from decisions: its check is an index lookup and a KEY SHARE
-- lock on the referenced row for every decision, and every decision of a
-- profile references the same row, so both lanes would lock it in every
-- batch (a MultiXact, and a lock record in the WAL), as version 14 explains
-- for the cases' keys. The insert above guarantees the row instead, and no
-- role deletes from profile_params (the runtime role may only insert it; the
-- retention purge leaves it: it is not personal data).
--
-- The rows written before this version keep the text's bytes in their pages
-- (a dropped column is only hidden) until VACUUM FULL decisions rewrites them.
--
-- Readers join: SELECT ..., pp.params FROM decisions d JOIN profile_params pp
-- USING (params_key). allvarsctl case does.
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

CREATE TABLE IF NOT EXISTS profile_params (
        params_key      uuid PRIMARY KEY,              -- md5(params)::uuid
        params          text NOT NULL,                 -- every effective parameter (profile_describe)
        first_seen_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE profile_params IS
        'Each distinct text of a profile''s effective parameters, once; decisions.params_key = md5(params)::uuid';

ALTER TABLE decisions ADD COLUMN IF NOT EXISTS params_key uuid;

-- The decisions stored before this version: their texts once each, then the
-- key in each row, then the text column goes. A second run finds no
-- profile_params column and does nothing here.
DO $$
BEGIN
        IF EXISTS (SELECT FROM pg_attribute
                    WHERE attrelid = 'allvarsd.decisions'::regclass AND attname = 'profile_params'
                      AND NOT attisdropped) THEN
                INSERT INTO profile_params (params_key, params, first_seen_at)
                SELECT md5(profile_params)::uuid, profile_params, min(decided_at)
                  FROM decisions GROUP BY profile_params
                ON CONFLICT (params_key) DO NOTHING;
                UPDATE decisions SET params_key = md5(profile_params)::uuid WHERE params_key IS NULL;
                ALTER TABLE decisions DROP COLUMN profile_params;
        END IF;
END
$$;

ALTER TABLE decisions ALTER COLUMN params_key SET NOT NULL;
COMMENT ON COLUMN decisions.params_key IS
        'The profile''s effective parameters: profile_params.params_key (md5 of the text), no foreign key (schemas/016_profile_params.sql)';

-- The grants as grant_v016_profile_params(), which grant_all()
-- (schemas/007_instances.sql; deploy/roles.sql calls it too) applies after the
-- base sets: the daemon inserts texts (ON CONFLICT needs SELECT on the key),
-- the operator's allvarsctl reads them with the decisions.
CREATE OR REPLACE FUNCTION allvarsd.grant_v016_profile_params() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT ON profile_params TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON profile_params TO allvarsd_operator;
        END IF;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_v016_profile_params() FROM PUBLIC;

SELECT allvarsd.grant_all();
