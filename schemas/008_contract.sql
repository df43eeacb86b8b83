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
-- table (schemas/005_outcome_reject_grant.sql) and SELECT on every table, which
-- cover the new columns; so does a role granted SELECT on the tables
-- (allvarsd_operator).

ALTER TABLE allvarsd.dead_letters
        ADD COLUMN source_key bytea,
        ADD COLUMN source_headers bytea,
        ADD COLUMN source_ce_id text,
        ADD COLUMN source_event_id text;
