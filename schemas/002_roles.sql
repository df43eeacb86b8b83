-- allvarsd schema, version 2: what the runtime role may do.
--
-- The roles are the DBA's, created once per cluster by deploy/roles.sql:
--   allvarsd_owner    owns the schema and runs `allvarsd --migrate`;
--   allvarsd_runtime  the daemon, the relay and allvarsctl: reads and writes
--                     rows, never DDL, and deletes only what the retention
--                     purge removes (referral_personal, case_contacts).
-- The grants are one function, so that deploy/roles.sql applies them when the
-- roles are created after the schema, and a later migration that adds a table
-- replaces the function and calls it again. Without the role (tests as the
-- superuser) it does nothing.

CREATE OR REPLACE FUNCTION allvarsd.grant_runtime() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                RETURN;
        END IF;

        GRANT USAGE ON SCHEMA allvarsd TO allvarsd_runtime;
        GRANT SELECT ON ALL TABLES IN SCHEMA allvarsd TO allvarsd_runtime;
        GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA allvarsd TO allvarsd_runtime;

        -- The batch (store.c), the lifecycle, the deadline watch, the purge's audit.
        GRANT INSERT ON persons, referrals, referral_personal, decisions, cases, case_contacts,
                        case_alerts, outcome_events, audit, outbox, consumer_offsets,
                        dead_letters, purges
                TO allvarsd_runtime;

        -- SELECT ... FOR UPDATE needs an UPDATE grant; persons are never changed.
        GRANT UPDATE (first_seen_at) ON persons TO allvarsd_runtime;
        -- Cases move through the lifecycle; offsets by compare-and-set; the relay
        -- marks outbox rows sent and the purge empties their payload.
        GRANT UPDATE ON cases, case_contacts, consumer_offsets, outbox TO allvarsd_runtime;
        -- Pseudonymous rows stay as written; the purge only marks and clears.
        GRANT UPDATE (purged_at) ON referrals TO allvarsd_runtime;
        GRANT UPDATE (payload, replayed_at) ON dead_letters TO allvarsd_runtime;
        -- The audit is append only; the purge clears an override's free text.
        GRANT UPDATE (detail) ON audit TO allvarsd_runtime;

        -- The retention purge (retention.c) deletes the personal rows.
        GRANT DELETE ON referral_personal, case_contacts TO allvarsd_runtime;
END
$$;

REVOKE ALL ON FUNCTION allvarsd.grant_runtime() FROM PUBLIC;

SELECT allvarsd.grant_runtime();
