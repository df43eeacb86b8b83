/* libpq, the one way allvarsd speaks it: a session that remembers its last
 * error (one line, never a parameter value: parameters carry personal data),
 * statements prepared by name, typed parameters in PostgreSQL's binary format
 * (one-dimensional arrays included, so that a batch's rows travel as a few
 * arrays through unnest), and pipelined round trips. No logging here.
 *
 * Schema convention: every statement names its tables `allvarsd.`-qualified.
 * A statement then reads the same whatever the session's search_path (allvarsctl
 * and psql sessions, a role whose own schema comes first), and an object in
 * another schema can never stand in for ours. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "clock.h"
#include "sqlstate.h"
#include "strbuf.h"

#define PG_ERROR_MAX 256

#define PG_OID_BOOL        16
#define PG_OID_BYTEA       17
#define PG_OID_INT8        20
#define PG_OID_INT4        23
#define PG_OID_TEXT        25
#define PG_OID_TIMESTAMPTZ 1184

/* Microseconds since the Unix epoch of PostgreSQL's epoch (2000-01-01). */
#define PG_EPOCH_USEC ((usec_t)946684800 * 1000000)

/* A list of named statements, ending with name == NULL. */
typedef struct pg_statement {
        const char *name;
        const char *sql;
} pg_statement;

#define PG_LISTS_MAX 8

/* One PostgreSQL session. */
typedef struct pg_session {
        PGconn *conn;
        bool broken;                    /* a failure ended the session (libpq may not know yet) */
        char error[PG_ERROR_MAX];       /* the last failure, one line */
        char sqlstate[6];               /* its SQLSTATE, "" when the server gave none */
        char failed[64];                /* the name of the statement that failed, "" when none */
        const pg_statement *prepared[PG_LISTS_MAX];     /* the lists prepared on this session */
        size_t n_prepared;
} pg_session;

/* ---- waiting for replies ---- */

/* No reply is awaited longer than this (pg_set_reply_timeout); then the
 * session is given up as lost (-ECONNRESET), as on a reset. */
#define PG_REPLY_TIMEOUT_DEFAULT (12 * USEC_PER_SEC)
void pg_set_reply_timeout(usec_t timeout);
/* Read until a result is ready on conn (!PQisBusy): 0, -ETIMEDOUT past the
 * reply timeout, -ECONNRESET or -errno when the socket fails. */
int pg_await(PGconn *conn);
/* The last result of what was just sent on conn (sent: what PQsend* returned),
 * every reply awaited with pg_await. NULL with *ret -ETIMEDOUT (no reply in
 * time), -ECONNRESET or -errno when it did not come; the caller gives the
 * connection up then. */
PGresult *pg_await_result(PGconn *conn, int sent, int *ret);

/* ---- errors ---- */

