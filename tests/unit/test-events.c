/* events.c: which events a decision causes, their payloads decoded back field
 * by field, the feedback policy (docs/domain.md "Feedback to the police"), no
 * personal data in feedback, and stable, distinct event ids. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "allvarssamtal/v1/alert.pb-c.h"
#include "allvarssamtal/v1/dead_letter.pb-c.h"
#include "allvarssamtal/v1/feedback.pb-c.h"
#include "allvarssamtal/v1/scheduling.pb-c.h"

#define T0 ((usec_t)1741773600 * USEC_PER_SEC)  /* 2025-03-12T10:00:00Z */
#define NOW (T0 + 90 * USEC_PER_SEC + 123456)   /* with a fraction */
#define CASE_ID "6f1d7a51-3c0e-5b6e-9d1b-2f7c0a4e8b11"

/* The personal data of the test referral: none of it may reach the police's feedback. */
#define IDN "20120315-2389"
#define IDN_DIGITS "201203152389"
#define BIRTH "2012-03-15"
#define GIVEN "Ylvamarie"
#define FAMILY "Quarnstrom"
#define G1_NAME "Beatrix Quarnstrom"
#define G1_PHONE "+46701234567"
#define G1_EMAIL "beatrix@example.se"
#define G1_ADDR "Storgatan 1, 417 05 Goteborg"
#define G2_NAME "Hjalmar Quarnstrom"
#define NARRATIVE "Barnet sags vid brand i skolans forrad tillsammans med aldre ungdomar"

static const char *const personal[] = {
        IDN, IDN_DIGITS, BIRTH, GIVEN, FAMILY, G1_NAME, G1_PHONE, G1_EMAIL, G1_ADDR, G2_NAME, NARRATIVE,
};

typedef struct fixture {
        config cfg;
        profile prof;
        Allvarssamtal__V1__PoliceReferral ref;
        Allvarssamtal__V1__Person subject;
        Allvarssamtal__V1__Guardian g1, g2;
        Allvarssamtal__V1__Guardian *guardians[2];
        Google__Protobuf__Timestamp reported;
        decision d;
        event_list out;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof *f);
        assert_non_null(f);
        f->cfg.topic_scheduling = "allvarssamtal.scheduling.v1";
        f->cfg.topic_feedback = "police.feedback.v1";
        f->cfg.topic_alerts = "allvarssamtal.alerts.v1";
        f->cfg.topic_dead_letter = "allvarssamtal.deadletter.v1";
        f->cfg.topic_referrals = "police.referrals.v1";
        f->cfg.feedback_level = FEEDBACK_CONVERSATION;
        f->cfg.feedback_always = false;

        snprintf(f->prof.name, sizeof f->prof.name, "goteborg-motion-2024");
        f->prof.version = 3;

        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person p = ALLVARSSAMTAL__V1__PERSON__INIT;
        Allvarssamtal__V1__Guardian g = ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->ref = r;
        f->subject = p;
        f->g1 = g;
        f->g2 = g;
        f->reported = ts;
        f->reported.seconds = T0 / USEC_PER_SEC;
        f->subject.identity_number = IDN;
        f->subject.birth_date = BIRTH;
        f->subject.given_name = GIVEN;
        f->subject.family_name = FAMILY;
        f->g1.name = G1_NAME;
        f->g1.phone = G1_PHONE;
        f->g1.email = G1_EMAIL;
        f->g1.postal_address = G1_ADDR;
        f->g2.name = G2_NAME;
        f->guardians[0] = &f->g1;
        f->guardians[1] = &f->g2;
        f->ref.referral_id = "POL-2025-000123";
        f->ref.police_case_number = "5000-K123456-25";
        f->ref.reported_at = &f->reported;
        f->ref.district = "hisingen";
        f->ref.subject = &f->subject;
        f->ref.guardians = f->guardians;
        f->ref.n_guardians = 2;
        f->ref.feedback_requested = true;
        f->ref.reporting_unit = "LPO Hisingen";
        f->ref.narrative = NARRATIVE;

        f->d.outcome = OUTCOME_ELIGIBLE;
        f->d.age = 12;
        f->d.deadline = T0 + 48 * USEC_PER_HOUR;
        f->d.deadline_kind = DEADLINE_CONVERSATION;
        f->d.summon_guardians = true;
        f->d.profile = &f->prof;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;
        event_list_free(&f->out);
        free(f);
        return 0;
}

static const outbox_event *find_type(const event_list *l, const char *ce_type, size_t nth) {
        for (size_t i = 0; i < l->n; i++)
                if (strcmp(l->v[i].ce_type, ce_type) == 0 && nth-- == 0)
                        return &l->v[i];
        return NULL;
}

