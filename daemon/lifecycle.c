/* The case state machine (docs/domain.md "The case lifecycle", "Feedback to the
 * police"). Pure: no I/O, no clock, no allocation.
 *
 * The rules (decided by the lead; keep them). "open" is ELIGIBLE, DEFERRED,
 * MANUAL_REVIEW or SCHEDULED; "closed" is HELD, DECLINED, CANCELLED or
 * NOT_ELIGIBLE; NONE is a NOT_ELIGIBLE referral that has no case. Every time
 * is the event's own occurred_at, so that a replay gives the same case.
 *
 *   CONVERSATION_SCHEDULED(scheduled_at, police_attending)
 *       ELIGIBLE|SCHEDULED -> SCHEDULED (a new time replaces the old one);
 *       feedback SCHEDULED with meeting_at. From DEFERRED, MANUAL_REVIEW or
 *       closed: illegal.
 *   PROTECTIVE_ASSESSMENT_RECORDED
 *       only while awaiting_assessment (else illegal: "no protective assessment
 *       pending"); clears awaiting_assessment and protective_assessment_due.
 *   INVESTIGATION_CLEARED
 *       only while awaiting_clearance (else illegal: "no clearance pending");
 *       clears awaiting_clearance.
 *       For both: a DEFERRED case with no deferral left becomes ELIGIBLE with
 *       deadline = occurred_at + limit (rules_deadline_after_deferral; docs/domain.md
 *       "Decision", step 4: counted from that moment, exact hours), action
 *       BECAME_ELIGIBLE, and a scheduling request goes out.
 *   CONVERSATION_HELD(police_attended, participants, follow_up)
 *       SCHEDULED|ELIGIBLE -> HELD, held_at = closed_at = occurred_at;
 *       police_attending becomes what happened (police_attended, or POLICE
 *       among the participants); feedback HELD. Who took part and what
 *       followed are codes on the event's row (lifecycle_held_codes), not
 *       case state.
 *   FAMILY_DECLINED
 *       ELIGIBLE|SCHEDULED -> DECLINED (closed); feedback FAMILY_DECLINED.
 *   CANCELLED
 *       any open -> CANCELLED (closed); feedback CANCELLED.
 *   CONTACT_DETAILS_SUPPLIED(guardians)
 *       any open state, no change of state; clears awaiting_contact (the store
 *       keeps the guardians in case_contacts). An ELIGIBLE case (not yet
 *       scheduled) gets a new scheduling request with the new details.
 *   OVERRIDE(outcome, reason), by a SOCIAL_WORKER only (docs/domain.md "The
 *       case lifecycle"; any other actor is illegal), from any open state
 *       or from NONE (a NOT_ELIGIBLE referral: the store opens the case):
 *         ELIGIBLE      state ELIGIBLE; the deadline is kept if the case has
 *                       one, else occurred_at + limit; a scheduling request.
 *         DEFERRED      state DEFERRED; no deadline while deferred (it is
 *                       counted anew when the case becomes ELIGIBLE again).
 *         MANUAL_REVIEW state MANUAL_REVIEW; the deadline is kept, so that an
 *                       override back to ELIGIBLE keeps the commitment.
 *         NOT_ELIGIBLE  state NOT_ELIGIBLE, closed_at = occurred_at.
 *       Any override drops a scheduled time (the booking starts over).
 *       Feedback ASSESSED with the new outcome: the police heard ASSESSED
 *       before; this corrects it. The reason is the store's business (audit
 *       detail only); it never reaches the result. From a closed state, and
 *       NOT_ELIGIBLE over a referral that is NOT_ELIGIBLE already: illegal.
 *   PROTECTIVE_ASSESSMENT_RECORDED(do_not_summon): the assessment found that
 *       summoning the family would put the child at risk: the case goes to
 *       MANUAL_REVIEW (a social worker decides how to go on), no summons.
 * Withdrawals (docs/contract.md "Requests and withdrawals"): a scheduling request is in force
 * while the case is ELIGIBLE or SCHEDULED. A change that leaves those states
 * withdraws it, with the reason: CANCELLED, FAMILY_DECLINED, HELD, NOT_ELIGIBLE
 * (an override), ON_HOLD (an override to DEFERRED or MANUAL_REVIEW),
 * PROTECTIVE_ASSESSMENT (do_not_summon). The store publishes the withdrawal in
 * the transaction of the change, at the case's new revision.
 * Anything else is illegal: DLR_ILLEGAL_TRANSITION with a detail such as
 * "CONVERSATION_HELD not allowed in state DEFERRED" (codes only, never data).
 * Pending flags (awaiting_*) stay as they were when a case closes: they say
 * what was still open, and the deadline watch ignores closed cases. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lifecycle.h"

outcome_kind lifecycle_kind(const CaseOutcome *ev) {
        if (!ev)
                return OUTCOME_KIND_NONE;
        switch (ev->change_case) {
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED:
                return OUTCOME_KIND_SCHEDULED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED:
                return OUTCOME_KIND_ASSESSMENT_RECORDED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED:
                return OUTCOME_KIND_CLEARED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD:
                return OUTCOME_KIND_HELD;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_FAMILY_DECLINED:
                return OUTCOME_KIND_DECLINED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED:
                return OUTCOME_KIND_CANCELLED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED:
                return OUTCOME_KIND_CONTACT_SUPPLIED;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE:
                return OUTCOME_KIND_OVERRIDE;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE__NOT_SET:
        default:
                return OUTCOME_KIND_NONE;
        }
}

/* The names of the oneof fields in upper case: what the dead-letter detail
 * and outcome_events.kind say. */
