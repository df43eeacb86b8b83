/* Lanes (daemon/lanes.c) against the real PostgreSQL server that tests/run
 * starts: a function run on N connections at once, lane 0 being the caller's
 * store on the caller's thread and every other lane a thread with a
 * connection it makes itself when first given work (and again after a loss).
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-lanes; pg_stop
 *
 * The lane function (probe) never calls cmocka: it runs on the lanes' threads,
 * where a failed assertion cannot unwind. It records what it saw and the test
 * asserts on the caller's thread. No pass condition depends on timing: the
 * concurrency test waits (bounded) for a state that only simultaneous lanes
 * can reach, and fails when the bound runs out. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "config.h"
#include "harness.h"
#include "lanes.h"
#include "metrics.h"
#include "store.h"

#define MAX_LANES 3
/* Advisory lock keys of the concurrency test: key = MEET_KEY + lane. */
#define MEET_KEY 7346100
/* How long a lane waits for the others to hold their locks before it gives up.
 * Only a failure bound (lanes run one after another never get there); lazy
 * connects on a loaded 2-CPU machine can take seconds, hence generous. */
#define MEET_WAIT_SEC 20
#define PASSWORD "lane-secret-1"

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        lanes *l;
        config *cfg2;                   /* a second configuration a test made, freed in teardown if still here */
        harness_db late;                /* a database a test creates late, dropped in teardown */
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

static int setup(void **state) {
        return harness_store_setup(state, sizeof(fixture), "test-lanes", "");
}

static int teardown(void **state) {
        fixture *fx = *state;
        if (fx) {
                lanes_free(fx->l);
                config_free(fx->cfg2);
                harness_db_drop(&fx->late);
        }
        return harness_store_teardown(state);
}

/* ---- the lane function ---- */

typedef enum probe_mode {
        PROBE_PID,                      /* check the schema (a store call), read pg_backend_pid() */
        PROBE_MEET,                     /* PROBE_PID, then lock MEET_KEY + k and wait for all n locks */
        PROBE_UNLOCK,                   /* PROBE_PID, then release the lock of PROBE_MEET */
        PROBE_FAIL_STORE,               /* PROBE_PID, then a store call that fails (-EIO) */
        PROBE_FAIL_ERRNO,               /* PROBE_PID, then return -ENOSPC without any failed statement */
        PROBE_GATE,                     /* PROBE_PID, then wait until the caller opens the gate */
} probe_mode;

typedef struct probe_ctx {
        pthread_t caller;
        unsigned n;                     /* PROBE_MEET: locks to wait for */
        atomic_int calls;               /* probe calls in all lanes */
        atomic_bool gate;               /* PROBE_GATE: opened by the caller */
} probe_ctx;

typedef struct probe {
        probe_ctx *ctx;
        unsigned k;
        probe_mode mode;
        /* what the lane saw, reset by probe_reset */
        int calls;
        bool connected;                 /* store_connected() when called */
        store *st;
        bool on_caller;                 /* ran on the thread that called lanes_run */
        pthread_t thread;
        int pid;                        /* pg_backend_pid() */
        char db[128];                   /* current_database() */
        char pass[64];                  /* PQpass(): the password the connection was made with */
        int held;                       /* PROBE_MEET: most locks seen held at once */
        bool unlocked;                  /* PROBE_UNLOCK: pg_advisory_unlock returned true */
        char err[256];                  /* store_last_error() when the probe returned an error */
} probe;

static void probe_reset(probe *p, probe_mode mode) {
        p->mode = mode;
        p->calls = 0;
        p->connected = false;
        p->st = NULL;
        p->on_caller = false;
        p->pid = 0;
        p->db[0] = p->pass[0] = p->err[0] = 0;
        p->held = 0;
        p->unlocked = false;
}

/* One row, one column of sql as text in buf; 0, -ECONNRESET when the
 * connection is gone, else -EIO. */
static int probe_value(PGconn *c, const char *sql, char *buf, size_t size) {
        PGresult *r = PQexec(c, sql);
        int ret = 0;
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1)
                ret = PQstatus(c) == CONNECTION_OK ? -EIO : -ECONNRESET;
        else
                snprintf(buf, size, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return ret;
}

static double mono_sec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lock MEET_KEY + k (a session lock: it outlives the function) and wait until
 * the n lanes' locks are all held in this database. */
