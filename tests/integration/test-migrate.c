/* store_migrate and store_check_schema against a real PostgreSQL server
 * (PGHOST/PGPORT/PGUSER from tests/lib/pg.sh): each test on a fresh, empty
 * database, with the project's schemas/ or a copy of them in a temp dir.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-migrate; pg_stop */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "harness.h"
#include "clock.h"
#include "store.h"
#include "store_rows.h"

typedef struct fixture {
        harness_db db;                  /* empty: each test migrates it */
        PGconn *pg;
        store *st;
        char schemas[1024];             /* the project's schemas/ */
        char dir[64];                   /* a private copy of schemas/, for tests that change it */
} fixture;

#define count(fx, ...) harness_count((fx)->pg, __VA_ARGS__)

static int setup_in(void **state, const char *locale) {
        fixture *fx = calloc(1, sizeof *fx);
        assert_non_null(fx);
        *state = fx;
        harness_schemas_dir(fx->schemas, sizeof fx->schemas);
        assert_true(harness_pg_available());
        assert_int_equal(harness_db_create_locale(NULL, locale, &fx->db), 0);
        assert_int_equal(harness_pg_connect(fx->db.name, &fx->pg), 0);
        assert_int_equal(harness_store_connect(&fx->db, &fx->st), 0);
        return 0;
}

static int setup(void **state) {
        return setup_in(state, NULL);
}

/* A database in the locale a production one is made in when the system's is
 * not C (createdb takes the cluster's); C.UTF-8 is always there. The tests'
 * own cluster is made with --locale=C. */
static int setup_utf8(void **state) {
        return setup_in(state, "C.UTF-8");
}

static int teardown(void **state) {
        fixture *fx = *state;
        if (!fx)
                return 0;
        store_free(fx->st);
        PQfinish(fx->pg);
        harness_db_drop(&fx->db);
        if (fx->dir[0]) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
                if (system(cmd) != 0)
                        fprintf(stderr, "could not remove %s\n", fx->dir);
        }
        free(fx);
        return 0;
}

/* A private copy of schemas/ in fx->dir. */
static void copy_schemas(fixture *fx) {
        snprintf(fx->dir, sizeof fx->dir, "/tmp/allvars-schemas-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "cp '%s'/[0-9][0-9][0-9]_*.sql '%s'/", fx->schemas, fx->dir);
        assert_int_equal(system(cmd), 0);
}

static void write_file(const char *dir, const char *name, const char *text, const char *mode) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, mode);
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static int migrate(fixture *fx, const char *dir, char *err, size_t size) {
        return store_migrate(fx->st, dir, err, size);
}

/* The database, now at version `from`, migrated to version `to` only, with a
 * private copy of schemas/ that holds the migrations up to it. */
static void migrate_from_to(fixture *fx, int from, int to) {
        copy_schemas(fx);
        char cmd[256];
        snprintf(cmd, sizeof cmd,
                 "for f in '%s'/[0-9][0-9][0-9]_*.sql; do n=${f##*/}; n=${n%%%%_*}; [ $(expr $n + 0) -le %d ] || rm \"$f\"; done",
                 fx->dir, to);
        assert_int_equal(system(cmd), 0);
        char err[512];
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), to - from);
}

static void migrate_up_to(fixture *fx, int version) {
        migrate_from_to(fx, 0, version);
}

/* One of the project's migration files run again by hand, in one transaction,
 * as an operator would (each says whether that is safe). */
static void run_again(fixture *fx, const char *file) {
        char cmd[1536];
        snprintf(cmd, sizeof cmd, "psql -X -q -v ON_ERROR_STOP=1 -1 -d '%s' -f '%s/%s' >/dev/null", fx->db.name,
                 fx->schemas, file);
        assert_int_equal(system(cmd), 0);
}

/* Then the rest of the project's migrations, from version `from` on. */
static void migrate_rest(fixture *fx, int from) {
        char dir[1024], err[512];
        assert_int_equal(migrate(fx, harness_schemas_dir(dir, sizeof dir), err, sizeof err),
                         STORE_SCHEMA_VERSION - from);
}

