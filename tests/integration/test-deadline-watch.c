/* The deadline watch against a real PostgreSQL (PGHOST/PGPORT/PGUSER, e.g. from
 * tests/lib/pg.sh): a fresh database per test with the schemas/NNN_*.sql files applied, cases
 * set up with SQL, and the clock set by passing `now`. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "allvarssamtal/v1/alert.pb-c.h"
#include "allvarssamtal/v1/feedback.pb-c.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "codec.h"
#include "config.h"
#include "harness.h"
#include "deadline_watch.h"
#include "events.h"
#include "ids.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "store.h"

#define T0 ((usec_t)1741593600 * USEC_PER_SEC)      /* 2025-03-10T08:00:00Z, reported_at */
#define CONFIG_NAME "test-deadline-watch"
#define H(n) ((usec_t)(n) * USEC_PER_HOUR)

/* ---- the database of one test (tests/lib/harness.h) ---- */

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        unsigned offset;                /* source_offset of the next referral */
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

#define count(fx, ...) harness_count((fx)->h.pg, __VA_ARGS__)
#define TS(p) HARNESS_SQL_TS(p)

static int setup(void **state) {
        return harness_store_setup(state, sizeof(fixture), CONFIG_NAME, "feedback.always = false\n");
}

/* ---- cases ---- */

typedef struct case_spec {
        const char *referral_id;
        const char *state;              /* default ELIGIBLE */
        const char *deadline_kind;      /* default CONVERSATION; "" for none */
        const char *district;           /* default centrum */
        const char *profile_name;       /* default goteborg-motion-2024 */
        usec_t limit;                   /* default 48 h */
        usec_t deadline;                /* 0: NULL */
        usec_t protective_assessment_due; /* 0: NULL */
        bool awaiting_assessment;
        bool awaiting_clearance;
        bool feedback_requested;
        usec_t scheduled_at, held_at, closed_at;
} case_spec;

/* Insert a referral and its case; returns the case id in ret. */
static void add_case(fixture *fx, const case_spec *cs, char *ret) {
        char case_id[UUID_STR_LEN];
        ids_case_id(cs->referral_id, case_id);
        char off[16], reported[24], limit_s[24], deadline[24], pad[24], sched[24], held[24], closed[24];
        snprintf(off, sizeof off, "%u", fx->offset++);
        const char *district = cs->district ? cs->district : "centrum";
        const char *p_ref[] = {
                cs->referral_id, case_id, district, harness_usec_param(reported, T0),
                cs->feedback_requested ? "true" : "false", off,
        };
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.referrals (referral_id, case_id, marks, district, reported_at,"
                " feedback_requested, police_case_number, reporting_unit, source_topic, source_partition,"
                " source_offset, received_at)"
                " VALUES ($1, $2, 4, $3, " TS("$4") ", $5, 'PC-' || $1, 'Polisregion Väst',"
                " 'police.referrals.v1', 0, $6, " TS("$4") ")",
                6, p_ref, NULL, NULL);

        snprintf(limit_s, sizeof limit_s, "%lld", (long long)((cs->limit ? cs->limit : H(48)) / USEC_PER_SEC));
        const char *dk = cs->deadline_kind ? cs->deadline_kind : "CONVERSATION";
        const char *p_case[] = {
                case_id,
                cs->referral_id,
                district,
                cs->state ? cs->state : "ELIGIBLE",
                cs->profile_name ? cs->profile_name : "goteborg-motion-2024",
                limit_s,
                harness_usec_param(deadline, cs->deadline),
                dk[0] ? dk : NULL,
                harness_usec_param(pad, cs->protective_assessment_due),
                cs->awaiting_assessment ? "true" : "false",
                harness_usec_param(sched, cs->scheduled_at),
                harness_usec_param(held, cs->held_at),
                harness_usec_param(closed, cs->closed_at),
                cs->feedback_requested ? "true" : "false",
                harness_usec_param(reported, T0),
                cs->awaiting_clearance ? "true" : "false",
        };
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
                " limit_seconds, deadline, deadline_kind, protective_assessment_due, awaiting_assessment,"
                " scheduled_at, held_at, closed_at, feedback_requested, created_at, updated_at, awaiting_clearance)"
                " VALUES ($1, $2, $3, $4, CASE WHEN $4 = 'DEFERRED' THEN 'DEFERRED' ELSE 'ELIGIBLE' END, $5,"
                " $6, " TS("$7") ", $8, " TS("$9") ", $10, " TS("$11") ", " TS("$12") ", " TS("$13") ","
                " $14, " TS("$15") ", " TS("$15") ", $16)",
                16, p_case, NULL, NULL);
        /* Its decision, as the batch writes it with the case. */
        const char *p_dec[] = {cs->referral_id, p_case[3], p_case[4], p_case[6], p_case[7], p_case[8], p_case[14]};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, deadline, deadline_kind,"
                " protective_assessment_due, profile_name, profile_version, params_key, prior_referrals,"
                " prior_qualifying, decided_at)"
                " VALUES ($1, CASE WHEN $2 = 'DEFERRED' THEN 'DEFERRED' ELSE 'ELIGIBLE' END, '', '', " TS("$4") ","
                " $5, " TS("$6") ", $3, 1, md5('')::uuid, 0, 0, " TS("$7") ")",
                7, p_dec, NULL, NULL);
        if (ret)
                memcpy(ret, case_id, UUID_STR_LEN);
}

