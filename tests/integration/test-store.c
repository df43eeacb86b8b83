/* The store against a real PostgreSQL server (PGHOST/PGPORT/PGUSER from
 * tests/lib/pg.sh; tests/run starts one): a fresh database per test, migrated
 * with store_migrate, referrals built as protobuf-c structs and stored with
 * referral_batch_store; the rows are counted with the test's own connection.
 * A batch decided once, duplicates, a stale offset, a poison message, the
 * first-time history, a deadline passed on arrival, a lost connection and a
 * failure that rolls back. Concurrency and throughput: test-store-concurrency.c;
 * roles, grants and PostgreSQL's errors: test-store-roles.c.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-store; pg_stop */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store_fixture.h"

/* ---- tests ---- */

/* A batch of referrals of every outcome, decided once: every row counted, the
 * message outputs filled, personal text stored byte for byte, NOTIFY sent;
 * the same batch again (next offsets) is all duplicates and writes nothing
 * but the offsets. */
static void test_batch_decided_once(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "LISTEN allvarsd_outbox");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-ELIGIBLE", .person = 1, .feedback = true }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-ADULT", .pnr = "19900101-0017" }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-BAD-PNR", .pnr = "20120505-0000" }, 1);
        batch_add(fx, b, &(refspec){ .id = "R-ACUTE", .person = 4, .acute = true }, 1);
        batch_add(fx, b, &(refspec){ .id = "R-NO-PHONE", .person = 5, .no_phone = true, .feedback = true }, 0);
        run_ok(fx, b, T0 + H(1));

        assert_int_equal(b->res.decided, 5);
        assert_int_equal(b->res.duplicates, 0);
        assert_int_equal(b->res.dead_lettered, 0);
        assert_int_equal(b->res.cases_opened, 4);               /* all but the adult */
        assert_int_equal(b->res.alerts, 0);
        assert_int_equal(b->res.events, count(fx, "SELECT count(*) FROM allvarsd.outbox"));
        assert_true(b->res.events >= 5 + 1);                    /* feedback and a scheduling request at least */

        static const struct {
                const char *id;
                decision_outcome o;
        } want[] = {
                { "R-ELIGIBLE", OUTCOME_ELIGIBLE },      { "R-ADULT", OUTCOME_NOT_ELIGIBLE },
                { "R-BAD-PNR", OUTCOME_MANUAL_REVIEW },  { "R-ACUTE", OUTCOME_DEFERRED },
                { "R-NO-PHONE", OUTCOME_ELIGIBLE },
        };
        char buf[512], case_id[UUID_STR_LEN];
        for (size_t i = 0; i < b->n; i++) {
                store_message *m = &b->m[i];
                assert_string_equal(b->refs[i]->id, want[i].id);
                assert_int_equal(m->status, STORE_DECIDED);
                assert_int_equal(m->outcome, want[i].o);
                ids_case_id(want[i].id, case_id);
                assert_string_equal(m->case_id, case_id);
                assert_string_equal(outcome_of(fx, want[i].id, buf), decision_outcome_code(want[i].o));
                assert_string_equal(value(fx, buf, sizeof buf,
                                          "SELECT case_id FROM allvarsd.referrals WHERE referral_id = '%s'", want[i].id),
                                    case_id);
        }
        assert_true(b->m[4].flags & FLAG_CONTACT_MISSING);
        assert_true(b->m[3].reasons & REASON_PROTECTIVE_ASSESSMENT_FIRST);
        assert_true(b->m[2].reasons & REASON_IDENTITY_INVALID);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 5);
        /* Each referral's statistics row, in the same transaction (schemas/011_referral_stats.sql). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats s JOIN allvarsd.referrals r"
                                   " USING (case_id) WHERE (r.referral_id = 'R-ADULT') = (s.outcome = 'NOT_ELIGIBLE'"
                                   " AND s.facts & 512 = 0 AND s.state IS NULL)"),   /* 512: a case */
                         5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats s JOIN allvarsd.referrals r"
                                   " USING (case_id) WHERE r.referral_id = 'R-ACUTE' AND s.outcome = 'DEFERRED'"
                                   " AND s.facts & 32 <> 0 AND s.assessment_due IS NOT NULL AND s.state = 'DEFERRED'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts"), 8);
        /* Each decision's audit entry is its decisions row, shown by audit_trail
         * (schemas/015_decided_from_decisions.sql): nothing written twice. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE action = 'DECIDED' AND actor_kind = 'DAEMON'"
                                   " AND id = 0 AND NOT reason_recorded"),
                         5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 0);
        /* Persons only for valid identity numbers: the adult, the children 1, 4, 5. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.persons"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE person_key IS NULL"), 1);

        /* The case rows as the lifecycle expects them. */
        ids_case_id("R-ACUTE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'DEFERRED'"
                                   " AND awaiting_assessment AND NOT awaiting_clearance AND deadline IS NULL"
                                   " AND protective_assessment_due = '2025-03-11T08:00:00Z'",
                               case_id),
                         1);
        ids_case_id("R-ELIGIBLE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'ELIGIBLE'"
                                   " AND outcome = 'ELIGIBLE' AND deadline = '2025-03-12T08:00:00Z'"
                                   " AND deadline_kind = 'CONVERSATION' AND limit_seconds = 172800"
                                   " AND profile_name = 'goteborg-motion-2024' AND feedback_requested"
                                   " AND NOT awaiting_contact AND created_at = '2025-03-10T09:00:00Z'",
                               case_id),
                         1);
        ids_case_id("R-NO-PHONE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND awaiting_contact",
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions d JOIN allvarsd.profile_params pp"
                                   " USING (params_key) WHERE d.referral_id = 'R-ELIGIBLE'"
                                   " AND age = 12 AND reasons = '' AND prior_referrals = 0"
                                   " AND pp.params LIKE 'name=goteborg-motion-2024;version=%%'"
                                   " AND decided_at = '2025-03-10T09:00:00Z'"),
                         1);
        /* One profile: its parameters stored once, under the md5 of the text,
         * and each decision's text recoverable as profile_describe wrote it
         * (schemas/016_profile_params.sql). */
        char params[1024];
        profile_describe(config_profile_for(fx->h.cfg, "hisingen"), params, sizeof params);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params WHERE params_key = md5(params)::uuid"),
                         1);
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT string_agg(DISTINCT pp.params, '|') FROM allvarsd.decisions d"
                                  " JOIN allvarsd.profile_params pp USING (params_key)"),
                            params);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions d"
                                   " JOIN allvarsd.profile_params pp USING (params_key)"),
                         5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-BAD-PNR'"
                                   " AND reasons = 'IDENTITY_INVALID' AND age IS NULL AND deadline IS NULL"),
                         1);
        ids_case_id("R-ELIGIBLE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail WHERE referral_id = 'R-ELIGIBLE'"
                                   " AND after = 'outcome=ELIGIBLE;reasons=;flags=UNDER_15;deadline=2025-03-12T08:00:00Z'"
                                   " AND at = '2025-03-10T09:00:00Z' AND case_id = '%s'",
                               case_id),
                         1);

        /* Personal data: the raw message, byte for byte, and no other copy
         * of the identity, names or narrative (schemas/017_personal_payload.sql). */
        char hex[2 * sizeof b->refs[1]->narrative + 4096];
        assert_true(2 * b->refs[1]->len < sizeof hex);
        for (size_t i = 0; i < b->refs[1]->len; i++)
                snprintf(hex + 2 * i, 3, "%02x", b->refs[1]->payload[i]);
        char stored[sizeof hex];
        assert_string_equal(value(fx, stored, sizeof stored,
                                  "SELECT encode(payload, 'hex') FROM allvarsd.referral_personal"
                                  " WHERE referral_id = 'R-ADULT'"),
                            hex);
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute"
                                  " WHERE attrelid = 'allvarsd.referral_personal'::regclass AND attnum > 0"
                                  " AND NOT attisdropped"),
                            "referral_id,payload");
        assert_int_equal(count(fx, "SELECT length(payload) FROM allvarsd.referral_personal WHERE referral_id = 'R-ACUTE'"),
                         (long long)b->refs[3]->len);
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT postal_address FROM allvarsd.case_contacts c JOIN allvarsd.cases USING (case_id)"
                                  " WHERE referral_id = 'R-ELIGIBLE' AND ordinal = 2"),
                            "Storgatan 1\n41101 Göteborg");
        /* Outbox rows carry the case id as key and a stable event id. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o WHERE NOT EXISTS"
                                   " (SELECT 1 FROM allvarsd.referrals r WHERE r.case_id::text = o.key)"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_SCHEDULING),
                         2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE consumer_group = '%s'"
                                   " AND topic = '%s' AND partition = 0",
                               GROUP, TOPIC),
                         3);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 1"), 2);

        /* The relay is woken once the batch committed. */
        PQconsumeInput(fx->h.pg);
        PGnotify *nt = PQnotifies(fx->h.pg);
        assert_non_null(nt);
        assert_string_equal(nt->relname, "allvarsd_outbox");
        PQfreemem(nt);

        /* The same referrals again at later offsets: duplicates, nothing written. */
        snapshot before = snap(fx);
        batch *again = batch_new();
        for (size_t i = 0; i < b->n; i++) {
                store_message *m = batch_add(fx, again, &(refspec){ .id = b->refs[i]->id, .person = 77 },
                                             b->m[i].partition);
                (void)m;
        }
        run_ok(fx, again, T0 + H(2));
        assert_int_equal(again->res.decided, 0);
        assert_int_equal(again->res.duplicates, 5);
        assert_int_equal(again->res.events, 0);
        for (size_t i = 0; i < again->n; i++) {
                assert_int_equal(again->m[i].status, STORE_DUPLICATE);
                assert_string_equal(again->m[i].case_id, b->m[i].case_id);
        }
        assert_same(fx, &before);       /* the offsets moved, their rows did not multiply */
        assert_int_equal(count(fx, "SELECT sum(next_offset) FROM allvarsd.consumer_offsets"), 10);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE received_at > '2025-03-10T09:00:00Z'"), 0);
        batch_free(again);
        batch_free(b);
}

