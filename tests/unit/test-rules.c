/* The rules engine: every step of docs/domain.md "Decision" up to the
 * first-time rule (identity, age, qualifying concern), every row of its
 * profile table ("Policy profiles") for each of the four profiles, and the
 * edges. Deferrals, deadlines, flags, overrides and codes: test-rules-flags.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>

#include "rules_fixture.h"

/* ---- marks ---- */

static void test_marks(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        clear_concerns(&f);
        assert_int_equal(rules_marks(&f.r), 0);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT);
        assert_int_equal(rules_marks(&f.r), MARK_INAPPROPRIATE_ENVIRONMENT);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR);
        assert_int_equal(rules_marks(&f.r), MARK_INAPPROPRIATE_ENVIRONMENT | MARK_CRIMINAL_BEHAVIOUR);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_UNSPECIFIED);
        assert_int_equal(rules_marks(&f.r), MARK_INAPPROPRIATE_ENVIRONMENT | MARK_CRIMINAL_BEHAVIOUR);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        assert_int_equal(rules_marks(&f.r), MARK_SUSPECTED_CRIME);
        /* A suspected crime is the concern or at least one listed offence. */
        clear_concerns(&f);
        add_offence(&f, false);
        assert_int_equal(rules_marks(&f.r), MARK_SUSPECTED_CRIME | MARK_OFFENCE_LISTED);
        add_offence(&f, true);
        assert_int_equal(rules_marks(&f.r), MARK_SUSPECTED_CRIME | MARK_OFFENCE_LISTED | MARK_IMPRISONABLE_OFFENCE);
}

/* ---- step 1: identity and age ---- */

static void test_identity_invalid(void **state) {
        (void)state;
        fixture f;
        for (size_t i = 0; i < profiles_builtin_count(); i++) {
                const profile *p = profiles_builtin(i);
                init(&f, 2012, 1, 1);
                f.ident[12] = f.ident[12] == '9' ? '0' : (char)(f.ident[12] + 1);        /* wrong check digit */
                decision d = decide(&f, p);
                assert_decision(d, OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_INVALID);
                assert_int_equal(d.age, -1);
                assert_int_equal(d.id.status, IDENTITY_INVALID);
                assert_no_deadline(d);
                assert_false(d.summon_guardians);
                /* Flags that need the age do not apply; CONTACT_MISSING neither. */
                f.r.n_guardians = 0;
                d = decide(&f, p);
                assert_int_equal(d.flags, 0);

                /* An impossible date with a right check digit. */
                init(&f, 2012, 2, 30);
                assert_decision(decide(&f, p), OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_INVALID);
                /* A birth_date that is not a date does not help. */
                set_birth_date(&f, "2012-02-30");
                assert_decision(decide(&f, p), OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_INVALID);
                set_birth_date(&f, "12/03/2012");
                assert_decision(decide(&f, p), OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_INVALID);
        }
}

static void test_identity_invalid_birth_date_usable(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 2, 30);
        set_birth_date(&f, "2012-03-10");
        decision d = decide(&f, GBG);
        assert_eligible(d, GBG, at("2025-03-10T10:00:00Z"));
        assert_int_equal(d.age, 13);
        assert_int_equal(d.id.status, IDENTITY_INVALID);
        assert_int_equal(d.birth.year, 2012);
        assert_int_equal(d.birth.month, 3);
        assert_int_equal(d.birth.day, 10);
}

static void test_age_unknown(void **state) {
        (void)state;
        fixture f;
        for (size_t i = 0; i < profiles_builtin_count(); i++) {
                const profile *p = profiles_builtin(i);
                init(&f, 2012, 1, 1);
                f.subject.identity_number = (char *)"";
                decision d = decide(&f, p);
                assert_decision(d, OUTCOME_MANUAL_REVIEW, REASON_AGE_UNKNOWN);
                assert_int_equal(d.age, -1);
                assert_no_deadline(d);
                assert_int_equal(d.id.status, IDENTITY_ABSENT);
                /* A birth_date that is not usable is as good as none. */
                set_birth_date(&f, "2012-13-01");
                assert_decision(decide(&f, p), OUTCOME_MANUAL_REVIEW, REASON_AGE_UNKNOWN);
                set_birth_date(&f, "2025-03-11");       /* after the report */
                assert_decision(decide(&f, p), OUTCOME_MANUAL_REVIEW, REASON_AGE_UNKNOWN);
                set_birth_date(&f, "2012-01-01");
                d = decide(&f, p);
                assert_int_equal(d.age, 13);
                assert_true(d.outcome == OUTCOME_ELIGIBLE || d.outcome == OUTCOME_NOT_ELIGIBLE);
        }
}

