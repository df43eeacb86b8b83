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

DO $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT ON allvarsd.partition_gaps TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON allvarsd.partition_gaps TO allvarsd_operator;
        END IF;
END
$$;
