/* The referral batch's statistics rows (daemon/referral_stats.h): each new
 * referral's row of referral_stats is made in C from what the batch decided,
 * and must be, column by column, what the view that defines it
 * (schemas/011_referral_stats.sql, referral_stats_source) selects for it.
 * Against a real PostgreSQL server (PGHOST/PGPORT/PGUSER from
 * tests/lib/pg.sh): a fresh database per test, referrals of every kind
 * through referral_batch_store, the table compared with the view both ways,
 * and each referral's facts with the bits its decision must give. The
 * teardown (tests/lib/harness.c) checks the view again.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-referral-stats; pg_stop */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store_fixture.h"

#include "reasons.h"
#include "referral_stats.h"
#include "sqlstate.h"

/* Two districts on other profiles: Ds 2024:30 (imprisonable offences, the
 * first suspicion only, a summons within 24 h) and Stockholm's (a suspected
 * crime, the first suspicion only). */
static int setup_districts(void **state) {
        return fixture_setup(state, "feedback.always = false\n"
                                    "district.rinkeby.profile = ds-2024-30\n"
                                    "district.tensta.profile = stockholm-2019\n");
}

/* Rows of referral_stats that differ from the view's, or that only one has. */
static long long differences(fixture *fx) {
        return count(fx,
                     "SELECT count(*) FROM"
                     " ((SELECT * FROM allvarsd.referral_stats EXCEPT SELECT * FROM allvarsd.referral_stats_source)"
                     "  UNION ALL"
                     "  (SELECT * FROM allvarsd.referral_stats_source EXCEPT SELECT * FROM allvarsd.referral_stats))"
                     " d");
}

/* The message's referral, changed after ref_new: its payload made again. */
static ref *changed(batch *b, store_message *m) {
        return b->refs[m - b->m];
}

static void repack(batch *b, store_message *m) {
        ref *x = b->refs[m - b->m];
        free(x->payload);
        x->payload = NULL;
        x->len = codec_pack(&x->r.base, &x->payload);
        assert_non_null(x->payload);
        m->payload = x->payload;
        m->len = x->len;
}

/* One referral's row: its facts, state ("" for NULL) and which of the
 * deadline, assessment_due and person_key are set. */
typedef struct want {
        const char *id;
        long long facts;
        const char *state;
        bool deadline, assessment_due, person_key;
} want;

static void assert_rows(fixture *fx, const want *w, size_t n) {
        for (size_t i = 0; i < n; i++) {
                char case_id[UUID_STR_LEN], buf[64];
                ids_case_id(w[i].id, case_id);
                long long facts = count(fx,
                                        "SELECT coalesce(max(facts), -1) FROM allvarsd.referral_stats"
                                        " WHERE case_id = '%s'",
                                        case_id);
                if (facts != w[i].facts)
                        fail_msg("%s: facts %lld, expected %lld", w[i].id, facts, w[i].facts);
                assert_string_equal(
                        value(fx, buf, sizeof buf,
                              "SELECT coalesce(state, '') FROM allvarsd.referral_stats WHERE case_id = '%s'", case_id),
                        w[i].state);
                assert_int_equal(count(fx,
                                       "SELECT count(*) FROM allvarsd.referral_stats WHERE case_id = '%s'"
                                       " AND (deadline IS NOT NULL) = %s AND (assessment_due IS NOT NULL) = %s"
                                       " AND (person_key IS NOT NULL) = %s"
                                       " AND assessed_at IS NULL AND cleared_at IS NULL AND contact_at IS NULL"
                                       " AND held_at IS NULL AND closed_at IS NULL",
                                       case_id, w[i].deadline ? "true" : "false",
                                       w[i].assessment_due ? "true" : "false", w[i].person_key ? "true" : "false"),
                                 1);
        }
}

/* Referrals of every kind the decision makes, in one batch with a poison
 * message and a duplicate, then a second batch (a later suspicion of the same
 * person, read from the stored history; a duplicate of a stored one): every
 * row is the view's, and has the bits its decision gives. */