/* A later copy in the same batch is the duplicate (message order); across
 * batches the stored one wins. */
static void test_duplicates(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-2", .person = 2 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-1", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-2", .person = 3, .acute = true }, 1);   /* a changed resend */
        batch_add(fx, b, &(refspec){ .id = "R-1", .person = 1 }, 0);
        run_ok(fx, b, T0);
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.duplicates, 2);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[1].status, STORE_DECIDED);
        assert_int_equal(b->m[2].status, STORE_DUPLICATE);
        assert_int_equal(b->m[3].status, STORE_DUPLICATE);
        /* The first copy was decided: not acute, so ELIGIBLE, and its raw bytes kept. */
        char buf[64];
        assert_string_equal(outcome_of(fx, "R-2", buf), "ELIGIBLE");
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal WHERE referral_id = 'R-2'"
                                   " AND length(payload) = %zu",
                               b->refs[0]->len),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE referral_id = 'R-2' AND source_offset = 0"
                                   " AND source_partition = 0"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit_trail"), 2);
        /* A duplicate does not count as history either. */
        assert_int_equal(count(fx, "SELECT max(prior_referrals) FROM allvarsd.decisions"), 0);

        long long outbox = count(fx, "SELECT count(*) FROM allvarsd.outbox");
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-1", .person = 1 }, 0);
        batch_add(fx, c, &(refspec){ .id = "R-3", .person = 3 }, 1);
        batch_add(fx, c, &(refspec){ .id = "R-3", .person = 3 }, 1);
        run_ok(fx, c, T0 + H(1));
        assert_int_equal(c->res.decided, 1);
        assert_int_equal(c->res.duplicates, 2);
        assert_int_equal(c->m[0].status, STORE_DUPLICATE);
        assert_int_equal(c->m[1].status, STORE_DECIDED);
        assert_int_equal(c->m[2].status, STORE_DUPLICATE);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), outbox + c->res.events);
        assert_int_equal(count(fx, "SELECT count(DISTINCT key) FROM allvarsd.outbox"), 3);
        batch_free(c);
        batch_free(b);
}

