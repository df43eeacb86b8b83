/* Inside the store: the connection object, error mapping, binary array
 * parameters and pipelined round trips, shared by store.c and
 * store_referrals.c (and open to the other store_*.c files); and the
 * transaction of the periodic jobs that keep their SQL beside their logic
 * (deadline_watch.c, retention.c). Not an interface for the rest of the
 * daemon: they use store.h. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store.h"

#define STORE_ERROR_MAX 256

struct store_scratch;                   /* store_referrals.c: per-batch buffers, kept between batches */
void store_scratch_free(struct store_scratch *sc);

struct store {
        PGconn *conn;
        bool prepared;                  /* the statements of store_statements exist on this session */
        bool broken;                    /* a failure ended the session (libpq may not know yet) */
        char error[STORE_ERROR_MAX];
        struct store_scratch *scratch;
};

/* Record a one-line error (never parameter values) and return err. */
int store_fail(store *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Map a failed result (or NULL) of `what` to a negative errno and record why:
 * -ECONNRESET when the connection is gone, -EAGAIN for serialization
 * failures and deadlocks, -EIO otherwise. */
int store_fail_result(store *s, const char *what, const PGresult *r);

/* Named statements, prepared once per session (lazily: the tables must exist
 * first). Each list ends with name == NULL. */
typedef struct store_statement {
        const char *name;
        const char *sql;
} store_statement;
extern const store_statement store_common_statements[];      /* store.c */
extern const store_statement store_referral_statements[];    /* store_referrals.c */
int store_prepare_all(store *s);

/* A one-dimensional array parameter in PostgreSQL's binary format, built in
 * place; reset keeps the buffer. Allocation failures are remembered in oom
 * and reported by store_arr_finish. */
typedef struct store_arr {
        uint8_t *buf;
        size_t len, cap;
        uint32_t elem_oid;
        int32_t n;
        bool has_null;
        bool oom;
} store_arr;

#define STORE_OID_BOOL        16
#define STORE_OID_BYTEA       17
#define STORE_OID_INT8        20
#define STORE_OID_INT4        23
#define STORE_OID_TEXT        25
#define STORE_OID_TIMESTAMPTZ 1184

void store_arr_reset(store_arr *a, uint32_t elem_oid);
void store_arr_free(store_arr *a);
void store_arr_null(store_arr *a);
void store_arr_bytes(store_arr *a, const void *p, size_t n);
void store_arr_text(store_arr *a, const char *s);       /* NULL: SQL NULL */
void store_arr_int4(store_arr *a, int32_t v);
void store_arr_int8(store_arr *a, int64_t v);
void store_arr_bool(store_arr *a, bool v);
void store_arr_ts(store_arr *a, usec_t t);              /* 0: SQL NULL */
/* Write the header; 0, or -ENOMEM when an append failed. */
int store_arr_finish(store_arr *a);

/* The parameters of one statement, all in binary format. Scalars are copied
 * into the struct; arrays and strings are referenced and must outlive the send. */
#define STORE_PARAMS_MAX 24
typedef struct store_params {
        int n;
        const char *values[STORE_PARAMS_MAX];
        int lengths[STORE_PARAMS_MAX];
        int formats[STORE_PARAMS_MAX];
        uint8_t scalars[STORE_PARAMS_MAX][8];
} store_params;

void store_params_text(store_params *p, const char *s);
void store_params_int4(store_params *p, int32_t v);
void store_params_int8(store_params *p, int64_t v);
void store_params_ts(store_params *p, usec_t t);         /* timestamptz */
void store_params_arr(store_params *p, const store_arr *a);
void store_params_bool(store_params *p, bool v);
void store_params_null(store_params *p);

/* Pipelined round trips: queue prepared statements, then one sync collects
 * their results. A statement that fails aborts the rest of the round trip
 * (PGRES_PIPELINE_ABORTED); the transaction then needs a ROLLBACK. */
#define STORE_PIPE_MAX 16
typedef struct store_pipe {
        store *s;
        size_t n;
        const char *names[STORE_PIPE_MAX];
        PGresult *res[STORE_PIPE_MAX];
} store_pipe;

int store_pipe_begin(store *s, store_pipe *p);
/* Queue a prepared statement; result_format 0 text, 1 binary. Returns the
 * statement's index, or a negative errno. */
int store_pipe_send(store_pipe *p, const char *stmt, const store_params *params, int result_format);
/* Send the sync and collect every result. 0 when all succeeded; otherwise
 * the mapped error of the first failure (as store_fail_result). */
int store_pipe_sync(store_pipe *p);
/* Clear the results and leave pipeline mode (safe after any failure). */
void store_pipe_end(store_pipe *p);

/* ROLLBACK whatever transaction is open, if the connection is still usable. */
void store_rollback(store *s);

/* A periodic job's transaction on the store's session, with libpq directly
 * (no prepared statements, nothing recorded in store_last_error): "BEGIN;
 * SET LOCAL jit = off", since JIT compiling periodic statements costs more
 * than it saves (PostgreSQL 15 JITs any plan above jit_above_cost; measured:
 * a purge over 50,000 referrals took 0.7 s instead of 0.05 s). 0 with the
 * connection in *ret; -ENOTCONN without a usable session, -EBUSY when a
 * caller left a transaction open (never join it), else as store_job_exec.
 * After a failure in the transaction: store_rollback. */
int store_job_begin(store *s, PGconn **ret);
/* Run one statement of a job: 0 when it returned want (*ret, if given, keeps
 * the result), else -EAGAIN for a serialization failure or deadlock (retry
 * next round), -ECONNRESET when the connection is gone, -EIO otherwise.
 * Without parameters or result, sql may hold several statements. */
int store_job_exec(PGconn *pg, const char *sql, int n, const char *const *params, ExecStatusType want,
                   PGresult **ret);

/* Microseconds since the Unix epoch of a timestamptz in binary format. */
#define STORE_PG_EPOCH_USEC ((usec_t)946684800 * 1000000)
