/* PostgreSQL: the daemon's sessions, the schema check, the consumed positions
 * and the figures (store.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lifecycle.h"
#include "pgconn.h"
#include "store.h"

struct store {
        pg_session pg;
};

const pg_statement store_statements[] = {
        { "store_begin", "BEGIN ISOLATION LEVEL READ COMMITTED" },
        { "store_commit", "COMMIT" },
        { "store_load_offsets",
          "SELECT partition, next_offset FROM allvarsd.consumer_offsets"
          " WHERE consumer_group = $1::text AND topic = $2::text AND partition = ANY($3::int4[])" },
        /* Cheap enough for STATUS=: the outbox's primary key (every outbox
         * row is unsent: delivered ones move to outbox_sent); dead letters
         * are few. The oldest unsent row is the one with the lowest id (ids
         * are not commit-ordered, close enough for a figure). */
        { "store_figures",
          /* an upper bound from the primary key's ends: a full count of a
           * replay's backlog would stall the loop; 0 exactly when none is unsent */
          "SELECT coalesce((SELECT max(id) - min(id) + 1 FROM allvarsd.outbox), 0),"
          "       coalesce((SELECT " PG_SQL_USEC("created_at") " FROM allvarsd.outbox ORDER BY id LIMIT 1), 0),"
          "       (SELECT count(*) FROM allvarsd.dead_letters)" },
        /* $1 now (the daemon's clock). The three counts of the open cases in
         * one pass over them; the children's assessments owed without a case
         * from their duties (docs/domain.md "Protective assessment"). */
        { "store_case_figures",
          "SELECT count(*),"
          "       count(*) FILTER (WHERE " CASE_SQL_OVERDUE("c", "$1::timestamptz") "),"
          "       count(*) FILTER (WHERE c.awaiting_assessment AND c.protective_assessment_due < $1::timestamptz)"
          "       + (SELECT count(*) FROM allvarsd.assessment_duties d"
          "           WHERE d.recorded_at IS NULL AND d.due_at < $1::timestamptz"
          "             AND NOT EXISTS (SELECT 1 FROM allvarsd.cases x WHERE x.case_id = d.case_id))"
          "  FROM allvarsd.cases c WHERE c.closed_at IS NULL" },
        { NULL, NULL },
};

/* Notices (e.g. "schema already exists, skipping") are not errors, and the
 * store does not log: drop them instead of letting libpq print to stderr. */
static void notice_ignore(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static int session_setup(store *s) {
        pg_prepared_forget(&s->pg);
        s->pg.broken = false;
        PQsetNoticeProcessor(s->pg.conn, notice_ignore, NULL);
        /* JIT compiles for hundreds of milliseconds what runs in a few here
         * (short OLTP statements, counts for the figures, the periodic jobs:
         * a purge over 50,000 referrals took 0.7 s instead of 0.05 s): never
         * worth it. The search_path is allvarsctl's and psql's convenience;
         * the daemon's statements name their schema (pg.h). */
        PGresult *r = PQexec(s->pg.conn, "SET search_path = allvarsd; SET jit = off");
        int ret = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : pg_fail_result(&s->pg, "session setup", r);
        PQclear(r);
        return ret;
}

int store_connect(const char *conninfo, const char *password, store **ret, char *err, size_t err_size) {
        store *s = calloc(1, sizeof *s);
        if (!s) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        const char *keys[PGCONN_KEYS_MAX], *values[PGCONN_KEYS_MAX];
        static const char *const fixed[] = {"fallback_application_name", "allvarsd", NULL};
        pgconn_keys(conninfo, password, NULL, fixed, keys, values);

        /* A refusal keeps the server's SQLSTATE (pgconn.h): a wrong password
         * or a missing database is the deployment's, not an outage. */
        char state[6], buf[400];
        int r = pgconn_open(keys, values, 10, &s->pg.conn, state, buf, sizeof buf);
        if (r < 0) {
                if (state[0])
                        snprintf(err, err_size, "%s (SQLSTATE %s)", buf, state);
                else
                        snprintf(err, err_size, "%s", buf);
                store_free(s);
                return r == -EACCES ? r : -ECONNREFUSED;
        }
        r = session_setup(s);
        if (r < 0) {
                snprintf(err, err_size, "%s", s->pg.error);
                store_free(s);
                return -ECONNREFUSED;
        }
        *ret = s;
        return 0;
}

void store_free(store *s) {
        if (!s)
                return;
        if (s->pg.conn)
                PQfinish(s->pg.conn);
        free(s);
}

bool store_connected(const store *s) {
        return s && pg_connected(&s->pg);
}

int store_reconnect(store *s, char *err, size_t err_size) {
        const pg_statement *was[PG_LISTS_MAX];
        size_t n_was = s->pg.n_prepared;
        memcpy(was, s->pg.prepared, sizeof was);
        char buf[200];
        PQreset(s->pg.conn);
        s->pg.broken = false;
        if (!pg_connected(&s->pg)) {
                pg_fail(&s->pg, -ECONNREFUSED, "reconnect: %s", pg_conn_message(&s->pg, buf, sizeof buf));
                snprintf(err, err_size, "%s", s->pg.error);
                return -ECONNREFUSED;
        }
        int r = session_setup(s);
        for (size_t i = 0; i < n_was && r >= 0; i++)
                r = pg_prepare(&s->pg, was[i]);
        if (r < 0) {
                snprintf(err, err_size, "%s", s->pg.error);
                return r;
        }
        return 0;
}

int store_socket(const store *s) {
        return s && s->pg.conn ? PQsocket(s->pg.conn) : -1;
}

const char *store_last_error(const store *s) {
        return s ? s->pg.error : "no store";
}

pg_session *store_session(store *s) {
        return s ? &s->pg : NULL;
}

struct pg_conn *store_pg(store *s) {
        return s ? s->pg.conn : NULL;
}

void store_rollback(store *s) {
        pg_rollback(&s->pg);
}

int store_ready(store *s, const pg_statement *list) {
        int r = pg_need_conn(&s->pg);
        if (r < 0)
                return r;
        if (PQpipelineStatus(s->pg.conn) != PQ_PIPELINE_OFF)
                return pg_fail(&s->pg, -EBUSY, "the connection is in pipeline mode");
        /* A transaction left open by an earlier failure must not swallow this one. */
        pg_rollback(&s->pg);
        if (PQtransactionStatus(s->pg.conn) != PQTRANS_IDLE)
                return pg_fail(&s->pg, -ECONNRESET, "the connection is not idle");
        r = pg_prepare(&s->pg, store_statements);
        if (r >= 0 && list)
                r = pg_prepare(&s->pg, list);
        return r;
}

int store_begin(store *s, const pg_statement *list) {
        int r = store_ready(s, list);
        return r < 0 ? r : pg_exec(&s->pg, "store_begin", NULL, 0, NULL);
}

int store_commit(store *s) {
        return pg_exec(&s->pg, "store_commit", NULL, 0, NULL);
}

int store_check_schema(store *s, int *ret_version) {
        if (ret_version)
                *ret_version = 0;
        int r = pg_need_conn(&s->pg);
        if (r < 0)
                return r;
        PGresult *res = PQexec(s->pg.conn, "SELECT max(version) FROM allvarsd.schema_migrations");
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
                        r = pg_fail(&s->pg, -ENOENT, "no allvarsd schema in this database (run allvarsd --migrate)");
                else if (state && strcmp(state, "42501") == 0)
                        r = pg_fail(&s->pg, -EACCES,
                                    "no access to allvarsd.schema_migrations (grants: deploy/roles.sql)");
                else
                        r = pg_fail_result(&s->pg, "schema check", res);
                PQclear(res);
                return r;
        }
        if (PQgetisnull(res, 0, 0)) {
                PQclear(res);
                return pg_fail(&s->pg, -ENOENT, "no migration applied (run allvarsd --migrate)");
        }
        int version = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (ret_version)
                *ret_version = version;
        if (version != STORE_SCHEMA_VERSION)
                return pg_fail(&s->pg, -EPROTO, "schema version %d, this build knows version %d (%s)", version,
                               STORE_SCHEMA_VERSION,
                               version < STORE_SCHEMA_VERSION ? "run allvarsd --migrate" : "a newer build migrated it");
        return 0;
}

