/* How a batch is split over the lanes (daemon/consumer_batch.c
 * consumer_lanes_for): batch.connections = 2, the referral topic in four
 * partitions, the consumer in this process against librdkafka's mock cluster
 * and a real PostgreSQL server. Which transaction stored a referral is its
 * row's xmin.
 *
 *  - a small batch (fewer than two lanes' worth, LANE_MIN_MESSAGES each) is one
 *    transaction, whatever its partitions: a lane's transaction costs a commit
 *    whatever its size;
 *  - a large one is split by partition modulo the lanes, one transaction each.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-consumer-lanes; pg_stop */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "consumer_fixture.h"
#include "consumer_state.h"

#define PARTITIONS 4

static int setup(void **state) {
        /* One batch for everything produced before the consumer starts: it
         * waits up to 5 s for more, and holds 2,000. */
        return consumer_fixture_setup(state, "test-consumer-lanes",
                                      "batch.connections = 2\nbatch.max_wait_ms = 5000\nbatch.max_messages = 2000\n",
                                      PARTITIONS);
}

static int teardown(void **state) {
        return consumer_fixture_teardown(state);
}

/* n referrals R-0 .. R-(n-1), round robin over the partitions. */
static void produce_round_robin(fixture *fx, int n) {
        producer_start(fx, NULL);
        for (int i = 0; i < n; i++)
                produce_referral_to(fx, i % PARTITIONS, i, false);
        assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
}

static long long transactions(fixture *fx) {
        return harness_count(fx->h.pg, "SELECT count(DISTINCT xmin::text) FROM allvarsd.referrals");
}

static void test_small_batch_one_transaction(void **state) {
        fixture *fx = *state;
        produce_round_robin(fx, 8);
        consumer_start(fx);
        assert_true(run_until(fx, decided_at_least, 8, 60));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(DISTINCT source_partition) FROM allvarsd.referrals"),
                         PARTITIONS);
        assert_int_equal(transactions(fx), 1);
        assert_int_equal(figures(fx).decided, 8);
}

static void test_large_batch_split(void **state) {
        fixture *fx = *state;
        int n = 4 * LANE_MIN_MESSAGES;
        produce_round_robin(fx, n);
        consumer_start(fx);
        assert_true(run_until(fx, decided_at_least, n, 60));
        /* Two transactions, each with the partitions of its lane only. */
        assert_int_equal(transactions(fx), 2);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT xmin::text FROM allvarsd.referrals"
                                                 " GROUP BY 1 HAVING count(DISTINCT source_partition %% 2) > 1) t"),
                         0);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), n);
}

int main(void) {
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_small_batch_one_transaction, setup, teardown),
                cmocka_unit_test_setup_teardown(test_large_batch_split, setup, teardown),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
