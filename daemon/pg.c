/* libpq, the one way allvarsd speaks it (pg.h). */
#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "pg.h"

/* ---- errors ---- */

static void one_line(char *p) {
        for (; *p; p++)
                if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
}

static void trim_end(char *p) {
        size_t n = strlen(p);
        while (n > 0 && p[n - 1] == ' ')
                p[--n] = 0;
}

static int vfail(pg_session *s, int err, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static int vfail(pg_session *s, int err, const char *fmt, va_list ap) {
        vsnprintf(s->error, sizeof s->error, fmt, ap);
        one_line(s->error);
        trim_end(s->error);
        return err;
}

int pg_fail(pg_session *s, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        s->sqlstate[0] = 0;
        s->failed[0] = 0;
        vfail(s, err, fmt, ap);
        va_end(ap);
        return err;
}

const char *pg_conn_message(const pg_session *s, char *buf, size_t size) {
        const char *m = s->conn ? PQerrorMessage(s->conn) : "no connection";
        snprintf(buf, size, "%s", m && *m ? m : "connection lost");
        char *nl = strchr(buf, '\n');
        if (nl)
                *nl = 0;
        return buf;
}

bool pg_connected(const pg_session *s) {
        return s && s->conn && !s->broken && PQstatus(s->conn) == CONNECTION_OK;
}

/* The session is gone: say so until it is reset, even if libpq has not read
 * the end of the socket yet (a FATAL from the server comes first). */
static int conn_lost(pg_session *s, const char *what) {
        char buf[200];
        int r = pg_fail(s, -ECONNRESET, "%s: connection lost: %s", what, pg_conn_message(s, buf, sizeof buf));
        s->broken = true;
        return r;
}

static int errno_of(const char *state) {
        if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
                return -EAGAIN;         /* retry at once: the other transaction has moved on */
        switch (sqlstate_classify(state)) {
        case SQLSTATE_DATA:
                return -EBADMSG;
        case SQLSTATE_DEPLOYMENT:
                return -EACCES;
        case SQLSTATE_TRANSIENT:        /* back off, then retry */
        case SQLSTATE_OTHER:
                break;
        }
        return -EIO;
}

static int fail_result(pg_session *s, const char *what, const PGresult *r) {
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        if (!state)
                state = "";
        /* Class 08 (connection exception) and the shutdown codes end the session. */
        if (!pg_connected(s) || !r || strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
            strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0) {
                int ret = conn_lost(s, what);
                snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state);
                return ret;
        }
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (!primary || !*primary)
                primary = PQresStatus(PQresultStatus(r));
        /* Data exceptions quote the offending value: keep only the code. The
         * DETAIL field (key values, failing rows) is never used. */
        if (strncmp(state, "22", 2) == 0)
                primary = "invalid data";
        int err = *state ? errno_of(state) : -EIO;
        int ret = *state ? pg_fail(s, err, "%s: %s (SQLSTATE %s)", what, primary, state)
                         : pg_fail(s, err, "%s: %s", what, primary);
        snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state);
        snprintf(s->failed, sizeof s->failed, "%s", what);
        return ret;
}

/* Every failure is counted by its class, and kept as the class's last error
 * (metrics.h: the metrics and the instance's heartbeat). */
int pg_fail_result(pg_session *s, const char *what, const PGresult *r) {
        int ret = fail_result(s, what, r);
        metrics_database_error(sqlstate_classify(s->sqlstate), s->error);
        return ret;
}

sqlstate_class pg_last_class(const pg_session *s) {
        return sqlstate_classify(s->sqlstate);
}

int pg_need_conn(pg_session *s) {
        if (!pg_connected(s))
                return pg_fail(s, -ECONNRESET, "not connected to PostgreSQL");
        return 0;
}

static int fail_conn(pg_session *s, const char *what) {
        char buf[200];
        if (!pg_connected(s))
                return conn_lost(s, what);
        return pg_fail(s, -EIO, "%s: %s", what, pg_conn_message(s, buf, sizeof buf));
}

