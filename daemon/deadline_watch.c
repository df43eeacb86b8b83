/* The deadline watch (docs/domain.md "Deadline watch"). One pass is one transaction:
 *   1. one SELECT of the open cases that may be due for an alert, locked
 *      FOR UPDATE SKIP LOCKED (another instance holding a case has it this round);
 *      read through partial indexes, so its cost follows the cases due, not
 *      the open ones (schemas/003_deadline_watch_indexes.sql);
 *   2. the alerts due, decided here at `now` (the daemon's one clock);
 *   3. one INSERT ... SELECT unnest into case_alerts ON CONFLICT DO NOTHING
 *      RETURNING: its primary key (case_id, kind, due_at) makes each alert once
 *      per case and due time, whatever restarts or instances; then the cases'
 *      *_alerted_due marks, which take them out of those indexes;
 *   4. for the rows actually inserted: the alert's events and audit row
 *      (alerts.h: for MISSED also the police's NOT_HELD_IN_TIME feedback,
 *      subject to the feedback policy), written as the shared rows
 *      (store_rows.h) with the NOTIFY that wakes the relay; COMMIT.
 *
 * Rules:
 *   AT_RISK      state ELIGIBLE (nothing scheduled), deadline - limit * (1 - f) <= now
 *                < deadline, f the at_risk_fraction of the case's profile (case_profile.h;
 *                PROFILE_AT_RISK_FRACTION by default);
 *                due_at = deadline. Once the deadline has passed only MISSED is
 *                raised: an "at risk" warning about a deadline already missed
 *                would only be noise for the social worker. So also once MISSED
 *                was raised for this deadline: a wall clock stepped back past it
 *                (an NTP correction) must not warn again of what was missed
 *                (tests/faults/08-clock-step.sh); the AT_RISK mark is then set
 *                with the MISSED one.
 *   MISSED       now >= deadline and the conversation was not held: state ELIGIBLE,
 *                or SCHEDULED for a CONVERSATION deadline (the meeting must be
 *                held by then). For a SUMMONS deadline (DS 2024:30: the summons
 *                within 24 h) a SCHEDULED case has met it. due_at = deadline.
 *   PROTECTIVE_ASSESSMENT_OVERDUE
 *                awaiting_assessment and now >= protective_assessment_due;
 *                due_at = protective_assessment_due. Also for a referral
 *                without a case that owes one (a NOT_ELIGIBLE child with acute
 *                risk: assessment_duties), once, marked by alerted_due.
 * A deadline that moves (deferral resolved, override) is a new due time and so
 * gets its own alerts. */
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "case_profile.h"
#include "cleanup.h"
#include "deadline_watch.h"
#include "events.h"
#include "lifecycle.h"
#include "profiles.h"
#include "store_rows.h"

/* The partial indexes of schemas/003_deadline_watch_indexes.sql, word for word
 * (the planner uses a partial index only when the query states its predicate):
 * the open cases that may get an alert of each kind, less those whose alert
 * for the current due time is marked as raised. */
#define WATCH_AT_RISK_CASES                                                             \
        "c.closed_at IS NULL AND c.state = 'ELIGIBLE' AND c.at_risk_alerted_due IS DISTINCT FROM c.deadline"
#define WATCH_MISSED_CASES CASE_SQL_OWED("c") " AND c.missed_alerted_due IS DISTINCT FROM c.deadline"
#define WATCH_ASSESSMENT_CASES                                                          \
        "c.closed_at IS NULL AND c.awaiting_assessment"                                 \
        " AND c.assessment_alerted_due IS DISTINCT FROM c.protective_assessment_due"

/* Candidates: a superset of the cases with an alert due (the AT_RISK bound uses
 * the smallest fraction any profile may have, with a second of slack against
 * float rounding); the exact rule is applied in C, and the case_alerts primary
 * key drops what was raised before. Each kind is a range scan of its partial
 * index on the due time, so a pass reads the cases that became due since the
 * last one, not every open case (380,000 open cases on a busy
 * machine: 0.8-3.3 s before; now 0.4-8 ms with 4 due, 29 ms with 414).
 * AT_RISK walks the few distinct limits (a loose index scan: the recursive
 * lim) and reads one deadline range per limit; OFFSET 0 keeps that a nested
 * loop of index ranges. The ids are then locked through the primary key; the
 * outer WHERE repeats the rules so that a case changed meanwhile (closed, say)
 * is rechecked on its new row by FOR UPDATE (READ COMMITTED), as before. */
