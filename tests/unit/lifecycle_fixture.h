/* What the case state machine's tests share (test-lifecycle.c,
 * test-lifecycle-paths.c): outcome events and overrides to apply, a case in
 * every state, and the check of a refused transition. Include after cmocka.h. */
#pragma once

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lifecycle.h"

#define T0 ((usec_t)1741593600 * USEC_PER_SEC)      /* 2025-03-10T08:00:00Z */
#define H(n) ((usec_t)(n) * USEC_PER_HOUR)

/* ---- building events ---- */

typedef struct event {
        CaseOutcome ev;
        Allvarssamtal__V1__Actor actor;
        Google__Protobuf__Timestamp occurred, scheduled;
        Allvarssamtal__V1__ConversationScheduled sched;
        Allvarssamtal__V1__ProtectiveAssessmentRecorded assessment;
        Allvarssamtal__V1__InvestigationCleared cleared;
        Allvarssamtal__V1__ConversationHeld held;
        Allvarssamtal__V1__FamilyDeclined declined;
        Allvarssamtal__V1__CaseCancelled cancelled;
        Allvarssamtal__V1__ContactDetailsSupplied contact;
        Allvarssamtal__V1__Guardian guardian;
        Allvarssamtal__V1__Guardian *guardians[1];
        Allvarssamtal__V1__DecisionOverride override;
} event;

/* An event of kind k at `at`, by the booking service (a social worker for overrides). */
static inline void event_init(event *e, outcome_kind k, usec_t at) {
        memset(e, 0, sizeof *e);
        allvarssamtal__v1__case_outcome__init(&e->ev);
        allvarssamtal__v1__actor__init(&e->actor);
        google__protobuf__timestamp__init(&e->occurred);
        google__protobuf__timestamp__init(&e->scheduled);
        e->ev.event_id = "ev-1";
        e->ev.case_id = "6f1c1c9e-0000-5000-8000-000000000001";
        codec_timestamp_set(&e->occurred, at);
        e->ev.occurred_at = &e->occurred;
        e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        e->actor.name = "booking";
        e->ev.actor = &e->actor;
        switch (k) {
        case OUTCOME_KIND_SCHEDULED:
                allvarssamtal__v1__conversation_scheduled__init(&e->sched);
                codec_timestamp_set(&e->scheduled, at + H(20));
                e->sched.scheduled_at = &e->scheduled;
                e->sched.police_attending = true;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
                e->ev.conversation_scheduled = &e->sched;
                break;
        case OUTCOME_KIND_ASSESSMENT_RECORDED:
                allvarssamtal__v1__protective_assessment_recorded__init(&e->assessment);
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED;
                e->ev.protective_assessment_recorded = &e->assessment;
                break;
        case OUTCOME_KIND_CLEARED:
                allvarssamtal__v1__investigation_cleared__init(&e->cleared);
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED;
                e->ev.investigation_cleared = &e->cleared;
                break;
        case OUTCOME_KIND_HELD:
                allvarssamtal__v1__conversation_held__init(&e->held);
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
                e->ev.conversation_held = &e->held;
                break;
        case OUTCOME_KIND_DECLINED:
                allvarssamtal__v1__family_declined__init(&e->declined);
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_FAMILY_DECLINED;
                e->ev.family_declined = &e->declined;
                break;
        case OUTCOME_KIND_CANCELLED:
                allvarssamtal__v1__case_cancelled__init(&e->cancelled);
                e->cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_MOVED;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
                e->ev.cancelled = &e->cancelled;
                break;
        case OUTCOME_KIND_CONTACT_SUPPLIED:
                allvarssamtal__v1__contact_details_supplied__init(&e->contact);
                allvarssamtal__v1__guardian__init(&e->guardian);
                e->guardian.name = "Vårdnadshavare Ett";
                e->guardian.phone = "+46701234567";
                e->guardians[0] = &e->guardian;
                e->contact.guardians = e->guardians;
                e->contact.n_guardians = 1;
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED;
                e->ev.contact_details_supplied = &e->contact;
                break;
        case OUTCOME_KIND_OVERRIDE:
                allvarssamtal__v1__decision_override__init(&e->override);
                e->override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE;
                e->override.reason = "the family asked for the conversation";
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
                e->actor.name = "sw-anna";
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
                e->ev.override = &e->override;
                break;
        case OUTCOME_KIND_NONE:
        default:
                break;
        }
}

static inline void override_init(event *e, decision_outcome o, usec_t at) {
        event_init(e, OUTCOME_KIND_OVERRIDE, at);
        e->override.outcome = (Allvarssamtal__V1__Outcome)o;
}

/* ---- cases ---- */

static inline const profile *gbg(void) {
        const profile *p = profiles_find("goteborg-motion-2024");
        assert_non_null(p);
        assert_int_equal(p->limit, H(48));
        return p;
}

/* A case in state s as it would plausibly be: deadlines for the states that have them. */
static inline case_state mk_case(case_state_code s) {
        case_state c = {0};
        c.state = s;
        c.limit = H(48);
        c.outcome = OUTCOME_ELIGIBLE;
        c.deadline = T0 + H(48);
        c.deadline_kind = DEADLINE_CONVERSATION;
        switch (s) {
        case CASE_NONE:
        case CASE_NOT_ELIGIBLE:
                c.outcome = OUTCOME_NOT_ELIGIBLE;
                c.deadline = 0;
                c.deadline_kind = DEADLINE_NONE;
                if (s == CASE_NOT_ELIGIBLE)
                        c.closed_at = T0 + H(2);
                break;
        case CASE_DEFERRED:
                c.outcome = OUTCOME_DEFERRED;
                c.deadline = 0;
                c.deadline_kind = DEADLINE_NONE;
                break;
        case CASE_MANUAL_REVIEW:
                c.outcome = OUTCOME_MANUAL_REVIEW;
                c.deadline = 0;
                c.deadline_kind = DEADLINE_NONE;
                break;
        case CASE_SCHEDULED:
                c.scheduled_at = T0 + H(30);
                c.police_attending = true;
                break;
        case CASE_HELD:
                c.scheduled_at = T0 + H(30);
                c.held_at = c.closed_at = T0 + H(30);
                break;
        case CASE_DECLINED:
        case CASE_CANCELLED:
                c.closed_at = T0 + H(10);
                break;
        case CASE_ELIGIBLE:
        default:
                break;
        }
        return c;
}

static __attribute__((unused)) const case_state_code all_states[] = {
        CASE_NONE,          CASE_ELIGIBLE, CASE_DEFERRED,  CASE_MANUAL_REVIEW, CASE_SCHEDULED,
        CASE_HELD,          CASE_DECLINED, CASE_CANCELLED, CASE_NOT_ELIGIBLE,
};
#define N_ALL (sizeof all_states / sizeof *all_states)

static inline bool is_open(case_state_code s) {
        return s == CASE_ELIGIBLE || s == CASE_DEFERRED || s == CASE_MANUAL_REVIEW || s == CASE_SCHEDULED;
}

static inline void expect_illegal(const lifecycle_result *r, const char *kind, case_state_code s) {
        assert_true(r->rejected);
        assert_int_equal(r->error.reason, DLR_ILLEGAL_TRANSITION);
        char want[CODEC_DETAIL_MAX];
        snprintf(want, sizeof want, "%s not allowed in state %s", kind, case_state_code_name(s));
        if (strncmp(r->error.detail, want, strlen(want)) != 0)
                fail_msg("detail \"%s\", want it to start with \"%s\"", r->error.detail, want);
        assert_false(r->send_scheduling);
        assert_int_equal(r->n_feedback, 0);
}
