/* Retention (gallring) against a real PostgreSQL (PGHOST/PGPORT/PGUSER, e.g.
 * from tests/lib/pg.sh): a fresh database per test with the schema applied,
 * referrals and cases in every situation set up with SQL, and the clock set by
 * passing `now`. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "config.h"
#include "harness.h"
#include "events.h"
#include "ids.h"
#include "retention.h"
#include "store.h"

#define NOW ((usec_t)1748736000 * USEC_PER_SEC)      /* 2025-06-01T00:00:00Z */
#define CONFIG_NAME "test-retention"
#define DAYS(n) ((usec_t)(n) * USEC_PER_DAY)

/* ---- the database of one test (tests/lib/harness.h) ---- */

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        unsigned offset;                /* source_offset of the next referral */
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

#define count(fx, ...) harness_count((fx)->h.pg, __VA_ARGS__)
#define TS(p) HARNESS_SQL_TS(p)

static int setup(void **state) {
        return harness_store_setup(state, sizeof(fixture), CONFIG_NAME,
                                   "retention.closed_case_days = 30\nretention.not_eligible_days = 7\n");
}

static void exec_params(fixture *fx, const char *sql, int n, const char *const *p) {
        harness_exec_params_ok(fx->h.pg, sql, n, p, NULL, NULL);
}

/* A referral as the store leaves it: the pseudonymous row, its personal row
 * (identity number, names, narrative, raw payload), its decision, an audit row;
 * with a case (state, closed_at) also two guardians' contacts, its events (a
 * scheduling request and feedback delivered: their records in outbox_sent; a
 * second scheduling request not yet: its outbox row, with the payload), and an
 * override's audit row whose reason names someone. */
typedef struct referral_spec {
        const char *referral_id;
        const char *outcome;            /* the decision */
        usec_t decided_at;
        const char *case_state;         /* NULL: no case */
        usec_t closed_at;               /* 0: open */
} referral_spec;

static void add_referral(fixture *fx, const referral_spec *rs) {
        char case_id[UUID_STR_LEN], off[16], decided[24], closed[24];
        ids_case_id(rs->referral_id, case_id);
        snprintf(off, sizeof off, "%u", fx->offset++);
        snprintf(decided, sizeof decided, "%lld", (long long)rs->decided_at);
        snprintf(closed, sizeof closed, "%lld", (long long)rs->closed_at);

        const char *p3[] = {rs->referral_id, case_id, decided, off};
        exec_params(fx,
                "INSERT INTO allvarsd.referrals (referral_id, case_id, marks, district, reported_at,"
                " feedback_requested, police_case_number, source_topic, source_partition, source_offset, received_at)"
                " VALUES ($1, $2, 4, 'hisingen', " TS("$3") ", true, 'PC-' || $1, 'police.referrals.v1', 0, $4,"
                " " TS("$3") ")",
                4, p3);
        const char *p1[] = {rs->referral_id};
        exec_params(fx,
                "INSERT INTO allvarsd.referral_personal (referral_id, payload) VALUES ($1, '\\x0a0b0c')",
                1, p1);
        const char *p2[] = {rs->referral_id, rs->outcome, decided};
        exec_params(fx,
                "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, age, profile_name,"
                " profile_version, params_key, prior_referrals, prior_qualifying, decided_at)"
                " VALUES ($1, $2, '', '', 13, 'goteborg-motion-2024', 1, md5('name=goteborg-motion-2024')::uuid, 0, 0,"
                " " TS("$3") ")",
                3, p2);
        const char *pa[] = {case_id, rs->referral_id, decided};
        exec_params(fx,
                "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, action, after)"
                " VALUES ($1, $2, " TS("$3") ", 'DAEMON', 'DECIDED', 'outcome=' || $2)",
                3, pa);
        if (!rs->case_state)
                return;

        const char *pc[] = {case_id, rs->referral_id, rs->case_state, decided, rs->closed_at ? closed : NULL};
        exec_params(fx,
                "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
                " limit_seconds, deadline, deadline_kind, feedback_requested, created_at, updated_at, closed_at)"
                " VALUES ($1, $2, 'hisingen', $3, 'ELIGIBLE', 'goteborg-motion-2024', 172800,"
                " " TS("$4") " + interval '48 hours', 'CONVERSATION', true, " TS("$4") ", " TS("$4") ","
                " " TS("$5") ")",
                5, pc);
        exec_params(fx,
                "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, email, postal_address, supplied_at)"
                " VALUES ($1, 1, 'Anna Karlsson', '+46701234567', 'anna@example.se', 'Storgatan 1', " TS("$2") "),"
                "        ($1, 2, 'Bo Karlsson', '', '', 'Storgatan 1', " TS("$2") ")",
                2, (const char *[]){case_id, decided});
        exec_params(fx,
                "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, actor_name, action, detail)"
                " VALUES ($1, $2, " TS("$3") ", 'SOCIAL_WORKER', 'handläggare 7', 'OVERRIDDEN',"
                " 'Anna Karlsson asked for a later meeting')",
                3, pa);
        char ev1[UUID_STR_LEN], ev2[UUID_STR_LEN], ev3[UUID_STR_LEN];
        ids_event_id(case_id, "scheduling/1", ev1);
        ids_event_id(case_id, "scheduling/2", ev2);
        ids_event_id(case_id, "feedback/RECEIVED", ev3);
        exec_params(fx,
                "INSERT INTO allvarsd.outbox_sent (id, event_id, topic, key, ce_type, ce_time, payload_bytes,"
                "                                  created_at, sent_at)"
                " SELECT nextval('allvarsd.outbox_id_seq'), e.id::uuid, e.topic, $1, e.type, " TS("$4") ", 5,"
                "        " TS("$4") ", " TS("$4")
                "   FROM (VALUES ($2, 'allvarssamtal.scheduling.v1', '" CE_TYPE_SCHEDULING "'),"
                "                ($3, 'police.feedback.v1', '" CE_TYPE_FEEDBACK "')) AS e(id, topic, type)",
                4, (const char *[]){case_id, ev1, ev3, decided});
        exec_params(fx,
                "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
                " VALUES ($2, 'allvarssamtal.scheduling.v1', $1, '" CE_TYPE_SCHEDULING "', " TS("$3") ","
                "         '\\x4b616c6c65')",
                3, (const char *[]){case_id, ev2, decided});
}