const char *outcome_kind_code(outcome_kind k) {
        switch (k) {
        case OUTCOME_KIND_SCHEDULED: return "CONVERSATION_SCHEDULED";
        case OUTCOME_KIND_ASSESSMENT_RECORDED: return "PROTECTIVE_ASSESSMENT_RECORDED";
        case OUTCOME_KIND_CLEARED: return "INVESTIGATION_CLEARED";
        case OUTCOME_KIND_HELD: return "CONVERSATION_HELD";
        case OUTCOME_KIND_DECLINED: return "FAMILY_DECLINED";
        case OUTCOME_KIND_CANCELLED: return "CANCELLED";
        case OUTCOME_KIND_CONTACT_SUPPLIED: return "CONTACT_DETAILS_SUPPLIED";
        case OUTCOME_KIND_OVERRIDE: return "OVERRIDE";
        case OUTCOME_KIND_NONE:
        default:
                return "NONE";
        }
}

/* Stored in cases.state: append, never rename (the deadline watch and
 * allvarsctl read these names). */
static const char *const state_names[] = {
        [CASE_NONE] = "NONE",
        [CASE_ELIGIBLE] = "ELIGIBLE",
        [CASE_DEFERRED] = "DEFERRED",
        [CASE_MANUAL_REVIEW] = "MANUAL_REVIEW",
        [CASE_SCHEDULED] = "SCHEDULED",
        [CASE_HELD] = "HELD",
        [CASE_DECLINED] = "DECLINED",
        [CASE_CANCELLED] = "CANCELLED",
        [CASE_NOT_ELIGIBLE] = "NOT_ELIGIBLE",
};
#define N_STATES (sizeof state_names / sizeof *state_names)

const char *case_state_code_name(case_state_code s) {
        if ((unsigned)s >= N_STATES)
                return "UNKNOWN";
        return state_names[s];
}

int case_state_code_from_name(const char *s) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < N_STATES; i++)
                if (strcmp(s, state_names[i]) == 0)
                        return (int)i;
        return -EINVAL;
}

bool case_state_closed(case_state_code s) {
        return s == CASE_HELD || s == CASE_DECLINED || s == CASE_CANCELLED || s == CASE_NOT_ELIGIBLE;
}

bool case_overdue(case_state_code s, deadline_kind kind, usec_t deadline, usec_t now) {
        if (deadline == 0 || now < deadline)
                return false;
        return s == CASE_ELIGIBLE || (s == CASE_SCHEDULED && kind != DEADLINE_SUMMONS);
}

static bool state_open(case_state_code s) {
        return s == CASE_ELIGIBLE || s == CASE_DEFERRED || s == CASE_MANUAL_REVIEW || s == CASE_SCHEDULED;
}

