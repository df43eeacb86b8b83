/* The deadline watch (DOMAIN.md "After the decision: the case", "Deadline
 * watch"; issues 5 and 7). One pass is one transaction:
 *   1. one SELECT of the open cases that may be due for an alert, locked
 *      FOR UPDATE SKIP LOCKED (another instance holding a case has it this round);
 *      read through partial indexes, so its cost follows the cases due, not
 *      the open ones (schemas/003_deadline_watch_indexes.sql);
 *   2. the alerts due, decided here at `now` (the daemon's one clock);
 *   3. one INSERT ... SELECT unnest into case_alerts ON CONFLICT DO NOTHING
 *      RETURNING: its primary key (case_id, kind, due_at) makes each alert once
 *      per case and due time, whatever restarts or instances; then the cases'
 *      *_alerted_due marks, which take them out of those indexes;
 *   4. for the rows actually inserted: the outbox alert, for MISSED the police's
 *      NOT_HELD_IN_TIME feedback (subject to the feedback policy), an audit row;
 *   5. pg_notify to wake the relay; COMMIT.
 *
 * Rules:
 *   AT_RISK      state ELIGIBLE (nothing scheduled), deadline - limit * (1 - f) <= now
 *                < deadline, f the at_risk_fraction of the case's profile (0.75);
 *                due_at = deadline. Once the deadline has passed only MISSED is
 *                raised: an "at risk" warning about a deadline already missed
 *                would only be noise for the social worker.
 *   MISSED       now >= deadline and the conversation was not held: state ELIGIBLE,
 *                or SCHEDULED for a CONVERSATION deadline (the meeting must be
 *                held by then). For a SUMMONS deadline (DS 2024:30: the summons
 *                within 24 h) a SCHEDULED case has met it. due_at = deadline.
 *   PROTECTIVE_ASSESSMENT_OVERDUE
 *                awaiting_assessment and now >= protective_assessment_due;
 *                due_at = protective_assessment_due.
 * A deadline that moves (deferral resolved, override) is a new due time and so
 * gets its own alerts. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "deadline_watch.h"
#include "events.h"
#include "ids.h"
#include "profiles.h"
#include "store_internal.h"

#define AT_RISK_FRACTION_DEFAULT 0.75   /* DOMAIN.md: 75 % of the limit */

/* now and other times travel as microseconds since the epoch; exact both ways. */
#define SQL_TS(p)   "(timestamptz 'epoch' + (" p ")::bigint * interval '1 microsecond')"
#define SQL_USEC(e) "(extract(epoch FROM " e ") * 1000000)::bigint"

/* The partial indexes of schemas/003_deadline_watch_indexes.sql, word for word
 * (the planner uses a partial index only when the query states its predicate):
 * the open cases that may get an alert of each kind, less those whose alert
 * for the current due time is marked as raised. */
#define WATCH_AT_RISK_CASES                                                             \
        "c.closed_at IS NULL AND c.state = 'ELIGIBLE' AND c.at_risk_alerted_due IS DISTINCT FROM c.deadline"
#define WATCH_MISSED_CASES                                                              \
        "c.closed_at IS NULL"                                                           \
        " AND (c.state = 'ELIGIBLE' OR (c.state = 'SCHEDULED' AND c.deadline_kind IS DISTINCT FROM 'SUMMONS'))" \
        " AND c.missed_alerted_due IS DISTINCT FROM c.deadline"
#define WATCH_ASSESSMENT_CASES                                                          \
        "c.closed_at IS NULL AND c.awaiting_assessment"                                 \
        " AND c.assessment_alerted_due IS DISTINCT FROM c.protective_assessment_due"

/* Candidates: a superset of the cases with an alert due (the AT_RISK bound uses
 * the smallest fraction any profile may have, with a second of slack against
 * float rounding); the exact rule is applied in C, and the case_alerts primary
 * key drops what was raised before. Each kind is a range scan of its partial
 * index on the due time, so a pass reads the cases that became due since the
 * last one, not every open case (issue 7, 380,000 open cases on a busy
 * machine: 0.8-3.3 s before; now 0.4-8 ms with 4 due, 29 ms with 414).
 * AT_RISK walks the few distinct limits (a loose index scan: the recursive
 * lim) and reads one deadline range per limit; OFFSET 0 keeps that a nested
 * loop of index ranges. The ids are then locked through the primary key; the
 * outer WHERE repeats the rules so that a case changed meanwhile (closed, say)
 * is rechecked on its new row by FOR UPDATE (READ COMMITTED), as before. */