static deadline_watch_result watch(fixture *fx, usec_t now) {
        deadline_watch_result w = {99, 99, 99};
        int r = deadline_watch_run(fx->h.st, fx->h.cfg, now, &w);
        if (r < 0)
                fail_msg("deadline_watch_run: %s (%s)", strerror(-r), PQerrorMessage(fx->h.pg));
        return w;
}

#define assert_watch(w, ar, mi, pa)                                     \
        do {                                                            \
                deadline_watch_result w_ = (w);                         \
                assert_int_equal(w_.at_risk, (ar));                     \
                assert_int_equal(w_.missed, (mi));                      \
                assert_int_equal(w_.assessment_overdue, (pa));          \
        } while (0)

/* The payload of the one outbox row of a case and ce_type, decoded from hex. */
static size_t outbox_payload(fixture *fx, const char *case_id, const char *ce_type, uint8_t *buf, size_t size) {
        const char *p[] = {case_id, ce_type};
        PGresult *r = PQexecParams(fx->h.pg,
                "SELECT encode(payload, 'hex') FROM allvarsd.outbox WHERE key = $1 AND ce_type = $2",
                2, NULL, p, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(r), 1);
        const char *hex = PQgetvalue(r, 0, 0);
        size_t n = strlen(hex) / 2;
        assert_true(n <= size);
        for (size_t i = 0; i < n; i++) {
                unsigned v;
                assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
                buf[i] = (uint8_t)v;
        }
        PQclear(r);
        return n;
}

/* ---- tests ---- */

/* AT_RISK once 75 % of the 48 h have passed with nothing scheduled (36 h after
 * the report), not a microsecond before; once; with its outbox row, audit row
 * and a NOTIFY to the relay. A SCHEDULED case is not at risk. */
static void test_at_risk_at_75_percent(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN], sched_id[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-AT-RISK", .deadline = T0 + H(48), .feedback_requested = true},
                 id);
        add_case(fx, &(case_spec){.referral_id = "R-SCHEDULED", .state = "SCHEDULED", .deadline = T0 + H(48),
                                  .scheduled_at = T0 + H(40)},
                 sched_id);
        harness_exec_ok(fx->h.pg, "LISTEN allvarsd_outbox");

        assert_watch(watch(fx, T0), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(36) - 1), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        PQconsumeInput(fx->h.pg);
        PGnotify *nt = PQnotifies(fx->h.pg);
        assert_null(nt);

        assert_watch(watch(fx, T0 + H(36)), 1, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s' AND kind = 'AT_RISK'"
                                   " AND due_at = '2025-03-12T08:00:00Z' AND raised_at = '2025-03-11T20:00:00Z'", id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s' AND topic = '%s'"
                                   " AND ce_type = '%s'",
                               id, fx->h.cfg->topic_alerts, CE_TYPE_ALERT),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 1);   /* no feedback for AT_RISK */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'ALERT_AT_RISK'"
                                   " AND actor_kind = 'DAEMON' AND referral_id = 'R-AT-RISK'", id),
                         1);

        uint8_t buf[1024];
        size_t n = outbox_payload(fx, id, CE_TYPE_ALERT, buf, sizeof buf);
        Allvarssamtal__V1__DeadlineAlert *a = allvarssamtal__v1__deadline_alert__unpack(NULL, n, buf);
        assert_non_null(a);
        assert_int_equal(a->kind, ALERT_AT_RISK);
        assert_string_equal(a->case_id, id);
        assert_int_equal(codec_timestamp_usec(a->due_at), T0 + H(48));
        assert_int_equal(codec_timestamp_usec(a->raised_at), T0 + H(36));
        assert_int_equal(a->deadline_kind, DEADLINE_CONVERSATION);
        assert_string_equal(a->district, "centrum");
        assert_string_equal(a->case_state, "ELIGIBLE");
        allvarssamtal__v1__deadline_alert__free_unpacked(a, NULL);

        /* The relay is woken, at commit. */
        assert_int_equal(PQconsumeInput(fx->h.pg), 1);
        nt = PQnotifies(fx->h.pg);
        assert_non_null(nt);
        assert_string_equal(nt->relname, "allvarsd_outbox");
        PQfreemem(nt);

        /* Once: later passes before the deadline raise nothing more. */
        assert_watch(watch(fx, T0 + H(36)), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(47)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s'", sched_id), 0);
}

/* The fraction is the case's profile's: a district whose profile sets 50 %
 * raises AT_RISK after 24 h; the 14-day limit of trollhattan-tuti after 10.5 days. */
