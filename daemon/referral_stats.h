/* A new referral's row of referral_stats, made from what the referral batch
 * decided and writes in the same transaction, instead of selected from the
 * view that defines it (schemas/011_referral_stats.sql,
 * referral_stats_source): the view re-reads five tables per referral, the
 * batch has every value in memory. Pure: no I/O, no allocation.
 *
 * What the view says of a referral at the moment it is decided:
 *  - its decision's reasons and flags as stored (decisions.reasons, .flags);
 *  - a case or none (cases: written by the same batch, or never: the case id
 *    is the referral's own, and only a referral's batch or an override of a
 *    decided referral opens one);
 *  - its MISSED alert, raised by the same batch when the deadline passed
 *    before the referral arrived (the deadline watch cannot have seen a case
 *    that is not committed yet);
 *  - no outcome event: the outcome batch keeps an event's outcome_events row
 *    only for a referral it found decided, and takes the row back in the
 *    same transaction otherwise (daemon/outcome_batch.c, apply_outcome step
 *    c, store_outcome_event_unclaim), so no committed event names a referral
 *    before its decision; and a new case is not held nor closed (cases.held_at
 *    and .closed_at are not written by the referral batch).
 * So the bits about the conversation and its assessment (1024, 4096-524288,
 * 2097152, 4194304) are 0, and assessed_at, cleared_at, contact_at, held_at
 * and closed_at are NULL. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The bits of referral_stats.facts (schemas/011_referral_stats.sql; daemon/ctl/report.c names them alike). */
enum {
        STATS_BELOW_MIN_AGE = 1u << 0,
        STATS_ABOVE_MAX_AGE = 1u << 1,
        STATS_NO_QUALIFYING_CONCERN = 1u << 2,
        STATS_NOT_IMPRISONABLE = 1u << 3,
        STATS_NOT_FIRST_SUSPICION = 1u << 4,
        STATS_ASSESSMENT_FIRST = 1u << 5,
        STATS_PRELIMINARY_INVESTIGATION = 1u << 6,
        STATS_CONTACT_MISSING = 1u << 7,
        STATS_LATE_REFERRAL = 1u << 8,
        STATS_HAS_CASE = 1u << 9,
        STATS_HELD_IN_TIME = 1u << 10,
        STATS_MISSED = 1u << 11,
        STATS_POLICE_PRESENT = 1u << 12,
        STATS_GUARDIANS_PRESENT = 1u << 13,
        STATS_FOLLOW_NONE = 1u << 14,
        STATS_FOLLOW_ADVICE_SUPPORT = 1u << 15,
        STATS_FOLLOW_OPEN_CARE = 1u << 16,
        STATS_FOLLOW_INVESTIGATION = 1u << 17,
        STATS_FOLLOW_OTHER = 1u << 18,
        STATS_HELD = 1u << 19,
        STATS_ASSESSMENT_DUE = 1u << 20,
        STATS_ASSESSED_ON_TIME = 1u << 21,
        STATS_ASSESSED_LATE = 1u << 22,
};

/* SQL's `s LIKE '%pattern%'` (case-sensitive; `_` in pattern is any one
 * character of UTF-8 text), as the view tests reasons and flags. pattern
 * holds no `%` nor `\`. */
bool referral_stats_like(const char *s, const char *pattern);

/* A referral the batch decides now, as the view will see it (above). */
typedef struct referral_stats_new {
        const char *reasons; /* decisions.reasons, exactly as written */
        const char *flags;   /* decisions.flags, exactly as written */
        bool has_case;       /* its cases row is written */
        bool missed;         /* its MISSED case_alerts row is written */
        bool assessment_due; /* decisions.protective_assessment_due is not NULL */
} referral_stats_new;

/* referral_stats.facts of such a referral: the view's expression with what
 * cannot exist yet left out. */
uint32_t referral_stats_facts_new(const referral_stats_new *n);