/* ---- waiting for replies ---- */

/* A link that drops packets without a reset leaves the socket open: TCP
 * keepalives and tcp_user_timeout only see a dead peer, not a proxy or a
 * middlebox that takes the bytes and drops them, nor a reply lost for good.
 * So no reply waits longer than this: past the server's own statement_timeout
 * (a third of the watchdog interval, 10 s under the unit's WatchdogSec=30) and
 * under the half at which the watchdog is pinged, the session is given up and
 * the caller reconnects. docs/design.md "Silent links". */
static usec_t reply_timeout = PG_REPLY_TIMEOUT_DEFAULT;

void pg_set_reply_timeout(usec_t timeout) {
        reply_timeout = timeout ? timeout : PG_REPLY_TIMEOUT_DEFAULT;
}

int pg_await(PGconn *conn) {
        usec_t deadline = clock_monotonic() + reply_timeout;
        while (PQisBusy(conn)) {
                usec_t now = clock_monotonic();
                if (now >= deadline)
                        return -ETIMEDOUT;
                struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
                if (p.fd < 0)
                        return -ECONNRESET;
                int n = poll(&p, 1, (int)((deadline - now + 999) / 1000));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0 && !PQconsumeInput(conn))
                        return -ECONNRESET;
        }
        return 0;
}

PGresult *pg_await_result(PGconn *conn, int sent, int *ret) {
        PGresult *res = NULL, *next;
        *ret = sent ? pg_await(conn) : -ECONNRESET;
        while (*ret == 0 && (next = PQgetResult(conn))) {
                PQclear(res);
                res = next;
                *ret = pg_await(conn);
        }
        if (*ret == 0)
                return res;
        PQclear(res);
        return NULL;
}

/* Wait for the reply to what was sent; a silent link ends the session. */
static int await_reply(pg_session *s, const char *what) {
        int r = pg_await(s->conn);
        if (r == -ETIMEDOUT) {
                s->broken = true;
                return pg_fail(s, -ECONNRESET, "%s: connection lost: no reply from PostgreSQL within %lld ms", what,
                               (long long)(reply_timeout / 1000));
        }
        return r < 0 ? conn_lost(s, what) : 0;
}

/* The result of the one command sent (the last one libpq returns), waited
 * for in bounded time; NULL with *ret < 0 when the wait failed. */
static PGresult *reply(pg_session *s, const char *what, int *ret) {
        PGresult *res = NULL, *next;
        for (;;) {
                *ret = await_reply(s, what);
                if (*ret < 0) {
                        PQclear(res);
                        return NULL;
                }
                if (!(next = PQgetResult(s->conn)))
                        return res;
                PQclear(res);
                res = next;
        }
}

/* A statement whose result only matters as success or failure, bounded. */
static void exec_quiet(pg_session *s, const char *sql) {
        int r;
        if (PQsendQuery(s->conn, sql))
                PQclear(reply(s, sql, &r));
}

