/* The lifecycle's transaction (outcome_batch_store) against a real PostgreSQL
 * (PGHOST/PGPORT/PGUSER, e.g. from tests/lib/pg.sh): a fresh database per test
 * with the schemas/NNN_name.sql files applied, referrals, decisions and cases set up with SQL,
 * outcome events packed and decoded as the consumer does, and the clock set by
 * passing `now`: deferrals and clearance, contact details, scheduled and held,
 * overrides, illegal transitions, duplicates, stale offsets, statutory
 * feedback. The contract's revisions and withdrawals, dead letters' sources and
 * concurrent overrides: test-outcomes-contract.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "outcomes_fixture.h"

/* ---- tests ---- */

/* docs/domain.md "Decision", step 4: both deferrals pending; the assessment first, then the
 * police's clearance (addressed by their referral id). ELIGIBLE only then,
 * the 48 h counted from the clearance, and the scheduling request goes out. */
static void test_deferral_then_clearance(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-DEFER", .decision = "DEFERRED", .awaiting_assessment = true,
                                     .awaiting_clearance = true, .protective_assessment_due = T0 + H(24),
                                     .feedback_requested = true},
                     id);
        event a, c;
        event_init(&a, EV_ASSESSMENT, "ev-assess-1", id, NULL, T0 + H(5));
        send_one(fx, &a, T0 + H(6), STORE_DECIDED);
        assert_value(fx, "DEFERRED|false|true|<null>|<null>|2",
                     "SELECT state || '|' || awaiting_assessment || '|' || awaiting_clearance || '|' ||"
                     " coalesce(deadline::text, '<null>') || '|' ||"
                     " coalesce(protective_assessment_due::text, '<null>') || '|' || revision"
                     " FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);

        event_init(&c, EV_CLEARED, "ev-clear-1", NULL, "R-DEFER", T0 + H(30) + 7 * USEC_PER_SEC);
        send_one(fx, &c, T0 + H(31), STORE_DECIDED);
        assert_value(fx, "ELIGIBLE|ELIGIBLE|false|false|3",
                     "SELECT state || '|' || outcome || '|' || awaiting_assessment || '|' || awaiting_clearance"
                     " || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        /* Exact: 48 h from the clearance's occurred_at, not from processing. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s'"
                                   " AND deadline = '2025-03-13T14:00:07Z' AND deadline_kind = 'CONVERSATION'"
                                   " AND updated_at = '2025-03-11T15:00:00Z'", id),
                         1);

        Allvarssamtal__V1__SchedulingRequest *sr = scheduling_of(fx, id, "scheduling/ev-clear-1");
        assert_non_null(sr);
        assert_string_equal(sr->case_id, id);
        assert_int_equal(codec_timestamp_usec(sr->deadline), T0 + H(78) + 7 * USEC_PER_SEC);
        assert_int_equal(sr->deadline_kind, DEADLINE_CONVERSATION);
        assert_string_equal(sr->district, "hisingen");
        assert_string_equal(sr->child_given_name, "Kim");
        assert_string_equal(sr->child_family_name, "Testsson");
        assert_true(sr->summon_guardians);
        assert_int_equal(sr->n_guardians, 1);
        assert_string_equal(sr->guardians[0]->phone, "+46701111111");
        assert_false(sr->letter_fallback);
        assert_string_equal(sr->profile, "goteborg-motion-2024");
        assert_int_equal(codec_timestamp_usec(sr->created_at), T0 + H(31));
        allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE topic = '%s' AND key = '%s'",
                               fx->h.cfg->topic_scheduling, id),
                         1);

        /* The audit trail: who, what, when, before and after. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'", id), 2);
        assert_value(fx, "SOCIAL_WORKER|sw-bo|ASSESSMENT_RECORDED|2025-03-10 13:00:00+00",
                     "SELECT actor_kind || '|' || actor_name || '|' || action || '|' || (at AT TIME ZONE 'UTC')::text"
                     " || '+00' FROM allvarsd.audit WHERE case_id = '%s' ORDER BY id LIMIT 1", id);
        assert_value(fx, "POLICE||BECAME_ELIGIBLE|R-DEFER",
                     "SELECT actor_kind || '|' || actor_name || '|' || action || '|' || referral_id"
                     " FROM allvarsd.audit WHERE case_id = '%s' ORDER BY id DESC LIMIT 1", id);
        assert_value(fx, "state=DEFERRED;outcome=DEFERRED;awaiting=clearance",
                     "SELECT before FROM allvarsd.audit WHERE case_id = '%s' ORDER BY id DESC LIMIT 1", id);
        assert_value(fx, "state=ELIGIBLE;outcome=ELIGIBLE;deadline=2025-03-13T14:00:07Z;deadline_kind=CONVERSATION;"
                         "event_id=ev-clear-1;applied_at=2025-03-11T15:00:00Z",
                     "SELECT after FROM allvarsd.audit WHERE case_id = '%s' ORDER BY id DESC LIMIT 1", id);
        assert_value(fx, "", "SELECT detail FROM allvarsd.audit WHERE case_id = '%s' ORDER BY id DESC LIMIT 1", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events WHERE case_id = '%s'"
                                   " AND kind IN ('PROTECTIVE_ASSESSMENT_RECORDED', 'INVESTIGATION_CLEARED')", id),
                         2);
        /* The offsets moved with the data. */
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE consumer_group = '%s'"
                                   " AND topic = '%s' AND partition = 0", GROUP, fx->h.cfg->topic_outcomes),
                         102);
}