static void test_identity_mismatch(void **state) {
        (void)state;
        fixture f;
        for (size_t i = 0; i < profiles_builtin_count(); i++) {
                const profile *p = profiles_builtin(i);
                init(&f, 2012, 3, 10);
                set_birth_date(&f, "2012-03-11");
                decision d = decide(&f, p);
                assert_decision(d, OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_MISMATCH);
                assert_int_equal(d.age, -1);
                assert_no_deadline(d);
                /* Agreeing: the identity number decides. */
                set_birth_date(&f, "2012-03-10");
                d = decide(&f, p);
                assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
                assert_int_equal(d.age, 13);
        }
}

static void test_coordination_number_agrees_with_birth_date(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 3, 10 + 60);
        set_birth_date(&f, "2012-03-10");
        decision d = decide(&f, GBG);
        assert_eligible(d, GBG, at("2025-03-10T10:00:00Z"));
        assert_true(d.id.coordination_number);
        assert_int_equal(d.age, 13);
}

static void test_ten_digit_numbers(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 3, 10);
        /* "20120310-2385" -> "120310-2385": the century from the report date. */
        memmove(f.ident, f.ident + 2, strlen(f.ident + 2) + 1);
        decision d = decide(&f, GBG);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(d.age, 13);
        /* '+': 113 years old. */
        f.ident[6] = '+';
        d = decide(&f, STHLM);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_ABOVE_MAX_AGE);
        assert_int_equal(d.age, 113);
        /* Without separator. */
        memmove(f.ident + 6, f.ident + 7, 5);
        d = decide(&f, GBG);
        assert_int_equal(d.age, 13);
}

static void test_manual_review_keeps_protective_assessment(void **state) {
        (void)state;
        fixture f;
        init(&f, 2012, 1, 1);
        f.subject.identity_number = (char *)"";
        f.r.acute_risk = true;
        decision d = decide(&f, GBG);
        assert_decision(d, OUTCOME_MANUAL_REVIEW, REASON_AGE_UNKNOWN);
        assert_int_equal(d.protective_assessment_due, at("2025-03-11T10:00:00Z"));
}

/* SoL 11 kap. 1 a § binds for a child: a person of 18 or more with acute risk
 * is DEFERRED (assessed first) but has no due time; 17 has one. */
static void test_adult_acute_risk_no_due_time(void **state) {
        (void)state;
        fixture f;
        init(&f, 2006, 3, 10);                  /* 19 on the report date */
        f.r.acute_risk = true;
        decision d = decide(&f, STHLM);
        assert_int_equal(d.age, 19);
        assert_decision(d, OUTCOME_DEFERRED, REASON_PROTECTIVE_ASSESSMENT_FIRST);
        assert_int_equal(d.protective_assessment_due, 0);
        init(&f, 2007, 3, 10);                  /* 18 that day */
        f.r.acute_risk = true;
        d = decide(&f, STHLM);
        assert_int_equal(d.age, 18);
        assert_int_equal(d.protective_assessment_due, 0);
        init(&f, 2007, 3, 11);                  /* 17, 18 tomorrow */
        f.r.acute_risk = true;
        d = decide(&f, STHLM);
        assert_int_equal(d.age, 17);
        assert_int_equal(d.protective_assessment_due, at("2025-03-11T10:00:00Z"));
        /* Out of the profile's ages and adult (goteborg 10-17): NOT_ELIGIBLE, none due. */
        init(&f, 2006, 3, 10);
        f.r.acute_risk = true;
        d = decide(&f, GBG);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_ABOVE_MAX_AGE);
        assert_int_equal(d.protective_assessment_due, 0);
}