static bool result_ok(const PGresult *r) {
        ExecStatusType st = PQresultStatus(r);
        return r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* ---- statements ---- */

int pg_prepare(pg_session *s, const pg_statement *list) {
        for (size_t i = 0; i < s->n_prepared; i++)
                if (s->prepared[i] == list)
                        return 0;
        assert(s->n_prepared < PG_LISTS_MAX);
        int r = pg_need_conn(s);
        if (r < 0)
                return r;
        const pg_statement *st = list;
        for (; st->name && r >= 0; st++) {
                if (!PQsendPrepare(s->conn, st->name, st->sql, 0, NULL)) {
                        r = fail_conn(s, st->name);
                        break;
                }
                PGresult *res = reply(s, st->name, &r);
                if (r >= 0)
                        r = result_ok(res) ? 0 : pg_fail_result(s, st->name, res);
                PQclear(res);
        }
        if (r < 0) {
                /* Take back this list's statements (a half-prepared list would
                 * fail with "already exists" next time). Keep the first error. */
                if (pg_connected(s) && PQtransactionStatus(s->conn) == PQTRANS_IDLE)
                        for (const pg_statement *d = list; d != st - 1; d++) {
                                char sql[128];
                                snprintf(sql, sizeof sql, "DEALLOCATE %s", d->name);
                                exec_quiet(s, sql);
                        }
                return r;
        }
        s->prepared[s->n_prepared++] = list;
        return 0;
}

void pg_prepared_forget(pg_session *s) {
        s->n_prepared = 0;
}

int pg_exec(pg_session *s, const char *name, const pg_params *p, int result_format, PGresult **ret) {
        if (ret)
                *ret = NULL;
        int r = pg_need_conn(s);
        if (r < 0)
                return r;
        if (!PQsendQueryPrepared(s->conn, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
                                 p ? p->formats : NULL, result_format))
                return fail_conn(s, name);
        PGresult *res = reply(s, name, &r);
        if (r < 0)
                return r;
        if (!result_ok(res)) {
                r = pg_fail_result(s, name, res);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

void pg_rollback(pg_session *s) {
        if (!pg_connected(s))
                return;
        PGTransactionStatusType t = PQtransactionStatus(s->conn);
        if (t != PQTRANS_INTRANS && t != PQTRANS_INERROR)
                return;
        exec_quiet(s, "ROLLBACK");
}

/* ---- binary array parameters ---- */

#define ARR_HEADER 20                   /* ndim, flags, element type, length, lower bound */

static void put_be32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t)(v >> 24);
        p[1] = (uint8_t)(v >> 16);
        p[2] = (uint8_t)(v >> 8);
        p[3] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t)(v >> 32));
        put_be32(p + 4, (uint32_t)v);
}

static uint32_t get_be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int pg_arr_int4_read(const void *data, size_t len, int32_t *out, size_t max, size_t *n) {
        const uint8_t *p = data;
        *n = 0;
        if (len < 12)
                return -EBADMSG;
        uint32_t ndim = get_be32(p), elem = get_be32(p + 8);
        if (ndim == 0)          /* an empty array has no dimensions */
                return len == 12 ? 0 : -EBADMSG;
        if (ndim != 1 || elem != PG_OID_INT4 || len < ARR_HEADER)
                return -EBADMSG;
        uint32_t count = get_be32(p + 12);
        if ((len - ARR_HEADER) / 8 != count || (len - ARR_HEADER) % 8 != 0)
                return -EBADMSG;
        *n = count;
        if (count > max)
                return -E2BIG;
        for (size_t i = 0; i < count; i++) {
                const uint8_t *e = p + ARR_HEADER + 8 * i;
                if (get_be32(e) != 4)   /* a NULL (-1) or not an int4 */
                        return -EBADMSG;
                out[i] = (int32_t)get_be32(e + 4);
        }
        return 0;
}

static uint8_t *arr_append(pg_arr *a, size_t more) {
        return (uint8_t *)strbuf_extend(&a->b, more);
}

void pg_arr_reset(pg_arr *a, uint32_t elem_oid) {
        a->b.len = 0;
        a->b.oom = false;
        a->n = 0;
        a->has_null = false;
        a->elem_oid = elem_oid;
        arr_append(a, ARR_HEADER);
}

void pg_arr_free(pg_arr *a) {
        if (!a)
                return;
        strbuf_free(&a->b);
        *a = (pg_arr){ 0 };
}

void pg_arr_null(pg_arr *a) {
        uint8_t *p = arr_append(a, 4);
        if (!p)
                return;
        put_be32(p, UINT32_MAX);        /* length -1 */
        a->has_null = true;
        a->n++;
}

void pg_arr_bytes(pg_arr *a, const void *data, size_t n) {
        if (n > INT32_MAX) {
                a->b.oom = true;
                return;
        }
        uint8_t *p = arr_append(a, 4 + n);
        if (!p)
                return;
        put_be32(p, (uint32_t)n);
        if (n)
                memcpy(p + 4, data, n);
        a->n++;
}