static const char SQL_CANDIDATES[] =
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
        "           AND c.deadline > " SQL_TS("$1")
        "           AND c.deadline <= " SQL_TS("$1") " + interval '1 second'"
        "                             + lim.l * (1 - $2::float8) * interval '1 second'"
        "        OFFSET 0) c"
        "  UNION ALL"
        "    SELECT c.case_id FROM allvarsd.cases c"
        "     WHERE " WATCH_MISSED_CASES " AND c.deadline <= " SQL_TS("$1")
        "  UNION ALL"
        "    SELECT c.case_id FROM allvarsd.cases c"
        "     WHERE " WATCH_ASSESSMENT_CASES " AND c.protective_assessment_due <= " SQL_TS("$1") ")"
        "SELECT c.case_id::text, c.district, c.state, coalesce(c.deadline_kind, ''), c.limit_seconds,"
        "       c.profile_name, " SQL_USEC("c.deadline") ", " SQL_USEC("c.protective_assessment_due") ","
        "       c.awaiting_assessment, r.referral_id, r.police_case_number, c.feedback_requested"
        "  FROM allvarsd.cases c JOIN allvarsd.referrals r ON r.referral_id = c.referral_id"
        " WHERE c.case_id = ANY (ARRAY(SELECT case_id FROM due))"
        "   AND c.closed_at IS NULL"
        "   AND ((c.state = 'ELIGIBLE' AND c.deadline > " SQL_TS("$1")
        "         AND c.deadline - c.limit_seconds * (1 - $2::float8) * interval '1 second'"
        "             <= " SQL_TS("$1") " + interval '1 second')"
        "     OR (c.deadline <= " SQL_TS("$1")
        "         AND (c.state = 'ELIGIBLE'"
        "              OR (c.state = 'SCHEDULED' AND c.deadline_kind IS DISTINCT FROM 'SUMMONS')))"
        "     OR (c.awaiting_assessment AND c.protective_assessment_due <= " SQL_TS("$1") "))"
        " ORDER BY c.case_id"
        "   FOR UPDATE OF c SKIP LOCKED";

/* Mark on the locked candidates the alerts case_alerts now holds for their
 * current due times (raised by this pass, an earlier one, another instance or
 * the batch on arrival), so that they leave the partial indexes above. Only
 * rows whose marks change are written. */
static const char SQL_MARK_ALERTED[] =
        "UPDATE allvarsd.cases c"
        "   SET at_risk_alerted_due = CASE WHEN m.at_risk THEN c.deadline ELSE c.at_risk_alerted_due END,"
        "       missed_alerted_due = CASE WHEN m.missed THEN c.deadline ELSE c.missed_alerted_due END,"
        "       assessment_alerted_due = CASE WHEN m.assessment THEN c.protective_assessment_due"
        "                                     ELSE c.assessment_alerted_due END"
        "  FROM (SELECT c2.case_id,"
        "               c2.at_risk_alerted_due IS DISTINCT FROM c2.deadline"
        "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
        "                              AND a.kind = 'AT_RISK' AND a.due_at = c2.deadline) AS at_risk,"
        "               c2.missed_alerted_due IS DISTINCT FROM c2.deadline"
        "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
        "                              AND a.kind = 'MISSED' AND a.due_at = c2.deadline) AS missed,"
        "               c2.assessment_alerted_due IS DISTINCT FROM c2.protective_assessment_due"
        "               AND EXISTS (SELECT 1 FROM allvarsd.case_alerts a WHERE a.case_id = c2.case_id"
        "                              AND a.kind = 'PROTECTIVE_ASSESSMENT_OVERDUE'"
        "                              AND a.due_at = c2.protective_assessment_due) AS assessment"
        "          FROM allvarsd.cases c2 WHERE c2.case_id = ANY ($1::uuid[])) m"
        " WHERE c.case_id = m.case_id AND (m.at_risk OR m.missed OR m.assessment)";

static const char SQL_INSERT_ALERTS[] =
        "INSERT INTO allvarsd.case_alerts (case_id, kind, due_at, raised_at)"
        " SELECT a.case_id, a.kind, " SQL_TS("a.due") ", " SQL_TS("$1")
        "   FROM unnest($2::uuid[], $3::text[], $4::bigint[]) AS a(case_id, kind, due)"
        " ON CONFLICT DO NOTHING"
        " RETURNING case_id::text, kind, " SQL_USEC("due_at");