static const pg_statement watch_statements[] = {
        { "watch_candidates",
          "WITH RECURSIVE lim(l) AS ("
          "    SELECT min(c.limit_seconds) FROM allvarsd.cases c WHERE " WATCH_AT_RISK_CASES
          "  UNION ALL"
          "    SELECT (SELECT min(c.limit_seconds) FROM allvarsd.cases c"
          "             WHERE " WATCH_AT_RISK_CASES " AND c.limit_seconds > lim.l)"
          "      FROM lim WHERE lim.l IS NOT NULL),"
          " due(case_id) AS ("
          "    SELECT c.case_id FROM lim CROSS JOIN LATERAL ("
          "        SELECT c.case_id FROM allvarsd.cases c"
          "         WHERE " WATCH_AT_RISK_CASES " AND c.limit_seconds = lim.l"
          "           AND c.missed_alerted_due IS DISTINCT FROM c.deadline"
          "           AND c.deadline > " "$1::timestamptz"
          "           AND c.deadline <= " "$1::timestamptz" " + interval '1 second'"
          "                             + lim.l * (1 - $2::float8) * interval '1 second'"
          "        OFFSET 0) c"
          "  UNION ALL"
          "    SELECT c.case_id FROM allvarsd.cases c"
          "     WHERE " WATCH_MISSED_CASES " AND c.deadline <= " "$1::timestamptz"
          "  UNION ALL"
          "    SELECT c.case_id FROM allvarsd.cases c"
          "     WHERE " WATCH_ASSESSMENT_CASES " AND c.protective_assessment_due <= " "$1::timestamptz" ")"
          "SELECT c.case_id::text, c.district, c.state, coalesce(c.deadline_kind, ''), c.limit_seconds,"
          "       c.profile_name, " PG_SQL_USEC("c.deadline") ", " PG_SQL_USEC("c.protective_assessment_due") ","
          "       c.awaiting_assessment, r.referral_id, r.police_case_number, c.feedback_requested,"
          "       " PG_SQL_USEC("c.created_at")
          "  FROM allvarsd.cases c JOIN allvarsd.referrals r ON r.referral_id = c.referral_id"
          " WHERE c.case_id = ANY (ARRAY(SELECT case_id FROM due))"
          "   AND c.closed_at IS NULL"
          "   AND ((c.state = 'ELIGIBLE' AND c.deadline > " "$1::timestamptz"
          "         AND c.deadline - c.limit_seconds * (1 - $2::float8) * interval '1 second'"
          "             <= " "$1::timestamptz" " + interval '1 second'"
          "         AND NOT EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c.case_id"
          "                            AND a.kind = 'MISSED' AND a.due_at = c.deadline))"
          "     OR " CASE_SQL_OVERDUE("c", "$1::timestamptz")
          "     OR (c.awaiting_assessment AND c.protective_assessment_due <= " "$1::timestamptz" "))"
          " ORDER BY c.case_id"
          "   FOR UPDATE OF c SKIP LOCKED" },
        /* Mark on the locked candidates the alerts case_alerts now holds for their
         * current due times (raised by this pass, an earlier one, another instance or
         * the batch on arrival), so that they leave the partial indexes above. Only
         * rows whose marks change are written. */
        { "watch_mark_alerted",
          "UPDATE allvarsd.cases c"
          "   SET at_risk_alerted_due = CASE WHEN m.at_risk THEN c.deadline ELSE c.at_risk_alerted_due END,"
          "       missed_alerted_due = CASE WHEN m.missed THEN c.deadline ELSE c.missed_alerted_due END,"
          "       assessment_alerted_due = CASE WHEN m.assessment THEN c.protective_assessment_due"
          "                                     ELSE c.assessment_alerted_due END"
          "  FROM (SELECT c2.case_id,"
          "               c2.at_risk_alerted_due IS DISTINCT FROM c2.deadline"
          "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
          "                              AND a.kind IN ('AT_RISK', 'MISSED') AND a.due_at = c2.deadline) AS at_risk,"
          "               c2.missed_alerted_due IS DISTINCT FROM c2.deadline"
          "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
          "                              AND a.kind = 'MISSED' AND a.due_at = c2.deadline) AS missed,"
          "               c2.assessment_alerted_due IS DISTINCT FROM c2.protective_assessment_due"
          "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
          "                              AND a.kind = 'PROTECTIVE_ASSESSMENT_OVERDUE'"
          "                              AND a.due_at = c2.protective_assessment_due) AS assessment"
          "          FROM allvarsd.cases c2 WHERE c2.case_id = ANY ($1::text[]::uuid[])) m"
          " WHERE c.case_id = m.case_id AND (m.at_risk OR m.missed OR m.assessment)" },
        { "watch_insert_alerts",
          "INSERT INTO allvarsd.case_alerts (case_id, kind, due_at, raised_at)"
          " SELECT a.case_id::uuid, a.kind, a.due, a.at"
          "   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS a(case_id, kind, due, at)"
          " ON CONFLICT DO NOTHING"
          " RETURNING case_id::text, kind, " PG_SQL_USEC("due_at") },
        /* docs/domain.md "Protective assessment": the duties of referrals without a
         * case (schemas/010_assessments_report.sql), due, neither recorded nor
         * alerted, marked alerted under their row lock: the mark is the once. A
         * referral whose case an override opened is the case's business. */
        { "watch_duties",
          "WITH due AS ("
          "    SELECT d.case_id FROM allvarsd.assessment_duties d"
          "     WHERE d.recorded_at IS NULL AND d.alerted_due IS NULL AND d.due_at <= $1::timestamptz"
          "       AND NOT EXISTS (SELECT 1 FROM allvarsd.cases c WHERE c.case_id = d.case_id)"
          "     ORDER BY d.case_id"
          "       FOR UPDATE SKIP LOCKED)"
          "UPDATE allvarsd.assessment_duties d SET alerted_due = d.due_at, alerted_at = $1::timestamptz"
          "  FROM due, allvarsd.referrals r"
          " WHERE d.case_id = due.case_id AND r.referral_id = d.referral_id"
          " RETURNING d.case_id::text, d.district, r.referral_id, r.police_case_number, r.feedback_requested,"
          "           " PG_SQL_USEC("d.due_at") },
        { NULL, NULL },
};

