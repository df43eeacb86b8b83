/* The store under concurrency (a real PostgreSQL server, as test-store.c):
 * two instances deciding one person at once, two lanes of one batch taking
 * turns on the persons they share, and the throughput on one and on two
 * connections, whose figures are printed.
 *
 * ALLVARS_STORE_BENCH_BATCHES (default 20) sets the size of the throughput run
 * (500 referrals per batch); ALLVARS_TEST_FILTER=test_throughput runs only it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store_fixture.h"

/* ---- two instances deciding one person at once ---- */

typedef struct racer {
        fixture *fx;
        store *st;
        pthread_barrier_t *barrier;
        batch *b;
        int r;
} racer;

static void *race(void *arg) {
        racer *rc = arg;
        if (rc->barrier)
                pthread_barrier_wait(rc->barrier);
        for (int attempt = 0; attempt < 5; attempt++) {
                rc->r = referral_batch_store(rc->st, rc->fx->h.cfg, GROUP, T0 + H(1), rc->b->m, rc->b->n, rc->b->off,
                                             rc->b->n_off, NULL, &rc->b->res);
                if (rc->r != -EAGAIN)
                        break;
        }
        return NULL;
}

static void race_two(fixture *fx, store *st[2], batch *b[2], pthread_barrier_t *barrier, void (*while_running)(fixture *)) {
        racer rc[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
                batch_offsets(fx, b[i]);
                rc[i] = (racer){ .fx = fx, .st = st[i], .barrier = barrier, .b = b[i] };
                assert_int_equal(pthread_create(&th[i], NULL, race, &rc[i]), 0);
        }
        if (while_running)
                while_running(fx);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < 2; i++) {
                if (rc[i].r < 0)
                        fail_msg("racer %d: %s: %s", i, strerror(-rc[i].r), store_last_error(st[i]));
                for (size_t j = 0; j < b[i]->n_off; j++)
                        fx->stored[b[i]->off[j].partition] = b[i]->off[j].new_next;
        }
}

/* Exactly one of the two referrals of the person is the first suspicion. */
static void check_one_first(batch *b[2]) {
        assert_int_equal(b[0]->res.decided + b[1]->res.decided, 2);
        int eligible = 0, not_first = 0;
        for (int i = 0; i < 2; i++) {
                if (b[i]->m[0].outcome == OUTCOME_ELIGIBLE)
                        eligible++;
                if (b[i]->m[0].outcome == OUTCOME_NOT_ELIGIBLE && (b[i]->m[0].reasons & REASON_NOT_FIRST_SUSPICION))
                        not_first++;
        }
        assert_int_equal(eligible, 1);
        assert_int_equal(not_first, 1);
}

/* Wait until n batches wait for a lock, then commit the test's transaction. */
static void commit_when_waiting(fixture *fx, int n) {
        for (int i = 0; i < 200; i++) {
                if (count(fx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                              " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()") == n)
                        break;
                usleep(50 * 1000);
        }
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND wait_event_type = 'Lock'"),
                         n);
        harness_exec_ok(fx->h.pg, "COMMIT");
}

/* Both racers wait for the person's lock, then go. */
static void release_when_both_wait(fixture *fx) {
        commit_when_waiting(fx, 2);
}

/* A Stockholm identity number born on the date, and its person key. */
static void person_of(fixture *fx, int year, int month, int day, int serial, char pnr[14],
                      uint8_t key[PERSON_KEY_LEN]) {
        make_pnr(pnr, year, month, day, serial);
        identity id;
        assert_int_equal(identity_parse(pnr, stockholm_date(T0), &id), IDENTITY_VALID);
        assert_int_equal(ids_person_key(fx->h.cfg->pepper, fx->h.cfg->pepper_len, id.normalised, key), 0);
}

