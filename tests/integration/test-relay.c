/* The outbox relay against a real PostgreSQL (PGHOST/PGPORT/PGUSER, e.g. from
 * tests/lib/pg.sh) and librdkafka's mock cluster: every row published exactly
 * once, in id order per key, as CloudEvents in binary mode; one active relay
 * with a standby taking over; no hole for a lower id that commits late;
 * produce errors, a broker outage, a fatal producer error and a lost database
 * connection leave rows unsent until they are delivered. What becomes of a
 * delivered or refused row: test-relay-outbox.c.
 *
 * Each test creates its own database with the schema and its own mock cluster. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay_fixture.h"


static void test_publishes_each_row_once_in_order(void **state) {
        env *e = *state;
        insert_rows(e, 40);
        relay *r = relay_start(e);
        assert_true(relay_fd(r) >= 0 || relay_fd(r) == -1);
        assert_true(relay_producer_fd(r) >= 0);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        assert_true(relay_active(r));
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 40);
        assert_int_equal(f.failed, 0);
        assert_int_equal(f.in_flight, 0);
        consume_all(e, 40, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 40);
        check_published(e, false);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent"), 40);
        assert_int_equal(unsent(e), 0);

        /* Nothing is published twice by later passes. */
        run_for(&r, 1, 300 * 1000);
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 40);

        /* NOTIFY wakes it: with the timer at a minute, a row with NOTIFY goes out at
         * once, a row without waits. */
        e->cfg.relay_poll_ms = 60000;
        relay_reconfigure(r, &e->cfg);
        run_for(&r, 1, 100 * 1000);     /* the pass reconfigure asked for */
        row *quiet = insert_row(e, TOPIC_A, "66666666-6666-5666-8666-666666666666");
        run_for(&r, 1, 700 * 1000);
        assert_false(row_sent(e, quiet->id));
        harness_exec_ok(e->pg, "NOTIFY " RELAY_NOTIFY_CHANNEL);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!row_sent(e, quiet->id) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_true(row_sent(e, quiet->id));
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 41, 300 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 41);
        check_published(e, false);
}

static void test_standby_takes_over(void **state) {
        env *e = *state;
        e->cfg.relay_batch = 100;
        relay *a = relay_start(e);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!relay_active(a) && clock_monotonic() < until)
                relay_step(a, STEP);
        assert_true(relay_active(a));

        relay *b = relay_start(e);
        insert_rows(e, 10);
        relay *both[2] = {a, b};
        run_until_sent(e, both, 2, 20 * USEC_PER_SEC);
        run_for(both, 2, 300 * 1000);
        relay_figures fa, fb;
        relay_figures_read(a, &fa);
        relay_figures_read(b, &fb);
        assert_true(fa.active);
        assert_false(fb.active);
        assert_int_equal(fa.published, 10);
        assert_int_equal(fb.published, 0);
        /* The lock is held by a's session, not b's. */
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                                              "WHERE l.locktype = 'advisory' AND l.granted "
                                              "AND a.application_name = 'allvarsd-relay' AND a.datname = current_database()"),
                         1);

        /* More rows while a still holds the lock; b waits. */
        insert_rows(e, 10);
        run_for(&b, 1, 500 * 1000);
        relay_figures_read(b, &fb);
        assert_false(fb.active);
        assert_int_equal(unsent(e), 10);

        /* a stops: b takes the lock and publishes the rest. */
        relay_free(a, USEC_PER_SEC);
        run_until_sent(e, &b, 1, 20 * USEC_PER_SEC);
        relay_figures_read(b, &fb);
        assert_true(fb.active);
        assert_int_equal(fb.published, 10);
        relay_free(b, USEC_PER_SEC);
        consume_all(e, 20, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 20);
        check_published(e, false);
}

/* t1 takes the lower id and commits last, after the relay published the
 * higher one and went on past it. Returns the ids. */
