/* The outcome events as integrators see them (a real PostgreSQL, as
 * test-outcomes.c): revisions and withdrawals of scheduling requests, the
 * sources a dead letter names, and two overrides of one case at once opening
 * it once. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "outcomes_fixture.h"

typedef struct racer {
        fixture *fx;
        store *st;
        int32_t partition;
        event ev;
        store_message m;
        store_batch_result res;
        int ret;
} racer;

/* ---- the contract: revisions, withdrawals, dead letters' sources ---- */

/* The scheduling messages of a case in the outbox, in the order they were made:
 * 'R' request or 'W' withdrawal, with revision, kind or reason. */
static void scheduling_messages(fixture *fx, const char *case_id, char *buf, size_t size) {
        const char *p[] = {case_id, fx->h.cfg->topic_scheduling};
        PGresult *r = PQexecParams(fx->h.pg,
                                   "SELECT ce_type, payload FROM allvarsd.outbox WHERE key = $1 AND topic = $2"
                                   " ORDER BY id",
                                   2, NULL, p, NULL, NULL, 1);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        buf[0] = '\0';
        for (int i = 0; i < PQntuples(r); i++) {
                const uint8_t *v = (const uint8_t *)PQgetvalue(r, i, 1);
                size_t n = (size_t)PQgetlength(r, i, 1), k = strlen(buf);
                if (strcmp(PQgetvalue(r, i, 0), CE_TYPE_SCHEDULING) == 0) {
                        Allvarssamtal__V1__SchedulingRequest *s = allvarssamtal__v1__scheduling_request__unpack(NULL, n, v);
                        assert_non_null(s);
                        snprintf(buf + k, size - k, "%sR%llu/%d", k ? " " : "", (unsigned long long)s->revision,
                                 (int)s->kind);
                        allvarssamtal__v1__scheduling_request__free_unpacked(s, NULL);
                } else {
                        assert_string_equal(PQgetvalue(r, i, 0), CE_TYPE_WITHDRAWN);
                        Allvarssamtal__V1__SchedulingWithdrawn *w =
                                allvarssamtal__v1__scheduling_withdrawn__unpack(NULL, n, v);
                        assert_non_null(w);
                        assert_string_equal(w->case_id, case_id);
                        snprintf(buf + k, size - k, "%sW%llu/%s", k ? " " : "", (unsigned long long)w->revision,
                                 withdrawal_reason_code((withdrawal_reason)w->reason));
                        allvarssamtal__v1__scheduling_withdrawn__free_unpacked(w, NULL);
                }
        }
        PQclear(r);
}

/* Every change of a case adds one to its revision; requests carry it and their
 * kind; a change out of ELIGIBLE/SCHEDULED withdraws the request, in the same
 * transaction, at the new revision. */
