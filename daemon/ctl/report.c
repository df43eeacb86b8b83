/* allvarsctl report: the follow-up figures of docs/domain.md "Follow-up
 * report", per district and period, in one query over referral_stats, the
 * pseudonymous row per referral that the daemon writes with the decision and
 * each change the report counts (schemas/011_referral_stats.sql: made from
 * referrals, decisions, cases, case_alerts and outcome_events, which the
 * retention purge keeps, so the report is the same before and after it; a
 * protective assessment's due time is the decision's, whether or not a case
 * was opened, and its recording an outcome event), then small counts
 * suppressed here before any format sees them (report_suppress). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "referral_stats.h"
#include "report.h"

static const char report_usage[] =
        "Usage: allvarsctl report --from DATE --to DATE [--district D] [--by month|week|quarter]\n"
        "                         [--format text|csv|json|html] [--output FILE]\n"
        "                         [--config PATH | --database CONNINFO] [--now TIME]\n"
        "The follow-up figures per district and period of the referrals reported from DATE to DATE\n"
        "(inclusive, Europe/Stockholm dates): decisions, conversations held and in time, hours to the\n"
        "conversation, police and guardians present, deferrals, missing contact details, late\n"
        "referrals, protective assessments on time, what the conversations led to, and new referrals\n"
        "within 6 and 12 months (descriptive, not causal). Counts of 1-4 are shown as <5, and other\n"
        "cells hidden (..) so that no hidden count can be derived. Pseudonymous tables only.\n\n"
        "  --from DATE, --to DATE  the first and last report dates (YYYY-MM-DD)\n"
        "  --district D           only district D\n"
        "  --by PERIOD            month (default), week (ISO) or quarter\n"
        "  --format F             text (default), csv, json, or html (one self-contained file)\n"
        "  --output FILE          write to FILE instead of standard output\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n"
        "  --now TIME             count the 6 and 12 months as of this RFC 3339 time (default: now)\n";

#define C(key, label, section, total, part) { key, label, section, RK_COUNT, total, part, -1, -1, NULL }
#define S(key, label, section, num, den) { key, label, section, RK_SHARE, -1, 0, num, den, NULL }
#define HRS(key, label, section, n) { key, label, section, RK_HOURS, -1, 0, -1, -1, n }

/* Indexes into this table are the relations: keep them in step. */
const report_figure report_figures[] = {
        /* 0 */ C("referrals", "Referrals (orosanmälningar)", "Referrals", -1, 0),
        /* 1 */ C("eligible", "Decided ELIGIBLE", "Referrals", 0, 'A'),
        /* 2 */ C("not_eligible", "Decided NOT_ELIGIBLE", "Referrals", 0, 'A'),
        /* 3 */ C("deferred", "Decided DEFERRED", "Referrals", 0, 'A'),
        /* 4 */ C("manual_review", "Decided MANUAL_REVIEW", "Referrals", 0, 'A'),
        /* 5 */ C("profile_goteborg_motion_2024", "Profile goteborg-motion-2024", "Referrals", 0, 'B'),
        /* 6 */ C("profile_stockholm_2019", "Profile stockholm-2019", "Referrals", 0, 'B'),
        /* 7 */ C("profile_ds_2024_30", "Profile ds-2024-30", "Referrals", 0, 'B'),
        /* 8 */ C("profile_trollhattan_tuti", "Profile trollhattan-tuti", "Referrals", 0, 'B'),
        /* 9 */ C("profile_other", "Profile other", "Referrals", 0, 'B'),
        /* 10 */ C("ne_below_min_age", "Below the profile's ages", "Reasons for NOT_ELIGIBLE", 2, 0),
        /* 11 */ C("ne_above_max_age", "Above the profile's ages", "Reasons for NOT_ELIGIBLE", 2, 0),
        /* 12 */ C("ne_no_qualifying_concern", "No qualifying concern", "Reasons for NOT_ELIGIBLE", 2, 0),
        /* 13 */ C("ne_not_imprisonable", "No offence punishable by imprisonment", "Reasons for NOT_ELIGIBLE", 2, 0),
        /* 14 */ C("ne_not_first_suspicion", "Not the first suspicion", "Reasons for NOT_ELIGIBLE", 2, 0),
        /* 15 */ C("held", "Conversations held (allvarssamtal)", "Conversations", 0, 0),
        /* 16 */ C("held_in_time", "Held within the profile's limit", "Conversations", 15, 0),
        /* 17 */ S("held_in_time_share", "Held within the limit, share of held", "Conversations", 16, 15),
        /* 18 */ HRS("hours_to_conversation_median", "Hours from police report to conversation, median",
                     "Conversations", "hours_n"),
        /* 19 */ HRS("hours_to_conversation_p90", "Hours from police report to conversation, 90th percentile",
                     "Conversations", "hours_n"),
        /* 20 */ C("not_held_in_time", "Not held in time (MISSED)", "Conversations", 0, 0),
        /* 21 */ C("declined", "Family declined", "Conversations", 0, 0),
        /* 22 */ C("cancelled", "Cancelled", "Conversations", 0, 0),
        /* 23 */ C("police_present", "Police present", "Conversations", 15, 0),
        /* 24 */ S("police_present_share", "Police present, share of held", "Conversations", 23, 15),
        /* 25 */ C("guardians_present", "Guardians present (vårdnadshavare)", "Conversations", 15, 0),
        /* 26 */ S("guardians_present_share", "Guardians present, share of held", "Conversations", 25, 15),
        /* 27 */ C("deferred_assessment", "Deferred for a protective assessment", "Deferrals", 3, 0),
        /* 28 */ HRS("assessment_deferral_hours_median", "Hours until the assessment was recorded, median",
                     "Deferrals", "assessment_deferral_n"),
        /* 29 */ C("deferred_investigation", "Deferred for a preliminary investigation", "Deferrals", 3, 0),
        /* 30 */ HRS("investigation_deferral_hours_median", "Hours until cleared by the police, median", "Deferrals",
                     "investigation_deferral_n"),
        /* 31 */ C("contact_missing", "Without a guardian's phone number", "Contact details and timing", 0, 0),
        /* 32 */ HRS("contact_hours_median", "Hours until contact details were supplied, median",
                     "Contact details and timing", "contact_n"),
        /* 33 */ C("late_referrals", "Late referrals (incident long before the report)", "Contact details and timing",
                   0, 0),
        /* 34 */ C("assessments_due", "Protective assessments due (children with acute risk)",
                   "Protective assessments (skyddsbedömning)", 0, 0),
        /* 35 */ C("assessments_on_time", "Recorded on time", "Protective assessments (skyddsbedömning)", 34, 'C'),
        /* 36 */ C("assessments_late", "Recorded late", "Protective assessments (skyddsbedömning)", 34, 'C'),
        /* 37 */ C("assessments_not_recorded", "Not recorded", "Protective assessments (skyddsbedömning)", 34, 'C'),
        /* 38 */ S("assessments_on_time_share", "Recorded on time, share of due",
                   "Protective assessments (skyddsbedömning)", 35, 34),
        /* 39 */ C("assessments_without_case", "Due without a conversation case (NOT_ELIGIBLE)",
                   "Protective assessments (skyddsbedömning)", 34, 0),
        /* 40 */ C("follow_none", "Nothing further", "What held conversations led to", 15, 0),
        /* 41 */ C("follow_advice_support", "Advice and support (råd och stöd)", "What held conversations led to", 15,
                   0),
        /* 42 */ C("follow_open_care", "Open care (öppenvård)", "What held conversations led to", 15, 0),
        /* 43 */ C("follow_investigation", "Investigation opened (SoL 11 kap. 1 §)", "What held conversations led to",
                   15, 0),
        /* 44 */ C("follow_other", "Other", "What held conversations led to", 15, 0),
        /* 45 */ C("held_children_6m", "Held: children followed 6 months", "New referrals (descriptive, not causal)",
                   -1, 0),
        /* 46 */ C("held_rereferred_6m", "Held: with a new referral within 6 months",
                   "New referrals (descriptive, not causal)", 45, 0),
        /* 47 */ S("held_rereferred_6m_share", "Held: share with a new referral within 6 months",
                   "New referrals (descriptive, not causal)", 46, 45),
        /* 48 */ C("not_held_children_6m", "Eligible, not held: children followed 6 months",
                   "New referrals (descriptive, not causal)", -1, 0),
        /* 49 */ C("not_held_rereferred_6m", "Eligible, not held: with a new referral within 6 months",
                   "New referrals (descriptive, not causal)", 48, 0),
        /* 50 */ S("not_held_rereferred_6m_share", "Eligible, not held: share with a new referral within 6 months",
                   "New referrals (descriptive, not causal)", 49, 48),
        /* 51 */ C("held_children_12m", "Held: children followed 12 months", "New referrals (descriptive, not causal)",
                   -1, 0),
        /* 52 */ C("held_rereferred_12m", "Held: with a new referral within 12 months",
                   "New referrals (descriptive, not causal)", 51, 0),
        /* 53 */ S("held_rereferred_12m_share", "Held: share with a new referral within 12 months",
                   "New referrals (descriptive, not causal)", 52, 51),
        /* 54 */ C("not_held_children_12m", "Eligible, not held: children followed 12 months",
                   "New referrals (descriptive, not causal)", -1, 0),
        /* 55 */ C("not_held_rereferred_12m", "Eligible, not held: with a new referral within 12 months",
                   "New referrals (descriptive, not causal)", 54, 0),
        /* 56 */ S("not_held_rereferred_12m_share", "Eligible, not held: share with a new referral within 12 months",
                   "New referrals (descriptive, not causal)", 55, 54),
};
const size_t report_n_figures = sizeof report_figures / sizeof report_figures[0];

