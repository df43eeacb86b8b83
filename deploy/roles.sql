-- The database roles of allvarsd: run once by the DBA, as a superuser,
-- connected to the database dedicated to allvarsd (idempotent: safe to re-run).
--
--   createdb allvarsd
--   psql -d allvarsd -v ON_ERROR_STOP=1 -f /usr/share/allvarsd/roles.sql \
--        [-v owner_password=...] [-v runtime_password=...] [-v operator_password=...]
--   allvarsd --migrate --database 'dbname=allvarsd user=allvarsd_owner'
--
-- allvarsd_owner     owns the schema allvarsd and runs the migrations (DDL).
-- allvarsd_runtime   the daemon and its outbox relay: row access to exactly
--                    the tables and columns their statements use, granted by
--                    the migrations (allvarsd.grant_runtime(), the newest in
--                    schemas/006_operator_role.sql): no DDL, no TRUNCATE.
-- allvarsd_operator  allvarsctl: reads the pseudonymous tables, writes
--                    nothing (allvarsd.grant_operator()); personal data only
--                    through functions that record the read in the audit
--                    trail. Give people their own login roles and
--                    GRANT allvarsd_operator TO them: the audit then names them.
-- Passwords are optional here (peer, cert or SCRAM set later with \password).

DO $$
BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_owner') THEN
                CREATE ROLE allvarsd_owner LOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_runtime') THEN
                CREATE ROLE allvarsd_runtime LOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'allvarsd_operator') THEN
                CREATE ROLE allvarsd_operator LOGIN;
        END IF;
END
$$;

ALTER ROLE allvarsd_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN;
ALTER ROLE allvarsd_runtime NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN
        CONNECTION LIMIT 64;
ALTER ROLE allvarsd_operator NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS LOGIN
        CONNECTION LIMIT 16;
ALTER ROLE allvarsd_runtime SET search_path = allvarsd;
ALTER ROLE allvarsd_owner SET search_path = allvarsd;
ALTER ROLE allvarsd_operator SET search_path = allvarsd;

\if :{?owner_password}
ALTER ROLE allvarsd_owner PASSWORD :'owner_password';
\endif
\if :{?runtime_password}
ALTER ROLE allvarsd_runtime PASSWORD :'runtime_password';
\endif
\if :{?operator_password}
ALTER ROLE allvarsd_operator PASSWORD :'operator_password';
\endif

-- This database belongs to allvarsd: only its roles (and superusers) connect,
-- only the owner creates schemas, and nobody creates temporary tables.
DO $$
BEGIN
        EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
        EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO allvarsd_owner', current_database());
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO allvarsd_runtime', current_database());
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO allvarsd_operator', current_database());
END
$$;

-- Objects in the public schema are not the runtime's business.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- When the schema exists already (the roles came after `allvarsd --migrate`),
-- apply the grants now. (The tables keep the owner that created them.)
DO $$
BEGIN
        IF to_regprocedure('allvarsd.grant_all()') IS NOT NULL THEN
                PERFORM allvarsd.grant_all();           -- version 7 and later
        ELSIF to_regprocedure('allvarsd.grant_runtime()') IS NOT NULL THEN
                PERFORM allvarsd.grant_runtime();
                IF to_regprocedure('allvarsd.grant_operator()') IS NOT NULL THEN
                        PERFORM allvarsd.grant_operator();
                END IF;
        END IF;
END
$$;