/* A position that moved (another consumer, a rebalance) fences the whole
 * batch: -ESTALE, nothing written, the messages left pending. */
static void test_stale_offset(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-A", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-B", .person = 2 }, 0);
        run_ok(fx, b, T0);
        assert_int_equal(fx->stored[0], 2);

        snapshot before = snap(fx);
        /* A consumer that believes offset 1 is next (it read the table before). */
        batch *late = batch_new();
        batch_add(fx, late, &(refspec){ .id = "R-C", .person = 3 }, 0);
        batch_add(fx, late, &(refspec){ .id = "R-D", .person = 4 }, 5);
        batch_offsets(fx, late);
        late->off[0].expected_next = 1;
        assert_int_equal(run_on(fx, fx->h.st, late, T0), -ESTALE);
        assert_same(fx, &before);
        for (size_t i = 0; i < late->n; i++)
                assert_int_equal(late->m[i].status, STORE_PENDING);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 0"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.consumer_offsets WHERE partition = 5"), 0);

        /* "No row yet" when there is one is just as stale. */
        late->off[0].expected_next = -1;
        assert_int_equal(run_on(fx, fx->h.st, late, T0), -ESTALE);
        assert_same(fx, &before);

        /* With the right positions the same batch goes through, and the store is usable. */
        late->off[0].expected_next = 2;
        run_ok(fx, late, T0);
        assert_int_equal(late->res.decided, 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 5"), 1);

        int64_t next[3];
        int32_t parts[3] = { 0, 5, 6 };
        assert_int_equal(store_load_offsets(fx->h.st, GROUP, TOPIC, parts, 3, next), 0);
        assert_int_equal(next[0], 3);
        assert_int_equal(next[1], 1);
        assert_int_equal(next[2], -1);
        assert_int_equal(store_load_offsets(fx->h.st, "another-group", TOPIC, parts, 1, next), 0);
        assert_int_equal(next[0], -1);
        batch_free(late);
        batch_free(b);
}

