/* The outcome batch (outcome_batch.h). Errors never carry values; no logging here. */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "case_profile.h"
#include "contacts.h"
#include "events.h"
#include "ids.h"
#include "lifecycle.h"
#include "outcome_batch.h"
#include "reasons.h"
#include "rules.h"
#include "store_outcomes.h"
#include "store_rows.h"

#define NAME_MAX_LEN 256                /* event id names: "feedback/FAMILY_DECLINED/" + a 128-char id */
#define DESCRIBE_MAX 768

typedef struct batch {
        pg_session *s;
        const config *cfg;
        usec_t now;
        event_list events;
        store_rows rows;
        store_batch_result res;
} batch;

/* What one message works with, released after it. */
typedef struct outcome_ctx {
        const CaseOutcome *ev;
        char case_id[UUID_STR_LEN];
        usec_t at;                      /* occurred_at */
        stored_referral ref;
        stored_personal personal;       /* fetched on demand */
        bool personal_loaded;
        codec_referral *referral;       /* the stored payload, decoded on demand */
        contacts contacts;
        profile prof;
        bool feedback_requested;
        uint64_t revision;              /* the case's after this event (docs/contract.md "Requests and withdrawals") */
} outcome_ctx;

static void ctx_free(outcome_ctx *c) {
        stored_referral_free(&c->ref);
        stored_personal_free(&c->personal);
        codec_referral_free(c->referral);
        contacts_free(&c->contacts);
}

/* A UUID in its canonical lower-case form, or false. */
static bool uuid_canonical(const char *s, char ret[static UUID_STR_LEN]) {
        if (strlen(s) != UUID_STR_LEN - 1)
                return false;
        for (size_t i = 0; i < UUID_STR_LEN - 1; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
                        return false;
                ret[i] = (char)tolower((unsigned char)s[i]);
        }
        ret[UUID_STR_LEN - 1] = '\0';
        return true;
}

static const char *actor_kind_code(const CaseOutcome *ev) {
        switch (ev->actor ? ev->actor->kind : 0) {
        case ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_DAEMON: return "DAEMON";
        case ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE: return "POLICE";
        case ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE: return "BOOKING_SERVICE";
        case ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER: return "SOCIAL_WORKER";
        default: return "UNSPECIFIED";
        }
}

static int dead_letter(batch *b, store_message *m, const codec_error *err, const char *case_id) {
        int r = store_rows_dead_letter(&b->rows, b->cfg, b->now, m, err, case_id, &b->events);
        if (r < 0)
                return pg_fail(b->s, r, "dead letter event: %s", strerror(-r));
        if (err != &m->rejection)
                m->rejection = *err;
        m->error = &m->rejection;
        m->status = STORE_DEAD_LETTERED;
        b->res.dead_lettered++;
        return 0;
}

/* Take back the event's record, then dead-letter it. */
static int reject(batch *b, store_message *m, dead_letter_reason reason, const char *detail, const char *case_id) {
        int r = store_outcome_event_unclaim(b->s, m->case_outcome->event_id);
        if (r < 0)
                return r;
        codec_error e = { .reason = reason };
        snprintf(e.detail, sizeof e.detail, "%s", detail);
        return dead_letter(b, m, &e, case_id);
}

/* The referral's personal row, and its payload decoded. */
static int load_personal(batch *b, outcome_ctx *c) {
        if (c->personal_loaded)
                return 0;
        c->personal_loaded = true;
        int r = store_referral_personal(b->s, c->ref.referral_id, &c->personal);
        if (r < 0 || !c->personal.payload)
                return r;
        codec_error err;
        /* Accepted once; if today's validation refuses it, the case goes on
         * without its guardians and the child's names. */
        c->referral = codec_referral_decode(c->personal.payload, c->personal.len, SIZE_MAX, &err);
        return 0;
}

/* The case's guardians: its case_contacts rows; with none, the referral's own (to be written). */
static int load_contacts(batch *b, outcome_ctx *c) {
        if (c->contacts.loaded)
                return 0;
        c->contacts.loaded = true;
        int r = store_case_contacts(b->s, c->case_id, &c->contacts);
        if (r < 0 || c->contacts.n > 0)
                return r;
        if ((r = load_personal(b, c)) < 0)
                return r;
        const PoliceReferral *ref = codec_referral_msg(c->referral);
        for (size_t i = 0; ref && i < ref->n_guardians && r >= 0; i++)
                if (ref->guardians[i])
                        r = contacts_add(&c->contacts, (int32_t)(i + 1), ref->guardians[i]->name,
                                         ref->guardians[i]->phone, ref->guardians[i]->email,
                                         ref->guardians[i]->postal_address, c->ref.received_at, true);
        if (r < 0)
                return pg_fail(b->s, r, "case contacts: out of memory");
        return 0;
}

