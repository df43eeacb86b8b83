/* What the consumer's tests share (test-gaps.c, test-consumer-lanes.c): the
 * consumer (consumer.c) in this process against librdkafka's mock cluster and
 * a real PostgreSQL server (tests/lib/harness.h), a producer of referrals
 * R-<n>, and a loop that steps the consumer until a condition holds.
 * Include after cmocka.h. */
#pragma once

#include <stdbool.h>
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
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        harness_mock *mock;
        clock_source clk;
        consumer *c;
        rd_kafka_t *producer;
        int seek_failures;              /* seeks still to fail (test-gaps.c) */
        int seeks_failed;
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

/* A database, the daemon's configuration with extra_config, a mock cluster
 * with the referral topic in `partitions` partitions. */
static inline int consumer_fixture_setup(void **state, const char *name, const char *extra_config, int partitions) {
        if (harness_store_setup(state, sizeof(fixture), name, extra_config) < 0)
                return -1;
        fixture *fx = *state;
        if (harness_mock_new(1, &fx->mock) < 0)
                return -1;
        harness_mock_topic(fx->mock, TOPIC, partitions);
        harness_mock_topic(fx->mock, "allvarssamtal.outcomes.v1", 1);
        clock_source_init(&fx->clk, NULL);
        metrics_set_topic(MT_REFERRALS, TOPIC);
        return 0;
}

static inline int consumer_fixture_teardown(void **state) {
        fixture *fx = *state;
        consumer_free(fx->c);
        if (fx->producer)
                rd_kafka_destroy(fx->producer);
        harness_mock_free(fx->mock);
        clock_source_done(&fx->clk);
        return harness_store_teardown(state);
}

static inline void consumer_start(fixture *fx) {
        char err[256];
        assert_int_equal(consumer_new(fx->h.cfg, fx->mock->bootstraps, fx->h.st, &fx->clk, &fx->c, err, sizeof err), 0);
}

static inline void consumer_stop(fixture *fx) {
        consumer_drain(fx->c);
        consumer_free(fx->c);
        fx->c = NULL;
}

static inline void producer_start(fixture *fx, const char *transactional_id) {
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

static inline void produce_to(fixture *fx, int partition, const void *p, size_t len) {
        rd_kafka_resp_err_t err = rd_kafka_producev(fx->producer, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(partition),
                                                    RD_KAFKA_V_VALUE((void *)p, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                    RD_KAFKA_V_END);
        assert_int_equal(err, 0);
}

/* A valid referral R-<n> (a child of 12, n < 900 a person of its own, a
 * suspected crime) to a partition, flushed when asked: one message set in the
 * mock's log. */
static inline void produce_referral_to(fixture *fx, int partition, int n, bool flush) {
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        Google__Protobuf__Timestamp reported = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Concern concern = ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        char id[32], pnr[32], nine[32];
        snprintf(id, sizeof id, "R-%d", n);
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
        produce_to(fx, partition, buf, len);
        free(buf);
        if (flush)
                assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
}

static inline consumer_figures figures(fixture *fx) {
        consumer_figures f;
        consumer_figures_read(fx->c, &f);
        return f;
}

/* Run the consumer until `done` holds, at most `seconds`. */
static inline bool run_until(fixture *fx, bool (*done)(fixture *, long), long arg, int seconds) {
        usec_t end = clock_monotonic() + (usec_t)seconds * USEC_PER_SEC;
        while (clock_monotonic() < end) {
                if (done(fx, arg))
                        return true;
                consumer_step(fx->c);
                usleep(5000);
        }
        return done(fx, arg);
}

static inline bool decided_at_least(fixture *fx, long n) {
        return harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions") >= n;
}
