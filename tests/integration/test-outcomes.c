/* The lifecycle's transaction (outcome_batch_store) against a real PostgreSQL
 * (PGHOST/PGPORT/PGUSER, e.g. from tests/lib/pg.sh): a fresh database per test
 * with the schemas/NNN_name.sql files applied, referrals, decisions and cases set up with SQL,
 * outcome events packed and decoded as the consumer does, and the clock set by
 * passing `now`. */
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
#include <unistd.h>

#include <libpq-fe.h>

#include "allvarssamtal/v1/dead_letter.pb-c.h"
#include "allvarssamtal/v1/feedback.pb-c.h"
#include "allvarssamtal/v1/scheduling.pb-c.h"
#include "codec.h"
#include "config.h"
#include "events.h"
#include "harness.h"
#include "header_blob.h"
#include "ids.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "store.h"

#define T0 ((usec_t)1741593600 * USEC_PER_SEC)      /* 2025-03-10T08:00:00Z, reported_at */
#define H(n) ((usec_t)(n) * USEC_PER_HOUR)
#define GROUP "allvarsd"

/* ---- the database of one test (tests/lib/harness.h) ---- */

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        int64_t stored_next;            /* partition 0's position as the consumer knows it; -1: none */
        int64_t next_offset;            /* the offset of the next message */
        unsigned referral_offset;
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

#define count(fx, ...) harness_count((fx)->h.pg, __VA_ARGS__)
#define TS(p) HARNESS_SQL_TS(p)

#define assert_value(fx, want, ...)                                              \
        do {                                                                     \
                char v_[1024];                                                   \
                harness_value((fx)->h.pg, v_, sizeof v_, __VA_ARGS__);           \
                assert_string_equal(v_, (want));                                 \
        } while (0)

static int fixture_setup(void **state, const char *extra_config) {
        if (harness_store_setup(state, sizeof(fixture), "test-outcomes", extra_config) < 0)
                return -1;
        fixture *fx = *state;
        fx->stored_next = -1;
        fx->next_offset = 100;
        return 0;
}

static int setup(void **state) {
        return fixture_setup(state, "feedback.always = false\n");
}

static int setup_statutory(void **state) {
        return fixture_setup(state, "feedback.always = false\nfeedback.level = statutory\n");
}

/* ---- queries ---- */

/* The payload of the outbox row with this event id (binary result: raw bytes); NULL when none. */
static uint8_t *outbox_payload(fixture *fx, const char *event_id, size_t *ret_len) {
        const char *p[] = {event_id};
        PGresult *r = PQexecParams(fx->h.pg, "SELECT payload FROM allvarsd.outbox WHERE event_id = $1::uuid", 1, NULL,
                                   p, NULL, NULL, 1);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        uint8_t *buf = NULL;
        if (PQntuples(r) == 1) {
                *ret_len = (size_t)PQgetlength(r, 0, 0);
                buf = malloc(*ret_len + 1);
                assert_non_null(buf);
                memcpy(buf, PQgetvalue(r, 0, 0), *ret_len);
        }
        PQclear(r);
        return buf;
}

static Allvarssamtal__V1__PoliceFeedback *feedback_of(fixture *fx, const char *case_id, const char *name) {
        char id[UUID_STR_LEN];
        ids_event_id(case_id, name, id);
        size_t n = 0;
        uint8_t *buf = outbox_payload(fx, id, &n);
        if (!buf)
                return NULL;
        Allvarssamtal__V1__PoliceFeedback *f = allvarssamtal__v1__police_feedback__unpack(NULL, n, buf);
        free(buf);
        assert_non_null(f);
        assert_string_equal(f->event_id, id);
        return f;
}

static Allvarssamtal__V1__SchedulingRequest *scheduling_of(fixture *fx, const char *case_id, const char *name) {
        char id[UUID_STR_LEN];
        ids_event_id(case_id, name, id);
        size_t n = 0;
        uint8_t *buf = outbox_payload(fx, id, &n);
        if (!buf)
                return NULL;
        Allvarssamtal__V1__SchedulingRequest *s = allvarssamtal__v1__scheduling_request__unpack(NULL, n, buf);
        free(buf);
        assert_non_null(s);
        return s;
}

/* ---- referrals, decisions and cases ---- */