static void test_every_kind_as_the_view(void **state) {
        fixture *fx = *state;
        const usec_t now = T0 + H(1);
        char born2017[14], born1990[14], adult_acute[14];
        make_pnr(born2017, 2017, 1, 1, 11);
        make_pnr(born1990, 1990, 1, 1, 12);
        make_pnr(adult_acute, 2017, 1, 1, 13);

        Allvarssamtal__V1__Offence petty = ALLVARSSAMTAL__V1__OFFENCE__INIT, grave = ALLVARSSAMTAL__V1__OFFENCE__INIT;
        petty.code = "BrB 12:1";
        petty.imprisonable = false;
        grave.code = "BrB 8:1";
        grave.imprisonable = true;
        Allvarssamtal__V1__Offence *petty_p[] = {&petty}, *grave_p[] = {&grave};
        Google__Protobuf__Timestamp incident = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        codec_timestamp_set(&incident, T0 - 15 * USEC_PER_DAY);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){.id = "R-CASE", .person = 1}, 0);
        batch_add(fx, b, &(refspec){.id = "R-BELOW", .pnr = born2017}, 1);
        batch_add(fx, b, &(refspec){.id = "R-ABOVE", .pnr = born1990}, 2);
        batch_add(fx, b, &(refspec){.id = "R-ENV", .person = 3, .district = "tensta", .environment_only = true}, 3);
        store_message *m =
                batch_add(fx, b, &(refspec){.id = "R-NOT-IMPRISONABLE", .person = 4, .district = "rinkeby"}, 0);
        changed(b, m)->r.offences = petty_p;
        changed(b, m)->r.n_offences = 1;
        repack(b, m);
        batch_add(fx, b, &(refspec){.id = "R-FIRST-1", .person = 5, .district = "tensta"}, 1);
        batch_add(fx, b, &(refspec){.id = "R-FIRST-2", .person = 5, .district = "tensta"}, 1);
        batch_add(fx, b, &(refspec){.id = "R-ACUTE", .person = 6, .acute = true}, 2);
        m = batch_add(fx, b, &(refspec){.id = "R-PRELIM", .person = 7}, 3);
        changed(b, m)->r.preliminary_investigation = true;
        repack(b, m);
        batch_add(fx, b, &(refspec){.id = "R-NE-ACUTE", .pnr = adult_acute, .acute = true}, 0);
        batch_add(fx, b, &(refspec){.id = "R-NO-PHONE", .person = 8, .no_phone = true}, 1);
        m = batch_add(fx, b, &(refspec){.id = "R-LATE", .person = 9}, 2);
        changed(b, m)->r.incident_at = &incident;
        repack(b, m);
        batch_add(fx, b, &(refspec){.id = "R-MISSED", .person = 10, .reported = T0 - H(72), .feedback = true}, 3);
        m = batch_add(fx, b,
                      &(refspec){.id = "R-MISSED-SUMMONS", .person = 11, .district = "rinkeby", .reported = T0 - H(48)},
                      0);
        changed(b, m)->r.offences = grave_p;
        changed(b, m)->r.n_offences = 1;
        repack(b, m);
        batch_add(fx, b, &(refspec){.id = "R-BAD-PNR", .pnr = "20120505-0000"}, 1);
        batch_add(fx, b, NULL, 2);                                    /* a poison message */
        batch_add(fx, b, &(refspec){.id = "R-CASE", .person = 1}, 3); /* a duplicate in the batch */
        run_ok(fx, b, now);
        assert_int_equal(b->res.decided, 15);
        assert_int_equal(b->res.duplicates, 1);
        assert_int_equal(b->res.dead_lettered, 1);
        assert_int_equal(b->res.alerts, 2);
        batch_free(b);

        b = batch_new();
        batch_add(fx, b, &(refspec){.id = "R-FIRST-3", .person = 5, .district = "tensta"}, 0);
        batch_add(fx, b, &(refspec){.id = "R-MISSED", .person = 10, .reported = T0 - H(72)}, 1); /* stored */
        run_ok(fx, b, now + H(1));
        assert_int_equal(b->res.decided, 1);
        assert_int_equal(b->res.duplicates, 1);
        batch_free(b);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"), 16);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats_source"), 16);
        assert_int_equal(differences(fx), 0);

        /* The bits (schemas/011_referral_stats.sql): 1 BELOW_MIN_AGE, 2 ABOVE_MAX_AGE,
         * 4 NO_QUALIFYING_CONCERN, 8 NOT_IMPRISONABLE, 16 NOT_FIRST_SUSPICION,
         * 32 PROTECTIVE_ASSESSMENT_FIRST, 64 PRELIMINARY_INVESTIGATION,
         * 128 CONTACT_MISSING, 256 LATE_REFERRAL, 512 a case, 2048 MISSED,
         * 1048576 an assessment due. */
        static const want w[] = {
                {"R-CASE", 512, "ELIGIBLE", true, false, true},
                {"R-BELOW", 1, "", false, false, true},
                {"R-ABOVE", 2, "", false, false, true},
                {"R-ENV", 4, "", false, false, true},
                {"R-NOT-IMPRISONABLE", 4 | 8, "", false, false, true},
                {"R-FIRST-1", 512, "ELIGIBLE", true, false, true},
                {"R-FIRST-2", 16, "", false, false, true},
                {"R-FIRST-3", 16, "", false, false, true},
                {"R-ACUTE", 32 | 512 | 1048576, "DEFERRED", false, true, true},
                {"R-PRELIM", 64 | 512, "DEFERRED", false, false, true},
                {"R-NE-ACUTE", 1 | 1048576, "", false, true, true},
                {"R-NO-PHONE", 128 | 512, "ELIGIBLE", true, false, true},
                {"R-LATE", 256 | 512, "ELIGIBLE", true, false, true},
                {"R-MISSED", 512 | 2048, "ELIGIBLE", true, false, true},
                {"R-MISSED-SUMMONS", 512 | 2048, "ELIGIBLE", true, false, true},
                {"R-BAD-PNR", 512, "MANUAL_REVIEW", false, false, false},
        };
        assert_rows(fx, w, sizeof w / sizeof w[0]);
        /* The summons' deadline, and the duty of the child without a case. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats s JOIN allvarsd.referrals r"
                                   " USING (case_id) WHERE r.referral_id = 'R-MISSED-SUMMONS'"
                                   " AND s.deadline = '2025-03-09T08:00:00Z' AND s.profile_name = 'ds-2024-30'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.assessment_duties d JOIN allvarsd.referral_stats s"
                                   " ON s.case_id = d.case_id AND s.assessment_due = d.due_at"),
                         1);
}

/* An outcome event that comes before its referral is dead-lettered and its
 * outcome_events row taken back (daemon/outcome_batch.c), so the referral's
 * row made in C when it comes is still the view's; outcome events after it
 * make the row again from the view. */