static int probe_meet(probe *p, PGconn *c) {
        char sql[512], v[64];
        snprintf(sql, sizeof sql, "SELECT pg_advisory_lock(%d)::text", MEET_KEY + (int)p->k);
        int r = probe_value(c, sql, v, sizeof v);
        if (r < 0)
                return r;
        /* A bigint key below 2^32 is classid 0, objid key (PostgreSQL: pg_locks). */
        snprintf(sql, sizeof sql,
                 "SELECT count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                 " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                 " AND classid = 0 AND objsubid = 1 AND objid BETWEEN %d AND %d",
                 MEET_KEY, MEET_KEY + (int)p->ctx->n - 1);
        double give_up = mono_sec() + MEET_WAIT_SEC;
        for (;;) {
                r = probe_value(c, sql, v, sizeof v);
                if (r < 0)
                        return r;
                int held = atoi(v);
                if (held > p->held)
                        p->held = held;
                if (held == (int)p->ctx->n)
                        return 0;
                if (mono_sec() > give_up) {
                        PQclear(PQexec(c, "SELECT pg_advisory_unlock_all()"));
                        return -ETIMEDOUT;
                }
                usleep(10 * 1000);
        }
}

static int probe_fn(store *st, void *arg) {
        probe *p = arg;
        p->calls++;
        atomic_fetch_add(&p->ctx->calls, 1);
        p->st = st;
        p->thread = pthread_self();
        p->on_caller = pthread_equal(p->thread, p->ctx->caller);
        p->connected = store_connected(st);
        PGconn *c = (PGconn *)store_pg(st);
        char v[128];

        /* A store call first, as the consumer's lane function makes: a lost
         * connection then shows in the store's last error. */
        int r = store_check_schema(st, NULL);
        if (r >= 0)
                r = probe_value(c, "SELECT pg_backend_pid()", v, sizeof v);
        if (r >= 0) {
                p->pid = atoi(v);
                r = probe_value(c, "SELECT current_database()", p->db, sizeof p->db);
        }
        if (r >= 0)
                snprintf(p->pass, sizeof p->pass, "%s", PQpass(c) ? PQpass(c) : "");
        if (r >= 0) {
                switch (p->mode) {
                case PROBE_PID:
                        break;
                case PROBE_MEET:
                        r = probe_meet(p, c);
                        break;
                case PROBE_UNLOCK: {
                        char sql[128];
                        snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(%d)::text", MEET_KEY + (int)p->k);
                        r = probe_value(c, sql, v, sizeof v);
                        p->unlocked = r >= 0 && strcmp(v, "true") == 0;
                        break;
                }
                case PROBE_FAIL_STORE:
                        /* A failed statement leaves the transaction aborted: the
                         * store's next statement fails (SQLSTATE 25P02) and the
                         * store says so in its last error. */
                        PQclear(PQexec(c, "BEGIN; SELECT 1/0"));
                        r = store_check_schema(st, NULL);
                        if (r >= 0)
                                r = -EPROTO;    /* the test then sees an unexpected errno */
                        snprintf(p->err, sizeof p->err, "%s", store_last_error(st));
                        PQclear(PQexec(c, "ROLLBACK"));
                        return r;
                case PROBE_FAIL_ERRNO:
                        r = -ENOSPC;
                        break;
                case PROBE_GATE: {
                        double give_up = mono_sec() + MEET_WAIT_SEC;
                        while (!atomic_load(&p->ctx->gate) && mono_sec() < give_up)
                                usleep(1000);
                        r = atomic_load(&p->ctx->gate) ? 0 : -ETIMEDOUT;
                        break;
                }
                }
        }
        if (r < 0)
                snprintf(p->err, sizeof p->err, "%s", store_last_error(st));
        return r;
}

/* ---- helpers on the test's thread ---- */

static lanes *lanes_make(fixture *fx, const config *cfg, unsigned n) {
        lanes *l = NULL;
        assert_int_equal(lanes_new(cfg, fx->h.st, n, &l), 0);
        assert_non_null(l);
        fx->l = l;
        return l;
}

static void probes_init(probe *p, probe_ctx *ctx, unsigned n) {
        *ctx = (probe_ctx){.caller = pthread_self(), .n = n};
        atomic_init(&ctx->calls, 0);
        atomic_init(&ctx->gate, false);
        for (unsigned k = 0; k < n; k++) {
                p[k] = (probe){.ctx = ctx, .k = k};
                probe_reset(&p[k], PROBE_PID);
        }
}

/* Runs probe_fn with args[k] = &p[k] where use[k], rets first set to a value
 * lanes_run must overwrite. */