/* Sequential scans of outbox_sent so far, the store session's own counted
 * (pg_stat_force_next_flush: flushed before its next ReadyForQuery). */
static long long outbox_sent_seq_scans(fixture *fx) {
        PGresult *r = PQexec(store_pg(fx->h.st), "SELECT pg_stat_force_next_flush()");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        PQclear(r);
        return harness_count(fx->h.pg, "SELECT seq_scan FROM pg_stat_user_tables"
                                       " WHERE schemaname = 'allvarsd' AND relname = 'outbox_sent'");
}

/* A dead letter's event may be made again, so the batch looks it up in
 * outbox_sent before it writes it (store_rows.c rows_outbox_once). The lookup
 * stays an index probe after outbox_sent has grown on a session whose first
 * batches met it empty and analysed: as a prepared statement, the generic
 * plan settled on then scanned all of outbox_sent for each event until an
 * ANALYZE made it plan again (100-240 ms a call by the end of the bench's
 * replay). Autovacuum is off for the table here so that no ANALYZE comes. */
static void test_once_lookup_after_outbox_sent_grew(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "ALTER TABLE allvarsd.outbox_sent SET (autovacuum_enabled = false);"
                                  " ANALYZE allvarsd.outbox_sent");
        for (int i = 0; i < 8; i++) {
                batch *b = batch_new();
                batch_add(fx, b, NULL, 1);
                run_ok(fx, b, T0 + H(1));
                assert_int_equal(b->res.dead_lettered, 1);
                batch_free(b);
        }
        harness_exec_ok(fx->h.pg, "INSERT INTO allvarsd.outbox_sent (id, event_id, topic, key, ce_type, ce_time,"
                                  "                                  payload_bytes, created_at, sent_at, once)"
                                  " SELECT -g, gen_random_uuid(), 't', 'k', 'x', now(), 0, now(), now(), g % 100 = 0"
                                  "   FROM generate_series(1, 20000) AS g");
        long long before = outbox_sent_seq_scans(fx);
        batch *b = batch_new();
        batch_add(fx, b, NULL, 1);
        run_ok(fx, b, T0 + H(1));
        assert_int_equal(b->res.dead_lettered, 1);
        batch_free(b);
        assert_int_equal(outbox_sent_seq_scans(fx), before);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_DEAD_LETTER), 9);
}

/* A poison message becomes a dead letter (row + event) while the rest of the
 * batch is decided; the same offset again does not dead-letter twice. */
