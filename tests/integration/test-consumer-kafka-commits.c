/* Kafka's own committed offsets of the referral consumer (daemon/consumer.c
 * consumer_tell_kafka), the consumer in this process against librdkafka's mock
 * cluster and a real PostgreSQL server. They are for lag tools only: the
 * positions live in the database. They follow the stored positions once a
 * second, not after every transaction (at 500 referrals/s that was some 300
 * OffsetCommit requests a second for the broker), and reach the last stored
 * position when the stream stops and when the consumer leaves.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-consumer-kafka-commits; pg_stop */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "consumer_fixture.h"
#include "consumer_state.h"

/* Each batch stored as soon as it is taken: one transaction per referral here. */
static int setup(void **state) {
        return consumer_fixture_setup(state, "test-consumer-kafka-commits", "batch.max_wait_ms = 0\nkafka.fetch.wait.max.ms = 5\nkafka.fetch.error.backoff.ms = 5\n", 1);
}

static int teardown(void **state) {
        return consumer_fixture_teardown(state);
}

/* A client of the daemon's group that only reads its committed offset. */
static rd_kafka_t *offsets_reader(fixture *fx) {
        char e[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", fx->mock->bootstraps, e, sizeof e), 0);
        assert_int_equal(rd_kafka_conf_set(conf, "group.id", fx->h.cfg->group_id, e, sizeof e), 0);
        assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e), 0);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
        assert_non_null(rk);
        return rk;
}

/* The group's committed offset of partition 0; -1 for none. */
static int64_t committed(rd_kafka_t *rk) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, TOPIC, 0);
        rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, 5000);
        int64_t off = err || l->elems[0].err ? -2 : l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
        assert_true(off != -2);
        return off < 0 ? -1 : off;
}

static long long stored_next(fixture *fx) {
        return harness_count(fx->h.pg, "SELECT coalesce(max(next_offset), -1) FROM allvarsd.consumer_offsets"
                                       " WHERE topic = '" TOPIC "' AND partition = 0");
}

/* One referral every 20 ms for 3 s, each its own transaction (the stored
 * position moves some 150 times): the committed offset, read every step, takes
 * at most a handful of values; then it reaches the stored position. */
static void test_committed_once_a_second(void **state) {
        fixture *fx = *state;
        producer_start(fx, NULL);
        consumer_start(fx);
        rd_kafka_t *reader = offsets_reader(fx);
        int n = 0, values = 0;
        /* In the group and storing first. */
        produce_referral_to(fx, 0, n++, true);
        assert_true(run_until(fx, decided_at_least, n, 60));
        int64_t last = committed(reader);
        usec_t end = clock_monotonic() + 3 * USEC_PER_SEC;
        while (clock_monotonic() < end) {
                produce_referral_to(fx, 0, n++, true);
                usec_t next = clock_monotonic() + 20 * 1000;
                while (clock_monotonic() < next) {
                        consumer_step(fx->c);
                        usleep(2000);
                }
                int64_t now = committed(reader);
                if (now != last) {
                        values++;
                        last = now;
                }
        }
        assert_true(run_until(fx, decided_at_least, n, 60));
        long long transactions = harness_count(fx->h.pg, "SELECT count(DISTINCT xmin::text) FROM allvarsd.referrals") - 1;

        if (transactions < 40 || values < 2 || values > 6)
                fail_msg("%d referrals in %lld transactions; the committed offset took %d values", n, transactions,
                         values);
        /* The stream stopped: the last stored position follows within a second or two. */
        long long want = stored_next(fx);
        assert_int_equal(want, n);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (committed(reader) != want && clock_monotonic() < until) {
                consumer_step(fx->c);
                usleep(20 * 1000);
        }
        assert_int_equal(committed(reader), want);

        /* One more, stored within the second after a commit, and the consumer
         * leaves at once: told on its way out (the revocation). */
        consumer_tell_kafka(fx->c, true);
        produce_referral_to(fx, 0, n++, true);
        assert_true(run_until(fx, decided_at_least, n, 60));
        consumer_stop(fx);
        assert_int_equal(committed(reader), n);
        rd_kafka_destroy(reader);
}

int main(void) {
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_committed_once_a_second, setup, teardown),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