static void test_concurrent_same_person(void **state) {
        fixture *fx = *state;
        store *st[2];
        for (int i = 0; i < 2; i++)
                assert_int_equal(harness_store_connect(&fx->h.db, &st[i]), 0);

        /* Deterministic: the person is locked by the test while both batches
         * reach the lock, so both have inserted their referral when the first
         * one reads the history. */
        char pnr[14];
        uint8_t key[PERSON_KEY_LEN];
        person_of(fx, 2011, 2, 3, 500, pnr, key);
        const char *kv[1] = { (const char *)key };
        int kl[1] = { PERSON_KEY_LEN }, kf[1] = { 1 };
        PGresult *res = PQexecParams(fx->h.pg, "INSERT INTO allvarsd.persons (person_key) VALUES ($1)", 1, NULL, kv, kl,
                                     kf, 0);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        harness_exec_ok(fx->h.pg, "BEGIN");
        res = PQexecParams(fx->h.pg, "SELECT 1 FROM allvarsd.persons WHERE person_key = $1 FOR UPDATE", 1, NULL, kv, kl,
                           kf, 0);
        assert_int_equal(PQntuples(res), 1);
        PQclear(res);
        batch *b[2] = { batch_new(), batch_new() };
        batch_add(fx, b[0], &(refspec){ .id = "X-1", .pnr = pnr }, 0);
        batch_add(fx, b[1], &(refspec){ .id = "X-2", .pnr = pnr }, 1);
        race_two(fx, st, b, NULL, release_when_both_wait);
        check_one_first(b);
        batch_free(b[0]);
        batch_free(b[1]);

        /* Free-running: the two start together, person by person. */
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        for (int round = 0; round < 15; round++) {
                char rid[2][32];
                batch *c[2] = { batch_new(), batch_new() };
                for (int i = 0; i < 2; i++) {
                        snprintf(rid[i], sizeof rid[i], "Y-%d-%d", round, i);
                        batch_add(fx, c[i], &(refspec){ .id = rid[i], .person = 600 + round }, i);
                }
                race_two(fx, st, c, &barrier, NULL);
                check_one_first(c);
                batch_free(c[0]);
                batch_free(c[1]);
        }
        pthread_barrier_destroy(&barrier);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE outcome = 'ELIGIBLE'"), 16);
        for (int i = 0; i < 2; i++)
                store_free(st[i]);
}

/* A new person that another transaction inserts while the batch's history
 * statement runs (another instance's referral of the same new person): the
 * statement's insert meets the other's row, waits for that transaction, and
 * then gives the committed row the batch's marks (store_referrals.c
 * "ref_persons_history", ON CONFLICT DO UPDATE), so the batch reads the
 * other's referral as history. Deterministic: the test's own uncommitted
 * insert is that transaction, committed once the batch waits for it. A
 * statement that skipped the row (DO NOTHING, or an update that cannot see
 * it) would decide the referral as the person's first. */
