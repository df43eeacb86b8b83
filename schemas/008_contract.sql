-- Version 8: what the integrators' contract needs (docs/contract.md).
--
-- cases.revision (since version 1) grows by one with every change of a case, its
-- decision being revision 1; from this version every message on the scheduling
-- topic carries the revision of the change that made it, so that the booking
-- service keeps, per case, the message with the highest revision (a request, an
-- updated request or a withdrawal). Nothing to change in the table for that.
--
-- dead_letters.source_*: what the producer of a rejected message knows it by,
-- and what a replay needs to send it again as it came: its Kafka key (so it
-- lands on its case's partition), its headers (header_blob.h: name and value
-- lengths before each), its ce_id header when that is an id, and its own event
-- id (a CaseOutcome's event_id, a PoliceReferral's referral_id) when it could be
-- decoded. NULL for the rows written before this version.
--
-- No grants change: allvarsd_runtime holds INSERT on dead_letters for the whole
-- table and SELECT on every table (schemas/006_operator_role.sql), which cover the
-- new columns; allvarsd_operator reads them through dead_letter_summary, whose
-- SELECT grant a CREATE OR REPLACE keeps.

ALTER TABLE allvarsd.dead_letters
        ADD COLUMN source_key bytea,
        ADD COLUMN source_headers bytea,
        ADD COLUMN source_ce_id text,
        ADD COLUMN source_event_id text;

-- What allvarsctl reads of a dead letter (schemas/006_operator_role.sql): the
-- summary gains the new columns at its end (its grants stay); the payload is
-- still read only through read_dead_letter_payload().
CREATE OR REPLACE VIEW allvarsd.dead_letter_summary AS
        SELECT id, event_id, source_topic, source_partition, source_offset, reason, detail,
               octet_length(payload) AS payload_bytes, received_at, replayed_at,
               source_key, source_headers, source_ce_id, source_event_id
          FROM allvarsd.dead_letters;
