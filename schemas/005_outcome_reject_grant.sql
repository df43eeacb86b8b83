-- Version 5: the runtime role may take back a rejected outcome event.
--
-- The outcome batch records each event in outcome_events (its id is the
-- idempotency key) before the lifecycle decides; an event it rejects (an
-- unknown case, an illegal transition) is deleted again in the same
-- transaction and dead-lettered. Version 4 granted DELETE only on
-- referral_personal, case_contacts and outbox, so under allvarsd_runtime the
-- first rejected outcome failed with SQLSTATE 42501 and the batch was retried
-- forever, stalling every partition. The grants stay one function so that
-- deploy/roles.sql applies them when the roles come after the schema.

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

        -- The batch (store.c), the lifecycle, the deadline watch, the purge's
        -- audit; the relay's record of what it delivered.
        GRANT INSERT ON persons, referrals, referral_personal, decisions, cases, case_contacts,
                        case_alerts, outcome_events, audit, outbox, outbox_sent, consumer_offsets,
                        dead_letters, purges
                TO allvarsd_runtime;

        -- SELECT ... FOR UPDATE needs an UPDATE grant; persons are never changed.
        GRANT UPDATE (first_seen_at) ON persons TO allvarsd_runtime;
        -- Cases move through the lifecycle; offsets by compare-and-set.
        GRANT UPDATE ON cases, case_contacts, consumer_offsets TO allvarsd_runtime;
        -- Outbox rows are written once and deleted once (version 2 granted
        -- UPDATE for the sent mark and the payload purge).
        REVOKE UPDATE ON outbox FROM allvarsd_runtime;
        -- Pseudonymous rows stay as written; the purge only marks and clears.
        GRANT UPDATE (purged_at) ON referrals TO allvarsd_runtime;
        GRANT UPDATE (payload, replayed_at) ON dead_letters TO allvarsd_runtime;
        -- The audit is append only; the purge clears an override's free text.
        GRANT UPDATE (detail) ON audit TO allvarsd_runtime;

        -- The retention purge (retention.c) deletes the personal rows; the
        -- relay (relay.c) deletes the rows it delivered; the outcome batch
        -- (store_outcomes.c) takes back the row of an event it rejects, in the
        -- transaction that dead-letters it.
        GRANT DELETE ON referral_personal, case_contacts, outbox, outcome_events TO allvarsd_runtime;
END
$$;

REVOKE ALL ON FUNCTION allvarsd.grant_runtime() FROM PUBLIC;

SELECT allvarsd.grant_runtime();