static void test_revisions_and_withdrawals(void **state) {
        fixture *fx = *state;
        char a[UUID_STR_LEN], b[UUID_STR_LEN], c[UUID_STR_LEN], got[512];
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-A", .deadline = T0 + H(48), .awaiting_contact = true,
                                     .guardian_phone = ""},
                     a);
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-B", .deadline = T0 + H(48)}, b);
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-C", .decision = "DEFERRED", .awaiting_assessment = true,
                                     .protective_assessment_due = T0 + H(24)},
                     c);
        event contact, sched, cancel, override_b, assess_c;
        event_init(&contact, EV_CONTACT, "ev-rev-contact", a, NULL, T0 + H(1));
        event_init(&sched, EV_SCHEDULED, "ev-rev-sched", a, NULL, T0 + H(2));
        event_init(&cancel, EV_CANCELLED, "ev-rev-cancel", a, NULL, T0 + H(3));
        event_init(&override_b, EV_OVERRIDE, "ev-rev-ov", b, NULL, T0 + H(1));
        override_b.override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        event_init(&assess_c, EV_ASSESSMENT, "ev-rev-assess", c, NULL, T0 + H(1));
        assess_c.assessment.do_not_summon = true;
        event *evs[] = {&contact, &sched, &cancel, &override_b, &assess_c};
        sent out;
        assert_int_equal(send_events(fx, evs, 5, T0 + H(3), &out), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(out.m[i].status, STORE_DECIDED);

        /* A: updated request at 2, scheduled (3, nothing to book again), cancelled: withdrawn at 4. */
        scheduling_messages(fx, a, got, sizeof got);
        assert_string_equal(got, "R2/2 W4/CANCELLED");
        assert_value(fx, "CANCELLED|4", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", a);
        /* B: overridden to NOT_ELIGIBLE: withdrawn at 2. */
        scheduling_messages(fx, b, got, sizeof got);
        assert_string_equal(got, "W2/NOT_ELIGIBLE");
        /* C: never requested; the assessment says do not summon: MANUAL_REVIEW, nothing sent. */
        scheduling_messages(fx, c, got, sizeof got);
        assert_string_equal(got, "");
        assert_value(fx, "MANUAL_REVIEW|2", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'",
                     c);

        /* C overridden to ELIGIBLE: a request (kind OVERRIDDEN) at 3; declined: withdrawn at 4. */
        event ov_c, declined;
        event_init(&ov_c, EV_OVERRIDE, "ev-rev-ov-c", c, NULL, T0 + H(4));
        event_init(&declined, EV_DECLINED, "ev-rev-declined", c, NULL, T0 + H(5));
        send_one(fx, &ov_c, T0 + H(5), STORE_DECIDED);
        send_one(fx, &declined, T0 + H(5), STORE_DECIDED);
        scheduling_messages(fx, c, got, sizeof got);
        assert_string_equal(got, "R3/4 W4/FAMILY_DECLINED");
        /* Withdrawals carry no personal data: the district, ids, times, codes only. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'"
                                   " AND position('\\x416e64657273736f6e'::bytea in payload) > 0", /* "Andersson" */
                               CE_TYPE_WITHDRAWN),
                         0);
        /* (The same query finds the name in the updated request, which must carry it.) */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND key = '%s'"
                                   " AND position('\\x416e64657273736f6e'::bytea in payload) > 0",
                               CE_TYPE_SCHEDULING, a),
                         1);
}

/* A dead letter names what its producer knows the message by: its key, its ce_id
 * header, its own event id; the headers are kept for a replay. */
static void test_dead_letter_source(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-DLSRC", .decision = "DEFERRED", .awaiting_clearance = true},
                     id);
        event held;
        event_init(&held, EV_HELD, "ev-dl-source", id, NULL, T0 + H(2));
        uint8_t *buf;
        size_t len = codec_pack(&held.ev.base, &buf);
        codec_error err;
        codec_outcome *dec = codec_outcome_decode(buf, len, fx->h.cfg->max_message_bytes, &err);
        assert_non_null(dec);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "ce_id", -1, "producer-ce-1", -1);
        rd_kafka_header_add(h, "traceparent", -1, "00-abc-01", -1);
        store_message m = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .offset = fx->next_offset,
                           .payload = buf, .len = len, .case_outcome = codec_outcome_msg(dec),
                           .key = "R-DLSRC", .key_len = 7, .headers = h, .source_event_id = "ev-dl-source"};
        store_offset off = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .expected_next = fx->stored_next,
                            .new_next = fx->next_offset + 1};
        store_batch_result res;
        assert_int_equal(outcome_batch_store(fx->h.st, fx->h.cfg, GROUP, T0 + H(2), &m, 1, &off, 1, &res), 0);
        assert_int_equal(m.status, STORE_DEAD_LETTERED);
        fx->stored_next = fx->next_offset = off.new_next;
        assert_value(fx, "R-DLSRC|producer-ce-1|ev-dl-source",
                     "SELECT convert_from(source_key, 'UTF8') || '|' || source_ce_id || '|' || source_event_id"
                     " FROM allvarsd.dead_letters");
        /* The headers as they came (header_blob.h). */
        uint8_t *blob;
        size_t blob_len;
        assert_int_equal(header_blob_encode(h, &blob, &blob_len), 0);
        assert_int_equal(count(fx, "SELECT octet_length(source_headers) FROM allvarsd.dead_letters"), blob_len);
        free(blob);
        /* And the DeadLetter event. */
        char dl_id[UUID_STR_LEN], name[256];
        snprintf(name, sizeof name, "%s/0/%lld", fx->h.cfg->topic_outcomes, (long long)m.offset);
        ids_event_id("deadletter", name, dl_id);
        size_t n = 0;
        uint8_t *payload = outbox_payload(fx, dl_id, &n);
        assert_non_null(payload);
        Allvarssamtal__V1__DeadLetter *dl = allvarssamtal__v1__dead_letter__unpack(NULL, n, payload);
        free(payload);
        assert_non_null(dl);
        assert_int_equal(dl->source_key.len, 7);
        assert_memory_equal(dl->source_key.data, "R-DLSRC", 7);
        assert_string_equal(dl->source_ce_id, "producer-ce-1");
        assert_string_equal(dl->source_event_id, "ev-dl-source");
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);
        rd_kafka_headers_destroy(h);
        codec_outcome_free(dec);
        free(buf);
}

