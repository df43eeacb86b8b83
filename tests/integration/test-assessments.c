/* The protective assessment of every child (docs/domain.md "Protective
 * assessment") and what a held conversation led to, end to end through the
 * referral batch, the outcome batch and the deadline watch, against a real
 * PostgreSQL (PGHOST/PGPORT/PGUSER, e.g. from tests/lib/pg.sh): a fresh
 * database per test with schemas/NNN_*.sql applied. */
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

#include "codec.h"
#include "config.h"
#include "deadline_watch.h"
#include "harness.h"
#include "ids.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "store.h"

#define T0 ((usec_t)1741593600 * USEC_PER_SEC)      /* 2025-03-10T08:00:00Z, reported_at */
#define H(n) ((usec_t)(n) * USEC_PER_HOUR)
#define GROUP "allvarsd"

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        int64_t ref_next, out_next;     /* the partitions' stored positions; -1: none */
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

#define count(fx, ...) harness_count((fx)->h.pg, __VA_ARGS__)

static int setup(void **state) {
        if (harness_store_setup(state, sizeof(fixture), "test-assessments", "feedback.always = false\n") < 0)
                return -1;
        fixture *fx = *state;
        fx->ref_next = fx->out_next = -1;
        return 0;
}

/* A personnummer born on that day (serial 123 + Luhn). */
static void make_pnr(char out[32], int year, int month, int day) {
        char nine[32];
        snprintf(nine, sizeof nine, "%02d%02d%02d123", year % 100, month, day);
        snprintf(out, 32, "%04d%02d%02d123%d", year, month, day, harness_luhn_digit(nine));
}

/* One referral of a person born in birth_year (on 1 January), with acute
 * risk and a suspected crime, through the referral batch. */
static void send_referral(fixture *fx, const char *id, int birth_year) {
        PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        Allvarssamtal__V1__Guardian g = ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        Allvarssamtal__V1__Guardian *gp[] = {&g};
        Google__Protobuf__Timestamp reported = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Concern concern[] = {ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME};
        char pnr[32];
        make_pnr(pnr, birth_year, 1, 1);
        codec_timestamp_set(&reported, T0);
        r.referral_id = (char *)id;
        r.reported_at = &reported;
        r.district = "hisingen";
        subject.identity_number = pnr;
        r.subject = &subject;
        g.phone = "+46701234567";
        r.guardians = gp;
        r.n_guardians = 1;
        r.concerns = concern;
        r.n_concerns = 1;
        r.acute_risk = true;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&r.base, &buf);
        assert_non_null(buf);
        store_message m = {.topic = fx->h.cfg->topic_referrals, .partition = 0, .offset = fx->ref_next + 1,
                           .payload = buf, .len = len, .referral = &r};
        store_offset off = {.topic = fx->h.cfg->topic_referrals, .partition = 0, .expected_next = fx->ref_next,
                            .new_next = m.offset + 1};
        store_batch_result res = {0};
        if (referral_batch_store(fx->h.st, fx->h.cfg, GROUP, T0 + 60 * USEC_PER_SEC, &m, 1, &off, 1, NULL, &res) < 0)
                fail_msg("referral_batch_store: %s", store_last_error(fx->h.st));
        assert_int_equal(m.status, STORE_DECIDED);
        fx->ref_next = off.new_next;
        free(buf);
}

/* One outcome event through the outcome batch; returns its status. */
static store_message_status send_outcome(fixture *fx, CaseOutcome *ev, usec_t now, char *ret_reason, size_t size) {
        store_message_status st = 0;
        char detail[256];
        if (harness_outcome_send(&fx->h, GROUP, &fx->out_next, ev, now, &st, detail, sizeof detail) < 0)
                fail_msg("%s", detail);
        if (ret_reason)
                snprintf(ret_reason, size, "%s", detail);
        return st;
}

static store_message_status send_assessed(fixture *fx, const char *referral_id, const char *event_id, usec_t at) {
        CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__ProtectiveAssessmentRecorded rec = ALLVARSSAMTAL__V1__PROTECTIVE_ASSESSMENT_RECORDED__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        codec_timestamp_set(&ts, at);
        ev.event_id = (char *)event_id;
        ev.referral_id = (char *)referral_id;
        ev.occurred_at = &ts;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED;
        ev.protective_assessment_recorded = &rec;
        return send_outcome(fx, &ev, at, NULL, 0);
}

