/* The decision: docs/domain.md "Decision", evaluated in its order; the outcome
 * is the first step that applies and `reasons` lists every reason of that step.
 * Each rule's line below names its source (the law, the proposal or the
 * municipal decision) and the section of docs/domain.md that explains it.
 *
 * Interpretations where the sources leave room (project choices, documented in
 * docs/domain.md "Age", "Decision", "Flags"; keep them):
 * Step 1, identity and age:
 *  - a usable birth_date is a real YYYY-MM-DD date not after the report date;
 *    a birth_date that is not usable counts as absent;
 *  - identity number invalid, no usable birth_date: MANUAL_REVIEW IDENTITY_INVALID;
 *  - identity number invalid, usable birth_date: decide on birth_date;
 *  - no identity number and no usable birth_date: MANUAL_REVIEW AGE_UNKNOWN;
 *  - both valid and disagreeing: MANUAL_REVIEW IDENTITY_MISMATCH (age unknown).
 * Step 3 lists every reason that applies:
 *  - NO_QUALIFYING_CONCERN when the referral has none of profile->qualifying_marks;
 *  - NOT_IMPRISONABLE as well when profile->imprisonable_required and offences
 *    are listed but none is imprisonable (DS 2024:30);
 *  - NOT_FIRST_SUSPICION when the profile has a first-time rule
 *    (first_time_marks != 0) and history->prior_qualifying > 0.
 * Step 4: acute_risk gives PROTECTIVE_ASSESSMENT_FIRST, preliminary_investigation
 *  gives PRELIMINARY_INVESTIGATION; both can apply.
 * protective_assessment_due = reported_at + protective_assessment_within whenever
 *  acute_risk is set about a child (age unknown, or under adult_age), with any
 *  outcome: the assessment is a statutory duty on every referral about a child
 *  (SoL 11 kap. 1 a §, "genast"). An adult with acute risk is still DEFERRED
 *  (PROTECTIVE_ASSESSMENT_FIRST) but has no due time.
 * deadline/deadline_kind only for ELIGIBLE; a DEFERRED case gets its deadline
 *  from rules_deadline_after_deferral when the last deferral is resolved.
 * Flags:
 *  - CONTACT_MISSING: age known and < adult_age and no guardian has a phone
 *    (a phone of blanks only is no phone);
 *  - LATE_REFERRAL: incident_at set and reported_at - incident_at strictly more
 *    than late_referral_after;
 *  - UNDER_15: age known and < criminal_responsibility_age (BrB 1 kap. 6 §);
 *  - REPEAT_REFERRAL: prior_referrals > 0;
 *  - DEADLINE_PASSED_ON_ARRIVAL: ELIGIBLE and deadline <= now.
 * summon_guardians = age known and < adult_age (DS 2024:30: guardians are
 *  summoned only for a child under 18). */
#include <errno.h>
#include <string.h>

#include "rules.h"

static inline usec_t ts_usec(const Google__Protobuf__Timestamp *ts) {
        return ts ? (usec_t)ts->seconds * USEC_PER_SEC + ts->nanos / 1000 : 0;
}

uint32_t rules_marks(const PoliceReferral *r) {
        uint32_t m = 0;
        for (size_t i = 0; i < r->n_concerns; i++)
                switch (r->concerns[i]) {
                case ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT:
                        m |= MARK_INAPPROPRIATE_ENVIRONMENT;
                        break;
                case ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR:
                        m |= MARK_CRIMINAL_BEHAVIOUR;
                        break;
                case ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME:
                        m |= MARK_SUSPECTED_CRIME;
                        break;
                default:
                        break;
                }
        /* A suspected crime is CONCERN_SUSPECTED_CRIME or at least one listed offence
         * (docs/domain.md "Policy profiles"). */
        if (r->n_offences > 0)
                m |= MARK_SUSPECTED_CRIME | MARK_OFFENCE_LISTED;
        for (size_t i = 0; i < r->n_offences; i++)
                if (r->offences[i] && r->offences[i]->imprisonable) {
                        m |= MARK_IMPRISONABLE_OFFENCE;
                        break;
                }
        return m;
}

static bool has_text(const char *s) {
        if (!s)
                return false;
        for (; *s; s++)
                if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
                        return true;
        return false;
}

