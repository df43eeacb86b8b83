-- Version 7: the instances of allvarsd that share this database, as they
-- report themselves (daemon/instances.c): who runs where, since when, the
-- last heartbeat (the periodic jobs, every 15 s), whether it holds the outbox
-- relay, its counts since start and its last database error of each class
-- (daemon/sqlstate.h; one line, never personal data). `allvarsctl status`
-- shows them; rows silent for seven days are deleted by the next heartbeat.

CREATE TABLE IF NOT EXISTS allvarsd.instances (
        instance_id      text PRIMARY KEY,             -- host:pid:start (microseconds)
        host             text NOT NULL,
        pid              integer NOT NULL,
        version          text NOT NULL,
        started_at       timestamptz NOT NULL,
        heartbeat_at     timestamptz NOT NULL,         -- the server's now() at the last heartbeat
        stopped_at       timestamptz,                  -- a clean stop
        relay_active     boolean NOT NULL DEFAULT false,
        partitions       integer NOT NULL DEFAULT 0,
        decided          bigint NOT NULL DEFAULT 0,    -- since start
        dead_lettered    bigint NOT NULL DEFAULT 0,    -- since start
        error_transient  text,
        error_data       text,
        error_deployment text,
        error_other      text
);

-- The grants of this table, one function so that deploy/roles.sql applies
-- them when the roles come after the schema: the daemon writes its own row,
-- the operator's allvarsctl reads.
CREATE OR REPLACE FUNCTION allvarsd.grant_instances() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT, UPDATE, DELETE ON instances TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON instances TO allvarsd_operator;
        END IF;
END
$$;

REVOKE ALL ON FUNCTION allvarsd.grant_instances() FROM PUBLIC;

SELECT allvarsd.grant_instances();
