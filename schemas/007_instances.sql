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

-- The grants of this table. Versions 2-6 kept every grant in two functions,
-- grant_runtime() and grant_operator(), each of which revokes everything of
-- its role first. From this version on, a migration that adds a table brings
-- its grants as a function named grant_vNNN_<table>(), and grant_all() applies
-- the two base sets and then every grant_v*() in name order: one call for
-- deploy/roles.sql and for the migrations, whichever came first.
CREATE OR REPLACE FUNCTION allvarsd.grant_v007_instances() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
BEGIN
        -- The daemon writes its own row, the operator's allvarsctl reads.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                GRANT SELECT, INSERT, UPDATE, DELETE ON instances TO allvarsd_runtime;
        END IF;
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                GRANT SELECT ON instances TO allvarsd_operator;
        END IF;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_v007_instances() FROM PUBLIC;

CREATE OR REPLACE FUNCTION allvarsd.grant_all() RETURNS void
        LANGUAGE plpgsql
        SET search_path = allvarsd
AS $$
DECLARE
        f name;
BEGIN
        PERFORM grant_runtime();
        PERFORM grant_operator();
        FOR f IN SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                  WHERE n.nspname = 'allvarsd' AND p.proname LIKE 'grant\_v%' AND p.pronargs = 0
                  ORDER BY p.proname
        LOOP
                EXECUTE format('SELECT allvarsd.%I()', f);
        END LOOP;
END
$$;
REVOKE ALL ON FUNCTION allvarsd.grant_all() FROM PUBLIC;

SELECT allvarsd.grant_all();