static bool guardian_phone_known(const PoliceReferral *r) {
        for (size_t i = 0; i < r->n_guardians; i++)
                if (r->guardians[i] && has_text(r->guardians[i]->phone))
                        return true;
        return false;
}

/* Step 1: the birth date, or a MANUAL_REVIEW reason (docs/domain.md "Age"; the choices
 * where the sources leave room are listed at the top of this file). */
static uint32_t resolve_birth(const PoliceReferral *r, decision *d) {
        const char *birth_date = r->subject ? r->subject->birth_date : NULL;

        civil_date bd;
        bool bd_usable = birth_date && *birth_date && civil_date_parse(birth_date, &bd) &&
                         civil_date_compare(bd, d->report_date) <= 0;

        switch (d->id.status) {
        case IDENTITY_VALID:
                if (bd_usable && civil_date_compare(bd, d->id.birth) != 0)
                        return REASON_IDENTITY_MISMATCH;
                d->birth = d->id.birth;
                return 0;
        case IDENTITY_INVALID:
                if (!bd_usable)
                        return REASON_IDENTITY_INVALID;
                d->birth = bd;
                return 0;
        case IDENTITY_ABSENT:
        default:
                if (!bd_usable)
                        return REASON_AGE_UNKNOWN;
                d->birth = bd;
                return 0;
        }
}

void rules_identity(const PoliceReferral *r, identity *ret) {
        const char *number = r->subject ? r->subject->identity_number : NULL;
        identity_parse(number, stockholm_date(ts_usec(r->reported_at)), ret);
}

void rules_decide(const profile *p, const PoliceReferral *r, const rules_history *h, usec_t now,
                  decision *ret) {
        identity id;
        rules_identity(r, &id);
        rules_decide_parsed(p, r, &id, h, now, ret);
}

void rules_decide_parsed(const profile *p, const PoliceReferral *r, const identity *id, const rules_history *h,
                         usec_t now, decision *ret) {
        decision *d = ret;
        memset(d, 0, sizeof *d);
        d->profile = p;
        d->age = -1;
        d->marks = rules_marks(r);
        d->id = *id;

        usec_t reported_at = ts_usec(r->reported_at);
        d->report_date = stockholm_date(reported_at);

        /* 1. Identity and age: the personnummer's birth date (folkbokföringslagen 18 §, 18 a §),
         * whole years on the Stockholm date (docs/domain.md "Age"). */
        uint32_t reasons = resolve_birth(r, d);
        if (reasons == 0)
                d->age = civil_date_age(d->birth, d->report_date);
        else
                d->birth = (civil_date){0};

        if (reasons) {
                d->outcome = OUTCOME_MANUAL_REVIEW;
        } else if (d->age < p->min_age || d->age > p->max_age) {
                /* 2. Age outside the profile's ages, from its source document
                 * (docs/domain.md "Policy profiles"). */
                d->outcome = OUTCOME_NOT_ELIGIBLE;
                reasons = d->age < p->min_age ? REASON_BELOW_MIN_AGE : REASON_ABOVE_MAX_AGE;
        } else {
                /* 3. Qualifying concern and the first-time rule. */
                /* The profile's concerns, from its source document (docs/domain.md "Policy profiles"). */
                if (!(d->marks & p->qualifying_marks))
                        reasons |= REASON_NO_QUALIFYING_CONCERN;
                /* Ds 2024:30: only an offence punishable by imprisonment (docs/domain.md "Decision", step 3). */
                if (p->imprisonable_required && (d->marks & MARK_OFFENCE_LISTED) &&
                    !(d->marks & MARK_IMPRISONABLE_OFFENCE))
                        reasons |= REASON_NOT_IMPRISONABLE;
                /* First suspicion only: Stockholm's assignment, Ds 2024:30, Trollhättan's TUTI
                 * (docs/domain.md "Decision", step 3). */
                if (p->first_time_marks != 0 && h && h->prior_qualifying > 0)
                        reasons |= REASON_NOT_FIRST_SUSPICION;
                if (reasons) {
                        d->outcome = OUTCOME_NOT_ELIGIBLE;
                } else {
                        /* 4. Deferrals. */
                        /* SoL 11 kap. 1 a §: the protective assessment comes first
                         * (docs/domain.md "Decision", step 4; "Protective assessment"). */
                        if (r->acute_risk)
                                reasons |= REASON_PROTECTIVE_ASSESSMENT_FIRST;
                        /* LUL 31 §: during a preliminary investigation, the police's clearance
                         * first (docs/domain.md "Decision", step 4). */
                        if (r->preliminary_investigation)
                                reasons |= REASON_PRELIMINARY_INVESTIGATION;
                        if (reasons) {
                                d->outcome = OUTCOME_DEFERRED;
                        } else {
                                /* 5. Eligible; the profile's limit runs from reported_at in exact
                                 * hours (docs/domain.md "Policy profiles"). */
                                d->outcome = OUTCOME_ELIGIBLE;
                                d->deadline = reported_at + p->limit;
                                d->deadline_kind = p->deadline_kind;
                        }
                }
        }
        d->reasons = reasons;

        bool age_known = d->age >= 0;
        /* SoL 11 kap. 1 a §: "genast", with any outcome, for a child (docs/domain.md
         * "Protective assessment"); an adult's assessment has no statutory due time. */
        if (r->acute_risk && (!age_known || d->age < p->adult_age))
                d->protective_assessment_due = reported_at + p->protective_assessment_within;

        uint32_t flags = 0;
        /* Stockholm's follow-up: guardians' phone numbers are often missing (docs/domain.md "Flags"). */
        if (age_known && d->age < p->adult_age && !guardian_phone_known(r))
                flags |= FLAG_CONTACT_MISSING;
        /* Stockholm's follow-up: referrals come late; the number of days is the project's
         * choice (docs/domain.md "Flags"). */
        if (r->incident_at && reported_at - ts_usec(r->incident_at) > p->late_referral_after)
                flags |= FLAG_LATE_REFERRAL;
        /* BrB 1 kap. 6 §: the age of criminal responsibility (docs/domain.md "Flags"). */
        if (age_known && d->age < p->criminal_responsibility_age)
                flags |= FLAG_UNDER_15;
        /* The project's choice: the history is shown (docs/domain.md "Flags"). */
        if (h && h->prior_referrals > 0)
                flags |= FLAG_REPEAT_REFERRAL;
        /* The project's choice: a commitment broken on arrival is alerted at once (docs/domain.md "Flags"). */
        if (d->outcome == OUTCOME_ELIGIBLE && d->deadline <= now)
                flags |= FLAG_DEADLINE_PASSED_ON_ARRIVAL;
        d->flags = flags;
        /* Ds 2024:30: guardians are summoned only for a child under 18 (docs/domain.md "Flags"). */
        d->summon_guardians = age_known && d->age < p->adult_age;
}