/* CONTACT_MISSING: the police supply the guardians; the known one is updated,
 * the new one appended, and the case waiting for its booking gets a new
 * scheduling request that no longer falls back to a letter. */
static void test_contact_requested_then_supplied(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-CONTACT", .deadline = T0 + H(48), .awaiting_contact = true,
                                     .guardian_phone = ""},
                     id);
        event e;
        event_init(&e, EV_CONTACT, "ev-contact-1", NULL, "R-CONTACT", T0 + H(3));
        send_one(fx, &e, T0 + H(3), STORE_DECIDED);

        assert_value(fx, "ELIGIBLE|false|2025-03-12 08:00:00+00",
                     "SELECT state || '|' || awaiting_contact || '|' || (deadline AT TIME ZONE 'UTC')::text || '+00'"
                     " FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts WHERE case_id = '%s'", id), 2);
        assert_value(fx, "Anna Andersson|+46702222222|Testgatan 1, 417 01 Göteborg",
                     "SELECT name || '|' || phone || '|' || postal_address FROM allvarsd.case_contacts"
                     " WHERE case_id = '%s' AND ordinal = 1", id);
        assert_value(fx, "Bo Andersson|+46703333333",
                     "SELECT name || '|' || phone FROM allvarsd.case_contacts WHERE case_id = '%s' AND ordinal = 2",
                     id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts WHERE case_id = '%s'"
                                   " AND supplied_at = '2025-03-10T11:00:00Z'", id),
                         2);

        Allvarssamtal__V1__SchedulingRequest *sr = scheduling_of(fx, id, "scheduling/ev-contact-1");
        assert_non_null(sr);
        assert_int_equal(sr->n_guardians, 2);
        assert_string_equal(sr->guardians[0]->name, "Anna Andersson");
        assert_string_equal(sr->guardians[0]->phone, "+46702222222");
        assert_string_equal(sr->guardians[1]->name, "Bo Andersson");
        assert_false(sr->letter_fallback);
        assert_int_equal(codec_timestamp_usec(sr->deadline), T0 + H(48));  /* the deadline stands */
        allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);
        /* No feedback for contact details (feedback was not asked either). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_FEEDBACK), 0);
        assert_value(fx, "POLICE|CONTACT_SUPPLIED",
                     "SELECT actor_kind || '|' || action FROM allvarsd.audit WHERE case_id = '%s'", id);
        /* Personal data stays out of the audit. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE before || after || detail"
                                   " ~ '(Anna|Bo|4670)'"),
                         0);

        /* A scheduled case takes new details without a new request. */
        char id2[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-CONTACT-2", .state = "SCHEDULED", .deadline = T0 + H(48),
                                     .awaiting_contact = true, .guardian_phone = ""},
                     id2);
        event e2;
        event_init(&e2, EV_CONTACT, "ev-contact-2", id2, NULL, T0 + H(4));
        send_one(fx, &e2, T0 + H(4), STORE_DECIDED);
        assert_null(scheduling_of(fx, id2, "scheduling/ev-contact-2"));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts WHERE case_id = '%s'", id2), 2);
}