static int setup_district_fraction(void **state) {
        return harness_store_setup(state, sizeof(fixture), CONFIG_NAME, "district.hisingen.at_risk_percent = 50\n");
}

static void test_at_risk_profile_fraction(void **state) {
        fixture *fx = *state;
        add_case(fx, &(case_spec){.referral_id = "R-HISINGEN", .district = "hisingen", .deadline = T0 + H(48)}, NULL);
        add_case(fx, &(case_spec){.referral_id = "R-CENTRUM", .district = "centrum", .deadline = T0 + H(48)}, NULL);
        /* Decided under a profile the configuration no longer names: its built-in fraction (75 %). */
        add_case(fx, &(case_spec){.referral_id = "R-TUTI", .profile_name = "trollhattan-tuti",
                                  .limit = H(14 * 24), .deadline = T0 + H(14 * 24)},
                 NULL);

        assert_watch(watch(fx, T0 + H(24) - 1), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(24)), 1, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c USING (case_id)"
                                   " WHERE c.referral_id = 'R-HISINGEN'"),
                         1);
        assert_watch(watch(fx, T0 + H(36) - 1), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(36)), 1, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c USING (case_id)"
                                   " WHERE c.referral_id = 'R-CENTRUM'"),
                         1);
        assert_watch(watch(fx, T0 + H(252) - 1), 0, 2, 0);      /* the two 48 h cases are missed meanwhile */
        assert_watch(watch(fx, T0 + H(252)), 1, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c USING (case_id)"
                                   " WHERE c.referral_id = 'R-TUTI' AND kind = 'AT_RISK'"),
                         1);
}

/* MISSED at the deadline, not before; NOT_HELD_IN_TIME to the police only when
 * the referral asked for feedback (feedback.always = false). */
static void test_missed_with_feedback_policy(void **state) {
        fixture *fx = *state;
        char asked[UUID_STR_LEN], silent[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-ASKED", .deadline = T0 + H(48), .feedback_requested = true},
                 asked);
        add_case(fx, &(case_spec){.referral_id = "R-SILENT", .deadline = T0 + H(48), .feedback_requested = false},
                 silent);

        assert_watch(watch(fx, T0 + H(48) - 1), 2, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'MISSED'"), 0);
        assert_watch(watch(fx, T0 + H(48)), 0, 2, 0);
        assert_watch(watch(fx, T0 + H(49)), 0, 0, 0);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'MISSED'"
                                   " AND due_at = '2025-03-12T08:00:00Z'"),
                         2);
        /* The follow-up report counts them as not held in time (schemas/011_referral_stats.sql). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats WHERE facts & 2048 <> 0"
                                   " AND case_id IN ('%s', '%s')", asked, silent),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_ALERT), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_FEEDBACK), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND key = '%s'"
                                   " AND topic = '%s'",
                               CE_TYPE_FEEDBACK, asked, fx->h.cfg->topic_feedback),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'ALERT_MISSED'"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'ALERT_MISSED'"
                                   " AND case_id = '%s' AND after LIKE '%%feedback=NOT_HELD_IN_TIME%%'", asked),
                         1);

        uint8_t buf[1024];
        size_t n = outbox_payload(fx, asked, CE_TYPE_FEEDBACK, buf, sizeof buf);
        Allvarssamtal__V1__PoliceFeedback *f = allvarssamtal__v1__police_feedback__unpack(NULL, n, buf);
        assert_non_null(f);
        assert_int_equal(f->status, FEEDBACK_NOT_HELD_IN_TIME);
        assert_string_equal(f->referral_id, "R-ASKED");
        assert_string_equal(f->police_case_number, "PC-R-ASKED");
        assert_string_equal(f->case_id, asked);
        assert_int_equal(codec_timestamp_usec(f->status_at), T0 + H(48));
        /* The event id is the stable one named after the due time. */
        char want[UUID_STR_LEN];
        ids_event_id(asked, "feedback/NOT_HELD_IN_TIME/2025-03-12T08:00:00Z", want);
        assert_string_equal(f->event_id, want);
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE event_id = '%s'", want), 1);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s' AND ce_type = '%s'",
                               silent, CE_TYPE_FEEDBACK),
                         0);
}

static int setup_feedback_always(void **state) {
        return harness_store_setup(state, sizeof(fixture), CONFIG_NAME, "feedback.always = true\n");
}

/* feedback.always = true: the police hear NOT_HELD_IN_TIME even when they did not ask. */
static void test_missed_feedback_always(void **state) {
        fixture *fx = *state;
        char silent[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-SILENT", .deadline = T0 + H(48), .feedback_requested = false},
                 silent);
        assert_watch(watch(fx, T0 + H(50)), 0, 1, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND key = '%s'",
                               CE_TYPE_FEEDBACK, silent),
                         1);
}

/* PROTECTIVE_ASSESSMENT_OVERDUE at protective_assessment_due while awaited; not
 * when the assessment was recorded. */