static const char SQL_INSERT_OUTBOX[] =
        "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
        " SELECT e.id, e.topic, e.key, e.type, " SQL_TS("e.t") ", decode(e.payload, 'hex')"
        "   FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])"
        "        WITH ORDINALITY AS e(id, topic, key, type, t, payload, ord)"
        /* delivered ones have left the outbox (schemas/004_outbox_sent.sql) */
        "  WHERE NOT EXISTS (SELECT 1 FROM allvarsd.outbox_sent s WHERE s.event_id = e.id)"
        "  ORDER BY e.ord"                 /* ids in the order made: the relay publishes by id per key */
        " ON CONFLICT (event_id) DO NOTHING";

static const char SQL_INSERT_AUDIT[] =
        "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, action, before, after)"
        " SELECT a.case_id, a.referral_id, " SQL_TS("$1") ", 'DAEMON', a.action, a.before, a.after"
        "   FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])"
        "        WITH ORDINALITY AS a(case_id, referral_id, action, before, after, ord)"
        "  ORDER BY a.ord";

/* ---- a growable string, for PostgreSQL array literals ---- */

typedef struct watch_buf {
        char *p;
        size_t n, cap;
        bool oom;
} watch_buf;

static void buf_reserve(watch_buf *b, size_t more) {
        if (b->oom || b->n + more + 1 <= b->cap)
                return;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + more + 1)
                cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
                b->oom = true;
                return;
        }
        b->p = p;
        b->cap = cap;
}

static void buf_putc(watch_buf *b, char c) {
        buf_reserve(b, 1);
        if (b->oom)
                return;
        b->p[b->n++] = c;
        b->p[b->n] = '\0';
}

/* One element of an array literal: quoted, with " and \ escaped. */
static void buf_elem(watch_buf *b, const char *s) {
        buf_putc(b, b->n == 0 ? '{' : ',');
        buf_putc(b, '"');
        for (; *s; s++) {
                if (*s == '"' || *s == '\\')
                        buf_putc(b, '\\');
                buf_putc(b, *s);
        }
        buf_putc(b, '"');
}