typedef struct ref_spec {
        const char *referral_id;
        const char *decision;           /* default ELIGIBLE */
        const char *state;              /* the case's state; NULL: as the decision (none for NOT_ELIGIBLE) */
        usec_t deadline;                /* the case's and decision's; 0: NULL */
        usec_t protective_assessment_due;
        bool awaiting_assessment, awaiting_clearance, awaiting_contact;
        bool feedback_requested;
        int age;                        /* 0: 14 */
        const char *guardian_phone;     /* the referral's one guardian's phone ("" none) */
} ref_spec;

/* A referral as the referral batch stores it: the row, its personal row with
 * the payload, its decision, and (unless NOT_ELIGIBLE) its case and contacts. */
static void add_referral(fixture *fx, const ref_spec *rs, char ret[static UUID_STR_LEN]) {
        char case_id[UUID_STR_LEN];
        ids_case_id(rs->referral_id, case_id);
        if (ret)
                memcpy(ret, case_id, UUID_STR_LEN);
        const char *dec = rs->decision ? rs->decision : "ELIGIBLE";
        const char *phone = rs->guardian_phone ? rs->guardian_phone : "+46701111111";

        /* The payload: what the police sent. */
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        Allvarssamtal__V1__Guardian g = ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        Allvarssamtal__V1__Guardian *gs[] = {&g};
        Google__Protobuf__Timestamp reported = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        codec_timestamp_set(&reported, T0);
        r.referral_id = (char *)rs->referral_id;
        r.reported_at = &reported;
        r.district = "hisingen";
        subject.given_name = "Kim";
        subject.family_name = "Testsson";
        subject.birth_date = "2011-01-01";
        r.subject = &subject;
        g.name = "Anna Andersson";
        g.phone = (char *)phone;
        g.postal_address = "Testgatan 1, 417 01 Göteborg";
        r.guardians = gs;
        r.n_guardians = 1;
        r.feedback_requested = rs->feedback_requested;
        r.reporting_unit = "Polisregion Väst";
        uint8_t *payload = NULL;
        size_t plen = codec_pack(&r.base, &payload);
        assert_non_null(payload);

        char off[16], reported_s[24];
        snprintf(off, sizeof off, "%u", fx->referral_offset++);
        const char *p_ref[] = {rs->referral_id, case_id, harness_usec_param(reported_s, T0),
                               rs->feedback_requested ? "true" : "false", off};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.referrals (referral_id, case_id, marks, district, reported_at,"
                " feedback_requested, police_case_number, reporting_unit, source_topic, source_partition,"
                " source_offset, received_at)"
                " VALUES ($1, $2, 4, 'hisingen', " TS("$3") ", $4, 'PC-' || $1, 'Polisregion Väst',"
                " 'police.referrals.v1', 0, $5, " TS("$3") ")",
                5, p_ref, NULL, NULL);

        const char *p_pers[] = {rs->referral_id, (const char *)payload};
        const int l_pers[] = {0, (int)plen};
        const int f_pers[] = {0, 1};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.referral_personal (referral_id, identity_number, birth_date,"
                " given_name, family_name, narrative, payload)"
                " VALUES ($1, '', '2011-01-01', 'Kim', 'Testsson', 'berättelse', $2)",
                2, p_pers, l_pers, f_pers);
        free(payload);

        char age[16], deadline[24], pad[24];
        snprintf(age, sizeof age, "%d", rs->age ? rs->age : 14);
        bool eligible = strcmp(dec, "ELIGIBLE") == 0;
        const char *p_dec[] = {rs->referral_id, dec, rs->awaiting_contact ? "CONTACT_MISSING" : "", age,
                               eligible ? harness_usec_param(deadline, rs->deadline) : NULL,
                               eligible ? "CONVERSATION" : NULL, harness_usec_param(pad, rs->protective_assessment_due),
                               harness_usec_param(reported_s, T0)};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, age, deadline,"
                " deadline_kind, protective_assessment_due, profile_name, profile_version, profile_params,"
                " prior_referrals, prior_qualifying, decided_at)"
                " VALUES ($1, $2, '', $3, $4::int, " TS("$5") ", $6, " TS("$7") ", 'goteborg-motion-2024', 1,"
                " '', 0, 0, " TS("$8") ")",
                8, p_dec, NULL, NULL);

        const char *state = rs->state ? rs->state : (strcmp(dec, "NOT_ELIGIBLE") == 0 ? NULL : dec);
        if (!state)
                return;
        const char *p_case[] = {case_id,
                                rs->referral_id,
                                state,
                                dec,
                                harness_usec_param(deadline, rs->deadline),
                                rs->deadline ? "CONVERSATION" : NULL,
                                harness_usec_param(pad, rs->protective_assessment_due),
                                rs->awaiting_assessment ? "true" : "false",
                                rs->awaiting_clearance ? "true" : "false",
                                rs->awaiting_contact ? "true" : "false",
                                rs->feedback_requested ? "true" : "false",
                                harness_usec_param(reported_s, T0)};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
                " limit_seconds, deadline, deadline_kind, protective_assessment_due, awaiting_assessment,"
                " awaiting_clearance, awaiting_contact, feedback_requested, created_at, updated_at)"
                " VALUES ($1, $2, 'hisingen', $3, $4, 'goteborg-motion-2024', 172800, " TS("$5") ", $6,"
                " " TS("$7") ", $8, $9, $10, $11, " TS("$12") ", " TS("$12") ")",
                12, p_case, NULL, NULL);
        const char *p_con[] = {case_id, phone, harness_usec_param(reported_s, T0)};
        harness_exec_params_ok(fx->h.pg,
                "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, postal_address,"
                " supplied_at) VALUES ($1, 1, 'Anna Andersson', $2, 'Testgatan 1, 417 01 Göteborg',"
                " " TS("$3") ")",
                3, p_con, NULL, NULL);
}

