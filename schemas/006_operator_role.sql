-- Version 6: three roles, each with what its code runs and nothing more.
--
--   allvarsd_owner     owns the schema, runs the migrations (deploy/roles.sql).
--   allvarsd_runtime   the daemon and its relay: row access to exactly the
--                      tables and columns their statements touch. Until
--                      version 5 it could read every table and was also the
--                      role operators were told to use.
--   allvarsd_operator  allvarsctl: reads the pseudonymous tables, writes
--                      nothing. What it must not read directly (a referral's
--                      or a case's personal data, a dead letter's payload)
--                      it reads through the SECURITY DEFINER functions below,
--                      each of which records who read what, and when, in the
--                      audit trail (access logging of case records). A replay
--                      and an override still go through Kafka.
--
-- The grants are derived from the code, not kept by hand:
-- tests/integration/test-privileges.c takes every SQL statement out of the
-- built allvarsd and allvarsctl, EXPLAINs it as the role that runs it, and
-- revokes each grant below in turn to see that some statement needs it. A
-- statement added without its grant, or a grant left without a statement,
-- fails that test.
--
-- The grants stay functions, so that deploy/roles.sql applies them when the
-- roles come after the schema; each starts from nothing, so that what earlier
-- versions granted is taken back.

SET LOCAL search_path = allvarsd;

-- The pseudonymous audit trail: every column but detail (an override's free
-- text, cleared by the purge), and whether there was one.
CREATE VIEW audit_trail AS
        SELECT id, case_id, referral_id, at, actor_kind, actor_name, action, before, after,
               detail <> '' AS reason_recorded
          FROM audit;
COMMENT ON VIEW audit_trail IS 'The audit without the free text of overrides: what allvarsctl reads';

-- Dead letters without their payload (the message as consumed, personal for
-- a referral), and its size.
CREATE VIEW dead_letter_summary AS
        SELECT id, event_id, source_topic, source_partition, source_offset, reason, detail,
               octet_length(payload) AS payload_bytes, received_at, replayed_at
          FROM dead_letters;
COMMENT ON VIEW dead_letter_summary IS 'Dead letters without the payload: what allvarsctl reads';

-- Who read personal data: one audit row per read, written by the functions
-- below as their caller's session user (never the definer) and the name the
-- caller gave (allvarsctl --by, else the login name).
CREATE FUNCTION audit_read(p_case_id uuid, p_referral_id text, p_reader text, p_action text, p_what text)
        RETURNS void
        LANGUAGE sql
        SET search_path = allvarsd, pg_temp
AS $$
        INSERT INTO audit (case_id, referral_id, at, actor_kind, actor_name, action, after)
        VALUES (p_case_id, p_referral_id, now(), 'OPERATOR', coalesce(nullif(p_reader, ''), session_user),
                p_action, concat_ws(';', 'db_user=' || session_user, nullif(p_what, '')));
$$;
REVOKE ALL ON FUNCTION audit_read(uuid, text, text, text, text) FROM PUBLIC;

-- allvarsctl case ID --personal: the child and the guardians of one case (or
-- NOT_ELIGIBLE referral), by case id or the police's referral id. Nothing
-- (and no audit row) when there is no such referral; after the purge the
-- referral's row is all that is left, and the read is audited all the same.
CREATE FUNCTION read_personal_data(p_id text, p_reader text)
        RETURNS TABLE (person text, ordinal integer, identity_number text, birth_date text, name text,
                       phone text, email text, postal_address text, narrative text)
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = allvarsd, pg_temp
AS $$
DECLARE
        v_referral_id text;
        v_case_id uuid;
BEGIN
        SELECT r.referral_id, r.case_id INTO v_referral_id, v_case_id
          FROM referrals r
         WHERE r.referral_id = p_id
            OR (p_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' AND r.case_id = p_id::uuid)
         ORDER BY r.referral_id = p_id DESC
         LIMIT 1;
        IF NOT FOUND THEN
                RETURN;
        END IF;
        PERFORM audit_read(v_case_id, v_referral_id, p_reader, 'PERSONAL_DATA_READ', NULL);
        RETURN QUERY
                SELECT 'child'::text, 0, p.identity_number, p.birth_date,
                       concat_ws(' ', nullif(p.given_name, ''), nullif(p.family_name, '')),
                       NULL::text, NULL::text, NULL::text, p.narrative
                  FROM referral_personal p WHERE p.referral_id = v_referral_id
                UNION ALL
                SELECT 'guardian', c.ordinal, NULL, NULL, c.name, c.phone, c.email, c.postal_address, NULL
                  FROM case_contacts c WHERE c.case_id = v_case_id
                 ORDER BY 2;
END
$$;
REVOKE ALL ON FUNCTION read_personal_data(text, text) FROM PUBLIC;

-- allvarsctl dead-letters replay: the stored message, to produce it again.
-- Audited like any read of personal data.
CREATE FUNCTION read_dead_letter_payload(p_id bigint, p_reader text)
        RETURNS TABLE (source_topic text, payload bytea, replayed_at timestamptz, event_id uuid)
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = allvarsd, pg_temp
AS $$
BEGIN
        IF NOT EXISTS (SELECT FROM dead_letters d WHERE d.id = p_id) THEN
                RETURN;
        END IF;
        PERFORM audit_read(NULL, NULL, p_reader, 'DEAD_LETTER_READ', 'dead_letter=' || p_id);
        RETURN QUERY SELECT d.source_topic, d.payload, d.replayed_at, d.event_id FROM dead_letters d WHERE d.id = p_id;
END
$$;
REVOKE ALL ON FUNCTION read_dead_letter_payload(bigint, text) FROM PUBLIC;

-- allvarsctl dead-letters replay, once produced: the mark, the only change an
-- operator makes to a row, audited.
CREATE FUNCTION mark_dead_letter_replayed(p_id bigint, p_at timestamptz, p_reader text)
        RETURNS TABLE (id bigint, source_topic text, replayed_at timestamptz)
        LANGUAGE plpgsql
        SECURITY DEFINER
        SET search_path = allvarsd, pg_temp
AS $$
BEGIN
        RETURN QUERY UPDATE dead_letters d SET replayed_at = p_at WHERE d.id = p_id
                RETURNING d.id, d.source_topic, d.replayed_at;
        IF FOUND THEN
                PERFORM audit_read(NULL, NULL, p_reader, 'DEAD_LETTER_REPLAYED', 'dead_letter=' || p_id);
        END IF;
END
$$;
REVOKE ALL ON FUNCTION mark_dead_letter_replayed(bigint, timestamptz, text) FROM PUBLIC;

-- The daemon and the relay: daemon/store*.c (the batches), deadline_watch.c,
-- retention.c, relay.c.
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

-- allvarsctl: status, cases, case, dead-letters, override --wait.
CREATE FUNCTION allvarsd.grant_operator() RETURNS void
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