static deadline_watch_result watch(fixture *fx, usec_t now) {
        deadline_watch_result w = {99, 99, 99};
        if (deadline_watch_run(fx->h.st, fx->h.cfg, now, &w) < 0)
                fail_msg("deadline_watch_run: %s", store_last_error(fx->h.st));
        return w;
}

/* A child of seven with acute risk is NOT_ELIGIBLE under the default profile
 * (10-17): no case, but the assessment is owed within 24 h. The watch alerts
 * it once when overdue (with its event and audit row), never before. */
static void test_not_eligible_child_alerted(void **state) {
        fixture *fx = *state;
        send_referral(fx, "R-CHILD-7", 2017);
        char id[UUID_STR_LEN];
        ids_case_id("R-CHILD-7", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-CHILD-7'"
                                   " AND outcome = 'NOT_ELIGIBLE' AND protective_assessment_due = '2025-03-11T08:00:00Z'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.assessment_duties WHERE case_id = '%s'"
                                   " AND due_at = '2025-03-11T08:00:00Z' AND recorded_at IS NULL", id),
                         1);

        assert_int_equal(watch(fx, T0 + H(24) - 1).assessment_overdue, 0);
        assert_int_equal(watch(fx, T0 + H(24)).assessment_overdue, 1);
        assert_int_equal(watch(fx, T0 + H(25)).assessment_overdue, 0);
        assert_int_equal(watch(fx, T0 + H(200)).assessment_overdue, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s'"
                                   " AND ce_type LIKE '%%DeadlineAlert'", id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'"
                                   " AND action = 'ALERT_PROTECTIVE_ASSESSMENT_OVERDUE'"
                                   " AND after LIKE 'state=NOT_ELIGIBLE;%%due_at=2025-03-11T08:00:00Z'", id),
                         1);
        /* Recorded late: accepted, no case opened, audited. */
        assert_int_equal(send_assessed(fx, "R-CHILD-7", "ev-assessed-late", T0 + H(30)), STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.assessment_duties WHERE case_id = '%s'"
                                   " AND recorded_at = '2025-03-11T14:00:00Z'", id),
                         1);
}

/* Recorded in time: no alert then or ever; a second recording is illegal. */
static void test_not_eligible_child_recorded(void **state) {
        fixture *fx = *state;
        send_referral(fx, "R-CHILD-6", 2018);
        char id[UUID_STR_LEN];
        ids_case_id("R-CHILD-6", id);
        assert_int_equal(watch(fx, T0 + H(1)).assessment_overdue, 0);
        assert_int_equal(send_assessed(fx, "R-CHILD-6", "ev-assessed", T0 + H(3)), STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'"
                                   " AND action = 'ASSESSMENT_RECORDED' AND actor_kind = 'SOCIAL_WORKER'", id),
                         1);
        assert_int_equal(watch(fx, T0 + H(24)).assessment_overdue, 0);
        assert_int_equal(watch(fx, T0 + H(500)).assessment_overdue, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type LIKE '%%DeadlineAlert'"), 0);
        assert_int_equal(send_assessed(fx, "R-CHILD-6", "ev-assessed-again", T0 + H(4)), STORE_DEAD_LETTERED);
}

/* An adult with acute risk owes no statutory assessment: no due time,
 * whether deferred (stockholm-2019 reaches 20) or NOT_ELIGIBLE; no duty, no
 * alert. The deferred adult's case still awaits its assessment. */
static void test_adult_no_due_time(void **state) {
        fixture *fx = *state;
        send_referral(fx, "R-ADULT-25", 2000);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-ADULT-25'"
                                   " AND outcome = 'NOT_ELIGIBLE' AND protective_assessment_due IS NULL"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.assessment_duties"), 0);
        assert_int_equal(watch(fx, T0 + H(500)).assessment_overdue, 0);
}

static int setup_stockholm(void **state) {
        if (harness_store_setup(state, sizeof(fixture), "test-assessments",
                                "feedback.always = false\nprofile.name = stockholm-2019\n") < 0)
                return -1;
        fixture *fx = *state;
        fx->ref_next = fx->out_next = -1;
        return 0;
}