/* ---- outcome events ---- */

typedef struct event {
        CaseOutcome ev;
        Allvarssamtal__V1__Actor actor;
        Google__Protobuf__Timestamp occurred, scheduled;
        Allvarssamtal__V1__ConversationScheduled sched;
        Allvarssamtal__V1__ProtectiveAssessmentRecorded assessment;
        Allvarssamtal__V1__InvestigationCleared cleared;
        Allvarssamtal__V1__ConversationHeld held;
        Allvarssamtal__V1__FamilyDeclined declined;
        Allvarssamtal__V1__CaseCancelled cancelled;
        Allvarssamtal__V1__ContactDetailsSupplied contact;
        Allvarssamtal__V1__Guardian guardians[2];
        Allvarssamtal__V1__Guardian *gp[2];
        Allvarssamtal__V1__DecisionOverride override;
} event;

typedef enum ev_kind { EV_SCHEDULED, EV_ASSESSMENT, EV_CLEARED, EV_HELD, EV_DECLINED, EV_CANCELLED, EV_CONTACT,
                       EV_OVERRIDE } ev_kind;

/* An event for the case (case_id) or, when case_id is NULL, the police's referral_id. */
static void event_init(event *e, ev_kind k, const char *event_id, const char *case_id, const char *referral_id,
                       usec_t at) {
        memset(e, 0, sizeof *e);
        allvarssamtal__v1__case_outcome__init(&e->ev);
        allvarssamtal__v1__actor__init(&e->actor);
        google__protobuf__timestamp__init(&e->occurred);
        google__protobuf__timestamp__init(&e->scheduled);
        e->ev.event_id = (char *)event_id;
        e->ev.case_id = (char *)(case_id ? case_id : "");
        e->ev.referral_id = (char *)(referral_id ? referral_id : "");
        codec_timestamp_set(&e->occurred, at);
        e->ev.occurred_at = &e->occurred;
        e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        e->actor.name = "bokning";
        e->ev.actor = &e->actor;
        switch (k) {
        case EV_SCHEDULED:
                allvarssamtal__v1__conversation_scheduled__init(&e->sched);
                codec_timestamp_set(&e->scheduled, at + H(20));
                e->sched.scheduled_at = &e->scheduled;
                e->sched.police_attending = true;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
                e->ev.conversation_scheduled = &e->sched;
                break;
        case EV_ASSESSMENT:
                allvarssamtal__v1__protective_assessment_recorded__init(&e->assessment);
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
                e->actor.name = "sw-bo";
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED;
                e->ev.protective_assessment_recorded = &e->assessment;
                break;
        case EV_CLEARED:
                allvarssamtal__v1__investigation_cleared__init(&e->cleared);
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
                e->actor.name = "";
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED;
                e->ev.investigation_cleared = &e->cleared;
                break;
        case EV_HELD:
                allvarssamtal__v1__conversation_held__init(&e->held);
                e->held.police_attended = true;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
                e->ev.conversation_held = &e->held;
                break;
        case EV_DECLINED:
                allvarssamtal__v1__family_declined__init(&e->declined);
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_FAMILY_DECLINED;
                e->ev.family_declined = &e->declined;
                break;
        case EV_CANCELLED:
                allvarssamtal__v1__case_cancelled__init(&e->cancelled);
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
                e->ev.cancelled = &e->cancelled;
                break;
        case EV_CONTACT:
                allvarssamtal__v1__contact_details_supplied__init(&e->contact);
                for (size_t i = 0; i < 2; i++) {
                        allvarssamtal__v1__guardian__init(&e->guardians[i]);
                        e->gp[i] = &e->guardians[i];
                }
                /* The known guardian, named a little differently, now with a phone; and a new one. */
                e->guardians[0].name = " anna andersson ";
                e->guardians[0].phone = "+46702222222";
                e->guardians[1].name = "Bo Andersson";
                e->guardians[1].phone = "+46703333333";
                e->contact.guardians = e->gp;
                e->contact.n_guardians = 2;
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED;
                e->ev.contact_details_supplied = &e->contact;
                break;
        case EV_OVERRIDE:
                allvarssamtal__v1__decision_override__init(&e->override);
                e->override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE;
                e->override.reason = "Familjen har själv bett om samtalet";
                e->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
                e->actor.name = "sw-anna";
                e->ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
                e->ev.override = &e->override;
                break;
        }
}