static size_t count_type(const event_list *l, const char *ce_type) {
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
                n += strcmp(l->v[i].ce_type, ce_type) == 0;
        return n;
}

static Allvarssamtal__V1__PoliceFeedback *feedback_of(const event_list *l, feedback_status s) {
        for (size_t i = 0; i < l->n; i++) {
                if (strcmp(l->v[i].ce_type, CE_TYPE_FEEDBACK) != 0)
                        continue;
                Allvarssamtal__V1__PoliceFeedback *fb =
                        allvarssamtal__v1__police_feedback__unpack(NULL, l->v[i].len, l->v[i].payload);
                assert_non_null(fb);
                if ((int)fb->status == (int)s)
                        return fb;
                allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);
        }
        return NULL;
}

static void expect_id(const char *got, const char *case_id, const char *name) {
        char want[UUID_STR_LEN];
        ids_event_id(case_id, name, want);
        assert_string_equal(got, want);
}

static void assert_no_personal_data(const outbox_event *e) {
        for (size_t i = 0; i < sizeof personal / sizeof personal[0]; i++)
                if (memmem(e->payload, e->len, personal[i], strlen(personal[i])))
                        fail_msg("personal data \"%s\" in a %s payload", personal[i], e->ce_type);
}

static void check_feedback(const event_list *l, feedback_status s, const char *name, int assessment) {
        Allvarssamtal__V1__PoliceFeedback *fb = feedback_of(l, s);
        assert_non_null(fb);
        expect_id(fb->event_id, CASE_ID, name);
        assert_string_equal(fb->case_id, CASE_ID);
        assert_string_equal(fb->referral_id, "POL-2025-000123");
        assert_string_equal(fb->police_case_number, "5000-K123456-25");
        assert_non_null(fb->status_at);
        assert_int_equal(codec_timestamp_usec(fb->status_at), NOW);
        assert_int_equal(fb->assessment, assessment);
        assert_null(fb->meeting_at);
        allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);
}

static void test_decision_eligible(void **state) {
        fixture *f = *state;
        f->d.flags = FLAG_CONTACT_MISSING | FLAG_UNDER_15;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 4);
        assert_int_equal(count_type(&f->out, CE_TYPE_FEEDBACK), 3);
        assert_int_equal(count_type(&f->out, CE_TYPE_SCHEDULING), 1);

        for (size_t i = 0; i < f->out.n; i++) {
                const outbox_event *e = &f->out.v[i];
                assert_string_equal(e->key, CASE_ID);
                assert_int_equal(e->ce_time, NOW);
                assert_true(e->len > 0);
                if (strcmp(e->ce_type, CE_TYPE_FEEDBACK) == 0)
                        assert_string_equal(e->topic, "police.feedback.v1");
                else
                        assert_string_equal(e->topic, "allvarssamtal.scheduling.v1");
        }
        /* The events in causal order: what the police hear first comes first. */
        assert_string_equal(f->out.v[0].ce_type, CE_TYPE_FEEDBACK);
        assert_string_equal(f->out.v[3].ce_type, CE_TYPE_SCHEDULING);

        check_feedback(&f->out, FEEDBACK_RECEIVED, "feedback/RECEIVED", 0);
        check_feedback(&f->out, FEEDBACK_ASSESSED, "feedback/ASSESSED", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE);
        check_feedback(&f->out, FEEDBACK_CONTACT_INFO_REQUESTED, "feedback/CONTACT_INFO_REQUESTED", 0);
        assert_null(feedback_of(&f->out, FEEDBACK_CLEARANCE_REQUESTED));
        /* The outbox row's event id is the payload's. */
        Allvarssamtal__V1__PoliceFeedback *fb = feedback_of(&f->out, FEEDBACK_RECEIVED);
        assert_string_equal(f->out.v[0].event_id, fb->event_id);
        allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);

        const outbox_event *e = find_type(&f->out, CE_TYPE_SCHEDULING, 0);
        Allvarssamtal__V1__SchedulingRequest *sr =
                allvarssamtal__v1__scheduling_request__unpack(NULL, e->len, e->payload);
        assert_non_null(sr);
        expect_id(sr->event_id, CASE_ID, "scheduling/1");
        assert_string_equal(e->event_id, sr->event_id);
        assert_string_equal(sr->case_id, CASE_ID);
        assert_int_equal(sr->revision, CASE_FIRST_REVISION);
        assert_int_equal(sr->kind, ALLVARSSAMTAL__V1__SCHEDULING_REQUEST_KIND__SCHEDULING_REQUEST_KIND_NEW);
        assert_int_equal(codec_timestamp_usec(sr->created_at), NOW);
        assert_string_equal(sr->district, "hisingen");
        assert_int_equal(sr->deadline_kind, ALLVARSSAMTAL__V1__DEADLINE_KIND__DEADLINE_KIND_CONVERSATION);
        assert_int_equal(codec_timestamp_usec(sr->deadline), T0 + 48 * USEC_PER_HOUR);
        assert_string_equal(sr->child_given_name, GIVEN);
        assert_string_equal(sr->child_family_name, FAMILY);
        assert_true(sr->summon_guardians);
        assert_int_equal(sr->n_guardians, 2);
        assert_string_equal(sr->guardians[0]->name, G1_NAME);
        assert_string_equal(sr->guardians[0]->phone, G1_PHONE);
        assert_string_equal(sr->guardians[0]->email, G1_EMAIL);
        assert_string_equal(sr->guardians[0]->postal_address, G1_ADDR);
        assert_string_equal(sr->guardians[1]->name, G2_NAME);
        assert_string_equal(sr->guardians[1]->phone, "");
        /* A guardian has a phone: no letter. */
        assert_false(sr->letter_fallback);
        assert_true(sr->invite_police);
        assert_string_equal(sr->police_reporting_unit, "LPO Hisingen");
        assert_string_equal(sr->profile, "goteborg-motion-2024");
        assert_int_equal(sr->profile_version, 3);
        allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);

        /* The booking service needs the names; the narrative goes nowhere. */
        assert_non_null(memmem(e->payload, e->len, GIVEN, strlen(GIVEN)));
        assert_null(memmem(e->payload, e->len, NARRATIVE, strlen(NARRATIVE)));
        assert_null(memmem(e->payload, e->len, IDN, strlen(IDN)));
}

