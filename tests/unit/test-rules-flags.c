/* The rules engine after eligibility: deferrals and deadlines (docs/domain.md
 * "Decision", steps 4 and 5), every flag ("Flags"), profile overrides and the
 * codes the contract shares with the decision (test-rules.c has steps 1-3). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "rules_fixture.h"

/* ---- step 4: deferrals ---- */

static void test_deferrals(void **state) {
        (void)state;
        fixture f;
        for (size_t i = 0; i < profiles_builtin_count(); i++) {
                const profile *p = profiles_builtin(i);
                init(&f, 2012, 1, 1);
                f.r.acute_risk = true;
                decision d = decide(&f, p);
                assert_decision(d, OUTCOME_DEFERRED, REASON_PROTECTIVE_ASSESSMENT_FIRST);
                assert_int_equal(d.protective_assessment_due, at("2025-03-11T10:00:00Z"));
                assert_no_deadline(d);
                f.r.acute_risk = false;
                f.r.preliminary_investigation = true;
                d = decide(&f, p);
                assert_decision(d, OUTCOME_DEFERRED, REASON_PRELIMINARY_INVESTIGATION);
                assert_int_equal(d.protective_assessment_due, 0);
                assert_no_deadline(d);
                f.r.acute_risk = true;
                d = decide(&f, p);
                assert_decision(d, OUTCOME_DEFERRED,
                                REASON_PROTECTIVE_ASSESSMENT_FIRST | REASON_PRELIMINARY_INVESTIGATION);
                assert_int_equal(d.protective_assessment_due, at("2025-03-11T10:00:00Z"));
                /* No DEADLINE_PASSED_ON_ARRIVAL for a deferred case, however late. */
                f.now = at("2026-01-01T00:00:00Z");
                assert_false(decide(&f, p).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        }
}

static void test_deadline_after_deferral(void **state) {
        (void)state;
        /* The limit counts from the moment the last deferral was resolved. */
        assert_int_equal(rules_deadline_after_deferral(GBG, at("2025-03-12T08:30:00Z")), at("2025-03-14T08:30:00Z"));
        assert_int_equal(rules_deadline_after_deferral(DS, at("2025-03-12T08:30:00Z")), at("2025-03-13T08:30:00Z"));
        assert_int_equal(rules_deadline_after_deferral(TUTI, at("2025-03-12T08:30:00Z")), at("2025-03-26T08:30:00Z"));
        assert_int_equal(rules_deadline_after_deferral(STHLM, at("2025-03-29T10:00:00Z")),
                         at("2025-03-31T10:00:00Z"));
}

/* ---- step 5: deadlines ---- */

static void test_exactly_48_hours_across_dst(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        reported(&f, "2025-03-29T10:00:00Z");
        f.now = at("2025-03-29T10:00:01Z");
        decision d = decide(&f, GBG);
        assert_eligible(d, GBG, at("2025-03-29T10:00:00Z"));
        assert_int_equal(d.deadline, at("2025-03-31T10:00:00Z"));
        assert_int_equal(d.deadline - at("2025-03-29T10:00:00Z"), 48 * USEC_PER_HOUR);
        d = decide(&f, STHLM);
        assert_int_equal(d.deadline, at("2025-03-31T10:00:00Z"));
        d = decide(&f, DS);
        assert_int_equal(d.deadline, at("2025-03-30T10:00:00Z"));
        /* And back in October. */
        reported(&f, "2025-10-25T10:00:00Z");
        f.now = at("2025-10-25T10:00:01Z");
        assert_int_equal(decide(&f, GBG).deadline, at("2025-10-27T10:00:00Z"));
        /* Sub-second report times are kept. */
        f.reported.nanos = 250000000;
        assert_int_equal(decide(&f, GBG).deadline, at("2025-10-27T10:00:00.25Z"));
}

/* ---- flags ---- */

static void test_flag_contact_missing(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        assert_false(decide(&f, GBG).flags & FLAG_CONTACT_MISSING);
        f.r.n_guardians = 0;
        decision d = decide(&f, GBG);
        assert_true(d.flags & FLAG_CONTACT_MISSING);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);       /* a flag, not a reason */
        add_guardian(&f, "");
        assert_true(decide(&f, GBG).flags & FLAG_CONTACT_MISSING);
        add_guardian(&f, "  ");
        assert_true(decide(&f, GBG).flags & FLAG_CONTACT_MISSING);
        add_guardian(&f, "+46 31 123 45 67");
        assert_false(decide(&f, GBG).flags & FLAG_CONTACT_MISSING);
        /* Shown with any outcome: also NOT_ELIGIBLE and DEFERRED. */
        f.r.n_guardians = 1;
        clear_concerns(&f);
        d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(d.flags & FLAG_CONTACT_MISSING);
        /* Adults (18 and over): no guardians to contact. */
        init(&f, 2007, 3, 10);
        f.r.n_guardians = 0;
        d = decide(&f, STHLM);
        assert_int_equal(d.age, 18);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_false(d.flags & FLAG_CONTACT_MISSING);
        init(&f, 2007, 3, 11);
        f.r.n_guardians = 0;
        d = decide(&f, STHLM);
        assert_int_equal(d.age, 17);
        assert_true(d.flags & FLAG_CONTACT_MISSING);
        /* Age unknown: not raised. */
        f.subject.identity_number = (char *)"";
        assert_false(decide(&f, STHLM).flags & FLAG_CONTACT_MISSING);
}