static void sha256_file(const char *path, char out[65]) {
        FILE *f = fopen(path, "re");
        assert_non_null(f);
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_non_null(ctx);
        assert_true(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL));
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
                assert_true(EVP_DigestUpdate(ctx, buf, n));
        fclose(f);
        unsigned char md[32];
        unsigned len = 0;
        assert_true(EVP_DigestFinal_ex(ctx, md, &len));
        EVP_MD_CTX_free(ctx);
        for (unsigned i = 0; i < len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- tests ---- */

/* A fresh database: no schema (ENOENT), then every migration once, recorded
 * with its checksum; the second run applies nothing and changes nothing. */
static void test_migrate_twice_is_noop(void **state) {
        fixture *fx = *state;
        int version = -1;
        assert_int_equal(store_check_schema(fx->st, &version), -ENOENT);
        assert_int_equal(version, 0);

        char err[512] = "";
        int r = migrate(fx, fx->schemas, err, sizeof err);
        if (r < 0)
                fail_msg("store_migrate: %s", err);
        assert_int_equal(r, STORE_SCHEMA_VERSION);
        assert_int_equal(store_check_schema(fx->st, &version), 0);
        assert_int_equal(version, STORE_SCHEMA_VERSION);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.schema_migrations"), STORE_SCHEMA_VERSION);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.schema_migrations WHERE version = 1 AND name = 'initial'"
                                   " AND applied_at <= now()"),
                         1);
        char path[1200], sum[65];
        snprintf(path, sizeof path, "%s/001_initial.sql", fx->schemas);
        sha256_file(path, sum);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.schema_migrations WHERE version = 1 AND sha256 = '%s'",
                               sum),
                         1);

        long long tables = count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'");
        long long applied_at = count(fx, "SELECT (extract(epoch FROM max(applied_at)) * 1e6)::bigint"
                                         " FROM allvarsd.schema_migrations");
        assert_true(tables >= 14);
        /* No foreign keys: each was a lookup and a lock of a row the same
         * transaction had just written (schemas/014_case_foreign_keys.sql). */
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_constraint"
                                   " WHERE contype = 'f' AND connamespace = 'allvarsd'::regnamespace"),
                         0);
        assert_int_equal(migrate(fx, fx->schemas, err, sizeof err), 0);
        assert_int_equal(migrate(fx, fx->schemas, err, sizeof err), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'"), tables);
        assert_int_equal(count(fx, "SELECT (extract(epoch FROM max(applied_at)) * 1e6)::bigint"
                                   " FROM allvarsd.schema_migrations"),
                         applied_at);
        assert_int_equal(store_check_schema(fx->st, &version), 0);
}

/* A database a newer build migrated is refused by the check and by migrate;
 * an older one is refused by the check and brought up to date by migrate. */
static void test_schema_check_refuses_unknown_version(void **state) {
        fixture *fx = *state;
        char err[512];
        assert_true(migrate(fx, fx->schemas, err, sizeof err) >= 0);
        harness_exec_ok(fx->pg, "INSERT INTO allvarsd.schema_migrations (version, name, sha256, applied_at)"
                        " VALUES (999, 'future', '', now())");
        int version = 0;
        assert_int_equal(store_check_schema(fx->st, &version), -EPROTO);
        assert_int_equal(version, 999);
        assert_non_null(strstr(store_last_error(fx->st), "999"));
        assert_int_equal(migrate(fx, fx->schemas, err, sizeof err), -EPROTO);
        assert_non_null(strstr(err, "999"));

        /* A database at version 1 (migrated by an older build). */
        harness_exec_ok(fx->pg, "DROP SCHEMA allvarsd CASCADE");
        copy_schemas(fx);
        char cmd[256];
        /* every migration but the first: 002 to 009 and 010 on */
        snprintf(cmd, sizeof cmd, "find '%s' -name '[0-9][0-9][0-9]_*.sql' ! -name '001_*' -delete", fx->dir);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), 1);
        assert_int_equal(store_check_schema(fx->st, &version), -EPROTO);
        assert_int_equal(version, 1);
        assert_int_equal(migrate(fx, fx->schemas, err, sizeof err), STORE_SCHEMA_VERSION - 1);
        assert_int_equal(store_check_schema(fx->st, &version), 0);
}

/* A migration edited after it was applied is an error, and nothing else runs. */
static void test_changed_checksum(void **state) {
        fixture *fx = *state;
        copy_schemas(fx);
        char err[512];
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), STORE_SCHEMA_VERSION);
        write_file(fx->dir, "001_initial.sql", "\n-- an innocent comment\n", "a");
        write_file(fx->dir, "900_later.sql", "CREATE TABLE allvarsd.later (x int);\n", "w");
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), -EPROTO);
        assert_non_null(strstr(err, "001_initial.sql"));
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE tablename = 'later'"), 0);
        assert_int_equal(count(fx, "SELECT max(version) FROM allvarsd.schema_migrations"), STORE_SCHEMA_VERSION);
}