static void test_feedback_has_no_personal_data(void **state) {
        fixture *f = *state;
        f->d.flags = FLAG_CONTACT_MISSING;
        f->d.outcome = OUTCOME_DEFERRED;
        f->d.reasons = REASON_PRELIMINARY_INVESTIGATION | REASON_PROTECTIVE_ASSESSMENT_FIRST;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(count_type(&f->out, CE_TYPE_FEEDBACK), 4);
        /* The later statuses too. */
        feedback_ref ref = {.case_id = CASE_ID, .referral_id = f->ref.referral_id,
                            .police_case_number = f->ref.police_case_number, .feedback_requested = true};
        for (feedback_status s = FEEDBACK_SCHEDULED; s <= FEEDBACK_CANCELLED; s++)
                assert_int_equal(events_feedback(&f->cfg, &ref, s, 0, T0 + USEC_PER_DAY, feedback_status_code(s),
                                                 NOW, &f->out),
                                 0);
        assert_int_equal(count_type(&f->out, CE_TYPE_FEEDBACK), 9);
        for (size_t i = 0; i < f->out.n; i++) {
                const outbox_event *e = &f->out.v[i];
                assert_string_equal(e->ce_type, CE_TYPE_FEEDBACK);
                assert_no_personal_data(e);
                /* Only the fields the contract allows: 1-8, and nothing unknown. */
                Allvarssamtal__V1__PoliceFeedback *fb =
                        allvarssamtal__v1__police_feedback__unpack(NULL, e->len, e->payload);
                assert_non_null(fb);
                assert_int_equal(fb->base.n_unknown_fields, 0);
                allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);
        }
        /* The check can fail: the same search finds the names in a scheduling request. */
        event_list sched = {0};
        scheduling_info info = {.case_id = CASE_ID, .child_given_name = GIVEN, .child_family_name = FAMILY,
                                .name = "scheduling/1"};
        assert_int_equal(events_scheduling(&f->cfg, &info, NOW, &sched), 0);
        assert_non_null(memmem(sched.v[0].payload, sched.v[0].len, FAMILY, strlen(FAMILY)));
        event_list_free(&sched);
}

static void test_deferred_requests_clearance(void **state) {
        fixture *f = *state;
        f->d.outcome = OUTCOME_DEFERRED;
        f->d.reasons = REASON_PRELIMINARY_INVESTIGATION;
        f->d.deadline = 0;
        f->d.deadline_kind = DEADLINE_NONE;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 3);
        assert_int_equal(count_type(&f->out, CE_TYPE_SCHEDULING), 0);
        check_feedback(&f->out, FEEDBACK_ASSESSED, "feedback/ASSESSED", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_DEFERRED);
        check_feedback(&f->out, FEEDBACK_CLEARANCE_REQUESTED, "feedback/CLEARANCE_REQUESTED", 0);
        assert_null(feedback_of(&f->out, FEEDBACK_CONTACT_INFO_REQUESTED));

        /* Deferred for the protective assessment only: nothing to ask the police. */
        event_list_clear(&f->out);
        f->d.reasons = REASON_PROTECTIVE_ASSESSMENT_FIRST;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 2);
        assert_null(feedback_of(&f->out, FEEDBACK_CLEARANCE_REQUESTED));
}