static void test_protective_assessment_overdue(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-DEFERRED", .state = "DEFERRED", .deadline_kind = "",
                                  .protective_assessment_due = T0 + H(24), .awaiting_assessment = true,
                                  .feedback_requested = true},
                 id);
        add_case(fx, &(case_spec){.referral_id = "R-ASSESSED", .state = "DEFERRED", .deadline_kind = "",
                                  .protective_assessment_due = T0 + H(24), .awaiting_assessment = false},
                 NULL);

        assert_watch(watch(fx, T0 + H(24) - 1), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(24)), 0, 0, 1);
        assert_watch(watch(fx, T0 + H(100)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s'"
                                   " AND kind = 'PROTECTIVE_ASSESSMENT_OVERDUE' AND due_at = '2025-03-11T08:00:00Z'", id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 1);
        /* An alert, no feedback: the police hear of deadlines missed, not of assessments. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'ALERT_PROTECTIVE_ASSESSMENT_OVERDUE'"),
                         1);
}

/* A SCHEDULED CONVERSATION case is missed when the meeting was not held by the
 * deadline; a SCHEDULED SUMMONS case (DS 2024:30) met its deadline with the
 * summons; an ELIGIBLE SUMMONS case did not. HELD and other closed cases get nothing. */
static void test_scheduled_summons_and_closed(void **state) {
        fixture *fx = *state;
        char conv[UUID_STR_LEN], summ_el[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-CONV", .state = "SCHEDULED", .deadline = T0 + H(48),
                                  .scheduled_at = T0 + H(60)},
                 conv);
        add_case(fx, &(case_spec){.referral_id = "R-SUMMONS", .state = "SCHEDULED", .deadline_kind = "SUMMONS",
                                  .profile_name = "ds-2024-30", .limit = H(24), .deadline = T0 + H(24),
                                  .scheduled_at = T0 + H(60)},
                 NULL);
        add_case(fx, &(case_spec){.referral_id = "R-SUMMONS-EL", .deadline_kind = "SUMMONS",
                                  .profile_name = "ds-2024-30", .limit = H(24), .deadline = T0 + H(24)},
                 summ_el);
        add_case(fx, &(case_spec){.referral_id = "R-HELD", .state = "HELD", .deadline = T0 + H(48),
                                  .scheduled_at = T0 + H(20), .held_at = T0 + H(20), .closed_at = T0 + H(20),
                                  .protective_assessment_due = T0 + H(24), .awaiting_assessment = true},
                 NULL);
        add_case(fx, &(case_spec){.referral_id = "R-CANCELLED", .state = "CANCELLED", .deadline = T0 + H(48),
                                  .closed_at = T0 + H(2)},
                 NULL);

        assert_watch(watch(fx, T0 + H(100)), 0, 2, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'MISSED'"
                                   " AND case_id IN ('%s', '%s')", conv, summ_el),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c USING (case_id)"
                                   " WHERE c.referral_id IN ('R-SUMMONS', 'R-HELD', 'R-CANCELLED')"),
                         0);
        /* The alert tells the duty officer the state the case was in. */
        uint8_t buf[1024];
        size_t n = outbox_payload(fx, conv, CE_TYPE_ALERT, buf, sizeof buf);
        Allvarssamtal__V1__DeadlineAlert *a = allvarssamtal__v1__deadline_alert__unpack(NULL, n, buf);
        assert_non_null(a);
        assert_int_equal(a->kind, ALERT_MISSED);
        assert_string_equal(a->case_state, "SCHEDULED");
        allvarssamtal__v1__deadline_alert__free_unpacked(a, NULL);
}

/* A deadline that moves (a deferral resolved, an override) is a new due time:
 * new alerts, once each. */
static void test_moved_deadline(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-MOVED", .deadline = T0 + H(48)}, id);
        assert_watch(watch(fx, T0 + H(48)), 0, 1, 0);
        char sql[256];
        snprintf(sql, sizeof sql, "UPDATE allvarsd.cases SET deadline = deadline + interval '72 hours'"
                                  " WHERE case_id = '%s'", id);
        harness_exec_ok(fx->h.pg, sql);
        assert_watch(watch(fx, T0 + H(49)), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(120) - 1), 1, 0, 0);
        assert_watch(watch(fx, T0 + H(120)), 0, 1, 0);
        assert_watch(watch(fx, T0 + H(121)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'MISSED'"), 2);
        assert_int_equal(count(fx, "SELECT count(DISTINCT event_id) FROM allvarsd.outbox"), 3);
}

/* A referral whose deadline had passed on arrival: the store raised MISSED
 * (case_alerts row, DEADLINE_PASSED_ON_ARRIVAL); the watch does not repeat it,
 * and raises no AT_RISK about a deadline already missed. */
static void test_missed_on_arrival_not_repeated(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN], sql[256];
        add_case(fx, &(case_spec){.referral_id = "R-LATE", .deadline = T0 + H(48), .feedback_requested = true}, id);
        snprintf(sql, sizeof sql, "INSERT INTO allvarsd.case_alerts VALUES ('%s', 'MISSED', '2025-03-12T08:00:00Z',"
                                  " '2025-03-13T08:00:00Z')", id);
        harness_exec_ok(fx->h.pg, sql);
        assert_watch(watch(fx, T0 + H(72)), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(73)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 0);
}