#define MAX_BATCH 8

typedef struct sent {
        store_message m[MAX_BATCH];
        store_batch_result res;
        int ret;
} sent;

/* Pack, decode (as the consumer does) and store a batch of events on partition 0
 * at the next offsets. A raw message instead of an event: raw[i] != NULL. */
static int send_raw(fixture *fx, event *const *evs, const char *const *raw, size_t n, usec_t now,
                    int64_t expected_next, sent *out) {
        assert_true(n <= MAX_BATCH);
        memset(out, 0, sizeof *out);
        uint8_t *bufs[MAX_BATCH] = {0};
        codec_outcome *dec[MAX_BATCH] = {0};
        codec_error errs[MAX_BATCH];
        for (size_t i = 0; i < n; i++) {
                size_t len;
                if (raw && raw[i]) {
                        len = strlen(raw[i]);
                        bufs[i] = (uint8_t *)strdup(raw[i]);
                } else {
                        len = codec_pack(&evs[i]->ev.base, &bufs[i]);
                }
                assert_non_null(bufs[i]);
                store_message *m = &out->m[i];
                m->topic = fx->h.cfg->topic_outcomes;
                m->partition = 0;
                m->offset = fx->next_offset + (int64_t)i;
                m->payload = bufs[i];
                m->len = len;
                dec[i] = codec_outcome_decode(bufs[i], len, fx->h.cfg->max_message_bytes, &errs[i]);
                if (dec[i])
                        m->case_outcome = codec_outcome_msg(dec[i]);
                else
                        m->error = &errs[i];
        }
        store_offset off = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .expected_next = expected_next,
                            .new_next = fx->next_offset + (int64_t)n};
        out->ret = outcome_batch_store(fx->h.st, fx->h.cfg, GROUP, now, out->m, n, &off, 1, &out->res);
        if (out->ret < 0 && out->ret != -ESTALE)
                fprintf(stderr, "outcome_batch_store: %s\n", store_last_error(fx->h.st));
        if (out->ret == 0) {
                fx->stored_next = off.new_next;
                fx->next_offset += (int64_t)n;
        }
        for (size_t i = 0; i < n; i++) {
                /* What the consumer logs afterwards must still be readable. */
                if (out->m[i].status == STORE_DEAD_LETTERED) {
                        assert_non_null(out->m[i].error);
                        assert_true(out->m[i].error == &out->m[i].rejection || out->m[i].error == &errs[i]);
                        out->m[i].rejection = *out->m[i].error;
                        out->m[i].error = &out->m[i].rejection;
                }
                out->m[i].case_outcome = NULL;
                out->m[i].payload = NULL;
                codec_outcome_free(dec[i]);
                free(bufs[i]);
        }
        return out->ret;
}

