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

/* The bits of referral_stats.facts (schemas/011_referral_stats.sql), in decimal so that
 * STATS_SQL makes them SQL text too (daemon/ctl/report.c tests them in its statement). */
#define STATS_BELOW_MIN_AGE                1 /* bit 0 */
#define STATS_ABOVE_MAX_AGE                2 /* bit 1 */
#define STATS_NO_QUALIFYING_CONCERN        4 /* bit 2 */
#define STATS_NOT_IMPRISONABLE             8 /* bit 3 */
#define STATS_NOT_FIRST_SUSPICION          16 /* bit 4 */
#define STATS_ASSESSMENT_FIRST             32 /* bit 5 */
#define STATS_PRELIMINARY_INVESTIGATION    64 /* bit 6 */
#define STATS_CONTACT_MISSING              128 /* bit 7 */
#define STATS_LATE_REFERRAL                256 /* bit 8 */
#define STATS_HAS_CASE                     512 /* bit 9 */
#define STATS_HELD_IN_TIME                 1024 /* bit 10 */
#define STATS_MISSED                       2048 /* bit 11 */
#define STATS_POLICE_PRESENT               4096 /* bit 12 */
#define STATS_GUARDIANS_PRESENT            8192 /* bit 13 */
#define STATS_FOLLOW_NONE                  16384 /* bit 14 */
#define STATS_FOLLOW_ADVICE_SUPPORT        32768 /* bit 15 */
#define STATS_FOLLOW_OPEN_CARE             65536 /* bit 16 */
#define STATS_FOLLOW_INVESTIGATION         131072 /* bit 17 */
#define STATS_FOLLOW_OTHER                 262144 /* bit 18 */
#define STATS_HELD                         524288 /* bit 19 */
#define STATS_ASSESSMENT_DUE               1048576 /* bit 20 */
#define STATS_ASSESSED_ON_TIME             2097152 /* bit 21 */
#define STATS_ASSESSED_LATE                4194304 /* bit 22 */
#define STATS_SQL_(v) #v
#define STATS_SQL(v) STATS_SQL_(v) /* STATS_SQL(STATS_MISSED) is "2048" */

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