static void *race(void *arg) {
        racer *rc = arg;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&rc->ev.ev.base, &buf);
        codec_error err;
        codec_outcome *o = codec_outcome_decode(buf, len, 1 << 20, &err);
        rc->m = (store_message){.topic = rc->fx->h.cfg->topic_outcomes, .partition = rc->partition, .offset = 0,
                                .payload = buf, .len = len, .case_outcome = codec_outcome_msg(o)};
        store_offset off = {.topic = rc->fx->h.cfg->topic_outcomes, .partition = rc->partition, .expected_next = -1,
                            .new_next = 1};
        rc->ret = outcome_batch_store(rc->st, rc->fx->h.cfg, GROUP, T0 + H(7), &rc->m, 1, &off, 1, &rc->res);
        rc->m.case_outcome = NULL;
        codec_outcome_free(o);
        free(buf);
        return NULL;
}

static void test_concurrent_overrides_open_once(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-RACE", .decision = "NOT_ELIGIBLE"}, id);
        racer rc[2] = {{.fx = fx, .partition = 1}, {.fx = fx, .partition = 2}};
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(harness_store_connect(&fx->h.db, &rc[i].st), 0);
                event_init(&rc[i].ev, EV_OVERRIDE, i ? "ev-race-b" : "ev-race-a", id, NULL, T0 + H(6));
        }
        /* Hold the referral so that both batches reach its lock before either goes on. */
        harness_exec_ok(fx->h.pg, "BEGIN");
        harness_exec_ok(fx->h.pg, "SELECT 1 FROM allvarsd.referrals WHERE referral_id = 'R-RACE' FOR UPDATE");
        pthread_t t[2];
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, race, &rc[i]), 0);
        for (int tries = 0; tries < 100; tries++) {
                if (count(fx, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                                  " WHERE NOT l.granted AND a.datname = current_database()") >= 2)
                        break;
                usleep(50 * 1000);
        }
        harness_exec_ok(fx->h.pg, "COMMIT");
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        for (size_t i = 0; i < 2; i++) {
                if (rc[i].ret != 0)
                        fail_msg("batch %zu: %d: %s", i, rc[i].ret, store_last_error(rc[i].st));
                assert_int_equal(rc[i].m.status, STORE_DECIDED);
                store_free(rc[i].st);
        }
        assert_int_equal(rc[0].res.cases_opened + rc[1].res.cases_opened, 1);
        assert_value(fx, "ELIGIBLE|2", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'OVERRIDDEN'",
                               id),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'"
                                   " AND before LIKE 'state=NONE;%%'", id),
                         1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_concurrent_overrides_open_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_revisions_and_withdrawals, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_dead_letter_source, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
