/* The rules engine: every step of docs/domain.md "Decision", every row of its
 * profile and flag tables ("Policy profiles", "Flags"), for each of the four profiles, and the edges. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "profiles.h"
#include "rules.h"
#include "allvarssamtal/v1/decision.pb-c.h"

/* ---- a referral under construction ---- */

typedef struct fixture {
        PoliceReferral r;
        Allvarssamtal__V1__Person subject;
        Google__Protobuf__Timestamp reported, incident;
        Allvarssamtal__V1__Guardian g[4];
        Allvarssamtal__V1__Guardian *gp[4];
        Allvarssamtal__V1__Concern concerns[4];
        Allvarssamtal__V1__Offence o[4];
        Allvarssamtal__V1__Offence *op[4];
        char ident[32], birth[16];
        rules_history h;
        usec_t now;
} fixture;

static usec_t at(const char *s) {
        usec_t t;
        assert_int_equal(clock_parse_rfc3339(s, &t), 0);
        return t;
}

static void set_time(Google__Protobuf__Timestamp *ts, usec_t t) {
        ts->seconds = t / USEC_PER_SEC;
        ts->nanos = (int32_t)(t % USEC_PER_SEC * 1000);
}


/* The subject's personnummer, YYYYMMDD-NNNC with a right check digit. */
static void set_pnr(fixture *f, int y, int m, int d) {
        char nine[40];
        snprintf(nine, sizeof nine, "%02d%02d%02d%03d", y % 100, m, d, 238);
        snprintf(f->ident, sizeof f->ident, "%04d%02d%02d-%03d%d", y, m, d, 238, harness_luhn_digit(nine));
        f->subject.identity_number = f->ident;
}

static void set_birth_date(fixture *f, const char *s) {
        snprintf(f->birth, sizeof f->birth, "%s", s);
        f->subject.birth_date = f->birth;
}

static void add_concern(fixture *f, Allvarssamtal__V1__Concern c) {
        f->concerns[f->r.n_concerns++] = c;
        f->r.concerns = f->concerns;
}

static void add_offence(fixture *f, bool imprisonable) {
        size_t i = f->r.n_offences++;
        f->o[i] = (Allvarssamtal__V1__Offence)ALLVARSSAMTAL__V1__OFFENCE__INIT;
        f->o[i].code = (char *)(imprisonable ? "BRB 8:1" : "LOV 1");
        f->o[i].severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY;
        f->o[i].imprisonable = imprisonable;
        f->op[i] = &f->o[i];
        f->r.offences = f->op;
}

static void add_guardian(fixture *f, const char *phone) {
        size_t i = f->r.n_guardians++;
        f->g[i] = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        f->g[i].name = (char *)"Förälder";
        f->g[i].phone = (char *)phone;
        f->gp[i] = &f->g[i];
        f->r.guardians = f->gp;
}

static void set_incident(fixture *f, usec_t t) {
        set_time(&f->incident, t);
        f->r.incident_at = &f->incident;
}

/* A referral reported 2025-03-10T10:00:00Z (a Monday, CET) about a child born
 * on `birth`, with a guardian's phone, a suspected imprisonable crime, nothing
 * else. Every profile finds it eligible for ages it covers. */
static void init(fixture *f, int by, int bm, int bd) {
        memset(f, 0, sizeof *f);
        f->r = (PoliceReferral)ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        f->subject = (Allvarssamtal__V1__Person)ALLVARSSAMTAL__V1__PERSON__INIT;
        f->reported = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->incident = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->r.referral_id = (char *)"PM-1";
        set_time(&f->reported, at("2025-03-10T10:00:00Z"));
        f->r.reported_at = &f->reported;
        f->r.subject = &f->subject;
        set_pnr(f, by, bm, bd);
        add_guardian(f, "070-123 45 67");
        add_concern(f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        add_offence(f, true);
        f->now = at("2025-03-10T10:05:00Z");
}

static void reported(fixture *f, const char *s) {
        set_time(&f->reported, at(s));
}

static void clear_concerns(fixture *f) {
        f->r.n_concerns = 0;
        f->r.n_offences = 0;
}

static decision decide(const fixture *f, const profile *p) {
        decision d;
        memset(&d, 0xa5, sizeof d);     /* rules_decide must set every field */
        rules_decide(p, &f->r, &f->h, f->now, &d);
        return d;
}

static const profile *P(const char *name) {
        const profile *p = profiles_find(name);
        assert_non_null(p);
        return p;
}

#define GBG P("goteborg-motion-2024")
#define STHLM P("stockholm-2019")
#define DS P("ds-2024-30")
#define TUTI P("trollhattan-tuti")

static void assert_decision(decision d, decision_outcome o, uint32_t reasons) {
        if (d.outcome != o || d.reasons != reasons)
                fail_msg("outcome %s reasons 0x%x, expected %s 0x%x", decision_outcome_code(d.outcome), d.reasons,
                         decision_outcome_code(o), reasons);
}

static void assert_eligible(decision d, const profile *p, usec_t reported_at) {
        assert_decision(d, OUTCOME_ELIGIBLE, 0);
        assert_int_equal(d.deadline, reported_at + p->limit);
        assert_int_equal(d.deadline_kind, p->deadline_kind);
        assert_ptr_equal(d.profile, p);
}

static void assert_no_deadline(decision d) {
        assert_int_equal(d.deadline, 0);
        assert_int_equal(d.deadline_kind, DEADLINE_NONE);
}

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