/* An alert raised again after its events were delivered (their rows moved to
 * outbox_sent): here its case_alerts row is gone, as after a restore of an
 * older copy of that table and of the cases' marks. The event ids are the same, so nothing is written
 * to the outbox, and nothing published, again. */
static void test_delivered_alert_not_written_again(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-AGAIN", .deadline = T0 + H(48), .feedback_requested = true}, id);
        assert_watch(watch(fx, T0 + H(49)), 0, 1, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 2);       /* the alert, the feedback */
        harness_exec_ok(fx->h.pg, HARNESS_SQL_DELIVER_ALL);
        /* ...and the cases' marks of raised alerts with it (schema 3), so the watch looks again. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.case_alerts");
        harness_exec_ok(fx->h.pg, "UPDATE allvarsd.cases SET at_risk_alerted_due = NULL, missed_alerted_due = NULL,"
                                  " assessment_alerted_due = NULL");
        assert_watch(watch(fx, T0 + H(50)), 0, 1, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s'", id), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent WHERE key = '%s'", id), 2);
}

#define MANY 120

static void add_many(fixture *fx) {
        for (int i = 0; i < MANY; i++) {
                char rid[32];
                snprintf(rid, sizeof rid, "R-MANY-%03d", i);
                /* Deadlines spread over 48 h; every third asked for feedback; some await an assessment. */
                add_case(fx, &(case_spec){.referral_id = rid, .deadline = T0 + H(48) + (usec_t)i * 24 * 60 * USEC_PER_SEC,
                                          .feedback_requested = i % 3 == 0,
                                          .protective_assessment_due = i % 4 == 0 ? T0 + H(24) : 0,
                                          .awaiting_assessment = i % 4 == 0},
                         NULL);
        }
}

static void check_many(fixture *fx, unsigned at_risk, unsigned missed, unsigned overdue) {
        assert_int_equal(at_risk, MANY);
        assert_int_equal(missed, MANY);
        assert_int_equal(overdue, MANY / 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'AT_RISK'"), MANY);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'MISSED'"), MANY);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"
                                   " WHERE kind = 'PROTECTIVE_ASSESSMENT_OVERDUE'"),
                         MANY / 4);
        /* Every alert once in the outbox, the feedback of the 40 that asked, one audit row each. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_ALERT),
                         2 * MANY + MANY / 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_FEEDBACK),
                         MANY / 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action LIKE 'ALERT_%%'"),
                         2 * MANY + MANY / 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM (SELECT case_id, action FROM allvarsd.audit"
                                   " GROUP BY 1, 2 HAVING count(*) > 1) d"),
                         0);
}

/* Many passes over a day and a half: each alert exactly once. */
static void test_once_over_many_runs(void **state) {
        fixture *fx = *state;
        add_many(fx);
        unsigned ar = 0, mi = 0, pa = 0;
        for (usec_t now = T0; now <= T0 + H(100); now += 7 * 60 * USEC_PER_SEC) {
                for (int rep = 0; rep < 2; rep++) {
                        deadline_watch_result w = watch(fx, now);
                        ar += w.at_risk;
                        mi += w.missed;
                        pa += w.assessment_overdue;
                }
        }
        check_many(fx, ar, mi, pa);
}

/* Two instances, each with its own connection, running the watch at the same
 * moments: each alert exactly once between them. */
typedef struct racer {
        fixture *fx;
        pthread_barrier_t *barrier;
        store *st;
        unsigned at_risk, missed, overdue;
        int error;
} racer;

static void *race(void *arg) {
        racer *rc = arg;
        for (usec_t now = T0 + H(30); now <= T0 + H(100); now += H(2)) {
                for (int rep = 0; rep < 3; rep++) {
                        pthread_barrier_wait(rc->barrier);
                        deadline_watch_result w = {0};
                        int r = deadline_watch_run(rc->st, rc->fx->h.cfg, now, &w);
                        if (r < 0 && rc->error == 0)
                                rc->error = r;
                        rc->at_risk += w.at_risk;
                        rc->missed += w.missed;
                        rc->overdue += w.assessment_overdue;
                }
        }
        return NULL;
}

static void test_once_concurrent(void **state) {
        fixture *fx = *state;
        add_many(fx);
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        racer rc[2] = {{.fx = fx, .barrier = &barrier}, {.fx = fx, .barrier = &barrier}};
        for (int i = 0; i < 2; i++)
                assert_int_equal(harness_store_connect(&fx->h.db, &rc[i].st), 0);
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&th[i], NULL, race, &rc[i]), 0);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        for (int i = 0; i < 2; i++) {
                store_free(rc[i].st);
                assert_int_equal(rc[i].error, 0);
        }
        check_many(fx, rc[0].at_risk + rc[1].at_risk, rc[0].missed + rc[1].missed, rc[0].overdue + rc[1].overdue);
}