static void add_dead_letter(fixture *fx, int64_t offset, usec_t received_at) {
        char off[24], rec[24], ev[UUID_STR_LEN];
        snprintf(off, sizeof off, "%lld", (long long)offset);
        snprintf(rec, sizeof rec, "%lld", (long long)received_at);
        ids_event_id("deadletter", off, ev);
        const char *p[] = {ev, off, rec};
        exec_params(fx,
                "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset,"
                " reason, detail, payload, received_at)"
                " VALUES ($1, 'police.referrals.v1', 0, $2, 'UNDECODABLE', 'bad wire type', '\\x0a0b', " TS("$3") ")",
                3, p);
}

static retention_result purge(fixture *fx, usec_t now) {
        retention_result rr = {99, 99, 99, 99};
        int r = retention_run(fx->h.st, fx->h.cfg, now, &rr);
        if (r < 0)
                fail_msg("retention_run: %s (%s)", strerror(-r), PQerrorMessage(fx->h.pg));
        return rr;
}

static void setup_world(fixture *fx) {
        /* Cases closed more and less than 30 days ago, and open ones. */
        add_referral(fx, &(referral_spec){"R-OLD-HELD", "ELIGIBLE", NOW - DAYS(60), "HELD", NOW - DAYS(31)});
        add_referral(fx, &(referral_spec){"R-OLD-CANCELLED", "DEFERRED", NOW - DAYS(400), "CANCELLED",
                                          NOW - DAYS(30) - 1});
        add_referral(fx, &(referral_spec){"R-RECENT-HELD", "ELIGIBLE", NOW - DAYS(60), "HELD", NOW - DAYS(29)});
        add_referral(fx, &(referral_spec){"R-OPEN", "ELIGIBLE", NOW - DAYS(900), "ELIGIBLE", 0});
        /* NOT_ELIGIBLE referrals decided more and less than 7 days ago. */
        add_referral(fx, &(referral_spec){"R-NE-OLD", "NOT_ELIGIBLE", NOW - DAYS(8), NULL, 0});
        add_referral(fx, &(referral_spec){"R-NE-RECENT", "NOT_ELIGIBLE", NOW - DAYS(6), NULL, 0});
        /* NOT_ELIGIBLE, then a social worker's override opened a case that is still open. */
        add_referral(fx, &(referral_spec){"R-NE-OVERRIDDEN", "NOT_ELIGIBLE", NOW - DAYS(100), "ELIGIBLE", 0});
        /* Only NOT_ELIGIBLE has the short retention: a referral of another outcome
         * whose case row is missing is left alone rather than guessed at. */
        add_referral(fx, &(referral_spec){"R-MANUAL-NO-CASE", "MANUAL_REVIEW", NOW - DAYS(100), NULL, 0});
        add_dead_letter(fx, 1, NOW - DAYS(31));
        add_dead_letter(fx, 2, NOW - DAYS(1));
        /* Their statistics rows, as the batches that write such rows leave them
         * (the teardown, tests/lib/harness.c, wants one per decided referral). */
        exec_params(fx, "INSERT INTO allvarsd.referral_stats SELECT * FROM allvarsd.referral_stats_source", 0, NULL);
}

#define PURGED_SET "('R-OLD-HELD', 'R-OLD-CANCELLED', 'R-NE-OLD')"
#define CASES_OF(set) "(SELECT case_id FROM allvarsd.referrals WHERE referral_id IN " set ")"

/* Exactly the old closed cases and old NOT_ELIGIBLE referrals lose their
 * personal data; everything pseudonymous stays; each purge is audited. */