static int64_t out_next = -1;

static store_message_status send_outcome(fixture *fx, CaseOutcome *ev, usec_t now) {
        store_message_status st = 0;
        char detail[256];
        if (harness_outcome_send(&fx->h, GROUP, &out_next, ev, now, &st, detail, sizeof detail) < 0)
                fail_msg("%s", detail);
        return st;
}

static store_message_status send_held(fixture *fx, const char *event_id, const char *referral_id, usec_t at) {
        CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__ConversationHeld held = ALLVARSSAMTAL__V1__CONVERSATION_HELD__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Participant who[] = {ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_CHILD,
                                                ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_GUARDIANS};
        Allvarssamtal__V1__FollowUp what[] = {ALLVARSSAMTAL__V1__FOLLOW_UP__FOLLOW_UP_NONE};
        codec_timestamp_set(&ts, at);
        ev.event_id = (char *)event_id;
        ev.referral_id = (char *)referral_id;
        ev.occurred_at = &ts;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
        held.participants = who;
        held.n_participants = 2;
        held.follow_up = what;
        held.n_follow_up = 1;
        ev.conversation_held = &held;
        return send_outcome(fx, &ev, at);
}

static void test_outcome_before_its_referral(void **state) {
        fixture *fx = *state;
        out_next = -1;
        assert_int_equal(send_held(fx, "ev-too-early", "R-EARLY", T0 + H(2)), STORE_DEAD_LETTERED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events"), 0);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){.id = "R-EARLY", .person = 1}, 0);
        run_ok(fx, b, T0 + H(3));
        batch_free(b);
        assert_int_equal(differences(fx), 0);
        assert_rows(fx, &(want){"R-EARLY", 512, "ELIGIBLE", true, false, true}, 1);

        /* Held in time, the guardians there, nothing further: the view's row. */
        assert_int_equal(send_held(fx, "ev-held", "R-EARLY", T0 + H(20)), STORE_DECIDED);
        assert_int_equal(differences(fx), 0);
        char case_id[UUID_STR_LEN];
        ids_case_id("R-EARLY", case_id);
        assert_int_equal(count(fx, "SELECT facts FROM allvarsd.referral_stats WHERE case_id = '%s'", case_id),
                         512 | 1024 | 8192 | 16384 | 524288);
}

/* A row already there for a new referral (its key, the referral id, since
 * schemas/019_referral_stats_by_referral.sql) can only have been written
 * by hand: the referral batch inserts its referrals' rows without ON CONFLICT
 * (no other transaction can have them), so the batch stops on that row with a
 * refused value, which batch.c makes the referral's dead letter, and writes
 * nothing; the row is not left to say something the tables do not. Without
 * it, the same referral is decided. */
static void test_row_written_by_hand_refused(void **state) {
        fixture *fx = *state;
        char case_id[UUID_STR_LEN];
        ids_case_id("R-STALE", case_id);
        harness_exec_params_ok(fx->h.pg,
                               "INSERT INTO allvarsd.referral_stats (case_id, referral_id, district, reported_at,"
                               " outcome, profile_name, profile_version, facts)"
                               " VALUES ($1::uuid, 'R-STALE', 'nowhere', '2000-01-01Z', 'DEFERRED', 'none', 0, 4194304)",
                               1, (const char *[]){case_id}, NULL, NULL);
        snapshot before = snap(fx);
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){.id = "R-STALE", .person = 1, .no_phone = true}, 0);
        assert_int_equal(run_on(fx, fx->h.st, b, T0 + H(1)), -EBADMSG);
        assert_non_null(strstr(store_last_error(fx->h.st), "referral_stats_pkey"));
        char code[6];
        assert_non_null(sqlstate_in_text(store_last_error(fx->h.st), code));
        assert_string_equal(code, "23505");
        assert_int_equal(sqlstate_classify(code), SQLSTATE_DATA);         /* batch.c: a dead letter */
        batch_free(b);
        assert_same(fx, &before);

        harness_exec_params_ok(fx->h.pg, "DELETE FROM allvarsd.referral_stats WHERE case_id = $1::uuid", 1,
                               (const char *[]){case_id}, NULL, NULL);
        b = batch_new();
        batch_add(fx, b, &(refspec){.id = "R-STALE", .person = 1, .no_phone = true}, 0);
        run_ok(fx, b, T0 + H(1));
        batch_free(b);
        assert_int_equal(differences(fx), 0);
        assert_rows(fx, &(want){"R-STALE", 128 | 512, "ELIGIBLE", true, false, true}, 1);
}

