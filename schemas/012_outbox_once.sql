-- Version 12: event ids indexed only where an event can be made again.
--
-- Until version 11 both outbox and outbox_sent had a unique index on event_id
-- over every row: two random-key index entries per event (the ids are name-
-- based UUIDs, so each entry lands on a leaf of its own), written when the
-- event is stored and again when the relay moves it to outbox_sent, with a
-- full-page image of each leaf after every checkpoint. Over a replay of a
-- million referrals they were the largest part of the relay's marking, the
-- most expensive statement of all (bench/README.md).
--
-- The index serves one purpose: a writer that may make an event again (a dead
-- letter's event on a re-read offset, an alert of the deadline watch, an
-- outcome's events: store_rows.c "rows_outbox_once") must not store it twice,
-- nor once more after it was delivered (schemas/004_outbox_sent.sql). The
-- referral batch's events (a new referral's feedback and scheduling request)
-- are made once: only for a referral its insert has just created (ON CONFLICT
-- on referrals), and their names (uuid5 of the case and "feedback/RECEIVED",
-- "scheduling/...") are none that another writer makes. They need no index.
--
-- So each row says whether its event can be made again (once: true), and the
-- unique indexes cover only those rows. The default is true: a writer that
-- does not say otherwise keeps the old guarantee, and every row stored before
-- this version is indexed as it was.
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

ALTER TABLE outbox ADD COLUMN IF NOT EXISTS once boolean NOT NULL DEFAULT true;
ALTER TABLE outbox_sent ADD COLUMN IF NOT EXISTS once boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN outbox.once IS
        'The event can be made again by its writer (an alert, an outcome''s event, a dead letter''s): its event_id is unique (outbox_once_event_id)';
COMMENT ON COLUMN outbox_sent.once IS
        'outbox.once of the delivered row: its event_id is unique (outbox_sent_once_event_id)';

-- Built before the old ones go, so that no moment is without the guarantee.
CREATE UNIQUE INDEX IF NOT EXISTS outbox_once_event_id ON outbox (event_id) WHERE once;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_sent_once_event_id ON outbox_sent (event_id) WHERE once;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
ALTER TABLE outbox_sent DROP CONSTRAINT IF EXISTS outbox_sent_event_id_key;
