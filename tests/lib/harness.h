/* Test harness: files of the source tree, the private PostgreSQL server that
 * tests/run starts (tests/lib/pg.sh exports PGHOST, PGPORT, PGUSER, PGDATABASE),
 * a fresh database per test with the schema, the configuration and store a
 * store test starts from, and librdkafka's in-process mock cluster.
 * Errors are negative errno values; the reason is printed on stderr, since this
 * is test code and the test's output is where one looks. The helpers at the end
 * fail the running cmocka test instead; they exist where cmocka.h is included
 * before this file (harness.c itself is linked into the tools too, without cmocka). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "messages.h"
#include "store.h"

/* ---- files of the source tree ---- */

/* rel below the repository root: $ALLVARS_ROOT, else the directory three
 * levels above the test binary (build/tests/test-x) when rel exists there,
 * else rel as it is (the working directory). Returns buf. */
char *harness_repo_path(const char *rel, char *buf, size_t size);
/* The migrations: $ALLVARS_SCHEMAS, else the repository's schemas/. Returns buf. */
char *harness_schemas_dir(char *buf, size_t size);
/* A whole file, NUL-terminated (malloc'd); NULL after printing why. */
char *harness_read_file(const char *path);

/* ---- PostgreSQL ---- */

/* True when pg.sh's environment is present (PGHOST set). */
bool harness_pg_available(void);

/* A connection to dbname (NULL: $PGDATABASE, else "postgres") on the test
 * server, with notices below WARNING not sent. Returns 0 or -ECONNREFUSED. */
int harness_pg_connect(const char *dbname, PGconn **ret);
/* Runs sql (several statements allowed) on c; 0 or -EIO. */
int harness_exec(PGconn *c, const char *sql);
/* Runs a command with parameters in text (formats NULL) or binary format; 0 or -EIO. */
int harness_exec_params(PGconn *c, const char *sql, int n, const char *const *values, const int *lengths,
                        const int *formats);
/* Formats and runs a query that must return exactly one row: 0 with the
 * result in *ret (PQclear it), or -EIO after printing the query and why. */