static void test_person_inserted_meanwhile(void **state) {
        fixture *fx = *state;
        store *st;
        assert_int_equal(harness_store_connect(&fx->h.db, &st), 0);
        /* A first referral, for the marks such a referral has. */
        batch *first = batch_new();
        batch_add(fx, first, &(refspec){ .id = "M-0", .person = 800 }, 0);
        batch_offsets(fx, first);
        assert_int_equal(referral_batch_store(st, fx->h.cfg, GROUP, T0 + H(1), first->m, first->n, first->off,
                                              first->n_off, NULL, &first->res),
                         0);
        for (size_t j = 0; j < first->n_off; j++)
                fx->stored[first->off[j].partition] = first->off[j].new_next;
        assert_int_equal(first->m[0].outcome, OUTCOME_ELIGIBLE);
        batch_free(first);

        char pnr[14];
        uint8_t key[PERSON_KEY_LEN];
        person_of(fx, 2011, 4, 5, 700, pnr, key);
        const char *kv[1] = { (const char *)key };
        int kl[1] = { PERSON_KEY_LEN }, kf[1] = { 1 };
        harness_exec_ok(fx->h.pg, "BEGIN");
        PGresult *res = PQexecParams(fx->h.pg,
                                     "INSERT INTO allvarsd.persons (person_key, marks)"
                                     " SELECT $1, ARRAY[marks] FROM allvarsd.referrals WHERE referral_id = 'M-0'",
                                     1, NULL, kv, kl, kf, 0);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        assert_string_equal(PQcmdTuples(res), "1");
        PQclear(res);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "M-1", .pnr = pnr }, 1);
        batch_offsets(fx, b);
        racer rc = { .fx = fx, .st = st, .b = b };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, race, &rc), 0);
        commit_when_waiting(fx, 1);
        pthread_join(th, NULL);
        if (rc.r < 0)
                fail_msg("batch: %s: %s", strerror(-rc.r), store_last_error(st));
        assert_int_equal(b->res.decided, 1);
        assert_int_equal(b->m[0].outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(b->m[0].reasons & REASON_NOT_FIRST_SUSPICION);
        /* The other's mark and the batch's own. */
        res = PQexecParams(fx->h.pg, "SELECT cardinality(marks) FROM allvarsd.persons WHERE person_key = $1", 1, NULL,
                           kv, kl, kf, 0);
        assert_int_equal(PQntuples(res), 1);
        assert_string_equal(PQgetvalue(res, 0, 0), "2");
        PQclear(res);
        batch_free(b);
        store_free(st);
}

/* ---- two lanes of one run: turns on the persons they share ---- */

typedef struct lane_batch {
        fixture *fx;
        batch *b;
        lane_turn turn;
} lane_batch;

static int lane_decide(store *st, void *arg) {
        lane_batch *lb = arg;
        return batch_store(st, lb->fx->h.cfg, GROUP, T0 + H(1), false, lb->b->m, lb->b->n, lb->b->off, lb->b->n_off,
                           &lb->turn, &lb->b->res);
}

/* The consumer's batch split over two lanes whose referrals share persons
 * (lanes.h "turns"): the older transaction's (the first to publish its
 * persons) referral of every shared person is the first suspicion, and the
 * younger's, decided after the older committed, sees it (NOT_FIRST_SUSPICION,
 * one prior); each lane's own persons are first. Without turns the two would
 * meet on the persons' locks, and each person would go to whichever lane
 * locked it first: firsts split between the lanes. */