static void test_not_eligible(void **state) {
        fixture *f = *state;
        f->d.outcome = OUTCOME_NOT_ELIGIBLE;
        f->d.reasons = REASON_NO_QUALIFYING_CONCERN;
        f->d.flags = FLAG_CONTACT_MISSING;
        f->d.deadline = 0;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        /* No case is opened: RECEIVED and ASSESSED, no request, no scheduling. */
        assert_int_equal(f->out.n, 2);
        check_feedback(&f->out, FEEDBACK_RECEIVED, "feedback/RECEIVED", 0);
        check_feedback(&f->out, FEEDBACK_ASSESSED, "feedback/ASSESSED",
                       ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE);
}

static void test_statutory_level(void **state) {
        fixture *f = *state;
        f->cfg.feedback_level = FEEDBACK_STATUTORY;
        f->d.outcome = OUTCOME_DEFERRED;
        f->d.reasons = REASON_PRELIMINARY_INVESTIGATION;
        f->d.flags = FLAG_CONTACT_MISSING;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 2);
        check_feedback(&f->out, FEEDBACK_RECEIVED, "feedback/RECEIVED", 0);
        check_feedback(&f->out, FEEDBACK_ASSESSED, "feedback/ASSESSED", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_DEFERRED);

        feedback_ref ref = {.case_id = CASE_ID, .referral_id = "R", .feedback_requested = true};
        for (feedback_status s = FEEDBACK_RECEIVED; s <= FEEDBACK_CANCELLED; s++) {
                bool want = s == FEEDBACK_RECEIVED || s == FEEDBACK_ASSESSED;
                assert_int_equal(events_feedback_wanted(&f->cfg, s, true), want);
                event_list l = {0};
                assert_int_equal(events_feedback(&f->cfg, &ref, s, OUTCOME_ELIGIBLE, 0, "x", NOW, &l), 0);
                assert_int_equal(l.n, want ? 1 : 0);
                event_list_free(&l);
        }
        /* Statutory, not asked for, not always: nothing at all. */
        for (feedback_status s = FEEDBACK_RECEIVED; s <= FEEDBACK_CANCELLED; s++)
                assert_false(events_feedback_wanted(&f->cfg, s, false));
        f->cfg.feedback_always = true;
        assert_true(events_feedback_wanted(&f->cfg, FEEDBACK_RECEIVED, false));
        assert_false(events_feedback_wanted(&f->cfg, FEEDBACK_SCHEDULED, false));
        assert_false(events_feedback_wanted(&f->cfg, FEEDBACK_CONTACT_INFO_REQUESTED, false));
}

static void test_not_requested(void **state) {
        fixture *f = *state;
        f->ref.feedback_requested = false;
        f->d.outcome = OUTCOME_DEFERRED;
        f->d.reasons = REASON_PRELIMINARY_INVESTIGATION;
        f->d.flags = FLAG_CONTACT_MISSING;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        /* No statuses, but the requests: social services need something from the police. */
        assert_int_equal(f->out.n, 2);
        check_feedback(&f->out, FEEDBACK_CONTACT_INFO_REQUESTED, "feedback/CONTACT_INFO_REQUESTED", 0);
        check_feedback(&f->out, FEEDBACK_CLEARANCE_REQUESTED, "feedback/CLEARANCE_REQUESTED", 0);
        for (feedback_status s = FEEDBACK_RECEIVED; s <= FEEDBACK_CANCELLED; s++) {
                bool request = s == FEEDBACK_CONTACT_INFO_REQUESTED || s == FEEDBACK_CLEARANCE_REQUESTED;
                assert_int_equal(events_feedback_wanted(&f->cfg, s, false), request);
                assert_true(events_feedback_wanted(&f->cfg, s, true));
        }
        /* ELIGIBLE, not asked: the scheduling request still goes out. */
        event_list_clear(&f->out);
        f->d.outcome = OUTCOME_ELIGIBLE;
        f->d.reasons = 0;
        f->d.flags = 0;
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 1);
        assert_string_equal(f->out.v[0].ce_type, CE_TYPE_SCHEDULING);

        /* feedback.always: statuses as if asked. */
        f->cfg.feedback_always = true;
        for (feedback_status s = FEEDBACK_RECEIVED; s <= FEEDBACK_CANCELLED; s++)
                assert_true(events_feedback_wanted(&f->cfg, s, false));
        event_list_clear(&f->out);
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 3);
}

