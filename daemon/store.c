/* PostgreSQL: the connection, the migrations and the schema check, offsets and
 * figures, and the machinery of the batch transaction (binary array
 * parameters, pipelined round trips, error mapping). The batch itself is in
 * store_referrals.c. No logging here: errors go to store_last_error(), one
 * line, never a parameter value (parameters carry personal data). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "metrics.h"
#include "sqlstate.h"
#include "store_internal.h"

/* pg_advisory_xact_lock key of the migrator: "allvarsm". Distinct from the
 * relay's RELAY_LOCK_KEY ("allvarsd"). */
#define MIGRATE_LOCK_KEY "7020098511035462509"

#define MIGRATIONS_MAX 1000

const store_statement store_common_statements[] = {
        { "av_begin", "BEGIN ISOLATION LEVEL READ COMMITTED" },
        { "av_commit", "COMMIT" },
        { "av_rollback", "ROLLBACK" },
        { "av_load_offsets",
          "SELECT partition, next_offset FROM consumer_offsets"
          " WHERE consumer_group = $1::text AND topic = $2::text AND partition = ANY($3::int4[])" },
        /* Cheap enough for STATUS=: the partial index on open cases and the
         * outbox's primary key (every outbox row is unsent: delivered ones
         * move to outbox_sent); dead letters are few. The oldest unsent row
         * is the one with the lowest id (ids are not commit-ordered, close
         * enough for a figure). */
        { "av_figures",
          "SELECT (SELECT count(*) FROM cases WHERE closed_at IS NULL),"
          /* an upper bound from the primary key's ends: a full count of a
           * replay's backlog would stall the loop; 0 exactly when none is unsent */
          "       coalesce((SELECT max(id) - min(id) + 1 FROM outbox), 0),"
          "       coalesce((SELECT (extract(epoch FROM created_at) * 1000000)::int8"
          "                   FROM outbox ORDER BY id LIMIT 1), 0),"
          "       (SELECT count(*) FROM dead_letters)" },
        { NULL, NULL },
};

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

int store_fail(store *s, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->error, sizeof s->error, fmt, ap);
        va_end(ap);
        one_line(s->error);
        trim_end(s->error);
        return err;
}

/* The first line of libpq's connection error message. */
static const char *conn_message(const store *s, char *buf, size_t size) {
        const char *m = s->conn ? PQerrorMessage(s->conn) : "no connection";
        snprintf(buf, size, "%s", m && *m ? m : "connection lost");
        char *nl = strchr(buf, '\n');
        if (nl)
                *nl = 0;
        return buf;
}

static bool conn_ok(const store *s) {
        return s->conn && !s->broken && PQstatus(s->conn) == CONNECTION_OK;
}

/* The session is gone: say so until store_reconnect, even if libpq has not
 * read the end of the socket yet (a FATAL from the server comes first). */
static int conn_lost(store *s, const char *what) {
        char buf[200];
        int r = store_fail(s, -ECONNRESET, "%s: connection lost: %s", what, conn_message(s, buf, sizeof buf));
        s->broken = true;
        return r;
}

static int fail_result(store *s, const char *what, const PGresult *r, const char *state) {
        /* Class 08 (connection exception) and the shutdown codes end the session. */
        if (!conn_ok(s) || !r || strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
            strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)
                return conn_lost(s, what);

        int err = -EIO;
        if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
                err = -EAGAIN;
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (!primary || !*primary)
                primary = PQresStatus(PQresultStatus(r));
        /* Data exceptions quote the offending value: keep only the code. The
         * DETAIL field (key values, failing rows) is never used. */
        if (strncmp(state, "22", 2) == 0)
                primary = "invalid data";
        if (*state)
                return store_fail(s, err, "%s: %s (SQLSTATE %s)", what, primary, state);
        return store_fail(s, err, "%s: %s", what, primary);
}

int store_fail_result(store *s, const char *what, const PGresult *r) {
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        int ret = fail_result(s, what, r, state ? state : "");
        metrics_database_error(sqlstate_classify(state), s->error);
        return ret;
}

static int fail_conn(store *s, const char *what) {
        char buf[200];
        if (!conn_ok(s))
                return conn_lost(s, what);
        return store_fail(s, -EIO, "%s: %s", what, conn_message(s, buf, sizeof buf));
}

