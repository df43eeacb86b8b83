/* The outbox relay against a real PostgreSQL (PGHOST/PGPORT/PGUSER, e.g. from
 * tests/lib/pg.sh) and librdkafka's mock cluster: every row published exactly
 * once, in id order per key, as CloudEvents in binary mode, and marked sent
 * (moved from outbox to outbox_sent without its payload; an event id delivered
 * once is not published again when a replay writes it again); one active
 * relay with a standby taking over; no hole for a lower id that
 * commits late; produce errors, a broker outage, a fatal producer error and a
 * lost database connection leave rows unsent until they are delivered.
 *
 * Each test creates its own database with the schema and its own mock cluster. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "events.h"
#include "harness.h"
#include "relay.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "store.h"

#define TOPIC_A "t.feedback"
#define TOPIC_B "t.scheduling"
#define PARTS_A 4
#define PARTS_B 2
#define CE_TIME_TEXT "2025-03-12T10:00:00.25Z"
#define MAX_ROWS 512
#define STEP (20 * 1000)

/* Kafka protocol API keys (not in librdkafka's public headers). */
enum { API_PRODUCE = 0, API_INIT_PRODUCER_ID = 22 };

typedef struct row {
        int64_t id;
        char topic[32];
        char key[64];
        char payload[32];
        char event_id[40];
} row;

typedef struct consumed {
        char *topic;
        int32_t partition;
        int64_t offset;
        char *key;
        char *value;
        char *h_content_type, *h_specversion, *h_id, *h_type, *h_source, *h_time;
} consumed;

typedef struct env {
        harness_mock *mock;
        rd_kafka_mock_cluster_t *mc;
        char bootstrap[256];
        harness_db db;
        char *conninfo;                 /* db.conninfo */
        PGconn *pg;
        config cfg;
        config_kv kafka[4];
        row rows[MAX_ROWS];
        size_t n_rows;
        consumed msgs[MAX_ROWS * 2];
        size_t n_msgs;
} env;

static int setup(void **state) {
        env *e = calloc(1, sizeof *e);
        assert_non_null(e);

        /* A database of its own, with the schema (tests/lib/pg.sh's server). */
        if (!harness_pg_available())
                fail_msg("no test PostgreSQL: run from tests/run, or source tests/lib/pg.sh and pg_start");
        assert_int_equal(harness_schema_db_create(&e->db), 0);
        e->conninfo = e->db.conninfo;
        assert_int_equal(harness_pg_connect(e->db.name, &e->pg), 0);

        /* A mock cluster of three brokers, topics replicated on all three. */
        assert_int_equal(harness_mock_new(3, &e->mock), 0);
        e->mc = e->mock->cluster;
        snprintf(e->bootstrap, sizeof e->bootstrap, "%s", e->mock->bootstraps);
        assert_int_equal(rd_kafka_mock_topic_create(e->mc, TOPIC_A, PARTS_A, 3), 0);
        assert_int_equal(rd_kafka_mock_topic_create(e->mc, TOPIC_B, PARTS_B, 3), 0);

        e->cfg.db_conninfo = e->conninfo;
        e->cfg.relay_batch = 7;         /* small: several passes */
        e->cfg.relay_poll_ms = 50;
        e->cfg.relay_enabled = true;
        e->cfg.event_source = "urn:allvarsd:test";
        /* The daemon's kafka.* keys, consumer keys among them: the relay leaves those out. */
        e->kafka[0] = (config_kv){"group.id", "allvarsd"};
        e->kafka[1] = (config_kv){"session.timeout.ms", "6000"};
        e->kafka[2] = (config_kv){"auto.offset.reset", "earliest"};
        e->kafka[3] = (config_kv){"log_level", "3"};
        e->cfg.kafka = e->kafka;
        e->cfg.n_kafka = 4;
        *state = e;
        return 0;
}

static void msgs_free(env *e) {
        for (size_t i = 0; i < e->n_msgs; i++) {
                consumed *m = &e->msgs[i];
                free(m->topic);
                free(m->key);
                free(m->value);
                free(m->h_content_type);
                free(m->h_specversion);
                free(m->h_id);
                free(m->h_type);
                free(m->h_source);
                free(m->h_time);
        }
        e->n_msgs = 0;
}

static int teardown(void **state) {
        env *e = *state;
        msgs_free(e);
        PQfinish(e->pg);
        harness_mock_free(e->mock);
        harness_db_drop(&e->db);
        free(e);
        return 0;
}

