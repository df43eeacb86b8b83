/* The case state machine (daemon/lifecycle.c): every outcome event and
 * override from every state, legal and illegal (particular paths, deferral
 * arithmetic, names and descriptions: test-lifecycle-paths.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "lifecycle_fixture.h"

/* ---- the transition table, from every state ---- */

static void test_scheduled_every_state(void **state) {
        (void)state;
        for (size_t i = 0; i < N_ALL; i++) {
                case_state_code s = all_states[i];
                case_state before = mk_case(s);
                event e;
                event_init(&e, OUTCOME_KIND_SCHEDULED, T0 + H(3));
                lifecycle_result r;
                lifecycle_apply(&before, &e.ev, gbg(), T0 + H(4), &r);
                if (s == CASE_ELIGIBLE || s == CASE_SCHEDULED) {
                        assert_false(r.rejected);
                        assert_int_equal(r.after.state, CASE_SCHEDULED);
                        assert_int_equal(r.after.scheduled_at, T0 + H(23));
                        assert_true(r.after.police_attending);
                        assert_int_equal(r.after.deadline, before.deadline);  /* the deadline stays */
                        assert_string_equal(r.action, "SCHEDULED");
                        assert_int_equal(r.n_feedback, 1);
                        assert_int_equal(r.feedback[0], FEEDBACK_SCHEDULED);
                        assert_false(r.send_scheduling);
                        assert_int_equal(r.after.closed_at, 0);
                } else {
                        expect_illegal(&r, "CONVERSATION_SCHEDULED", s);
                }
        }
}

static void test_assessment_every_state(void **state) {
        (void)state;
        for (int awaiting = 0; awaiting <= 1; awaiting++)
                for (size_t i = 0; i < N_ALL; i++) {
                        case_state_code s = all_states[i];
                        case_state before = mk_case(s);
                        before.awaiting_assessment = awaiting;
                        before.protective_assessment_due = awaiting ? T0 + H(24) : 0;
                        event e;
                        event_init(&e, OUTCOME_KIND_ASSESSMENT_RECORDED, T0 + H(5));
                        lifecycle_result r;
                        lifecycle_apply(&before, &e.ev, gbg(), T0 + H(6), &r);
                        if (!awaiting || !is_open(s)) {
                                expect_illegal(&r, "PROTECTIVE_ASSESSMENT_RECORDED", s);
                                if (is_open(s))
                                        assert_non_null(strstr(r.error.detail, "no protective assessment pending"));
                                continue;
                        }
                        assert_false(r.rejected);
                        assert_false(r.after.awaiting_assessment);
                        assert_int_equal(r.after.protective_assessment_due, 0);
                        assert_int_equal(r.n_feedback, 0);
                        if (s == CASE_DEFERRED) {
                                /* The only deferral: the case becomes ELIGIBLE now. */
                                assert_int_equal(r.after.state, CASE_ELIGIBLE);
                                assert_int_equal(r.after.outcome, OUTCOME_ELIGIBLE);
                                assert_int_equal(r.after.deadline, T0 + H(5) + H(48));
                                assert_int_equal(r.after.deadline_kind, DEADLINE_CONVERSATION);
                                assert_string_equal(r.action, "BECAME_ELIGIBLE");
                                assert_true(r.send_scheduling);
                        } else {
                                assert_int_equal(r.after.state, s);
                                assert_int_equal(r.after.deadline, before.deadline);
                                assert_string_equal(r.action, "ASSESSMENT_RECORDED");
                                assert_false(r.send_scheduling);
                        }
                }
}