/* The case as stored, or CASE_NONE for a referral without one. */
static int load_case(batch *b, outcome_ctx *c, case_state *ret, bool *ret_exists, bool *ret_unknown_state) {
        *ret = (case_state){ 0 };
        *ret_unknown_state = false;
        stored_case sc;
        int r = store_case_lock(b->s, c->case_id, &sc);
        if (r < 0)
                return r;
        *ret_exists = r > 0;
        const char *district = c->ref.district;
        if (*ret_exists) {
                int st = case_state_code_from_name(sc.state);
                int oc = decision_outcome_from_code(sc.outcome);
                if (st < 0 || oc < 0)
                        *ret_unknown_state = true;
                ret->state = st < 0 ? CASE_NONE : (case_state_code)st;
                ret->outcome = oc < 0 ? OUTCOME_MANUAL_REVIEW : (decision_outcome)oc;
                case_profile(b->cfg, district, sc.profile_name, sc.limit_seconds, &c->prof);
                ret->limit = c->prof.limit;
                ret->deadline = sc.deadline;
                ret->deadline_kind = deadline_kind_from_code(sc.deadline_kind);
                ret->protective_assessment_due = sc.protective_assessment_due;
                ret->awaiting_assessment = sc.awaiting_assessment;
                ret->awaiting_clearance = sc.awaiting_clearance;
                ret->awaiting_contact = sc.awaiting_contact;
                ret->scheduled_at = sc.scheduled_at;
                ret->police_attending = sc.police_attending;
                ret->held_at = sc.held_at;
                ret->closed_at = sc.closed_at;
                c->feedback_requested = sc.feedback_requested;
                /* The UPDATE adds one (store_case_write). */
                c->revision = (uint64_t)(sc.revision > 0 ? sc.revision : 0) + 1;
        } else {
                c->revision = CASE_FIRST_REVISION; /* the INSERT's default */
                /* A NOT_ELIGIBLE referral: what its decision said, for an override to open the case. */
                int oc = decision_outcome_from_code(c->ref.outcome);
                ret->state = CASE_NONE;
                ret->outcome = oc < 0 ? OUTCOME_NOT_ELIGIBLE : (decision_outcome)oc;
                case_profile(b->cfg, district, c->ref.profile_name, 0, &c->prof);
                ret->limit = c->prof.limit;
                /* rules.c: an acute risk's assessment is due with any outcome. */
                ret->protective_assessment_due = c->ref.protective_assessment_due;
                ret->awaiting_assessment = ret->protective_assessment_due != 0 && !c->ref.duty_recorded;
                uint32_t flags = 0;
                if (reasons_parse(flag_texts, c->ref.flags, &flags) < 0)
                        flags = 0;
                ret->awaiting_contact = (flags & FLAG_CONTACT_MISSING) != 0;
                c->feedback_requested = c->ref.feedback_requested;
        }
        stored_case_free(&sc);
        return 0;
}

static int write_case(batch *b, const outcome_ctx *c, const case_state *a, bool exists) {
        const case_insert ins = {
                .referral_id = c->ref.referral_id,
                .district = c->ref.district,
                .profile_name = c->prof.name,
                .limit_seconds = (a->limit ? a->limit : c->prof.limit) / USEC_PER_SEC,
                .feedback_requested = c->feedback_requested,
        };
        return store_case_write(b->s, c->case_id, a, exists ? NULL : &ins, b->now);
}