static void test_poison_message(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-BEFORE", .person = 1 }, 2);
        batch_add(fx, b, NULL, 2);
        batch_add(fx, b, &(refspec){ .id = "R-AFTER", .person = 2 }, 2);
        run_ok(fx, b, T0 + H(1));
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.dead_lettered, 1);
        assert_int_equal(b->m[1].status, STORE_DEAD_LETTERED);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[2].status, STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE source_topic = '%s'"
                                   " AND source_partition = 2 AND source_offset = 1 AND reason = 'UNDECODABLE'"
                                   " AND detail = 'truncated varint in field 6' AND length(payload) = 5"
                                   " AND received_at = '2025-03-10T09:00:00Z'",
                               TOPIC),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o JOIN allvarsd.dead_letters d USING (event_id)"
                                   " WHERE o.ce_type = '%s' AND o.topic = '%s' AND o.key = '%s/2'",
                               CE_TYPE_DEAD_LETTER, fx->h.cfg->topic_dead_letter, TOPIC),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 2"), 3);

        /* A batch of nothing but poison still moves the partition on. */
        batch *c = batch_new();
        batch_add(fx, c, NULL, 2);
        run_ok(fx, c, T0 + H(2));
        assert_int_equal(c->res.dead_lettered, 1);
        assert_int_equal(c->res.events, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 2"), 4);

        /* Offsets reset by hand: the same poison offset again is the same
         * dead letter (its row and event exist), and the batch still commits. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.consumer_offsets WHERE partition = 2");
        fx->stored[2] = -1;
        fx->next_offset[2] = 3;
        batch *replay = batch_new();
        batch_add(fx, replay, NULL, 2);
        run_ok(fx, replay, T0 + H(3));
        assert_int_equal(replay->m[0].status, STORE_DEAD_LETTERED);
        assert_int_equal(replay->res.events, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_DEAD_LETTER), 2);
        batch_free(replay);

        store_figures f;
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);
        assert_int_equal(f.dead_letters, 2);
        assert_int_equal(f.outbox_backlog, count(fx, "SELECT count(*) FROM allvarsd.outbox"));
        assert_true(f.outbox_oldest > 0);
        harness_exec_ok(fx->h.pg, HARNESS_SQL_DELIVER_ALL);
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);
        assert_int_equal(f.outbox_backlog, 0);
        assert_int_equal(f.outbox_oldest, 0);

        /* Reset again once the events were delivered (their rows are in
         * outbox_sent now): still not written, so not published again. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.consumer_offsets WHERE partition = 2");
        fx->stored[2] = -1;
        fx->next_offset[2] = 3;
        replay = batch_new();
        batch_add(fx, replay, NULL, 2);
        run_ok(fx, replay, T0 + H(4));
        assert_int_equal(replay->m[0].status, STORE_DEAD_LETTERED);
        assert_int_equal(replay->res.events, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent WHERE ce_type = '%s'",
                               CE_TYPE_DEAD_LETTER),
                         2);
        batch_free(replay);
        batch_free(c);
        batch_free(b);
}

/* stockholm-2019: only the first referral of a person with a suspected crime
 * qualifies; history is read across batches and, in message order, within one.
 * The same person written with a ten-digit number is the same person. */
static void test_first_time_history(void **state) {
        fixture *fx = *state;
        char pnr_a[14], short_a[14];
        make_pnr(pnr_a, 2010, 7, 14, 321);
        /* YYMMDD-NNNC: the same number, ten digits. */
        snprintf(short_a, sizeof short_a, "%s", pnr_a + 2);

        batch *b1 = batch_new();
        batch_add(fx, b1, &(refspec){ .id = "A-1", .pnr = pnr_a }, 0);
        batch_add(fx, b1, &(refspec){ .id = "C-1", .person = 30, .environment_only = true }, 0);
        batch_add(fx, b1, &(refspec){ .id = "B-1", .person = 20 }, 1);
        batch_add(fx, b1, &(refspec){ .id = "B-2", .person = 20 }, 1);
        run_ok(fx, b1, T0);
        assert_int_equal(b1->m[0].outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(b1->m[1].outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(b1->m[1].reasons & REASON_NO_QUALIFYING_CONCERN);
        assert_int_equal(b1->m[2].outcome, OUTCOME_ELIGIBLE);
        assert_false(b1->m[2].flags & FLAG_REPEAT_REFERRAL);
        assert_int_equal(b1->m[3].outcome, OUTCOME_NOT_ELIGIBLE);       /* B-2 after B-1 in the same batch */
        assert_true(b1->m[3].reasons & REASON_NOT_FIRST_SUSPICION);
        assert_true(b1->m[3].flags & FLAG_REPEAT_REFERRAL);

        batch *b2 = batch_new();
        batch_add(fx, b2, &(refspec){ .id = "A-2", .pnr = short_a }, 1);
        batch_add(fx, b2, &(refspec){ .id = "C-2", .person = 30 }, 0);
        batch_add(fx, b2, &(refspec){ .id = "D-1", .person = 40 }, 0);
        run_ok(fx, b2, T0 + H(1));
        assert_int_equal(b2->m[0].outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(b2->m[0].reasons & REASON_NOT_FIRST_SUSPICION);
        assert_true(b2->m[0].flags & FLAG_REPEAT_REFERRAL);
        /* C's earlier referral did not qualify: this one is the first suspicion. */
        assert_int_equal(b2->m[1].outcome, OUTCOME_ELIGIBLE);
        assert_true(b2->m[1].flags & FLAG_REPEAT_REFERRAL);
        assert_int_equal(b2->m[2].outcome, OUTCOME_ELIGIBLE);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'A-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 1 AND profile_name = 'stockholm-2019'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'C-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 0"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'B-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 1"),
                         1);
        assert_int_equal(count(fx, "SELECT count(DISTINCT person_key) FROM allvarsd.referrals"
                                   " WHERE referral_id IN ('A-1', 'A-2')"),
                         1);
        /* The person key is the keyed hash, never the number itself. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.persons WHERE length(person_key) = 32"), 4);
        batch *both[] = { b1, b2 };
        for (size_t k = 0; k < 2; k++)
                for (size_t i = 0; i < both[k]->n; i++) {
                        char digits[32];
                        size_t d = 0;
                        for (const char *c = both[k]->refs[i]->pnr; *c && d + 1 < sizeof digits; c++)
                                if (*c != '-')
                                        digits[d++] = *c;
                        digits[d] = 0;
                        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"
                                                   " WHERE position(convert_to('%s', 'UTF8') IN person_key) > 0",
                                               digits),
                                         0);
                }
        batch_free(b2);
        batch_free(b1);
}

/* The deadline had passed when the referral arrived: MISSED at once, with its
 * alert event, the police's NOT_HELD_IN_TIME and an audit row, and the
 * deadline watch finds it already raised. */
static void test_deadline_passed_on_arrival(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-LATE", .person = 1, .feedback = true }, 0);
        run_ok(fx, b, T0 + H(72));
        assert_int_equal(b->m[0].outcome, OUTCOME_ELIGIBLE);
        assert_true(b->m[0].flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        assert_int_equal(b->res.alerts, 1);
        char case_id[UUID_STR_LEN];
        ids_case_id("R-LATE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats WHERE case_id = '%s'"
                                   " AND facts & 2048 <> 0",            /* MISSED */
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s' AND kind = 'MISSED'"
                                   " AND due_at = '2025-03-12T08:00:00Z' AND raised_at = '2025-03-13T08:00:00Z'",
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s' AND ce_type = '%s'", case_id,
                               CE_TYPE_ALERT),
                         1);
        /* The alert and its NOT_HELD_IN_TIME may be made again (by the watch):
         * stored with unique ids; the referral's own events are not
         * (schemas/012_outbox_once.sql). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE once"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE once AND (ce_type = '%s' OR"
                                   " (ce_type = '%s' AND id = (SELECT max(id) FROM allvarsd.outbox)))",
                               CE_TYPE_ALERT, CE_TYPE_FEEDBACK),
                         2);
        assert_true(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE NOT once") >= 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'ALERT_MISSED'"
                                   " AND after LIKE '%%feedback=NOT_HELD_IN_TIME'",
                               case_id),
                         1);
        long long outbox = count(fx, "SELECT count(*) FROM allvarsd.outbox");
        deadline_watch_result w = { 0 };
        assert_int_equal(deadline_watch_run(fx->h.st, fx->h.cfg, T0 + H(73), &w), 0);
        assert_int_equal(w.missed, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), outbox);

        harness_exec_ok(fx->h.pg, "CREATE TABLE arrival AS SELECT o.event_id, o.ce_type FROM allvarsd.outbox o"
                                  " WHERE o.ce_type = '" CE_TYPE_ALERT "' OR o.event_id IN (SELECT event_id"
                                  " FROM allvarsd.outbox WHERE ce_type = '" CE_TYPE_FEEDBACK "'"
                                  " ORDER BY id DESC LIMIT 1)");
        harness_exec_ok(fx->h.pg, "CREATE TABLE arrival_audit AS SELECT before, after FROM allvarsd.audit"
                                  " WHERE action = 'ALERT_MISSED'");

        /* Once delivered, the watch raising it again (its case_alerts row and
         * marks lost) does not publish it again: its ids are found among the
         * delivered events that may be made again. */
        harness_exec_ok(fx->h.pg, HARNESS_SQL_DELIVER_ALL);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent s JOIN arrival a"
                                   " ON a.event_id = s.event_id WHERE s.once"),
                         2);
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.case_alerts; UPDATE allvarsd.cases SET missed_alerted_due = NULL");
        assert_int_equal(deadline_watch_run(fx->h.st, fx->h.cfg, T0 + H(73) + 1, &w), 0);
        assert_int_equal(w.missed, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);

        /* The same alert raised by the watch instead (its case_alerts row and
         * marks gone, as after a restore of the tables without the delivered
         * events): the same event ids and audit text, so exactly-once delivery
         * holds whichever raises it. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.outbox_sent; DELETE FROM allvarsd.case_alerts;"
                                  " DELETE FROM allvarsd.audit WHERE action = 'ALERT_MISSED';"
                                  " UPDATE allvarsd.cases SET missed_alerted_due = NULL");
        assert_int_equal(deadline_watch_run(fx->h.st, fx->h.cfg, T0 + H(74), &w), 0);
        assert_int_equal(w.missed, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 2);    /* the alert, NOT_HELD_IN_TIME */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o JOIN arrival a"
                                   " ON a.event_id = o.event_id AND a.ce_type = o.ce_type"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit u JOIN arrival_audit a"
                                   " ON a.before = u.before AND a.after = u.after WHERE u.action = 'ALERT_MISSED'"),
                         1);

        batch_free(b);
}

