/* PostgreSQL: the daemon's sessions, the schema check, the consumed
 * positions and the figures. The store knows PostgreSQL, not allvarssamtal:
 * what a referral or an outcome writes is decided by its batch module
 * (referral_batch.h, outcome_batch.h) and written through the statements of
 * store_referrals.h, store_outcomes.h and store_rows.h; the migrations are in
 * migrate.c. No logging here: errors go to store_last_error(), one line,
 * never a parameter value (parameters carry personal data). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "pg.h"

#define STORE_SCHEMA_VERSION 19         /* the newest migration this build knows */

typedef struct store store;

/* Connect with a libpq conninfo string (password merged in when given),
 * waiting at most 10 s. Returns 0; -EACCES when the server refused for a
 * reason of the deployment (sqlstate.h: a wrong password, an unknown role or
 * database), -ECONNREFUSED otherwise; a one-line reason in err, ending in
 * "(SQLSTATE XXXXX)" when the server gave one (sqlstate_in_text). */
int store_connect(const char *conninfo, const char *password, store **ret, char *err, size_t err_size);
void store_free(store *s);
bool store_connected(const store *s);
/* A new session; the statement lists prepared on the old one are prepared
 * again at once, so that a schema problem shows now rather than in the next batch. */
int store_reconnect(store *s, char *err, size_t err_size);
int store_socket(const store *s);       /* PQsocket, for the event loop */
const char *store_last_error(const store *s);  /* one line, never personal data */

/* The session, for the modules that write through it (pg.h). */
pg_session *store_session(store *s);
/* The raw libpq connection (PGconn *), for session settings and tests. */
struct pg_conn;
struct pg_conn *store_pg(store *s);

/* Apply the migrations in dir (NNN_name.sql, in order) that are not yet in
 * allvarsd.schema_migrations, each in its own transaction; idempotent
 * (migrate.c). Returns the number applied, or a negative errno. */
int store_migrate(store *s, const char *dir, char *err, size_t err_size);
/* The schema version in the database must be exactly STORE_SCHEMA_VERSION:
 * -EPROTO when newer or older (run --migrate), -ENOENT when none, -EACCES
 * when the role may not read it. */
int store_check_schema(store *s, int *ret_version);

/* Consumed offsets: the next offset to read for each partition, or -1 when the
 * database has none for it (then the consumer starts from the topic's start). */
int store_load_offsets(store *s, const char *group, const char *topic,
                       const int32_t *partitions, size_t n, int64_t *ret_next);

/* A gap in an input partition (consumer.c): the offsets [from, to) that Kafka
 * no longer had (its log start was log_start) when the consumer came to read
 * them. Records it in partition_gaps with the operators' alert in the outbox,
 * in one transaction of its own (store_gaps.c); once per partition and first
 * offset (*ret_new false when it was recorded before). 0 or the mapped error
 * (pg.h). */
struct config;
int store_partition_gap(store *s, const struct config *cfg, const char *group, const char *topic, int32_t partition,
                        int64_t from, int64_t to, int64_t log_start, usec_t now, bool *ret_new);

/* Figures for STATUS= and the metrics: cheap, read every 15 s by the jobs. */
typedef struct store_figures {
        uint64_t outbox_backlog;        /* unsent rows: an upper bound (id span), 0 exactly when none */
        usec_t outbox_oldest;           /* created_at of the oldest unsent row, 0 when none */
        uint64_t dead_letters;
} store_figures;
int store_figures_read(store *s, store_figures *ret);

/* The open cases, in one pass over them: a cost that grows with the open
 * cases, so the jobs read it less often than store_figures (jobs.c). */
typedef struct store_case_figures {
        uint64_t open;                  /* closed_at IS NULL */
        uint64_t overdue;               /* CASE_SQL_OVERDUE (lifecycle.h) at now, as the deadline watch means it */
        uint64_t protective_overdue;    /* protective assessments due before now and not recorded: a case's or,
                                         * for a child without a case, its assessment duty's */
} store_case_figures;
int store_case_figures_read(store *s, usec_t now, store_case_figures *ret);

/* The store's own statements: "store_begin" (BEGIN ISOLATION LEVEL READ
 * COMMITTED) and "store_commit", for a round trip that starts or ends a
 * transaction (pg_pipe_send), the positions and the figures. */
extern const pg_statement store_statements[];

/* Make an idle session ready for a transaction, with the statements of list
 * (NULL: none) and store_statements prepared: a transaction a failed caller
 * left open is rolled back first (never joined). 0, or -ECONNRESET without a
 * usable session, -EBUSY in pipeline mode, or the mapped error (pg.h). */
int store_ready(store *s, const pg_statement *list);
/* store_ready, then BEGIN: the start of a transaction of one statement at a time. */
int store_begin(store *s, const pg_statement *list);
/* COMMIT; the mapped error when it failed. */
int store_commit(store *s);
/* ROLLBACK whatever transaction is open, if the connection is still usable. */
void store_rollback(store *s);