int report_figure_index(const char *key) {
        for (size_t i = 0; i < report_n_figures; i++)
                if (strcmp(report_figures[i].key, key) == 0)
                        return (int)i;
        return -1;
}


/* $1 from, $2 to (Stockholm dates, inclusive), $3 district or NULL, $4 month|week|quarter, $5 now.
 * g: the period's rows of referral_stats (schemas/011_referral_stats.sql: one
 * narrow row per referral with its decision, case, MISSED alert and outcome
 * events summarised in the bits of facts) in one scan, grouped by district,
 * period, outcome, profile, state and facts: a few hundred groups, each with
 * its count, the hours of its rows that have them, and the children it
 * follows (those whose 6 months have passed). Then the counts are sums over
 * the groups, the medians and percentiles sort only the hours, and the new
 * referrals of the children followed are a hash join of those with every
 * referral's person and time (made only when there is a child to follow).
 * b: the periods from $1 to $2, the Stockholm midnight each begins at and
 * its local start (named by the output). A row's period is the number of
 * starts at or before its time (width_bucket, a binary search), what
 * date_trunc of its Stockholm time gave with a time zone conversion per row
 * (grouping a million rows: 576-621 ms against 843-1,067): the clocks
 * change at 02:00 and 03:00, so every midnight exists once. $1 and $2 are
 * sent as dates: as text, their cast to a date (an input function, not
 * immutable) kept the bounds from being folded into constants, and the
 * server computed both on every row, 0.9 s of a million rows' 2-3 s on the
 * bench's slower machine (bench/README.md "The follow-up report's bounds and
 * periods"). */