static int add_scheduling(batch *b, outcome_ctx *c, const case_state *a, scheduling_kind kind) {
        int r = load_contacts(b, c);
        if (r >= 0)
                r = load_personal(b, c);
        if (r >= 0 && contacts_views(&c->contacts) < 0)
                r = pg_fail(b->s, -ENOMEM, "scheduling: out of memory");
        if (r < 0)
                return r;
        char name[NAME_MAX_LEN];
        snprintf(name, sizeof name, "scheduling/%s", c->ev->event_id);
        const PoliceReferral *ref = codec_referral_msg(c->referral);
        const Allvarssamtal__V1__Person *child = ref ? ref->subject : NULL;
        const scheduling_info info = {
                .case_id = c->case_id,
                .district = c->ref.district,
                .deadline = a->deadline,
                .deadline_kind = a->deadline_kind,
                .child_given_name = child && child->given_name ? child->given_name : "",
                .child_family_name = child && child->family_name ? child->family_name : "",
                /* rules.c: summon_guardians = age known and below adult_age (DS 2024:30). */
                .summon_guardians = c->ref.age >= 0 && c->ref.age < c->prof.adult_age,
                .guardians = c->contacts.gp,
                .n_guardians = c->contacts.n,
                .police_reporting_unit = c->ref.reporting_unit,
                .profile = &c->prof,
                .name = name,
                .revision = c->revision,
                .kind = kind,
        };
        r = events_scheduling(b->cfg, &info, b->now, &b->events);
        if (r < 0)
                return pg_fail(b->s, r, "scheduling event: %s", strerror(-r));
        return 0;
}

/* The request in force is withdrawn (docs/contract.md "Requests and withdrawals"), in this
 * transaction, at the case's new revision. */
static int add_withdrawal(batch *b, const outcome_ctx *c, withdrawal_reason reason) {
        int r = events_scheduling_withdrawn(b->cfg, c->case_id, c->ref.district, c->revision, reason, c->at, b->now,
                                            &b->events);
        if (r < 0)
                return pg_fail(b->s, r, "withdrawal event: %s", strerror(-r));
        return 0;
}

static int add_feedback(batch *b, const outcome_ctx *c, const lifecycle_result *lr) {
        const feedback_ref ref = {
                .case_id = c->case_id,
                .referral_id = c->ref.referral_id,
                .police_case_number = c->ref.police_case_number,
                .feedback_requested = c->feedback_requested,
        };
        for (size_t i = 0; i < lr->n_feedback; i++) {
                char name[NAME_MAX_LEN];
                snprintf(name, sizeof name, "feedback/%s/%s", feedback_status_code(lr->feedback[i]), c->ev->event_id);
                /* events_feedback applies the level and the referral's wish
                 * (docs/domain.md "Feedback to the police"). */
                int r = events_feedback(b->cfg, &ref, lr->feedback[i], lr->assessment, lr->after.scheduled_at, name,
                                        c->at, &b->events);
                if (r < 0)
                        return pg_fail(b->s, r, "feedback event: %s", strerror(-r));
        }
        return 0;
}

static int add_audit(batch *b, const outcome_ctx *c, const case_state *before, const lifecycle_result *lr) {
        char bdesc[DESCRIBE_MAX], adesc[DESCRIBE_MAX + 2 * NAME_MAX_LEN + 2 * HELD_CODES_MAX], applied[RFC3339_MAX];
        if (case_state_describe(before, bdesc, sizeof bdesc) < 0 ||
            case_state_describe(&lr->after, adesc, DESCRIBE_MAX) < 0)
                return pg_fail(b->s, -ENOBUFS, "audit: case description too long");
        size_t n = strlen(adesc);
        char participants[HELD_CODES_MAX], follow_up[HELD_CODES_MAX];
        if (lifecycle_held_codes(c->ev, participants, follow_up, sizeof participants) < 0)
                participants[0] = follow_up[0] = '\0';
        if (participants[0] || follow_up[0]) {
                snprintf(adesc + n, sizeof adesc - n, ";participants=%s;follow_up=%s", participants, follow_up);
                n = strlen(adesc);
        }
        snprintf(adesc + n, sizeof adesc - n, ";event_id=%s;applied_at=%s", c->ev->event_id,
                 clock_format_rfc3339(b->now, applied));
        /* The override's reason: in the audit only, never in logs or feedback. */
        bool ov = lifecycle_kind(c->ev) == OUTCOME_KIND_OVERRIDE && c->ev->override;
        store_rows_audit(&b->rows, &(audit_entry){
                                           .case_id = c->case_id,
                                           .referral_id = c->ref.referral_id,
                                           .at = c->at,
                                           .actor_kind = actor_kind_code(c->ev),
                                           .actor_name = c->ev->actor ? c->ev->actor->name : NULL,
                                           .action = lr->action ? lr->action : "",
                                           .before = bdesc,
                                           .after = adesc,
                                           .detail = ov ? c->ev->override->reason : NULL,
                                   });
        return 0;
}