/* Scheduled (the police hear the meeting time), rescheduled, then held. */
static void test_scheduled_then_held(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-HELD", .deadline = T0 + H(48), .feedback_requested = true}, id);
        harness_exec_ok(fx->h.pg, "LISTEN allvarsd_outbox");
        event s1, s2, h;
        event_init(&s1, EV_SCHEDULED, "ev-sched-1", id, NULL, T0 + H(2));
        event_init(&s2, EV_SCHEDULED, "ev-sched-2", id, NULL, T0 + H(3));
        codec_timestamp_set(&s2.scheduled, T0 + H(40));
        s2.sched.police_attending = false;
        event *both[] = {&s1, &s2};
        sent out;
        assert_int_equal(send_events(fx, both, 2, T0 + H(3), &out), 0);
        assert_int_equal(out.m[0].status, STORE_DECIDED);
        assert_int_equal(out.m[1].status, STORE_DECIDED);
        assert_string_equal(out.m[0].case_id, id);
        assert_int_equal(out.m[0].outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(out.res.decided, 2);
        assert_int_equal(out.res.events, 2);
        assert_value(fx, "SCHEDULED|2025-03-12 00:00:00+00|false|3",
                     "SELECT state || '|' || (scheduled_at AT TIME ZONE 'UTC')::text || '+00|' || police_attending"
                     " || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);

        Allvarssamtal__V1__PoliceFeedback *f = feedback_of(fx, id, "feedback/SCHEDULED/ev-sched-1");
        assert_non_null(f);
        assert_int_equal(f->status, FEEDBACK_SCHEDULED);
        assert_int_equal(codec_timestamp_usec(f->meeting_at), T0 + H(22));
        assert_int_equal(codec_timestamp_usec(f->status_at), T0 + H(2));
        assert_string_equal(f->referral_id, "R-HELD");
        assert_string_equal(f->police_case_number, "PC-R-HELD");
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);
        f = feedback_of(fx, id, "feedback/SCHEDULED/ev-sched-2");
        assert_non_null(f);
        assert_int_equal(codec_timestamp_usec(f->meeting_at), T0 + H(40));
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);

        /* The relay is woken at commit. */
        assert_int_equal(PQconsumeInput(fx->h.pg), 1);
        PGnotify *nt = PQnotifies(fx->h.pg);
        assert_non_null(nt);
        assert_string_equal(nt->relname, "allvarsd_outbox");
        PQfreemem(nt);

        event_init(&h, EV_HELD, "ev-held-1", id, NULL, T0 + H(40) + H(1));
        send_one(fx, &h, T0 + H(42), STORE_DECIDED);
        assert_value(fx, "HELD|true|2025-03-12 01:00:00+00|2025-03-12 01:00:00+00",
                     "SELECT state || '|' || police_attending || '|' || (held_at AT TIME ZONE 'UTC')::text || '+00|'"
                     " || (closed_at AT TIME ZONE 'UTC')::text || '+00' FROM allvarsd.cases WHERE case_id = '%s'",
                     id);
        /* The follow-up report's row, written with the event (schemas/011_referral_stats.sql). */
        assert_value(fx, "HELD|2025-03-12 01:00:00+00|true|true|true",
                     "SELECT state || '|' || (held_at AT TIME ZONE 'UTC')::text || '+00|' || (facts & 524288 <> 0)"
                     " || '|' || (facts & 1024 <> 0) || '|' || (facts & 4096 <> 0)"     /* held, in time, police */
                     " FROM allvarsd.referral_stats WHERE case_id = '%s'",
                     id);
        f = feedback_of(fx, id, "feedback/HELD/ev-held-1");
        assert_non_null(f);
        assert_int_equal(f->status, FEEDBACK_HELD);
        assert_null(f->meeting_at);
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'", id), 3);

        /* Closed: nothing more applies; it is dead-lettered with the state named. */
        event c;
        event_init(&c, EV_CANCELLED, "ev-cancel-late", id, NULL, T0 + H(50));
        send_one(fx, &c, T0 + H(50), STORE_DEAD_LETTERED);
        assert_value(fx, "ILLEGAL_TRANSITION|CANCELLED not allowed in state HELD",
                     "SELECT reason || '|' || detail FROM allvarsd.dead_letters");
}

/* A NOT_ELIGIBLE referral has no case; a social worker's override opens one
 * from the referral's row and decision. The reason is audited only. */
