/* The decision (docs/domain.md "Decision"). Pure: no I/O, no logging, no clock of its
 * own, no allocation. Input a decoded, validated referral, the person's history,
 * the effective profile and the current time; output a decision. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "identity.h"
#include "profiles.h"
#include "allvarssamtal/v1/referral.pb-c.h"

typedef Allvarssamtal__V1__PoliceReferral PoliceReferral;

typedef enum decision_outcome {
        OUTCOME_ELIGIBLE = 1,           /* numbers as allvarssamtal.v1.Outcome */
        OUTCOME_NOT_ELIGIBLE = 2,
        OUTCOME_DEFERRED = 3,
        OUTCOME_MANUAL_REVIEW = 4,
} decision_outcome;

/* Reason codes, in the order they are listed. Bit values are stored in the
 * database: append, never renumber. */
enum {
        REASON_IDENTITY_INVALID            = 1u << 0,
        REASON_AGE_UNKNOWN                 = 1u << 1,
        REASON_IDENTITY_MISMATCH           = 1u << 2,
        REASON_BELOW_MIN_AGE               = 1u << 3,
        REASON_ABOVE_MAX_AGE               = 1u << 4,
        REASON_NO_QUALIFYING_CONCERN       = 1u << 5,
        REASON_NOT_FIRST_SUSPICION         = 1u << 6,
        REASON_NOT_IMPRISONABLE            = 1u << 7,
        REASON_PROTECTIVE_ASSESSMENT_FIRST = 1u << 8,
        REASON_PRELIMINARY_INVESTIGATION   = 1u << 9,
        REASON_ALL                         = (1u << 10) - 1,
};

/* Flags, shown with any outcome where they apply; same rules as reasons. */
enum {
        FLAG_CONTACT_MISSING            = 1u << 0,
        FLAG_LATE_REFERRAL              = 1u << 1,
        FLAG_UNDER_15                   = 1u << 2,
        FLAG_REPEAT_REFERRAL            = 1u << 3,
        FLAG_DEADLINE_PASSED_ON_ARRIVAL = 1u << 4,
        FLAG_ALL                        = (1u << 5) - 1,
};

typedef struct rules_history {
        uint32_t prior_referrals;       /* earlier referrals of the same person */
        uint32_t prior_qualifying;      /* of those, the ones with any of profile->first_time_marks */
} rules_history;

typedef struct decision {
        decision_outcome outcome;
        uint32_t reasons;               /* REASON_* of the outcome's step */
        uint32_t flags;                 /* FLAG_* */
        uint32_t marks;                 /* MARK_* of this referral (profiles.h) */
        int age;                        /* -1 when unknown */
        civil_date birth;               /* valid when age >= 0 */
        civil_date report_date;         /* reported_at on the Stockholm calendar */
        identity id;                    /* the parsed identity number */
        usec_t deadline;                /* 0 when none (not ELIGIBLE) */
        deadline_kind deadline_kind;    /* DEADLINE_NONE when no deadline */
        usec_t protective_assessment_due; /* 0 when no acute risk */
        bool summon_guardians;          /* the child is under profile->adult_age */
        const profile *profile;
} decision;

/* What a referral is about (MARK_*). */
uint32_t rules_marks(const PoliceReferral *r);

/* Decide. r must have passed codec validation (reported_at and subject set). */
void rules_decide(const profile *p, const PoliceReferral *r, const rules_history *h,
                  usec_t now, decision *ret);

/* The subject's identity number parsed on the Stockholm date of reported_at,
 * as rules_decide parses it: for a caller that needs it before the decision
 * (the person key) and then decides with rules_decide_parsed, parsing once. */
void rules_identity(const PoliceReferral *r, identity *ret);
void rules_decide_parsed(const profile *p, const PoliceReferral *r, const identity *id,
                         const rules_history *h, usec_t now, decision *ret);

/* The conversation limit of a case whose deferrals were all resolved at `resolved_at`. */
usec_t rules_deadline_after_deferral(const profile *p, usec_t resolved_at);

const char *decision_outcome_code(decision_outcome o);   /* "ELIGIBLE", ... */
int decision_outcome_from_code(const char *s);           /* or -EINVAL */
const char *deadline_kind_code(deadline_kind k);         /* "", "CONVERSATION", "SUMMONS" */
deadline_kind deadline_kind_from_code(const char *s);    /* DEADLINE_NONE for anything else */