static const char report_sql[] =
        "WITH b AS ("
        "  SELECT array_agg(p AT TIME ZONE 'Europe/Stockholm' ORDER BY p) AS starts, array_agg(p ORDER BY p) AS locals"
        "    FROM generate_series(date_trunc($4::text, $1::date::timestamp), $2::date::timestamp,"
        "                         CASE $4::text WHEN 'quarter' THEN interval '3 months' ELSE ('1 ' || $4::text)::interval END)"
        "         AS p),"
        " g AS ("
        "  SELECT s.district, width_bucket(s.reported_at, (SELECT b.starts FROM b)) AS period, s.outcome,"
        "         s.profile_name, s.state, s.facts, count(*) AS n,"
        "         array_agg(extract(epoch FROM s.held_at - s.reported_at) / 3600) FILTER (WHERE s.held_at IS NOT NULL) AS hours,"
        "         array_agg(extract(epoch FROM s.assessed_at - s.reported_at) / 3600)"
        "           FILTER (WHERE s.outcome = 'DEFERRED' AND s.facts & " STATS_SQL(STATS_ASSESSMENT_FIRST) " <> 0 AND s.assessed_at IS NOT NULL) AS assessment_hours,"
        "         array_agg(extract(epoch FROM s.cleared_at - s.reported_at) / 3600)"
        "           FILTER (WHERE s.outcome = 'DEFERRED' AND s.facts & " STATS_SQL(STATS_PRELIMINARY_INVESTIGATION) " <> 0 AND s.cleared_at IS NOT NULL) AS clearance_hours,"
        "         array_agg(extract(epoch FROM s.contact_at - s.reported_at) / 3600)"
        "           FILTER (WHERE s.facts & " STATS_SQL(STATS_CONTACT_MISSING) " <> 0 AND s.contact_at IS NOT NULL) AS contact_hours,"
        "         array_agg(s.person_key) FILTER (WHERE s.person_key IS NOT NULL AND s.deadline IS NOT NULL"
        "                 AND (s.held_at IS NOT NULL OR s.closed_at IS NOT NULL OR s.deadline < $5::timestamptz)"
        "                 AND coalesce(s.held_at, s.deadline) + interval '6 months' <= $5::timestamptz) AS followed_keys,"
        "         array_agg(coalesce(s.held_at, s.deadline)) FILTER (WHERE s.person_key IS NOT NULL AND s.deadline IS NOT NULL"
        "                 AND (s.held_at IS NOT NULL OR s.closed_at IS NOT NULL OR s.deadline < $5::timestamptz)"
        "                 AND coalesce(s.held_at, s.deadline) + interval '6 months' <= $5::timestamptz) AS anchors"
        "    FROM allvarsd.referral_stats s"
        "   WHERE s.reported_at >= ($1::date::timestamp AT TIME ZONE 'Europe/Stockholm')"
        "     AND s.reported_at < (($2::date + 1)::timestamp AT TIME ZONE 'Europe/Stockholm')"
        "     AND ($3::text IS NULL OR s.district = $3::text)"
        "   GROUP BY 1, 2, 3, 4, 5, 6),"
        " cnt AS ("
        "  SELECT district, period,"
        "         sum(n) AS referrals,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'ELIGIBLE'), 0) AS eligible,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE'), 0) AS not_eligible,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'DEFERRED'), 0) AS deferred,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'MANUAL_REVIEW'), 0) AS manual_review,"
        "         coalesce(sum(n) FILTER (WHERE profile_name = 'goteborg-motion-2024'), 0) AS profile_goteborg_motion_2024,"
        "         coalesce(sum(n) FILTER (WHERE profile_name = 'stockholm-2019'), 0) AS profile_stockholm_2019,"
        "         coalesce(sum(n) FILTER (WHERE profile_name = 'ds-2024-30'), 0) AS profile_ds_2024_30,"
        "         coalesce(sum(n) FILTER (WHERE profile_name = 'trollhattan-tuti'), 0) AS profile_trollhattan_tuti,"
        "         coalesce(sum(n) FILTER (WHERE profile_name NOT IN ('goteborg-motion-2024', 'stockholm-2019', 'ds-2024-30',"
        "                                                            'trollhattan-tuti')), 0) AS profile_other,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE' AND facts & " STATS_SQL(STATS_BELOW_MIN_AGE) " <> 0), 0) AS ne_below_min_age,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE' AND facts & " STATS_SQL(STATS_ABOVE_MAX_AGE) " <> 0), 0) AS ne_above_max_age,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE' AND facts & " STATS_SQL(STATS_NO_QUALIFYING_CONCERN) " <> 0), 0) AS ne_no_qualifying_concern,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE' AND facts & " STATS_SQL(STATS_NOT_IMPRISONABLE) " <> 0), 0) AS ne_not_imprisonable,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'NOT_ELIGIBLE' AND facts & " STATS_SQL(STATS_NOT_FIRST_SUSPICION) " <> 0), 0) AS ne_not_first_suspicion,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_HELD) " <> 0), 0) AS held,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_HELD_IN_TIME) " <> 0), 0) AS held_in_time,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_MISSED) " <> 0), 0) AS not_held_in_time,"
        "         coalesce(sum(n) FILTER (WHERE state = 'DECLINED'), 0) AS declined,"
        "         coalesce(sum(n) FILTER (WHERE state = 'CANCELLED'), 0) AS cancelled,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_POLICE_PRESENT) " <> 0), 0) AS police_present,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_GUARDIANS_PRESENT) " <> 0), 0) AS guardians_present,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'DEFERRED' AND facts & " STATS_SQL(STATS_ASSESSMENT_FIRST) " <> 0), 0) AS deferred_assessment,"
        "         coalesce(sum(n) FILTER (WHERE outcome = 'DEFERRED' AND facts & " STATS_SQL(STATS_PRELIMINARY_INVESTIGATION) " <> 0), 0) AS deferred_investigation,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_CONTACT_MISSING) " <> 0), 0) AS contact_missing,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_LATE_REFERRAL) " <> 0), 0) AS late_referrals,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_ASSESSMENT_DUE) " <> 0), 0) AS assessments_due,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_ASSESSMENT_DUE) " <> 0 AND facts & " STATS_SQL(STATS_ASSESSED_ON_TIME) " <> 0), 0) AS assessments_on_time,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_ASSESSMENT_DUE) " <> 0 AND facts & " STATS_SQL(STATS_ASSESSED_LATE) " <> 0), 0) AS assessments_late,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_ASSESSMENT_DUE) " <> 0 AND facts & (" STATS_SQL(STATS_ASSESSED_ON_TIME) " | " STATS_SQL(STATS_ASSESSED_LATE) ") = 0), 0)"
        "           AS assessments_not_recorded,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_ASSESSMENT_DUE) " <> 0 AND facts & " STATS_SQL(STATS_HAS_CASE) " = 0), 0) AS assessments_without_case,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_FOLLOW_NONE) " <> 0), 0) AS follow_none,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_FOLLOW_ADVICE_SUPPORT) " <> 0), 0) AS follow_advice_support,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_FOLLOW_OPEN_CARE) " <> 0), 0) AS follow_open_care,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_FOLLOW_INVESTIGATION) " <> 0), 0) AS follow_investigation,"
        "         coalesce(sum(n) FILTER (WHERE facts & " STATS_SQL(STATS_FOLLOW_OTHER) " <> 0), 0) AS follow_other"
        "    FROM g GROUP BY district, period),"
        " pct AS ("
        "  SELECT g.district, g.period,"
        "         percentile_cont(0.5) WITHIN GROUP (ORDER BY v.hours) AS hours_to_conversation_median,"
        "         percentile_cont(0.9) WITHIN GROUP (ORDER BY v.hours) AS hours_to_conversation_p90,"
        "         count(v.hours) AS hours_n,"
        "         percentile_cont(0.5) WITHIN GROUP (ORDER BY v.assessment_hours) AS assessment_deferral_hours_median,"
        "         count(v.assessment_hours) AS assessment_deferral_n,"
        "         percentile_cont(0.5) WITHIN GROUP (ORDER BY v.clearance_hours) AS investigation_deferral_hours_median,"
        "         count(v.clearance_hours) AS investigation_deferral_n,"
        "         percentile_cont(0.5) WITHIN GROUP (ORDER BY v.contact_hours) AS contact_hours_median,"
        "         count(v.contact_hours) AS contact_n"
        "    FROM g CROSS JOIN LATERAL unnest(g.hours, g.assessment_hours, g.clearance_hours, g.contact_hours)"
        "                              AS v(hours, assessment_hours, clearance_hours, contact_hours)"
        "   GROUP BY g.district, g.period),"
        " f AS ("
        "  SELECT g.district, g.period, g.facts & " STATS_SQL(STATS_HELD) " <> 0 AS held, u.person_key, u.anchor"
        "    FROM g CROSS JOIN LATERAL unnest(g.followed_keys, g.anchors) AS u(person_key, anchor)),"
        " fol AS ("
        "  SELECT f.district, f.period, f.person_key, f.held,"
        "         coalesce(bool_or(n.reported_at <= f.anchor + interval '6 months'), false) AS again_6m,"
        "         CASE WHEN f.anchor + interval '12 months' <= $5::timestamptz THEN count(n.case_id) > 0 END AS again_12m"
        "    FROM f LEFT JOIN allvarsd.referral_stats n ON n.person_key = f.person_key AND n.reported_at > f.anchor"
        "                                            AND n.reported_at <= f.anchor + interval '12 months'"
        "   GROUP BY f.district, f.period, f.person_key, f.held, f.anchor),"
        " child AS ("
        "  SELECT district, period, held, bool_or(again_6m) AS again_6m,"
        "         bool_or(again_12m IS NOT NULL) AS known_12m, bool_or(again_12m) AS again_12m"
        "    FROM fol GROUP BY district, period, person_key, held),"
        " rec AS ("
        "  SELECT district, period,"
        "         count(*) FILTER (WHERE held) AS held_children_6m,"
        "         count(*) FILTER (WHERE held AND again_6m) AS held_rereferred_6m,"
        "         count(*) FILTER (WHERE NOT held) AS not_held_children_6m,"
        "         count(*) FILTER (WHERE NOT held AND again_6m) AS not_held_rereferred_6m,"
        "         count(*) FILTER (WHERE held AND known_12m) AS held_children_12m,"
        "         count(*) FILTER (WHERE held AND again_12m) AS held_rereferred_12m,"
        "         count(*) FILTER (WHERE NOT held AND known_12m) AS not_held_children_12m,"
        "         count(*) FILTER (WHERE NOT held AND again_12m) AS not_held_rereferred_12m"
        "    FROM child GROUP BY district, period)"
        " SELECT cnt.district,"
        "       to_char((SELECT b.locals FROM b)[cnt.period],"
        "               CASE $4::text WHEN 'week' THEN 'IYYY-\"W\"IW' WHEN 'quarter' THEN 'YYYY-\"Q\"Q' ELSE 'YYYY-MM' END)"
        "         AS period,"
        "       cnt.*, pct.*,"
        "       coalesce(rec.held_children_6m, 0) AS held_children_6m,"
        "       coalesce(rec.held_rereferred_6m, 0) AS held_rereferred_6m,"
        "       coalesce(rec.not_held_children_6m, 0) AS not_held_children_6m,"
        "       coalesce(rec.not_held_rereferred_6m, 0) AS not_held_rereferred_6m,"
        "       coalesce(rec.held_children_12m, 0) AS held_children_12m,"
        "       coalesce(rec.held_rereferred_12m, 0) AS held_rereferred_12m,"
        "       coalesce(rec.not_held_children_12m, 0) AS not_held_children_12m,"
        "       coalesce(rec.not_held_rereferred_12m, 0) AS not_held_rereferred_12m"
        "  FROM cnt LEFT JOIN pct ON pct.district = cnt.district AND pct.period = cnt.period"
        "  LEFT JOIN rec ON rec.district = cnt.district AND rec.period = cnt.period"
        " ORDER BY cnt.district, cnt.period";