static void test_flag_late_referral(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        assert_false(decide(&f, GBG).flags & FLAG_LATE_REFERRAL);      /* no incident_at */
        set_incident(&f, at("2025-02-24T10:00:00Z"));                  /* exactly 14 days */
        assert_false(decide(&f, GBG).flags & FLAG_LATE_REFERRAL);
        set_incident(&f, at("2025-02-24T09:59:59Z"));                  /* a second more */
        decision d = decide(&f, GBG);
        assert_true(d.flags & FLAG_LATE_REFERRAL);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        set_incident(&f, at("2025-03-10T09:00:00Z"));
        assert_false(decide(&f, GBG).flags & FLAG_LATE_REFERRAL);
        /* Also with MANUAL_REVIEW. */
        set_incident(&f, at("2024-12-01T00:00:00Z"));
        f.subject.identity_number = (char *)"";
        d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_MANUAL_REVIEW);
        assert_true(d.flags & FLAG_LATE_REFERRAL);
}

static void test_flag_under_15(void **state) {
        (void)state;
        fixture f;
        init(&f, 2010, 3, 11);                  /* 15 tomorrow */
        decision d = decide(&f, GBG);
        assert_int_equal(d.age, 14);
        assert_true(d.flags & FLAG_UNDER_15);
        init(&f, 2010, 3, 10);                  /* 15 today */
        d = decide(&f, GBG);
        assert_int_equal(d.age, 15);
        assert_false(d.flags & FLAG_UNDER_15);
        /* With NOT_ELIGIBLE too (below Göteborg's ages). */
        init(&f, 2018, 1, 1);
        d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(d.flags & FLAG_UNDER_15);
        f.subject.identity_number = (char *)"";
        assert_false(decide(&f, GBG).flags & FLAG_UNDER_15);
}

static void test_flag_repeat_referral(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        assert_false(decide(&f, GBG).flags & FLAG_REPEAT_REFERRAL);
        f.h.prior_referrals = 1;
        assert_true(decide(&f, GBG).flags & FLAG_REPEAT_REFERRAL);
        /* No history given: nothing known. */
        decision d;
        rules_decide(GBG, &f.r, NULL, f.now, &d);
        assert_false(d.flags & FLAG_REPEAT_REFERRAL);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
}