/* ---- step 2: ages ---- */

/* Born `years` years before the report date (2025-03-10), to the day, or a day later. */
static void born_years_before(fixture *f, int years, bool day_later) {
        set_pnr(f, 2025 - years, 3, day_later ? 11 : 10);
}

static void check_age_limits(const profile *p) {
        fixture f;
        usec_t rep = at("2025-03-10T10:00:00Z");
        /* The birthday on the report date counts: min_age today is in. */
        init(&f, 2000, 1, 1);
        born_years_before(&f, p->min_age, false);
        decision d = decide(&f, p);
        assert_eligible(d, p, rep);
        assert_int_equal(d.age, p->min_age);
        if (p->min_age > 0) {
                born_years_before(&f, p->min_age, true);         /* turns min_age tomorrow */
                d = decide(&f, p);
                assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_BELOW_MIN_AGE);
                assert_int_equal(d.age, p->min_age - 1);
                assert_no_deadline(d);
        }
        born_years_before(&f, p->max_age + 1, true);             /* turns max_age + 1 tomorrow */
        d = decide(&f, p);
        assert_eligible(d, p, rep);
        assert_int_equal(d.age, p->max_age);
        born_years_before(&f, p->max_age + 1, false);            /* turns max_age + 1 today */
        d = decide(&f, p);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_ABOVE_MAX_AGE);
        assert_int_equal(d.age, p->max_age + 1);
        assert_no_deadline(d);
}

static void test_age_limits_goteborg(void **state) {
        (void)state;
        assert_int_equal(GBG->min_age, 10);
        assert_int_equal(GBG->max_age, 17);
        check_age_limits(GBG);
}

static void test_age_limits_stockholm(void **state) {
        (void)state;
        assert_int_equal(STHLM->min_age, 0);
        assert_int_equal(STHLM->max_age, 20);
        check_age_limits(STHLM);
}

static void test_age_limits_ds(void **state) {
        (void)state;
        assert_int_equal(DS->min_age, 0);
        assert_int_equal(DS->max_age, 20);
        check_age_limits(DS);
}

static void test_age_limits_tuti(void **state) {
        (void)state;
        assert_int_equal(TUTI->min_age, 9);
        assert_int_equal(TUTI->max_age, 17);
        check_age_limits(TUTI);
}

/* Age on the Stockholm calendar: 23:30 UTC on 9 March is 10 March in Stockholm. */
static void test_age_on_stockholm_date(void **state) {
        (void)state;
        fixture f;
        init(&f, 2015, 3, 10);
        reported(&f, "2025-03-09T23:30:00Z");
        f.now = at("2025-03-09T23:35:00Z");
        decision d = decide(&f, GBG);
        assert_int_equal(d.report_date.day, 10);
        assert_int_equal(d.age, 10);
        assert_eligible(d, GBG, at("2025-03-09T23:30:00Z"));
        /* Half an hour earlier it is still 9 March: nine years old. */
        reported(&f, "2025-03-09T22:59:59Z");
        d = decide(&f, GBG);
        assert_int_equal(d.report_date.day, 9);
        assert_int_equal(d.age, 9);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_BELOW_MIN_AGE);
}

static void test_leap_day_birthday(void **state) {
        (void)state;
        fixture f;
        /* Born 2008-02-29: 17 from 1 March 2025, so still eligible in Göteborg on 28 February. */
        init(&f, 2008, 2, 29);
        reported(&f, "2025-02-28T10:00:00Z");
        decision d = decide(&f, GBG);
        assert_int_equal(d.age, 16);
        reported(&f, "2025-03-01T10:00:00Z");
        d = decide(&f, GBG);
        assert_int_equal(d.age, 17);
        assert_int_equal(d.outcome, OUTCOME_ELIGIBLE);
        /* Born 2007-02-29 does not exist. */
        init(&f, 2007, 2, 29);
        assert_decision(decide(&f, GBG), OUTCOME_MANUAL_REVIEW, REASON_IDENTITY_INVALID);
}