static int need_conn(store *s) {
        if (!conn_ok(s))
                return store_fail(s, -ECONNRESET, "not connected to PostgreSQL");
        return 0;
}

static bool result_ok(const PGresult *r) {
        ExecStatusType st = PQresultStatus(r);
        return r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* Run one command (session setup, migrations); 0 or the mapped error. */
static int exec_simple(store *s, const char *what, const char *sql) {
        PGresult *r = PQexec(s->conn, sql);
        int ret = result_ok(r) ? 0 : store_fail_result(s, what, r);
        PQclear(r);
        return ret;
}

/* ---- connection ---- */

/* Notices (e.g. "schema already exists, skipping") are not errors, and the
 * store does not log: drop them instead of letting libpq print to stderr. */
static void notice_ignore(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static int session_setup(store *s) {
        s->prepared = false;
        s->broken = false;
        PQsetNoticeProcessor(s->conn, notice_ignore, NULL);
        /* JIT compiles for hundreds of milliseconds what runs in a few here
         * (short OLTP statements, counts for the figures): never worth it. */
        return exec_simple(s, "session setup", "SET search_path = allvarsd; SET jit = off");
}

int store_connect(const char *conninfo, const char *password, store **ret, char *err, size_t err_size) {
        store *s = calloc(1, sizeof *s);
        if (!s) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        const char *keys[10], *values[10];
        int k = 0;
        /* Defaults the conninfo may override (entries before the expanded
         * dbname): a dead server or a half-open socket is noticed in bounded
         * time, so no thread waits on it for minutes (a SIGTERM drain, the
         * watchdog). */
        keys[k] = "connect_timeout", values[k++] = "10";
        keys[k] = "keepalives", values[k++] = "1";
        keys[k] = "keepalives_idle", values[k++] = "30";
        keys[k] = "keepalives_interval", values[k++] = "10";
        keys[k] = "keepalives_count", values[k++] = "3";
        if (conninfo && *conninfo) {
                keys[k] = "dbname";     /* expanded: a conninfo string or URI */
                values[k++] = conninfo;
        }
        if (password && *password) {
                keys[k] = "password";
                values[k++] = password;
        }
        keys[k] = "fallback_application_name";
        values[k++] = "allvarsd";
        keys[k] = "client_encoding";    /* the referrals are UTF-8 whatever the server's default */
        values[k++] = "UTF8";
        keys[k] = values[k] = NULL;

        s->conn = PQconnectdbParams(keys, values, 1);
        char buf[200];
        if (!conn_ok(s)) {
                snprintf(err, err_size, "%s", conn_message(s, buf, sizeof buf));
                store_free(s);
                return -ECONNREFUSED;
        }
        int r = session_setup(s);
        if (r < 0) {
                snprintf(err, err_size, "%s", s->error);
                store_free(s);
                return -ECONNREFUSED;
        }
        *ret = s;
        return 0;
}

void store_free(store *s) {
        if (!s)
                return;
        if (s->conn)
                PQfinish(s->conn);
        store_scratch_free(s->scratch);
        free(s);
}

bool store_connected(const store *s) {
        return s && conn_ok(s);
}

int store_reconnect(store *s, char *err, size_t err_size) {
        bool was_prepared = s->prepared;
        char buf[200];
        PQreset(s->conn);
        s->broken = false;
        if (!conn_ok(s)) {
                store_fail(s, -ECONNREFUSED, "reconnect: %s", conn_message(s, buf, sizeof buf));
                snprintf(err, err_size, "%s", s->error);
                return -ECONNREFUSED;
        }
        int r = session_setup(s);
        /* The new session has no prepared statements: make them again now, so
         * that a schema problem shows at once rather than in the next batch. */
        if (r >= 0 && was_prepared)
                r = store_prepare_all(s);
        if (r < 0) {
                snprintf(err, err_size, "%s", s->error);
                return r;
        }
        return 0;
}

int store_socket(const store *s) {
        return s && s->conn ? PQsocket(s->conn) : -1;
}

const char *store_last_error(const store *s) {
        return s ? s->error : "no store";
}

struct pg_conn *store_pg(store *s) {
        return s ? s->conn : NULL;
}

/* ---- prepared statements ---- */

static int prepare_list(store *s, const store_statement *list) {
        for (const store_statement *st = list; st->name; st++) {
                PGresult *r = PQprepare(s->conn, st->name, st->sql, 0, NULL);
                int ret = result_ok(r) ? 0 : store_fail_result(s, st->name, r);
                PQclear(r);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

int store_prepare_all(store *s) {
        if (s->prepared)
                return 0;
        int r = need_conn(s);
        if (r < 0)
                return r;
        r = prepare_list(s, store_common_statements);
        if (r >= 0)
                r = prepare_list(s, store_referral_statements);
        if (r < 0) {
                /* Start from nothing next time (a half-prepared session would
                 * fail with "already exists"). Keep the first error. */
                char saved[STORE_ERROR_MAX];
                memcpy(saved, s->error, sizeof saved);
                if (conn_ok(s) && PQtransactionStatus(s->conn) == PQTRANS_IDLE)
                        PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
                memcpy(s->error, saved, sizeof saved);
                return r;
        }
        s->prepared = true;
        return 0;
}

void store_rollback(store *s) {
        if (!conn_ok(s))
                return;
        PGTransactionStatusType t = PQtransactionStatus(s->conn);
        if (t != PQTRANS_INTRANS && t != PQTRANS_INERROR)
                return;
        PGresult *r = s->prepared ? PQexecPrepared(s->conn, "av_rollback", 0, NULL, NULL, NULL, 0)
                                  : PQexec(s->conn, "ROLLBACK");
        PQclear(r);
}

/* ---- the periodic jobs' transactions ---- */

static int job_errno(PGconn *pg, const PGresult *res) {
        if (PQstatus(pg) == CONNECTION_BAD)
                return -ECONNRESET;
        const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        if (!st)
                return -EIO;
        if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0)
                return -EAGAIN;
        if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0)
                return -ECONNRESET;
        return -EIO;
}

int store_job_exec(PGconn *pg, const char *sql, int n, const char *const *params, ExecStatusType want,
                   PGresult **ret) {
        PGresult *res = n > 0 || ret ? PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0) : PQexec(pg, sql);
        if (PQresultStatus(res) != want) {
                int r = job_errno(pg, res);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

int store_job_begin(store *s, PGconn **ret) {
        if (!store_connected(s))
                return -ENOTCONN;
        PGconn *pg = s->conn;
        if (PQtransactionStatus(pg) != PQTRANS_IDLE)
                return -EBUSY;
        int r = store_job_exec(pg, "BEGIN; SET LOCAL jit = off", 0, NULL, PGRES_COMMAND_OK, NULL);
        if (r < 0) {
                store_rollback(s);      /* BEGIN may have succeeded and the SET not */
                return r;
        }
        *ret = pg;
        return 0;
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

static uint8_t *arr_append(store_arr *a, size_t more) {
        if (a->oom)
                return NULL;
        if (a->len + more > a->cap) {
                size_t cap = a->cap ? a->cap : 1024;
                while (cap < a->len + more)
                        cap *= 2;
                uint8_t *p = realloc(a->buf, cap);
                if (!p) {
                        a->oom = true;
                        return NULL;
                }
                a->buf = p;
                a->cap = cap;
        }
        uint8_t *p = a->buf + a->len;
        a->len += more;
        return p;
}

void store_arr_reset(store_arr *a, uint32_t elem_oid) {
        a->len = 0;
        a->n = 0;
        a->has_null = false;
        a->oom = false;
        a->elem_oid = elem_oid;
        arr_append(a, ARR_HEADER);
}

void store_arr_free(store_arr *a) {
        if (!a)
                return;
        free(a->buf);
        *a = (store_arr){ 0 };
}

void store_arr_null(store_arr *a) {
        uint8_t *p = arr_append(a, 4);
        if (!p)
                return;
        put_be32(p, UINT32_MAX);        /* length -1 */
        a->has_null = true;
        a->n++;
}

void store_arr_bytes(store_arr *a, const void *data, size_t n) {
        if (n > INT32_MAX) {
                a->oom = true;
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

void store_arr_text(store_arr *a, const char *s) {
        if (!s)
                store_arr_null(a);
        else
                store_arr_bytes(a, s, strlen(s));
}

void store_arr_int4(store_arr *a, int32_t v) {
        uint8_t b[4];
        put_be32(b, (uint32_t)v);
        store_arr_bytes(a, b, sizeof b);
}

void store_arr_int8(store_arr *a, int64_t v) {
        uint8_t b[8];
        put_be64(b, (uint64_t)v);
        store_arr_bytes(a, b, sizeof b);
}

void store_arr_bool(store_arr *a, bool v) {
        uint8_t b = v ? 1 : 0;
        store_arr_bytes(a, &b, 1);
}

void store_arr_ts(store_arr *a, usec_t t) {
        if (t == 0)
                store_arr_null(a);
        else
                store_arr_int8(a, t - STORE_PG_EPOCH_USEC);
}

int store_arr_finish(store_arr *a) {
        if (a->oom || a->len < ARR_HEADER)
                return -ENOMEM;
        if (a->n == 0) {
                put_be32(a->buf, 0);    /* an empty array has no dimensions */
                put_be32(a->buf + 4, 0);
                put_be32(a->buf + 8, a->elem_oid);
                a->len = 12;
                return 0;
        }
        put_be32(a->buf, 1);
        put_be32(a->buf + 4, a->has_null ? 1 : 0);
        put_be32(a->buf + 8, a->elem_oid);
        put_be32(a->buf + 12, (uint32_t)a->n);
        put_be32(a->buf + 16, 1);
        return 0;
}

/* ---- statement parameters ---- */

static void params_add(store_params *p, const void *v, int len) {
        if (p->n >= STORE_PARAMS_MAX)
                abort();                /* a programming error: the statements are fixed */
        p->values[p->n] = v;
        p->lengths[p->n] = len;
        p->formats[p->n] = 1;
        p->n++;
}

void store_params_text(store_params *p, const char *s) {
        params_add(p, s, s ? (int)strlen(s) : 0);
}

void store_params_int4(store_params *p, int32_t v) {
        put_be32(p->scalars[p->n], (uint32_t)v);
        params_add(p, p->scalars[p->n], 4);
}

void store_params_int8(store_params *p, int64_t v) {
        put_be64(p->scalars[p->n], (uint64_t)v);
        params_add(p, p->scalars[p->n], 8);
}

void store_params_ts(store_params *p, usec_t t) {
        store_params_int8(p, t - STORE_PG_EPOCH_USEC);
}

void store_params_arr(store_params *p, const store_arr *a) {
        params_add(p, a->buf, (int)a->len);
}

void store_params_bool(store_params *p, bool v) {
        p->scalars[p->n][0] = v ? 1 : 0;
        params_add(p, p->scalars[p->n], 1);
}

void store_params_null(store_params *p) {
        params_add(p, NULL, 0);
}

/* ---- pipelined round trips ---- */

int store_pipe_begin(store *s, store_pipe *p) {
        *p = (store_pipe){ .s = s };
        int r = need_conn(s);
        if (r < 0)
                return r;
        if (PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF && !PQenterPipelineMode(s->conn))
                return fail_conn(s, "pipeline mode");
        return 0;
}

int store_pipe_send(store_pipe *p, const char *stmt, const store_params *params, int result_format) {
        if (p->n >= STORE_PIPE_MAX)
                return store_fail(p->s, -E2BIG, "%s: too many statements in one round trip", stmt);
        if (!PQsendQueryPrepared(p->s->conn, stmt, params ? params->n : 0, params ? params->values : NULL,
                                 params ? params->lengths : NULL, params ? params->formats : NULL, result_format))
                return fail_conn(p->s, stmt);
        p->names[p->n] = stmt;
        return (int)p->n++;
}

int store_pipe_sync(store_pipe *p) {
        store *s = p->s;
        if (!PQpipelineSync(s->conn))
                return fail_conn(s, "pipeline sync");
        int first = 0;
        for (size_t i = 0; i < p->n; i++) {
                PGresult *r = PQgetResult(s->conn);
                if (!r)
                        return first < 0 ? first : store_fail_result(s, p->names[i], NULL);
                p->res[i] = r;
                ExecStatusType st = PQresultStatus(r);
                if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && first == 0) {
                        first = st == PGRES_PIPELINE_ABORTED
                                        ? store_fail(s, -EIO, "%s: aborted", p->names[i])
                                        : store_fail_result(s, p->names[i], r);
                        if (first == -ECONNRESET)
                                return first;
                }
                /* Each statement's results end with NULL. */
                PGresult *extra;
                while ((extra = PQgetResult(s->conn)))
                        PQclear(extra);
        }
        PGresult *r = PQgetResult(s->conn);
        bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (!synced && first == 0)
                first = store_fail_result(s, "pipeline sync", NULL);
        return first;
}

void store_pipe_end(store_pipe *p) {
        for (size_t i = 0; i < p->n; i++) {
                PQclear(p->res[i]);
                p->res[i] = NULL;
        }
        p->n = 0;
        store *s = p->s;
        if (!s || !s->conn || PQpipelineStatus(s->conn) == PQ_PIPELINE_OFF)
                return;
        if (PQexitPipelineMode(s->conn))
                return;
        /* Statements queued without their sync (a send failed half way):
         * finish the round trip and throw it away. */
        if (conn_ok(s) && PQpipelineSync(s->conn)) {
                for (int i = 0; i < 4 * STORE_PIPE_MAX + 4; i++) {
                        PGresult *r = PQgetResult(s->conn);
                        bool synced = r && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
                        PQclear(r);
                        if (synced || (!r && !conn_ok(s)))
                                break;
                }
        }
        /* Still stuck: the session is of no further use. */
        if (!PQexitPipelineMode(s->conn))
                s->broken = true;
}

/* ---- migrations ---- */

typedef struct migration {
        int version;
        char *file;                     /* "001_initial.sql" */
        char *name;                     /* "initial" */
        char sha256[65];
        char *sql;
} migration;

static void migrations_free(migration *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].file);
                free(m[i].name);
                free(m[i].sql);
        }
        free(m);
}

/* NNN_name.sql: three digits, an underscore, a name of [a-z0-9_-]. */
static bool migration_file_name(const char *f, int *ret_version) {
        size_t n = strlen(f);
        if (n < 9 || strcmp(f + n - 4, ".sql") != 0 || f[3] != '_')
                return false;
        for (int i = 0; i < 3; i++)
                if (f[i] < '0' || f[i] > '9')
                        return false;
        for (size_t i = 4; i < n - 4; i++) {
                char c = f[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                        return false;
        }
        *ret_version = (f[0] - '0') * 100 + (f[1] - '0') * 10 + (f[2] - '0');
        return *ret_version > 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size > 16 * 1024 * 1024) {
                int e = errno ? -errno : -EFBIG;
                close(fd);
                return e;
        }
        size_t size = (size_t)st.st_size;
        char *buf = malloc(size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t got = 0;
        while (got < size) {
                ssize_t k = read(fd, buf + got, size - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        int e = k < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return e;
                }
                got += (size_t)k;
        }
        close(fd);
        buf[size] = 0;
        *ret = buf;
        *ret_len = size;
        return 0;
}

static int sha256_hex(const void *data, size_t len, char out[65]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
                return -EIO;
        for (unsigned i = 0; i < md_len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return 0;
}

static int migration_compare(const void *a, const void *b) {
        const migration *x = a, *y = b;
        return (x->version > y->version) - (x->version < y->version);
}

static int migrations_list(store *s, const char *dir, migration **ret, size_t *ret_n) {
        DIR *d = opendir(dir);
        if (!d)
                return store_fail(s, -errno, "migrations: cannot open %s: %s", dir, strerror(errno));
        migration *m = NULL;
        size_t n = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                int version;
                if (!migration_file_name(de->d_name, &version))
                        continue;
                if (n >= MIGRATIONS_MAX) {
                        r = store_fail(s, -E2BIG, "migrations: too many files in %s", dir);
                        break;
                }
                migration *grown = realloc(m, (n + 1) * sizeof *m);
                if (!grown) {
                        r = store_fail(s, -ENOMEM, "migrations: out of memory");
                        break;
                }
                m = grown;
                migration *x = &m[n++];
                *x = (migration){ .version = version };
                x->file = strdup(de->d_name);
                x->name = strndup(de->d_name + 4, strlen(de->d_name) - 8);
                if (!x->file || !x->name) {
                        r = store_fail(s, -ENOMEM, "migrations: out of memory");
                        break;
                }
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                size_t len = 0;
                r = read_file(path, &x->sql, &len);
                if (r < 0) {
                        store_fail(s, r, "migrations: cannot read %s: %s", path, strerror(-r));
                        break;
                }
                r = sha256_hex(x->sql, len, x->sha256);
                if (r < 0) {
                        store_fail(s, r, "migrations: sha256 of %s failed", path);
                        break;
                }
        }
        closedir(d);
        if (r >= 0 && n == 0)
                r = store_fail(s, -ENOENT, "migrations: no NNN_name.sql files in %s", dir);
        if (r >= 0) {
                qsort(m, n, sizeof *m, migration_compare);
                for (size_t i = 1; i < n; i++)
                        if (m[i].version == m[i - 1].version) {
                                r = store_fail(s, -EINVAL, "migrations: %s and %s have the same number",
                                               m[i - 1].file, m[i].file);
                                break;
                        }
        }
        if (r < 0) {
                migrations_free(m, n);
                return r;
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

/* BEGIN and wait for the migrator's lock: two migrators run one after the other. */
static int begin_locked(store *s) {
        int r = exec_simple(s, "migrate: begin", "BEGIN ISOLATION LEVEL READ COMMITTED");
        if (r >= 0)
                r = exec_simple(s, "migrate: lock", "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")");
        return r;
}

static int apply_one(store *s, const migration *m, bool *ret_applied) {
        *ret_applied = false;
        int r = begin_locked(s);
        if (r < 0)
                return r;
        char version[16];
        snprintf(version, sizeof version, "%d", m->version);
        const char *params[3] = { version, m->name, m->sha256 };
        PGresult *res = PQexecParams(s->conn, "SELECT sha256 FROM allvarsd.schema_migrations WHERE version = $1::int",
                                     1, NULL, params, NULL, NULL, 0);
        if (!result_ok(res)) {
                r = store_fail_result(s, "migrate: read schema_migrations", res);
                PQclear(res);
                return r;
        }
        if (PQntuples(res) > 0) {
                bool same = strcmp(PQgetvalue(res, 0, 0), m->sha256) == 0;
                PQclear(res);
                if (!same)
                        return store_fail(s, -EPROTO,
                                          "migrate: %s was changed after it was applied (sha256 differs from the recorded one)",
                                          m->file);
                return exec_simple(s, "migrate: end", "COMMIT");
        }
        PQclear(res);

        char what[300];
        snprintf(what, sizeof what, "migrate: %s", m->file);
        r = exec_simple(s, what, m->sql);
        if (r < 0)
                return r;
        if (PQtransactionStatus(s->conn) != PQTRANS_INTRANS)
                return store_fail(s, -EINVAL, "migrate: %s must not end the transaction", m->file);
        res = PQexecParams(s->conn,
                           "INSERT INTO allvarsd.schema_migrations (version, name, sha256, applied_at)"
                           " VALUES ($1::int, $2, $3, now())",
                           3, NULL, params, NULL, NULL, 0);
        r = result_ok(res) ? 0 : store_fail_result(s, "migrate: record", res);
        PQclear(res);
        if (r < 0)
                return r;
        r = exec_simple(s, what, "COMMIT");
        if (r >= 0)
                *ret_applied = true;
        return r;
}

int store_migrate(store *s, const char *dir, char *err, size_t err_size) {
        migration *m = NULL;
        size_t n = 0;
        int applied = 0;
        int r = need_conn(s);
        if (r >= 0)
                r = migrations_list(s, dir, &m, &n);
        if (r < 0)
                goto out;

        /* The record of migrations, before the first one (which makes the schema). */
        r = begin_locked(s);
        if (r >= 0)
                r = exec_simple(s, "migrate: schema", "CREATE SCHEMA IF NOT EXISTS allvarsd");
        if (r >= 0)
                r = exec_simple(s, "migrate: schema_migrations",
                                "CREATE TABLE IF NOT EXISTS allvarsd.schema_migrations ("
                                " version integer PRIMARY KEY,"
                                " name text NOT NULL,"
                                " sha256 text NOT NULL,"
                                " applied_at timestamptz NOT NULL DEFAULT now())");
        if (r >= 0)
                r = exec_simple(s, "migrate: begin", "COMMIT");
        if (r < 0)
                goto out;

        for (size_t i = 0; i < n; i++) {
                bool done;
                r = apply_one(s, &m[i], &done);
                if (r < 0)
                        goto out;
                applied += done;
        }

        /* A database migrated by a newer build: this one must not run on it. */
        PGresult *res = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM allvarsd.schema_migrations");
        if (!result_ok(res)) {
                r = store_fail_result(s, "migrate: read schema_migrations", res);
                PQclear(res);
                goto out;
        }
        int newest = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (newest > m[n - 1].version)
                r = store_fail(s, -EPROTO, "migrate: the database has migration %d, newer than this build's %s",
                               newest, m[n - 1].file);

out:
        if (r < 0) {
                store_rollback(s);
                if (err)
                        snprintf(err, err_size, "%s", s->error);
        }
        migrations_free(m, n);
        /* A migration may have changed what the prepared statements refer to. */
        if (r >= 0 && applied > 0 && s->prepared && conn_ok(s)) {
                PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
                s->prepared = false;
        }
        return r < 0 ? r : applied;
}

int store_check_schema(store *s, int *ret_version) {
        if (ret_version)
                *ret_version = 0;
        int r = need_conn(s);
        if (r < 0)
                return r;
        PGresult *res = PQexecParams(s->conn, "SELECT max(version) FROM allvarsd.schema_migrations", 0, NULL, NULL,
                                     NULL, NULL, 0);
        if (!result_ok(res)) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
                        r = store_fail(s, -ENOENT, "no allvarsd schema in this database (run allvarsd --migrate)");
                else if (state && strcmp(state, "42501") == 0)
                        r = store_fail(s, -EACCES, "no access to allvarsd.schema_migrations (grants: deploy/roles.sql)");
                else
                        r = store_fail_result(s, "schema check", res);
                PQclear(res);
                return r;
        }
        if (PQgetisnull(res, 0, 0)) {
                PQclear(res);
                return store_fail(s, -ENOENT, "no migration applied (run allvarsd --migrate)");
        }
        int version = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (ret_version)
                *ret_version = version;
        if (version != STORE_SCHEMA_VERSION)
                return store_fail(s, -EPROTO, "schema version %d, this build knows version %d (%s)", version,
                                  STORE_SCHEMA_VERSION,
                                  version < STORE_SCHEMA_VERSION ? "run allvarsd --migrate" : "a newer build migrated it");
        return 0;
}

/* ---- offsets and figures ---- */

int store_load_offsets(store *s, const char *group, const char *topic, const int32_t *partitions, size_t n,
                       int64_t *ret_next) {
        for (size_t i = 0; i < n; i++)
                ret_next[i] = -1;
        int r = store_prepare_all(s);
        if (r < 0)
                return r;
        store_arr parts = { 0 };
        store_arr_reset(&parts, STORE_OID_INT4);
        for (size_t i = 0; i < n; i++)
                store_arr_int4(&parts, partitions[i]);
        r = store_arr_finish(&parts);
        if (r < 0) {
                store_arr_free(&parts);
                return store_fail(s, r, "load offsets: out of memory");
        }
        store_params p = { 0 };
        store_params_text(&p, group);
        store_params_text(&p, topic);
        store_params_arr(&p, &parts);
        PGresult *res = PQexecPrepared(s->conn, "av_load_offsets", p.n, p.values, p.lengths, p.formats, 0);
        store_arr_free(&parts);
        if (!result_ok(res)) {
                r = store_fail_result(s, "load offsets", res);
                PQclear(res);
                return r;
        }
        for (int row = 0; row < PQntuples(res); row++) {
                int32_t part = (int32_t)strtol(PQgetvalue(res, row, 0), NULL, 10);
                int64_t next = strtoll(PQgetvalue(res, row, 1), NULL, 10);
                for (size_t i = 0; i < n; i++)
                        if (partitions[i] == part)
                                ret_next[i] = next;
        }
        PQclear(res);
        return 0;
}

int store_figures_read(store *s, store_figures *ret) {
        *ret = (store_figures){ 0 };
        int r = store_prepare_all(s);
        if (r < 0)
                return r;
        PGresult *res = PQexecPrepared(s->conn, "av_figures", 0, NULL, NULL, NULL, 0);
        if (!result_ok(res) || PQntuples(res) != 1) {
                r = store_fail_result(s, "figures", res);
                PQclear(res);
                return r;
        }
        ret->cases_open = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        ret->outbox_backlog = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        ret->outbox_oldest = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        ret->dead_letters = strtoull(PQgetvalue(res, 0, 3), NULL, 10);
        PQclear(res);
        return 0;
}