static int send_events(fixture *fx, event *const *evs, size_t n, usec_t now, sent *out) {
        return send_raw(fx, evs, NULL, n, now, fx->stored_next, out);
}

static void send_one(fixture *fx, event *e, usec_t now, store_message_status want) {
        sent s;
        event *evs[] = {e};
        assert_int_equal(send_events(fx, evs, 1, now, &s), 0);
        if (s.m[0].status != want)
                fail_msg("event %s: status %d, want %d%s%s", e->ev.event_id, s.m[0].status, want,
                         s.m[0].error ? ": " : "", s.m[0].error ? s.m[0].error->detail : "");
}

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
typedef struct racer {
        fixture *fx;
        store *st;
        int32_t partition;
        event ev;
        store_message m;
        store_batch_result res;
        int ret;
} racer;

/* ---- the contract: revisions, withdrawals, dead letters' sources ---- */

/* The scheduling messages of a case in the outbox, in the order they were made:
 * 'R' request or 'W' withdrawal, with revision, kind or reason. */
static void scheduling_messages(fixture *fx, const char *case_id, char *buf, size_t size) {
        const char *p[] = {case_id, fx->h.cfg->topic_scheduling};
        PGresult *r = PQexecParams(fx->h.pg,
                                   "SELECT ce_type, payload FROM allvarsd.outbox WHERE key = $1 AND topic = $2"
                                   " ORDER BY id",
                                   2, NULL, p, NULL, NULL, 1);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        buf[0] = '\0';
        for (int i = 0; i < PQntuples(r); i++) {
                const uint8_t *v = (const uint8_t *)PQgetvalue(r, i, 1);
                size_t n = (size_t)PQgetlength(r, i, 1), k = strlen(buf);
                if (strcmp(PQgetvalue(r, i, 0), CE_TYPE_SCHEDULING) == 0) {
                        Allvarssamtal__V1__SchedulingRequest *s = allvarssamtal__v1__scheduling_request__unpack(NULL, n, v);
                        assert_non_null(s);
                        snprintf(buf + k, size - k, "%sR%llu/%d", k ? " " : "", (unsigned long long)s->revision,
                                 (int)s->kind);
                        allvarssamtal__v1__scheduling_request__free_unpacked(s, NULL);
                } else {
                        assert_string_equal(PQgetvalue(r, i, 0), CE_TYPE_WITHDRAWN);
                        Allvarssamtal__V1__SchedulingWithdrawn *w =
                                allvarssamtal__v1__scheduling_withdrawn__unpack(NULL, n, v);
                        assert_non_null(w);
                        assert_string_equal(w->case_id, case_id);
                        snprintf(buf + k, size - k, "%sW%llu/%s", k ? " " : "", (unsigned long long)w->revision,
                                 withdrawal_reason_code((withdrawal_reason)w->reason));
                        allvarssamtal__v1__scheduling_withdrawn__free_unpacked(w, NULL);
                }
        }
        PQclear(r);
}

/* Every change of a case adds one to its revision; requests carry it and their
 * kind; a change out of ELIGIBLE/SCHEDULED withdraws the request, in the same
 * transaction, at the new revision. */