/* ---- the partial indexes and their marks (schemas/003_deadline_watch_indexes.sql) ---- */

/* The cases each kind's index holds (its predicate, as deadline_watch.c states it). */
#define IN_AT_RISK "c.closed_at IS NULL AND c.state = 'ELIGIBLE' AND c.at_risk_alerted_due IS DISTINCT FROM c.deadline"
#define IN_MISSED                                                                                               \
        "c.closed_at IS NULL AND (c.state = 'ELIGIBLE' OR (c.state = 'SCHEDULED'"                              \
        " AND c.deadline_kind IS DISTINCT FROM 'SUMMONS')) AND c.missed_alerted_due IS DISTINCT FROM c.deadline"
#define IN_ASSESSMENT                                                                                           \
        "c.closed_at IS NULL AND c.awaiting_assessment"                                                         \
        " AND c.assessment_alerted_due IS DISTINCT FROM c.protective_assessment_due"

static long long in_index(fixture *fx, const char *pred, const char *case_id) {
        return count(fx, "SELECT count(*) FROM allvarsd.cases c WHERE %s AND c.case_id = '%s'", pred, case_id);
}

/* The row version of a case: changes with every UPDATE of the row. */
static void case_xmin(fixture *fx, const char *case_id, char *buf, size_t size) {
        harness_value(fx->h.pg, buf, size, "SELECT xmin::text FROM allvarsd.cases WHERE case_id = '%s'", case_id);
}

/* Each raised alert marks its case with its due time, which takes the case out
 * of that kind's index; a pass with nothing new to raise writes no case row. */
static void test_alerts_mark_cases(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN], x1[32], x2[32];
        add_case(fx, &(case_spec){.referral_id = "R-MARK", .deadline = T0 + H(48),
                                  .protective_assessment_due = T0 + H(24), .awaiting_assessment = true},
                 id);
        assert_int_equal(in_index(fx, IN_AT_RISK, id), 1);
        assert_int_equal(in_index(fx, IN_MISSED, id), 1);
        assert_int_equal(in_index(fx, IN_ASSESSMENT, id), 1);

        case_xmin(fx, id, x1, sizeof x1);
        assert_watch(watch(fx, T0 + H(23)), 0, 0, 0);
        case_xmin(fx, id, x2, sizeof x2);
        assert_string_equal(x1, x2);            /* nothing due: not written */

        assert_watch(watch(fx, T0 + H(24)), 0, 0, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s'"
                                   " AND assessment_alerted_due = '2025-03-11T08:00:00Z'"
                                   " AND at_risk_alerted_due IS NULL AND missed_alerted_due IS NULL", id),
                         1);
        assert_int_equal(in_index(fx, IN_ASSESSMENT, id), 0);

        assert_watch(watch(fx, T0 + H(36)), 1, 0, 0);
        assert_int_equal(in_index(fx, IN_AT_RISK, id), 0);
        assert_int_equal(in_index(fx, IN_MISSED, id), 1);
        case_xmin(fx, id, x1, sizeof x1);
        assert_watch(watch(fx, T0 + H(40)), 0, 0, 0);
        case_xmin(fx, id, x2, sizeof x2);
        assert_string_equal(x1, x2);            /* in the at-risk window, raised and marked: not written */

        assert_watch(watch(fx, T0 + H(48)), 0, 1, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s'"
                                   " AND at_risk_alerted_due = '2025-03-12T08:00:00Z'"
                                   " AND missed_alerted_due = '2025-03-12T08:00:00Z'"
                                   " AND assessment_alerted_due = '2025-03-11T08:00:00Z'", id),
                         1);
        assert_int_equal(in_index(fx, IN_AT_RISK, id) + in_index(fx, IN_MISSED, id) + in_index(fx, IN_ASSESSMENT, id),
                         0);
        case_xmin(fx, id, x1, sizeof x1);
        assert_watch(watch(fx, T0 + H(500)), 0, 0, 0);
        case_xmin(fx, id, x2, sizeof x2);
        assert_string_equal(x1, x2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 3);
}

/* Alerts in case_alerts that no mark records (raised by the batch on arrival,
 * or before the upgrade to schema 3): one pass marks them, raises nothing
 * again, and raises what is still due. */