/* A migration that fails half way leaves nothing behind and is not recorded;
 * fixed, it applies. One that ends the transaction itself is refused. */
static void test_failed_migration_rolls_back(void **state) {
        fixture *fx = *state;
        copy_schemas(fx);
        char broken[32], commits[32];
        snprintf(broken, sizeof broken, "%03d_broken.sql", STORE_SCHEMA_VERSION + 1);
        snprintf(commits, sizeof commits, "%03d_commits.sql", STORE_SCHEMA_VERSION + 2);
        write_file(fx->dir, broken,
                   "CREATE TABLE allvarsd.half_done (x int);\nSELECT allvarsd.no_such_function();\n", "w");
        char err[512];
        int r = migrate(fx, fx->dir, err, sizeof err);
        assert_true(r < 0);
        assert_non_null(strstr(err, broken));
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"), 0);
        assert_int_equal(count(fx, "SELECT max(version) FROM allvarsd.schema_migrations"), STORE_SCHEMA_VERSION);
        assert_true(store_connected(fx->st));

        write_file(fx->dir, broken, "CREATE TABLE allvarsd.half_done (x int);\n", "w");
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"), 1);
        int version;
        assert_int_equal(store_check_schema(fx->st, &version), -EPROTO);        /* newer than this build */
        assert_int_equal(version, STORE_SCHEMA_VERSION + 1);

        write_file(fx->dir, commits, "CREATE TABLE allvarsd.t4 (x int);\nCOMMIT;\n", "w");
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), -EINVAL);
        assert_int_equal(count(fx, "SELECT max(version) FROM allvarsd.schema_migrations"), STORE_SCHEMA_VERSION + 1);
}

/* 004_outbox_sent.sql on a database of version 3 with events in it: the sent
 * rows move to outbox_sent without their payloads, the unsent ones stay with
 * theirs and their ids, sent_at and its index go, the sequence goes on. */
static void test_outbox_sent_migration(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 3);
        /* 300 events, every third unsent; payloads of 2 KB, personal in scheduling requests. */
        harness_exec_ok(fx->pg,
                        "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload, created_at,"
                        "                             sent_at)"
                        " SELECT md5('ev' || i)::uuid, 'allvarssamtal.scheduling.v1', 'case-' || (i % 7),"
                        "        'se.allvarssamtal.v1.SchedulingRequest', '2025-03-01T00:00:00Z',"
                        "        convert_to(repeat('Anna Andersson ', 140), 'UTF8'),"
                        "        '2025-03-01T00:00:00Z'::timestamptz + i * interval '1 second',"
                        "        CASE WHEN i % 3 = 0 THEN NULL"
                        "             ELSE '2025-03-01T00:00:00Z'::timestamptz + i * interval '2 second' END"
                        "   FROM generate_series(1, 300) AS i");
        harness_exec_ok(fx->pg, "CREATE TABLE public.before AS SELECT * FROM allvarsd.outbox");

        migrate_rest(fx, 3);
        int version;
        assert_int_equal(store_check_schema(fx->st, &version), 0);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 100);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o JOIN public.before b"
                                   " USING (id, event_id, topic, key, ce_type, ce_time, payload, created_at)"
                                   " WHERE b.sent_at IS NULL"),
                         100);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent"), 200);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent s JOIN public.before b"
                                   " USING (id, event_id, topic, key, ce_type, ce_time, created_at, sent_at)"
                                   " WHERE s.payload_bytes = octet_length(b.payload) AND s.payload_bytes = 2100"),
                         200);
        assert_int_equal(count(fx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'allvarsd'"
                                   " AND ((table_name = 'outbox' AND column_name = 'sent_at')"
                                   "      OR (table_name = 'outbox_sent' AND column_name = 'payload'))"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'outbox_unsent'"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_class WHERE relname = 'outbox'"
                                   " AND 'autovacuum_vacuum_scale_factor=0' = ANY (reloptions)"),
                         1);
        /* The sent rows' payloads are not kept in a dead corner of the table either. */
        assert_true(count(fx, "SELECT pg_relation_size('allvarsd.outbox')") <
                    count(fx, "SELECT pg_relation_size('public.before')") / 2);
        /* New rows continue the ids. */
        assert_int_equal(count(fx, "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
                                   " VALUES (md5('new')::uuid, 't', 'k', 'x', now(), '\\x00') RETURNING id"),
                         301);
}