static void test_override_opens_case(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-NOT", .decision = "NOT_ELIGIBLE", .feedback_requested = true,
                                     .age = 9},
                     id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 0);

        /* Only a social worker may. */
        event bad;
        event_init(&bad, EV_OVERRIDE, "ev-ov-police", NULL, "R-NOT", T0 + H(5));
        bad.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
        send_one(fx, &bad, T0 + H(5), STORE_DEAD_LETTERED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 0);

        event ov;
        event_init(&ov, EV_OVERRIDE, "ev-ov-1", id, "R-NOT", T0 + H(6));
        sent out;
        event *evs[] = {&ov};
        assert_int_equal(send_events(fx, evs, 1, T0 + H(7), &out), 0);
        assert_int_equal(out.m[0].status, STORE_DECIDED);
        assert_int_equal(out.res.cases_opened, 1);
        assert_value(fx, "ELIGIBLE|ELIGIBLE|R-NOT|hisingen|goteborg-motion-2024|172800|true|1",
                     "SELECT state || '|' || outcome || '|' || referral_id || '|' || district || '|' || profile_name"
                     " || '|' || limit_seconds || '|' || feedback_requested || '|' || revision"
                     " FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s'"
                                   " AND deadline = '2025-03-12T14:00:00Z' AND created_at = '2025-03-10T15:00:00Z'", id),
                         1);
        /* The referral's guardian came along from its payload. */
        assert_value(fx, "1|Anna Andersson|+46701111111",
                     "SELECT ordinal || '|' || name || '|' || phone FROM allvarsd.case_contacts WHERE case_id = '%s'",
                     id);
        assert_value(fx, "SOCIAL_WORKER|sw-anna|OVERRIDDEN|Familjen har själv bett om samtalet",
                     "SELECT actor_kind || '|' || actor_name || '|' || action || '|' || detail FROM allvarsd.audit"
                     " WHERE case_id = '%s'", id);
        assert_value(fx, "state=NONE;outcome=NOT_ELIGIBLE",
                     "SELECT before FROM allvarsd.audit WHERE case_id = '%s'", id);

        Allvarssamtal__V1__PoliceFeedback *f = feedback_of(fx, id, "feedback/ASSESSED/ev-ov-1");
        assert_non_null(f);
        assert_int_equal(f->status, FEEDBACK_ASSESSED);
        assert_int_equal(f->assessment, OUTCOME_ELIGIBLE);
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);
        /* Nothing of the reason leaves the database. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE position('Familjen'::bytea in payload) > 0"),
                         0);
        Allvarssamtal__V1__SchedulingRequest *sr = scheduling_of(fx, id, "scheduling/ev-ov-1");
        assert_non_null(sr);
        assert_int_equal(codec_timestamp_usec(sr->deadline), T0 + H(54));
        assert_int_equal(sr->n_guardians, 1);
        assert_true(sr->summon_guardians);
        allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);

        /* A second override works on the case now open: to MANUAL_REVIEW, then NOT_ELIGIBLE closes it. */
        event ov2, ov3;
        event_init(&ov2, EV_OVERRIDE, "ev-ov-2", id, NULL, T0 + H(8));
        ov2.override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_MANUAL_REVIEW;
        event_init(&ov3, EV_OVERRIDE, "ev-ov-3", id, NULL, T0 + H(9));
        ov3.override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        event *two[] = {&ov2, &ov3};
        assert_int_equal(send_events(fx, two, 2, T0 + H(9), &out), 0);
        assert_int_equal(out.res.cases_opened, 0);
        assert_int_equal(out.res.decided, 2);
        assert_value(fx, "NOT_ELIGIBLE|NOT_ELIGIBLE|2025-03-10 17:00:00+00|3",
                     "SELECT state || '|' || outcome || '|' || (closed_at AT TIME ZONE 'UTC')::text || '+00|'"
                     " || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND key = '%s'",
                               CE_TYPE_FEEDBACK, id),
                         3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_SCHEDULING),
                         1);
}

/* An illegal transition and an unknown case are dead-lettered with their
 * reasons; the next event of the same batch still applies. */