static void test_ids_stable_and_distinct(void **state) {
        fixture *f = *state;
        f->d.flags = FLAG_CONTACT_MISSING;
        event_list a = {0}, b = {0};
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW, &a), 0);
        /* Later, another instance: the same ids (and the same bytes but the times). */
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, CASE_ID, NOW + USEC_PER_HOUR, &b), 0);
        assert_int_equal(a.n, b.n);
        for (size_t i = 0; i < a.n; i++) {
                assert_string_equal(a.v[i].event_id, b.v[i].event_id);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(a.v[i].event_id, a.v[j].event_id);
        }
        /* Another case: other ids. */
        event_list c = {0};
        assert_int_equal(events_for_decision(&f->cfg, &f->ref, &f->d, "0c1d7a51-3c0e-5b6e-9d1b-2f7c0a4e8b12", NOW,
                                             &c),
                         0);
        assert_int_equal(c.n, a.n);
        for (size_t i = 0; i < a.n; i++)
                assert_string_not_equal(a.v[i].event_id, c.v[i].event_id);

        /* Names of later statuses make distinct ids within the case. */
        feedback_ref ref = {.case_id = CASE_ID, .referral_id = "R", .feedback_requested = true};
        event_list s = {0};
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_SCHEDULED, 0, T0, "feedback/SCHEDULED/e1", NOW, &s), 0);
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_SCHEDULED, 0, T0, "feedback/SCHEDULED/e2", NOW, &s), 0);
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_SCHEDULED, 0, T0, "feedback/SCHEDULED/e1", NOW, &s), 0);
        assert_int_equal(s.n, 3);
        assert_string_not_equal(s.v[0].event_id, s.v[1].event_id);
        assert_string_equal(s.v[0].event_id, s.v[2].event_id);
        /* Well-formed version 5 UUIDs. */
        assert_int_equal(strlen(s.v[0].event_id), 36);
        assert_int_equal(s.v[0].event_id[14], '5');
        event_list_free(&a);
        event_list_free(&b);
        event_list_free(&c);
        event_list_free(&s);
}

static void test_feedback_scheduled_meeting(void **state) {
        fixture *f = *state;
        feedback_ref ref = {.case_id = CASE_ID, .referral_id = "POL-1", .police_case_number = "K1",
                            .feedback_requested = true};
        usec_t meeting = T0 + 30 * USEC_PER_HOUR;
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_SCHEDULED, OUTCOME_ELIGIBLE, meeting,
                                         "feedback/SCHEDULED/x", NOW, &f->out),
                         0);
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_HELD, OUTCOME_ELIGIBLE, meeting, "feedback/HELD", NOW,
                                         &f->out),
                         0);
        assert_int_equal(f->out.n, 2);
        Allvarssamtal__V1__PoliceFeedback *fb = feedback_of(&f->out, FEEDBACK_SCHEDULED);
        assert_non_null(fb);
        expect_id(fb->event_id, CASE_ID, "feedback/SCHEDULED/x");
        assert_string_equal(fb->referral_id, "POL-1");
        assert_string_equal(fb->police_case_number, "K1");
        assert_non_null(fb->meeting_at);
        assert_int_equal(codec_timestamp_usec(fb->meeting_at), meeting);
        /* The assessment only with ASSESSED. */
        assert_int_equal(fb->assessment, 0);
        allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);
        fb = feedback_of(&f->out, FEEDBACK_HELD);
        assert_non_null(fb);
        assert_null(fb->meeting_at);
        assert_int_equal(fb->assessment, 0);
        allvarssamtal__v1__police_feedback__free_unpacked(fb, NULL);

        /* Not asked for: nothing appended, no error. */
        ref.feedback_requested = false;
        assert_int_equal(events_feedback(&f->cfg, &ref, FEEDBACK_HELD, 0, 0, "feedback/HELD", NOW, &f->out), 0);
        assert_int_equal(f->out.n, 2);
        assert_true(events_feedback(&f->cfg, &ref, 0, 0, 0, "feedback/x", NOW, &f->out) < 0);
        assert_true(events_feedback(&f->cfg, &ref, FEEDBACK_CANCELLED + 1, 0, 0, "feedback/x", NOW, &f->out) < 0);
}