/* ---- the candidates and their alerts ---- */

typedef struct watch_case {
        alert_case a;                   /* strings point into the candidates' PGresult */
} watch_case;

typedef struct watch_alert {
        const watch_case *c;
        alert_kind kind;
        usec_t due_at;
        usec_t at;                      /* raised at: now, or the case's creation if later */
        bool raised;                    /* inserted by this pass */
} watch_alert;

static int alert_kind_parse(const char *s) {
        for (alert_kind k = ALERT_AT_RISK; k <= ALERT_PROTECTIVE_ASSESSMENT_OVERDUE; k++)
                if (strcmp(s, alert_kind_code(k)) == 0)
                        return (int)k;
        return -EINVAL;
}

static double fraction_sane(double f) {
        return f > 0.0 && f <= 1.0 ? f : PROFILE_AT_RISK_FRACTION;
}

/* The smallest fraction any case can have: the SQL prefilter's bound. */
static double min_fraction(const config *cfg) {
        double f = PROFILE_AT_RISK_FRACTION;
        f = fmin(f, fraction_sane(cfg->profile.at_risk_fraction));
        for (size_t i = 0; i < cfg->n_districts; i++)
                f = fmin(f, fraction_sane(cfg->districts[i].profile.at_risk_fraction));
        for (size_t i = 0; i < profiles_builtin_count(); i++)
                f = fmin(f, fraction_sane(profiles_builtin(i)->at_risk_fraction));
        return f;
}

static int alert_cmp(const void *a, const void *b) {
        const watch_alert *x = a, *y = b;
        int r = strcmp(x->c->a.case_id, y->c->a.case_id);
        if (r != 0)
                return r;
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        return x->due_at < y->due_at ? -1 : x->due_at > y->due_at;
}