/* Insert one outbox row on connection c (the test's own, or one in a transaction). */
static row *insert_row_on(env *e, PGconn *c, const char *topic, const char *key) {
        assert_true(e->n_rows < MAX_ROWS);
        row *r = &e->rows[e->n_rows];
        snprintf(r->topic, sizeof r->topic, "%s", topic);
        snprintf(r->key, sizeof r->key, "%s", key);
        snprintf(r->payload, sizeof r->payload, "row-%zu", e->n_rows);
        const char *params[3] = {r->payload, topic, key};
        PGresult *res = PQexecParams(c,
                                     "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload) "
                                     "VALUES (md5($1)::uuid, $2, $3, 'se.allvarssamtal.v1.PoliceFeedback', "
                                     "'" CE_TIME_TEXT "', convert_to($1, 'UTF8')) RETURNING id, event_id::text",
                                     3, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                fail_msg("insert: %s", PQresultErrorMessage(res));
        r->id = atoll(PQgetvalue(res, 0, 0));
        snprintf(r->event_id, sizeof r->event_id, "%s", PQgetvalue(res, 0, 1));
        PQclear(res);
        e->n_rows++;
        return r;
}

static row *insert_row(env *e, const char *topic, const char *key) {
        return insert_row_on(e, e->pg, topic, key);
}

/* n rows spread over keys and both topics, interleaved so that ids of a key are not adjacent. */
static void insert_rows(env *e, size_t n) {
        static const char *const keys[] = {
                "11111111-1111-5111-8111-111111111111", "22222222-2222-5222-8222-222222222222",
                "33333333-3333-5333-8333-333333333333", "44444444-4444-5444-8444-444444444444",
                "55555555-5555-5555-8555-555555555555",
        };
        for (size_t i = 0; i < n; i++) {
                size_t k = (e->n_rows + i) % 5;
                insert_row(e, k < 3 ? TOPIC_A : TOPIC_B, keys[k]);
        }
}

/* Every outbox row is unsent: a delivered one moves to outbox_sent. */
static long long unsent(env *e) {
        return harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox");
}

static bool row_sent(env *e, int64_t id) {
        return harness_count(e->pg, "SELECT (SELECT count(*) FROM allvarsd.outbox_sent WHERE id = %" PRId64 ")"
                                    "     - (SELECT count(*) FROM allvarsd.outbox WHERE id = %" PRId64 ")",
                             id, id) == 1;
}

/* Step the relays until every row is sent and nothing is in flight. */
static void run_until_sent(env *e, relay **rs, size_t n, usec_t timeout) {
        usec_t until = clock_monotonic() + timeout;
        while (clock_monotonic() < until) {
                for (size_t i = 0; i < n; i++)
                        if (rs[i])
                                relay_step(rs[i], STEP);
                bool idle = true;
                for (size_t i = 0; i < n; i++) {
                        relay_figures f;
                        if (rs[i]) {
                                relay_figures_read(rs[i], &f);
                                idle = idle && f.in_flight == 0;
                        }
                }
                if (idle && unsent(e) == 0)
                        return;
        }
        fail_msg("rows still unsent after %lld ms: %lld", (long long)(timeout / 1000), unsent(e));
}

static void run_for(relay **rs, size_t n, usec_t duration) {
        usec_t until = clock_monotonic() + duration;
        while (clock_monotonic() < until)
                for (size_t i = 0; i < n; i++)
                        if (rs[i])
                                relay_step(rs[i], STEP);
}

static relay *relay_start(env *e) {
        relay *r = NULL;
        char err[256] = "";
        int k = relay_new(&e->cfg, e->bootstrap, &r, err, sizeof err);
        if (k < 0)
                fail_msg("relay_new: %s", err);
        return r;
}

static bool relay_active(relay *r) {
        relay_figures f;
        relay_figures_read(r, &f);
        return f.active;
}

/* A NUL-terminated copy of len bytes (Kafka values are not strings). */
static char *dupn(const void *p, size_t len) {
        char *s = malloc(len + 1);
        assert_non_null(s);
        if (len)
                memcpy(s, p, len);
        s[len] = 0;
        return s;
}

static char *header(rd_kafka_headers_t *h, const char *name) {
        const void *v = NULL;
        size_t len = 0;
        if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        return dupn(v, v ? len : 0);
}

/* Read both topics from the start until `want` messages came and `quiet` passed
 * without more (so duplicates would show), or the timeout. */
static void consume_all(env *e, size_t want, usec_t quiet, usec_t timeout) {
        msgs_free(e);
        char errstr[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", e->bootstrap, errstr, sizeof errstr), 0);
        assert_int_equal(rd_kafka_conf_set(conf, "group.id", "relay-test-reader", errstr, sizeof errstr), 0);
        assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr), 0);
        rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
        rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
        assert_non_null(c);
        rd_kafka_poll_set_consumer(c);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS_A + PARTS_B);
        for (int p = 0; p < PARTS_A; p++)
                rd_kafka_topic_partition_list_add(l, TOPIC_A, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        for (int p = 0; p < PARTS_B; p++)
                rd_kafka_topic_partition_list_add(l, TOPIC_B, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        assert_int_equal(rd_kafka_assign(c, l), 0);
        rd_kafka_topic_partition_list_destroy(l);

        usec_t start = clock_monotonic(), last = start;
        while (clock_monotonic() < start + timeout) {
                if (e->n_msgs >= want && clock_monotonic() > last + quiet)
                        break;
                rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
                if (!m)
                        continue;
                if (m->err) {
                        rd_kafka_message_destroy(m);
                        continue;
                }
                assert_true(e->n_msgs < sizeof e->msgs / sizeof e->msgs[0]);
                consumed *x = &e->msgs[e->n_msgs++];
                x->topic = strdup(rd_kafka_topic_name(m->rkt));
                x->partition = m->partition;
                x->offset = m->offset;
                x->key = dupn(m->key, m->key ? m->key_len : 0);
                x->value = dupn(m->payload, m->payload ? m->len : 0);
                rd_kafka_headers_t *h = NULL;
                rd_kafka_message_headers(m, &h);
                x->h_content_type = header(h, "content-type");
                x->h_specversion = header(h, "ce_specversion");
                x->h_id = header(h, "ce_id");
                x->h_type = header(h, "ce_type");
                x->h_source = header(h, "ce_source");
                x->h_time = header(h, "ce_time");
                rd_kafka_message_destroy(m);
                last = clock_monotonic();
        }
        rd_kafka_consumer_close(c);
        rd_kafka_destroy(c);
}

static const row *row_by_payload(env *e, const char *payload) {
        for (size_t i = 0; i < e->n_rows; i++)
                if (strcmp(e->rows[i].payload, payload) == 0)
                        return &e->rows[i];
        return NULL;
}

static int cmp_msg(const void *a, const void *b) {
        const consumed *x = a, *y = b;
        int c = strcmp(x->topic, y->topic);
        if (c)
                return c;
        if (x->partition != y->partition)
                return x->partition < y->partition ? -1 : 1;
        return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every row published, with its key and CloudEvents headers; duplicates only
 * when allowed; within a key, the first publication of each row in id order. */
static void check_published(env *e, bool allow_duplicates) {
        size_t *seen = calloc(e->n_rows, sizeof *seen);
        assert_non_null(seen);
        qsort(e->msgs, e->n_msgs, sizeof e->msgs[0], cmp_msg);
        for (size_t i = 0; i < e->n_msgs; i++) {
                consumed *m = &e->msgs[i];
                const row *r = row_by_payload(e, m->value);
                if (!r)
                        fail_msg("unknown message %s on %s", m->value, m->topic);
                seen[r - e->rows]++;
                assert_string_equal(m->topic, r->topic);
                assert_string_equal(m->key, r->key);
                assert_non_null(m->h_content_type);
                assert_string_equal(m->h_content_type, "application/protobuf");
                assert_non_null(m->h_specversion);
                assert_string_equal(m->h_specversion, "1.0");
                assert_non_null(m->h_id);
                assert_string_equal(m->h_id, r->event_id);
                assert_non_null(m->h_type);
                assert_string_equal(m->h_type, "se.allvarssamtal.v1.PoliceFeedback");
                assert_non_null(m->h_source);
                assert_string_equal(m->h_source, "urn:allvarsd:test");
                assert_non_null(m->h_time);
                usec_t t, want;
                assert_int_equal(clock_parse_rfc3339(m->h_time, &t), 0);
                assert_int_equal(clock_parse_rfc3339(CE_TIME_TEXT, &want), 0);
                assert_int_equal(t, want);
        }
        for (size_t i = 0; i < e->n_rows; i++) {
                if (seen[i] == 0)
                        fail_msg("row %" PRId64 " (%s) was not published", e->rows[i].id, e->rows[i].payload);
                if (seen[i] > 1 && !allow_duplicates)
                        fail_msg("row %" PRId64 " was published %zu times", e->rows[i].id, seen[i]);
        }
        /* Order per key: in each partition, the first time each row appears, ids rise per key. */
        for (size_t i = 0; i < e->n_msgs; i++) {
                const row *r = row_by_payload(e, e->msgs[i].value);
                for (size_t j = i + 1; j < e->n_msgs; j++) {
                        if (strcmp(e->msgs[j].key, e->msgs[i].key) != 0 || strcmp(e->msgs[j].topic, e->msgs[i].topic))
                                continue;
                        assert_int_equal(e->msgs[j].partition, e->msgs[i].partition);
                        const row *s = row_by_payload(e, e->msgs[j].value);
                        if (s->id < r->id) {
                                /* Allowed only as the repeat of a row already seen earlier. */
                                bool repeat = false;
                                for (size_t k = 0; k < i; k++)
                                        repeat = repeat || strcmp(e->msgs[k].value, s->payload) == 0;
                                if (!repeat)
                                        fail_msg("key %s: row %" PRId64 " published after row %" PRId64,
                                                 e->msgs[i].key, s->id, r->id);
                        }
                }
        }
        free(seen);
}

/* ---- the tests ---- */

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
                                              "AND a.application_name = 'allvarsd-relay'"),
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

static void test_late_commit_of_lower_id(void **state) {
        env *e = *state;
        PGconn *t1 = PQconnectdb(e->conninfo), *t2 = PQconnectdb(e->conninfo);
        assert_int_equal(PQstatus(t1), CONNECTION_OK);
        assert_int_equal(PQstatus(t2), CONNECTION_OK);
        relay *r = relay_start(e);

        /* t1 takes the lower id and commits last. */
        harness_exec_ok(t1, "BEGIN");
        row *low = insert_row_on(e, t1, TOPIC_A, "77777777-7777-5777-8777-777777777777");
        harness_exec_ok(t2, "BEGIN");
        row *high = insert_row_on(e, t2, TOPIC_B, "88888888-8888-5888-8888-888888888888");
        harness_exec_ok(t2, "COMMIT");
        assert_true(low->id < high->id);
        int64_t low_id = low->id, high_id = high->id;

        usec_t until = clock_monotonic() + 10 * USEC_PER_SEC;
        while (!row_sent(e, high_id) && clock_monotonic() < until)
                relay_step(r, STEP);
        assert_true(row_sent(e, high_id));
        /* More passes past the higher id, then the lower one commits. */
        run_for(&r, 1, 300 * 1000);
        harness_exec_ok(t1, "COMMIT");
        run_until_sent(e, &r, 1, 10 * USEC_PER_SEC);
        assert_true(row_sent(e, low_id));
        relay_free(r, USEC_PER_SEC);
        PQfinish(t1);
        PQfinish(t2);
        consume_all(e, 2, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 2);
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
                                              "WHERE application_name = 'allvarsd-relay'"),
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
static size_t published_with_id(env *e, const char *event_id) {
        size_t n = 0;
        for (size_t i = 0; i < e->n_msgs; i++)
                n += e->msgs[i].h_id && strcmp(e->msgs[i].h_id, event_id) == 0;
        return n;
}

/* A delivered row leaves the outbox; outbox_sent keeps its id, event id, topic,
 * key, type, times and the payload's size, not the payload (the personal data
 * of a scheduling request leaves the database with it). */
static void test_delivered_rows_move_to_outbox_sent(void **state) {
        env *e = *state;
        insert_rows(e, 9);
        harness_exec_ok(e->pg, "CREATE TABLE public.written AS"
                               " SELECT id, event_id, topic, key, ce_type, ce_time, octet_length(payload) AS payload_bytes,"
                               "        created_at FROM allvarsd.outbox");
        relay *r = relay_start(e);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        relay_free(r, USEC_PER_SEC);

        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent"), 9);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM public.written w JOIN allvarsd.outbox_sent s"
                                              " USING (id, event_id, topic, key, ce_type, ce_time, payload_bytes,"
                                              "        created_at)"
                                              " WHERE s.sent_at >= w.created_at AND s.sent_at <= now()"),
                         9);
        for (size_t i = 0; i < e->n_rows; i++)
                assert_true(row_sent(e, e->rows[i].id));
        /* Nowhere to keep a payload: it went with the outbox row. */
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM information_schema.columns"
                                              " WHERE table_schema = 'allvarsd' AND table_name = 'outbox_sent'"
                                              "   AND column_name = 'payload'"),
                         0);
        consume_all(e, 9, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 9);
        check_published(e, false);
}