static void run(lanes *l, probe *p, const bool *use, int *rets) {
        void *args[MAX_LANES] = {0};
        unsigned n = lanes_count(l);
        assert_true(n <= MAX_LANES);
        for (unsigned k = 0; k < n; k++) {
                args[k] = use[k] ? &p[k] : NULL;
                rets[k] = 4242;
        }
        lanes_run(l, probe_fn, args, rets);
}

/* Client sessions on the test's database other than the test's own and the
 * caller's store: the lanes' connections. */
static long long lane_backends(fixture *fx) {
        return harness_count(fx->h.pg,
                             "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                             " AND backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> %d",
                             PQbackendPID((PGconn *)store_pg(fx->h.st)));
}

static int store_pid(store *st) {
        return PQbackendPID((PGconn *)store_pg(st));
}

static char *lane_error(lanes *l, unsigned k) {
        static char buf[512];
        memset(buf, 'x', sizeof buf - 1);
        buf[sizeof buf - 1] = 0;
        lanes_error(l, k, buf, sizeof buf);
        return buf;
}

/* ---- tests ---- */

/* 1. Every lane on a backend of its own, all at once: each lane takes an
 * advisory lock and returns only when all n locks are held, which lanes run
 * one after another never reach (the first would wait out MEET_WAIT_SEC and
 * return -ETIMEDOUT). The locks are held after the run, by the lanes' pids. */
static void meet(fixture *fx, unsigned n) {
        lanes *l = lanes_make(fx, fx->h.cfg, n);
        assert_int_equal(lanes_count(l), n);
        /* Lazy: no lane has connected before it is given work. */
        assert_int_equal(lane_backends(fx), 0);

        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, n);
        for (unsigned k = 0; k < n; k++)
                p[k].mode = PROBE_MEET;
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];
        run(l, p, all, rets);

        for (unsigned k = 0; k < n; k++) {
                if (rets[k] != 0)
                        fail_msg("lane %u returned %d (%s), saw at most %d of %u locks held", k, rets[k], p[k].err,
                                 p[k].held, n);
                assert_int_equal(p[k].calls, 1);
                assert_true(p[k].connected);
                assert_int_equal(p[k].held, (int)n);
                assert_string_equal(p[k].db, fx->h.db.name);
                assert_int_equal(p[k].pid, store_pid(p[k].st));
                for (unsigned j = 0; j < k; j++) {
                        assert_int_not_equal(p[k].pid, p[j].pid);
                        assert_ptr_not_equal(p[k].st, p[j].st);
                        assert_false(pthread_equal(p[k].thread, p[j].thread));
                }
        }
        assert_int_equal(atomic_load(&ctx.calls), (int)n);
        /* Lane 0 is the caller's store, on a thread of its own as every
         * other lane is (lanes_start returns at once: test_start_returns);
         * the others have stores of their own. */
        assert_ptr_equal(p[0].st, fx->h.st);
        assert_int_equal(p[0].pid, store_pid(fx->h.st));
        for (unsigned k = 0; k < n; k++)
                assert_false(p[k].on_caller);
        for (unsigned k = 1; k < n; k++)
                assert_ptr_not_equal(p[k].st, fx->h.st);
        assert_int_equal(lane_backends(fx), n - 1);

        /* Seen from outside: the n locks are held, each by its lane's backend. */
        for (unsigned k = 0; k < n; k++)
                assert_int_equal(harness_count(fx->h.pg,
                                               "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                                               " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                                               " AND classid = 0 AND objid = %d AND pid = %d",
                                               MEET_KEY + (int)k, p[k].pid),
                                 1);

        /* Release them, on the same connections (a lane keeps its connection). */
        int pids[MAX_LANES];
        for (unsigned k = 0; k < n; k++) {
                pids[k] = p[k].pid;
                probe_reset(&p[k], PROBE_UNLOCK);
        }
        run(l, p, all, rets);
        for (unsigned k = 0; k < n; k++) {
                assert_int_equal(rets[k], 0);
                assert_true(p[k].unlocked);
                assert_int_equal(p[k].pid, pids[k]);
        }
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                                 " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                                                 " AND classid = 0 AND objid BETWEEN %d AND %d",
                                       MEET_KEY, MEET_KEY + MAX_LANES),
                         0);
        assert_int_equal(lane_backends(fx), n - 1);
}

static void test_two_lanes_at_once(void **state) {
        meet(*state, 2);
}

static void test_three_lanes_at_once(void **state) {
        meet(*state, 3);
}