static void test_illegal_dead_lettered_next_applies(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-ILLEGAL", .decision = "DEFERRED", .awaiting_assessment = true,
                                     .awaiting_clearance = true, .protective_assessment_due = T0 + H(24)},
                     id);
        event held, unknown, bad_id, assess;
        event_init(&held, EV_HELD, "ev-held-early", id, NULL, T0 + H(2));
        event_init(&unknown, EV_CLEARED, "ev-unknown", NULL, "R-NOBODY", T0 + H(2));
        event_init(&bad_id, EV_CANCELLED, "ev-bad-id", "not-a-uuid", NULL, T0 + H(2));
        event_init(&assess, EV_ASSESSMENT, "ev-assess", id, NULL, T0 + H(3));
        event *evs[] = {&held, &unknown, &bad_id, &assess, NULL};
        const char *raw[] = {NULL, NULL, NULL, NULL, "\xff\xff garbage"};
        sent out;
        assert_int_equal(send_raw(fx, evs, raw, 5, T0 + H(3), fx->stored_next, &out), 0);

        assert_int_equal(out.m[0].status, STORE_DEAD_LETTERED);
        assert_int_equal(out.m[0].error->reason, DLR_ILLEGAL_TRANSITION);
        assert_string_equal(out.m[0].error->detail, "CONVERSATION_HELD not allowed in state DEFERRED");
        assert_int_equal(out.m[1].status, STORE_DEAD_LETTERED);
        assert_int_equal(out.m[1].error->reason, DLR_UNKNOWN_CASE);
        assert_int_equal(out.m[2].status, STORE_DEAD_LETTERED);
        assert_int_equal(out.m[2].error->reason, DLR_UNKNOWN_CASE);
        assert_int_equal(out.m[3].status, STORE_DECIDED);
        assert_int_equal(out.m[4].status, STORE_DEAD_LETTERED);
        assert_int_equal(out.m[4].error->reason, DLR_UNDECODABLE);
        assert_int_equal(out.res.decided, 1);
        assert_int_equal(out.res.dead_lettered, 4);

        assert_value(fx, "DEFERRED|false|DEFERRED",
                     "SELECT state || '|' || awaiting_assessment || '|' || outcome FROM allvarsd.cases"
                     " WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 4);
        assert_value(fx, "100|ILLEGAL_TRANSITION|CONVERSATION_HELD not allowed in state DEFERRED",
                     "SELECT source_offset || '|' || reason || '|' || detail FROM allvarsd.dead_letters"
                     " WHERE source_offset = 100");
        assert_value(fx, "UNKNOWN_CASE", "SELECT reason FROM allvarsd.dead_letters WHERE source_offset = 101");
        assert_value(fx, "UNDECODABLE", "SELECT reason FROM allvarsd.dead_letters WHERE source_offset = 104");
        /* The raw payload is kept with the dead letter, for a replay. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE payload IS NOT NULL"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND topic = '%s'",
                               CE_TYPE_DEAD_LETTER, fx->h.cfg->topic_dead_letter),
                         4);
        /* Rejected events are not recorded as applied: a replay after a fix may apply them. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events"), 1);
        assert_value(fx, "ev-assess", "SELECT event_id FROM allvarsd.outcome_events");

        /* The DeadLetter event names the case for a known case. */
        char dl_id[UUID_STR_LEN], name[256];
        snprintf(name, sizeof name, "%s/0/100", fx->h.cfg->topic_outcomes);
        ids_event_id("deadletter", name, dl_id);
        size_t n = 0;
        uint8_t *buf = outbox_payload(fx, dl_id, &n);
        assert_non_null(buf);
        Allvarssamtal__V1__DeadLetter *dl = allvarssamtal__v1__dead_letter__unpack(NULL, n, buf);
        free(buf);
        assert_non_null(dl);
        assert_string_equal(dl->case_id, id);
        assert_int_equal(dl->reason, DLR_ILLEGAL_TRANSITION);
        assert_int_equal(dl->source_offset, 100);
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);

        /* The partition flowed on. */
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets"), 105);

        /* Offsets reset by hand once the events were delivered (moved to
         * outbox_sent): the same offsets make the same DeadLetter events, which
         * are neither written nor published again; ev-assess is a duplicate. */
        harness_exec_ok(fx->h.pg, HARNESS_SQL_DELIVER_ALL);
        long long delivered = count(fx, "SELECT count(*) FROM allvarsd.outbox_sent");
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent WHERE ce_type = '%s'",
                               CE_TYPE_DEAD_LETTER),
                         4);
        fx->next_offset = 100;
        assert_int_equal(send_raw(fx, evs, raw, 5, T0 + H(4), 105, &out), 0);
        assert_int_equal(out.res.dead_lettered, 4);
        assert_int_equal(out.res.duplicates, 1);
        assert_int_equal(out.res.events, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent"), delivered);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 4);
}