static void buf_elemf(watch_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_elemf(watch_buf *b, const char *fmt, ...) {
        char tmp[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(tmp, sizeof tmp, fmt, ap);
        va_end(ap);
        buf_elem(b, tmp);
}

static void buf_elem_hex(watch_buf *b, const uint8_t *v, size_t len) {
        static const char hex[] = "0123456789abcdef";
        buf_putc(b, b->n == 0 ? '{' : ',');
        buf_putc(b, '"');
        buf_reserve(b, 2 * len);
        if (b->oom)
                return;
        for (size_t i = 0; i < len; i++) {
                b->p[b->n++] = hex[v[i] >> 4];
                b->p[b->n++] = hex[v[i] & 15];
        }
        b->p[b->n] = '\0';
        buf_putc(b, '"');
}

/* The array literal; "{}" when empty. NULL when out of memory. */
static const char *buf_array(watch_buf *b) {
        if (b->n == 0) {
                buf_putc(b, '{');
        }
        buf_putc(b, '}');
        return b->oom ? NULL : b->p;
}

static void buf_done(watch_buf *b) {
        free(b->p);
        *b = (watch_buf){0};
}

/* ---- the candidates and their alerts ---- */

typedef struct watch_case {
        const char *case_id;            /* point into the candidates' PGresult */
        const char *district;
        const char *state;
        const char *referral_id;
        const char *police_case_number;
        deadline_kind dk;
        bool feedback_requested;
} watch_case;

typedef struct watch_alert {
        const watch_case *c;
        alert_kind kind;
        usec_t due_at;
        bool raised;                    /* inserted by this pass */
} watch_alert;

static int alert_kind_parse(const char *s) {
        for (alert_kind k = ALERT_AT_RISK; k <= ALERT_PROTECTIVE_ASSESSMENT_OVERDUE; k++)
                if (strcmp(s, alert_kind_code(k)) == 0)
                        return (int)k;
        return -EINVAL;
}

static double fraction_sane(double f) {
        return f > 0.0 && f <= 1.0 ? f : AT_RISK_FRACTION_DEFAULT;
}

/* The at-risk fraction of a case: its district's effective profile when the
 * case was decided under that profile; else the built-in profile of its name
 * (the configuration switched profiles since); else 75 %. */
static double case_fraction(const config *cfg, const char *district, const char *profile_name) {
        const profile *p = config_profile_for(cfg, district);
        if (p && strcmp(p->name, profile_name) == 0)
                return fraction_sane(p->at_risk_fraction);
        p = profiles_find(profile_name);
        return fraction_sane(p ? p->at_risk_fraction : AT_RISK_FRACTION_DEFAULT);
}

/* The smallest fraction any case can have: the SQL prefilter's bound. */
static double min_fraction(const config *cfg) {
        double f = AT_RISK_FRACTION_DEFAULT;
        f = fmin(f, fraction_sane(cfg->profile.at_risk_fraction));
        for (size_t i = 0; i < cfg->n_districts; i++)
                f = fmin(f, fraction_sane(cfg->districts[i].profile.at_risk_fraction));
        for (size_t i = 0; i < profiles_builtin_count(); i++)
                f = fmin(f, fraction_sane(profiles_builtin(i)->at_risk_fraction));
        return f;
}

static int alert_cmp(const void *a, const void *b) {
        const watch_alert *x = a, *y = b;
        int r = strcmp(x->c->case_id, y->c->case_id);
        if (r != 0)
                return r;
        if (x->kind != y->kind)
                return x->kind < y->kind ? -1 : 1;
        return x->due_at < y->due_at ? -1 : x->due_at > y->due_at;
}

/* ---- libpq ---- */

static usec_t field_usec(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? 0 : (usec_t)strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static bool field_bool(const PGresult *res, int row, int col) {
        return PQgetvalue(res, row, col)[0] == 't';
}

/* Decide the alerts due for each candidate at now. */
static int collect_alerts(const config *cfg, const PGresult *cand, usec_t now, watch_case *cases,
                          watch_alert *alerts, size_t *ret_n) {
        size_t n = 0;
        for (int i = 0; i < PQntuples(cand); i++) {
                watch_case *c = &cases[i];
                *c = (watch_case){
                        .case_id = PQgetvalue(cand, i, 0),
                        .district = PQgetvalue(cand, i, 1),
                        .state = PQgetvalue(cand, i, 2),
                        .dk = deadline_kind_from_code(PQgetvalue(cand, i, 3)),
                        .referral_id = PQgetvalue(cand, i, 9),
                        .police_case_number = PQgetvalue(cand, i, 10),
                        .feedback_requested = field_bool(cand, i, 11),
                };
                int64_t limit_s = strtoll(PQgetvalue(cand, i, 4), NULL, 10);
                const char *profile_name = PQgetvalue(cand, i, 5);
                bool has_deadline = !PQgetisnull(cand, i, 6);
                usec_t deadline = field_usec(cand, i, 6);
                bool has_pad = !PQgetisnull(cand, i, 7);
                usec_t pad = field_usec(cand, i, 7);
                bool awaiting_assessment = field_bool(cand, i, 8);
                bool eligible = strcmp(c->state, "ELIGIBLE") == 0;
                bool scheduled = strcmp(c->state, "SCHEDULED") == 0;

                if (has_deadline && eligible && now < deadline) {
                        double f = case_fraction(cfg, c->district, profile_name);
                        usec_t before = (usec_t)llround((double)limit_s * (double)USEC_PER_SEC * (1.0 - f));
                        if (now >= deadline - before)
                                alerts[n++] = (watch_alert){.c = c, .kind = ALERT_AT_RISK, .due_at = deadline};
                }
                /* DS 2024:30: a SUMMONS deadline is met once the summons went out (SCHEDULED). */
                if (has_deadline && now >= deadline &&
                    (eligible || (scheduled && c->dk != DEADLINE_SUMMONS)))
                        alerts[n++] = (watch_alert){.c = c, .kind = ALERT_MISSED, .due_at = deadline};
                if (has_pad && awaiting_assessment && now >= pad)
                        alerts[n++] = (watch_alert){.c = c, .kind = ALERT_PROTECTIVE_ASSESSMENT_OVERDUE,
                                                    .due_at = pad};
        }
        *ret_n = n;
        return 0;
}

/* Insert the alerts; mark those actually inserted (raised). */
static int insert_alerts(PGconn *pg, const char *now_s, watch_alert *alerts, size_t n) {
        watch_buf ids = {0}, kinds = {0}, dues = {0};
        PGresult *res = NULL;
        int r;

        for (size_t i = 0; i < n; i++) {
                buf_elem(&ids, alerts[i].c->case_id);
                buf_elem(&kinds, alert_kind_code(alerts[i].kind));
                buf_elemf(&dues, "%lld", (long long)alerts[i].due_at);
        }
        const char *params[] = {now_s, buf_array(&ids), buf_array(&kinds), buf_array(&dues)};
        if (!params[1] || !params[2] || !params[3]) {
                r = -ENOMEM;
                goto out;
        }
        r = store_job_exec(pg, SQL_INSERT_ALERTS, 4, params, PGRES_TUPLES_OK, &res);
        if (r < 0)
                goto out;

        qsort(alerts, n, sizeof *alerts, alert_cmp);
        for (int i = 0; i < PQntuples(res); i++) {
                int k = alert_kind_parse(PQgetvalue(res, i, 1));
                if (k < 0) {
                        r = -EPROTO;
                        goto out;
                }
                watch_case key_case = {.case_id = PQgetvalue(res, i, 0)};
                watch_alert key = {.c = &key_case, .kind = (alert_kind)k, .due_at = field_usec(res, i, 2)};
                watch_alert *a = bsearch(&key, alerts, n, sizeof *alerts, alert_cmp);
                if (!a) {               /* PostgreSQL returned what we did not insert */
                        r = -EPROTO;
                        goto out;
                }
                a->raised = true;
        }
out:
        PQclear(res);
        buf_done(&ids);
        buf_done(&kinds);
        buf_done(&dues);
        return r;
}

/* The marks of the locked candidates (SQL_MARK_ALERTED). */
static int mark_alerted(PGconn *pg, const watch_case *cases, size_t n) {
        watch_buf ids = {0};
        for (size_t i = 0; i < n; i++)
                buf_elem(&ids, cases[i].case_id);
        const char *params[] = {buf_array(&ids)};
        int r = params[0] ? store_job_exec(pg, SQL_MARK_ALERTED, 1, params, PGRES_COMMAND_OK, NULL) : -ENOMEM;
        buf_done(&ids);
        return r;
}

static int insert_outbox(PGconn *pg, const event_list *ev, unsigned *ret_rows) {
        watch_buf id = {0}, topic = {0}, key = {0}, type = {0}, t = {0}, payload = {0};
        PGresult *res = NULL;
        int r;

        for (size_t i = 0; i < ev->n; i++) {
                const outbox_event *e = &ev->v[i];
                buf_elem(&id, e->event_id);
                buf_elem(&topic, e->topic);
                buf_elem(&key, e->key);
                buf_elem(&type, e->ce_type);
                buf_elemf(&t, "%lld", (long long)e->ce_time);
                buf_elem_hex(&payload, e->payload, e->len);
        }
        const char *params[] = {buf_array(&id), buf_array(&topic), buf_array(&key),
                                buf_array(&type), buf_array(&t), buf_array(&payload)};
        for (size_t i = 0; i < 6; i++)
                if (!params[i]) {
                        r = -ENOMEM;
                        goto out;
                }
        r = store_job_exec(pg, SQL_INSERT_OUTBOX, 6, params, PGRES_COMMAND_OK, &res);
        if (r < 0)
                goto out;
        *ret_rows = (unsigned)strtoul(PQcmdTuples(res), NULL, 10);
out:
        PQclear(res);
        buf_done(&id);
        buf_done(&topic);
        buf_done(&key);
        buf_done(&type);
        buf_done(&t);
        buf_done(&payload);
        return r;
}

/* The events and audit rows of the raised alerts; then write them. */
static int write_raised(PGconn *pg, const config *cfg, const char *now_s, usec_t now, const watch_alert *alerts,
                        size_t n, deadline_watch_result *res) {
        event_list ev = {0};
        watch_buf a_case = {0}, a_ref = {0}, a_action = {0}, a_before = {0}, a_after = {0};
        unsigned outbox_rows = 0;
        size_t n_raised = 0;
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                const watch_alert *a = &alerts[i];
                if (!a->raised)
                        continue;
                n_raised++;
                char due[RFC3339_MAX];
                clock_format_rfc3339(a->due_at, due);

                r = events_alert(cfg, a->c->case_id, a->kind, a->due_at, a->c->dk, a->c->district, a->c->state,
                                 now, &ev);
                if (r < 0)
                        goto out;

                bool feedback = false;
                if (a->kind == ALERT_MISSED) {
                        char name[64 + RFC3339_MAX];
                        snprintf(name, sizeof name, "feedback/NOT_HELD_IN_TIME/%s", due);
                        feedback_ref ref = {
                                .case_id = a->c->case_id,
                                .referral_id = a->c->referral_id,
                                .police_case_number = a->c->police_case_number,
                                .feedback_requested = a->c->feedback_requested,
                        };
                        size_t before = ev.n;
                        r = events_feedback(cfg, &ref, FEEDBACK_NOT_HELD_IN_TIME, (decision_outcome)0, 0, name,
                                            now, &ev);
                        if (r < 0)
                                goto out;
                        feedback = ev.n > before;
                }

                switch (a->kind) {
                case ALERT_AT_RISK:
                        res->at_risk++;
                        break;
                case ALERT_MISSED:
                        res->missed++;
                        break;
                case ALERT_PROTECTIVE_ASSESSMENT_OVERDUE:
                        res->assessment_overdue++;
                        break;
                case ALERT_PARTITION_GAP:       /* the consumer's, not the watch's */
                        break;
                }

                buf_elem(&a_case, a->c->case_id);
                buf_elem(&a_ref, a->c->referral_id);
                buf_elemf(&a_action, "ALERT_%s", alert_kind_code(a->kind));
                buf_elemf(&a_before, "state=%s", a->c->state);
                buf_elemf(&a_after, "state=%s;alert=%s;due_at=%s%s", a->c->state, alert_kind_code(a->kind), due,
                          feedback ? ";feedback=NOT_HELD_IN_TIME" : "");
        }
        if (n_raised == 0)
                goto out;

        r = insert_outbox(pg, &ev, &outbox_rows);
        if (r < 0)
                goto out;

        const char *params[] = {now_s, buf_array(&a_case), buf_array(&a_ref), buf_array(&a_action),
                                buf_array(&a_before), buf_array(&a_after)};
        for (size_t i = 1; i < 6; i++)
                if (!params[i]) {
                        r = -ENOMEM;
                        goto out;
                }
        r = store_job_exec(pg, SQL_INSERT_AUDIT, 6, params, PGRES_COMMAND_OK, NULL);
        if (r < 0)
                goto out;

        /* Wake the relay; delivered at COMMIT (ARCHITECTURE.md: LISTEN/NOTIFY only wakes it). */
        if (outbox_rows > 0)
                r = store_job_exec(pg, "SELECT pg_notify('allvarsd_outbox', '')", 0, NULL, PGRES_TUPLES_OK, NULL);
out:
        event_list_free(&ev);
        buf_done(&a_case);
        buf_done(&a_ref);
        buf_done(&a_action);
        buf_done(&a_before);
        buf_done(&a_after);
        return r;
}

int deadline_watch_run(store *s, const config *cfg, usec_t now, deadline_watch_result *ret) {
        deadline_watch_result res = {0};
        PGresult *cand = NULL;
        watch_case *cases = NULL;
        watch_alert *alerts = NULL;
        PGconn *pg = NULL;
        char now_s[24], frac_s[32];
        int r = store_job_begin(s, &pg);
        if (r < 0)
                return r;

        snprintf(now_s, sizeof now_s, "%lld", (long long)now);
        snprintf(frac_s, sizeof frac_s, "%.17g", min_fraction(cfg));

        const char *cand_params[] = {now_s, frac_s};
        r = store_job_exec(pg, SQL_CANDIDATES, 2, cand_params, PGRES_TUPLES_OK, &cand);
        if (r < 0)
                goto fail;

        size_t n_cases = (size_t)PQntuples(cand), n_alerts = 0;
        if (n_cases > 0) {
                cases = calloc(n_cases, sizeof *cases);
                alerts = calloc(n_cases * 3, sizeof *alerts);
                if (!cases || !alerts) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = collect_alerts(cfg, cand, now, cases, alerts, &n_alerts);
                if (r < 0)
                        goto fail;
        }
        if (n_alerts > 0) {
                r = insert_alerts(pg, now_s, alerts, n_alerts);
                if (r < 0)
                        goto fail;
        }
        if (n_cases > 0) {
                r = mark_alerted(pg, cases, n_cases);
                if (r < 0)
                        goto fail;
        }
        if (n_alerts > 0) {
                r = write_raised(pg, cfg, now_s, now, alerts, n_alerts, &res);
                if (r < 0)
                        goto fail;
        }

        r = store_job_exec(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL);
        if (r < 0)
                goto fail;
        PQclear(cand);
        free(cases);
        free(alerts);
        if (ret)
                *ret = res;
        return 0;

fail:
        store_rollback(s);
        PQclear(cand);
        free(cases);
        free(alerts);
        return r;
}