/* 2. A lane whose args[k] is NULL does not run: the function is not called for
 * it, its ret is 0 (also after a run where that lane failed), and a lane never
 * given work never connects. */
static void test_lane_without_work(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 3);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 3);
        int rets[MAX_LANES];

        /* Only lane 1, which fails. */
        p[1].mode = PROBE_FAIL_ERRNO;
        run(l, p, (bool[]){false, true, false}, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(rets[1], -ENOSPC);
        assert_int_equal(rets[2], 0);
        assert_int_equal(atomic_load(&ctx.calls), 1);
        assert_int_equal(p[0].calls, 0);
        assert_int_equal(p[1].calls, 1);
        assert_int_equal(p[2].calls, 0);
        assert_false(p[1].on_caller);
        assert_int_equal(lane_backends(fx), 1); /* lane 1's; lane 2 has not connected */

        /* Lanes 0 and 2, not 1: its earlier -ENOSPC is not reported again. */
        probe_reset(&p[1], PROBE_FAIL_ERRNO);
        run(l, p, (bool[]){true, false, true}, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(rets[1], 0);
        assert_int_equal(rets[2], 0);
        assert_int_equal(atomic_load(&ctx.calls), 3);
        assert_int_equal(p[0].calls, 1);
        assert_int_equal(p[1].calls, 0);
        assert_int_equal(p[2].calls, 1);
        assert_false(p[0].on_caller);
        assert_ptr_equal(p[0].st, fx->h.st);
        assert_int_equal(lane_backends(fx), 2);

        /* No work at all: nothing runs, every ret is 0. */
        run(l, p, (bool[]){false, false, false}, rets);
        for (unsigned k = 0; k < 3; k++)
                assert_int_equal(rets[k], 0);
        assert_int_equal(atomic_load(&ctx.calls), 3);
}

/* 3. A lane's error is its own: rets[k] and lanes_error(k) (the store's last
 * error after a failed statement), the other lanes 0 and no error text; the
 * text is cleared by the lane's next run and the connection stays usable. */
static void test_errors(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 3);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 3);
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];

        p[1].mode = PROBE_FAIL_STORE;
        run(l, p, all, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(rets[1], -EIO);
        assert_int_equal(rets[2], 0);
        assert_non_null(strstr(p[1].err, "SQLSTATE 25P02"));
        assert_string_equal(lane_error(l, 1), p[1].err);
        assert_string_equal(lane_error(l, 0), "");
        assert_string_equal(lane_error(l, 2), "");
        assert_string_equal(lane_error(l, 3), "");      /* no such lane */
        int pids[MAX_LANES] = {p[0].pid, p[1].pid, p[2].pid};

        /* Lane 0 (the caller's store) fails the same way; lane 2 returns an
         * errno of its own without a failed statement: its text is its store's
         * (no failure: empty). Lane 1's earlier text is gone. */
        probe_reset(&p[0], PROBE_FAIL_STORE);
        probe_reset(&p[1], PROBE_PID);
        probe_reset(&p[2], PROBE_FAIL_ERRNO);
        run(l, p, all, rets);
        assert_int_equal(rets[0], -EIO);
        assert_int_equal(rets[1], 0);
        assert_int_equal(rets[2], -ENOSPC);
        assert_non_null(strstr(p[0].err, "SQLSTATE 25P02"));
        assert_string_equal(lane_error(l, 0), p[0].err);
        assert_string_equal(lane_error(l, 0), store_last_error(fx->h.st));
        assert_string_equal(lane_error(l, 1), "");
        assert_string_equal(lane_error(l, 2), p[2].err);
        assert_string_equal(lane_error(l, 2), "");

        /* All well again, on the same connections. */
        for (unsigned k = 0; k < 3; k++)
                probe_reset(&p[k], PROBE_PID);
        run(l, p, all, rets);
        for (unsigned k = 0; k < 3; k++) {
                assert_int_equal(rets[k], 0);
                assert_string_equal(lane_error(l, k), "");
                assert_int_equal(p[k].pid, pids[k]);
        }

        /* A small buffer gets a terminated prefix. */
        p[2].mode = PROBE_FAIL_STORE;
        run(l, p, all, rets);
        assert_int_equal(rets[2], -EIO);
        char small[8];
        lanes_error(l, 2, small, sizeof small);
        assert_int_equal(strlen(small), sizeof small - 1);
        assert_memory_equal(small, p[2].err, sizeof small - 1);
}

/* 3b. A lane that cannot connect returns that error (the function is not
 * called), with libpq's reason; it connects when next given work once it can. */