static void test_letter_fallback(void **state) {
        fixture *f = *state;
        Allvarssamtal__V1__Guardian *only_g2[1] = {&f->g2};
        scheduling_info info = {
                .case_id = CASE_ID, .district = "centrum", .deadline = T0 + 24 * USEC_PER_HOUR,
                .deadline_kind = DEADLINE_SUMMONS, .child_given_name = GIVEN, .child_family_name = FAMILY,
                .summon_guardians = true, .guardians = only_g2, .n_guardians = 1, .profile = &f->prof,
                .name = "scheduling/2",
        };
        assert_int_equal(events_scheduling(&f->cfg, &info, NOW, &f->out), 0);
        info.n_guardians = 0;
        assert_int_equal(events_scheduling(&f->cfg, &info, NOW, &f->out), 0);
        /* An adult: nobody is summoned on their behalf, no letter to guardians. */
        info.summon_guardians = false;
        assert_int_equal(events_scheduling(&f->cfg, &info, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 3);
        bool want[3] = {true, true, false};
        for (size_t i = 0; i < 3; i++) {
                Allvarssamtal__V1__SchedulingRequest *sr =
                        allvarssamtal__v1__scheduling_request__unpack(NULL, f->out.v[i].len, f->out.v[i].payload);
                assert_non_null(sr);
                assert_int_equal(sr->letter_fallback, want[i]);
                assert_true(sr->invite_police);
                assert_int_equal(sr->summon_guardians, i < 2);
                assert_int_equal(sr->deadline_kind, ALLVARSSAMTAL__V1__DEADLINE_KIND__DEADLINE_KIND_SUMMONS);
                assert_string_equal(sr->district, "centrum");
                expect_id(sr->event_id, CASE_ID, "scheduling/2");
                allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);
        }
}

static void test_alert(void **state) {
        fixture *f = *state;
        usec_t due = T0 + 48 * USEC_PER_HOUR;
        assert_int_equal(events_alert(&f->cfg, CASE_ID, ALERT_MISSED, due, DEADLINE_CONVERSATION, "nordost",
                                      "SCHEDULED", NOW, &f->out),
                         0);
        assert_int_equal(f->out.n, 1);
        const outbox_event *e = &f->out.v[0];
        assert_string_equal(e->topic, "allvarssamtal.alerts.v1");
        assert_string_equal(e->ce_type, CE_TYPE_ALERT);
        assert_string_equal(e->key, CASE_ID);
        assert_int_equal(e->ce_time, NOW);
        Allvarssamtal__V1__DeadlineAlert *a = allvarssamtal__v1__deadline_alert__unpack(NULL, e->len, e->payload);
        assert_non_null(a);
        char name[64];
        snprintf(name, sizeof name, "alert/MISSED/%lld", (long long)due);
        expect_id(a->event_id, CASE_ID, name);
        assert_string_equal(a->event_id, e->event_id);
        assert_string_equal(a->case_id, CASE_ID);
        assert_int_equal(a->kind, ALLVARSSAMTAL__V1__ALERT_KIND__ALERT_KIND_MISSED);
        assert_int_equal(codec_timestamp_usec(a->raised_at), NOW);
        assert_int_equal(codec_timestamp_usec(a->due_at), due);
        assert_int_equal(a->deadline_kind, ALLVARSSAMTAL__V1__DEADLINE_KIND__DEADLINE_KIND_CONVERSATION);
        assert_string_equal(a->district, "nordost");
        assert_string_equal(a->case_state, "SCHEDULED");
        allvarssamtal__v1__deadline_alert__free_unpacked(a, NULL);

        /* Once per case, kind and due time; raised later: the same id. */
        assert_int_equal(events_alert(&f->cfg, CASE_ID, ALERT_MISSED, due, DEADLINE_CONVERSATION, "nordost",
                                      "SCHEDULED", NOW + USEC_PER_HOUR, &f->out),
                         0);
        assert_int_equal(events_alert(&f->cfg, CASE_ID, ALERT_AT_RISK, due, DEADLINE_CONVERSATION, "nordost",
                                      "ELIGIBLE", NOW, &f->out),
                         0);
        assert_int_equal(events_alert(&f->cfg, CASE_ID, ALERT_MISSED, due + USEC_PER_HOUR, DEADLINE_CONVERSATION,
                                      "nordost", "ELIGIBLE", NOW, &f->out),
                         0);
        assert_int_equal(f->out.n, 4);
        assert_string_equal(f->out.v[0].event_id, f->out.v[1].event_id);
        assert_string_not_equal(f->out.v[0].event_id, f->out.v[2].event_id);
        assert_string_not_equal(f->out.v[0].event_id, f->out.v[3].event_id);
        assert_string_equal(alert_kind_code(ALERT_PROTECTIVE_ASSESSMENT_OVERDUE), "PROTECTIVE_ASSESSMENT_OVERDUE");
        assert_true(events_alert(&f->cfg, CASE_ID, 0, due, DEADLINE_NONE, "", "", NOW, &f->out) < 0);
}