static void lower_id_pending(env *e, relay *r, PGconn *t1, PGconn *t2, int64_t *low_id, int64_t *high_id) {
        harness_exec_ok(t1, "BEGIN");
        row *low = insert_row_on(e, t1, TOPIC_A, "77777777-7777-5777-8777-777777777777");
        harness_exec_ok(t2, "BEGIN");
        row *high = insert_row_on(e, t2, TOPIC_B, "88888888-8888-5888-8888-888888888888");
        harness_exec_ok(t2, "COMMIT");
        assert_true(low->id < high->id);
        *low_id = low->id;
        *high_id = high->id;
        usec_t until = clock_monotonic() + 10 * USEC_PER_SEC;
        while (!row_sent(e, *high_id) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_true(row_sent(e, *high_id));
}

static uint64_t sweeps_of(relay *r) {
        relay_figures f;
        relay_figures_read(r, &f);
        return f.sweeps;
}

/* A lower id committed `wait` after the relay published a higher one and went
 * on past it; it is published. Returns the sweeps run while it waited and
 * those run from its commit until it was published. */
static void lower_id_committed_after(env *e, usec_t wait, uint64_t *waiting, uint64_t *finding) {
        PGconn *t1 = PQconnectdb(e->conninfo), *t2 = PQconnectdb(e->conninfo);
        assert_int_equal(PQstatus(t1), CONNECTION_OK);
        assert_int_equal(PQstatus(t2), CONNECTION_OK);
        relay *r = relay_start(e);
        int64_t low_id, high_id;
        lower_id_pending(e, r, t1, t2, &low_id, &high_id);
        uint64_t before = sweeps_of(r);
        run_for(&r, 1, wait);
        *waiting = sweeps_of(r) - before;
        harness_exec_ok(t1, "COMMIT");
        run_until_sent(e, &r, 1, 10 * USEC_PER_SEC);
        assert_true(row_sent(e, low_id));
        *finding = sweeps_of(r) - before - *waiting;
        relay_free(r, USEC_PER_SEC);
        PQfinish(t1);
        PQfinish(t2);
        consume_all(e, 2, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 2);
        check_published(e, false);
}

/* The lower id commits after its gap expired (twice relay.poll_ms, 400 ms
 * here) but while it is a late id (20 relay.poll_ms, 4 s): the look-up of the
 * late ids, once every relay.poll_ms, finds it, and no sweep runs meanwhile
 * (daemon/relay_read.c). The next sweep is due 4 s after the activation's: the
 * activation and the higher id's publication take about a second here, so the
 * commit 1 s later and its publication leave it room. */
static void test_late_commit_of_lower_id(void **state) {
        env *e = *state;
        e->cfg.relay_poll_ms = 200;
        uint64_t waiting, finding;
        lower_id_committed_after(e, 1000 * 1000, &waiting, &finding);
        assert_int_equal(finding, 0);
}

/* The lower id commits after it stopped being a late id (20 relay.poll_ms,
 * 1 s here): a sweep finds it. Sweeps run once every 20 relay.poll_ms, not
 * at every one: the head of the outbox they walk is what the fast pass avoids. */
static void test_late_commit_found_by_sweep(void **state) {
        env *e = *state;
        uint64_t waiting, finding;
        lower_id_committed_after(e, 1500 * 1000, &waiting, &finding);
        assert_true(waiting >= 1 && waiting <= 3); /* 30 polls of 50 ms */
        assert_true(finding >= 1);
}

/* The fast pass (daemon/relay_read.c): with no sweep due for a minute, each
 * pass reads only above the highest id it produced, and a lower id that
 * commits late is found because the pass that went past it noted it as a gap. */
static void test_late_commit_found_as_gap(void **state) {
        env *e = *state;
        e->cfg.relay_poll_ms = 60000;
        PGconn *t1 = PQconnectdb(e->conninfo), *t2 = PQconnectdb(e->conninfo);
        assert_int_equal(PQstatus(t1), CONNECTION_OK);
        assert_int_equal(PQstatus(t2), CONNECTION_OK);
        relay *r = relay_start(e);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!relay_active(r) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_true(relay_active(r));
        run_for(&r, 1, 200 * 1000); /* the sweep of the activation, over an empty outbox */

        insert_rows(e, 10);
        harness_exec_ok(e->pg, "SELECT pg_notify('" RELAY_NOTIFY_CHANNEL "', '')");
        run_until_sent(e, &r, 1, 10 * USEC_PER_SEC);
        harness_exec_ok(t1, "BEGIN");
        row *low = insert_row_on(e, t1, TOPIC_A, "77777777-7777-5777-8777-777777777777");
        harness_exec_ok(t2, "BEGIN");
        row *high = insert_row_on(e, t2, TOPIC_B, "88888888-8888-5888-8888-888888888888");
        harness_exec_ok(t2, "COMMIT");
        harness_exec_ok(e->pg, "SELECT pg_notify('" RELAY_NOTIFY_CHANNEL "', '')");
        int64_t low_id = low->id, high_id = high->id;
        assert_true(low_id < high_id);
        until = clock_monotonic() + 10 * USEC_PER_SEC;
        while (!row_sent(e, high_id) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_true(row_sent(e, high_id));
        assert_false(row_sent(e, low_id));

        harness_exec_ok(t1, "COMMIT");
        harness_exec_ok(e->pg, "SELECT pg_notify('" RELAY_NOTIFY_CHANNEL "', '')");
        run_until_sent(e, &r, 1, 10 * USEC_PER_SEC);
        assert_true(row_sent(e, low_id));
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 12);
        assert_int_equal(f.sweeps, 1); /* every pass after the first was a fast one */
        relay_free(r, USEC_PER_SEC);
        PQfinish(t1);
        PQfinish(t2);
        consume_all(e, 12, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 12);
        check_published(e, false);
}

static void test_retriable_produce_errors(void **state) {
        env *e = *state;
        relay *r = relay_start(e);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!relay_active(r) && clock_monotonic() < until)
                relay_step(r, STEP);
        rd_kafka_mock_push_request_errors(e->mc, API_PRODUCE, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                          RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                          RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                          RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                          RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                          RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
        insert_rows(e, 30);
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 30);
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 30, 500 * 1000, 20 * USEC_PER_SEC);
        /* The idempotent producer retried without duplicates. */
        assert_int_equal(e->n_msgs, 30);
        check_published(e, false);
}