/* PROTECTIVE_ASSESSMENT_RECORDED for a referral without a case (docs/domain.md
 * "Protective assessment"): its duty is closed, no case is opened, audited. */
static int record_duty(batch *b, store_message *m, outcome_ctx *c, const case_state *before) {
        int r = store_duty_record(b->s, c->case_id, c->at);
        if (r < 0)
                return r;
        lifecycle_result lr = { .after = *before, .action = "ASSESSMENT_RECORDED" };
        lr.after.awaiting_assessment = false;
        lr.after.protective_assessment_due = 0;
        r = add_audit(b, c, before, &lr);
        if (r < 0)
                return r;
        m->status = STORE_DECIDED;
        m->outcome = before->outcome;
        b->res.decided++;
        return 0;
}

static int apply_outcome(batch *b, store_message *m, outcome_ctx *c) {
        const CaseOutcome *ev = m->case_outcome;
        c->ev = ev;
        c->at = codec_timestamp_usec(ev->occurred_at);

        /* a. The case id. */
        if (ev->case_id && *ev->case_id) {
                if (!uuid_canonical(ev->case_id, c->case_id)) {
                        codec_error e = { .reason = DLR_UNKNOWN_CASE };
                        snprintf(e.detail, sizeof e.detail, "case_id is not a case id (a UUID)");
                        return dead_letter(b, m, &e, NULL);
                }
        } else {
                ids_case_id(ev->referral_id, c->case_id);
        }

        /* b. Once per event id. */
        bool is_new;
        char participants[HELD_CODES_MAX], follow_up[HELD_CODES_MAX];
        int r = lifecycle_held_codes(ev, participants, follow_up, sizeof participants);
        if (r < 0)
                return pg_fail(b->s, r, "outcome: the held conversation's codes do not fit");
        bool held = lifecycle_kind(ev) == OUTCOME_KIND_HELD;
        r = store_outcome_event_claim(b->s, ev->event_id, c->case_id, outcome_kind_code(lifecycle_kind(ev)), c->at,
                                      b->now, m->topic, m->partition, m->offset, held ? participants : NULL,
                                      held ? follow_up : NULL, &is_new);
        if (r < 0)
                return r;
        snprintf(m->case_id, sizeof m->case_id, "%s", c->case_id);
        if (!is_new) {
                m->status = STORE_DUPLICATE;
                b->res.duplicates++;
                return 0;
        }

        /* c. The referral, then the case, locked. */
        r = store_referral_lock(b->s, c->case_id, &c->ref);
        if (r < 0)
                return r;
        if (r == 0) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE,
                              *ev->case_id ? "no case or referral has this case_id" : "no referral has this referral_id",
                              NULL);
        }
        if (ev->referral_id && *ev->referral_id && strcmp(ev->referral_id, c->ref.referral_id) != 0) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE, "case_id and referral_id name different cases", NULL);
        }
        if (!c->ref.decided) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE, "the referral has no decision", NULL);
        }
        /* Whatever follows, the referral's statistics row is made again from
         * the tables at the end of the transaction (an event rejected below
         * leaves them as they were). */
        store_rows_stats(&b->rows, c->case_id);
        case_state before;
        bool exists, unknown_state;
        r = load_case(b, c, &before, &exists, &unknown_state);
        if (r < 0)
                return r;
        if (unknown_state)
                return reject(b, m, DLR_ILLEGAL_TRANSITION, "the case's stored state is unknown to this version",
                              c->case_id);

        /* d. The state machine; or the assessment a referral without a case owed. */
        lifecycle_result lr;
        if (!exists && c->ref.duty_pending && lifecycle_kind(ev) == OUTCOME_KIND_ASSESSMENT_RECORDED)
                return record_duty(b, m, c, &before);
        lifecycle_apply(&before, ev, &c->prof, b->now, &lr);
        if (lr.rejected)
                return reject(b, m, lr.error.reason, lr.error.detail, exists ? c->case_id : NULL);

        /* e. What follows. */
        r = write_case(b, c, &lr.after, exists);
        if (r < 0)
                return r;
        if (!exists)
                b->res.cases_opened++;
        if (lifecycle_kind(ev) == OUTCOME_KIND_CONTACT_SUPPLIED || !exists) {
                r = load_contacts(b, c);
                if (r >= 0 && lifecycle_kind(ev) == OUTCOME_KIND_CONTACT_SUPPLIED &&
                    contacts_merge(&c->contacts, ev->contact_details_supplied->guardians,
                                   ev->contact_details_supplied->n_guardians, c->at) < 0)
                        r = pg_fail(b->s, -ENOMEM, "case contacts: out of memory");
                if (r >= 0)
                        r = store_case_contacts_write(b->s, c->case_id, &c->contacts, b->now);
                if (r < 0)
                        return r;
        }
        if (lr.send_scheduling && (r = add_scheduling(b, c, &lr.after, lr.scheduling_kind)) < 0)
                return r;
        if (lr.withdrawal != WITHDRAWAL_NONE && (r = add_withdrawal(b, c, lr.withdrawal)) < 0)
                return r;
        r = add_feedback(b, c, &lr);
        if (r >= 0)
                r = add_audit(b, c, &before, &lr);
        if (r < 0)
                return r;
        m->status = STORE_DECIDED;
        m->outcome = lr.after.outcome;
        b->res.decided++;
        return 0;
}