/* 013_persons_history.sql on a database of version 12 with referrals in it:
 * each person's row gets the marks of each of its referrals (one element per
 * referral, in the order they came), the referrals without a person key count
 * for nobody, and the index the history read used goes. */
static void test_persons_history_migration(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 12);
        /* Persons 1 to 3 with 1, 2 and 3 referrals (marks 1, 2, 4 by arrival), 5 without a key. */
        harness_exec_ok(fx->pg, "INSERT INTO allvarsd.persons (person_key)"
                                " SELECT sha256(p::text::bytea) FROM generate_series(1, 3) AS p");
        harness_exec_ok(fx->pg,
                        "INSERT INTO allvarsd.referrals (referral_id, case_id, person_key, marks, district, reported_at,"
                        "                                feedback_requested, source_topic, source_partition,"
                        "                                source_offset, received_at)"
                        " SELECT 'R-' || p || '-' || n, md5(p || '/' || n)::uuid, sha256(p::text::bytea), 1 << (n - 1),"
                        "        'Hisingen', now(), false, 't', 0, p * 10 + n, now() + n * interval '1 s'"
                        "   FROM generate_series(1, 3) AS p, generate_series(1, 3) AS n WHERE n <= p"
                        " UNION ALL SELECT 'R-x-' || i, md5('x' || i)::uuid, NULL, 1, 'Hisingen', now(), false, 't', 0,"
                        "        100 + i, now() FROM generate_series(1, 5) AS i");
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'referrals_person'"), 1);

        migrate_rest(fx, 12);
        int version;
        assert_int_equal(store_check_schema(fx->st, &version), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.persons p, generate_series(1, 3) AS n"
                                   " WHERE p.person_key = sha256(n::text::bytea)"
                                   "   AND p.marks = (SELECT array_agg(1 << (i - 1) ORDER BY i) FROM generate_series(1, n) i)"),
                         3);
        assert_int_equal(count(fx, "SELECT sum(cardinality(marks)) FROM allvarsd.persons"), 6);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'referrals_person'"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_class WHERE relname = 'persons'"
                                   " AND 'fillfactor=80' = ANY (reloptions)"),
                         1);
}

/* Version 15: a decision's DECIDED entry in audit_trail is made from its
 * decisions row, with the "after" text referral_batch.c wrote (the deadline as
 * clock_format_rfc3339 writes it, fractions included); a decision that has a
 * DECIDED row from before the version is shown by that row only. And
 * cases.referral_id is no longer a unique index. */
static void test_decided_audit_entries(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 14);
#define REFS(ids)                                                                                    \
        "INSERT INTO allvarsd.referrals (referral_id, case_id, marks, district, reported_at, feedback_requested," \
        "                                source_topic, source_partition, source_offset, received_at)"           \
        " SELECT id, md5(id)::uuid, 1, 'Hisingen', now(), false, 't', 0, 0, now()"                            \
        "   FROM unnest('{" ids "}'::text[]) AS id"