static void test_clearance_every_state(void **state) {
        (void)state;
        for (int awaiting = 0; awaiting <= 1; awaiting++)
                for (size_t i = 0; i < N_ALL; i++) {
                        case_state_code s = all_states[i];
                        case_state before = mk_case(s);
                        before.awaiting_clearance = awaiting;
                        event e;
                        event_init(&e, OUTCOME_KIND_CLEARED, T0 + H(7));
                        lifecycle_result r;
                        lifecycle_apply(&before, &e.ev, gbg(), T0 + H(8), &r);
                        if (!awaiting || !is_open(s)) {
                                expect_illegal(&r, "INVESTIGATION_CLEARED", s);
                                if (is_open(s))
                                        assert_non_null(strstr(r.error.detail, "no clearance pending"));
                                continue;
                        }
                        assert_false(r.rejected);
                        assert_false(r.after.awaiting_clearance);
                        if (s == CASE_DEFERRED) {
                                assert_int_equal(r.after.state, CASE_ELIGIBLE);
                                assert_int_equal(r.after.deadline, T0 + H(7) + H(48));
                                assert_string_equal(r.action, "BECAME_ELIGIBLE");
                                assert_true(r.send_scheduling);
                        } else {
                                assert_int_equal(r.after.state, s);
                                assert_string_equal(r.action, "CLEARED");
                                assert_false(r.send_scheduling);
                        }
                }
}

static void test_held_every_state(void **state) {
        (void)state;
        for (int attended = 0; attended <= 1; attended++)
                for (size_t i = 0; i < N_ALL; i++) {
                        case_state_code s = all_states[i];
                        case_state before = mk_case(s);
                        before.police_attending = !attended;
                        event e;
                        event_init(&e, OUTCOME_KIND_HELD, T0 + H(31));
                        e.held.police_attended = attended;
                        lifecycle_result r;
                        lifecycle_apply(&before, &e.ev, gbg(), T0 + H(32), &r);
                        if (s != CASE_SCHEDULED && s != CASE_ELIGIBLE) {
                                expect_illegal(&r, "CONVERSATION_HELD", s);
                                continue;
                        }
                        assert_false(r.rejected);
                        assert_int_equal(r.after.state, CASE_HELD);
                        assert_true(case_state_closed(r.after.state));
                        assert_int_equal(r.after.held_at, T0 + H(31));
                        assert_int_equal(r.after.closed_at, T0 + H(31));
                        assert_int_equal(r.after.police_attending, attended);
                        assert_string_equal(r.action, "HELD");
                        assert_int_equal(r.n_feedback, 1);
                        assert_int_equal(r.feedback[0], FEEDBACK_HELD);
                }
}

static void test_declined_every_state(void **state) {
        (void)state;
        for (size_t i = 0; i < N_ALL; i++) {
                case_state_code s = all_states[i];
                case_state before = mk_case(s);
                event e;
                event_init(&e, OUTCOME_KIND_DECLINED, T0 + H(9));
                lifecycle_result r;
                lifecycle_apply(&before, &e.ev, gbg(), T0 + H(9), &r);
                if (s != CASE_SCHEDULED && s != CASE_ELIGIBLE) {
                        expect_illegal(&r, "FAMILY_DECLINED", s);
                        continue;
                }
                assert_false(r.rejected);
                assert_int_equal(r.after.state, CASE_DECLINED);
                assert_true(case_state_closed(r.after.state));
                assert_int_equal(r.after.closed_at, T0 + H(9));
                assert_int_equal(r.after.held_at, 0);
                assert_string_equal(r.action, "DECLINED");
                assert_int_equal(r.n_feedback, 1);
                assert_int_equal(r.feedback[0], FEEDBACK_FAMILY_DECLINED);
        }
}

static void test_cancelled_every_state(void **state) {
        (void)state;
        for (size_t i = 0; i < N_ALL; i++) {
                case_state_code s = all_states[i];
                case_state before = mk_case(s);
                event e;
                event_init(&e, OUTCOME_KIND_CANCELLED, T0 + H(11));
                lifecycle_result r;
                lifecycle_apply(&before, &e.ev, gbg(), T0 + H(11), &r);
                if (!is_open(s)) {
                        expect_illegal(&r, "CANCELLED", s);
                        continue;
                }
                assert_false(r.rejected);
                assert_int_equal(r.after.state, CASE_CANCELLED);
                assert_int_equal(r.after.closed_at, T0 + H(11));
                assert_int_equal(r.after.outcome, before.outcome);
                assert_string_equal(r.action, "CANCELLED");
                assert_int_equal(r.n_feedback, 1);
                assert_int_equal(r.feedback[0], FEEDBACK_CANCELLED);
                assert_false(r.send_scheduling);
        }
}