/* One value of a query with text parameters, or NULL. */
static char *value_params(fixture *fx, char *buf, size_t size, const char *sql, int n, const char *const *params) {
        PGresult *res = PQexecParams(fx->h.pg, sql, n, NULL, params, NULL, NULL, 0);
        char *r = NULL;
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                snprintf(buf, size, "%s", PQgetvalue(res, 0, 0));
                r = buf;
        } else {
                fprintf(stderr, "# %s", PQerrorMessage(fx->h.pg));
        }
        PQclear(res);
        return r;
}

/* The matcher the batch tests reasons and flags with is PostgreSQL's
 * `LIKE '%pattern%'` (the view's test): the same answer for every code the
 * rules write, the formatted lists, and texts where only the wildcard `_`
 * matches (another byte, a character of two bytes, none). */
static void test_like_as_postgresql(void **state) {
        fixture *fx = *state;
        static const char *const patterns[] = {
                "BELOW_MIN_AGE",
                "ABOVE_MAX_AGE",
                "NO_QUALIFYING_CONCERN",
                "NOT_IMPRISONABLE",
                "NOT_FIRST_SUSPICION",
                "PROTECTIVE_ASSESSMENT_FIRST",
                "PRELIMINARY_INVESTIGATION",
                "CONTACT_MISSING",
                "LATE_REFERRAL",
        };
        char all_reasons[512], all_flags[512];
        reasons_format(reason_texts, REASON_ALL, all_reasons, sizeof all_reasons);
        reasons_format(flag_texts, FLAG_ALL, all_flags, sizeof all_flags);
        const char *texts[64] = {
                "",
                all_reasons,
                all_flags,
                "BELOWxMINxAGE",
                "BELOW_MIN_AG",
                "xBELOW_MIN_AGEx",
                "below_min_age",
                "ABOVEåMAX_AGE",
                "ABOVEååMAX_AGE",
                "CONTACT_MISSINGLATE\x01REFERRAL",
                "NOT__FIRST_SUSPICION",
                "LATE_REFERRA",
                "LATEREFERRAL,LATE-REFERRAL",
                "NO_QUALIFYING_CONCERN_NOT_IMPRISONABLE",
        };
        size_t n = 14;
        for (const reason_text *t = reason_texts; t->code; t++)
                texts[n++] = t->code;
        for (const reason_text *t = flag_texts; t->code; t++)
                texts[n++] = t->code;
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < sizeof patterns / sizeof patterns[0]; j++) {
                        char got[8];
                        assert_non_null(value_params(fx, got, sizeof got,
                                                     "SELECT ($1::text LIKE '%' || $2::text || '%')::int", 2,
                                                     (const char *[]){texts[i], patterns[j]}));
                        if ((got[0] == '1') != referral_stats_like(texts[i], patterns[j]))
                                fail_msg("\"%s\" LIKE '%%%s%%': PostgreSQL says %s", texts[i], patterns[j], got);
                }
}

int main(void) {
        if (tz_init() < 0) {
                fprintf(stderr, "tz_init failed\n");
                return 1;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_every_kind_as_the_view, setup_districts, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_outcome_before_its_referral, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_row_written_by_hand_refused, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_like_as_postgresql, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