void lifecycle_open(const decision *d, case_state *ret) {
        *ret = (case_state){0};
        ret->outcome = d->outcome;
        ret->limit = d->profile ? d->profile->limit : 0;
        /* rules.c: due with any outcome when there is an acute risk (SoL 11 kap. 1 a §). */
        ret->protective_assessment_due = d->protective_assessment_due;
        switch (d->outcome) {
        case OUTCOME_ELIGIBLE:
                ret->state = CASE_ELIGIBLE;
                ret->deadline = d->deadline;
                ret->deadline_kind = d->deadline_kind;
                break;
        case OUTCOME_DEFERRED:
                ret->state = CASE_DEFERRED;
                break;
        case OUTCOME_MANUAL_REVIEW:
                ret->state = CASE_MANUAL_REVIEW;
                break;
        case OUTCOME_NOT_ELIGIBLE:
        default:
                /* A decision that is not NOT_ELIGIBLE opens a case (docs/domain.md "After the decision: the case"). */
                ret->state = CASE_NONE;
                ret->protective_assessment_due = 0;
                return;
        }
        /* An adult's DEFERRED case awaits its assessment without a due time. */
        ret->awaiting_assessment = d->protective_assessment_due != 0 ||
                                   (d->outcome == OUTCOME_DEFERRED && (d->reasons & REASON_PROTECTIVE_ASSESSMENT_FIRST));
        ret->awaiting_clearance = d->outcome == OUTCOME_DEFERRED && (d->reasons & REASON_PRELIMINARY_INVESTIGATION);
        ret->awaiting_contact = (d->flags & FLAG_CONTACT_MISSING) != 0;
}

static void reject(lifecycle_result *r, dead_letter_reason reason, const char *detail) {
        r->rejected = true;
        r->error.reason = reason;
        snprintf(r->error.detail, sizeof r->error.detail, "%s", detail);
}

static void illegal(lifecycle_result *r, outcome_kind k, case_state_code s, const char *why) {
        r->rejected = true;
        r->error.reason = DLR_ILLEGAL_TRANSITION;
        snprintf(r->error.detail, sizeof r->error.detail, "%s not allowed in state %s%s%s", outcome_kind_code(k),
                 case_state_code_name(s), why ? ": " : "", why ? why : "");
}

static void feedback(lifecycle_result *r, feedback_status s) {
        if (r->n_feedback < LIFECYCLE_MAX_FEEDBACK)
                r->feedback[r->n_feedback++] = s;
}

static usec_t limit_of(const case_state *c, const profile *p) {
        return p ? p->limit : c->limit;
}

static deadline_kind deadline_kind_of(const case_state *c, const profile *p) {
        if (c->deadline_kind != DEADLINE_NONE)
                return c->deadline_kind;
        return p ? p->deadline_kind : DEADLINE_CONVERSATION;
}

/* A deferral was resolved: the last one makes a DEFERRED case ELIGIBLE. */
static void deferral_resolved(lifecycle_result *r, const profile *p, usec_t at) {
        case_state *c = &r->after;
        if (c->state != CASE_DEFERRED || c->awaiting_assessment || c->awaiting_clearance)
                return;
        c->state = CASE_ELIGIBLE;
        c->outcome = OUTCOME_ELIGIBLE;
        /* The limit starts when the last deferral is resolved (docs/domain.md "Decision", step 4). */
        c->deadline = p ? rules_deadline_after_deferral(p, at) : at + c->limit;
        c->deadline_kind = deadline_kind_of(c, p);
        r->action = "BECAME_ELIGIBLE";
        r->send_scheduling = true;
        r->scheduling_kind = SCHEDULING_DEFERRAL_RESOLVED;
}