static void test_revisions_and_withdrawals(void **state) {
        fixture *fx = *state;
        char a[UUID_STR_LEN], b[UUID_STR_LEN], c[UUID_STR_LEN], got[512];
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-A", .deadline = T0 + H(48), .awaiting_contact = true,
                                     .guardian_phone = ""},
                     a);
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-B", .deadline = T0 + H(48)}, b);
        add_referral(fx, &(ref_spec){.referral_id = "R-REV-C", .decision = "DEFERRED", .awaiting_assessment = true,
                                     .protective_assessment_due = T0 + H(24)},
                     c);
        event contact, sched, cancel, override_b, assess_c;
        event_init(&contact, EV_CONTACT, "ev-rev-contact", a, NULL, T0 + H(1));
        event_init(&sched, EV_SCHEDULED, "ev-rev-sched", a, NULL, T0 + H(2));
        event_init(&cancel, EV_CANCELLED, "ev-rev-cancel", a, NULL, T0 + H(3));
        event_init(&override_b, EV_OVERRIDE, "ev-rev-ov", b, NULL, T0 + H(1));
        override_b.override.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        event_init(&assess_c, EV_ASSESSMENT, "ev-rev-assess", c, NULL, T0 + H(1));
        assess_c.assessment.do_not_summon = true;
        event *evs[] = {&contact, &sched, &cancel, &override_b, &assess_c};
        sent out;
        assert_int_equal(send_events(fx, evs, 5, T0 + H(3), &out), 0);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(out.m[i].status, STORE_DECIDED);

        /* A: updated request at 2, scheduled (3, nothing to book again), cancelled: withdrawn at 4. */
        scheduling_messages(fx, a, got, sizeof got);
        assert_string_equal(got, "R2/2 W4/CANCELLED");
        assert_value(fx, "CANCELLED|4", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", a);
        /* B: overridden to NOT_ELIGIBLE: withdrawn at 2. */
        scheduling_messages(fx, b, got, sizeof got);
        assert_string_equal(got, "W2/NOT_ELIGIBLE");
        /* C: never requested; the assessment says do not summon: MANUAL_REVIEW, nothing sent. */
        scheduling_messages(fx, c, got, sizeof got);
        assert_string_equal(got, "");
        assert_value(fx, "MANUAL_REVIEW|2", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'",
                     c);

        /* C overridden to ELIGIBLE: a request (kind OVERRIDDEN) at 3; declined: withdrawn at 4. */
        event ov_c, declined;
        event_init(&ov_c, EV_OVERRIDE, "ev-rev-ov-c", c, NULL, T0 + H(4));
        event_init(&declined, EV_DECLINED, "ev-rev-declined", c, NULL, T0 + H(5));
        send_one(fx, &ov_c, T0 + H(5), STORE_DECIDED);
        send_one(fx, &declined, T0 + H(5), STORE_DECIDED);
        scheduling_messages(fx, c, got, sizeof got);
        assert_string_equal(got, "R3/4 W4/FAMILY_DECLINED");
        /* Withdrawals carry no personal data: the district, ids, times, codes only. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'"
                                   " AND position('\\x416e64657273736f6e'::bytea in payload) > 0", /* "Andersson" */
                               CE_TYPE_WITHDRAWN),
                         0);
        /* (The same query finds the name in the updated request, which must carry it.) */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s' AND key = '%s'"
                                   " AND position('\\x416e64657273736f6e'::bytea in payload) > 0",
                               CE_TYPE_SCHEDULING, a),
                         1);
}

/* A dead letter names what its producer knows the message by: its key, its ce_id
 * header, its own event id; the headers are kept for a replay. */
static void test_dead_letter_source(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-DLSRC", .decision = "DEFERRED", .awaiting_clearance = true},
                     id);
        event held;
        event_init(&held, EV_HELD, "ev-dl-source", id, NULL, T0 + H(2));
        uint8_t *buf;
        size_t len = codec_pack(&held.ev.base, &buf);
        codec_error err;
        codec_outcome *dec = codec_outcome_decode(buf, len, fx->h.cfg->max_message_bytes, &err);
        assert_non_null(dec);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "ce_id", -1, "producer-ce-1", -1);
        rd_kafka_header_add(h, "traceparent", -1, "00-abc-01", -1);
        store_message m = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .offset = fx->next_offset,
                           .payload = buf, .len = len, .case_outcome = codec_outcome_msg(dec),
                           .key = "R-DLSRC", .key_len = 7, .headers = h, .source_event_id = "ev-dl-source"};
        store_offset off = {.topic = fx->h.cfg->topic_outcomes, .partition = 0, .expected_next = fx->stored_next,
                            .new_next = fx->next_offset + 1};
        store_batch_result res;
        assert_int_equal(outcome_batch_store(fx->h.st, fx->h.cfg, GROUP, T0 + H(2), &m, 1, &off, 1, &res), 0);
        assert_int_equal(m.status, STORE_DEAD_LETTERED);
        fx->stored_next = fx->next_offset = off.new_next;
        assert_value(fx, "R-DLSRC|producer-ce-1|ev-dl-source",
                     "SELECT convert_from(source_key, 'UTF8') || '|' || source_ce_id || '|' || source_event_id"
                     " FROM allvarsd.dead_letters");
        /* The headers as they came (header_blob.h). */
        uint8_t *blob;
        size_t blob_len;
        assert_int_equal(header_blob_encode(h, &blob, &blob_len), 0);
        assert_int_equal(count(fx, "SELECT octet_length(source_headers) FROM allvarsd.dead_letters"), blob_len);
        free(blob);
        /* And the DeadLetter event. */
        char dl_id[UUID_STR_LEN], name[256];
        snprintf(name, sizeof name, "%s/0/%lld", fx->h.cfg->topic_outcomes, (long long)m.offset);
        ids_event_id("deadletter", name, dl_id);
        size_t n = 0;
        uint8_t *payload = outbox_payload(fx, dl_id, &n);
        assert_non_null(payload);
        Allvarssamtal__V1__DeadLetter *dl = allvarssamtal__v1__dead_letter__unpack(NULL, n, payload);
        free(payload);
        assert_non_null(dl);
        assert_int_equal(dl->source_key.len, 7);
        assert_memory_equal(dl->source_key.data, "R-DLSRC", 7);
        assert_string_equal(dl->source_ce_id, "producer-ce-1");
        assert_string_equal(dl->source_event_id, "ev-dl-source");
        allvarssamtal__v1__dead_letter__free_unpacked(dl, NULL);
        rd_kafka_headers_destroy(h);
        codec_outcome_free(dec);
        free(buf);
}

