/* The case state machine (daemon/lifecycle.c) along particular paths: the
 * deferral arithmetic in exact hours, overrides, withdrawals, the case as a
 * decision opens it, names, descriptions and what is overdue. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "lifecycle_fixture.h"

/* ---- particular paths ---- */

/* docs/domain.md "Decision", step 4: both deferrals; ELIGIBLE only after the last, its limit from that moment. */
static void test_deferral_both_pending(void **state) {
        (void)state;
        for (int order = 0; order <= 1; order++) {
                case_state c = mk_case(CASE_DEFERRED);
                c.awaiting_assessment = c.awaiting_clearance = true;
                c.protective_assessment_due = T0 + H(24);
                event first, second;
                event_init(&first, order ? OUTCOME_KIND_CLEARED : OUTCOME_KIND_ASSESSMENT_RECORDED, T0 + H(5));
                event_init(&second, order ? OUTCOME_KIND_ASSESSMENT_RECORDED : OUTCOME_KIND_CLEARED,
                           T0 + H(76) + 17 * USEC_PER_SEC);
                lifecycle_result r1, r2;
                lifecycle_apply(&c, &first.ev, gbg(), T0 + H(5), &r1);
                assert_false(r1.rejected);
                assert_int_equal(r1.after.state, CASE_DEFERRED);
                assert_int_equal(r1.after.outcome, OUTCOME_DEFERRED);
                assert_int_equal(r1.after.deadline, 0);
                assert_false(r1.send_scheduling);
                assert_string_equal(r1.action, order ? "CLEARED" : "ASSESSMENT_RECORDED");
                assert_true(order ? r1.after.awaiting_assessment : r1.after.awaiting_clearance);

                /* The same event again would be refused now: nothing is pending of that kind. */
                lifecycle_result again;
                lifecycle_apply(&r1.after, &first.ev, gbg(), T0 + H(6), &again);
                assert_true(again.rejected);

                lifecycle_apply(&r1.after, &second.ev, gbg(), T0 + H(77), &r2);
                assert_false(r2.rejected);
                assert_int_equal(r2.after.state, CASE_ELIGIBLE);
                assert_int_equal(r2.after.outcome, OUTCOME_ELIGIBLE);
                assert_false(r2.after.awaiting_assessment);
                assert_false(r2.after.awaiting_clearance);
                assert_int_equal(r2.after.protective_assessment_due, 0);
                /* 48 exact hours from the second event, to the microsecond, not from processing. */
                assert_int_equal(r2.after.deadline, T0 + H(76) + 17 * USEC_PER_SEC + H(48));
                assert_string_equal(r2.action, "BECAME_ELIGIBLE");
                assert_true(r2.send_scheduling);
        }
}

/* docs/domain.md "Policy profiles": 48 h after 2025-03-29T10:00:00Z is 2025-03-31T10:00:00Z, across the DST change. */
static void test_deferral_exact_hours_over_dst(void **state) {
        (void)state;
        usec_t at, want;
        assert_int_equal(clock_parse_rfc3339("2025-03-29T10:00:00Z", &at), 0);
        assert_int_equal(clock_parse_rfc3339("2025-03-31T10:00:00Z", &want), 0);
        case_state c = mk_case(CASE_DEFERRED);
        c.awaiting_clearance = true;
        event e;
        event_init(&e, OUTCOME_KIND_CLEARED, at);
        lifecycle_result r;
        lifecycle_apply(&c, &e.ev, gbg(), at + H(1), &r);
        assert_int_equal(r.after.deadline, want);

        /* Under a profile with another limit and kind (TUTI: 14 days; DS 2024:30: a summons in 24 h). */
        const profile *tuti = profiles_find("trollhattan-tuti");
        assert_non_null(tuti);
        lifecycle_apply(&c, &e.ev, tuti, at, &r);
        assert_int_equal(r.after.deadline, at + 14 * USEC_PER_DAY);
        const profile *ds = profiles_find("ds-2024-30");
        assert_non_null(ds);
        lifecycle_apply(&c, &e.ev, ds, at, &r);
        assert_int_equal(r.after.deadline, at + H(24));
        assert_int_equal(r.after.deadline_kind, DEADLINE_SUMMONS);
}

