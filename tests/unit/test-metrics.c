/* metrics.c: the registry and its Prometheus text; metrics_kafka.c: librdkafka's
 * statistics; metrics_http.c: the metrics.listen address check. Pure parts only
 * (the served endpoint is tests/integration/metrics.bats). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec.h"
#include "events.h"
#include "metrics.h"
#include "metrics_http.h"
#include "metrics_kafka.h"
#include "rules.h"
#include "sqlstate.h"

static char *render(void) {
        char *s = NULL;
        size_t n = 0;
        assert_int_equal(metrics_render(&s, &n), 0);
        assert_int_equal(strlen(s), n);
        return s;
}

/* The line that starts with prefix followed by a space, or fail. */
static void assert_line(const char *text, const char *line) {
        const char *p = text;
        size_t n = strlen(line);
        while ((p = strstr(p, line))) {
                if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0))
                        return;
                p++;
        }
        fail_msg("no line \"%s\" in:\n%s", line, text);
}

static int setup(void **state) {
        (void)state;
        metrics_set_topic(MT_REFERRALS, "police.referrals.v1");
        metrics_set_topic(MT_OUTCOMES, "allvarssamtal.outcomes.v1");
        metrics_set_topic(MT_SCHEDULING, "allvarssamtal.scheduling.v1");
        metrics_set_topic(MT_FEEDBACK, "police.feedback.v1");
        metrics_set_topic(MT_ALERTS, "allvarssamtal.alerts.v1");
        metrics_set_topic(MT_DEAD_LETTER, "allvarssamtal.deadletter.v1");
        metrics_set_build("1.2.3", 7);
        metrics_reset();
        return 0;
}

static void test_counters_by_label(void **state) {
        (void)state;
        metrics_add(M_REFERRALS_DECIDED, OUTCOME_ELIGIBLE, 5);
        metrics_inc(M_REFERRALS_DECIDED, OUTCOME_MANUAL_REVIEW);
        metrics_inc(M_REFERRALS_DECIDED, 0);            /* not an outcome: ignored */
        metrics_inc(M_REFERRALS_DECIDED, 99);
        metrics_inc(M_DEAD_LETTERS, DLR_UNDECODABLE);
        metrics_add(M_REFERRALS_CONSUMED, 0, 7);
        metrics_set(M_REFERRALS_CONSUMED, 0, 100);       /* a counter is not set */
        metrics_inc(M_EVENTS_PUBLISHED, (unsigned)metrics_topic_of("police.feedback.v1"));
        metrics_inc(M_EVENTS_PUBLISHED, (unsigned)metrics_topic_of("no.such.topic"));  /* -1 */
        char *s = render();
        assert_line(s, "# HELP allvarsd_referrals_decided_total Referrals decided, by outcome (committed).");
        assert_line(s, "# TYPE allvarsd_referrals_decided_total counter");
        assert_line(s, "allvarsd_referrals_decided_total{outcome=\"ELIGIBLE\"} 5");
        assert_line(s, "allvarsd_referrals_decided_total{outcome=\"NOT_ELIGIBLE\"} 0");
        assert_line(s, "allvarsd_referrals_decided_total{outcome=\"MANUAL_REVIEW\"} 1");
        assert_null(strstr(s, "UNSPECIFIED"));
        assert_line(s, "allvarsd_dead_letters_total{reason=\"UNDECODABLE\"} 1");
        assert_line(s, "allvarsd_dead_letters_total{reason=\"ILLEGAL_TRANSITION\"} 0");
        assert_line(s, "allvarsd_referrals_consumed_total 7");
        assert_line(s, "allvarsd_events_published_total{topic=\"police.feedback.v1\"} 1");
        assert_line(s, "allvarsd_events_published_total{topic=\"allvarssamtal.scheduling.v1\"} 0");
        assert_line(s, "allvarsd_build_info{version=\"1.2.3\",schema_version=\"7\"} 1");
        assert_line(s, "allvarsd_partition_gaps_total{topic=\"police.referrals.v1\"} 0");
        free(s);
        assert_int_equal(metrics_counter_value(M_REFERRALS_DECIDED, OUTCOME_ELIGIBLE), 5);
}