static void *race(void *arg) {
        racer *rc = arg;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&rc->ev.ev.base, &buf);
        codec_error err;
        codec_outcome *o = codec_outcome_decode(buf, len, 1 << 20, &err);
        rc->m = (store_message){.topic = rc->fx->h.cfg->topic_outcomes, .partition = rc->partition, .offset = 0,
                                .payload = buf, .len = len, .case_outcome = codec_outcome_msg(o)};
        store_offset off = {.topic = rc->fx->h.cfg->topic_outcomes, .partition = rc->partition, .expected_next = -1,
                            .new_next = 1};
        rc->ret = outcome_batch_store(rc->st, rc->fx->h.cfg, GROUP, T0 + H(7), &rc->m, 1, &off, 1, &rc->res);
        rc->m.case_outcome = NULL;
        codec_outcome_free(o);
        free(buf);
        return NULL;
}

static void test_concurrent_overrides_open_once(void **state) {
        fixture *fx = *state;
        char id[UUID_STR_LEN];
        add_referral(fx, &(ref_spec){.referral_id = "R-RACE", .decision = "NOT_ELIGIBLE"}, id);
        racer rc[2] = {{.fx = fx, .partition = 1}, {.fx = fx, .partition = 2}};
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(harness_store_connect(&fx->h.db, &rc[i].st), 0);
                event_init(&rc[i].ev, EV_OVERRIDE, i ? "ev-race-b" : "ev-race-a", id, NULL, T0 + H(6));
        }
        /* Hold the referral so that both batches reach its lock before either goes on. */
        harness_exec_ok(fx->h.pg, "BEGIN");
        harness_exec_ok(fx->h.pg, "SELECT 1 FROM allvarsd.referrals WHERE referral_id = 'R-RACE' FOR UPDATE");
        pthread_t t[2];
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, race, &rc[i]), 0);
        for (int tries = 0; tries < 100; tries++) {
                if (count(fx, "SELECT count(*) FROM pg_locks WHERE NOT granted") >= 2)
                        break;
                usleep(50 * 1000);
        }
        harness_exec_ok(fx->h.pg, "COMMIT");
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        for (size_t i = 0; i < 2; i++) {
                if (rc[i].ret != 0)
                        fail_msg("batch %zu: %d: %s", i, rc[i].ret, store_last_error(rc[i].st));
                assert_int_equal(rc[i].m.status, STORE_DECIDED);
                store_free(rc[i].st);
        }
        assert_int_equal(rc[0].res.cases_opened + rc[1].res.cases_opened, 1);
        assert_value(fx, "ELIGIBLE|2", "SELECT state || '|' || revision FROM allvarsd.cases WHERE case_id = '%s'", id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'OVERRIDDEN'",
                               id),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s'"
                                   " AND before LIKE 'state=NONE;%%'", id),
                         1);
}

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
                cmocka_unit_test_setup_teardown(test_concurrent_overrides_open_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_revisions_and_withdrawals, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_dead_letter_source, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