/* ---- suppression ---- */

static bool shown(const report_cell *c) {
        return c->available && !report_cell_hidden(c);
}

/* The smallest shown non-zero count among the figures matching (partition
 * group, or subset of total), other than `except`; -1 when none. */
static int smallest_shown(const report_row *row, char group, int total, int except) {
        int best = -1;
        for (size_t i = 0; i < report_n_figures; i++) {
                const report_figure *f = &report_figures[i];
                if ((int)i == except || f->kind != RK_COUNT || f->partition != group || f->total != total)
                        continue;
                const report_cell *c = &row->cells[i];
                if (!shown(c) || c->value <= 0)
                        continue;
                if (best < 0 || c->value < row->cells[best].value)
                        best = (int)i;
        }
        return best;
}

/* One round of secondary suppression; true when it hid something. */
static bool secondary_round(report_row *row) {
        bool changed = false;
        for (size_t t = 0; t < report_n_figures; t++) {
                const report_cell *tc = &row->cells[t];
                /* A partition whose total is shown: one hidden part would be the
                 * total less the others, so a second part is hidden with it. */
                for (char g = 'A'; g <= 'Z'; g++) {
                        int hidden = 0, n = 0, last = -1;
                        for (size_t i = 0; i < report_n_figures; i++) {
                                const report_figure *f = &report_figures[i];
                                if (f->kind != RK_COUNT || f->partition != g || f->total != (int)t)
                                        continue;
                                n++;
                                if (report_cell_hidden(&row->cells[i]))
                                        hidden++, last = (int)i;
                        }
                        if (n == 0 || hidden != 1 || !shown(tc))
                                continue;
                        int k = smallest_shown(row, g, (int)t, last);
                        if (k >= 0) {
                                row->cells[k].secondary = true;
                                changed = true;
                        }
                }
                /* A subset shown beside its shown total: their difference, if 1-4,
                 * is a small count in plain sight; the subset is hidden. */
                for (size_t i = 0; i < report_n_figures; i++) {
                        const report_figure *f = &report_figures[i];
                        if (f->kind != RK_COUNT || f->partition || f->total != (int)t)
                                continue;
                        report_cell *c = &row->cells[i];
                        double diff = tc->value - c->value;
                        if (shown(tc) && shown(c) && diff >= 1 && diff < REPORT_MIN_COUNT) {
                                c->secondary = true;
                                changed = true;
                        }
                }
        }
        return changed;
}