/* One undecodable outcome message at `offset` of partition 0, stored as the
 * consumer stores it: a dead letter and its DeadLetter event, whose id is named
 * by the topic, partition and offset (events.h), so a re-read offset makes it
 * again. (test-store covers the same on the referrals topic.) */
static int store_dead_letter(store *st, const config *cfg, int64_t offset, int64_t expected_next,
                             store_batch_result *res) {
        static const char junk[] = "\xff\xfe not a CaseOutcome";
        codec_error err = {.reason = DLR_UNDECODABLE};
        snprintf(err.detail, sizeof err.detail, "not a valid CaseOutcome");
        store_message m = {.topic = "t.outcomes", .partition = 0, .offset = offset,
                           .payload = junk, .len = sizeof junk - 1, .error = &err};
        store_offset o = {.topic = "t.outcomes", .partition = 0, .expected_next = expected_next,
                          .new_next = offset + 1};
        return outcome_batch_store(st, cfg, "relay-test", clock_realtime(), &m, 1, &o, 1, res);
}

/* A replay after the event was delivered (offsets reset by hand, the deadline
 * watch raising again): the store skips an id that outbox_sent holds, so the
 * event is published once, not once per replay. */
static void test_delivered_event_is_not_published_again(void **state) {
        env *e = *state;
        char pepper[64];
        config *cfg = NULL;
        store *st = NULL;
        assert_int_equal(harness_pepper_file_new(pepper, sizeof pepper), 0);
        /* Dead letters to TOPIC_A, which the test reads. */
        assert_int_equal(harness_config_new("test-relay", e->conninfo, pepper, "topics.dead_letter = " TOPIC_A "\n",
                                            &cfg), 0);
        assert_int_equal(harness_store_connect(&e->db, &st), 0);

        store_batch_result res;
        if (store_dead_letter(st, cfg, 5, -1, &res) < 0)
                fail_msg("outcome_batch_store: %s", store_last_error(st));
        assert_int_equal(res.dead_lettered, 1);
        assert_int_equal(res.events, 1);
        char event_id[40], id[24];
        harness_value(e->pg, event_id, sizeof event_id, "SELECT event_id FROM allvarsd.outbox WHERE ce_type = '%s'",
                      CE_TYPE_DEAD_LETTER);
        harness_value(e->pg, id, sizeof id, "SELECT id FROM allvarsd.outbox WHERE event_id = '%s'", event_id);

        relay *r = relay_start(e);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE id = %s"
                                              " AND event_id = '%s' AND topic = '%s' AND ce_type = '%s'",
                                       id, event_id, TOPIC_A, CE_TYPE_DEAD_LETTER),
                         1);

        /* The same offset read again: nothing new in the outbox, so nothing to publish. */
        if (store_dead_letter(st, cfg, 5, 6, &res) < 0)
                fail_msg("outcome_batch_store (replay): %s", store_last_error(st));
        assert_int_equal(res.dead_lettered, 1);
        assert_int_equal(res.events, 0);
        assert_int_equal(unsent(e), 0);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.dead_letters"), 1);
        run_for(&r, 1, 500 * 1000);
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 1);
        relay_free(r, USEC_PER_SEC);

        consume_all(e, 1, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 1);
        assert_int_equal(published_with_id(e, event_id), 1);
        assert_string_equal(e->msgs[0].h_type, CE_TYPE_DEAD_LETTER);
        store_free(st);
        config_free(cfg);
        unlink(pepper);
}