#define DECISIONS                                                                                      \
        "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, deadline, profile_name,"        \
        "                                profile_version, profile_params, prior_referrals, prior_qualifying,"  \
        "                                decided_at)"                                                          \
        " VALUES "
        harness_exec_ok(fx->pg, REFS("R-OLD"));
        harness_exec_ok(fx->pg, DECISIONS
                        "('R-OLD', 'ELIGIBLE', '', 'UNDER_15', '2025-03-12T08:00:00Z', 'p', 1, '', 0, 0,"
                        "  '2025-03-10T08:00:00Z')");
        harness_exec_ok(fx->pg, "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, action, after)"
                                " VALUES (md5('R-OLD')::uuid, 'R-OLD', '2025-03-10T08:00:00Z', 'DAEMON', 'DECIDED',"
                                "         'outcome=ELIGIBLE;reasons=;flags=UNDER_15;deadline=2025-03-12T08:00:00Z')");
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'cases_referral_id_key'"), 1);

        migrate_rest(fx, 14);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'cases_referral_id_key'"), 0);
        harness_exec_ok(fx->pg, REFS("R-FRACTION,R-WHOLE,R-NONE"));
        /* Version 16 on: the parameters by key (016_profile_params.sql). */
        harness_exec_ok(fx->pg,
                        "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, deadline, profile_name,"
                        "                                profile_version, params_key, prior_referrals,"
                        "                                prior_qualifying, decided_at)"
                        " VALUES "
                        "('R-FRACTION', 'ELIGIBLE', '', 'UNDER_15', '2025-03-12T08:00:00.000123Z', 'p', 1,"
                        "  md5('')::uuid, 0, 0, '2025-03-10T08:00:00.5Z'),"
                        "('R-WHOLE', 'DEFERRED', 'CLEARANCE_PENDING', '', '2025-12-31T23:59:59Z', 'p', 1,"
                        "  md5('')::uuid, 0, 0, '2025-03-10T09:00:00Z'),"
                        "('R-NONE', 'NOT_ELIGIBLE', 'AGE_OVER_LIMIT,IDENTITY_INVALID', '', NULL, 'p', 1,"
                        "  md5('')::uuid, 0, 0, '2025-03-10T10:00:00Z')");

        /* The old row once, with its own id; the new ones from their decisions. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE action = 'DECIDED'"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE referral_id = 'R-OLD'"
                                   " AND id > 0 AND case_id = md5('R-OLD')::uuid"),
                         1);
        static const struct {
                const char *id, *after;
                usec_t deadline;
                const char *at;
        } want[] = {
                { "R-FRACTION", "outcome=ELIGIBLE;reasons=;flags=UNDER_15;deadline=", 1741766400000123LL,
                  "2025-03-10T08:00:00.5Z" },
                { "R-WHOLE", "outcome=DEFERRED;reasons=CLEARANCE_PENDING;flags=;deadline=", 1767225599000000LL,
                  "2025-03-10T09:00:00Z" },
                { "R-NONE", "outcome=NOT_ELIGIBLE;reasons=AGE_OVER_LIMIT,IDENTITY_INVALID;flags=;deadline=", 0,
                  "2025-03-10T10:00:00Z" },
        };
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
                char after[256], ts[RFC3339_MAX] = "";
                if (want[i].deadline)
                        clock_format_rfc3339(want[i].deadline, ts);
                snprintf(after, sizeof after, "%s%s", want[i].after, ts);
                assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE referral_id = '%s'"
                                           " AND id = 0 AND case_id = md5('%s')::uuid AND at = '%s'"
                                           " AND actor_kind = 'DAEMON' AND actor_name = '' AND before = ''"
                                           " AND after = '%s' AND NOT reason_recorded",
                                       want[i].id, want[i].id, want[i].at, after),
                                 1);
        }
}

/* Version 16: the decisions of a version-15 database keep their parameters'
 * texts, each distinct text stored once in profile_params; the column goes. */
static void test_profile_params_migration(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 15);
        harness_exec_ok(fx->pg, REFS("R-A,R-B,R-C"));
        harness_exec_ok(fx->pg, DECISIONS
                        "('R-A', 'ELIGIBLE', '', '', NULL, 'p', 1, 'name=p;version=1;limit_hours=48', 0, 0,"
                        "  '2025-03-10T08:00:00Z'),"
                        "('R-B', 'ELIGIBLE', '', '', NULL, 'p', 1, 'name=p;version=1;limit_hours=48', 0, 0,"
                        "  '2025-03-10T09:00:00Z'),"
                        "('R-C', 'ELIGIBLE', '', '', NULL, 'p', 2, 'name=p;version=2;limit_hours=72', 0, 0,"
                        "  '2025-03-10T10:00:00Z')");
        migrate_rest(fx, 15);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"
                                   " WHERE params_key = md5(params)::uuid"),
                         2);
        /* The first decision that used a text is when it was first seen. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"
                                   " WHERE params = 'name=p;version=1;limit_hours=48'"
                                   "   AND first_seen_at = '2025-03-10T08:00:00Z'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions d JOIN allvarsd.profile_params pp"
                                   " USING (params_key) WHERE (d.referral_id, pp.params) IN"
                                   " (('R-A', 'name=p;version=1;limit_hours=48'),"
                                   "  ('R-B', 'name=p;version=1;limit_hours=48'),"
                                   "  ('R-C', 'name=p;version=2;limit_hours=72'))"),
                         3);
        assert_int_equal(count(fx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'allvarsd'"
                                   " AND table_name = 'decisions' AND column_name = 'profile_params'"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'allvarsd'"
                                   " AND table_name = 'decisions' AND column_name = 'params_key'"
                                   " AND is_nullable = 'NO'"),
                         1);
}

/* Version 17: a version-16 database's personal rows keep their messages,
 * byte for byte, and lose the columns that copied the messages' fields;
 * read_personal_data returns the message as the child's row. */