static void test_label_values_are_the_codes(void **state) {
        (void)state;
        char *s = render();
        for (int r = DLR_EMPTY; r <= DLR_ILLEGAL_TRANSITION; r++) {
                char line[128];
                snprintf(line, sizeof line, "allvarsd_outcome_events_rejected_total{reason=\"%s\"} 0",
                         dead_letter_reason_code((dead_letter_reason)r));
                assert_line(s, line);
        }
        for (int k = ALERT_AT_RISK; k <= ALERT_PROTECTIVE_ASSESSMENT_OVERDUE; k++) {
                char line[128];
                snprintf(line, sizeof line, "allvarsd_alerts_raised_total{kind=\"%s\"} 0", alert_kind_code((alert_kind)k));
                assert_line(s, line);
        }
        for (int c = SQLSTATE_TRANSIENT; c <= SQLSTATE_OTHER; c++) {
                char line[128];
                snprintf(line, sizeof line, "allvarsd_database_errors_total{class=\"%s\"} 0",
                         sqlstate_class_name((sqlstate_class)c));
                assert_line(s, line);
        }
        free(s);
}

/* The lanes' time is counted in microseconds and shown in seconds, every
 * step named; metrics_lane_time adds the time since its mark and moves it. */
static void test_lane_seconds(void **state) {
        (void)state;
        metrics_add(M_LANE_SECONDS, LS_DEDUP, 1500000);
        metrics_add(M_LANE_SECONDS, LS_RUN_WAIT, 250);
        metrics_add(M_LANE_SECONDS, _LS_MAX, 7);        /* not a step: ignored */
        usec_t mark = clock_monotonic() - 2 * USEC_PER_SEC;
        usec_t before = mark;
        metrics_lane_time(LS_HISTORY, &mark);
        assert_true(mark >= before + 2 * USEC_PER_SEC);
        uint64_t history = metrics_counter_value(M_LANE_SECONDS, LS_HISTORY);
        assert_true(history >= 2 * USEC_PER_SEC && history < 60 * USEC_PER_SEC);
        char *s = render();
        assert_line(s, "# TYPE allvarsd_lane_seconds_total counter");
        assert_line(s, "allvarsd_lane_seconds_total{step=\"dedup\"} 1.5");
        assert_line(s, "allvarsd_lane_seconds_total{step=\"run_wait\"} 0.00025");
        assert_line(s, "allvarsd_lane_seconds_total{step=\"rules\"} 0");
        static const char *const steps[] = { "prepare", "dedup", "history", "rules", "rows",
                                             "write", "turn", "outcomes", "run_wait" };
        for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
                char line[96];
                snprintf(line, sizeof line, "allvarsd_lane_seconds_total{step=\"%s\"}", steps[i]);
                assert_non_null(strstr(s, line));
        }
        free(s);
}

static void test_gauges(void **state) {
        (void)state;
        metrics_set(M_DB_OUTBOX_DEPTH, 0, 42);
        metrics_set(M_DB_OUTBOX_OLDEST_AGE, 0, 1.5);
        metrics_set(M_START_TIME, 0, 1764763200.25);
        metrics_add(M_DB_CASES_OPEN, 0, 3);              /* a gauge is not added to */
        char *s = render();
        assert_line(s, "# TYPE allvarsd_outbox_depth gauge");
        assert_line(s, "allvarsd_outbox_depth 42");
        assert_line(s, "allvarsd_outbox_oldest_unsent_age_seconds 1.5");
        assert_line(s, "allvarsd_start_time_seconds 1764763200.25");
        assert_line(s, "allvarsd_cases_open 0");
        free(s);
}

static void test_histogram_buckets_are_cumulative(void **state) {
        (void)state;
        metrics_observe(H_BATCH_COMMIT, 0.0005);
        metrics_observe(H_BATCH_COMMIT, 0.001);         /* le is inclusive */
        metrics_observe(H_BATCH_COMMIT, 0.02);
        metrics_observe(H_BATCH_COMMIT, 1000);          /* only +Inf */
        char *s = render();
        assert_line(s, "# TYPE allvarsd_batch_commit_duration_seconds histogram");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_bucket{le=\"0.001\"} 2");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_bucket{le=\"0.01\"} 2");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_bucket{le=\"0.025\"} 3");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_bucket{le=\"300\"} 3");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_bucket{le=\"+Inf\"} 4");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_count 4");
        assert_line(s, "allvarsd_batch_commit_duration_seconds_sum 1000.0215");
        assert_line(s, "allvarsd_batch_messages_count 0");
        free(s);
        uint64_t n;
        double sum;
        metrics_histogram_read(H_BATCH_COMMIT, &n, &sum);
        assert_int_equal(n, 4);
}