/* The limit counted from the moment the last deferral is resolved (the project's
 * choice, docs/domain.md "Decision", step 4). */
usec_t rules_deadline_after_deferral(const profile *p, usec_t resolved_at) {
        return resolved_at + p->limit;
}

static const char *const outcome_codes[] = {
        [OUTCOME_ELIGIBLE] = "ELIGIBLE",
        [OUTCOME_NOT_ELIGIBLE] = "NOT_ELIGIBLE",
        [OUTCOME_DEFERRED] = "DEFERRED",
        [OUTCOME_MANUAL_REVIEW] = "MANUAL_REVIEW",
};

const char *decision_outcome_code(decision_outcome o) {
        if ((int)o < OUTCOME_ELIGIBLE || o > OUTCOME_MANUAL_REVIEW)
                return "UNSPECIFIED";
        return outcome_codes[o];
}

int decision_outcome_from_code(const char *s) {
        if (!s)
                return -EINVAL;
        for (int o = OUTCOME_ELIGIBLE; o <= OUTCOME_MANUAL_REVIEW; o++)
                if (strcmp(s, outcome_codes[o]) == 0)
                        return o;
        return -EINVAL;
}

const char *deadline_kind_code(deadline_kind k) {
        switch (k) {
        case DEADLINE_CONVERSATION:
                return "CONVERSATION";
        case DEADLINE_SUMMONS:
                return "SUMMONS";
        case DEADLINE_NONE:
        default:
                return "";
        }
}

deadline_kind deadline_kind_from_code(const char *s) {
        if (s && strcmp(s, "CONVERSATION") == 0)
                return DEADLINE_CONVERSATION;
        if (s && strcmp(s, "SUMMONS") == 0)
                return DEADLINE_SUMMONS;
        return DEADLINE_NONE;
}