int store_load_offsets(store *s, const char *group, const char *topic, const int32_t *partitions, size_t n,
                       int64_t *ret_next) {
        for (size_t i = 0; i < n; i++)
                ret_next[i] = -1;
        int r = pg_prepare(&s->pg, store_statements);
        if (r < 0)
                return r;
        pg_arr parts = { 0 };
        pg_arr_reset(&parts, PG_OID_INT4);
        for (size_t i = 0; i < n; i++)
                pg_arr_int4(&parts, partitions[i]);
        pg_params p = { 0 };
        pg_params_text(&p, group);
        pg_params_text(&p, topic);
        PGresult *res = NULL;
        r = pg_params_arr(&p, &parts) < 0 ? pg_fail(&s->pg, -ENOMEM, "load offsets: out of memory")
                                          : pg_exec(&s->pg, "store_load_offsets", &p, 0, &res);
        pg_arr_free(&parts);
        if (r < 0)
                return r;
        for (int row = 0; row < PQntuples(res); row++) {
                int32_t part = (int32_t)pg_field_int(res, row, 0);
                int64_t next = pg_field_int(res, row, 1);
                for (size_t i = 0; i < n; i++)
                        if (partitions[i] == part)
                                ret_next[i] = next;
        }
        PQclear(res);
        return 0;
}

/* One of the store's own statements that returns exactly one row: *ret the row. */
static int exec_one_row(store *s, const char *name, const pg_params *p, PGresult **ret) {
        int r = pg_prepare(&s->pg, store_statements);
        PGresult *res = NULL;
        if (r >= 0)
                r = pg_exec(&s->pg, name, p, 0, &res);
        if (r < 0)
                return r;
        int rows = PQntuples(res);
        if (rows != 1) {
                PQclear(res);
                return pg_fail(&s->pg, -EIO, "%s: %d rows", name, rows);
        }
        *ret = res;
        return 0;
}

int store_figures_read(store *s, store_figures *ret) {
        *ret = (store_figures){ 0 };
        PGresult *res;
        int r = exec_one_row(s, "store_figures", NULL, &res);
        if (r < 0)
                return r;
        ret->outbox_backlog = (uint64_t)pg_field_int(res, 0, 0);
        ret->outbox_oldest = pg_field_usec(res, 0, 1);
        ret->dead_letters = (uint64_t)pg_field_int(res, 0, 2);
        PQclear(res);
        return 0;
}

int store_case_figures_read(store *s, usec_t now, store_case_figures *ret) {
        *ret = (store_case_figures){ 0 };
        pg_params p = { 0 };
        pg_params_ts(&p, now);
        PGresult *res;
        int r = exec_one_row(s, "store_case_figures", &p, &res);
        if (r < 0)
                return r;
        ret->open = (uint64_t)pg_field_int(res, 0, 0);
        ret->overdue = (uint64_t)pg_field_int(res, 0, 1);
        ret->protective_overdue = (uint64_t)pg_field_int(res, 0, 2);
        PQclear(res);
        return 0;
}