void pg_arr_text(pg_arr *a, const char *s) {
        if (!s)
                pg_arr_null(a);
        else
                pg_arr_bytes(a, s, strlen(s));
}

void pg_arr_int4(pg_arr *a, int32_t v) {
        uint8_t b[4];
        put_be32(b, (uint32_t)v);
        pg_arr_bytes(a, b, sizeof b);
}

void pg_arr_int8(pg_arr *a, int64_t v) {
        uint8_t b[8];
        put_be64(b, (uint64_t)v);
        pg_arr_bytes(a, b, sizeof b);
}

void pg_arr_bool(pg_arr *a, bool v) {
        uint8_t b = v ? 1 : 0;
        pg_arr_bytes(a, &b, 1);
}

void pg_arr_ts(pg_arr *a, usec_t t) {
        if (t == 0)
                pg_arr_null(a);
        else
                pg_arr_int8(a, t - PG_EPOCH_USEC);
}

int pg_arr_finish(pg_arr *a) {
        if (a->b.oom || a->b.len < ARR_HEADER)
                return -ENOMEM;
        uint8_t *h = (uint8_t *)a->b.s;
        if (a->n == 0) {
                put_be32(h, 0);         /* an empty array has no dimensions */
                put_be32(h + 4, 0);
                put_be32(h + 8, a->elem_oid);
                a->b.len = 12;
                return 0;
        }
        put_be32(h, 1);
        put_be32(h + 4, a->has_null ? 1 : 0);
        put_be32(h + 8, a->elem_oid);
        put_be32(h + 12, (uint32_t)a->n);
        put_be32(h + 16, 1);
        return 0;
}

/* ---- statement parameters ---- */

static void params_add(pg_params *p, const void *v, int len) {
        assert(p->n < PG_PARAMS_MAX);   /* the statements are fixed */
        p->values[p->n] = v;
        p->lengths[p->n] = len;
        p->formats[p->n] = 1;
        p->n++;
}

void pg_params_text(pg_params *p, const char *s) {
        params_add(p, s, s ? (int)strlen(s) : 0);
}

void pg_params_text_or_null(pg_params *p, const char *s) {
        pg_params_text(p, s && *s ? s : NULL);
}

void pg_params_int4(pg_params *p, int32_t v) {
        put_be32(p->scalars[p->n], (uint32_t)v);
        params_add(p, p->scalars[p->n], 4);
}

void pg_params_int8(pg_params *p, int64_t v) {
        put_be64(p->scalars[p->n], (uint64_t)v);
        params_add(p, p->scalars[p->n], 8);
}

void pg_params_ts(pg_params *p, usec_t t) {
        pg_params_int8(p, t - PG_EPOCH_USEC);
}

void pg_params_ts_or_null(pg_params *p, usec_t t) {
        if (t == 0)
                pg_params_null(p);
        else
                pg_params_ts(p, t);
}

void pg_params_float8(pg_params *p, double v) {
        uint64_t bits;
        memcpy(&bits, &v, sizeof bits);
        pg_params_int8(p, (int64_t)bits);
}

void pg_params_bool(pg_params *p, bool v) {
        p->scalars[p->n][0] = v ? 1 : 0;
        params_add(p, p->scalars[p->n], 1);
}

void pg_params_null(pg_params *p) {
        params_add(p, NULL, 0);
}

int pg_params_arr(pg_params *p, pg_arr *a) {
        int r = pg_arr_finish(a);
        params_add(p, a->b.s, r < 0 ? 0 : (int)a->b.len);
        return r;
}

/* ---- pipelined round trips ---- */

int pg_pipe_begin(pg_session *s, pg_pipe *p) {
        *p = (pg_pipe){ .s = s };
        int r = pg_need_conn(s);
        if (r < 0)
                return r;
        if (PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(s->conn))
                return fail_conn(s, "pipeline mode");
        return 0;
}

