/* The case state machine (docs/domain.md "The case lifecycle"). Pure: given a case as
 * it is and one outcome event, the case as it becomes and what follows (feedback
 * to the police, a new scheduling request), or a rejection with a dead-letter
 * reason. No I/O; outcome_batch.c applies it in a transaction.
 *
 *   DEFERRED ──(last of: assessment recorded, clearance received)──> ELIGIBLE
 *   ELIGIBLE ──scheduled──> SCHEDULED ──held──> HELD (closed)
 *   ELIGIBLE|SCHEDULED ──declined──> DECLINED (closed)
 *   any open ──cancelled──> CANCELLED (closed)
 *   any open ──override(outcome)──> that outcome's state (audited, wins)
 *   a NOT_ELIGIBLE referral ──override──> a case is opened
 *
 * A scheduling request is in force while the case is ELIGIBLE or SCHEDULED; a
 * change that leaves those states withdraws it (lifecycle_result.withdrawal).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "codec.h"
#include "events.h"
#include "profiles.h"
#include "rules.h"

typedef enum case_state_code {
        CASE_NONE = 0,                  /* no case (a NOT_ELIGIBLE referral) */
        CASE_ELIGIBLE,                  /* deadline running, nothing scheduled */
        CASE_DEFERRED,                  /* waiting for the protective assessment and/or clearance */
        CASE_MANUAL_REVIEW,             /* a social worker must decide (override) */
        CASE_SCHEDULED,                 /* a meeting time is set */
        CASE_HELD,                      /* closed: the conversation was held */
        CASE_DECLINED,                  /* closed: the family declined */
        CASE_CANCELLED,                 /* closed */
        CASE_NOT_ELIGIBLE,              /* closed by an override to NOT_ELIGIBLE */
} case_state_code;

typedef struct case_state {
        case_state_code state;
        decision_outcome outcome;       /* the current recommendation (an override wins) */
        bool awaiting_assessment;
        bool awaiting_clearance;
        bool awaiting_contact;
        usec_t deadline;                /* 0 while deferred */
        deadline_kind deadline_kind;
        usec_t limit;                   /* the profile's limit */
        usec_t protective_assessment_due;  /* 0 when none is pending */
        usec_t scheduled_at;            /* 0 when not scheduled */
        bool police_attending;
        usec_t held_at;
        usec_t closed_at;
} case_state;

typedef enum outcome_kind {
        OUTCOME_KIND_NONE = 0,
        OUTCOME_KIND_SCHEDULED,
        OUTCOME_KIND_ASSESSMENT_RECORDED,
        OUTCOME_KIND_CLEARED,
        OUTCOME_KIND_HELD,
        OUTCOME_KIND_DECLINED,
        OUTCOME_KIND_CANCELLED,
        OUTCOME_KIND_CONTACT_SUPPLIED,
        OUTCOME_KIND_OVERRIDE,
} outcome_kind;

#define LIFECYCLE_MAX_FEEDBACK 3

typedef struct lifecycle_result {
        bool rejected;                  /* the transition is illegal: dead-letter it */
        codec_error error;              /* DLR_ILLEGAL_TRANSITION with a detail naming state and event */
        case_state after;
        const char *action;             /* audit action: SCHEDULED, ASSESSMENT_RECORDED, CLEARED, HELD,
                                         * DECLINED, CANCELLED, CONTACT_SUPPLIED, OVERRIDDEN, BECAME_ELIGIBLE */
        bool send_scheduling;           /* emit a SchedulingRequest (became or stays ELIGIBLE with news) */
        scheduling_kind scheduling_kind;        /* why, with send_scheduling */
        withdrawal_reason withdrawal;   /* emit a SchedulingWithdrawn: a request was in force and the
                                         * family is no longer to be summoned (WITHDRAWAL_NONE: no) */
        feedback_status feedback[LIFECYCLE_MAX_FEEDBACK];  /* statuses to send (subject to policy) */
        size_t n_feedback;
        decision_outcome assessment;    /* with FEEDBACK_ASSESSED after an override */
} lifecycle_result;

outcome_kind lifecycle_kind(const CaseOutcome *ev);
const char *outcome_kind_code(outcome_kind k);       /* "CONVERSATION_SCHEDULED", ... */
const char *case_state_code_name(case_state_code s); /* "ELIGIBLE", ... */
int case_state_code_from_name(const char *s);        /* or -EINVAL */
bool case_state_closed(case_state_code s);

/* Overdue, the one definition (docs/domain.md "After the decision: the
 * case", deadline watch): the deadline has passed (now >= deadline) and the
 * conversation is still owed: the case is ELIGIBLE (nothing scheduled), or
 * SCHEDULED for a CONVERSATION deadline (the meeting must be held by then). A
 * SCHEDULED case with a SUMMONS deadline met it when the summons went out
 * (DS 2024:30); a closed, deferred or manual-review case owes nothing yet.
 * The deadline watch raises MISSED for exactly these cases (in C here, and in
 * SQL for its candidates and the partial index of
 * schemas/003_deadline_watch_indexes.sql); allvarsctl's --overdue and its
 * counts show exactly these (CASE_SQL_OVERDUE). */
bool case_overdue(case_state_code s, deadline_kind kind, usec_t deadline, usec_t now);

/* SQL over a row of cases (alias a): the conversation is still owed. Word for
 * word the predicate of the index cases_watch_missed (schemas/003). */
#define CASE_SQL_OWED(a)                                                                                    \
        a ".closed_at IS NULL AND (" a ".state = 'ELIGIBLE' OR (" a ".state = 'SCHEDULED' AND " a           \
        ".deadline_kind IS DISTINCT FROM 'SUMMONS'))"
/* SQL: case_overdue of the row (alias a) at now (a timestamptz expression). */
#define CASE_SQL_OVERDUE(a, now) "(" CASE_SQL_OWED(a) " AND " a ".deadline <= " now ")"

/* The case a fresh decision opens (CASE_NONE for NOT_ELIGIBLE). */
void lifecycle_open(const decision *d, case_state *ret);

/* Apply one outcome event, occurred at ev->occurred_at, processed at now.
 * p: the profile the case was decided under (for the limit after a deferral). */
void lifecycle_apply(const case_state *before, const CaseOutcome *ev, const profile *p, usec_t now,
                     lifecycle_result *ret);

/* "state=SCHEDULED;outcome=ELIGIBLE;deadline=...;scheduled_at=..." for the audit trail. */
int case_state_describe(const case_state *c, char *buf, size_t size);

/* A CONVERSATION_HELD event's participants and follow-up as comma-separated
 * codes (CHILD,GUARDIANS,POLICE,SOCIAL_SERVICES; NONE,ADVICE_SUPPORT,
 * OPEN_CARE,INVESTIGATION,OTHER), in that order, each once; "" for any other
 * event or none reported. Each buffer holds `size` bytes (64 is enough). */
#define HELD_CODES_MAX 64
int lifecycle_held_codes(const CaseOutcome *ev, char *participants, char *follow_up, size_t size);