int harness_vquery_row(PGconn *c, PGresult **ret, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

typedef struct harness_db {
        char name[64];                  /* allvars_t_<pid>_<random> */
        char conninfo[1024];            /* host, port, user and dbname: for store_connect() */
} harness_db;

/* A new, empty database copied from template_name (NULL: template0, which
 * never has other sessions, so CREATE DATABASE cannot fail on them). Make a
 * template with the schema once and copy it per test to save migrations. */
int harness_db_create(const char *template_name, harness_db *ret);
/* The same, with the database's locale (LOCALE, from template0), or the
 * cluster's when locale is NULL. */
int harness_db_create_locale(const char *template_name, const char *locale, harness_db *ret);
/* A new database with the schema: harness_db_create, then every
 * schemas/NNN_name.sql in order by store_migrate, as `allvarsd --migrate` does. */
int harness_schema_db_create(harness_db *ret);
/* Drops it, closing any session still on it (WITH (FORCE)); NULL is fine. */
int harness_db_drop(const harness_db *db);
/* Runs sql (several statements allowed) on db; 0 or -EIO. */
int harness_db_exec(const harness_db *db, const char *sql);

/* store_connect to db; the store's reason is printed on failure. */
int harness_store_connect(const harness_db *db, store **ret);

/* The pepper is a secret given as a file: 48 random bytes in a new file under
 * /tmp, its name in path (size >= 32). */
int harness_pepper_file_new(char *path, size_t size);
/* A configuration of the text "database.conninfo = <conninfo>\npepper =
 * @file:<pepper_path>\n" and then extra_config (NULL: nothing); config_name
 * names it in messages. Prints the parser's reason on failure. */
int harness_config_new(const char *config_name, const char *conninfo, const char *pepper_path,
                       const char *extra_config, config **ret);

/* What a store test starts from: a database with the schema, the test's own
 * connection to it, a pepper file, a configuration naming both, and a store. */
typedef struct harness_store_env {
        harness_db db;
        PGconn *pg;                     /* the test's own connection, for setup and checks */
        char pepper_path[64];           /* 48 random bytes, as the pepper is given: a file */
        config *cfg;
        store *st;
} harness_store_env;

/* harness_schema_db_create, harness_pg_connect, harness_pepper_file_new,
 * harness_config_new (config_name, extra_config) and harness_store_connect.
 * On failure nothing is left behind. */
int harness_store_env_new(const char *config_name, const char *extra_config, harness_store_env *ret);
/* Frees the store, configuration and connection, removes the pepper file and
 * drops the database; NULL and a zeroed env are fine. */
void harness_store_env_done(harness_store_env *e);

/* cmocka setup and teardown of a test's fixture: a struct of fixture_size
 * bytes, zeroed, whose first member is a harness_store_env, made by
 * harness_store_env_new. Setup returns 0, or -1 after printing why. */
int harness_store_setup(void **state, size_t fixture_size, const char *config_name, const char *extra_config);
int harness_store_teardown(void **state);

/* One outcome event (its actor set to a social worker here) through the
 * outcome batch, as offset *next + 1 of partition 0 of the outcomes topic
 * (*next: the stored position, -1 for none; advanced). Returns 0 with the
 * message's status and its error's detail ("" when none), or -1 with why. */
int harness_outcome_send(harness_store_env *h, const char *group, int64_t *next, CaseOutcome *ev, usec_t now,
                         store_message_status *ret_status, char *ret_detail, size_t detail_size);

/* SQL: what the relay does with delivered rows (relay.c mark_sent), for every
 * outbox row: deleted, and recorded in outbox_sent (schemas/004_outbox_sent.sql). */
#define HARNESS_SQL_DELIVER_ALL                                                                           \
        "WITH d AS (DELETE FROM allvarsd.outbox"                                                          \
        "           RETURNING id, event_id, topic, key, ce_type, ce_time, octet_length(payload), created_at," \
        "                     now(), once)"                                                                 \
        " INSERT INTO allvarsd.outbox_sent SELECT d.* FROM d"

/* SQL: a parameter holding microseconds since the epoch, as a timestamptz. */
#define HARNESS_SQL_TS(p) "(timestamptz 'epoch' + (" p ")::bigint * interval '1 microsecond')"
/* t as the text of such a parameter in buf; NULL (SQL NULL) for 0. */
char *harness_usec_param(char buf[static 24], usec_t t);

/* ---- identity numbers and the calendar ---- */

/* The Luhn check digit over the nine digits YYMMDDNNN of a personnummer
 * (Skatteverket SKV 704), computed independently of identity.c. */
int harness_luhn_digit(const char *nine);
/* cmocka group setup: tz_init (the Europe/Stockholm calendar); -1 when it fails. */
int harness_tz_setup(void **state);

/* ---- Kafka ---- */

/* The real broker's bootstrap servers when tests/run started one
 * ($ALLVARS_KAFKA_BOOTSTRAP), else NULL. */
const char *harness_kafka_bootstrap(void);

/* librdkafka's mock cluster (in this process, on loopback TCP ports). */
typedef struct harness_mock {
        rd_kafka_t *rk;                 /* the handle that owns the cluster */
        rd_kafka_mock_cluster_t *cluster;
        const char *bootstraps;         /* "127.0.0.1:port,..." for bootstrap.servers */
} harness_mock;

int harness_mock_new(int brokers, harness_mock **ret);
harness_mock *harness_mock_free(harness_mock *m);
/* Creates a topic with partitions partitions, replication factor 1. */
int harness_mock_topic(harness_mock *m, const char *topic, int partitions);

/* ---- in cmocka tests: checks that fail the running test ---- */

#ifdef fail_msg

/* Runs sql on c (several statements allowed). */
static inline void harness_exec_ok(PGconn *c, const char *sql) {
        if (harness_exec(c, sql) < 0)
                fail_msg("SQL failed (the statement's error is above)");
}

/* Runs a command with parameters (see harness_exec_params). */
static inline void harness_exec_params_ok(PGconn *c, const char *sql, int n, const char *const *values,
                                          const int *lengths, const int *formats) {
        if (harness_exec_params(c, sql, n, values, lengths, formats) < 0)
                fail_msg("SQL failed (the statement's error is above)");
}

/* The result of a one-row query (see harness_vquery_row). */
static inline PGresult *harness_vrow_ok(PGconn *c, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static inline PGresult *harness_vrow_ok(PGconn *c, const char *fmt, va_list ap) {
        PGresult *r = NULL;
        if (harness_vquery_row(c, &r, fmt, ap) < 0)
                fail_msg("query failed (printed above)");
        return r;
}

/* The one number of a one-row query, e.g. "SELECT count(*) FROM ...". */
static inline long long harness_count(PGconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline long long harness_count(PGconn *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        PGresult *r = harness_vrow_ok(c, fmt, ap);
        va_end(ap);
        long long n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        return n;
}

/* The one value of a one-row query as text in buf ("<null>" for NULL). Returns buf. */
static inline char *harness_value(PGconn *c, char *buf, size_t size, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static inline char *harness_value(PGconn *c, char *buf, size_t size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        PGresult *r = harness_vrow_ok(c, fmt, ap);
        va_end(ap);
        snprintf(buf, size, "%s", PQgetisnull(r, 0, 0) ? "<null>" : PQgetvalue(r, 0, 0));
        PQclear(r);
        return buf;
}

#endif
