-- Version 9: gaps in an input partition.
--
-- A partition's next message is normally the stored next offset. When Kafka no
-- longer has the messages from there (retention or deleted records moved the
-- log start past it, or an offset reset), the consumer records the offsets
-- that were never read here, once per partition and first missing offset
-- (the primary key), in the transaction that writes the operators' alert
-- (ALERT_KIND_PARTITION_GAP on the alerts topic). `allvarsctl status` lists
-- them. Gaps Kafka explains (transaction markers, compaction) are not stored.

CREATE TABLE allvarsd.partition_gaps (
        consumer_group  text NOT NULL,
        topic           text NOT NULL,
        partition       integer NOT NULL,
        from_offset     bigint NOT NULL,        -- the first offset not read
        to_offset       bigint NOT NULL,        -- the first offset read after the gap
        log_start       bigint NOT NULL,        -- Kafka's log start offset when seen
        detected_at     timestamptz NOT NULL,
        PRIMARY KEY (consumer_group, topic, partition, from_offset),
        CHECK (to_offset > from_offset)
);


-- Events the brokers refuse for good (larger than they accept): the relay
-- takes the row out of the outbox (so that the case's later events go on),
-- keeps its record here without the payload, and writes a DeadLetter and an
-- EVENT_UNDELIVERABLE alert of the case in its place (relay_dead.c).
CREATE TABLE allvarsd.outbox_undeliverable (
        id              bigint PRIMARY KEY,     -- the outbox row's id
        event_id        uuid NOT NULL,
        topic           text NOT NULL,
        key             text NOT NULL,
        ce_type         text NOT NULL,
        payload_bytes   integer NOT NULL,
        created_at      timestamptz NOT NULL,
        failed_at       timestamptz NOT NULL,
        error           text NOT NULL           -- librdkafka's error name, e.g. MSG_SIZE_TOO_LARGE
);

-- The grants, as schema 7 keeps them (schemas/007_instances.sql): a
-- grant_vNNN_<table>() that grant_all() applies after the base sets, for
-- deploy/roles.sql and the migrations alike. The daemon records gaps and
-- undeliverable events; the operator's allvarsctl status reads the gaps.
CREATE OR REPLACE FUNCTION allvarsd.grant_v009_partition_gaps() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT ON partition_gaps, outbox_undeliverable TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON partition_gaps, outbox_undeliverable TO allvarsd_operator;
        END IF;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_v009_partition_gaps() FROM PUBLIC;

SELECT allvarsd.grant_all();
