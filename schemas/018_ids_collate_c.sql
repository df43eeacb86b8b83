-- Version 18: referral ids compared byte by byte (COLLATE "C").
--
-- A referral id is the police's opaque key ("POL-..."): it is looked up and
-- joined, never shown in an order a person reads. Until this version its
-- columns took the database's collation. A database made with createdb takes
-- the cluster's locale, and on a Swedish server that is sv_SE.UTF-8, in which
-- PostgreSQL compares text with the C library's strcoll. Every referral puts
-- its id into three or four B-tree indexes (referrals, decisions,
-- referral_personal, assessment_duties), each insert a descent of about twenty
-- comparisons. Measured on a private PostgreSQL 15 (bench/collation;
-- bench/README.md "Referral ids in a Swedish database"): 128,000 ids inserted
-- in sorted batches of 640 into a table with a text primary key took 33-49 %
-- longer in a sv_SE.UTF-8 database than with the column COLLATE "C" in the
-- same database, about 4 µs more per id, and 4-18 % longer in C.UTF-8. So a
-- referral cost a Swedish database 10-18 µs more than the bench's, whose
-- server, like the tests', is made with --locale=C, where nothing changes.
--
-- Comparisons that mix a "C" column with text of the database's collation (a
-- parameter, a plpgsql variable, another column) take "C": PostgreSQL
-- combines the default collation with any other implicit one into the other.
-- The batch already sorts its referrals by id COLLATE "C"
-- (daemon/store_referrals.c), now the index's own order.
--
-- The two views that read these columns are dropped and made again from
-- their own definitions (ALTER COLUMN refuses while a view uses the column),
-- with their options and comments; grant_all() gives their grants back. The
-- tables are not rewritten (the type stays text); their id indexes are
-- rebuilt (a sort of the ids each) under the migration's lock, with the
-- daemon stopped as for every migration.
--
-- Safe to run again.

SET LOCAL search_path = allvarsd;

DO $$
DECLARE
        v record;
        t text;
        tables text[] := ARRAY['referrals', 'referral_personal', 'decisions', 'cases', 'assessment_duties', 'audit'];
        kept jsonb := '[]';
BEGIN
        -- Run again: nothing to change, the views stay as they are.
        IF NOT EXISTS (SELECT FROM pg_attribute
                        WHERE attrelid IN (SELECT format('allvarsd.%I', x)::regclass FROM unnest(tables) x)
                          AND attname = 'referral_id' AND attcollation <> 'pg_catalog."C"'::regcollation) THEN
                RETURN;
        END IF;

        -- The views that read a referral_id column of these tables.
        FOR v IN SELECT DISTINCT c.oid, c.relname
                   FROM pg_depend d
                   JOIN pg_rewrite rw ON rw.oid = d.objid
                   JOIN pg_class c ON c.oid = rw.ev_class
                   JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                  WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
                    AND a.attname = 'referral_id' AND d.refobjid <> c.oid
                    AND c.relnamespace = 'allvarsd'::regnamespace
                  ORDER BY c.relname
        LOOP
                kept := kept || jsonb_build_object('name', v.relname, 'def', pg_get_viewdef(v.oid),
                                                   'comment', obj_description(v.oid, 'pg_class'),
                                                   'options', (SELECT array_to_string(reloptions, ', ')
                                                                 FROM pg_class WHERE oid = v.oid));
                EXECUTE format('DROP VIEW allvarsd.%I', v.relname);
        END LOOP;

        FOREACH t IN ARRAY tables LOOP
                EXECUTE format('ALTER TABLE allvarsd.%I ALTER COLUMN referral_id TYPE text COLLATE "C"', t);
        END LOOP;

        FOR v IN SELECT x->>'name' AS name, x->>'def' AS def, x->>'comment' AS comment, x->>'options' AS options
                   FROM jsonb_array_elements(kept) x
        LOOP
                EXECUTE format('CREATE VIEW allvarsd.%I %s AS %s', v.name,
                               CASE WHEN v.options IS NULL THEN '' ELSE format('WITH (%s)', v.options) END, v.def);
                IF v.comment IS NOT NULL THEN
                        EXECUTE format('COMMENT ON VIEW allvarsd.%I IS %L', v.name, v.comment);
                END IF;
        END LOOP;
END
$$;

SELECT allvarsd.grant_all();