static void test_unmarked_alerts_marked_once(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN], id2[UUID_STR_LEN], sql[512];
        add_case(fx, &(case_spec){.referral_id = "R-OLD", .deadline = T0 + H(48),
                                  .protective_assessment_due = T0 + H(24), .awaiting_assessment = true},
                 id);
        add_case(fx, &(case_spec){.referral_id = "R-OLD-2", .deadline = T0 + H(48), .feedback_requested = true}, id2);
        snprintf(sql, sizeof sql,
                 "INSERT INTO allvarsd.case_alerts VALUES ('%s', 'AT_RISK', '2025-03-12T08:00:00Z', '2025-03-11T20:00:00Z'),"
                 " ('%s', 'MISSED', '2025-03-12T08:00:00Z', '2025-03-12T08:00:00Z'),"
                 " ('%s', 'PROTECTIVE_ASSESSMENT_OVERDUE', '2025-03-11T08:00:00Z', '2025-03-11T08:00:00Z'),"
                 " ('%s', 'AT_RISK', '2025-03-12T08:00:00Z', '2025-03-11T20:00:00Z')",
                 id, id, id, id2);
        harness_exec_ok(fx->h.pg, sql);

        assert_watch(watch(fx, T0 + H(60)), 0, 1, 0);   /* R-OLD-2's MISSED only */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s'", id), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'", id), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'", id2), 1);
        for (int i = 0; i < 2; i++) {
                const char *c = i ? id2 : id;
                assert_int_equal(in_index(fx, IN_AT_RISK, c) + in_index(fx, IN_MISSED, c) +
                                         in_index(fx, IN_ASSESSMENT, c),
                                 0);
        }
        assert_watch(watch(fx, T0 + H(61)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 2);        /* alert + feedback */
}

/* A case that leaves ELIGIBLE and comes back (an override back to ELIGIBLE
 * drops the scheduled time) keeps its deadline: no alert is raised twice for
 * it; one not raised yet (AT_RISK while SCHEDULED) is raised on return. */
static void test_state_changes_keep_due_times(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN], id2[UUID_STR_LEN], sql[256];
        add_case(fx, &(case_spec){.referral_id = "R-BACK", .deadline = T0 + H(48)}, id);
        add_case(fx, &(case_spec){.referral_id = "R-WAS-SCHEDULED", .state = "SCHEDULED", .deadline = T0 + H(48),
                                  .scheduled_at = T0 + H(40)},
                 id2);
        assert_watch(watch(fx, T0 + H(37)), 1, 0, 0);
        snprintf(sql, sizeof sql, "UPDATE allvarsd.cases SET state = 'SCHEDULED' WHERE case_id = '%s'", id);
        harness_exec_ok(fx->h.pg, sql);
        assert_watch(watch(fx, T0 + H(38)), 0, 0, 0);
        snprintf(sql, sizeof sql, "UPDATE allvarsd.cases SET state = 'ELIGIBLE', scheduled_at = NULL"
                                  " WHERE case_id IN ('%s', '%s')", id, id2);
        harness_exec_ok(fx->h.pg, sql);
        assert_watch(watch(fx, T0 + H(39)), 1, 0, 0);   /* R-WAS-SCHEDULED's, at last */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s'", id2), 1);
        assert_watch(watch(fx, T0 + H(48)), 0, 2, 0);
        snprintf(sql, sizeof sql, "UPDATE allvarsd.cases SET state = 'MANUAL_REVIEW' WHERE case_id = '%s'", id);
        harness_exec_ok(fx->h.pg, sql);
        snprintf(sql, sizeof sql, "UPDATE allvarsd.cases SET state = 'ELIGIBLE' WHERE case_id = '%s'", id);
        harness_exec_ok(fx->h.pg, sql);
        assert_watch(watch(fx, T0 + H(50)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 4);
}

/* AT_RISK reads one deadline range per distinct limit: four limits, each case
 * raised exactly at its own 75 %, not a microsecond before, while cases of
 * every limit reported later (20 days) stay in the index, not yet at risk. */
static void test_at_risk_each_limit(void **state) {
        fixture *fx = *state;
        static const int hours[] = {24, 48, 72, 14 * 24};
        for (size_t i = 0; i < 4; i++) {
                char rid[32];
                snprintf(rid, sizeof rid, "R-LIMIT-%d", hours[i]);
                add_case(fx, &(case_spec){.referral_id = rid, .limit = H(hours[i]), .deadline = T0 + H(hours[i])},
                         NULL);
                snprintf(rid, sizeof rid, "R-LATER-%d", hours[i]);
                add_case(fx, &(case_spec){.referral_id = rid, .limit = H(hours[i]),
                                          .deadline = T0 + H(20 * 24 + hours[i])},
                         NULL);
        }
        for (size_t i = 0; i < 4; i++) {
                usec_t at = T0 + H(hours[i]) * 3 / 4;
                /* The 24 h case's deadline passed before the others' 75 %: MISSED, counted below. */
                deadline_watch_result w = watch(fx, at - 1);
                assert_int_equal(w.at_risk, 0);
                w = watch(fx, at);
                assert_int_equal(w.at_risk, 1);
                assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c"
                                           " USING (case_id) WHERE a.kind = 'AT_RISK' AND c.limit_seconds = %d",
                                       hours[i] * 3600),
                                 1);
        }
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE kind = 'AT_RISK'"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts a JOIN allvarsd.cases c USING (case_id)"
                                   " WHERE c.referral_id LIKE 'R-LATER-%%'"),
                         0);
}

/* ---- a deadline set by the lifecycle (outcome_batch_store) ---- */