static void apply_override(lifecycle_result *r, const case_state *before, const CaseOutcome *ev,
                           const profile *p, usec_t at) {
        case_state *c = &r->after;
        const Allvarssamtal__V1__DecisionOverride *ov = ev->override;
        /* The override is a social worker's (docs/domain.md "The case lifecycle"); the codec requires the name. */
        if (!ev->actor || ev->actor->kind != ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER) {
                illegal(r, OUTCOME_KIND_OVERRIDE, before->state, "only a social worker may override");
                return;
        }
        if (!ov) {
                reject(r, DLR_MISSING_FIELD, "override is required");
                return;
        }
        if (!state_open(before->state) && before->state != CASE_NONE) {
                illegal(r, OUTCOME_KIND_OVERRIDE, before->state, NULL);
                return;
        }
        decision_outcome o = (decision_outcome)ov->outcome;
        if (before->state == CASE_NONE && o == OUTCOME_NOT_ELIGIBLE) {
                illegal(r, OUTCOME_KIND_OVERRIDE, before->state, "the referral is NOT_ELIGIBLE already");
                return;
        }

        /* A new decision: whatever was booked is to be booked again. */
        c->scheduled_at = 0;
        c->police_attending = false;
        if (c->limit == 0)
                c->limit = limit_of(before, p);
        switch (o) {
        case OUTCOME_ELIGIBLE:
                c->state = CASE_ELIGIBLE;
                if (c->deadline == 0) {
                        c->deadline = at + limit_of(before, p);
                        c->deadline_kind = deadline_kind_of(before, p);
                }
                r->send_scheduling = true;
                r->scheduling_kind = SCHEDULING_OVERRIDDEN;
                break;
        case OUTCOME_DEFERRED:
                c->state = CASE_DEFERRED;
                c->deadline = 0;
                c->deadline_kind = DEADLINE_NONE;
                break;
        case OUTCOME_MANUAL_REVIEW:
                c->state = CASE_MANUAL_REVIEW;
                break;
        case OUTCOME_NOT_ELIGIBLE:
                c->state = CASE_NOT_ELIGIBLE;
                c->closed_at = at;
                break;
        default:
                reject(r, DLR_UNKNOWN_ENUM, "override.outcome is not a known Outcome");
                return;
        }
        c->outcome = o;
        r->action = "OVERRIDDEN";
        r->assessment = o;
        feedback(r, FEEDBACK_ASSESSED);
}

static bool held_police(const Allvarssamtal__V1__ConversationHeld *h) {
        if (!h)
                return false;
        for (size_t i = 0; i < h->n_participants; i++)
                if (h->participants[i] == ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_POLICE)
                        return true;
        return h->police_attended;
}

/* Comma-separated codes in a fixed order, each once. */
static int put_codes(char *buf, size_t size, const char *const *names, size_t n_names, const int *v, size_t n) {
        size_t len = 0;
        buf[0] = '\0';
        for (size_t k = 1; k < n_names; k++) {
                bool present = false;
                for (size_t i = 0; i < n; i++)
                        present = present || v[i] == (int)k;
                if (!present)
                        continue;
                int w = snprintf(buf + len, size - len, "%s%s", len ? "," : "", names[k]);
                if (w < 0 || (size_t)w >= size - len)
                        return -ENOBUFS;
                len += (size_t)w;
        }
        return 0;
}

int lifecycle_held_codes(const CaseOutcome *ev, char *participants, char *follow_up, size_t size) {
        static const char *const p_names[] = { "", "CHILD", "GUARDIANS", "POLICE", "SOCIAL_SERVICES" };
        static const char *const f_names[] = { "", "NONE", "ADVICE_SUPPORT", "OPEN_CARE", "INVESTIGATION", "OTHER" };
        if (!participants || !follow_up || size == 0)
                return -EINVAL;
        participants[0] = follow_up[0] = '\0';
        if (!ev || lifecycle_kind(ev) != OUTCOME_KIND_HELD || !ev->conversation_held)
                return 0;
        const Allvarssamtal__V1__ConversationHeld *h = ev->conversation_held;
        int r = put_codes(participants, size, p_names, sizeof p_names / sizeof *p_names, (const int *)h->participants,
                          h->n_participants);
        if (r >= 0)
                r = put_codes(follow_up, size, f_names, sizeof f_names / sizeof *f_names, (const int *)h->follow_up,
                              h->n_follow_up);
        return r;
}