static void *count_from_thread(void *arg) {
        (void)arg;
        for (int i = 0; i < 100000; i++) {
                metrics_inc(M_REFERRALS_CONSUMED, 0);
                metrics_observe(H_BATCH_MESSAGES, 1);
        }
        return NULL;
}

/* Counting from several threads at once loses nothing (atomics, no lock). */
static void test_concurrent_counting(void **state) {
        (void)state;
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
                assert_int_equal(pthread_create(&t[i], NULL, count_from_thread, NULL), 0);
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(metrics_counter_value(M_REFERRALS_CONSUMED, 0), 400000);
        uint64_t n;
        double sum;
        metrics_histogram_read(H_BATCH_MESSAGES, &n, &sum);
        assert_int_equal(n, 400000);
        assert_true(sum == 400000.0);
}

static void test_partitions(void **state) {
        (void)state;
        metrics_partition_set(MT_REFERRALS, 0, 120, 3);
        metrics_partition_set(MT_OUTCOMES, 2, -1, 0);
        metrics_partition_set(MT_SCHEDULING, 1, 5, 5);  /* not an input topic */
        metrics_partition_set(MT_REFERRALS, METRICS_MAX_PARTITIONS, 1, 1);
        char *s = render();
        assert_line(s, "allvarsd_consumer_lag_messages{topic=\"police.referrals.v1\",partition=\"0\"} 3");
        assert_line(s, "allvarsd_consumer_stored_offset{topic=\"police.referrals.v1\",partition=\"0\"} 120");
        assert_line(s, "allvarsd_consumer_stored_offset{topic=\"allvarssamtal.outcomes.v1\",partition=\"2\"} -1");
        assert_null(strstr(s, "allvarssamtal.scheduling.v1\",partition"));
        free(s);
        metrics_partitions_clear();
        s = render();
        assert_null(strstr(s, "partition=\""));
        assert_line(s, "# TYPE allvarsd_consumer_lag_messages gauge");
        free(s);
}

static void test_database_errors_keep_the_last_message(void **state) {
        (void)state;
        char buf[64];
        metrics_database_error(SQLSTATE_DEPLOYMENT, "batch: permission denied for table cases (SQLSTATE 42501)");
        metrics_database_error(SQLSTATE_DEPLOYMENT, "figures: permission denied (SQLSTATE 42501)");
        metrics_database_error(SQLSTATE_TRANSIENT, NULL);
        metrics_last_database_error(SQLSTATE_DEPLOYMENT, buf, sizeof buf);
        assert_string_equal(buf, "figures: permission denied (SQLSTATE 42501)");
        metrics_last_database_error(SQLSTATE_DATA, buf, sizeof buf);
        assert_string_equal(buf, "");
        assert_int_equal(metrics_counter_value(M_DATABASE_ERRORS, SQLSTATE_DEPLOYMENT), 2);
        assert_int_equal(metrics_counter_value(M_DATABASE_ERRORS, SQLSTATE_TRANSIENT), 1);
}

/* Abridged from a librdkafka 2.0.2 consumer's statistics: a bootstrap entry,
 * a broker, and the group coordinator's logical connection to the same broker. */
static const char STATS[] =
        "{\"name\":\"allvarsd#consumer-1\",\"type\":\"consumer\",\"msg_cnt\":0,\"replyq\":2,"
        "\"brokers\":{"
        "\"127.0.0.1:9092/bootstrap\":{\"name\":\"127.0.0.1:9092/bootstrap\",\"nodeid\":-1,\"source\":\"configured\","
        "\"outbuf_cnt\":0,\"waitresp_cnt\":0,\"rtt\":{\"avg\":0,\"p99\":0}},"
        "\"127.0.0.1:9092/1\":{\"name\":\"127.0.0.1:9092/1\",\"nodeid\":1,\"source\":\"learned\",\"outbuf_cnt\":3,"
        "\"waitresp_cnt\":1,\"tx\":12345678,\"rx\":12345677,\"rtt\":{\"min\":50,\"max\":9000,\"avg\":1250,\"p99\":8191}},"
        "\"GroupCoordinator\":{\"name\":\"GroupCoordinator\",\"nodeid\":1,\"source\":\"logical\",\"outbuf_cnt\":0,"
        "\"waitresp_cnt\":1,\"rtt\":{\"avg\":500000,\"p99\":500000}}},"
        "\"topics\":{\"police.referrals.v1\":{\"partitions\":{\"0\":{\"fetchq_cnt\":7},\"1\":{\"fetchq_cnt\":5},"
        "\"-1\":{\"fetchq_cnt\":0}}}}}";