static void test_connect_error(void **state) {
        fixture *fx = *state;
        /* A database name that is free: made, dropped, made again below. */
        assert_int_equal(harness_db_create(NULL, &fx->late), 0);
        assert_int_equal(harness_db_drop(&fx->late), 0);
        assert_int_equal(harness_config_new("test-lanes-late", fx->late.conninfo, fx->h.pepper_path, NULL, &fx->cfg2),
                         0);
        lanes *l = lanes_make(fx, fx->cfg2, 2);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 2);
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];

        run(l, p, all, rets);
        assert_int_equal(rets[0], 0);                   /* the caller's store is unaffected */
        /* A missing database is the deployment's (3D000), not an outage (store.h). */
        assert_int_equal(rets[1], -EACCES);
        assert_int_equal(p[1].calls, 0);
        assert_int_equal(atomic_load(&ctx.calls), 1);
        char *e = lane_error(l, 1);
        assert_non_null(strstr(e, "does not exist"));
        assert_null(strchr(e, '\n'));

        /* Still not there: the same again (a lane tries on every run). */
        run(l, p, all, rets);
        assert_int_equal(rets[1], -EACCES);
        assert_int_equal(p[1].calls, 0);

        char sql[256];
        snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" TEMPLATE template0", fx->late.name);
        PGconn *admin = NULL;
        assert_int_equal(harness_pg_connect(NULL, &admin), 0);
        int r = harness_exec(admin, sql);
        PQfinish(admin);
        assert_int_equal(r, 0);

        /* The probe checks the schema: the late database has none, so the
         * lane connects, runs, and reports the store's -ENOENT. */
        run(l, p, all, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(p[1].calls, 1);
        assert_true(p[1].connected);
        assert_int_equal(rets[1], -ENOENT);
        assert_non_null(strstr(lane_error(l, 1), "no allvarsd schema"));
        assert_string_equal(lane_error(l, 0), "");
        lanes_free(fx->l);
        fx->l = NULL;
}

/* 4. A lane whose backend was terminated between two runs: the next run
 * either reconnects at once or fails once with the lost connection (libpq
 * notices the end of the session only when it is used); the run after that
 * succeeds on a new backend. The other lanes keep theirs. */
static void test_reconnect(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 3);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 3);
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];

        run(l, p, all, rets);
        for (unsigned k = 0; k < 3; k++)
                assert_int_equal(rets[k], 0);
        int pids[MAX_LANES] = {p[0].pid, p[1].pid, p[2].pid};

        /* pg_terminate_backend with a timeout waits until the backend is gone. */
        assert_int_equal(harness_count(fx->h.pg, "SELECT pg_terminate_backend(%d, 20000)::int", pids[1]), 1);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pids[1]), 0);

        for (unsigned k = 0; k < 3; k++)
                probe_reset(&p[k], PROBE_PID);
        run(l, p, all, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(rets[2], 0);
        if (rets[1] == 0) {
                assert_int_not_equal(p[1].pid, pids[1]);
        } else {
                assert_int_equal(rets[1], -ECONNRESET);
                assert_non_null(strstr(lane_error(l, 1), "connection lost"));
        }

        for (unsigned k = 0; k < 3; k++)
                probe_reset(&p[k], PROBE_PID);
        run(l, p, all, rets);
        for (unsigned k = 0; k < 3; k++)
                assert_int_equal(rets[k], 0);
        assert_int_equal(p[1].calls, 1);
        assert_true(p[1].connected);                    /* connected before the function ran */
        assert_int_not_equal(p[1].pid, 0);
        assert_int_not_equal(p[1].pid, pids[1]);
        assert_int_not_equal(p[1].pid, pids[0]);
        assert_int_not_equal(p[1].pid, pids[2]);
        assert_int_equal(p[0].pid, pids[0]);
        assert_int_equal(p[2].pid, pids[2]);
        assert_string_equal(lane_error(l, 1), "");
        assert_int_equal(lane_backends(fx), 2);
}