static void test_personal_payload_migration(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 16);
        harness_exec_ok(fx->pg, REFS("R-A,R-B"));
        harness_exec_ok(fx->pg,
                        "INSERT INTO allvarsd.referral_personal (referral_id, identity_number, birth_date, given_name,"
                        "                                        family_name, narrative, payload)"
                        " VALUES ('R-A', '20120315-4321', '2012-03-15', 'Kalle', 'Karlsson', 'berättelse',"
                        "         '\\x0a03522d41'),"
                        "        ('R-B', '', '', '', '', '', '\\x0a03522d42')");
        migrate_rest(fx, 16);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"
                                   " WHERE (referral_id, payload) IN (('R-A', '\\x0a03522d41'), ('R-B', '\\x0a03522d42'))"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'allvarsd'"
                                   " AND table_name = 'referral_personal'"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.read_personal_data('R-A', 'test')"
                                   " WHERE person = 'child' AND referral = '\\x0a03522d41' AND name IS NULL"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE referral_id = 'R-A'"
                                   " AND action = 'PERSONAL_DATA_READ'"),
                         1);
}

/* Version 18: in a database whose collation is not C, every referral_id
 * column compares byte by byte (COLLATE "C"); the two views that read them
 * are the same after (definition, comment, grants), and the rows are found by
 * their ids, in joins and through read_personal_data's text parameter. */
#define VIEWS_STATE                                                                                  \
        "SELECT string_agg(c.relname || ':' || pg_get_viewdef(c.oid) || ':' || coalesce(obj_description(c.oid, 'pg_class'), '')" \
        "                  || ':' || coalesce(c.relacl::text, ''), '|' ORDER BY c.relname)"           \
        "  FROM pg_class c WHERE c.relnamespace = 'allvarsd'::regnamespace AND c.relkind = 'v'"
#define ID_COLUMNS(collation)                                                                         \
        "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"                   \
        " WHERE c.relnamespace = 'allvarsd'::regnamespace AND c.relkind = 'r'"                        \
        "   AND c.relname <> 'referral_stats'" /* its referral_id came with version 19 */                 \
        "   AND a.attname = 'referral_id' AND a.attcollation " collation " 'pg_catalog.\"C\"'::regcollation"
static void test_ids_collate_c_migration(void **state) {
        fixture *fx = *state;
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_database WHERE datname = current_database()"
                                   " AND datcollate = 'C.UTF-8'"),
                         1);
        /* The roles, so that the views have grants to keep. */
        const char *root = getenv("ALLVARS_ROOT");
        char cmd[1536];
        snprintf(cmd, sizeof cmd, "'%s/tests/lib/roles-sql' '%s' >/dev/null", root && *root ? root : ".", fx->db.name);
        assert_int_equal(system(cmd), 0);
        migrate_up_to(fx, 17);
        assert_int_equal(count(fx, ID_COLUMNS("<>")), 6);
        harness_exec_ok(fx->pg, REFS("R-A,R-B"));
        harness_exec_ok(fx->pg, "INSERT INTO allvarsd.referral_personal (referral_id, payload)"
                                " VALUES ('R-A', '\\x0a03522d41'), ('R-B', '\\x0a03522d42')");
        PGresult *before = PQexec(fx->pg, VIEWS_STATE);
        assert_int_equal(PQntuples(before), 1);
        assert_non_null(strstr(PQgetvalue(before, 0, 0), "allvarsd_operator"));
        migrate_from_to(fx, 17, 18);
        assert_int_equal(count(fx, ID_COLUMNS("=")), 6);
        assert_int_equal(count(fx, ID_COLUMNS("<>")), 0);
        PGresult *after = PQexec(fx->pg, VIEWS_STATE);
        assert_int_equal(PQntuples(after), 1);
        assert_string_equal(PQgetvalue(after, 0, 0), PQgetvalue(before, 0, 0));
        assert_non_null(strstr(PQgetvalue(after, 0, 0), "audit_trail:"));
        assert_non_null(strstr(PQgetvalue(after, 0, 0), "referral_stats_source:"));
        PQclear(after);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals r"
                                   " JOIN allvarsd.referral_personal p USING (referral_id) WHERE r.referral_id = 'R-B'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.read_personal_data('R-A', 'test')"
                                   " WHERE person = 'child' AND referral = '\\x0a03522d41'"),
                         1);
        /* The file run again ("Safe to run again"): nothing changes. */
        run_again(fx, "018_ids_collate_c.sql");
        assert_int_equal(count(fx, ID_COLUMNS("=")), 6);
        PGresult *again = PQexec(fx->pg, VIEWS_STATE);
        assert_int_equal(PQntuples(again), 1);
        assert_string_equal(PQgetvalue(again, 0, 0), PQgetvalue(before, 0, 0));
        PQclear(before);
        PQclear(again);
        migrate_rest(fx, 18);
}

