/* What the relay's tests share (test-relay.c, test-relay-outbox.c): a
 * database with the schema and a mock cluster per test (setup, teardown),
 * outbox rows to insert, relays to run until the rows are sent, and a
 * consumer that reads the topics back and checks what was published: each
 * row once, in id order per key, as a CloudEvent in binary mode. Include
 * after cmocka.h. */
#pragma once

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

static inline int setup(void **state) {
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

static inline void msgs_free(env *e) {
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

static inline int teardown(void **state) {
        env *e = *state;
        msgs_free(e);
        PQfinish(e->pg);
        harness_mock_free(e->mock);
        harness_db_drop(&e->db);
        free(e);
        return 0;
}

/* Insert one outbox row on connection c (the test's own, or one in a transaction). */
static inline row *insert_row_on(env *e, PGconn *c, const char *topic, const char *key) {
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

static inline row *insert_row(env *e, const char *topic, const char *key) {
        return insert_row_on(e, e->pg, topic, key);
}

/* n rows spread over keys and both topics, interleaved so that ids of a key are not adjacent. */
static inline void insert_rows(env *e, size_t n) {
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

static inline bool row_sent(env *e, int64_t id) {
        return harness_count(e->pg, "SELECT (SELECT count(*) FROM allvarsd.outbox_sent WHERE id = %" PRId64 ")"
                                    "     - (SELECT count(*) FROM allvarsd.outbox WHERE id = %" PRId64 ")",
                             id, id) == 1;
}

/* Step the relays until every row is sent and nothing is in flight. */
static inline void run_until_sent(env *e, relay **rs, size_t n, usec_t timeout) {
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

static inline void run_for(relay **rs, size_t n, usec_t duration) {
        usec_t until = clock_monotonic() + duration;
        while (clock_monotonic() < until)
                for (size_t i = 0; i < n; i++)
                        if (rs[i])
                                relay_step(rs[i], STEP);
}

static inline relay *relay_start(env *e) {
        relay *r = NULL;
        char err[256] = "";
        int k = relay_new(&e->cfg, e->bootstrap, &r, err, sizeof err);
        if (k < 0)
                fail_msg("relay_new: %s", err);
        return r;
}

static inline bool relay_active(relay *r) {
        relay_figures f;
        relay_figures_read(r, &f);
        return f.active;
}

/* A NUL-terminated copy of len bytes (Kafka values are not strings). */
static inline char *dupn(const void *p, size_t len) {
        char *s = malloc(len + 1);
        assert_non_null(s);
        if (len)
                memcpy(s, p, len);
        s[len] = 0;
        return s;
}

static inline char *header(rd_kafka_headers_t *h, const char *name) {
        const void *v = NULL;
        size_t len = 0;
        if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR)
                return NULL;
        return dupn(v, v ? len : 0);
}

/* Read both topics from the start until `want` messages came and `quiet` passed
 * without more (so duplicates would show), or the timeout. */
static inline void consume_all(env *e, size_t want, usec_t quiet, usec_t timeout) {
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

static inline const row *row_by_payload(env *e, const char *payload) {
        for (size_t i = 0; i < e->n_rows; i++)
                if (strcmp(e->rows[i].payload, payload) == 0)
                        return &e->rows[i];
        return NULL;
}

static inline int cmp_msg(const void *a, const void *b) {
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
static inline void check_published(env *e, bool allow_duplicates) {
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