/* 5. One lane: the caller's store on the caller's thread, no other connection. */
static void test_one_lane(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 1);
        assert_int_equal(lanes_count(l), 1);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 1);
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];

        run(l, p, all, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(p[0].calls, 1);
        assert_ptr_equal(p[0].st, fx->h.st);
        assert_true(p[0].on_caller);
        assert_int_equal(p[0].pid, store_pid(fx->h.st));
        assert_int_equal(lane_backends(fx), 0);

        probe_reset(&p[0], PROBE_FAIL_STORE);
        run(l, p, all, rets);
        assert_int_equal(rets[0], -EIO);
        assert_string_equal(lane_error(l, 0), p[0].err);
        assert_string_equal(lane_error(l, 1), "");

        run(l, p, (bool[]){false}, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(p[0].calls, 1);
        assert_int_equal(lane_backends(fx), 0);
}

/* 5b. lanes_start returns while the lanes work, lane 0 included: each lane
 * waits for a gate that the caller opens only once lanes_start has returned,
 * so a lane run on the caller's thread would time out (-ETIMEDOUT) inside
 * lanes_start and never see the gate open. lanes_wait then has every result.
 * What lets the consumer gather the next batch while a whole run stores the
 * last (consumer_batch.c, consumer_batch_send). */
static void test_start_returns(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 2);
        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 2);
        p[0].mode = p[1].mode = PROBE_GATE;
        void *args[MAX_LANES] = {&p[0], &p[1]};
        int rets[MAX_LANES] = {4242, 4242};
        lanes_start(l, probe_fn, args, rets);
        atomic_store(&ctx.gate, true);
        lanes_wait(l, args, rets);
        for (unsigned k = 0; k < 2; k++) {
                if (rets[k] != 0)
                        fail_msg("lane %u returned %d (%s)", k, rets[k], p[k].err);
                assert_int_equal(p[k].calls, 1);
                assert_false(p[k].on_caller);
        }
        assert_ptr_equal(p[0].st, fx->h.st);
        assert_false(pthread_equal(p[0].thread, p[1].thread));
}

/* 6. lanes_new reads the configuration once: the conninfo and the password
 * are the lanes' own copies, so the configuration may be overwritten and
 * freed at once (a use after free would also show under ASan in `san`). */
static void test_config_copied(void **state) {
        fixture *fx = *state;
        assert_int_equal(harness_config_new("test-lanes-password", fx->h.db.conninfo, fx->h.pepper_path,
                                            "database.password = " PASSWORD "\n", &fx->cfg2),
                         0);
        assert_string_equal(fx->cfg2->db_password, PASSWORD);
        lanes *l = lanes_make(fx, fx->cfg2, 3);
        /* What the lanes would read if they kept pointers: a database that is not there. */
        memset(fx->cfg2->db_conninfo, 'x', strlen(fx->cfg2->db_conninfo));
        memset(fx->cfg2->db_password, 'y', strlen(fx->cfg2->db_password));
        config_free(fx->cfg2);
        fx->cfg2 = NULL;

        probe p[MAX_LANES];
        probe_ctx ctx;
        probes_init(p, &ctx, 3);
        bool all[MAX_LANES] = {true, true, true};
        int rets[MAX_LANES];
        run(l, p, all, rets);
        for (unsigned k = 0; k < 3; k++)
                if (rets[k] != 0)
                        fail_msg("lane %u: %d: %s", k, rets[k], lane_error(l, k));
        for (unsigned k = 1; k < 3; k++) {
                assert_string_equal(p[k].db, fx->h.db.name);
                assert_string_equal(p[k].pass, PASSWORD);
        }
        assert_int_equal(lane_backends(fx), 2);
}

/* 7. Turns (lanes.h): the transaction that published first goes first,
 * whatever its lane. The older publishes {A, B}, the younger {B, C}, once the
 * older has: A and B are taken before the younger and C is not, nothing
 * before the older. The younger's wait for its turn returns once the older has
 * finished, and -EAGAIN when it does not finish within the bound. A lane that
 * finished (published or not) holds nobody. */
typedef struct turner {
        lanes *l;
        unsigned k;
        bool publish;
        bool second;                    /* publishes once the other has (*first_done), and waits its turn */
        atomic_bool *first_done;        /* set by the first once it has published */
        unsigned sleep_ms;              /* the first: how long its work takes after publishing */
        atomic_bool *hold;              /* the first: also until this is set (by the second, after its wait) */
        usec_t timeout;                 /* the second: the bound of its wait */
        int pub_r, wait_r;
        bool taken_a, taken_b, taken_c;
        usec_t finished_at, waited_at;  /* monotonic */
} turner;

static const uint8_t turn_keys[3][LANE_KEY_LEN] = { { 'A' }, { 'B' }, { 'C' } };