/* Decide the alerts due for each candidate at now. */
static size_t collect_alerts(const config *cfg, const PGresult *cand, usec_t now, watch_case *cases,
                             watch_alert *alerts) {
        size_t n = 0;
        for (int i = 0; i < PQntuples(cand); i++) {
                watch_case *c = &cases[i];
                c->a = (alert_case){
                        .case_id = PQgetvalue(cand, i, 0),
                        .district = PQgetvalue(cand, i, 1),
                        .state = PQgetvalue(cand, i, 2),
                        .deadline_kind = deadline_kind_from_code(PQgetvalue(cand, i, 3)),
                        .referral_id = PQgetvalue(cand, i, 9),
                        .police_case_number = PQgetvalue(cand, i, 10),
                        .feedback_requested = pg_field_bool(cand, i, 11),
                };
                int64_t limit_s = pg_field_int(cand, i, 4);
                const char *profile_name = PQgetvalue(cand, i, 5);
                bool has_deadline = !PQgetisnull(cand, i, 6);
                usec_t deadline = pg_field_usec(cand, i, 6);
                bool has_pad = !PQgetisnull(cand, i, 7);
                usec_t pad = pg_field_usec(cand, i, 7);
                bool awaiting_assessment = pg_field_bool(cand, i, 8);
                bool eligible = strcmp(c->a.state, "ELIGIBLE") == 0;
                /* Recorded no earlier than the case was created: after a step back of
                 * the wall clock, an alert is not raised "before" the decision that
                 * the clock, ahead then, stamped later (tests/faults/08-clock-step.sh). */
                usec_t created = pg_field_usec(cand, i, 12);
                usec_t at = created > now ? created : now;

                if (has_deadline && eligible && now < deadline) {
                        profile p;
                        case_profile(cfg, c->a.district, profile_name, limit_s, &p);
                        double f = fraction_sane(p.at_risk_fraction);
                        usec_t before = (usec_t)llround((double)limit_s * (double)USEC_PER_SEC * (1.0 - f));
                        if (now >= deadline - before)
                                alerts[n++] = (watch_alert){ .c = c, .kind = ALERT_AT_RISK, .due_at = deadline, .at = at };
                }
                /* lifecycle.h: the one meaning of overdue, allvarsctl's too. */
                if (has_deadline &&
                    case_overdue(case_state_code_from_name(c->a.state), c->a.deadline_kind, deadline, now))
                        alerts[n++] = (watch_alert){ .c = c, .kind = ALERT_MISSED, .due_at = deadline, .at = at };
                if (has_pad && awaiting_assessment && now >= pad)
                        alerts[n++] = (watch_alert){ .c = c,
                                                     .kind = ALERT_PROTECTIVE_ASSESSMENT_OVERDUE,
                                                     .due_at = pad,
                                                     .at = at };
        }
        return n;
}

static void arrs_free(pg_arr (*a)[4]) {
        for (size_t i = 0; i < 4; i++)
                pg_arr_free(&(*a)[i]);
}

/* Insert the alerts; mark those actually inserted (raised). */
static int insert_alerts(pg_session *s, watch_alert *alerts, size_t n) {
        _cleanup_(arrs_free) pg_arr a[4] = { 0 };
        pg_arr_reset(&a[0], PG_OID_TEXT);
        pg_arr_reset(&a[1], PG_OID_TEXT);
        pg_arr_reset(&a[2], PG_OID_TIMESTAMPTZ);
        pg_arr_reset(&a[3], PG_OID_TIMESTAMPTZ);
        for (size_t i = 0; i < n; i++) {
                pg_arr_text(&a[0], alerts[i].c->a.case_id);
                pg_arr_text(&a[1], alert_kind_code(alerts[i].kind));
                pg_arr_ts(&a[2], alerts[i].due_at);
                pg_arr_ts(&a[3], alerts[i].at);
        }
        pg_params p = { 0 };
        for (size_t i = 0; i < 4; i++)
                if (pg_params_arr(&p, &a[i]) < 0)
                        return pg_fail(s, -ENOMEM, "deadline watch: out of memory");
        _cleanup_pqclear_ PGresult *res = NULL;
        int r = pg_exec(s, "watch_insert_alerts", &p, 0, &res);
        if (r < 0)
                return r;

        qsort(alerts, n, sizeof *alerts, alert_cmp);
        for (int i = 0; i < PQntuples(res); i++) {
                int k = alert_kind_parse(PQgetvalue(res, i, 1));
                watch_case key_case = { .a.case_id = PQgetvalue(res, i, 0) };
                watch_alert key = { .c = &key_case, .kind = (alert_kind)k, .due_at = pg_field_usec(res, i, 2) };
                watch_alert *hit = k < 0 ? NULL : bsearch(&key, alerts, n, sizeof *alerts, alert_cmp);
                if (!hit)               /* PostgreSQL returned what we did not insert */
                        return pg_fail(s, -EPROTO, "deadline watch: an alert row not in this pass");
                hit->raised = true;
        }
        return 0;
}

/* The marks of the locked candidates (watch_mark_alerted). */
static int mark_alerted(pg_session *s, const watch_case *cases, size_t n) {
        _cleanup_(pg_arr_free) pg_arr ids = { 0 };
        pg_arr_reset(&ids, PG_OID_TEXT);
        for (size_t i = 0; i < n; i++)
                pg_arr_text(&ids, cases[i].a.case_id);
        pg_params p = { 0 };
        if (pg_params_arr(&p, &ids) < 0)
                return pg_fail(s, -ENOMEM, "deadline watch: out of memory");
        return pg_exec(s, "watch_mark_alerted", &p, 0, NULL);
}