static void test_contact_every_state(void **state) {
        (void)state;
        for (size_t i = 0; i < N_ALL; i++) {
                case_state_code s = all_states[i];
                case_state before = mk_case(s);
                before.awaiting_contact = true;
                event e;
                event_init(&e, OUTCOME_KIND_CONTACT_SUPPLIED, T0 + H(12));
                lifecycle_result r;
                lifecycle_apply(&before, &e.ev, gbg(), T0 + H(12), &r);
                if (!is_open(s)) {
                        expect_illegal(&r, "CONTACT_DETAILS_SUPPLIED", s);
                        continue;
                }
                assert_false(r.rejected);
                assert_int_equal(r.after.state, s);
                assert_false(r.after.awaiting_contact);
                assert_string_equal(r.action, "CONTACT_SUPPLIED");
                assert_int_equal(r.n_feedback, 0);
                /* Only a case waiting for its booking gets a new scheduling request. */
                assert_int_equal(r.send_scheduling, s == CASE_ELIGIBLE);
        }
}

static void test_override_every_state(void **state) {
        (void)state;
        const decision_outcome outcomes[] = {OUTCOME_ELIGIBLE, OUTCOME_NOT_ELIGIBLE, OUTCOME_DEFERRED,
                                             OUTCOME_MANUAL_REVIEW};
        const case_state_code target[] = {
                [OUTCOME_ELIGIBLE] = CASE_ELIGIBLE,
                [OUTCOME_NOT_ELIGIBLE] = CASE_NOT_ELIGIBLE,
                [OUTCOME_DEFERRED] = CASE_DEFERRED,
                [OUTCOME_MANUAL_REVIEW] = CASE_MANUAL_REVIEW,
        };
        for (size_t o = 0; o < 4; o++)
                for (size_t i = 0; i < N_ALL; i++) {
                        decision_outcome out = outcomes[o];
                        case_state_code s = all_states[i];
                        case_state before = mk_case(s);
                        event e;
                        override_init(&e, out, T0 + H(13));
                        lifecycle_result r;
                        lifecycle_apply(&before, &e.ev, gbg(), T0 + H(13), &r);
                        bool legal = is_open(s) || (s == CASE_NONE && out != OUTCOME_NOT_ELIGIBLE);
                        if (!legal) {
                                expect_illegal(&r, "OVERRIDE", s);
                                continue;
                        }
                        assert_false(r.rejected);
                        assert_int_equal(r.after.state, target[out]);
                        assert_int_equal(r.after.outcome, out);
                        assert_string_equal(r.action, "OVERRIDDEN");
                        assert_int_equal(r.n_feedback, 1);
                        assert_int_equal(r.feedback[0], FEEDBACK_ASSESSED);
                        assert_int_equal(r.assessment, out);
                        assert_int_equal(r.after.scheduled_at, 0);
                        assert_false(r.after.police_attending);
                        assert_int_equal(r.send_scheduling, out == OUTCOME_ELIGIBLE);
                        assert_int_equal(case_state_closed(r.after.state), out == OUTCOME_NOT_ELIGIBLE);
                        if (out == OUTCOME_NOT_ELIGIBLE)
                                assert_int_equal(r.after.closed_at, T0 + H(13));
                        else
                                assert_int_equal(r.after.closed_at, 0);
                        if (out == OUTCOME_ELIGIBLE) {
                                /* Kept when the case had one, else counted from the override. */
                                usec_t want = before.deadline ? before.deadline : T0 + H(13) + H(48);
                                assert_int_equal(r.after.deadline, want);
                                assert_int_equal(r.after.deadline_kind, DEADLINE_CONVERSATION);
                        }
                        if (out == OUTCOME_DEFERRED)
                                assert_int_equal(r.after.deadline, 0);
                        if (out == OUTCOME_MANUAL_REVIEW)
                                assert_int_equal(r.after.deadline, before.deadline);
                }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scheduled_every_state),
                cmocka_unit_test(test_assessment_every_state),
                cmocka_unit_test(test_clearance_every_state),
                cmocka_unit_test(test_held_every_state),
                cmocka_unit_test(test_declined_every_state),
                cmocka_unit_test(test_cancelled_every_state),
                cmocka_unit_test(test_contact_every_state),
                cmocka_unit_test(test_override_every_state),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