static int turn_fn(store *st, void *arg) {
        (void)st;
        turner *t = arg;
        if (t->second)
                for (int i = 0; !atomic_load(t->first_done) && i < MEET_WAIT_SEC * 100; i++)
                        usleep(10 * 1000);
        if (t->publish)
                t->pub_r = lanes_publish(t->l, t->k, t->second ? turn_keys + 1 : turn_keys, 2);
        t->taken_a = lanes_taken_before(t->l, t->k, turn_keys[0]);
        t->taken_b = lanes_taken_before(t->l, t->k, turn_keys[1]);
        t->taken_c = lanes_taken_before(t->l, t->k, turn_keys[2]);
        if (!t->second) {
                atomic_store(t->first_done, true);
                usleep(t->sleep_ms * 1000);
                for (int i = 0; t->hold && !atomic_load(t->hold) && i < MEET_WAIT_SEC * 100; i++)
                        usleep(10 * 1000);
                t->finished_at = clock_monotonic();
                return 0;
        }
        t->wait_r = lanes_wait_before(t->l, t->k, t->timeout);
        t->waited_at = clock_monotonic();
        if (t->hold)
                atomic_store(t->hold, true);
        return 0;
}

/* t[0] on lane first, t[1] on the other lane, both at once. */
static void turns_run(lanes *l, turner t[2], unsigned first) {
        atomic_bool done = false;
        t[0].first_done = t[1].first_done = &done;
        t[0].k = first;
        t[1].k = 1 - first;
        t[0].second = false;
        t[1].second = true;
        void *args[2];
        args[first] = &t[0];
        args[1 - first] = &t[1];
        int rets[2];
        lanes_run(l, turn_fn, args, rets);
        assert_int_equal(rets[0], 0);
        assert_int_equal(rets[1], 0);
}

static void test_turns(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 2);
        /* Lane 0 first, then lane 1 first: the order is the publication's. */
        for (unsigned first = 0; first < 2; first++) {
                turner t[2] = {
                        { .l = l, .publish = true, .sleep_ms = 300 },
                        { .l = l, .publish = true, .timeout = 20 * USEC_PER_SEC },
                };
                turns_run(l, t, first);
                assert_int_equal(t[0].pub_r, 0);
                assert_int_equal(t[1].pub_r, 0);
                assert_false(t[0].taken_a || t[0].taken_b || t[0].taken_c);
                assert_true(t[1].taken_a);
                assert_true(t[1].taken_b);
                assert_false(t[1].taken_c);
                assert_int_equal(t[1].wait_r, 0);
                assert_true(t[1].waited_at >= t[0].finished_at);
        }

        /* The older finishes only after the younger's wait returned: that wait runs out. */
        atomic_bool hold = false;
        turner t[2] = {
                { .l = l, .publish = true, .hold = &hold },
                { .l = l, .publish = true, .hold = &hold, .timeout = 200 * 1000 },
        };
        turns_run(l, t, 0);
        assert_int_equal(t[1].wait_r, -EAGAIN);
        assert_true(t[1].waited_at < t[0].finished_at);

        /* The first never publishes: the second takes nothing before it, waits for nobody. */
        t[0] = (turner){ .l = l, .publish = false, .sleep_ms = 100 };
        t[1] = (turner){ .l = l, .publish = true, .timeout = 20 * USEC_PER_SEC };
        turns_run(l, t, 0);
        assert_int_equal(t[1].pub_r, 0);
        assert_false(t[1].taken_b);
        assert_int_equal(t[1].wait_r, 0);
        assert_true(t[1].waited_at < t[0].finished_at);
}

/* 8. One lane at a time (lanes_give): lane 0 is given a piece of work that
 * holds until the caller opens the gate, and lane 1 three pieces one after
 * another meanwhile, each taken when done (lanes_done, lanes_take), each
 * writing a byte to the notify pipe. A piece given to lane 1 after lane 0's
 * published is the younger: its keys that lane 0 has are taken before it. */
typedef struct giver {
        lanes *l;
        unsigned k;
        atomic_bool *gate;              /* lane 0: returns once it is open */
        atomic_bool *published;         /* lane 0: set once it has published */
        bool taken_b, taken_c;
        int calls;
} giver;

static int give_fn(store *st, void *arg) {
        (void)st;
        giver *g = arg;
        g->calls++;
        if (g->k == 0) {
                int r = lanes_publish(g->l, 0, turn_keys, 2);
                atomic_store(g->published, true);
                for (int i = 0; !atomic_load(g->gate) && i < MEET_WAIT_SEC * 100; i++)
                        usleep(10 * 1000);
                return r < 0 ? r : atomic_load(g->gate) ? 0 : -ETIMEDOUT;
        }
        int r = lanes_publish(g->l, g->k, turn_keys + 1, 2);
        g->taken_b = lanes_taken_before(g->l, g->k, turn_keys[1]);
        g->taken_c = lanes_taken_before(g->l, g->k, turn_keys[2]);
        return r < 0 ? r : 7;
}