/* A NOT_ELIGIBLE referral has no case; a social worker's override opens one. */
static void test_override_opens_case(void **state) {
        (void)state;
        case_state none = mk_case(CASE_NONE);
        none.limit = 0;                 /* a referral has no case limit yet: the profile's */
        event e;
        override_init(&e, OUTCOME_ELIGIBLE, T0 + H(50));
        lifecycle_result r;
        lifecycle_apply(&none, &e.ev, gbg(), T0 + H(51), &r);
        assert_false(r.rejected);
        assert_int_equal(r.after.state, CASE_ELIGIBLE);
        assert_int_equal(r.after.outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(r.after.limit, H(48));
        assert_int_equal(r.after.deadline, T0 + H(98));
        assert_int_equal(r.after.closed_at, 0);
        assert_true(r.send_scheduling);
        assert_int_equal(r.assessment, OUTCOME_ELIGIBLE);

        /* The opened case then goes on like any other. */
        event s;
        event_init(&s, OUTCOME_KIND_SCHEDULED, T0 + H(60));
        lifecycle_result r2;
        lifecycle_apply(&r.after, &s.ev, gbg(), T0 + H(60), &r2);
        assert_false(r2.rejected);
        assert_int_equal(r2.after.state, CASE_SCHEDULED);

        /* Other events for a referral without a case are refused. */
        event h;
        event_init(&h, OUTCOME_KIND_HELD, T0 + H(50));
        lifecycle_apply(&none, &h.ev, gbg(), T0 + H(50), &r);
        expect_illegal(&r, "CONVERSATION_HELD", CASE_NONE);
}

static void test_override_needs_social_worker(void **state) {
        (void)state;
        const Allvarssamtal__V1__ActorKind others[] = {
                ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_DAEMON,
                ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE,
                ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE,
        };
        case_state c = mk_case(CASE_MANUAL_REVIEW);
        for (size_t i = 0; i < 3; i++) {
                event e;
                override_init(&e, OUTCOME_ELIGIBLE, T0 + H(1));
                e.actor.kind = others[i];
                lifecycle_result r;
                lifecycle_apply(&c, &e.ev, gbg(), T0 + H(1), &r);
                expect_illegal(&r, "OVERRIDE", CASE_MANUAL_REVIEW);
                assert_non_null(strstr(r.error.detail, "social worker"));
        }
        /* The reason never reaches the result (it goes to the audit only). */
        event e;
        override_init(&e, OUTCOME_ELIGIBLE, T0 + H(1));
        lifecycle_result r;
        lifecycle_apply(&c, &e.ev, gbg(), T0 + H(1), &r);
        assert_false(r.rejected);
        char desc[512];
        assert_int_equal(case_state_describe(&r.after, desc, sizeof desc), 0);
        assert_null(strstr(desc, "family"));
}

/* Overriding a DEFERRED case to ELIGIBLE leaves the assessment pending; recording it later is legal. */
static void test_override_keeps_pending_assessment(void **state) {
        (void)state;
        case_state c = mk_case(CASE_DEFERRED);
        c.awaiting_assessment = true;
        c.protective_assessment_due = T0 + H(24);
        event e;
        override_init(&e, OUTCOME_ELIGIBLE, T0 + H(2));
        lifecycle_result r;
        lifecycle_apply(&c, &e.ev, gbg(), T0 + H(2), &r);
        assert_int_equal(r.after.state, CASE_ELIGIBLE);
        assert_int_equal(r.after.deadline, T0 + H(50));
        assert_true(r.after.awaiting_assessment);

        event a;
        event_init(&a, OUTCOME_KIND_ASSESSMENT_RECORDED, T0 + H(20));
        lifecycle_result r2;
        lifecycle_apply(&r.after, &a.ev, gbg(), T0 + H(20), &r2);
        assert_false(r2.rejected);
        assert_int_equal(r2.after.state, CASE_ELIGIBLE);
        assert_int_equal(r2.after.deadline, T0 + H(50));    /* not moved: it was not deferred */
        assert_false(r2.send_scheduling);
}

static void test_reschedule_and_missing_time(void **state) {
        (void)state;
        case_state c = mk_case(CASE_SCHEDULED);
        event e;
        event_init(&e, OUTCOME_KIND_SCHEDULED, T0 + H(4));
        codec_timestamp_set(&e.scheduled, T0 + H(40));
        e.sched.police_attending = false;
        lifecycle_result r;
        lifecycle_apply(&c, &e.ev, gbg(), T0 + H(4), &r);
        assert_int_equal(r.after.scheduled_at, T0 + H(40));
        assert_false(r.after.police_attending);

        e.sched.scheduled_at = NULL;
        lifecycle_apply(&c, &e.ev, gbg(), T0 + H(4), &r);
        assert_true(r.rejected);
        assert_int_equal(r.error.reason, DLR_MISSING_FIELD);

        /* No change at all. */
        event n;
        event_init(&n, OUTCOME_KIND_NONE, T0);
        lifecycle_apply(&c, &n.ev, gbg(), T0, &r);
        assert_true(r.rejected);
        assert_int_equal(lifecycle_kind(&n.ev), OUTCOME_KIND_NONE);
        assert_int_equal(lifecycle_kind(NULL), OUTCOME_KIND_NONE);
}

static void test_open_from_decision(void **state) {
        (void)state;
        decision d = {0};
        d.profile = gbg();
        d.outcome = OUTCOME_DEFERRED;
        d.reasons = REASON_PROTECTIVE_ASSESSMENT_FIRST | REASON_PRELIMINARY_INVESTIGATION;
        d.protective_assessment_due = T0 + H(24);
        d.flags = FLAG_CONTACT_MISSING;
        case_state c;
        lifecycle_open(&d, &c);
        assert_int_equal(c.state, CASE_DEFERRED);
        assert_true(c.awaiting_assessment);
        assert_true(c.awaiting_clearance);
        assert_true(c.awaiting_contact);
        assert_int_equal(c.protective_assessment_due, T0 + H(24));
        assert_int_equal(c.deadline, 0);
        assert_int_equal(c.limit, H(48));

        d = (decision){0};
        d.profile = gbg();
        d.outcome = OUTCOME_ELIGIBLE;
        d.deadline = T0 + H(48);
        d.deadline_kind = DEADLINE_CONVERSATION;
        lifecycle_open(&d, &c);
        assert_int_equal(c.state, CASE_ELIGIBLE);
        assert_int_equal(c.deadline, T0 + H(48));
        assert_false(c.awaiting_assessment || c.awaiting_clearance || c.awaiting_contact);

        d.outcome = OUTCOME_MANUAL_REVIEW;
        d.deadline = 0;
        d.protective_assessment_due = T0 + H(24);
        lifecycle_open(&d, &c);
        assert_int_equal(c.state, CASE_MANUAL_REVIEW);
        assert_true(c.awaiting_assessment);

        /* An adult's assessment has no due time, and the DEFERRED case awaits it all the same. */
        d = (decision){0};
        d.profile = gbg();
        d.outcome = OUTCOME_DEFERRED;
        d.reasons = REASON_PROTECTIVE_ASSESSMENT_FIRST;
        lifecycle_open(&d, &c);
        assert_int_equal(c.state, CASE_DEFERRED);
        assert_true(c.awaiting_assessment);
        assert_int_equal(c.protective_assessment_due, 0);

        d.outcome = OUTCOME_NOT_ELIGIBLE;
        lifecycle_open(&d, &c);
        assert_int_equal(c.state, CASE_NONE);
        assert_int_equal(c.outcome, OUTCOME_NOT_ELIGIBLE);
        assert_false(case_state_closed(c.state));
}

/* Withdrawals: from every state, every kind of event (and every override outcome):
 * a withdrawal exactly when a request was in force (ELIGIBLE, SCHEDULED) and no
 * longer is, with the reason of the new state; a new request with its kind. */
static void test_withdrawals_every_state(void **state) {
        (void)state;
        static const outcome_kind kinds[] = {
                OUTCOME_KIND_SCHEDULED, OUTCOME_KIND_ASSESSMENT_RECORDED, OUTCOME_KIND_CLEARED,
                OUTCOME_KIND_HELD,      OUTCOME_KIND_DECLINED,            OUTCOME_KIND_CANCELLED,
                OUTCOME_KIND_CONTACT_SUPPLIED,
        };
        static const decision_outcome overrides[] = {OUTCOME_ELIGIBLE, OUTCOME_NOT_ELIGIBLE, OUTCOME_DEFERRED,
                                                     OUTCOME_MANUAL_REVIEW};
        unsigned withdrawn = 0;
        for (size_t i = 0; i < N_ALL; i++) {
                for (size_t k = 0; k < sizeof kinds / sizeof *kinds + 4; k++) {
                        for (int dns = 0; dns < 2; dns++) {
                                case_state before = mk_case(all_states[i]);
                                before.awaiting_assessment = true;
                                before.awaiting_clearance = true;
                                event e;
                                if (k < sizeof kinds / sizeof *kinds)
                                        event_init(&e, kinds[k], T0 + H(3));
                                else
                                        override_init(&e, overrides[k - sizeof kinds / sizeof *kinds], T0 + H(3));
                                e.assessment.do_not_summon = dns;
                                lifecycle_result r;
                                lifecycle_apply(&before, &e.ev, gbg(), T0 + H(3), &r);
                                bool was = before.state == CASE_ELIGIBLE || before.state == CASE_SCHEDULED;
                                bool is = r.after.state == CASE_ELIGIBLE || r.after.state == CASE_SCHEDULED;
                                if (r.rejected || !was || is) {
                                        assert_int_equal(r.withdrawal, WITHDRAWAL_NONE);
                                } else {
                                        withdrawal_reason want;
                                        switch (r.after.state) {
                                        case CASE_CANCELLED: want = WITHDRAWAL_CANCELLED; break;
                                        case CASE_DECLINED: want = WITHDRAWAL_FAMILY_DECLINED; break;
                                        case CASE_HELD: want = WITHDRAWAL_HELD; break;
                                        case CASE_NOT_ELIGIBLE: want = WITHDRAWAL_NOT_ELIGIBLE; break;
                                        default:
                                                want = k < sizeof kinds / sizeof *kinds &&
                                                                       kinds[k] == OUTCOME_KIND_ASSESSMENT_RECORDED
                                                               ? WITHDRAWAL_PROTECTIVE_ASSESSMENT
                                                               : WITHDRAWAL_ON_HOLD;
                                        }
                                        assert_int_equal(r.withdrawal, want);
                                        assert_false(r.send_scheduling);
                                        withdrawn++;
                                }
                                if (r.send_scheduling)
                                        assert_true(r.scheduling_kind >= SCHEDULING_CONTACT_DETAILS_UPDATED &&
                                                    r.scheduling_kind <= SCHEDULING_OVERRIDDEN);
                        }
                }
        }
        /* ELIGIBLE and SCHEDULED, each: held, declined, cancelled, three overrides,
         * and an assessment with do_not_summon; twice over (the do_not_summon loop),
         * less the assessment without it. */
        assert_int_equal(withdrawn, 2 * (2 * 6 + 1));
}

/* The protective assessment that finds the family must not be summoned: MANUAL_REVIEW,
 * no request; a request in force is withdrawn; without the finding, as before. */
static void test_assessment_do_not_summon(void **state) {
        (void)state;
        lifecycle_result r;
        event e;
        case_state deferred = mk_case(CASE_DEFERRED);
        deferred.awaiting_assessment = true;
        event_init(&e, OUTCOME_KIND_ASSESSMENT_RECORDED, T0 + H(5));
        e.assessment.do_not_summon = true;
        lifecycle_apply(&deferred, &e.ev, gbg(), T0 + H(5), &r);
        assert_false(r.rejected);
        assert_int_equal(r.after.state, CASE_MANUAL_REVIEW);
        assert_false(r.send_scheduling);
        assert_int_equal(r.withdrawal, WITHDRAWAL_NONE); /* nothing was requested */

        case_state eligible = mk_case(CASE_ELIGIBLE);
        eligible.awaiting_assessment = true;
        lifecycle_apply(&eligible, &e.ev, gbg(), T0 + H(5), &r);
        assert_int_equal(r.after.state, CASE_MANUAL_REVIEW);
        assert_int_equal(r.withdrawal, WITHDRAWAL_PROTECTIVE_ASSESSMENT);
        assert_int_equal(r.after.deadline, eligible.deadline);

        e.assessment.do_not_summon = false;
        lifecycle_apply(&deferred, &e.ev, gbg(), T0 + H(5), &r);
        assert_int_equal(r.after.state, CASE_ELIGIBLE);
        assert_true(r.send_scheduling);
        assert_int_equal(r.scheduling_kind, SCHEDULING_DEFERRAL_RESOLVED);
}

static void test_names(void **state) {
        (void)state;
        for (size_t i = 0; i < N_ALL; i++) {
                const char *n = case_state_code_name(all_states[i]);
                assert_int_equal(case_state_code_from_name(n), (int)all_states[i]);
        }
        assert_string_equal(case_state_code_name(CASE_SCHEDULED), "SCHEDULED");
        assert_string_equal(case_state_code_name(CASE_MANUAL_REVIEW), "MANUAL_REVIEW");
        assert_int_equal(case_state_code_from_name("scheduled"), -EINVAL);
        assert_int_equal(case_state_code_from_name(NULL), -EINVAL);
        assert_string_equal(outcome_kind_code(OUTCOME_KIND_HELD), "CONVERSATION_HELD");
        assert_string_equal(outcome_kind_code(OUTCOME_KIND_CONTACT_SUPPLIED), "CONTACT_DETAILS_SUPPLIED");
        for (outcome_kind k = OUTCOME_KIND_SCHEDULED; k <= OUTCOME_KIND_OVERRIDE; k++) {
                event e;
                event_init(&e, k, T0);
                assert_int_equal(lifecycle_kind(&e.ev), k);
        }
}

static void test_describe(void **state) {
        (void)state;
        case_state c = mk_case(CASE_SCHEDULED);
        c.police_attending = true;
        c.awaiting_assessment = c.awaiting_contact = true;
        c.protective_assessment_due = T0 + H(24);
        char buf[512];
        assert_int_equal(case_state_describe(&c, buf, sizeof buf), 0);
        assert_string_equal(buf, "state=SCHEDULED;outcome=ELIGIBLE;deadline=2025-03-12T08:00:00Z;"
                                 "deadline_kind=CONVERSATION;awaiting=assessment,contact;"
                                 "protective_assessment_due=2025-03-11T08:00:00Z;"
                                 "scheduled_at=2025-03-11T14:00:00Z;police_attending=true");
        case_state d = mk_case(CASE_DEFERRED);
        d.awaiting_clearance = true;
        assert_int_equal(case_state_describe(&d, buf, sizeof buf), 0);
        assert_string_equal(buf, "state=DEFERRED;outcome=DEFERRED;awaiting=clearance");
        case_state h = mk_case(CASE_HELD);
        assert_int_equal(case_state_describe(&h, buf, sizeof buf), 0);
        assert_non_null(strstr(buf, ";held_at=2025-03-11T14:00:00Z;police_attended=false;closed_at="));
        assert_int_equal(case_state_describe(&c, buf, 20), -ENOBUFS);
        assert_int_equal(case_state_describe(&c, buf, 90), -ENOBUFS);
}

/* Overdue: the deadline passed and the conversation is still owed. A
 * SCHEDULED SUMMONS case met its deadline when the summons went out. */
static void test_overdue(void **state) {
        (void)state;
        const usec_t d = 1000 * USEC_PER_SEC;
        assert_true(case_overdue(CASE_ELIGIBLE, DEADLINE_CONVERSATION, d, d));     /* at the deadline */
        assert_false(case_overdue(CASE_ELIGIBLE, DEADLINE_CONVERSATION, d, d - 1));
        assert_true(case_overdue(CASE_ELIGIBLE, DEADLINE_SUMMONS, d, d + 1));
        assert_true(case_overdue(CASE_SCHEDULED, DEADLINE_CONVERSATION, d, d + 1));
        assert_false(case_overdue(CASE_SCHEDULED, DEADLINE_SUMMONS, d, d + 1));
        assert_false(case_overdue(CASE_HELD, DEADLINE_CONVERSATION, d, d + 1));
        assert_false(case_overdue(CASE_DECLINED, DEADLINE_CONVERSATION, d, d + 1));
        assert_false(case_overdue(CASE_DEFERRED, DEADLINE_NONE, 0, d));
        assert_false(case_overdue(CASE_MANUAL_REVIEW, DEADLINE_CONVERSATION, d, d + 1));
        assert_false(case_overdue(CASE_ELIGIBLE, DEADLINE_CONVERSATION, 0, d));      /* no deadline */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_overdue),
                cmocka_unit_test(test_deferral_both_pending),
                cmocka_unit_test(test_deferral_exact_hours_over_dst),
                cmocka_unit_test(test_override_opens_case),
                cmocka_unit_test(test_override_needs_social_worker),
                cmocka_unit_test(test_override_keeps_pending_assessment),
                cmocka_unit_test(test_reschedule_and_missing_time),
                cmocka_unit_test(test_open_from_decision),
                cmocka_unit_test(test_withdrawals_every_state),
                cmocka_unit_test(test_assessment_do_not_summon),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_describe),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