static void test_failed_delivery_stays_unsent(void **state) {
        env *e = *state;
        /* All 20 rows in one pass, so that the three refused produce requests are
         * the first round's (one per broker) and no delivery succeeds before the
         * first failure is seen: a success ends the refusal and empties STATUS=. */
        e->cfg.relay_batch = 20;
        relay *r = relay_start(e);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!relay_active(r) && clock_monotonic() < until)
                relay_step(r, STEP);
        /* Permanent errors: the delivery reports fail, the rows must wait and be retried. */
        rd_kafka_mock_push_request_errors(e->mc, API_PRODUCE, 3, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                          RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                          RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
        insert_rows(e, 20);
        relay_figures f = {0};
        until = clock_monotonic() + 10 * USEC_PER_SEC;
        while (f.failed == 0 && clock_monotonic() < until) {
                relay_step(r, STEP);
                relay_figures_read(r, &f);
        }
        assert_true(f.failed > 0);
        assert_true(unsent(e) > 0);
        assert_true(f.last_error[0] != '\0');
        /* Held, and said so for STATUS= until a delivery succeeds. */
        assert_non_null(strstr(f.refusing, "TOPIC_AUTHORIZATION_FAILED"));
        run_until_sent(e, &r, 1, 60 * USEC_PER_SEC);
        relay_figures_read(r, &f);
        assert_true(f.published >= 20);
        assert_string_equal(f.refusing, "");
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 20, 500 * 1000, 20 * USEC_PER_SEC);
        check_published(e, true);
}