static int run(store *st, const config *cfg, const char *group, usec_t now, store_message *msgs, size_t n,
               const store_offset *offsets, size_t n_offsets, bool commit, store_batch_result *ret) {
        if (ret)
                *ret = (store_batch_result){ 0 };
        if (!st || !cfg || !group || (n > 0 && !msgs) || (n_offsets > 0 && !offsets))
                return -EINVAL;
        int r = store_rows_ready(st, store_outcome_statements, false);
        if (r < 0)
                return r == -ENOTCONN ? pg_fail(store_session(st), -ECONNRESET, "not connected to PostgreSQL") : r;

        batch b = { .s = store_session(st), .cfg = cfg, .now = now };
        store_rows_reset(&b.rows);
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = STORE_PENDING;
                msgs[i].case_id[0] = '\0';
                msgs[i].outcome = 0;
                /* A rejection of an earlier attempt; a decoding error stays (its copy is in rejection). */
                if (msgs[i].case_outcome && msgs[i].error == &msgs[i].rejection)
                        msgs[i].error = NULL;
        }

        pg_params po;
        pg_pipe p;
        int q_cas = -1;
        r = pg_pipe_begin(b.s, &p);
        if (r >= 0)
                r = pg_pipe_send(&p, "store_begin", NULL, 0);
        if (r >= 0 && n_offsets > 0)
                r = q_cas = store_rows_send_offsets(&b.rows, &p, group, offsets, n_offsets, &po);
        if (r >= 0)
                r = pg_pipe_sync(&p);
        if (r >= 0 && q_cas >= 0)
                r = store_rows_offsets_check(b.s, p.res[q_cas], n_offsets);
        pg_pipe_end(&p);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                store_message *m = &msgs[i];
                if (!m->case_outcome) {
                        codec_error e = { .reason = DLR_UNDECODABLE };
                        snprintf(e.detail, sizeof e.detail, "not a valid CaseOutcome");
                        r = dead_letter(&b, m, m->error ? m->error : &e, NULL);
                        continue;
                }
                outcome_ctx c = { 0 };
                r = apply_outcome(&b, m, &c);
                ctx_free(&c);
        }

        if (r >= 0) {
                store_rows_events(&b.rows, &b.events, 0, true);
                r = store_rows_write(&b.rows, b.s, now, commit, &b.res.events);
        }
        if (r < 0 || !commit)
                store_rollback(st);
        if (r >= 0 && ret)
                *ret = b.res;
        event_list_free(&b.events);
        store_rows_free(&b.rows);
        return r;
}

int outcome_batch_store(store *s, const config *cfg, const char *group, usec_t now, store_message *msgs, size_t n,
                        const store_offset *offsets, size_t n_offsets, store_batch_result *ret) {
        return run(s, cfg, group, now, msgs, n, offsets, n_offsets, true, ret);
}

int outcome_batch_try(store *s, const config *cfg, const char *group, usec_t now, store_message *m) {
        return run(s, cfg, group, now, m, 1, NULL, 0, false, NULL);
}
