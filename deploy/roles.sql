-- The database roles of allvarsd: run once by the DBA, as a superuser,
-- connected to the database dedicated to allvarsd (idempotent: safe to re-run).
--
--   createdb allvarsd
--   psql -d allvarsd -v ON_ERROR_STOP=1 -f /usr/share/allvarsd/roles.sql \
--        [-v owner_password=...] [-v runtime_password=...]
--   allvarsd --migrate      (with database.conninfo naming user=allvarsd_owner)
--
-- allvarsd_owner    owns the schema allvarsd and runs the migrations (DDL).
-- allvarsd_runtime  the daemon, its outbox relay and allvarsctl: row access
--                   only, granted table by table by the migrations
--                   (allvarsd.grant_runtime(), schemas/002_roles.sql and
--                   004_outbox_sent.sql): no DDL, no TRUNCATE, DELETE only where
--                   the retention purge needs it and of the outbox rows the
--                   relay delivered.
-- Passwords are optional here (peer, cert or SCRAM set later with \password).

DO $$
BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_owner') THEN
                CREATE ROLE allvarsd_owner LOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                CREATE ROLE allvarsd_runtime LOGIN;
        END IF;
END
$$;

ALTER ROLE allvarsd_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN;
ALTER ROLE allvarsd_runtime NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN
        CONNECTION LIMIT 64;
ALTER ROLE allvarsd_runtime SET search_path = allvarsd;
ALTER ROLE allvarsd_owner SET search_path = allvarsd;

\if :{?owner_password}
ALTER ROLE allvarsd_owner PASSWORD :'owner_password';
\endif
\if :{?runtime_password}
ALTER ROLE allvarsd_runtime PASSWORD :'runtime_password';
\endif

-- This database belongs to allvarsd: only its roles (and superusers) connect,
-- only the owner creates schemas, and nobody creates temporary tables.
DO $$
BEGIN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO allvarsd_owner', current_database());
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO allvarsd_runtime', current_database());
END
$$;

-- Objects in the public schema are not the runtime's business.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- When the schema exists already (the roles came after `allvarsd --migrate`),
-- apply the runtime grants now. (The tables keep the owner that created them.)
DO $$
BEGIN
        IF to_regprocedure('allvarsd.grant_runtime()') IS NOT NULL THEN
                PERFORM allvarsd.grant_runtime();
        END IF;
        IF to_regprocedure('allvarsd.grant_instances()') IS NOT NULL THEN
                PERFORM allvarsd.grant_instances();
        END IF;
END
$$;