/* Version 19: referral_stats keyed by referral id. The rows of a version-18
 * database gain their referral's id and are still what the view says; a
 * second row for one referral is refused; the daemon's upsert finds a row by
 * it. Run again, the file changes nothing. */
#define STATS_DIFFER                                                                                  \
        "SELECT count(*) FROM ((SELECT * FROM allvarsd.referral_stats EXCEPT"                          \
        "                       SELECT * FROM allvarsd.referral_stats_source)"                         \
        "                      UNION ALL (SELECT * FROM allvarsd.referral_stats_source EXCEPT"         \
        "                                 SELECT * FROM allvarsd.referral_stats)) d"
#define STATS_KEY                                                                                     \
        "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"              \
        " AND a.attnum = ALL (i.indkey::int2[])"                                                        \
        " WHERE i.indrelid = 'allvarsd.referral_stats'::regclass AND i.indisprimary AND a.attname = '%s'"
static void test_referral_stats_key_migration(void **state) {
        fixture *fx = *state;
        migrate_up_to(fx, 18);
        harness_exec_ok(fx->pg, REFS("R-A,R-B"));
        harness_exec_ok(fx->pg,
                        "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, deadline, profile_name,"
                        "                                profile_version, params_key, prior_referrals,"
                        "                                prior_qualifying, decided_at)"
                        " VALUES ('R-A', 'ELIGIBLE', '', 'UNDER_15', '2025-03-12T08:00:00Z', 'p', 1, md5('')::uuid,"
                        "         0, 0, '2025-03-10T08:00:00Z'),"
                        "        ('R-B', 'NOT_ELIGIBLE', 'AGE_OVER_LIMIT', '', NULL, 'p', 1, md5('')::uuid, 0, 0,"
                        "         '2025-03-10T09:00:00Z')");
        harness_exec_ok(fx->pg, "INSERT INTO allvarsd.referral_stats SELECT * FROM allvarsd.referral_stats_source");
        assert_int_equal(count(fx, STATS_KEY, "case_id"), 1);
        assert_int_equal(count(fx, STATS_DIFFER), 0);

        migrate_from_to(fx, 18, 19);
        assert_int_equal(count(fx, STATS_KEY, "case_id"), 0);
        assert_int_equal(count(fx, STATS_KEY, "referral_id"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"
                                   " WHERE referral_id = 'R-A' AND case_id = md5('R-A')::uuid AND outcome = 'ELIGIBLE'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"
                                   " WHERE referral_id = 'R-B' AND case_id = md5('R-B')::uuid"
                                   "   AND outcome = 'NOT_ELIGIBLE'"),
                         1);
        assert_int_equal(count(fx, STATS_DIFFER), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'allvarsd.referral_stats'::regclass"
                                   " AND attname = 'referral_id' AND attnotnull"
                                   " AND attcollation = 'pg_catalog.\"C\"'::regcollation"),
                         1);
        PGresult *r = PQexec(fx->pg, "INSERT INTO allvarsd.referral_stats SELECT * FROM allvarsd.referral_stats_source"
                                     " WHERE referral_id = 'R-A'");
        assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23505");
        PQclear(r);
        /* The daemon's own statement (store_rows.c "rows_stats"), after the case's decision changed. */
        harness_exec_ok(fx->pg, "UPDATE allvarsd.decisions SET outcome = 'DEFERRED' WHERE referral_id = 'R-A'");
        assert_int_equal(count(fx, STATS_DIFFER), 2);
        const char *rows_stats = NULL;
        for (const pg_statement *st = store_rows_statements; st->name; st++)
                if (strcmp(st->name, "rows_stats") == 0)
                        rows_stats = st->sql;
        assert_non_null(rows_stats);
        PGresult *ids = PQexec(fx->pg, "SELECT ARRAY[md5('R-A')::uuid]::text");   /* REFS' case id */
        assert_int_equal(PQntuples(ids), 1);
        harness_exec_params_ok(fx->pg, rows_stats, 1, (const char *[]){PQgetvalue(ids, 0, 0)}, NULL, NULL);
        PQclear(ids);
        assert_int_equal(count(fx, STATS_DIFFER), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats WHERE outcome = 'DEFERRED'"), 1);

        run_again(fx, "019_referral_stats_by_referral.sql");
        assert_int_equal(count(fx, STATS_KEY, "referral_id"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"), 2);
        assert_int_equal(count(fx, STATS_DIFFER), 0);
}

/* Only NNN_name.sql files count; no directory or no files is an error. */
static void test_bad_directories(void **state) {
        fixture *fx = *state;
        char err[512];
        assert_int_equal(migrate(fx, "/nonexistent/schemas", err, sizeof err), -ENOENT);
        snprintf(fx->dir, sizeof fx->dir, "/tmp/allvars-schemas-XXXXXX");
        assert_non_null(mkdtemp(fx->dir));
        write_file(fx->dir, "README", "not a migration\n", "w");
        write_file(fx->dir, "1_short.sql", "SELECT 1;\n", "w");
        write_file(fx->dir, "002_Upper.sql", "SELECT 1;\n", "w");
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), -ENOENT);
        write_file(fx->dir, "001_one.sql", "CREATE TABLE allvarsd.one (x int);\n", "w");
        write_file(fx->dir, "001_two.sql", "CREATE TABLE allvarsd.two (x int);\n", "w");
        assert_int_equal(migrate(fx, fx->dir, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "same number"));
}