static void test_kafka_statistics(void **state) {
        (void)state;
        assert_int_equal(metrics_kafka_stats(MC_CONSUMER, STATS, strlen(STATS)), 0);
        char *s = render();
        assert_line(s, "allvarsd_kafka_broker_rtt_avg_seconds{client=\"consumer\",broker=\"1\"} 0.00125");
        assert_line(s, "allvarsd_kafka_broker_rtt_p99_seconds{client=\"consumer\",broker=\"1\"} 0.008191");
        assert_line(s, "allvarsd_kafka_broker_outbuf_requests{client=\"consumer\",broker=\"1\"} 3");
        assert_line(s, "# TYPE allvarsd_kafka_broker_requests_sent_total counter");
        assert_line(s, "allvarsd_kafka_broker_requests_sent_total{client=\"consumer\",broker=\"1\"} 12345678");
        assert_line(s, "allvarsd_kafka_broker_responses_received_total{client=\"consumer\",broker=\"1\"} 12345677");
        assert_line(s, "allvarsd_kafka_fetchq_messages{client=\"consumer\"} 12");
        assert_line(s, "allvarsd_kafka_replyq_ops{client=\"consumer\"} 2");
        assert_null(strstr(s, "client=\"producer\""));
        /* One series per broker: the logical coordinator is not a second broker 1. */
        const char *first = strstr(s, "allvarsd_kafka_broker_rtt_avg_seconds{");
        assert_non_null(first);
        assert_null(strstr(first + 1, "allvarsd_kafka_broker_rtt_avg_seconds{"));
        free(s);

        static const char *const bad[] = {"", "{", "[1,2]", "{\"brokers\":", "nonsense", NULL};
        for (const char *const *b = bad; *b; b++)
                assert_int_equal(metrics_kafka_stats(MC_PRODUCER, *b, strlen(*b)), -EINVAL);
        /* Brokers gone from the statistics are gone from the metrics. */
        static const char none[] = "{\"brokers\":{},\"msg_cnt\":4}";
        assert_int_equal(metrics_kafka_stats(MC_CONSUMER, none, strlen(none)), 0);
        s = render();
        assert_null(strstr(s, "broker=\"1\""));
        assert_line(s, "allvarsd_kafka_queue_messages{client=\"consumer\"} 4");
        free(s);
}

static void test_listen_address(void **state) {
        (void)state;
        struct sockaddr_storage sa;
        char err[200];
        assert_int_equal(metrics_http_parse_listen("127.0.0.1:9187", false, &sa, err, sizeof err), 0);
        assert_int_equal(sa.ss_family, AF_INET);
        assert_int_equal(ntohs(((struct sockaddr_in *)&sa)->sin_port), 9187);
        assert_int_equal(metrics_http_parse_listen("127.1.2.3:0", false, &sa, err, sizeof err), 0);
        assert_int_equal(metrics_http_parse_listen("[::1]:9187", false, &sa, err, sizeof err), 0);
        assert_int_equal(sa.ss_family, AF_INET6);

        assert_int_equal(metrics_http_parse_listen("0.0.0.0:9187", false, &sa, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "not a loopback address"));
        assert_int_equal(metrics_http_parse_listen("0.0.0.0:9187", true, &sa, err, sizeof err), 0);
        assert_int_equal(metrics_http_parse_listen("[::]:9187", false, &sa, err, sizeof err), -EINVAL);
        assert_int_equal(metrics_http_parse_listen("[::]:9187", true, &sa, err, sizeof err), 0);

        static const char *const bad[] = {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:9x",
                                          "localhost:9187", "::1:9187", "[::1]9187", "[::1", "1.2.3:80", NULL};
        for (const char *const *b = bad; *b; b++)
                assert_int_equal(metrics_http_parse_listen(*b, true, &sa, err, sizeof err), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_counters_by_label, setup),
                cmocka_unit_test_setup(test_label_values_are_the_codes, setup),
                cmocka_unit_test_setup(test_gauges, setup),
                cmocka_unit_test_setup(test_lane_seconds, setup),
                cmocka_unit_test_setup(test_histogram_buckets_are_cumulative, setup),
                cmocka_unit_test_setup(test_concurrent_counting, setup),
                cmocka_unit_test_setup(test_partitions, setup),
                cmocka_unit_test_setup(test_database_errors_keep_the_last_message, setup),
                cmocka_unit_test_setup(test_kafka_statistics, setup),
                cmocka_unit_test_setup(test_listen_address, setup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
