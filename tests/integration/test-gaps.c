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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "consumer.h"
#include "harness.h"
#include "log.h"
#include "metrics.h"

#define TOPIC "police.referrals.v1"
#define T0 ((usec_t)1741593600 * USEC_PER_SEC) /* 2025-03-10T08:00:00Z */

typedef struct fixture {
        harness_store_env h;
        harness_mock *mock;
        clock_source clk;
        consumer *c;
        rd_kafka_t *producer;
        int seek_failures;              /* seeks still to fail */
        int seeks_failed;
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

static int setup(void **state) {
        if (harness_store_setup(state, sizeof(fixture), "test-gaps",
                                "batch.max_wait_ms = 10\nbatch.connections = 1\n"
                                "kafka.session.timeout.ms = 6000\nkafka.heartbeat.interval.ms = 500\n") < 0)
                return -1;
        fixture *fx = *state;
        if (harness_mock_new(1, &fx->mock) < 0)
                return -1;
        harness_mock_topic(fx->mock, TOPIC, 1);
        harness_mock_topic(fx->mock, "allvarssamtal.outcomes.v1", 1);
        clock_source_init(&fx->clk, NULL);
        metrics_set_topic(MT_REFERRALS, TOPIC);
        return 0;
}

static int teardown(void **state) {
        fixture *fx = *state;
        consumer_free(fx->c);
        if (fx->producer)
                rd_kafka_destroy(fx->producer);
        harness_mock_free(fx->mock);
        clock_source_done(&fx->clk);
        return harness_store_teardown(state);
}

static void consumer_start(fixture *fx) {
        char err[256];
        assert_int_equal(consumer_new(fx->h.cfg, fx->mock->bootstraps, fx->h.st, &fx->clk, &fx->c, err, sizeof err), 0);
}

static void consumer_stop(fixture *fx) {
        consumer_drain(fx->c);
        consumer_free(fx->c);
        fx->c = NULL;
}

static void producer_start(fixture *fx, const char *transactional_id) {
        char e[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", fx->mock->bootstraps, e, sizeof e), 0);
        assert_int_equal(rd_kafka_conf_set(conf, "linger.ms", "0", e, sizeof e), 0);
        if (transactional_id)
                assert_int_equal(rd_kafka_conf_set(conf, "transactional.id", transactional_id, e, sizeof e), 0);
        fx->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        assert_non_null(fx->producer);
        if (transactional_id)
                assert_null(rd_kafka_init_transactions(fx->producer, 10000));
}

static void produce(fixture *fx, const void *p, size_t len) {
        rd_kafka_resp_err_t err = rd_kafka_producev(fx->producer, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
                                                    RD_KAFKA_V_VALUE((void *)p, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                    RD_KAFKA_V_END);
        assert_int_equal(err, 0);
}

/* A valid referral GAP-<n> (a child of 12, a suspected crime), produced and
 * flushed on its own: one message set in the mock's log. */
static void produce_referral(fixture *fx, int n, bool flush) {
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        Google__Protobuf__Timestamp reported = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Concern concern = ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        char id[32], pnr[32], nine[32];
        snprintf(id, sizeof id, "GAP-%d", n);
        snprintf(nine, sizeof nine, "120505%03d", 100 + n);
        snprintf(pnr, sizeof pnr, "20120505-%03d%d", 100 + n, harness_luhn_digit(nine));
        r.referral_id = id;
        r.police_case_number = "5000-K1-25";
        codec_timestamp_set(&reported, T0);
        r.reported_at = &reported;
        r.district = "hisingen";
        subject.identity_number = pnr;
        subject.given_name = "Testbarn";
        subject.family_name = "Exempel";
        r.subject = &subject;
        r.concerns = &concern;
        r.n_concerns = 1;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&r.base, &buf);
        assert_non_null(buf);
        produce(fx, buf, len);
        free(buf);
        if (flush)
                assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
}

static consumer_figures figures(fixture *fx) {
        consumer_figures f;
        consumer_figures_read(fx->c, &f);
        return f;
}

/* Run the consumer until `done` holds, at most `seconds`. */
static bool run_until(fixture *fx, bool (*done)(fixture *, long), long arg, int seconds) {
        usec_t end = clock_monotonic() + (usec_t)seconds * USEC_PER_SEC;
        while (clock_monotonic() < end) {
                if (done(fx, arg))
                        return true;
                consumer_step(fx->c);
                usleep(5000);
        }
        return done(fx, arg);
}

static bool decided_at_least(fixture *fx, long n) {
        return harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions") >= n;
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
                                               "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'GAP-%d'", i),
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
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'GAP-14'"), 1);
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