static void test_lanes_take_turns(void **state) {
        fixture *fx = *state;
        lanes *l;
        assert_int_equal(lanes_new(fx->h.cfg, fx->h.st, 2, &l), 0);
        for (int round = 0; round < 8; round++) {
                batch *b[2] = { batch_new(), batch_new() };
                lane_batch lb[2];
                for (int k = 0; k < 2; k++) {
                        char id[64];
                        for (int p = 0; p < 5; p++) {
                                snprintf(id, sizeof id, "TURN-%d-%d-%d", round, k, p);
                                batch_add(fx, b[k], &(refspec){ .id = id, .person = 700 + round * 10 + p }, k);
                        }
                        snprintf(id, sizeof id, "TURN-%d-%d-own", round, k);
                        batch_add(fx, b[k], &(refspec){ .id = id, .person = 705 + round * 10 + k }, k);
                        batch_offsets(fx, b[k]);
                        lb[k] = (lane_batch){ .fx = fx, .b = b[k], .turn = { .l = l, .k = (unsigned)k } };
                }
                void *args[2] = { &lb[0], &lb[1] };
                int rets[2];
                lanes_run(l, lane_decide, args, rets);
                for (int k = 0; k < 2; k++) {
                        if (rets[k] < 0) {
                                char why[256];
                                lanes_error(l, (unsigned)k, why, sizeof why);
                                fail_msg("lane %d: %s: %s", k, strerror(-rets[k]), why);
                        }
                        assert_int_equal(b[k]->res.decided, 6);
                        for (size_t j = 0; j < b[k]->n_off; j++)
                                fx->stored[b[k]->off[j].partition] = b[k]->off[j].new_next;
                        assert_int_equal(b[k]->m[5].outcome, OUTCOME_ELIGIBLE);
                }
                /* The older transaction (the first to publish) has every first. */
                int first = b[0]->m[0].outcome == OUTCOME_ELIGIBLE ? 0 : 1;
                for (int p = 0; p < 5; p++) {
                        assert_int_equal(b[first]->m[p].outcome, OUTCOME_ELIGIBLE);
                        assert_int_equal(b[1 - first]->m[p].outcome, OUTCOME_NOT_ELIGIBLE);
                        assert_true(b[1 - first]->m[p].reasons & REASON_NOT_FIRST_SUSPICION);
                }
                batch_free(b[0]);
                batch_free(b[1]);
        }
        lanes_free(l);
        /* Of each shared person's two referrals, one saw none before it and one saw one. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id LIKE 'TURN-%%-_-_'"
                                   " AND prior_referrals = 1"),
                         40);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id LIKE 'TURN-%%-_-_'"
                                   " AND prior_referrals = 0"),
                         40);
}

/* ---- throughput ---- */

/* CPU seconds of a process (user + system), from /proc; -1 when unreadable. */
static double proc_cpu_s(int pid) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        unsigned long ut, st;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Batches of 500 realistic referrals (some persons repeat, some duplicates,
 * a poison message now and then) for partitions part0 .. part0 + 1; built
 * before the clock starts. */
#define BENCH_PER 500

static batch **bench_build(fixture *fx, int tag, int batches, int part0) {
        static const char *districts[] = { "centrum", "hisingen", "nordost", "sydvast" };
        batch **v = calloc((size_t)batches, sizeof *v);
        assert_non_null(v);
        for (int k = 0; k < batches; k++) {
                batch *b = v[k] = batch_new();
                for (int i = 0; i < BENCH_PER; i++) {
                        int n = k * BENCH_PER + i;
                        int32_t part = part0 + n % 2;
                        if (n % 97 == 13) {
                                batch_add(fx, b, NULL, part);
                                continue;
                        }
                        /* 1 % resends of a referral of the previous batch */
                        char id[32];
                        snprintf(id, sizeof id, "BENCH-%d-%07d", tag, n % 101 == 7 && n >= BENCH_PER ? n - BENCH_PER : n);
                        batch_add(fx, b,
                                  &(refspec){ .id = id, .person = n % 3000, .district = districts[n % 4],
                                              .acute = n % 11 == 0, .no_phone = n % 7 == 0, .feedback = n % 2 },
                                  part);
                }
        }
        return v;
}

typedef struct bench_run {
        fixture *fx;
        store *st;
        batch **v;
        int batches;
        pthread_barrier_t *barrier;
        double wall, client, server;    /* seconds */
        unsigned decided, dups, dead;
        int error;
} bench_run;

static void *bench_thread(void *arg) {
        bench_run *br = arg;
        int backend = PQbackendPID((PGconn *)store_pg(br->st));
        double server = proc_cpu_s(backend);
        if (br->barrier)
                pthread_barrier_wait(br->barrier);
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        double client = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, t = now_s();
        for (int k = 0; k < br->batches && !br->error; k++) {
                batch *b = br->v[k];
                batch_offsets(br->fx, b);
                int r;
                do
                        r = run_on(br->fx, br->st, b, T0 + H(1));
                while (r == -EAGAIN);
                if (r < 0) {
                        br->error = r;
                        fprintf(stderr, "bench: %s\n", store_last_error(br->st));
                }
                br->decided += b->res.decided;
                br->dups += b->res.duplicates;
                br->dead += b->res.dead_lettered;
        }
        br->wall = now_s() - t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        br->client = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - client;
        br->server = server >= 0 ? proc_cpu_s(backend) - server : -1;
        return NULL;
}

static void bench_free(batch **v, int batches) {
        for (int k = 0; k < batches; k++)
                batch_free(v[k]);
        free(v);
}

static int bench_batches(void) {
        const char *e = getenv("ALLVARS_STORE_BENCH_BATCHES");
        int n = e && *e ? atoi(e) : 20;
        return n > 0 ? n : 1;
}

/* One connection, fsync on. Prints the rate and the CPU per message of each
 * side; asserts that every referral was decided exactly once. */
static void test_throughput(void **state) {
        fixture *fx = *state;
        int batches = bench_batches();
        bench_run br = { .fx = fx, .st = fx->h.st, .batches = batches, .v = bench_build(fx, 0, batches, 0) };
        char lsn[64];
        value(fx, lsn, sizeof lsn, "SELECT pg_current_wal_insert_lsn()");
        bench_thread(&br);
        assert_int_equal(br.error, 0);
        unsigned total = (unsigned)(batches * BENCH_PER);
        /* The cluster's WAL (this test's server is not shared with other tests
         * while it runs, but checkpoints add full-page images): an estimate. */
        long long wal = count(fx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '%s')::bigint", lsn);
        printf("store WAL per message: %.0f bytes\n", (double)wal / total);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), br.decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), br.decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), br.dead);
        assert_int_equal(br.decided + br.dups + br.dead, total);
        assert_true(br.dups > 0);
        long long rows = 0;
        snapshot s = snap(fx);
        for (int i = 0; i < 11; i++)
                rows += s.n[i];
        printf("store throughput, 1 connection: %d batches of %d in %.2f s: %.0f messages/s (%u decided, "
               "%u duplicates, %u dead letters, %lld rows)\n",
               batches, BENCH_PER, br.wall, total / br.wall, br.decided, br.dups, br.dead, rows);
        /* CPU per message, whatever else the machine runs: the daemon's side
         * (decide, encode) and the backend's (the SQL). */
        printf("store cpu per message: client %.1f us, server backend %.1f us\n", br.client * 1e6 / total,
               br.server * 1e6 / total);
        bench_free(br.v, batches);
}