static void test_dead_letter(void **state) {
        fixture *f = *state;
        codec_error err = {.reason = DLR_UNDECODABLE};
        snprintf(err.detail, sizeof err.detail, "not a PoliceReferral: truncated field 6");
        assert_int_equal(events_dead_letter(&f->cfg, "police.referrals.v1", 3, 4711, &err, NULL, NOW, &f->out), 0);
        assert_int_equal(f->out.n, 1);
        const outbox_event *e = &f->out.v[0];
        assert_string_equal(e->topic, "allvarssamtal.deadletter.v1");
        assert_string_equal(e->ce_type, CE_TYPE_DEAD_LETTER);
        assert_string_equal(e->key, "police.referrals.v1/3");
        /* uuid5 in the event namespace (ids.c: 0cba62f0-bee6-45b2-8d4c-97dfdb401a0b). */
        static const uint8_t ns_event[16] = {0x0c, 0xba, 0x62, 0xf0, 0xbe, 0xe6, 0x45, 0xb2,
                                             0x8d, 0x4c, 0x97, 0xdf, 0xdb, 0x40, 0x1a, 0x0b};
        const char *name = "deadletter/police.referrals.v1/3/4711";
        char want[UUID_STR_LEN];
        ids_uuid5(ns_event, name, strlen(name), want);
        assert_string_equal(e->event_id, want);

        Allvarssamtal__V1__DeadLetter *dl = allvarssamtal__v1__dead_letter__unpack(NULL, e->len, e->payload);
        assert_non_null(dl);
        assert_string_equal(dl->event_id, want);
        assert_string_equal(dl->case_id, "");
        assert_int_equal(dl->reason, ALLVARSSAMTAL__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_UNDECODABLE);
        assert_string_equal(dl->detail, "not a PoliceReferral: truncated field 6");
        assert_string_equal(dl->source_topic, "police.referrals.v1");
        assert_int_equal(dl->source_partition, 3);
        assert_int_equal(dl->source_offset, 4711);
        assert_int_equal(codec_timestamp_usec(dl->received_at), NOW);
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);

        /* An outcome for a known case, on a topic with a long name: the key fits. */
        char topic[250];
        memset(topic, 't', 249);
        topic[249] = '\0';
        err.reason = DLR_ILLEGAL_TRANSITION;
        assert_int_equal(events_dead_letter(&f->cfg, topic, 2147483647, 9007199254740993LL, &err, CASE_ID, NOW,
                                            &f->out),
                         0);
        e = &f->out.v[1];
        assert_int_equal(strlen(e->key), 249 + 11);
        assert_int_equal(strncmp(e->key + 249, "/2147483647", 11), 0);
        dl = allvarssamtal__v1__dead_letter__unpack(NULL, e->len, e->payload);
        assert_non_null(dl);
        assert_string_equal(dl->case_id, CASE_ID);
        assert_int_equal(dl->source_offset, 9007199254740993LL);
        assert_int_equal(dl->reason, ALLVARSSAMTAL__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_ILLEGAL_TRANSITION);
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);

        /* Stable, and distinct per offset. */
        assert_int_equal(events_dead_letter(&f->cfg, "police.referrals.v1", 3, 4711, &err, NULL, NOW + 5, &f->out), 0);
        assert_int_equal(events_dead_letter(&f->cfg, "police.referrals.v1", 3, 4712, &err, NULL, NOW, &f->out), 0);
        assert_string_equal(f->out.v[2].event_id, f->out.v[0].event_id);
        assert_string_not_equal(f->out.v[3].event_id, f->out.v[0].event_id);
}

/* What a producer matches its rejected message by: key, ce_id, its own event id. */
static void test_dead_letter_source(void **state) {
        fixture *f = *state;
        const dead_letter_source src = {.topic = "allvarssamtal.outcomes.v1", .partition = 1, .offset = 7,
                                        .key = "PM-2025-000123", .key_len = 14, .ce_id = "ce-77",
                                        .event_id = "polis-1"};
        codec_error err = {.reason = DLR_WRONG_KEY, .detail = "the key is not the case id"};
        assert_int_equal(events_dead_letter_of(&f->cfg, &src, &err, NULL, NOW, &f->out), 0);
        Allvarssamtal__V1__DeadLetter *dl =
                allvarssamtal__v1__dead_letter__unpack(NULL, f->out.v[0].len, f->out.v[0].payload);
        assert_non_null(dl);
        assert_int_equal(dl->reason, ALLVARSSAMTAL__V1__DEAD_LETTER_REASON__DEAD_LETTER_REASON_WRONG_KEY);
        assert_int_equal(dl->source_key.len, 14);
        assert_memory_equal(dl->source_key.data, "PM-2025-000123", 14);
        assert_string_equal(dl->source_ce_id, "ce-77");
        assert_string_equal(dl->source_event_id, "polis-1");
        /* The dead letter's own key stays "<topic>/<partition>". */
        assert_string_equal(f->out.v[0].key, "allvarssamtal.outcomes.v1/1");
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);
}