/* Queue name's statement: the prepared one, or sql as the unnamed statement. */
static int pipe_send(pg_pipe *p, const char *name, const char *sql, const pg_params *params, int result_format) {
        if (p->n >= PG_PIPE_MAX)
                return pg_fail(p->s, -E2BIG, "%s: too many statements in one round trip", name);
        int n = params ? params->n : 0;
        const char *const *values = params ? params->values : NULL;
        const int *lengths = params ? params->lengths : NULL, *formats = params ? params->formats : NULL;
        if (!(sql ? PQsendQueryParams(p->s->conn, sql, n, NULL, values, lengths, formats, result_format)
                  : PQsendQueryPrepared(p->s->conn, name, n, values, lengths, formats, result_format)))
                return fail_conn(p->s, name);
        p->names[p->n] = name;
        return (int)p->n++;
}

int pg_pipe_send(pg_pipe *p, const char *name, const pg_params *params, int result_format) {
        return pipe_send(p, name, NULL, params, result_format);
}

int pg_pipe_send_sql(pg_pipe *p, const char *name, const char *sql, const pg_params *params, int result_format) {
        return pipe_send(p, name, sql, params, result_format);
}

int pg_pipe_sync(pg_pipe *p) {
        pg_session *s = p->s;
        if (!PQpipelineSync(s->conn))
                return fail_conn(s, "pipeline sync");
        int first = 0;
        for (size_t i = 0; i < p->n; i++) {
                int w = await_reply(s, p->names[i]);
                if (w < 0)
                        return w;
                PGresult *r = PQgetResult(s->conn);
                if (!r)
                        return first < 0 ? first : pg_fail_result(s, p->names[i], NULL);
                p->res[i] = r;
                ExecStatusType st = PQresultStatus(r);
                if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && first == 0) {
                        first = st == PGRES_PIPELINE_ABORTED ? pg_fail(s, -EIO, "%s: aborted", p->names[i])
                                                             : pg_fail_result(s, p->names[i], r);
                        if (first == -ECONNRESET)
                                return first;
                }
                /* Each statement's results end with NULL. */
                PGresult *extra;
                while ((w = await_reply(s, p->names[i])) == 0 && (extra = PQgetResult(s->conn)))
                        PQclear(extra);
                if (w < 0)
                        return w;
        }
        int w = await_reply(s, "pipeline sync");
        if (w < 0)
                return w;
        PGresult *r = PQgetResult(s->conn);
        bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (!synced && first == 0)
                first = pg_fail_result(s, "pipeline sync", NULL);
        return first;
}

void pg_pipe_end(pg_pipe *p) {
        for (size_t i = 0; i < p->n; i++) {
                PQclear(p->res[i]);
                p->res[i] = NULL;
        }
        p->n = 0;
        pg_session *s = p->s;
        if (!s || !s->conn || PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF)
                return;
        if (PQexitPipelineMode(s->conn))
                return;
        /* Statements queued without their sync (a send failed half way):
         * finish the round trip and throw it away. */
        if (pg_connected(s) && PQpipelineSync(s->conn)) {
                for (int i = 0; i < 4 * PG_PIPE_MAX + 4; i++) {
                        PGresult *r = PQgetResult(s->conn);
                        bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
                        PQclear(r);
                        if (synced || (!r && !pg_connected(s)))
                                break;
                }
        }
        /* Still stuck: the session is of no further use. */
        if (!PQexitPipelineMode(s->conn))
                s->broken = true;
}

/* ---- results ---- */

usec_t pg_field_usec(const PGresult *r, int row, int col) {
        return PQgetisnull(r, row, col) ? 0 : (usec_t)strtoll(PQgetvalue(r, row, col), NULL, 10);
}

bool pg_field_bool(const PGresult *r, int row, int col) {
        return PQgetvalue(r, row, col)[0] == 't';
}

int64_t pg_field_int(const PGresult *r, int row, int col) {
        return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

unsigned pg_cmd_rows(const PGresult *r) {
        return (unsigned)strtoul(PQcmdTuples((PGresult *)r), NULL, 10);
}
