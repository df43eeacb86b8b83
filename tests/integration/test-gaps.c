/* No silent gaps in an input partition: the consumer (consumer.c) in this
 * process against librdkafka's mock cluster and a real PostgreSQL server.
 *
 *  - a seek that fails never resumes the partition: it stays paused and the
 *    seek is retried, so a batch dropped after librdkafka fetched past it is
 *    read again (the referrals after it are not lost);
 *  - messages gone from Kafka before they were read (the mock keeps 5 MiB per
 *    partition and drops the oldest beyond that, as retention does) are a gap:
 *    recorded in partition_gaps with an alert in the outbox, counted;
(Offsets Kafka skips itself, a transactional producer's commit markers, are
 * not in the mock's log: tests/e2e/gaps.bats has them on the real broker.)
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-gaps; pg_stop */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "consumer_fixture.h"

static int setup(void **state) {
        return consumer_fixture_setup(state, "test-gaps",
                                      "batch.max_wait_ms = 10\nbatch.connections = 1\n"
                                      "kafka.session.timeout.ms = 6000\nkafka.heartbeat.interval.ms = 500\n",
                                      1);
}

static int teardown(void **state) {
        return consumer_fixture_teardown(state);
}

static void produce(fixture *fx, const void *p, size_t len) {
        produce_to(fx, 0, p, len);
}

static void produce_referral(fixture *fx, int n, bool flush) {
        produce_referral_to(fx, 0, n, flush);
}

static bool stored_next_is(fixture *fx, long n) {
        return harness_count(fx->h.pg, "SELECT coalesce(max(next_offset), -1) FROM allvarsd.consumer_offsets"
                                       " WHERE topic = '" TOPIC "' AND partition = 0") == n;
}

static bool seeks_failed(fixture *fx, long n) {
        return fx->seeks_failed >= n;
}

static rd_kafka_error_t *failing_seek(void *arg, rd_kafka_topic_partition_list_t *l) {
        fixture *fx = arg;
        if (fx->seek_failures > 0) {
                fx->seek_failures--;
                fx->seeks_failed++;
                return rd_kafka_error_new(RD_KAFKA_RESP_ERR__TIMED_OUT, "injected seek failure");
        }
        return rd_kafka_seek_partitions(consumer_kafka(fx->c), l, 10000);
}

static void test_failed_seek_never_resumes(void **state) {
        fixture *fx = *state;
        producer_start(fx, NULL);
        consumer_start(fx);
        for (int i = 0; i < 5; i++)
                produce_referral(fx, i, true);
        assert_true(run_until(fx, decided_at_least, 5, 60));
        assert_true(run_until(fx, stored_next_is, 5, 10));

        /* The next batch fails (its session is gone), after librdkafka fetched
         * it; the seek back to the stored offset fails three times. */
        harness_exec_ok(fx->h.pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
        fx->seek_failures = 3;
        consumer_set_seek_fault(fx->c, failing_seek, fx);
        for (int i = 5; i < 12; i++)
                produce_referral(fx, i, false);
        assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
        assert_true(run_until(fx, seeks_failed, 1, 60));
        produce_referral(fx, 12, true);

        /* Every referral decided once, in order, and no gap. */
        assert_true(run_until(fx, decided_at_least, 13, 30));
        assert_true(run_until(fx, stored_next_is, 13, 10));
        assert_int_equal(fx->seeks_failed, 3);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), 13);
        for (int i = 0; i < 13; i++)
                assert_int_equal(harness_count(fx->h.pg,
                                               "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-%d'", i),
                                 1);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.partition_gaps"), 0);
        assert_int_equal(figures(fx).gaps_lost, 0);
}

static bool gap_recorded(fixture *fx, long n) {
        return harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.partition_gaps") >= n;
}

static void test_data_gone_is_a_gap(void **state) {
        fixture *fx = *state;
        producer_start(fx, NULL);
        consumer_start(fx);
        for (int i = 0; i < 5; i++)
                produce_referral(fx, i, true);
        assert_true(run_until(fx, decided_at_least, 5, 60));
        assert_true(run_until(fx, stored_next_is, 5, 10));
        consumer_stop(fx);

        /* While it is stopped: two referrals, then 7 x 900 kB; the mock keeps
         * 5 MiB per partition, so offsets 0-8 go (the log starts at 9). */
        produce_referral(fx, 5, true);
        produce_referral(fx, 6, true);
        size_t big = 900 * 1000;
        char *junk = malloc(big);
        assert_non_null(junk);
        memset(junk, 0xff, big);
        for (int i = 0; i < 7; i++) {
                produce(fx, junk, big);
                assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
        }
        free(junk);
        produce_referral(fx, 14, true);

        consumer_start(fx);
        assert_true(run_until(fx, gap_recorded, 1, 60));
        assert_true(run_until(fx, stored_next_is, 15, 60));
        /* The gap: from the stored position to the log start, once. */
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.partition_gaps WHERE topic = '" TOPIC
                                                 "' AND partition = 0 AND from_offset = 5 AND to_offset = 9"
                                                 " AND log_start = 9"),
                         1);
        /* The operators' alert, keyed by the partition. */
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT key, ce_type FROM allvarsd.outbox"
                                                 " UNION ALL SELECT key, ce_type FROM allvarsd.outbox_sent) o"
                                                 " WHERE key = '" TOPIC "/0' AND ce_type LIKE '%%DeadlineAlert'"),
                         1);
        consumer_figures f = figures(fx);
        assert_int_equal(f.gaps_lost, 1);
        assert_int_equal(f.offsets_lost, 4);
        assert_int_equal(metrics_counter_value(M_PARTITION_GAPS, MT_REFERRALS), 1);     /* allvarsd_partition_gaps_total */
        /* What came after the gap flowed: junk dead-lettered, the referral decided. */
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-14'"), 1);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.dead_letters"), 5);

        /* A restart from an older position finds the same gap: no second alert. */
        consumer_stop(fx);
        harness_exec_ok(fx->h.pg, "UPDATE allvarsd.consumer_offsets SET next_offset = 5");
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.dead_letters");
        consumer_start(fx);
        assert_true(run_until(fx, stored_next_is, 15, 60));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.partition_gaps"), 1);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT key, ce_type FROM allvarsd.outbox"
                                                 " UNION ALL SELECT key, ce_type FROM allvarsd.outbox_sent) o"
                                                 " WHERE key = '" TOPIC "/0' AND ce_type LIKE '%%DeadlineAlert'"),
                         1);
}

int main(void) {
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_failed_seek_never_resumes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_data_gone_is_a_gap, setup, teardown),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