/* A withdrawal: on the scheduling topic, keyed by the case, its own ce_type, the
 * revision and reason, no personal data; one id per revision. */
static void test_scheduling_withdrawn(void **state) {
        fixture *f = *state;
        assert_int_equal(events_scheduling_withdrawn(&f->cfg, CASE_ID, "hisingen", 4, WITHDRAWAL_CANCELLED, T0, NOW,
                                                     &f->out),
                         0);
        const outbox_event *e = &f->out.v[0];
        assert_string_equal(e->key, CASE_ID);
        assert_string_equal(e->ce_type, "se.allvarssamtal.v1.SchedulingWithdrawn");
        assert_ptr_equal(e->topic, f->cfg.topic_scheduling);
        Allvarssamtal__V1__SchedulingWithdrawn *w =
                allvarssamtal__v1__scheduling_withdrawn__unpack(NULL, e->len, e->payload);
        assert_non_null(w);
        assert_string_equal(w->event_id, e->event_id);
        assert_string_equal(w->case_id, CASE_ID);
        assert_int_equal(w->revision, 4);
        assert_int_equal(w->reason, ALLVARSSAMTAL__V1__WITHDRAWAL_REASON__WITHDRAWAL_REASON_CANCELLED);
        assert_int_equal(codec_timestamp_usec(w->withdrawn_at), T0);
        assert_string_equal(w->district, "hisingen");
        allvarssamtal__v1__scheduling_withdrawn__free_unpacked(w, NULL);
        assert_int_equal(events_scheduling_withdrawn(&f->cfg, CASE_ID, "hisingen", 4, WITHDRAWAL_CANCELLED, T0,
                                                     NOW + 9, &f->out),
                         0);
        assert_int_equal(events_scheduling_withdrawn(&f->cfg, CASE_ID, "hisingen", 5, WITHDRAWAL_HELD, T0, NOW,
                                                     &f->out),
                         0);
        assert_string_equal(f->out.v[1].event_id, f->out.v[0].event_id);
        assert_string_not_equal(f->out.v[2].event_id, f->out.v[0].event_id);
        assert_int_equal(events_scheduling_withdrawn(&f->cfg, CASE_ID, "x", 6, WITHDRAWAL_NONE, T0, NOW, &f->out),
                         -EINVAL);
        assert_string_equal(withdrawal_reason_code(WITHDRAWAL_PROTECTIVE_ASSESSMENT), "PROTECTIVE_ASSESSMENT");
}

static void test_list_clear_keeps_capacity(void **state) {
        fixture *f = *state;
        for (int i = 0; i < 20; i++)
                assert_int_equal(events_alert(&f->cfg, CASE_ID, ALERT_AT_RISK, T0 + i, DEADLINE_CONVERSATION, "x",
                                              "ELIGIBLE", NOW, &f->out),
                                 0);
        assert_int_equal(f->out.n, 20);
        size_t cap = f->out.cap;
        assert_true(cap >= 20);
        event_list_clear(&f->out);
        assert_int_equal(f->out.n, 0);
        assert_int_equal(f->out.cap, cap);
        event_list_free(&f->out);
        assert_null(f->out.v);
        assert_int_equal(f->out.cap, 0);
        event_list_free(NULL);
        event_list_clear(NULL);
        assert_string_equal(feedback_status_code(FEEDBACK_NOT_HELD_IN_TIME), "NOT_HELD_IN_TIME");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_decision_eligible, setup, teardown),
                cmocka_unit_test_setup_teardown(test_feedback_has_no_personal_data, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deferred_requests_clearance, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_eligible, setup, teardown),
                cmocka_unit_test_setup_teardown(test_statutory_level, setup, teardown),
                cmocka_unit_test_setup_teardown(test_not_requested, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ids_stable_and_distinct, setup, teardown),
                cmocka_unit_test_setup_teardown(test_feedback_scheduled_meeting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_letter_fallback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_alert, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_letter, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dead_letter_source, setup, teardown),
                cmocka_unit_test_setup_teardown(test_scheduling_withdrawn, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_clear_keeps_capacity, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
