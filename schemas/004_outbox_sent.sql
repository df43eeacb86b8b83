-- allvarsd schema, version 4: the outbox is a queue; delivered events leave it.
--
-- Until version 3 the relay marked a delivered row with UPDATE outbox SET
-- sent_at = now(). That update could not be HOT (the partial index
-- outbox_unsent is on sent_at), so every event, payload included, was written
-- twice (6 KB of WAL per referral against 4 KB for a COPY of the same rows),
-- and the dead index entries lengthened the relay's walk to the unsent rows
-- (bench/README.md "What limits the daemon"). Now the relay deletes a
-- delivered row and keeps a narrow record of it in outbox_sent, in one
-- statement (relay.c mark_sent). The record has no payload: the personal data
-- of a SchedulingRequest (names, contacts) leaves the database once the
-- booking service has it, so the retention purge no longer clears payloads
-- (purges.outbox_purged stays, always 0 from this version).
--
-- Event ids stay unique across both tables. The writers that may produce an
-- event id again (a dead letter's event on a re-read offset, an outcome's
-- events, the deadline watch) insert with ON CONFLICT (event_id) DO NOTHING
-- and skip ids in outbox_sent (an index lookup on outbox_sent_event_id_key).
-- One interleaving still lets an id through, read committed being what it is:
-- the writer's statement takes its snapshot while the relay's DELETE of the
-- same id is not yet committed, then its unique check waits for the relay and,
-- the old row being gone, inserts. That event is then published a second time
-- with the same ce_id, exactly as after a relay crash between the delivery
-- report and the marking (README.md "Effectively once": at least once,
-- consumers drop duplicates by ce_id); the relay's marking skips an id already
-- in outbox_sent (ON CONFLICT DO NOTHING) so it cannot fail on it. The window
-- is one statement of the relay and needs a deterministic id produced again at
-- that moment, which only a replay or a retried batch does.

SET LOCAL search_path = allvarsd;

-- No writer may insert, and no relay mark, while the rows are moved: the
-- snapshots of the statements below then see every committed row.
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;

-- What was published: pseudonymous (ids, topic, type, size, times), kept like
-- the audit skeleton. Append only.
CREATE TABLE outbox_sent (
        -- The outbox row's id (outbox_id_seq). Not indexed: one index (event_id)
        -- is what the relay's insert and the writers' check need, and each
        -- index costs every delivered event a write.
        id              bigint NOT NULL,
        event_id        uuid NOT NULL UNIQUE,          -- ce_id
        topic           text NOT NULL,
        key             text NOT NULL,                 -- the case id (or topic/partition of a dead letter)
        ce_type         text NOT NULL,
        ce_time         timestamptz NOT NULL,
        -- The payload's size, never its bytes: for statistics, and for the
        -- bench's COPY ceiling, which writes rows of the same size (bench/run).
        -- Read without detoasting (octet_length). 0 for a payload the purge
        -- of version 2 had already cleared.
        payload_bytes   integer NOT NULL,
        created_at      timestamptz NOT NULL,          -- when the outbox row was written
        sent_at         timestamptz NOT NULL           -- when its delivery was marked
);

INSERT INTO outbox_sent (id, event_id, topic, key, ce_type, ce_time, payload_bytes, created_at, sent_at)
SELECT id, event_id, topic, key, ce_type, ce_time, octet_length(payload), created_at, sent_at
  FROM outbox WHERE sent_at IS NOT NULL ORDER BY id;

-- The unsent rows stay, with their ids (the sequence goes on). The sent rows
-- go with TRUNCATE rather than DELETE: a new, small file at once instead of
-- millions of dead rows (and their payloads) for vacuum, and no dead index
-- entries for the relay's first passes to walk.
CREATE TABLE outbox_v3_unsent AS
SELECT id, event_id, topic, key, ce_type, ce_time, payload, created_at
  FROM outbox WHERE sent_at IS NULL;
TRUNCATE outbox;
DROP INDEX outbox_unsent;               -- every row is unsent: the primary key serves ORDER BY id
ALTER TABLE outbox DROP COLUMN sent_at;
INSERT INTO outbox (id, event_id, topic, key, ce_type, ce_time, payload, created_at)
SELECT id, event_id, topic, key, ce_type, ce_time, payload, created_at
  FROM outbox_v3_unsent ORDER BY id;
DROP TABLE outbox_v3_unsent;

COMMENT ON TABLE outbox IS
        'Events not yet delivered; the relay moves a delivered row to outbox_sent (schemas/004_outbox_sent.sql)';
COMMENT ON COLUMN outbox.payload IS
        'PERSONAL for scheduling requests: gone with the row once delivered';
COMMENT ON COLUMN purges.outbox_purged IS
        'Payloads cleared by the purge until schema version 4; 0 since (delivered rows keep no payload)';

-- A queue: every row is inserted once and deleted once, and its live size is
-- the backlog (nothing in steady state, millions during a replay). The default
-- trigger, 50 + 20 % of reltuples dead rows, scales with a size that swings:
-- after a replay's backlog it waits for hundreds of thousands of dead rows,
-- whose index entries every relay pass walks from the head of the primary key.
-- A fixed count instead: vacuum at the next autovacuum round (naptime) once
-- 1,000 rows are dead, whatever the table's size. The table is small when
-- vacuumed often, so the rounds are cheap; the same for its TOAST table.
-- Inserts alone never need a vacuum here (the rows are deleted soon after).
ALTER TABLE outbox SET (
        autovacuum_vacuum_scale_factor = 0,
        autovacuum_vacuum_threshold = 1000,
        toast.autovacuum_vacuum_scale_factor = 0,
        toast.autovacuum_vacuum_threshold = 1000
);

-- The runtime role's grants (002_roles.sql), with outbox_sent: the relay
-- inserts into it and deletes from outbox; nobody updates outbox rows any more.
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
        -- relay (relay.c) deletes the rows it delivered.
        GRANT DELETE ON referral_personal, case_contacts, outbox TO allvarsd_runtime;
END
$$;

REVOKE ALL ON FUNCTION allvarsd.grant_runtime() FROM PUBLIC;

SELECT allvarsd.grant_runtime();