/* The window schemas/004_outbox_sent.sql leaves: an event id already in
 * outbox_sent back in the outbox. It is published again (at least once, the
 * same ce_id), its row leaves the outbox, outbox_sent keeps the first record,
 * and the relay goes on with the rows behind it. */
static void test_event_id_already_sent_does_not_stall(void **state) {
        env *e = *state;
        row *first = insert_row(e, TOPIC_A, "99999999-9999-5999-8999-999999999999");
        char event_id[40];
        snprintf(event_id, sizeof event_id, "%s", first->event_id);
        relay *r = relay_start(e);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);

        /* Inserted as the writers' NOT EXISTS would not: bypassing it. */
        const char *params[1] = {first->payload};
        harness_exec_params_ok(e->pg,
                               "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
                               " SELECT event_id, topic, key, ce_type, ce_time, convert_to($1, 'UTF8')"
                               "   FROM allvarsd.outbox_sent WHERE id = (SELECT max(id) FROM allvarsd.outbox_sent)",
                               1, params, NULL, NULL);
        int64_t again = harness_count(e->pg, "SELECT id FROM allvarsd.outbox");
        insert_rows(e, 4);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        relay_figures f;
        relay_figures_read(r, &f);
        assert_int_equal(f.published, 6);
        relay_free(r, USEC_PER_SEC);

        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE event_id = '%s'",
                                       event_id),
                         1);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE id = %" PRId64,
                                       first->id),
                         1);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE id = %" PRId64, again),
                         0);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent"), 5);
        consume_all(e, 6, 500 * 1000, 20 * USEC_PER_SEC);
        assert_int_equal(e->n_msgs, 6);
        assert_int_equal(published_with_id(e, event_id), 2);
        check_published(e, true);
}