static void apply(const case_state *before, const CaseOutcome *ev, const profile *p, lifecycle_result *r) {
        case_state *c = &r->after;

        outcome_kind k = lifecycle_kind(ev);
        if (k == OUTCOME_KIND_NONE) {
                reject(r, DLR_MISSING_FIELD, "change is required");
                return;
        }
        usec_t at = codec_timestamp_usec(ev->occurred_at);
        bool open = state_open(before->state);

        switch (k) {
        case OUTCOME_KIND_SCHEDULED: {
                const Allvarssamtal__V1__ConversationScheduled *s = ev->conversation_scheduled;
                if (before->state != CASE_ELIGIBLE && before->state != CASE_SCHEDULED) {
                        illegal(r, k, before->state, NULL);
                        return;
                }
                usec_t when = s ? codec_timestamp_usec(s->scheduled_at) : 0;
                if (when == 0) {
                        reject(r, DLR_MISSING_FIELD, "conversation_scheduled.scheduled_at is required");
                        return;
                }
                c->state = CASE_SCHEDULED;
                c->scheduled_at = when;
                c->police_attending = s->police_attending;
                r->action = "SCHEDULED";
                feedback(r, FEEDBACK_SCHEDULED);
                return;
        }
        case OUTCOME_KIND_ASSESSMENT_RECORDED:
                if (!open || !before->awaiting_assessment) {
                        illegal(r, k, before->state, open ? "no protective assessment pending" : NULL);
                        return;
                }
                c->awaiting_assessment = false;
                c->protective_assessment_due = 0;
                r->action = "ASSESSMENT_RECORDED";
                if (ev->protective_assessment_recorded && ev->protective_assessment_recorded->do_not_summon) {
                        /* No summons: a social worker decides; the deadline is kept as
                         * with an override to MANUAL_REVIEW. */
                        c->state = CASE_MANUAL_REVIEW;
                        c->outcome = OUTCOME_MANUAL_REVIEW;
                        c->scheduled_at = 0;
                        c->police_attending = false;
                        return;
                }
                deferral_resolved(r, p, at);
                return;
        case OUTCOME_KIND_CLEARED:
                if (!open || !before->awaiting_clearance) {
                        illegal(r, k, before->state, open ? "no clearance pending" : NULL);
                        return;
                }
                c->awaiting_clearance = false;
                r->action = "CLEARED";
                deferral_resolved(r, p, at);
                return;
        case OUTCOME_KIND_HELD:
                if (before->state != CASE_SCHEDULED && before->state != CASE_ELIGIBLE) {
                        illegal(r, k, before->state, NULL);
                        return;
                }
                c->state = CASE_HELD;
                c->held_at = at;
                c->closed_at = at;
                c->police_attending = held_police(ev->conversation_held);
                r->action = "HELD";
                feedback(r, FEEDBACK_HELD);
                return;
        case OUTCOME_KIND_DECLINED:
                if (before->state != CASE_ELIGIBLE && before->state != CASE_SCHEDULED) {
                        illegal(r, k, before->state, NULL);
                        return;
                }
                c->state = CASE_DECLINED;
                c->closed_at = at;
                r->action = "DECLINED";
                feedback(r, FEEDBACK_FAMILY_DECLINED);
                return;
        case OUTCOME_KIND_CANCELLED:
                if (!open) {
                        illegal(r, k, before->state, NULL);
                        return;
                }
                c->state = CASE_CANCELLED;
                c->closed_at = at;
                r->action = "CANCELLED";
                feedback(r, FEEDBACK_CANCELLED);
                return;
        case OUTCOME_KIND_CONTACT_SUPPLIED:
                if (!open) {
                        illegal(r, k, before->state, NULL);
                        return;
                }
                c->awaiting_contact = false;
                r->action = "CONTACT_SUPPLIED";
                /* A summons not yet booked goes out again with the new details. */
                r->send_scheduling = before->state == CASE_ELIGIBLE;
                r->scheduling_kind = SCHEDULING_CONTACT_DETAILS_UPDATED;
                return;
        case OUTCOME_KIND_OVERRIDE:
                apply_override(r, before, ev, p, at);
                return;
        case OUTCOME_KIND_NONE:
        default:
                return;
        }
}

static bool request_in_force(case_state_code s) {
        return s == CASE_ELIGIBLE || s == CASE_SCHEDULED;
}