void report_suppress(report_row *row) {
        for (size_t i = 0; i < report_n_figures; i++) {
                report_cell *c = &row->cells[i];
                c->primary = c->secondary = false;
                if (report_figures[i].kind == RK_COUNT) {
                        c->available = true;
                        c->primary = c->value >= 1 && c->value < REPORT_MIN_COUNT;
                }
        }
        while (secondary_round(row))
                ;
        /* Shares of shown counts only; statistics of hours over 5 values or more. */
        for (size_t i = 0; i < report_n_figures; i++) {
                const report_figure *f = &report_figures[i];
                report_cell *c = &row->cells[i];
                if (f->kind == RK_SHARE) {
                        const report_cell *num = &row->cells[f->num], *den = &row->cells[f->den];
                        c->available = shown(num) && shown(den) && den->value > 0;
                        c->value = c->available ? num->value / den->value : 0;
                }
        }
}

/* ---- the query ---- */

static int fetch(ctl *c, report *rep) {
        /* One analytic statement: no JIT (compiling its expressions costs more
         * than running them over a million rows), and memory for its hashes
         * and sorts instead of temporary files. The planner can estimate
         * neither the groups of a period number nor the rows of an unnest, and
         * takes a million rows for each: it would sort them to group them, and
         * probe the period's block index once per child followed. Hashing is
         * what the statement is written for; the percentiles still sort their
         * values. This session only. */
        static const char *const session[] = {"SET jit = off", "SET work_mem = '64MB'", "SET enable_sort = off",
                                              "SET enable_nestloop = off"};
        for (size_t i = 0; i < sizeof session / sizeof *session; i++) {
                PGresult *set = ctl_exec(c, session[i], NULL);
                if (!set)
                        return -EIO;
                PQclear(set);
        }
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_DATE, rep->from);
        ctl_param(&p, CTL_OID_DATE, rep->to);
        ctl_param(&p, CTL_OID_TEXT, rep->district);
        ctl_param(&p, CTL_OID_TEXT, rep->by);
        ctl_param(&p, CTL_OID_TIMESTAMPTZ, c->now);
        PGresult *res = ctl_exec(c, report_sql, &p);
        ctl_params_done(&p);
        if (!res)
                return -EIO;
        int n = PQntuples(res);
        int col[report_n_figures + 1], ncol[report_n_figures + 1];
        for (size_t i = 0; i < report_n_figures; i++) {
                col[i] = PQfnumber(res, report_figures[i].key);
                ncol[i] = report_figures[i].n_column ? PQfnumber(res, report_figures[i].n_column) : -1;
        }
        rep->rows = calloc((size_t)n + 1, sizeof *rep->rows);
        if (!rep->rows) {
                PQclear(res);
                return -ENOMEM;
        }
        for (int i = 0; i < n; i++) {
                report_row *row = &rep->rows[rep->n_rows++];
                row->district = strdup(PQgetvalue(res, i, 0));
                row->period = strdup(PQgetvalue(res, i, 1));
                row->cells = calloc(report_n_figures, sizeof *row->cells);
                if (!row->district || !row->period || !row->cells) {
                        PQclear(res);
                        return -ENOMEM;
                }
                for (size_t k = 0; k < report_n_figures; k++) {
                        report_cell *cell = &row->cells[k];
                        if (col[k] < 0 || PQgetisnull(res, i, col[k]))
                                continue;
                        cell->value = strtod(PQgetvalue(res, i, col[k]), NULL);
                        if (report_figures[k].kind == RK_HOURS)
                                cell->available = ncol[k] >= 0 &&
                                                  strtod(PQgetvalue(res, i, ncol[k]), NULL) >= REPORT_MIN_COUNT;
                }
                report_suppress(row);
        }
        PQclear(res);
        return 0;
}