static void test_adult_deferred_no_due_time(void **state) {
        fixture *fx = *state;
        send_referral(fx, "R-ADULT-19", 2006);
        char id[UUID_STR_LEN];
        ids_case_id("R-ADULT-19", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-ADULT-19'"
                                   " AND outcome = 'DEFERRED' AND protective_assessment_due IS NULL"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'DEFERRED'"
                                   " AND awaiting_assessment AND protective_assessment_due IS NULL", id),
                         1);
        assert_int_equal(watch(fx, T0 + H(500)).assessment_overdue, 0);
        /* Assessed: eligible, the limit counted from then. */
        assert_int_equal(send_assessed(fx, "R-ADULT-19", "ev-adult-assessed", T0 + H(2)), STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'ELIGIBLE'"
                                   " AND deadline = '2025-03-12T10:00:00Z'", id),
                         1);
}

/* CONVERSATION_HELD with who took part and what followed: codes on the
 * event's row, in the audit; police among the participants is police present. */
static void test_held_participants_follow_up(void **state) {
        fixture *fx = *state;
        send_referral(fx, "R-HELD", 2012);
        char id[UUID_STR_LEN];
        ids_case_id("R-HELD", id);
        assert_int_equal(send_assessed(fx, "R-HELD", "ev-held-assessed", T0 + H(2)), STORE_DECIDED);

        CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__ConversationHeld held = ALLVARSSAMTAL__V1__CONVERSATION_HELD__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Participant who[] = {
                ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_POLICE,
                ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_CHILD,
                ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_GUARDIANS,
                ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_CHILD,
        };
        Allvarssamtal__V1__FollowUp what[] = {
                ALLVARSSAMTAL__V1__FOLLOW_UP__FOLLOW_UP_OPEN_CARE,
                ALLVARSSAMTAL__V1__FOLLOW_UP__FOLLOW_UP_ADVICE_SUPPORT,
        };
        codec_timestamp_set(&ts, T0 + H(20));
        ev.event_id = "ev-held";
        ev.referral_id = "R-HELD";
        ev.occurred_at = &ts;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
        held.participants = who;
        held.n_participants = 4;
        held.follow_up = what;
        held.n_follow_up = 2;
        ev.conversation_held = &held;
        assert_int_equal(send_outcome(fx, &ev, T0 + H(20), NULL, 0), STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events WHERE event_id = 'ev-held'"
                                   " AND participants = '{CHILD,GUARDIANS,POLICE}'"
                                   " AND follow_up = '{ADVICE_SUPPORT,OPEN_CARE}'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'HELD'"
                                   " AND police_attending", id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'HELD'"
                                   " AND after LIKE '%%;participants=CHILD,GUARDIANS,POLICE;follow_up=ADVICE_SUPPORT,OPEN_CARE;%%'",
                                   id),
                         1);
        /* Other events carry none. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events WHERE event_id = 'ev-held-assessed'"
                                   " AND participants IS NULL AND follow_up IS NULL"),
                         1);
}

/* An unknown participant or follow-up code is a dead letter (UNKNOWN_ENUM), not a guess. */
static void test_held_unknown_code(void **state) {
        fixture *fx = *state;
        CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__ConversationHeld held = ALLVARSSAMTAL__V1__CONVERSATION_HELD__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Participant who[] = {(Allvarssamtal__V1__Participant)9};
        codec_timestamp_set(&ts, T0);
        ev.event_id = "ev-x";
        ev.referral_id = "R-X";
        ev.occurred_at = &ts;
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        actor.name = "handläggare-7";
        ev.actor = &actor;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
        held.participants = who;
        held.n_participants = 1;
        ev.conversation_held = &held;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&ev.base, &buf);
        codec_error err;
        codec_outcome *dec = codec_outcome_decode(buf, len, fx->h.cfg->max_message_bytes, &err);
        assert_null(dec);
        assert_int_equal(err.reason, DLR_UNKNOWN_ENUM);
        assert_string_equal(err.detail, "conversation_held.participants[0] is not a known Participant");
        free(buf);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_not_eligible_child_alerted, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_not_eligible_child_recorded, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_adult_no_due_time, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_adult_deferred_no_due_time, setup_stockholm,
                                                harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_held_participants_follow_up, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_held_unknown_code, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