static size_t pipe_bytes(int fd) {
        char buf[64];
        size_t n = 0;
        ssize_t r;
        while ((r = read(fd, buf, sizeof buf)) > 0)
                n += (size_t)r;
        return n;
}

static void test_give(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 2);
        int fds[2];
        assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        lanes_notify(l, fds[1]);
        atomic_bool gate = false, published = false;
        giver g0 = { .l = l, .k = 0, .gate = &gate, .published = &published };
        lanes_give(l, 0, give_fn, &g0);
        for (int i = 0; !atomic_load(&published) && i < MEET_WAIT_SEC * 100; i++)
                usleep(10 * 1000);
        assert_true(atomic_load(&published));
        assert_false(lanes_done(l, 0));
        for (int i = 0; i < 3; i++) {
                giver g1 = { .l = l, .k = 1 };
                lanes_give(l, 1, give_fn, &g1);
                assert_int_equal(lanes_take(l, 1), 7);
                assert_true(lanes_done(l, 1));
                assert_int_equal(g1.calls, 1);
                assert_true(g1.taken_b);
                assert_false(g1.taken_c);
        }
        assert_false(lanes_done(l, 0));
        assert_int_equal(pipe_bytes(fds[0]), 3);
        atomic_store(&gate, true);
        assert_int_equal(lanes_take(l, 0), 0);
        assert_true(lanes_done(l, 0));
        assert_int_equal(g0.calls, 1);
        assert_int_equal(pipe_bytes(fds[0]), 1);

        /* Lane 0 finished: a new piece on lane 1 finds nothing taken. */
        giver g1 = { .l = l, .k = 1 };
        lanes_give(l, 1, give_fn, &g1);
        assert_int_equal(lanes_take(l, 1), 7);
        assert_false(g1.taken_b);
        lanes_free(l);
        fx->l = NULL;
        close(fds[0]);
        close(fds[1]);
}

/* 9. The run's wait (allvarsd_lane_seconds_total{step="run_wait"}): a lane
 * that is done waits for the run's last lane, and a lane without work waits
 * for the whole run; the last lane does not wait. One lane alone never does. */
static int sleep_fn(store *st, void *arg) {
        (void)st;
        usleep(*(const unsigned *)arg * 1000);
        return 0;
}

static void test_run_wait(void **state) {
        fixture *fx = *state;
        lanes *l = lanes_make(fx, fx->h.cfg, 3);
        unsigned slow = 400, fast = 0;
        void *args[3] = { &slow, &fast, NULL };
        int rets[3];
        uint64_t before = metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT);
        lanes_run(l, sleep_fn, args, rets);
        uint64_t waited = metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT) - before;
        /* lane 1 and lane 2 about 400 ms each */
        assert_true(waited >= 2 * 390 * 1000);
        assert_true(waited < 2 * 400 * 1000 + 2 * USEC_PER_SEC);

        /* The slow lane is the last one: it adds nothing, the other two the same. */
        args[0] = &fast;
        args[1] = &slow;
        before = metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT);
        lanes_run(l, sleep_fn, args, rets);
        waited = metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT) - before;
        assert_true(waited >= 2 * 390 * 1000);
        assert_true(waited < 2 * 400 * 1000 + 2 * USEC_PER_SEC);

        lanes_free(l);
        fx->l = NULL;
        lanes *one = lanes_make(fx, fx->h.cfg, 1);
        void *arg1[1] = { &slow };
        before = metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT);
        lanes_run(one, sleep_fn, arg1, rets);
        assert_int_equal(metrics_counter_value(M_LANE_SECONDS, LS_RUN_WAIT), before);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_two_lanes_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_three_lanes_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lane_without_work, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_connect_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconnect, setup, teardown),
                cmocka_unit_test_setup_teardown(test_one_lane, setup, teardown),
                cmocka_unit_test_setup_teardown(test_start_returns, setup, teardown),
                cmocka_unit_test_setup_teardown(test_config_copied, setup, teardown),
                cmocka_unit_test_setup_teardown(test_turns, setup, teardown),
                cmocka_unit_test_setup_teardown(test_give, setup, teardown),
                cmocka_unit_test_setup_teardown(test_run_wait, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