/* An event the brokers refuse for good (larger than they accept: here the
 * producer's own message.max.bytes, and a broker's MSG_SIZE_TOO_LARGE in a
 * delivery report) is dead-lettered with an alert of its case, and the case's
 * later events go on: it is never retried forever, holding them back. */
static void test_refused_event_is_dead_lettered(void **state) {
        env *e = *state;
        e->cfg.topic_alerts = TOPIC_B;
        e->cfg.topic_dead_letter = TOPIC_B;
        const char *k1 = "66666666-6666-5666-8666-666666666666", *k2 = "77777777-7777-5777-8777-777777777777";
        relay *r = relay_start(e);
        usec_t until = clock_monotonic() + 5 * USEC_PER_SEC;
        while (!relay_active(r) && clock_monotonic() < until)
                relay_step(r, STEP);
        row *before = insert_row(e, TOPIC_A, k1);
        row *big = insert_row(e, TOPIC_A, k1);
        harness_exec_ok(e->pg, "UPDATE allvarsd.outbox SET payload = decode(repeat('ab', 1100000), 'hex')"
                               " WHERE id = (SELECT max(id) FROM allvarsd.outbox)");
        row *after = insert_row(e, TOPIC_A, k1);
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        assert_true(row_sent(e, before->id));
        assert_true(row_sent(e, after->id));
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_undeliverable WHERE id = %" PRId64
                                              " AND error = 'MSG_SIZE_TOO_LARGE' AND payload_bytes = 1100000",
                                       big->id),
                         1);

        /* Refused by a broker, in the delivery report. */
        rd_kafka_mock_push_request_errors(e->mc, API_PRODUCE, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
        row *refused = insert_row(e, TOPIC_A, k2);
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        row *later = insert_row(e, TOPIC_A, k2);
        run_until_sent(e, &r, 1, 30 * USEC_PER_SEC);
        assert_true(row_sent(e, later->id));
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_undeliverable WHERE id = %" PRId64,
                                       refused->id),
                         1);
        /* In their places: a DeadLetter and an alert of each case, delivered. */
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE ce_type ="
                                              " 'se.allvarssamtal.v1.DeadLetter' AND key = '" TOPIC_A "/-1'"),
                         2);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent WHERE ce_type ="
                                              " 'se.allvarssamtal.v1.DeadlineAlert' AND key IN ('%s', '%s')",
                                       k1, k2),
                         2);
        relay_free(r, USEC_PER_SEC);
}

static void test_bad_kafka_setting_is_reported(void **state) {
        env *e = *state;
        config_kv bad[2] = {{"group.id", "allvarsd"}, {"no.such.property", "1"}};
        e->cfg.kafka = bad;
        e->cfg.n_kafka = 2;
        relay *r = NULL;
        char err[256] = "";
        assert_true(relay_new(&e->cfg, e->bootstrap, &r, err, sizeof err) < 0);
        assert_null(r);
        assert_non_null(strstr(err, "no.such.property"));
        relay_free(NULL, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_publishes_each_row_once_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_standby_takes_over, setup, teardown),
                cmocka_unit_test_setup_teardown(test_late_commit_of_lower_id, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retriable_produce_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_delivery_stays_unsent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broker_outage, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fatal_error_recreates_producer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_database_connection_lost, setup, teardown),
                cmocka_unit_test_setup_teardown(test_database_down_at_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delivered_rows_move_to_outbox_sent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delivered_event_is_not_published_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_event_id_already_sent_does_not_stall, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_kafka_setting_is_reported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_event_is_dead_lettered, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