static void report_free(report *rep) {
        for (size_t i = 0; i < rep->n_rows; i++) {
                free(rep->rows[i].district);
                free(rep->rows[i].period);
                free(rep->rows[i].cells);
        }
        free(rep->rows);
}

static bool valid_date(const char *s) {
        struct tm tm = {0};
        const char *end = s ? strptime(s, "%Y-%m-%d", &tm) : NULL;
        return end && *end == '\0' && strlen(s) == 10;
}

int ctl_report_main(int argc, char **argv) {
        enum { OPT_FROM = 1, OPT_TO, OPT_DISTRICT, OPT_BY, OPT_FORMAT, OPT_OUTPUT };
        static const struct option options[] = {
                {"from", required_argument, NULL, OPT_FROM},
                {"to", required_argument, NULL, OPT_TO},
                {"district", required_argument, NULL, OPT_DISTRICT},
                {"by", required_argument, NULL, OPT_BY},
                {"format", required_argument, NULL, OPT_FORMAT},
                {"output", required_argument, NULL, OPT_OUTPUT},
                {NULL, 0, NULL, 0},
        };
        static const struct {
                const char *name;
                int (*write)(FILE *f, const report *r);
        } formats[] = {
                {"text", report_write_text},
                {"csv", report_write_csv},
                {"json", report_write_json},
                {"html", report_write_html},
        };
        ctl c;
        ctl_init(&c, "report", report_usage);
        report rep = {.by = "month"};
        const char *output = NULL;
        int format = 0;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_FROM: rep.from = optarg; break;
                case OPT_TO: rep.to = optarg; break;
                case OPT_DISTRICT: rep.district = optarg; break;
                case OPT_BY:
                        if (strcmp(optarg, "month") != 0 && strcmp(optarg, "week") != 0 &&
                            strcmp(optarg, "quarter") != 0)
                                return ctl_usage_error(&c, "--by: month, week or quarter, not %s", optarg);
                        rep.by = optarg;
                        break;
                case OPT_FORMAT:
                        format = -1;
                        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
                                if (strcmp(optarg, formats[i].name) == 0)
                                        format = (int)i;
                        if (format < 0)
                                return ctl_usage_error(&c, "--format: text, csv, json or html, not %s", optarg);
                        break;
                case OPT_OUTPUT: output = optarg; break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
        if (!rep.from || !rep.to)
                return ctl_usage_error(&c, "--from and --to are required");
        if (!valid_date(rep.from) || !valid_date(rep.to))
                return ctl_usage_error(&c, "--from and --to take a date, YYYY-MM-DD");
        if (c.json)
                return ctl_usage_error(&c, "--json: use --format json");

        int r = ctl_connect(&c, true);
        if (r >= 0) {
                snprintf(rep.generated_at, sizeof rep.generated_at, "%s", c.now);
                r = fetch(&c, &rep);
                if (r == -ENOMEM)
                        ctl_fail(&c, "out of memory");
        }
        if (r >= 0) {
                FILE *f = output ? fopen(output, "we") : stdout;
                if (!f) {
                        r = -errno;
                        ctl_fail(&c, "cannot write %s: %s", output, strerror(-r));
                } else {
                        r = formats[format].write(f, &rep);
                        if (fflush(f) != 0 && r >= 0)
                                r = -errno;
                        if (output && fclose(f) != 0 && r >= 0)
                                r = -errno;
                        if (r < 0)
                                ctl_fail(&c, "cannot write the report: %s", strerror(-r));
                }
        }
        report_free(&rep);
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
