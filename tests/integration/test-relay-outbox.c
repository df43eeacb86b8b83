/* The outbox relay and the rows it has delivered or that the brokers refused
 * (a real PostgreSQL and librdkafka's mock cluster, as test-relay.c): a row
 * moves from outbox to outbox_sent without its payload; an event id delivered
 * once is not published again when a replay writes it again, nor stalls the
 * relay; an event the brokers refuse for its size is dead-lettered with an
 * alert; a bad Kafka setting is reported. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "relay_fixture.h"
#include "relay_state.h"

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

/* Calls, plans and shared blocks touched (hit or read) of the one statement of
 * this database whose text starts so (pg_stat_statements, planning tracked). */
static void statement_counts(env *e, const char *prefix, long long *calls, long long *plans, long long *blocks) {
        const char *sql = "SELECT calls, plans, shared_blks_hit + shared_blks_read FROM pg_stat_statements"
                          " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                          "   AND starts_with(query, $1)";
        PGresult *res = PQexecParams(e->pg, sql, 1, NULL, &prefix, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                fail_msg("pg_stat_statements: %s", PQresultErrorMessage(res));
        if (PQntuples(res) != 1)
                fail_msg("%d statements start with \"%s\"", PQntuples(res), prefix);
        *calls = atoll(PQgetvalue(res, 0, 0));
        *plans = atoll(PQgetvalue(res, 0, 1));
        *blocks = atoll(PQgetvalue(res, 0, 2));
        PQclear(res);
}

/* The relay's statements are planned once per session, not at every call,
 * and stay lookups by the primary key after the outbox has grown on a session
 * that met it as one analysed page (daemon/relay_session.c try_lock): planned
 * at each call they cost the server 0.2-0.4 ms each at 500 referrals/s; a
 * generic plan made on the one page scanned the whole table once it had grown,
 * until an ANALYZE. Autovacuum is off for both tables here, so that no ANALYZE
 * comes in between. The growth is 100,000 dead rows with ids below the
 * relay's: a pass's reads (from hi, and its ids) and its marking meet none of
 * them by the index, and every page of them by a sequential scan. */
static void test_statements_planned_once_by_the_primary_key(void **state) {
        env *e = *state;
        char sql[256];
        snprintf(sql, sizeof sql, "ALTER DATABASE \"%s\" SET pg_stat_statements.track_planning = on", e->db.name);
        harness_exec_ok(e->pg, sql);
        harness_exec_ok(e->pg, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
        harness_exec_ok(e->pg, "ALTER TABLE allvarsd.outbox SET (autovacuum_enabled = false);"
                               " ALTER TABLE allvarsd.outbox_sent SET (autovacuum_enabled = false)");
        insert_rows(e, 30);
        harness_exec_ok(e->pg, "ANALYZE allvarsd.outbox; ANALYZE allvarsd.outbox_sent");
        relay *r = relay_start(e);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);

        harness_exec_ok(e->pg, "BEGIN;"
                               " INSERT INTO allvarsd.outbox (id, event_id, topic, key, ce_type, ce_time, payload)"
                               "   SELECT -g, gen_random_uuid(), 't.none', 'k', 'x', now(), '\\x00'::bytea"
                               "     FROM generate_series(1, 100000) AS g;"
                               " DELETE FROM allvarsd.outbox WHERE id < 0;"
                               " COMMIT");
        long long pages = harness_count(e->pg, "SELECT pg_relation_size('allvarsd.outbox') / 8192");
        assert_true(pages >= 500);
        harness_exec_ok(e->pg, "SELECT pg_stat_statements_reset()");
        insert_rows(e, 60);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        relay_free(r, USEC_PER_SEC);
        assert_int_equal(harness_count(e->pg, "SELECT count(*) FROM allvarsd.outbox_sent"), 90);

        static const char *const stmts[] = {
                "WITH d AS (DELETE FROM allvarsd.outbox",                                           /* marking */
                "SELECT id, event_id::text, topic, key, ce_type, ce_time, payload, created_at FROM (", /* a pass */
        };
        for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
                long long calls, plans, blocks;
                statement_counts(e, stmts[i], &calls, &plans, &blocks);
                if (calls < 4 || plans > 0 || blocks / calls > pages / 5)
                        fail_msg("%s...: %lld calls, %lld plans, %lld blocks each (the outbox: %lld pages)", stmts[i],
                                 calls, plans, blocks / calls, pages);
        }
}

/* Delivered rows are marked sent in bulk (daemon/relay_state.h MARK_DELAY):
 * a delivered row waits up to MARK_DELAY for more before the statement that
 * marks it, rather than one statement and transaction per delivery report (at
 * 500 referrals/s some 400 a second); then it leaves the outbox. */
static void test_marking_waits_for_more(void **state) {
        env *e = *state;
        relay *r = relay_start(e);
        insert_rows(e, 1);
        run_until_sent(e, &r, 1, 20 * USEC_PER_SEC);
        insert_rows(e, 1);
        harness_exec_ok(e->pg, "SELECT pg_notify('" RELAY_NOTIFY_CHANNEL "', '')"); /* as a batch's commit */
        relay_figures f;
        usec_t until = clock_monotonic() + 10 * USEC_PER_SEC;
        do {
                relay_step(r, 1000);
                relay_figures_read(r, &f);
        } while (f.published < 2 && clock_monotonic() < until);
        assert_int_equal(f.published, 2);
        usec_t delivered = clock_monotonic();
        relay_step(r, 1000);    /* where a marking per delivery report happened */
        /* Only a step that returned well within the delay tells: a slower one
         * (a loaded machine, valgrind) may mark the row rightly. */
        bool soon = clock_monotonic() - delivered < MARK_DELAY / 2;
        long long left = unsent(e);
        if (soon && left != 1)
                fail_msg("the row delivered %lld µs ago was marked sent already",
                         (long long)(clock_monotonic() - delivered));
        run_for(&r, 1, 5 * MARK_DELAY);
        assert_int_equal(unsent(e), 0);
        assert_true(row_sent(e, e->rows[1].id));
        relay_free(r, USEC_PER_SEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_delivered_rows_move_to_outbox_sent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_delivered_event_is_not_published_again, setup, teardown),
                cmocka_unit_test_setup_teardown(test_event_id_already_sent_does_not_stall, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_kafka_setting_is_reported, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refused_event_is_dead_lettered, setup, teardown),
                cmocka_unit_test_setup_teardown(test_statements_planned_once_by_the_primary_key, setup, teardown),
                cmocka_unit_test_setup_teardown(test_marking_waits_for_more, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