/* Record a one-line error (never parameter values) and return err. */
int pg_fail(pg_session *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Map a failed result (or NULL) of the statement `what` to a negative errno
 * by its SQLSTATE class (sqlstate.h), and record why:
 *   -ECONNRESET  the connection is gone (class 08, a shutdown, no result);
 *   -EAGAIN      another transient error: retry (serialization, deadlock, resources, timeouts);
 *   -EBADMSG     one message's data (22, 23): the statement's rows hold a bad value;
 *   -EACCES      the deployment (28, 3D000, 3F000, 42): an operator must act;
 *   -EIO         anything else.
 * A data exception's message quotes the value: only its SQLSTATE is kept. */
int pg_fail_result(pg_session *s, const char *what, const PGresult *r);
/* The class of the last failure's SQLSTATE. */
sqlstate_class pg_last_class(const pg_session *s);
bool pg_connected(const pg_session *s);
/* -ECONNRESET with a recorded reason unless connected. */
int pg_need_conn(pg_session *s);
/* The first line of libpq's connection error message. */
const char *pg_conn_message(const pg_session *s, char *buf, size_t size);

/* ---- statements ---- */

/* Prepare every statement of list on this session, once (lazily: the tables
 * must exist first). 0, or the mapped error of the first that failed. */
int pg_prepare(pg_session *s, const pg_statement *list);
/* Forget what was prepared (a new session, or DEALLOCATE ALL). */
void pg_prepared_forget(pg_session *s);

/* ---- parameters ---- */

/* A one-dimensional array parameter in PostgreSQL's binary format, built in
 * place; reset keeps the buffer. Allocation failures are remembered (strbuf.h)
 * and reported by pg_arr_finish. */
typedef struct pg_arr {
        strbuf b;                       /* the bytes: header, then each element */
        uint32_t elem_oid;
        int32_t n;
        bool has_null;
} pg_arr;

void pg_arr_reset(pg_arr *a, uint32_t elem_oid);
void pg_arr_free(pg_arr *a);
void pg_arr_null(pg_arr *a);
void pg_arr_bytes(pg_arr *a, const void *p, size_t n);
void pg_arr_text(pg_arr *a, const char *s);             /* NULL: SQL NULL */
void pg_arr_int4(pg_arr *a, int32_t v);
void pg_arr_int8(pg_arr *a, int64_t v);
void pg_arr_bool(pg_arr *a, bool v);
void pg_arr_ts(pg_arr *a, usec_t t);                    /* 0: SQL NULL */
/* Write the header; 0, or -ENOMEM when an append failed. */
int pg_arr_finish(pg_arr *a);

/* A one-dimensional int4 array without NULLs in PostgreSQL's binary format (a
 * result field of result format 1), len bytes at data: its elements into
 * out[0..*n), at most max of them. 0; -EBADMSG when it is not such an array;
 * -E2BIG when it has more than max elements (*n then says how many). */
int pg_arr_int4_read(const void *data, size_t len, int32_t *out, size_t max, size_t *n);

/* The parameters of one statement, all in binary format. Scalars are copied
 * into the struct; arrays and strings are referenced and must outlive the send. */
#define PG_PARAMS_MAX 24
typedef struct pg_params {
        int n;
        const char *values[PG_PARAMS_MAX];
        int lengths[PG_PARAMS_MAX];
        int formats[PG_PARAMS_MAX];
        uint8_t scalars[PG_PARAMS_MAX][8];
} pg_params;

void pg_params_text(pg_params *p, const char *s);       /* NULL: SQL NULL */
void pg_params_text_or_null(pg_params *p, const char *s);       /* "" too is SQL NULL */
void pg_params_int4(pg_params *p, int32_t v);
void pg_params_int8(pg_params *p, int64_t v);
void pg_params_ts(pg_params *p, usec_t t);              /* timestamptz */
void pg_params_ts_or_null(pg_params *p, usec_t t);      /* 0: SQL NULL */
void pg_params_float8(pg_params *p, double v);
void pg_params_bool(pg_params *p, bool v);
void pg_params_null(pg_params *p);
/* Finish the array and add it; -ENOMEM when it could not be built. */
int pg_params_arr(pg_params *p, pg_arr *a);

/* ---- running statements ---- */

/* Run the prepared statement `name` (pg_prepare first); result_format 0 text,
 * 1 binary. 0 with the result in *ret when given (PQclear it), or the mapped error. */
int pg_exec(pg_session *s, const char *name, const pg_params *p, int result_format, PGresult **ret);

/* Pipelined round trips: queue prepared statements, then one sync collects
 * their results. A statement that fails aborts the rest of the round trip
 * (PGRES_PIPELINE_ABORTED); the transaction then needs a ROLLBACK. */
#define PG_PIPE_MAX 20
typedef struct pg_pipe {
        pg_session *s;
        size_t n;
        const char *names[PG_PIPE_MAX];
        PGresult *res[PG_PIPE_MAX];
} pg_pipe;

int pg_pipe_begin(pg_session *s, pg_pipe *p);
/* Queue a prepared statement; result_format 0 text, 1 binary. Returns the
 * statement's index, or a negative errno. */
int pg_pipe_send(pg_pipe *p, const char *name, const pg_params *params, int result_format);
/* Queue a statement that is parsed and planned with each call's parameters
 * (the unnamed statement), labelled `name` in errors. For a statement whose
 * right plan depends on a table that grows while the session lasts: a
 * prepared statement keeps the generic plan it settled on after five calls,
 * and one made while the table was empty can stay a sequential scan of it
 * until an ANALYZE of the table invalidates it. */
int pg_pipe_send_sql(pg_pipe *p, const char *name, const char *sql, const pg_params *params, int result_format);
/* Send the sync and collect every result. 0 when all succeeded; otherwise
 * the mapped error of the first failure (as pg_fail_result). */
int pg_pipe_sync(pg_pipe *p);
/* Clear the results and leave pipeline mode (safe after any failure). */
void pg_pipe_end(pg_pipe *p);

/* ROLLBACK whatever transaction is open, if the connection is still usable. */
void pg_rollback(pg_session *s);

/* ---- reading results (text format) ---- */

usec_t pg_field_usec(const PGresult *r, int row, int col);     /* an int8 of microseconds; NULL: 0 */
bool pg_field_bool(const PGresult *r, int row, int col);
int64_t pg_field_int(const PGresult *r, int row, int col);     /* NULL: 0 */
unsigned pg_cmd_rows(const PGresult *r);                        /* rows an INSERT/UPDATE/DELETE touched */

/* A timestamptz column as microseconds since the Unix epoch, for a SELECT list. */
#define PG_SQL_USEC(e) "(extract(epoch FROM " e ") * 1000000)::int8"

static inline void pg_result_clearp(PGresult **r) {
        PQclear(*r);
}
#define _cleanup_pqclear_ __attribute__((cleanup(pg_result_clearp)))