/* Apply INVESTIGATION_CLEARED from the police to the case of referral_id, as
 * the consumer would: packed, decoded, one batch. */
static void send_cleared(fixture *fx, const char *referral_id, const char *event_id, usec_t occurred, usec_t now) {
        CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        Allvarssamtal__V1__InvestigationCleared cleared = ALLVARSSAMTAL__V1__INVESTIGATION_CLEARED__INIT;
        Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        codec_timestamp_set(&at, occurred);
        ev.event_id = (char *)event_id;
        ev.case_id = "";
        ev.referral_id = (char *)referral_id;
        ev.occurred_at = &at;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
        ev.actor = &actor;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED;
        ev.investigation_cleared = &cleared;

        uint8_t *buf = NULL;
        size_t len = codec_pack(&ev.base, &buf);
        assert_non_null(buf);
        codec_error err;
        codec_outcome *dec = codec_outcome_decode(buf, len, fx->h.cfg->max_message_bytes, &err);
        assert_non_null(dec);
        store_message m = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .offset = 0, .payload = buf,
                           .len = len, .case_outcome = codec_outcome_msg(dec)};
        store_offset off = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .expected_next = -1, .new_next = 1};
        store_batch_result res = {0};
        int r = outcome_batch_store(fx->h.st, fx->h.cfg, "allvarsd", now, &m, 1, &off, 1, &res);
        if (r < 0)
                fail_msg("outcome_batch_store: %s", store_last_error(fx->h.st));
        if (m.status != STORE_DECIDED)
                fail_msg("INVESTIGATION_CLEARED: status %d%s%s", m.status, m.error ? ": " : "",
                         m.error ? m.error->detail : "");
        codec_outcome_free(dec);
        free(buf);
}

/* docs/domain.md "Decision", step 4: a deferred case becomes ELIGIBLE when the police clear
 * it, the 48 h counted from the clearance. Its deadline is set by the
 * lifecycle's UPDATE, after the watch has passed it over many times: its
 * alerts come at the new times, once each. */
static void test_deadline_after_clearance(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_case(fx, &(case_spec){.referral_id = "R-CLEARED", .state = "DEFERRED", .deadline_kind = "",
                                  .awaiting_clearance = true, .feedback_requested = true},
                 id);
        const char *p[] = {"R-CLEARED"};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, profile_name, profile_version,"
                " params_key, prior_referrals, prior_qualifying, decided_at)"
                " VALUES ($1, 'DEFERRED', 'PENDING_INVESTIGATION', '', 'goteborg-motion-2024', 1, md5('')::uuid, 0, 0,"
                " now())"
                " ON CONFLICT (referral_id) DO UPDATE SET reasons = excluded.reasons, deadline = NULL,"
                " deadline_kind = NULL, decided_at = excluded.decided_at",
                1, p, NULL, NULL);
        for (usec_t now = T0; now <= T0 + H(100); now += H(10))
                assert_watch(watch(fx, now), 0, 0, 0);

        send_cleared(fx, "R-CLEARED", "ev-cleared", T0 + H(100), T0 + H(100));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'ELIGIBLE'"
                                   " AND deadline = '2025-03-16T12:00:00Z'", id),
                         1);
        assert_int_equal(in_index(fx, IN_AT_RISK, id), 1);
        assert_int_equal(in_index(fx, IN_MISSED, id), 1);

        assert_watch(watch(fx, T0 + H(136) - 1), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(136)), 1, 0, 0);
        assert_watch(watch(fx, T0 + H(148) - 1), 0, 0, 0);
        assert_watch(watch(fx, T0 + H(148)), 0, 1, 0);
        assert_watch(watch(fx, T0 + H(200)), 0, 0, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s'"
                                   " AND due_at = '2025-03-16T12:00:00Z' AND kind IN ('AT_RISK', 'MISSED')", id),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts"), 2);
        /* The police's NOT_HELD_IN_TIME, named after the new due time. */
        char want[UUID_STR_LEN];
        ids_event_id(id, "feedback/NOT_HELD_IN_TIME/2025-03-16T12:00:00Z", want);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE event_id = '%s'", want), 1);
}

/* Without a connection the watch says so instead of pretending. */
static void test_not_connected(void **state) {
        fixture *fx = *state;
        deadline_watch_result w = {0};
        assert_int_equal(deadline_watch_run(NULL, fx->h.cfg, T0, &w), -ENOTCONN);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_at_risk_at_75_percent, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_at_risk_profile_fraction, setup_district_fraction,
                                                harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_missed_with_feedback_policy, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_missed_feedback_always, setup_feedback_always,
                                                harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_protective_assessment_overdue, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_scheduled_summons_and_closed, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_moved_deadline, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_missed_on_arrival_not_repeated, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_delivered_alert_not_written_again, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_once_over_many_runs, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_once_concurrent, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_alerts_mark_cases, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_unmarked_alerts_marked_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_state_changes_keep_due_times, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_at_risk_each_limit, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_deadline_after_clearance, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_not_connected, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