static void test_purges_exactly_the_old(void **state) {
        fixture *fx = *state;
        setup_world(fx);
        long long audit_before = count(fx, "SELECT count(*) FROM allvarsd.audit");

        retention_result rr = purge(fx, NOW);
        assert_int_equal(rr.referrals, 3);
        assert_int_equal(rr.cases, 2);
        assert_int_equal(rr.dead_letters, 1);
        assert_int_equal(rr.outbox_rows, 0);    /* a delivered request keeps no payload to clear */

        /* Personal rows: gone for the purged, all there for the rest. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal WHERE referral_id IN " PURGED_SET),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts WHERE case_id IN " CASES_OF(PURGED_SET)),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts"), 6);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE purged_at IS NOT NULL"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE purged_at = '2025-06-01T00:00:00Z'"
                                   " AND referral_id IN " PURGED_SET),
                         3);

        /* Outbox: the unsent rows untouched, payloads included (the relay still
         * has to publish them, the purged cases' too); the records of what was
         * sent stay, and have no payload to clear. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE payload = '\\x4b616c6c65'"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent"), 10);

        /* Audit: override reasons of purged cases cleared, others kept; one PURGED row each. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE detail <> ''"
                                   " AND case_id IN " CASES_OF(PURGED_SET)),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE detail <> ''"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'PURGED'"
                                   " AND actor_kind = 'DAEMON' AND at = '2025-06-01T00:00:00Z'"
                                   " AND referral_id IN " PURGED_SET " AND case_id IN " CASES_OF(PURGED_SET)),
                         3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), audit_before + 3);
        /* The audit skeleton stays: every earlier row still there. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action <> 'PURGED'"), audit_before);

        /* Pseudonymous rows stay for statistics. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), 8);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 8);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 5);

        /* Dead letters: the old one's payload only. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE payload IS NULL"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE payload IS NULL"
                                   " AND source_offset = 1"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 2);

        /* The run is recorded. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.purges WHERE at = '2025-06-01T00:00:00Z'"
                                   " AND referrals_purged = 3 AND cases_purged = 2 AND dead_letters_purged = 1"
                                   " AND outbox_purged = 0"),
                         1);
}

/* A second run at the same time purges nothing and audits nothing more. */
static void test_second_run_purges_nothing(void **state) {
        fixture *fx = *state;
        setup_world(fx);
        purge(fx, NOW);
        long long audit = count(fx, "SELECT count(*) FROM allvarsd.audit");

        retention_result rr = purge(fx, NOW);
        assert_int_equal(rr.referrals, 0);
        assert_int_equal(rr.cases, 0);
        assert_int_equal(rr.dead_letters, 0);
        assert_int_equal(rr.outbox_rows, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), audit);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'PURGED'"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.purges"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.purges WHERE referrals_purged = 0"
                                   " AND cases_purged = 0 AND dead_letters_purged = 0 AND outbox_purged = 0"),
                         1);
}

/* Time passes: what was recent becomes old and is purged then; a scheduling
 * request still unsent at its case's purge loses its payload once delivered
 * (the relay moves it to outbox_sent), without the purge. */
static void test_later_runs(void **state) {
        fixture *fx = *state;
        setup_world(fx);
        purge(fx, NOW);

        /* The relay delivers the old case's pending scheduling request after the
         * purge (relay.c mark_sent: the row leaves the outbox, its record stays). */
        const char *old_case = "(SELECT case_id::text FROM allvarsd.referrals WHERE referral_id = 'R-OLD-HELD')";
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = %s", old_case), 1);
        exec_params(fx,
                "WITH d AS (DELETE FROM allvarsd.outbox"
                "            WHERE key = (SELECT case_id::text FROM allvarsd.referrals WHERE referral_id = 'R-OLD-HELD')"
                "           RETURNING id, event_id, topic, key, ce_type, ce_time, octet_length(payload), created_at,"
                "                     " TS("$1") ", once)"
                " INSERT INTO allvarsd.outbox_sent SELECT d.* FROM d",
                1, (const char *[]){"1748736000000000"});
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = %s", old_case), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent WHERE key = %s", old_case), 3);

        retention_result rr = purge(fx, NOW + DAYS(2));
        assert_int_equal(rr.referrals, 2);      /* R-NE-RECENT (8 days) and R-RECENT-HELD (31 days) */
        assert_int_equal(rr.cases, 1);
        assert_int_equal(rr.dead_letters, 0);
        assert_int_equal(rr.outbox_rows, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"
                                   " WHERE referral_id IN ('R-OPEN', 'R-NE-OVERRIDDEN', 'R-MANUAL-NO-CASE')"),
                         3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE referral_id = 'R-NE-RECENT'"
                                   " AND purged_at = '2025-06-03T00:00:00Z'"),
                         1);
        /* The earlier purge's time is not rewritten. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE purged_at = '2025-06-01T00:00:00Z'"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'PURGED'"), 5);
        /* The open cases, however old, keep everything. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts"), 4);
        /* The unsent requests keep their payloads, the recently purged case's too. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE payload = '\\x4b616c6c65'"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent"), 11);
}

static void test_not_connected(void **state) {
        fixture *fx = *state;
        retention_result rr = {0};
        assert_int_equal(retention_run(NULL, fx->h.cfg, NOW, &rr), -ENOTCONN);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_purges_exactly_the_old, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_second_run_purges_nothing, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_later_runs, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_not_connected, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