/* Why a request in force no longer is. */
static withdrawal_reason withdrawal_of(const lifecycle_result *r) {
        switch (r->after.state) {
        case CASE_CANCELLED: return WITHDRAWAL_CANCELLED;
        case CASE_DECLINED: return WITHDRAWAL_FAMILY_DECLINED;
        case CASE_HELD: return WITHDRAWAL_HELD;
        case CASE_NOT_ELIGIBLE: return WITHDRAWAL_NOT_ELIGIBLE;
        case CASE_MANUAL_REVIEW:
                return strcmp(r->action, "ASSESSMENT_RECORDED") == 0 ? WITHDRAWAL_PROTECTIVE_ASSESSMENT
                                                                     : WITHDRAWAL_ON_HOLD;
        case CASE_DEFERRED:
        default:
                return WITHDRAWAL_ON_HOLD;
        }
}

void lifecycle_apply(const case_state *before, const CaseOutcome *ev, const profile *p, usec_t now,
                     lifecycle_result *ret) {
        /* Times are the event's own; `now` is not needed for any rule today. */
        (void)now;
        *ret = (lifecycle_result){0};
        ret->after = *before;
        apply(before, ev, p, ret);
        if (ret->rejected) {
                /* A rejection changes nothing and causes nothing. */
                codec_error e = ret->error;
                *ret = (lifecycle_result){.rejected = true, .error = e, .after = *before};
                return;
        }
        if (request_in_force(before->state) && !request_in_force(ret->after.state))
                ret->withdrawal = withdrawal_of(ret);
}

static int put_time(char *buf, size_t size, size_t *n, const char *key, usec_t t) {
        if (t == 0)
                return 0;
        char ts[RFC3339_MAX];
        clock_format_rfc3339(t, ts);
        int k = snprintf(buf + *n, size - *n, ";%s=%s", key, ts);
        if (k < 0 || (size_t)k >= size - *n)
                return -ENOBUFS;
        *n += (size_t)k;
        return 0;
}

int case_state_describe(const case_state *c, char *buf, size_t size) {
        if (!c || !buf || size == 0)
                return -EINVAL;
        buf[0] = '\0';
        size_t n = 0;
        int k = snprintf(buf, size, "state=%s;outcome=%s", case_state_code_name(c->state),
                         decision_outcome_code(c->outcome));
        if (k < 0 || (size_t)k >= size)
                return -ENOBUFS;
        n = (size_t)k;
        int r = put_time(buf, size, &n, "deadline", c->deadline);
        if (r == 0 && c->deadline != 0 && c->deadline_kind != DEADLINE_NONE) {
                k = snprintf(buf + n, size - n, ";deadline_kind=%s", deadline_kind_code(c->deadline_kind));
                if (k < 0 || (size_t)k >= size - n)
                        return -ENOBUFS;
                n += (size_t)k;
        }
        if (r == 0 && (c->awaiting_assessment || c->awaiting_clearance || c->awaiting_contact)) {
                k = snprintf(buf + n, size - n, ";awaiting=%s%s%s%s%s",
                             c->awaiting_assessment ? "assessment" : "",
                             c->awaiting_assessment && (c->awaiting_clearance || c->awaiting_contact) ? "," : "",
                             c->awaiting_clearance ? "clearance" : "",
                             c->awaiting_clearance && c->awaiting_contact ? "," : "",
                             c->awaiting_contact ? "contact" : "");
                if (k < 0 || (size_t)k >= size - n)
                        return -ENOBUFS;
                n += (size_t)k;
        }
        if (r == 0)
                r = put_time(buf, size, &n, "protective_assessment_due", c->protective_assessment_due);
        if (r == 0)
                r = put_time(buf, size, &n, "scheduled_at", c->scheduled_at);
        if (r == 0 && c->scheduled_at != 0 && c->police_attending) {
                k = snprintf(buf + n, size - n, ";police_attending=true");
                if (k < 0 || (size_t)k >= size - n)
                        return -ENOBUFS;
                n += (size_t)k;
        }
        if (r == 0)
                r = put_time(buf, size, &n, "held_at", c->held_at);
        if (r == 0 && c->held_at != 0) {
                k = snprintf(buf + n, size - n, ";police_attended=%s", c->police_attending ? "true" : "false");
                if (k < 0 || (size_t)k >= size - n)
                        return -ENOBUFS;
                n += (size_t)k;
        }
        if (r == 0)
                r = put_time(buf, size, &n, "closed_at", c->closed_at);
        return r;
}