static void test_flag_deadline_passed_on_arrival(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        f.now = at("2025-03-12T09:59:59.999999Z");
        assert_false(decide(&f, GBG).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        f.now = at("2025-03-12T10:00:00Z");     /* the deadline itself has passed */
        decision d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_true(d.flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        f.now = at("2025-04-01T00:00:00Z");
        assert_true(decide(&f, GBG).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        /* DS 2024:30 runs 24 h. */
        f.now = at("2025-03-11T10:00:00Z");
        assert_true(decide(&f, DS).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        assert_false(decide(&f, GBG).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        /* Not for NOT_ELIGIBLE. */
        clear_concerns(&f);
        f.now = at("2026-01-01T00:00:00Z");
        assert_false(decide(&f, GBG).flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
}

static void test_all_flags_at_once(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        f.r.n_guardians = 0;
        set_incident(&f, at("2025-01-01T00:00:00Z"));
        f.h.prior_referrals = 2;
        f.now = at("2025-03-20T00:00:00Z");
        decision d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(d.flags, FLAG_ALL);
}

static void test_summon_guardians(void **state) {
        (void)state;
        fixture f;
        init(&f, 2007, 3, 11);
        decision d = decide(&f, DS);
        assert_int_equal(d.age, 17);
        assert_true(d.summon_guardians);
        init(&f, 2007, 3, 10);
        d = decide(&f, DS);
        assert_int_equal(d.age, 18);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_false(d.summon_guardians);
        f.subject.identity_number = (char *)"";
        assert_false(decide(&f, DS).summon_guardians);
}

static void test_decision_fields(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 5, 17);
        set_incident(&f, at("2025-03-08T18:00:00Z"));
        decision d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(d.reasons, 0);
        assert_int_equal(d.flags, FLAG_UNDER_15);
        assert_int_equal(d.marks, MARK_SUSPECTED_CRIME | MARK_OFFENCE_LISTED | MARK_IMPRISONABLE_OFFENCE);
        assert_int_equal(d.age, 12);
        assert_int_equal(d.birth.year, 2012);
        assert_int_equal(d.birth.month, 5);
        assert_int_equal(d.birth.day, 17);
        assert_int_equal(d.report_date.year, 2025);
        assert_int_equal(d.report_date.month, 3);
        assert_int_equal(d.report_date.day, 10);
        assert_int_equal(d.id.status, IDENTITY_VALID);
        char normalised[64];
        snprintf(normalised, sizeof normalised, "%.8s%s", f.ident, f.ident + 9);     /* without the '-' */
        assert_string_equal(d.id.normalised, normalised);
        assert_int_equal(d.deadline, at("2025-03-12T10:00:00Z"));
        assert_int_equal(d.deadline_kind, DEADLINE_CONVERSATION);
        assert_int_equal(d.protective_assessment_due, 0);
        assert_true(d.summon_guardians);
        assert_ptr_equal(d.profile, GBG);
}

/* ---- overrides ---- */

static void test_profile_overrides_change_decisions(void **state) {
        (void)state;
        fixture f;
        profile p = *GBG;
        init(&f, 2007, 3, 10);                  /* 18 today */
        assert_decision(decide(&f, &p), OUTCOME_NOT_ELIGIBLE, REASON_ABOVE_MAX_AGE);
        assert_int_equal(profile_set(&p, "max_age", "18"), 0);
        assert_eligible(decide(&f, &p), &p, at("2025-03-10T10:00:00Z"));
        assert_int_equal(profile_set(&p, "limit_hours", "72"), 0);
        assert_int_equal(decide(&f, &p).deadline, at("2025-03-13T10:00:00Z"));
        assert_int_equal(profile_set(&p, "adult_age", "19"), 0);
        assert_true(decide(&f, &p).summon_guardians);
        assert_int_equal(profile_set(&p, "criminal_responsibility_age", "19"), 0);
        assert_true(decide(&f, &p).flags & FLAG_UNDER_15);
        f.r.acute_risk = true;
        assert_int_equal(profile_set(&p, "protective_assessment_hours", "12"), 0);
        assert_int_equal(decide(&f, &p).protective_assessment_due, at("2025-03-10T22:00:00Z"));
        f.r.acute_risk = false;
        set_incident(&f, at("2025-03-02T10:00:00Z"));
        assert_false(decide(&f, &p).flags & FLAG_LATE_REFERRAL);
        assert_int_equal(profile_set(&p, "late_referral_days", "7"), 0);
        assert_true(decide(&f, &p).flags & FLAG_LATE_REFERRAL);
        f.h.prior_qualifying = 1;
        f.h.prior_referrals = 1;
        assert_int_equal(decide(&f, &p).outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(profile_set(&p, "first_time", "yes"), 0);
        assert_decision(decide(&f, &p), OUTCOME_NOT_ELIGIBLE, REASON_NOT_FIRST_SUSPICION);
        assert_int_equal(profile_set(&p, "first_time", "no"), 0);
        assert_int_equal(decide(&f, &p).outcome, OUTCOME_ELIGIBLE);
        /* The built-in stays as it was. */
        assert_int_equal(GBG->max_age, 17);
        assert_int_equal(GBG->limit, 48 * USEC_PER_HOUR);
}

/* ---- codes ---- */

static void test_codes(void **state) {
        (void)state;
        assert_string_equal(decision_outcome_code(OUTCOME_ELIGIBLE), "ELIGIBLE");
        assert_string_equal(decision_outcome_code(OUTCOME_NOT_ELIGIBLE), "NOT_ELIGIBLE");
        assert_string_equal(decision_outcome_code(OUTCOME_DEFERRED), "DEFERRED");
        assert_string_equal(decision_outcome_code(OUTCOME_MANUAL_REVIEW), "MANUAL_REVIEW");
        for (int o = OUTCOME_ELIGIBLE; o <= OUTCOME_MANUAL_REVIEW; o++)
                assert_int_equal(decision_outcome_from_code(decision_outcome_code((decision_outcome)o)), o);
        assert_int_equal(decision_outcome_from_code("eligible"), -EINVAL);
        assert_int_equal(decision_outcome_from_code(""), -EINVAL);
        assert_int_equal(decision_outcome_from_code(NULL), -EINVAL);
        assert_string_equal(deadline_kind_code(DEADLINE_NONE), "");
        assert_string_equal(deadline_kind_code(DEADLINE_CONVERSATION), "CONVERSATION");
        assert_string_equal(deadline_kind_code(DEADLINE_SUMMONS), "SUMMONS");
        /* Numbers as in the proto. */
        assert_int_equal(OUTCOME_ELIGIBLE, ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE);
        assert_int_equal(OUTCOME_MANUAL_REVIEW, ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_MANUAL_REVIEW);
        assert_int_equal(DEADLINE_SUMMONS, ALLVARSSAMTAL__V1__DEADLINE_KIND__DEADLINE_KIND_SUMMONS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_deferrals),
                cmocka_unit_test(test_deadline_after_deferral),
                cmocka_unit_test(test_exactly_48_hours_across_dst),
                cmocka_unit_test(test_flag_contact_missing),
                cmocka_unit_test(test_flag_late_referral),
                cmocka_unit_test(test_flag_under_15),
                cmocka_unit_test(test_flag_repeat_referral),
                cmocka_unit_test(test_flag_deadline_passed_on_arrival),
                cmocka_unit_test(test_all_flags_at_once),
                cmocka_unit_test(test_summon_guardians),
                cmocka_unit_test(test_decision_fields),
                cmocka_unit_test(test_profile_overrides_change_decisions),
                cmocka_unit_test(test_codes),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