/* Two migrators at once on a fresh database: each migration applied once. */
typedef struct migrator {
        const fixture *fx;
        pthread_barrier_t *barrier;
        int r;
        char err[512];
} migrator;

static void *run_migrator(void *arg) {
        migrator *m = arg;
        store *st = NULL;
        m->r = store_connect(m->fx->db.conninfo, NULL, &st, m->err, sizeof m->err);
        pthread_barrier_wait(m->barrier);
        if (m->r >= 0)
                m->r = store_migrate(st, m->fx->schemas, m->err, sizeof m->err);
        store_free(st);
        return NULL;
}

static void test_concurrent_migrators(void **state) {
        fixture *fx = *state;
        for (int round = 0; round < 3; round++) {
                if (round > 0)
                        harness_exec_ok(fx->pg, "DROP SCHEMA allvarsd CASCADE");
                pthread_barrier_t barrier;
                pthread_barrier_init(&barrier, NULL, 2);
                migrator m[2] = { { .fx = fx, .barrier = &barrier }, { .fx = fx, .barrier = &barrier } };
                pthread_t th[2];
                for (int i = 0; i < 2; i++)
                        assert_int_equal(pthread_create(&th[i], NULL, run_migrator, &m[i]), 0);
                for (int i = 0; i < 2; i++)
                        pthread_join(th[i], NULL);
                pthread_barrier_destroy(&barrier);
                for (int i = 0; i < 2; i++)
                        if (m[i].r < 0)
                                fail_msg("migrator %d: %s", i, m[i].err);
                assert_int_equal(m[0].r + m[1].r, STORE_SCHEMA_VERSION);
                assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.schema_migrations"), STORE_SCHEMA_VERSION);
        }
}

int main(void) {
        const char *filter = getenv("ALLVARS_TEST_FILTER");
        if (filter && *filter)
                cmocka_set_test_filter(filter);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_migrate_twice_is_noop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_schema_check_refuses_unknown_version, setup, teardown),
                cmocka_unit_test_setup_teardown(test_changed_checksum, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_migration_rolls_back, setup, teardown),
                cmocka_unit_test_setup_teardown(test_outbox_sent_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_persons_history_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_decided_audit_entries, setup, teardown),
                cmocka_unit_test_setup_teardown(test_profile_params_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_personal_payload_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ids_collate_c_migration, setup_utf8, teardown),
                cmocka_unit_test_setup_teardown(test_referral_stats_key_migration, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_directories, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_migrators, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