static void test_broker_outage(void **state) {
        env *e = *state;
        relay *r = relay_start(e);
        insert_rows(e, 5);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        for (int b = 1; b <= 3; b++)
                rd_kafka_mock_broker_set_down(e->mc, b);
        insert_rows(e, 15);
        run_for(&r, 1, 2 * USEC_PER_SEC);
        /* Handed to the producer, not delivered: not sent. */
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(unsent(e), 15);
        assert_true(f.in_flight > 0);
        assert_int_equal(f.published, 5);
        for (int b = 1; b <= 3; b++)
                rd_kafka_mock_broker_set_up(e->mc, b);
        run_until_sent(e, &r, 1, 60 * USEC_PER_SEC);
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 20, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 20);
        check_published(e, false);
}

static void test_fatal_error_recreates_producer(void **state) {
        env *e = *state;
        /* The first producer id request fails fatally for an idempotent producer. */
        rd_kafka_mock_push_request_errors(e->mc, API_INIT_PRODUCER_ID, 1,
                                          RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED);
        relay *r = relay_start(e);
        insert_rows(e, 12);
        run_until_sent(e, &r, 1, 60 * USEC_PER_SEC);
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 12);
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 12, 500 * 1000, 20 * USEC_PER_SEC);
        check_published(e, true);
}

static void test_database_connection_lost(void **state) {
        env *e = *state;
        relay *r = relay_start(e);
        insert_rows(e, 5);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        assert_true(relay_active(r));
        /* The server ends the relay's session: the lock goes with it. */
        assert_int_equal(harness_count(e->pg, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                              "WHERE application_name = 'allvarsd-relay' AND datname = current_database()"),
                         1);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (relay_active(r) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_false(relay_active(r));
        insert_rows(e, 5);
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        assert_true(relay_active(r));
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 10, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 10);
        check_published(e, false);
}

static void test_database_down_at_start(void **state) {
        env *e = *state;
        insert_rows(e, 6);
        /* Nothing listens on port 1: the relay starts anyway and stands by. */
        e->cfg.db_conninfo = "host=127.0.0.1 port=1 dbname=nothing";
        relay *r = relay_start(e);
        for (int i = 0; i < 5; i++) {
                usec_t t0 = clock_monotonic();
                int k = relay_step(r, 50 * 1000);
                usec_t took = clock_monotonic() - t0;
                assert_true(k < 0);
                /* Never much longer than max_block. */
                assert_true(took < 400 * 1000);
        }
        relay_figures f;
        relay_figures_read(r, &f);
        assert_false(f.active);
        assert_int_equal(f.published, 0);
        assert_non_null(strstr(f.last_error, "PostgreSQL"));
        assert_int_equal(unsent(e), 6);
        /* The database comes back (here: the right address): the relay connects, takes the lock, publishes. */
        e->cfg.db_conninfo = e->conninfo;
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        assert_true(relay_active(r));
        /* With nothing to do, a step returns within its bound. */
        usec_t t0 = clock_monotonic();
        relay_step(r, 0);
        assert_true(clock_monotonic() - t0 < 100 * 1000);
        t0 = clock_monotonic();
        relay_step(r, 30 * 1000);
        assert_true(clock_monotonic() - t0 < 300 * 1000);
        relay_free(r, USEC_PER_SEC);
        consume_all(e, 6, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 6);
        check_published(e, false);
}

/* Messages consumed with this ce_id. */

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_publishes_each_row_once_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_standby_takes_over, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_commit_of_lower_id, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_commit_found_as_gap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_commit_found_by_sweep, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retriable_produce_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_delivery_stays_unsent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broker_outage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fatal_error_recreates_producer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_database_connection_lost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_database_down_at_start, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