/* PROTECTIVE_ASSESSMENT_OVERDUE for the duties of referrals without a case. */
static int raise_duties(const config *cfg, usec_t now, const PGresult *duties, event_list *ev, store_rows *rows,
                        deadline_watch_result *res) {
        for (int i = 0; duties && i < PQntuples(duties); i++) {
                const alert_case ac = {
                        .case_id = PQgetvalue(duties, i, 0),
                        .district = PQgetvalue(duties, i, 1),
                        .referral_id = PQgetvalue(duties, i, 2),
                        .police_case_number = PQgetvalue(duties, i, 3),
                        .feedback_requested = pg_field_bool(duties, i, 4),
                        .state = "NOT_ELIGIBLE",
                        .deadline_kind = DEADLINE_NONE,
                };
                int r = alert_raise(cfg, &ac, ALERT_PROTECTIVE_ASSESSMENT_OVERDUE, pg_field_usec(duties, i, 5), now,
                                    ev, rows);
                if (r < 0)
                        return r;
                res->assessment_overdue++;
        }
        return 0;
}

/* The events and audit rows of the raised alerts; then write them and COMMIT. */
static int write_raised(pg_session *s, const config *cfg, usec_t now, const watch_alert *alerts, size_t n,
                        const PGresult *duties, deadline_watch_result *res) {
        _cleanup_(event_list_free) event_list ev = { 0 };
        _cleanup_(store_rows_free) store_rows rows = { 0 };
        store_rows_reset(&rows);
        int rd = raise_duties(cfg, now, duties, &ev, &rows, res);
        if (rd < 0)
                return pg_fail(s, rd, "deadline watch: building the events failed: %s", strerror(-rd));
        for (size_t i = 0; i < n; i++) {
                const watch_alert *a = &alerts[i];
                if (!a->raised)
                        continue;
                int r = alert_raise(cfg, &a->c->a, a->kind, a->due_at, a->at, &ev, &rows);
                if (r < 0)
                        return pg_fail(s, r, "deadline watch: building the events failed: %s", strerror(-r));
                switch (a->kind) {
                case ALERT_AT_RISK:
                        res->at_risk++;
                        break;
                case ALERT_MISSED:
                        res->missed++;
                        /* counted by the follow-up report as not held in time */
                        store_rows_stats(&rows, a->c->a.case_id);
                        break;
                case ALERT_PROTECTIVE_ASSESSMENT_OVERDUE:
                        res->assessment_overdue++;
                        break;
                case ALERT_PARTITION_GAP:       /* the consumer's and the relay's, not the watch's */
                case ALERT_EVENT_UNDELIVERABLE:
                        break;
                }
        }
        /* delivered ones have left the outbox: written once (store_rows.h) */
        store_rows_events(&rows, &ev, 0, true);
        return store_rows_write(&rows, s, now, true, NULL);
}

int deadline_watch_run(store *st, const config *cfg, usec_t now, deadline_watch_result *ret) {
        deadline_watch_result res = { 0 };
        pg_session *s = store_session(st);
        int r = store_rows_ready(st, watch_statements, true);
        if (r < 0)
                return r;

        pg_params cp = { 0 };
        pg_params_ts(&cp, now);
        pg_params_float8(&cp, min_fraction(cfg));
        _cleanup_pqclear_ PGresult *cand = NULL;
        _cleanup_free_ watch_case *cases = NULL;
        _cleanup_free_ watch_alert *alerts = NULL;
        r = pg_exec(s, "watch_candidates", &cp, 0, &cand);
        size_t n_cases = r < 0 ? 0 : (size_t)PQntuples(cand), n_alerts = 0;
        if (n_cases > 0) {
                cases = calloc(n_cases, sizeof *cases);
                alerts = calloc(n_cases * 3, sizeof *alerts);
                if (!cases || !alerts)
                        r = pg_fail(s, -ENOMEM, "deadline watch: out of memory");
                else
                        n_alerts = collect_alerts(cfg, cand, now, cases, alerts);
        }
        if (r >= 0 && n_alerts > 0)
                r = insert_alerts(s, alerts, n_alerts);
        if (r >= 0 && n_cases > 0)
                r = mark_alerted(s, cases, n_cases);
        _cleanup_pqclear_ PGresult *duties = NULL;
        if (r >= 0) {
                pg_params dp = { 0 };
                pg_params_ts(&dp, now);
                r = pg_exec(s, "watch_duties", &dp, 0, &duties);
        }
        if (r >= 0)
                r = write_raised(s, cfg, now, alerts, n_alerts, duties, &res);
        if (r < 0) {
                store_rollback(st);
                return r;
        }
        if (ret)
                *ret = res;
        return 0;
}