/* ---- step 3: qualifying concern, first time, imprisonable ---- */

static void test_qualifying_goteborg(void **state) {
        (void)state;
        fixture f;
        static const Allvarssamtal__V1__Concern each[] = {
                ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT,
                ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR,
                ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME,
        };
        /* Any of the three concerns qualifies on its own. */
        for (size_t i = 0; i < 3; i++) {
                init(&f, 2012, 1, 1);
                clear_concerns(&f);
                add_concern(&f, each[i]);
                assert_eligible(decide(&f, GBG), GBG, at("2025-03-10T10:00:00Z"));
        }
        /* So does a listed offence, imprisonable or not (a suspected crime). */
        init(&f, 2012, 1, 1);
        clear_concerns(&f);
        add_offence(&f, false);
        assert_eligible(decide(&f, GBG), GBG, at("2025-03-10T10:00:00Z"));
        /* Nothing: no qualifying concern. */
        clear_concerns(&f);
        decision d = decide(&f, GBG);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        assert_no_deadline(d);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_UNSPECIFIED);
        assert_decision(decide(&f, GBG), OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        /* No first-time rule: earlier qualifying referrals do not matter. */
        init(&f, 2012, 1, 1);
        f.h = (rules_history){.prior_referrals = 3, .prior_qualifying = 3};
        d = decide(&f, GBG);
        assert_eligible(d, GBG, at("2025-03-10T10:00:00Z"));
        assert_true(d.flags & FLAG_REPEAT_REFERRAL);
}

static void test_qualifying_stockholm(void **state) {
        (void)state;
        fixture f;
        usec_t rep = at("2025-03-10T10:00:00Z");
        init(&f, 2012, 1, 1);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        assert_eligible(decide(&f, STHLM), STHLM, rep);
        clear_concerns(&f);
        add_offence(&f, false);
        assert_eligible(decide(&f, STHLM), STHLM, rep);
        /* Environment or criminal behaviour without a suspected crime does not qualify. */
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR);
        assert_decision(decide(&f, STHLM), OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        /* First time only. */
        init(&f, 2012, 1, 1);
        f.h = (rules_history){.prior_referrals = 1, .prior_qualifying = 1};
        decision d = decide(&f, STHLM);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_NOT_FIRST_SUSPICION);
        assert_no_deadline(d);
        assert_true(d.flags & FLAG_REPEAT_REFERRAL);
        /* Earlier referrals that did not qualify do not count. */
        f.h = (rules_history){.prior_referrals = 2, .prior_qualifying = 0};
        d = decide(&f, STHLM);
        assert_eligible(d, STHLM, rep);
        assert_true(d.flags & FLAG_REPEAT_REFERRAL);
        /* Both reasons of the step are listed. */
        clear_concerns(&f);
        f.h.prior_qualifying = 1;
        assert_decision(decide(&f, STHLM), OUTCOME_NOT_ELIGIBLE,
                        REASON_NO_QUALIFYING_CONCERN | REASON_NOT_FIRST_SUSPICION);
}