/* A repeated event id is applied once: in one batch and in a later one. */
static void test_duplicate_event_id(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-DUP", .deadline = T0 + H(48), .feedback_requested = true}, id);
        event s, again;
        event_init(&s, EV_SCHEDULED, "ev-dup", id, NULL, T0 + H(2));
        event_init(&again, EV_SCHEDULED, "ev-dup", id, NULL, T0 + H(2));
        codec_timestamp_set(&again.scheduled, T0 + H(30));      /* what it says does not matter */
        event *evs[] = {&s, &again};
        sent out;
        assert_int_equal(send_events(fx, evs, 2, T0 + H(2), &out), 0);
        assert_int_equal(out.m[0].status, STORE_DECIDED);
        assert_int_equal(out.m[1].status, STORE_DUPLICATE);
        assert_string_equal(out.m[1].case_id, id);
        assert_int_equal(out.res.duplicates, 1);

        /* Also after a held conversation, where it would be illegal: a duplicate, not a dead letter. */
        event h;
        event_init(&h, EV_HELD, "ev-held", id, NULL, T0 + H(23));
        send_one(fx, &h, T0 + H(23), STORE_DECIDED);
        send_one(fx, &again, T0 + H(24), STORE_DUPLICATE);

        assert_value(fx, "HELD|3", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s'"
                                   " AND scheduled_at = '2025-03-11T06:00:00Z'", id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 2);
        /* Feedback SCHEDULED and HELD, and the scheduling request withdrawn (HELD). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_WITHDRAWN), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 0);
}

/* A stale offset (another consumer moved the partition) writes nothing at all. */
static void test_stale_offset(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-STALE", .deadline = T0 + H(48), .feedback_requested = true},
                     id);
        event s1;
        event_init(&s1, EV_SCHEDULED, "ev-s1", id, NULL, T0 + H(2));
        send_one(fx, &s1, T0 + H(2), STORE_DECIDED);
        assert_int_equal(fx->stored_next, 101);

        long long before_outbox = count(fx, "SELECT count(*) FROM allvarsd.outbox");
        event h, bad;
        event_init(&h, EV_HELD, "ev-h1", id, NULL, T0 + H(23));
        event_init(&bad, EV_DECLINED, "ev-bad", NULL, "R-NOBODY", T0 + H(23));
        event *evs[] = {&h, &bad};
        sent out;
        /* As if the database had no position for the partition. */
        assert_int_equal(send_raw(fx, evs, NULL, 2, T0 + H(23), -1, &out), -ESTALE);
        /* As if we were behind. */
        assert_int_equal(send_raw(fx, evs, NULL, 2, T0 + H(23), 50, &out), -ESTALE);
        assert_non_null(store_last_error(fx->h.st));

        assert_value(fx, "SCHEDULED|2", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outcome_events"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), before_outbox);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 0);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets"), 101);

        /* With the right position the same batch applies. */
        assert_int_equal(send_events(fx, evs, 2, T0 + H(23), &out), 0);
        assert_int_equal(out.m[0].status, STORE_DECIDED);
        assert_int_equal(out.m[1].status, STORE_DEAD_LETTERED);
        assert_value(fx, "HELD|3", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets"), 103);
}

/* At the statutory level the police hear ASSESSED only (docs/domain.md "Feedback to the police"). */
static void test_statutory_feedback(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-STAT", .deadline = T0 + H(48), .feedback_requested = true}, id);
        event s, ov;
        event_init(&s, EV_SCHEDULED, "ev-stat-s", id, NULL, T0 + H(2));
        event_init(&ov, EV_OVERRIDE, "ev-stat-ov", id, NULL, T0 + H(3));
        ov.override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_DEFERRED;
        event *evs[] = {&s, &ov};
        sent out;
        assert_int_equal(send_events(fx, evs, 2, T0 + H(3), &out), 0);
        assert_null(feedback_of(fx, id, "feedback/SCHEDULED/ev-stat-s"));
        Allvarssamtal__V1__PoliceFeedback *f = feedback_of(fx, id, "feedback/ASSESSED/ev-stat-ov");
        assert_non_null(f);
        assert_int_equal(f->assessment, OUTCOME_DEFERRED);
        allvarssamtal__v1__police_feedback__free_unpacked(f, NULL);
        assert_value(fx, "DEFERRED|DEFERRED|<null>|<null>",
                     "SELECT state || '|' || outcome || '|' || coalesce(deadline::text, '<null>') || '|'"
                     " || coalesce(scheduled_at::text, '<null>') FROM allvarsd.cases WHERE case_id = '%s'", id);
}

/* Two instances apply overrides of one NOT_ELIGIBLE referral at the same
 * moment (each on its own partition): the referral lock makes one open the
 * case and the other override the case it finds; neither fails. */

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_deferral_then_clearance, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_contact_requested_then_supplied, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_scheduled_then_held, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_override_opens_case, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_illegal_dead_lettered_next_applies, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_duplicate_event_id, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_stale_offset, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_statutory_feedback, setup_statutory, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