/* Two connections at once on their own partitions (two instances, or two
 * consumers of one), persons shared: what two cores can do. */
static void test_throughput_two_connections(void **state) {
        fixture *fx = *state;
        int batches = bench_batches();
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        bench_run br[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
                br[i] = (bench_run){ .fx = fx, .batches = batches, .barrier = &barrier,
                                     .v = bench_build(fx, i, batches, 2 * i) };
                assert_int_equal(harness_store_connect(&fx->h.db, &br[i].st), 0);
        }
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&th[i], NULL, bench_thread, &br[i]), 0);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        unsigned decided = 0, total = (unsigned)(2 * batches * BENCH_PER);
        double wall = 0, client = 0, server = 0;
        for (int i = 0; i < 2; i++) {
                assert_int_equal(br[i].error, 0);
                decided += br[i].decided;
                wall = br[i].wall > wall ? br[i].wall : wall;
                client += br[i].client;
                server += br[i].server;
                store_free(br[i].st);
                bench_free(br[i].v, batches);
        }
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE action = 'DECIDED'"), decided);
        printf("store throughput, 2 connections: %d batches of %d in %.2f s: %.0f messages/s; cpu per message: "
               "client %.1f us, server %.1f us\n",
               2 * batches, BENCH_PER, wall, total / wall, client * 1e6 / total, server * 1e6 / total);
}

int main(void) {
        if (tz_init() < 0) {
                fprintf(stderr, "tz_init failed\n");
                return 1;
        }
        /* ALLVARS_TEST_FILTER=test_throughput: run only the tests matching a pattern. */
        const char *filter = getenv("ALLVARS_TEST_FILTER");
        if (filter && *filter)
                cmocka_set_test_filter(filter);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_concurrent_same_person, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_person_inserted_meanwhile, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_lanes_take_turns, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_throughput, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_throughput_two_connections, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