static void test_qualifying_ds(void **state) {
        (void)state;
        fixture f;
        usec_t rep = at("2025-03-10T10:00:00Z");
        init(&f, 2012, 1, 1);
        decision d = decide(&f, DS);
        assert_eligible(d, DS, rep);
        assert_int_equal(d.deadline_kind, DEADLINE_SUMMONS);
        assert_int_equal(d.deadline, at("2025-03-11T10:00:00Z"));
        /* A suspected crime without any listed offence: not an imprisonable offence. */
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        assert_decision(decide(&f, DS), OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        /* Offences, none imprisonable. */
        add_offence(&f, false);
        add_offence(&f, false);
        assert_decision(decide(&f, DS), OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN | REASON_NOT_IMPRISONABLE);
        /* One imprisonable among them is enough. */
        add_offence(&f, true);
        assert_eligible(decide(&f, DS), DS, rep);
        /* First time only. */
        f.h = (rules_history){.prior_referrals = 1, .prior_qualifying = 1};
        assert_decision(decide(&f, DS), OUTCOME_NOT_ELIGIBLE, REASON_NOT_FIRST_SUSPICION);
        /* Everything at once. */
        clear_concerns(&f);
        add_offence(&f, false);
        assert_decision(decide(&f, DS), OUTCOME_NOT_ELIGIBLE,
                        REASON_NO_QUALIFYING_CONCERN | REASON_NOT_FIRST_SUSPICION | REASON_NOT_IMPRISONABLE);
        /* Other profiles never say NOT_IMPRISONABLE. */
        f.h = (rules_history){0};
        assert_eligible(decide(&f, STHLM), STHLM, rep);
        assert_eligible(decide(&f, GBG), GBG, rep);
}

static void test_qualifying_tuti(void **state) {
        (void)state;
        fixture f;
        usec_t rep = at("2025-03-10T10:00:00Z");
        init(&f, 2012, 1, 1);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR);
        decision d = decide(&f, TUTI);
        assert_eligible(d, TUTI, rep);
        assert_int_equal(d.deadline, at("2025-03-24T10:00:00Z"));      /* 14 days, in exact hours */
        assert_int_equal(d.deadline_kind, DEADLINE_CONVERSATION);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        assert_eligible(decide(&f, TUTI), TUTI, rep);
        clear_concerns(&f);
        add_offence(&f, false);
        assert_eligible(decide(&f, TUTI), TUTI, rep);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT);
        assert_decision(decide(&f, TUTI), OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        clear_concerns(&f);
        add_concern(&f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR);
        f.h = (rules_history){.prior_referrals = 4, .prior_qualifying = 1};
        assert_decision(decide(&f, TUTI), OUTCOME_NOT_ELIGIBLE, REASON_NOT_FIRST_SUSPICION);
}

/* The step order: age before concern, concern before deferral. */
static void test_step_order(void **state) {
        (void)state;
        fixture f;
        init(&f, 2020, 1, 1);                   /* five years old */
        clear_concerns(&f);
        f.r.acute_risk = true;
        f.r.preliminary_investigation = true;
        f.h = (rules_history){.prior_referrals = 1, .prior_qualifying = 1};
        assert_decision(decide(&f, GBG), OUTCOME_NOT_ELIGIBLE, REASON_BELOW_MIN_AGE);
        init(&f, 2012, 1, 1);
        clear_concerns(&f);
        f.r.acute_risk = true;
        f.r.preliminary_investigation = true;
        decision d = decide(&f, GBG);
        assert_decision(d, OUTCOME_NOT_ELIGIBLE, REASON_NO_QUALIFYING_CONCERN);
        /* The protective assessment is due whatever the outcome. */
        assert_int_equal(d.protective_assessment_due, at("2025-03-11T10:00:00Z"));
        assert_no_deadline(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_marks),
                cmocka_unit_test(test_identity_invalid),
                cmocka_unit_test(test_identity_invalid_birth_date_usable),
                cmocka_unit_test(test_age_unknown),
                cmocka_unit_test(test_identity_mismatch),
                cmocka_unit_test(test_coordination_number_agrees_with_birth_date),
                cmocka_unit_test(test_ten_digit_numbers),
                cmocka_unit_test(test_manual_review_keeps_protective_assessment),
                cmocka_unit_test(test_adult_acute_risk_no_due_time),
                cmocka_unit_test(test_age_limits_goteborg),
                cmocka_unit_test(test_age_limits_stockholm),
                cmocka_unit_test(test_age_limits_ds),
                cmocka_unit_test(test_age_limits_tuti),
                cmocka_unit_test(test_age_on_stockholm_date),
                cmocka_unit_test(test_leap_day_birthday),
                cmocka_unit_test(test_qualifying_goteborg),
                cmocka_unit_test(test_qualifying_stockholm),
                cmocka_unit_test(test_qualifying_ds),
                cmocka_unit_test(test_qualifying_tuti),
                cmocka_unit_test(test_step_order),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
