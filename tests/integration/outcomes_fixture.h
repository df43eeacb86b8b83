/* What the outcome tests share (test-outcomes.c, test-outcomes-contract.c):
 * a fresh database per test with the schemas applied, referrals, decisions
 * and cases set up with SQL, outcome events packed and decoded as the
 * consumer does and stored with outcome_batch_store, and readers of what the
 * outbox holds. Include after cmocka.h. */
#pragma once

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

static inline int fixture_setup(void **state, const char *extra_config) {
        if (harness_store_setup(state, sizeof(fixture), "test-outcomes", extra_config) < 0)
                return -1;
        fixture *fx = *state;
        fx->stored_next = -1;
        fx->next_offset = 100;
        return 0;
}

static inline int setup(void **state) {
        return fixture_setup(state, "feedback.always = false\n");
}

static inline int setup_statutory(void **state) {
        return fixture_setup(state, "feedback.always = false\nfeedback.level = statutory\n");
}

/* ---- queries ---- */

/* The payload of the outbox row with this event id (binary result: raw bytes); NULL when none. */
static inline uint8_t *outbox_payload(fixture *fx, const char *event_id, size_t *ret_len) {
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

static inline Allvarssamtal__V1__PoliceFeedback *feedback_of(fixture *fx, const char *case_id, const char *name) {
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

static inline Allvarssamtal__V1__SchedulingRequest *scheduling_of(fixture *fx, const char *case_id, const char *name) {
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
static inline void add_referral(fixture *fx, const ref_spec *rs, char ret[static UUID_STR_LEN]) {
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
                "INSERT INTO allvarsd.referral_personal (referral_id, payload) VALUES ($1, $2)",
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
                " deadline_kind, protective_assessment_due, profile_name, profile_version, params_key,"
                " prior_referrals, prior_qualifying, decided_at)"
                " VALUES ($1, $2, '', $3, $4::int, " TS("$5") ", $6, " TS("$7") ", 'goteborg-motion-2024', 1,"
                " md5('')::uuid, 0, 0, " TS("$8") ")",
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
static inline void event_init(event *e, ev_kind k, const char *event_id, const char *case_id, const char *referral_id,
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
static inline int send_raw(fixture *fx, event *const *evs, const char *const *raw, size_t n, usec_t now,
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

static inline int send_events(fixture *fx, event *const *evs, size_t n, usec_t now, sent *out) {
        return send_raw(fx, evs, NULL, n, now, fx->stored_next, out);
}

static inline void send_one(fixture *fx, event *e, usec_t now, store_message_status want) {
        sent s;
        event *evs[] = {e};
        assert_int_equal(send_events(fx, evs, 1, now, &s), 0);
        if (s.m[0].status != want)
                fail_msg("event %s: status %d, want %d%s%s", e->ev.event_id, s.m[0].status, want,
                         s.m[0].error ? ": " : "", s.m[0].error ? s.m[0].error->detail : "");
}