/* The jobs' counts of the open cases (store_case_figures_read): open, overdue
 * as the deadline watch means it (a SCHEDULED summons met its deadline, a
 * closed case owes nothing) and protective assessments overdue, a case's or a
 * caseless child's duty (once, never both). */
static void test_case_figures(void **state) {
        fixture *fx = *state;
        static const char *const ids[] = { "R-A", "R-B", "R-C", "R-D", "R-E", "R-F", "R-G" };
        batch *b = batch_new();
        for (int i = 0; i < 7; i++)
                batch_add(fx, b, &(refspec){ .id = ids[i], .person = i + 1 }, i % PARTS);
        run_ok(fx, b, T0 + H(1));
        assert_int_equal(b->res.cases_opened, 7);
        usec_t now = T0 + H(100);
        /* Each case as named: state, deadline kind, deadline and assessment
         * relative to now (2025-03-14T12:00:00Z), closed or not. */
        harness_exec_ok(fx->h.pg,
                        "UPDATE allvarsd.cases c SET state = v.state, deadline_kind = v.kind,"
                        "       deadline = '2025-03-14T12:00:00Z'::timestamptz + v.d * interval '1 hour',"
                        "       awaiting_assessment = v.aw,"
                        "       protective_assessment_due = CASE WHEN v.aw"
                        "           THEN '2025-03-14T12:00:00Z'::timestamptz + v.pd * interval '1 hour' END,"
                        "       closed_at = CASE WHEN v.closed THEN '2025-03-14T00:00:00Z'::timestamptz END"
                        "  FROM (VALUES ('R-A', 'ELIGIBLE', 'CONVERSATION', -1, false, 0, false),"      /* overdue */
                        "               ('R-B', 'ELIGIBLE', 'CONVERSATION', 1, false, 0, false),"
                        "               ('R-C', 'SCHEDULED', 'SUMMONS', -1, false, 0, false),"
                        "               ('R-D', 'SCHEDULED', 'CONVERSATION', 0, false, 0, false),"      /* overdue */
                        "               ('R-E', 'ELIGIBLE', 'CONVERSATION', -1, true, -1, true),"       /* closed */
                        "               ('R-F', 'DEFERRED', 'CONVERSATION', -1, true, -1, false),"     /* protective */
                        "               ('R-G', 'DEFERRED', 'CONVERSATION', -1, true, 1, false))"
                        "    AS v(id, state, kind, d, aw, pd, closed)"
                        " WHERE c.referral_id = v.id");
        /* Duties: one of a child without a case, overdue; one of a case
         * counted above (R-F) and one recorded: neither counts. */
        harness_exec_ok(fx->h.pg,
                        "INSERT INTO allvarsd.assessment_duties (case_id, referral_id, district, due_at, recorded_at,"
                        "                                        created_at)"
                        " VALUES (gen_random_uuid(), 'R-CASELESS', 'd', '2025-03-14T10:00:00Z', NULL, now()),"
                        "        ((SELECT case_id FROM allvarsd.cases WHERE referral_id = 'R-F'), 'R-F', 'd',"
                        "         '2025-03-14T10:00:00Z', NULL, now()),"
                        "        (gen_random_uuid(), 'R-RECORDED', 'd', '2025-03-14T10:00:00Z', '2025-03-14T09:00:00Z',"
                        "         now())");
        store_case_figures c;
        assert_int_equal(store_case_figures_read(fx->h.st, now, &c), 0);
        assert_int_equal(c.open, 6);
        assert_int_equal(c.overdue, 2);
        assert_int_equal(c.protective_overdue, 2);
        /* Two hours earlier: no deadline of R-A or R-D had passed, nor any assessment's. */
        assert_int_equal(store_case_figures_read(fx->h.st, now - H(2) - 1, &c), 0);
        assert_int_equal(c.overdue, 0);
        assert_int_equal(c.protective_overdue, 0);
        /* The cases were changed behind the daemon's back: their statistics
         * rows made again from the view, for the teardown's check. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.assessment_duties; DELETE FROM allvarsd.referral_stats;"
                                  " INSERT INTO allvarsd.referral_stats SELECT * FROM allvarsd.referral_stats_source");
        batch_free(b);
}

/* The connection is killed between batches: -ECONNRESET, then reconnect
 * (statements prepared again) and the batch goes through once. */
static void test_connection_lost(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-FIRST", .person = 1 }, 0);
        run_ok(fx, b, T0);
        harness_exec_ok(fx->h.pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()");
        usleep(100 * 1000);
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-SECOND", .person = 2 }, 0);
        batch_offsets(fx, c);
        assert_int_equal(run_on(fx, fx->h.st, c, T0), -ECONNRESET);
        assert_false(store_connected(fx->h.st));
        assert_non_null(strstr(store_last_error(fx->h.st), "connection"));
        char err[512];
        assert_int_equal(store_reconnect(fx->h.st, err, sizeof err), 0);
        assert_true(store_connected(fx->h.st));
        run_ok(fx, c, T0);
        assert_int_equal(c->res.decided, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        int version;
        assert_int_equal(store_check_schema(fx->h.st, &version), 0);
        assert_int_equal(version, STORE_SCHEMA_VERSION);
        batch_free(c);
        batch_free(b);
}

/* A statement that fails in the last round trip (here: text that is not
 * UTF-8, which the codec would have refused) rolls the whole batch back,
 * offsets included; the error names no value; the next batch goes through. */
static void test_failure_rolls_back(void **state) {
        fixture *fx = *state;
        batch *ok = batch_new();
        batch_add(fx, ok, &(refspec){ .id = "R-OK", .person = 1 }, 0);
        run_ok(fx, ok, T0);
        snapshot before = snap(fx);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-GOOD", .person = 2 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-BAD-TEXT", .person = 3 }, 0);
        b->refs[1]->g[0].name = (char *)"Secret\xff\xfe name"; /* a guardian: case_contacts */
        batch_offsets(fx, b);
        int r = run_on(fx, fx->h.st, b, T0);
        assert_int_equal(r, -EBADMSG);      /* batch_store finds the message (test_refused_value_dead_lettered) */
        assert_null(strstr(store_last_error(fx->h.st), "Secret"));
        assert_null(strstr(store_last_error(fx->h.st), "0xff"));
        assert_non_null(strstr(store_last_error(fx->h.st), "22021"));
        assert_same(fx, &before);
        assert_int_equal(b->m[0].status, STORE_PENDING);
        assert_true(store_connected(fx->h.st));

        b->refs[1]->g[0].name = (char *)"Anna Öberg";
        run_ok(fx, b, T0);
        assert_int_equal(b->res.decided, 2);
        batch_free(b);
        batch_free(ok);
}

/* Many decisions of one profile: its parameters stored once, and each
 * decision's text recoverable (schemas/016_profile_params.sql). A batch that
 * rolls back takes the row it inserted with it; storing the configuration's
 * texts ahead (referral_batch_register_profiles, as the consumer does at start
 * and after a reload) adds nothing for a text stored already, and again
 * nothing the second time. */
static void test_profile_params_once(void **state) {
        fixture *fx = *state;
        char params[1024], buf[1100], id[32];
        profile_describe(config_profile_for(fx->h.cfg, "hisingen"), params, sizeof params);

        batch *bad = batch_new();
        batch_add(fx, bad, &(refspec){ .id = "R-BAD-TEXT", .person = 1 }, 0);
        bad->refs[0]->g[0].name = (char *)"Secret\xff\xfe name"; /* a guardian: case_contacts */
        batch_offsets(fx, bad);
        assert_int_equal(run_on(fx, fx->h.st, bad, T0), -EBADMSG);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), 0);

        batch *b = batch_new();
        for (int i = 0; i < 120; i++) {
                snprintf(id, sizeof id, "R-MANY-%03d", i);
                batch_add(fx, b, &(refspec){ .id = id, .person = 10 + i }, i % 4);
        }
        run_ok(fx, b, T0 + H(1));
        assert_int_equal(b->res.decided, 120);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), 1);
        assert_string_equal(value(fx, buf, sizeof buf, "SELECT params FROM allvarsd.profile_params"
                                                       " WHERE params_key = md5(params)::uuid"),
                            params);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions d JOIN allvarsd.profile_params pp"
                                   " USING (params_key) WHERE d.referral_id LIKE 'R-MANY-%%'"),
                         120);

        /* A second batch of the same profile: no second row. */
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-LATER", .person = 300 }, 1);
        run_ok(fx, c, T0 + H(2));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), 1);

        assert_int_equal(referral_batch_register_profiles(fx->h.st, fx->h.cfg), 0);
        long long n = count(fx, "SELECT count(*) FROM allvarsd.profile_params");
        assert_true(n >= 1 && (size_t)n <= 1 + fx->h.cfg->n_districts);
        assert_int_equal(referral_batch_register_profiles(fx->h.st, fx->h.cfg), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params"), n);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.profile_params WHERE params_key = md5(params)::uuid"),
                         n);
        batch_free(c);
        batch_free(b);
        batch_free(bad);
}

int main(void) {
        if (tz_init() < 0) {
                fprintf(stderr, "tz_init failed\n");
                return 1;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_batch_decided_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_duplicates, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_stale_offset, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_poison_message, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_first_time_history, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_deadline_passed_on_arrival, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_case_figures, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_connection_lost, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_failure_rolls_back, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_profile_params_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_once_lookup_after_outbox_sent_grew, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
