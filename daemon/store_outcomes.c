/* The lifecycle's transaction (store.h store_outcome_batch; DOMAIN.md "After
 * the decision", "Feedback to the police"; issue 5). One batch of consumed
 * outcome messages is one transaction:
 *   1. the consumed offsets, compare-and-set (-ESTALE when one moved: nothing written);
 *   2. per message, in order:
 *      a. the case id: case_id, or uuid5 of the police's referral_id (ids.h);
 *      b. INSERT outcome_events ON CONFLICT DO NOTHING: a repeated event id is
 *         STORE_DUPLICATE and nothing else happens;
 *      c. the referral, locked FOR NO KEY UPDATE (every outcome of a case takes
 *         this lock first, so two overrides of a NOT_ELIGIBLE referral cannot
 *         both open its case), then the case FOR UPDATE;
 *      d. lifecycle_apply (pure);
 *      e. applied: UPDATE the case (revision + 1) or INSERT it (an override
 *         opening a case), the guardians in case_contacts, an audit row, the
 *         feedback and scheduling events (events.h) as outbox rows;
 *         rejected (unknown case, illegal transition): the outcome_events row
 *         is taken back (a later replay of the dead letter may apply), a
 *         dead_letters row and a DeadLetter outbox row. The partition flows on.
 *   3. audit and outbox rows in one statement each, pg_notify('allvarsd_outbox')
 *      when outbox rows were written; COMMIT.
 *
 * Choices (the lead's rules are in lifecycle.c):
 *  - Event ids: "feedback/<STATUS>/<outcome event id>" and "scheduling/<outcome
 *    event id>" under the case (ids_event_id), unique per outcome event and
 *    the same on every retry.
 *  - A feedback status is stamped with the event's occurred_at (when the
 *    status was reached, also on a replay years later); a scheduling request
 *    with now (when it was made).
 *  - Audit: at = occurred_at; who = actor kind + name; before/after =
 *    case_state_describe, and after ends with ";event_id=...;applied_at=..."
 *    (the schema has no column for them yet). detail holds an override's
 *    reason and nothing else: it is personal-free by rule and never logged.
 *  - Guardians (PERSONAL): the case's case_contacts rows; when it has none, the
 *    referral's own guardians from its stored payload seed them. A supplied
 *    guardian whose name matches a known one (trimmed, ASCII case ignored)
 *    updates that row's non-empty fields; the others are appended with the
 *    next ordinals. Nothing is deleted: the police may name one parent only.
 *  - The profile of a case: its district's effective profile when the case was
 *    decided under it, else the built-in of that name (as deadline_watch.c);
 *    the limit is always the case's own limit_seconds.
 * Errors never carry values (store_fail_result); no logging here. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "events.h"
#include "ids.h"
#include "lifecycle.h"
#include "profiles.h"
#include "reasons.h"
#include "rules.h"

#define SQL_USEC(e) "(extract(epoch FROM " e ") * 1000000)::int8"
#define NAME_MAX_LEN 256                /* event id names: "feedback/FAMILY_DECLINED/" + a 128-char id */
#define DESCRIBE_MAX 768

/* ---- SQL ----
 * The offsets' compare-and-set, the outbox and the dead letters are written
 * as store_referrals.c writes them (the same statements, kept here until the
 * two batches share them through store_internal.h). */

/* Fenced positions (NOTES.md: a revoked partition's messages may still
 * arrive): every row must match its expected value, or the batch is stale. */
static const char SQL_OFFSETS_CAS[] =
        "WITH v AS (SELECT * FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[])"
        "                  AS v(topic, part, expected, next)),"
        " upd AS (UPDATE allvarsd.consumer_offsets o SET next_offset = v.next, updated_at = now()"
        "           FROM v WHERE v.expected >= 0 AND o.consumer_group = $1::text AND o.topic = v.topic"
        "            AND o.partition = v.part AND o.next_offset = v.expected RETURNING 1),"
        " ins AS (INSERT INTO allvarsd.consumer_offsets (consumer_group, topic, partition, next_offset)"
        "         SELECT $1::text, v.topic, v.part, v.next FROM v WHERE v.expected < 0"
        "         ON CONFLICT DO NOTHING RETURNING 1)"
        " SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)";

/* In the order the events were made (the relay publishes per key in id order).
 * ON CONFLICT: a dead letter's event id is named by topic, partition and
 * offset, so a partition re-read after a manual offset reset must not fail.
 * NOT EXISTS: nor publish it again once delivered, when its row has left the
 * outbox for outbox_sent (the one race left: schemas/004_outbox_sent.sql). */
static const char SQL_OUTBOX[] =
        "WITH ins AS (INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
        "             SELECT u.id::uuid, u.topic, u.key, u.type, u.t, u.payload"
        "               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],"
        "                           $6::bytea[]) WITH ORDINALITY AS u(id, topic, key, type, t, payload, ord)"
        "              WHERE NOT EXISTS (SELECT 1 FROM allvarsd.outbox_sent s WHERE s.event_id = u.id::uuid)"
        "              ORDER BY u.ord"
        "             ON CONFLICT (event_id) DO NOTHING RETURNING 1)"
        " SELECT count(*) FROM ins";

static const char SQL_DEAD_LETTER[] =
        "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset, reason, detail,"
        "                                   payload, received_at)"
        " SELECT u.id::uuid, u.topic, u.part, u.off, u.reason, u.detail, u.payload, $8::timestamptz"
        "   FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::bytea[])"
        "        AS u(id, topic, part, off, reason, detail, payload)"
        " ON CONFLICT DO NOTHING";

static const char SQL_NOTIFY[] = "SELECT pg_notify('allvarsd_outbox', '')";   /* relay.h's channel */

static const char SQL_EVENT_INSERT[] =
        "INSERT INTO allvarsd.outcome_events (event_id, case_id, kind, occurred_at, applied_at,"
        " source_topic, source_partition, source_offset)"
        " VALUES ($1::text, $2::text::uuid, $3::text, $4::timestamptz, $5::timestamptz, $6::text, $7::int4, $8::int8)"
        " ON CONFLICT (event_id) DO NOTHING";

static const char SQL_EVENT_DELETE[] = "DELETE FROM allvarsd.outcome_events WHERE event_id = $1::text";

enum {
        REF_ID, REF_DISTRICT, REF_CASE_NUMBER, REF_UNIT, REF_FEEDBACK, REF_RECEIVED,
        REF_D_OUTCOME, REF_D_FLAGS, REF_D_AGE, REF_D_PROFILE, REF_D_PAD,
};
static const char SQL_REFERRAL_LOCK[] =
        "SELECT r.referral_id, r.district, r.police_case_number, r.reporting_unit, r.feedback_requested,"
        "       " SQL_USEC("r.received_at") ","
        "       d.outcome, d.flags, d.age, d.profile_name, " SQL_USEC("d.protective_assessment_due")
        "  FROM allvarsd.referrals r LEFT JOIN allvarsd.decisions d ON d.referral_id = r.referral_id"
        " WHERE r.case_id = $1::text::uuid"
        "   FOR NO KEY UPDATE OF r";

enum {
        CASE_C_STATE, CASE_C_OUTCOME, CASE_C_PROFILE, CASE_C_LIMIT, CASE_C_DEADLINE, CASE_C_DK, CASE_C_PAD,
        CASE_C_AW_ASSESSMENT, CASE_C_AW_CLEARANCE, CASE_C_AW_CONTACT, CASE_C_SCHEDULED, CASE_C_POLICE,
        CASE_C_HELD, CASE_C_CLOSED, CASE_C_FEEDBACK,
};
static const char SQL_CASE_LOCK[] =
        "SELECT state, outcome, profile_name, limit_seconds, " SQL_USEC("deadline") ", coalesce(deadline_kind, ''),"
        "       " SQL_USEC("protective_assessment_due") ", awaiting_assessment, awaiting_clearance,"
        "       awaiting_contact, " SQL_USEC("scheduled_at") ", police_attending, " SQL_USEC("held_at") ","
        "       " SQL_USEC("closed_at") ", feedback_requested"
        "  FROM allvarsd.cases WHERE case_id = $1::text::uuid FOR UPDATE";

static const char SQL_CASE_UPDATE[] =
        "UPDATE allvarsd.cases SET state = $2::text, outcome = $3::text, deadline = $4::timestamptz,"
        " deadline_kind = $5::text, protective_assessment_due = $6::timestamptz, awaiting_assessment = $7::bool,"
        " awaiting_clearance = $8::bool, awaiting_contact = $9::bool, scheduled_at = $10::timestamptz,"
        " police_attending = $11::bool, held_at = $12::timestamptz, closed_at = $13::timestamptz,"
        " updated_at = $14::timestamptz, revision = revision + 1"
        " WHERE case_id = $1::text::uuid";

static const char SQL_CASE_INSERT[] =
        "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name, limit_seconds,"
        " deadline, deadline_kind, protective_assessment_due, awaiting_assessment, awaiting_clearance,"
        " awaiting_contact, scheduled_at, police_attending, held_at, closed_at, feedback_requested,"
        " created_at, updated_at)"
        " VALUES ($1::text::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::int8, $8::timestamptz,"
        " $9::text, $10::timestamptz, $11::bool, $12::bool, $13::bool, $14::timestamptz, $15::bool,"
        " $16::timestamptz, $17::timestamptz, $18::bool, $19::timestamptz, $19::timestamptz)";

static const char SQL_PERSONAL[] =
        "SELECT payload, given_name, family_name FROM allvarsd.referral_personal WHERE referral_id = $1::text";

static const char SQL_CONTACTS[] =
        "SELECT ordinal, name, phone, email, postal_address FROM allvarsd.case_contacts"
        " WHERE case_id = $1::text::uuid ORDER BY ordinal";

static const char SQL_CONTACTS_UPSERT[] =
        "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, email, postal_address, supplied_at)"
        " SELECT $1::text::uuid, c.ordinal, c.name, c.phone, c.email, c.address, c.at"
        "   FROM unnest($2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])"
        "        AS c(ordinal, name, phone, email, address, at)"
        " ON CONFLICT (case_id, ordinal) DO UPDATE SET name = excluded.name, phone = excluded.phone,"
        "   email = excluded.email, postal_address = excluded.postal_address, supplied_at = excluded.supplied_at";

static const char SQL_AUDIT[] =
        "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, actor_name, action, before, after, detail)"
        " SELECT a.case_id::uuid, a.referral_id, a.at, a.kind, a.name, a.action, a.before, a.after, a.detail"
        "   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],"
        "               $8::text[], $9::text[]) WITH ORDINALITY"
        "        AS a(case_id, referral_id, at, kind, name, action, before, after, detail, ord)"
        " ORDER BY a.ord";


/* ---- parameters the shared helpers lack ---- */

/* A timestamptz, NULL for 0. */
static void params_ts_null(store_params *p, usec_t t) {
        if (t == 0)
                store_params_null(p);
        else
                store_params_ts(p, t);
}

/* Text, NULL for "". */
static void params_text_null(store_params *p, const char *s) {
        store_params_text(p, s && *s ? s : NULL);
}

static bool result_ok(const PGresult *r) {
        ExecStatusType st = PQresultStatus(r);
        return r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* Run one statement; on success *ret (if given) keeps the result. */
static int exec_params(store *s, const char *what, const char *sql, const store_params *p, int result_format,
                       PGresult **ret) {
        PGresult *r = PQexecParams(s->conn, sql, p ? p->n : 0, NULL, p ? p->values : NULL, p ? p->lengths : NULL,
                                   p ? p->formats : NULL, result_format);
        if (!result_ok(r)) {
                int err = store_fail_result(s, what, r);
                PQclear(r);
                return err;
        }
        if (ret)
                *ret = r;
        else
                PQclear(r);
        return 0;
}

/* The number in the first column of a one-row result ("SELECT count(*) ..."). */
static unsigned first_count(const PGresult *r) {
        return PQntuples(r) == 1 ? (unsigned)strtoul(PQgetvalue(r, 0, 0), NULL, 10) : 0;
}

static unsigned cmd_rows(const PGresult *r) {
        return (unsigned)strtoul(PQcmdTuples((PGresult *)r), NULL, 10);
}

static usec_t field_usec(const PGresult *r, int row, int col) {
        return PQgetisnull(r, row, col) ? 0 : (usec_t)strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static bool field_bool(const PGresult *r, int row, int col) {
        return PQgetvalue(r, row, col)[0] == 't';
}

/* ---- small pure helpers ---- */

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

/* The profile a case was decided under, with the case's own limit (when known). */
static void case_profile(const config *cfg, const char *district, const char *profile_name, int64_t limit_s,
                         profile *ret) {
        const profile *p = config_profile_for(cfg, district);
        if (!p || strcmp(p->name, profile_name) != 0) {
                const profile *b = profiles_find(profile_name);
                if (b)
                        p = b;
        }
        if (p)
                *ret = *p;
        else
                *ret = *profiles_find(PROFILE_DEFAULT);
        if (limit_s > 0)
                ret->limit = limit_s * USEC_PER_SEC;
}

/* Trimmed, ASCII-case-insensitive equality of two non-empty names. */
static bool same_name(const char *a, const char *b) {
        while (isspace((unsigned char)*a))
                a++;
        while (isspace((unsigned char)*b))
                b++;
        size_t la = strlen(a), lb = strlen(b);
        while (la > 0 && isspace((unsigned char)a[la - 1]))
                la--;
        while (lb > 0 && isspace((unsigned char)b[lb - 1]))
                lb--;
        return la > 0 && la == lb && strncasecmp(a, b, la) == 0;
}

/* ---- guardians ---- */

typedef struct contact {
        int32_t ordinal;
        char *name, *phone, *email, *address;
        usec_t supplied_at;
        bool dirty;                     /* to be written */
} contact;

typedef struct contacts {
        contact *v;
        size_t n, cap;
        bool loaded;
        Allvarssamtal__V1__Guardian *g;  /* views for the scheduling request */
        Allvarssamtal__V1__Guardian **gp;
} contacts;

static void contacts_free(contacts *c) {
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].name);
                free(c->v[i].phone);
                free(c->v[i].email);
                free(c->v[i].address);
        }
        free(c->v);
        free(c->g);
        free(c->gp);
        *c = (contacts){0};
}

static char *dup_or_empty(const char *s) {
        return strdup(s ? s : "");
}

static int contacts_add(contacts *c, int32_t ordinal, const char *name, const char *phone, const char *email,
                        const char *address, usec_t at, bool dirty) {
        if (c->n == c->cap) {
                size_t cap = c->cap ? c->cap * 2 : 4;
                contact *v = realloc(c->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                c->v = v;
                c->cap = cap;
        }
        contact *k = &c->v[c->n];
        *k = (contact){.ordinal = ordinal, .supplied_at = at, .dirty = dirty};
        k->name = dup_or_empty(name);
        k->phone = dup_or_empty(phone);
        k->email = dup_or_empty(email);
        k->address = dup_or_empty(address);
        c->n++;
        if (!k->name || !k->phone || !k->email || !k->address)
                return -ENOMEM;
        return 0;
}

static int32_t contacts_next_ordinal(const contacts *c) {
        int32_t o = 0;
        for (size_t i = 0; i < c->n; i++)
                if (c->v[i].ordinal > o)
                        o = c->v[i].ordinal;
        return o + 1;
}

/* Replace a field with a supplied non-empty value; true when it changed. */
static int field_update(char **field, const char *value, bool *changed) {
        if (!value || !*value || strcmp(*field, value) == 0)
                return 0;
        char *v = strdup(value);
        if (!v)
                return -ENOMEM;
        free(*field);
        *field = v;
        *changed = true;
        return 0;
}

static int contacts_merge(contacts *c, Allvarssamtal__V1__Guardian *const *g, size_t n, usec_t at) {
        for (size_t i = 0; i < n; i++) {
                if (!g[i])
                        continue;
                contact *match = NULL;
                for (size_t j = 0; j < c->n && !match; j++)
                        if (g[i]->name && same_name(c->v[j].name, g[i]->name))
                                match = &c->v[j];
                int r;
                if (!match) {
                        r = contacts_add(c, contacts_next_ordinal(c), g[i]->name, g[i]->phone, g[i]->email,
                                         g[i]->postal_address, at, true);
                        if (r < 0)
                                return r;
                        continue;
                }
                bool changed = false;
                if ((r = field_update(&match->phone, g[i]->phone, &changed)) < 0 ||
                    (r = field_update(&match->email, g[i]->email, &changed)) < 0 ||
                    (r = field_update(&match->address, g[i]->postal_address, &changed)) < 0)
                        return r;
                if (changed) {
                        match->dirty = true;
                        match->supplied_at = at;
                }
        }
        return 0;
}

/* Protobuf views of the contacts, for events_scheduling. */
static int contacts_views(contacts *c) {
        free(c->g);
        free(c->gp);
        c->g = calloc(c->n ? c->n : 1, sizeof *c->g);
        c->gp = calloc(c->n ? c->n : 1, sizeof *c->gp);
        if (!c->g || !c->gp)
                return -ENOMEM;
        for (size_t i = 0; i < c->n; i++) {
                allvarssamtal__v1__guardian__init(&c->g[i]);
                c->g[i].name = c->v[i].name;
                c->g[i].phone = c->v[i].phone;
                c->g[i].email = c->v[i].email;
                c->g[i].postal_address = c->v[i].address;
                c->gp[i] = &c->g[i];
        }
        return 0;
}

/* ---- the batch ---- */

typedef struct audit_rows {
        store_arr case_id, referral_id, at, kind, name, action, before, after, detail;
        unsigned n;
} audit_rows;

typedef struct batch {
        store *s;
        const config *cfg;
        usec_t now;
        event_list events;
        audit_rows audit;
        store_batch_result res;
} batch;

static void audit_init(audit_rows *a) {
        store_arr_reset(&a->case_id, STORE_OID_TEXT);
        store_arr_reset(&a->referral_id, STORE_OID_TEXT);
        store_arr_reset(&a->at, STORE_OID_TIMESTAMPTZ);
        store_arr_reset(&a->kind, STORE_OID_TEXT);
        store_arr_reset(&a->name, STORE_OID_TEXT);
        store_arr_reset(&a->action, STORE_OID_TEXT);
        store_arr_reset(&a->before, STORE_OID_TEXT);
        store_arr_reset(&a->after, STORE_OID_TEXT);
        store_arr_reset(&a->detail, STORE_OID_TEXT);
        a->n = 0;
}

static void audit_free(audit_rows *a) {
        store_arr_free(&a->case_id);
        store_arr_free(&a->referral_id);
        store_arr_free(&a->at);
        store_arr_free(&a->kind);
        store_arr_free(&a->name);
        store_arr_free(&a->action);
        store_arr_free(&a->before);
        store_arr_free(&a->after);
        store_arr_free(&a->detail);
}

/* What one message works with, released after it. */
typedef struct outcome_ctx {
        const CaseOutcome *ev;
        char case_id[UUID_STR_LEN];
        usec_t at;                      /* occurred_at */
        PGresult *ref;                  /* SQL_REFERRAL_LOCK's row */
        PGresult *personal;             /* SQL_PERSONAL's row (binary), fetched on demand */
        codec_referral *referral;       /* the stored payload, decoded on demand */
        bool personal_loaded;
        contacts contacts;
        profile prof;
        bool feedback_requested;
} outcome_ctx;

static void ctx_free(outcome_ctx *c) {
        PQclear(c->ref);
        PQclear(c->personal);
        codec_referral_free(c->referral);
        contacts_free(&c->contacts);
}

/* NOTES.md: a just-revoked partition's messages can still arrive (librdkafka
 * #1359): every partition must be where we expect it, or nothing is written. */
static int offsets_cas(batch *b, const char *group, const store_offset *offs, size_t n) {
        if (n == 0)
                return 0;
        store_arr topic = {0}, part = {0}, expected = {0}, next = {0};
        store_arr_reset(&topic, STORE_OID_TEXT);
        store_arr_reset(&part, STORE_OID_INT4);
        store_arr_reset(&expected, STORE_OID_INT8);
        store_arr_reset(&next, STORE_OID_INT8);
        for (size_t i = 0; i < n; i++) {
                store_arr_text(&topic, offs[i].topic);
                store_arr_int4(&part, offs[i].partition);
                store_arr_int8(&expected, offs[i].expected_next < 0 ? -1 : offs[i].expected_next);
                store_arr_int8(&next, offs[i].new_next);
        }
        int r;
        PGresult *res = NULL;
        if (store_arr_finish(&topic) < 0 || store_arr_finish(&part) < 0 || store_arr_finish(&expected) < 0 ||
            store_arr_finish(&next) < 0) {
                r = store_fail(b->s, -ENOMEM, "outcome batch: out of memory");
        } else {
                store_params p = {0};
                store_params_text(&p, group);
                store_params_arr(&p, &topic);
                store_params_arr(&p, &part);
                store_params_arr(&p, &expected);
                store_params_arr(&p, &next);
                r = exec_params(b->s, "offsets", SQL_OFFSETS_CAS, &p, 0, &res);
                if (r >= 0 && first_count(res) != n)
                        r = store_fail(b->s, -ESTALE,
                                       "outcome batch: a partition's stored offset moved (rebalanced or another consumer)");
                PQclear(res);
        }
        store_arr_free(&topic);
        store_arr_free(&part);
        store_arr_free(&expected);
        store_arr_free(&next);
        return r;
}

static int dead_letter(batch *b, store_message *m, const codec_error *err, const char *case_id) {
        size_t first = b->events.n;
        int r = events_dead_letter(b->cfg, m->topic, m->partition, m->offset, err, case_id, b->now, &b->events);
        if (r < 0 || b->events.n == first)
                return store_fail(b->s, r < 0 ? r : -EINVAL, "dead letter event: %s", strerror(r < 0 ? -r : EINVAL));
        store_arr a[7] = {{0}};
        static const uint32_t oids[7] = {STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_INT4, STORE_OID_INT8,
                                         STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_BYTEA};
        for (size_t i = 0; i < 7; i++)
                store_arr_reset(&a[i], oids[i]);
        store_arr_text(&a[0], b->events.v[first].event_id);
        store_arr_text(&a[1], m->topic);
        store_arr_int4(&a[2], m->partition);
        store_arr_int8(&a[3], m->offset);
        store_arr_text(&a[4], dead_letter_reason_code(err->reason));
        store_arr_text(&a[5], err->detail);
        /* As the referral batch: an oversized message is not kept. */
        if (m->payload && m->len <= b->cfg->max_message_bytes)
                store_arr_bytes(&a[6], m->payload, m->len);
        else
                store_arr_null(&a[6]);
        store_params p = {0};
        for (size_t i = 0; i < 7 && r >= 0; i++) {
                r = store_arr_finish(&a[i]);
                store_params_arr(&p, &a[i]);
        }
        if (r < 0) {
                r = store_fail(b->s, -ENOMEM, "dead letter: out of memory");
        } else {
                store_params_ts(&p, b->now);
                r = exec_params(b->s, "dead letter", SQL_DEAD_LETTER, &p, 0, NULL);
        }
        for (size_t i = 0; i < 7; i++)
                store_arr_free(&a[i]);
        if (r < 0)
                return r;
        if (err != &m->rejection)
                m->rejection = *err;
        m->error = &m->rejection;
        m->status = STORE_DEAD_LETTERED;
        b->res.dead_lettered++;
        return 0;
}

/* Take back the outcome_events row of a rejected event, then dead-letter it. */
static int reject(batch *b, store_message *m, dead_letter_reason reason, const char *detail, const char *case_id) {
        store_params p = {0};
        store_params_text(&p, m->case_outcome->event_id);
        int r = exec_params(b->s, "outcome event", SQL_EVENT_DELETE, &p, 0, NULL);
        if (r < 0)
                return r;
        codec_error e = {.reason = reason};
        snprintf(e.detail, sizeof e.detail, "%s", detail);
        return dead_letter(b, m, &e, case_id);
}

/* The referral's personal row and payload (binary results: the payload raw). */
static int load_personal(batch *b, outcome_ctx *c) {
        if (c->personal_loaded)
                return 0;
        c->personal_loaded = true;
        store_params p = {0};
        store_params_text(&p, PQgetvalue(c->ref, 0, REF_ID));
        int r = exec_params(b->s, "referral personal", SQL_PERSONAL, &p, 1, &c->personal);
        if (r < 0)
                return r;
        if (PQntuples(c->personal) == 1 && !PQgetisnull(c->personal, 0, 0) && PQgetlength(c->personal, 0, 0) > 0) {
                codec_error err;
                /* Accepted once; if today's validation refuses it, the case goes on without its guardians. */
                c->referral = codec_referral_decode(PQgetvalue(c->personal, 0, 0),
                                                    (size_t)PQgetlength(c->personal, 0, 0), SIZE_MAX, &err);
        }
        return 0;
}

static const char *personal_text(const outcome_ctx *c, int col) {
        if (!c->personal || PQntuples(c->personal) != 1 || PQgetisnull(c->personal, 0, col))
                return "";
        return PQgetvalue(c->personal, 0, col);
}

/* The case's guardians: its case_contacts rows; with none, the referral's own (to be written). */
static int load_contacts(batch *b, outcome_ctx *c) {
        if (c->contacts.loaded)
                return 0;
        c->contacts.loaded = true;
        store_params p = {0};
        store_params_text(&p, c->case_id);
        PGresult *res = NULL;
        int r = exec_params(b->s, "case contacts", SQL_CONTACTS, &p, 0, &res);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res) && r >= 0; i++)
                r = contacts_add(&c->contacts, (int32_t)strtol(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1),
                                 PQgetvalue(res, i, 2), PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), 0, false);
        bool none = PQntuples(res) == 0;
        PQclear(res);
        if (r < 0)
                return store_fail(b->s, r, "case contacts: out of memory");
        if (!none)
                return 0;
        r = load_personal(b, c);
        if (r < 0)
                return r;
        const PoliceReferral *ref = codec_referral_msg(c->referral);
        usec_t received = field_usec(c->ref, 0, REF_RECEIVED);
        for (size_t i = 0; ref && i < ref->n_guardians && r >= 0; i++)
                if (ref->guardians[i])
                        r = contacts_add(&c->contacts, (int32_t)(i + 1), ref->guardians[i]->name,
                                         ref->guardians[i]->phone, ref->guardians[i]->email,
                                         ref->guardians[i]->postal_address, received, true);
        if (r < 0)
                return store_fail(b->s, r, "case contacts: out of memory");
        return 0;
}

static int write_contacts(batch *b, const outcome_ctx *c) {
        store_arr ord = {0}, name = {0}, phone = {0}, email = {0}, addr = {0}, at = {0};
        store_arr_reset(&ord, STORE_OID_INT4);
        store_arr_reset(&name, STORE_OID_TEXT);
        store_arr_reset(&phone, STORE_OID_TEXT);
        store_arr_reset(&email, STORE_OID_TEXT);
        store_arr_reset(&addr, STORE_OID_TEXT);
        store_arr_reset(&at, STORE_OID_TIMESTAMPTZ);
        unsigned n = 0;
        for (size_t i = 0; i < c->contacts.n; i++) {
                const contact *k = &c->contacts.v[i];
                if (!k->dirty)
                        continue;
                store_arr_int4(&ord, k->ordinal);
                store_arr_text(&name, k->name);
                store_arr_text(&phone, k->phone);
                store_arr_text(&email, k->email);
                store_arr_text(&addr, k->address);
                store_arr_ts(&at, k->supplied_at ? k->supplied_at : b->now);
                n++;
        }
        int r = 0;
        if (n > 0) {
                if (store_arr_finish(&ord) < 0 || store_arr_finish(&name) < 0 || store_arr_finish(&phone) < 0 ||
                    store_arr_finish(&email) < 0 || store_arr_finish(&addr) < 0 || store_arr_finish(&at) < 0) {
                        r = store_fail(b->s, -ENOMEM, "case contacts: out of memory");
                } else {
                        store_params p = {0};
                        store_params_text(&p, c->case_id);
                        store_params_arr(&p, &ord);
                        store_params_arr(&p, &name);
                        store_params_arr(&p, &phone);
                        store_params_arr(&p, &email);
                        store_params_arr(&p, &addr);
                        store_params_arr(&p, &at);
                        r = exec_params(b->s, "case contacts", SQL_CONTACTS_UPSERT, &p, 0, NULL);
                }
        }
        store_arr_free(&ord);
        store_arr_free(&name);
        store_arr_free(&phone);
        store_arr_free(&email);
        store_arr_free(&addr);
        store_arr_free(&at);
        return r;
}

/* The case as stored, or CASE_NONE for a referral without one. */
static int load_case(batch *b, outcome_ctx *c, case_state *ret, bool *ret_exists, bool *ret_unknown_state) {
        *ret = (case_state){0};
        *ret_exists = false;
        *ret_unknown_state = false;
        store_params p = {0};
        store_params_text(&p, c->case_id);
        PGresult *res = NULL;
        int r = exec_params(b->s, "case", SQL_CASE_LOCK, &p, 0, &res);
        if (r < 0)
                return r;
        const char *district = PQgetvalue(c->ref, 0, REF_DISTRICT);
        if (PQntuples(res) == 1) {
                *ret_exists = true;
                int st = case_state_code_from_name(PQgetvalue(res, 0, CASE_C_STATE));
                int oc = decision_outcome_from_code(PQgetvalue(res, 0, CASE_C_OUTCOME));
                if (st < 0 || oc < 0)
                        *ret_unknown_state = true;
                ret->state = st < 0 ? CASE_NONE : (case_state_code)st;
                ret->outcome = oc < 0 ? OUTCOME_MANUAL_REVIEW : (decision_outcome)oc;
                int64_t limit_s = strtoll(PQgetvalue(res, 0, CASE_C_LIMIT), NULL, 10);
                case_profile(b->cfg, district, PQgetvalue(res, 0, CASE_C_PROFILE), limit_s, &c->prof);
                ret->limit = c->prof.limit;
                ret->deadline = field_usec(res, 0, CASE_C_DEADLINE);
                ret->deadline_kind = deadline_kind_from_code(PQgetvalue(res, 0, CASE_C_DK));
                ret->protective_assessment_due = field_usec(res, 0, CASE_C_PAD);
                ret->awaiting_assessment = field_bool(res, 0, CASE_C_AW_ASSESSMENT);
                ret->awaiting_clearance = field_bool(res, 0, CASE_C_AW_CLEARANCE);
                ret->awaiting_contact = field_bool(res, 0, CASE_C_AW_CONTACT);
                ret->scheduled_at = field_usec(res, 0, CASE_C_SCHEDULED);
                ret->police_attending = field_bool(res, 0, CASE_C_POLICE);
                ret->held_at = field_usec(res, 0, CASE_C_HELD);
                ret->closed_at = field_usec(res, 0, CASE_C_CLOSED);
                c->feedback_requested = field_bool(res, 0, CASE_C_FEEDBACK);
        } else {
                /* A NOT_ELIGIBLE referral: what its decision said, for an override to open the case. */
                int oc = decision_outcome_from_code(PQgetvalue(c->ref, 0, REF_D_OUTCOME));
                ret->state = CASE_NONE;
                ret->outcome = oc < 0 ? OUTCOME_NOT_ELIGIBLE : (decision_outcome)oc;
                case_profile(b->cfg, district, PQgetvalue(c->ref, 0, REF_D_PROFILE), 0, &c->prof);
                ret->limit = c->prof.limit;
                /* rules.c: an acute risk's assessment is due with any outcome. */
                ret->protective_assessment_due = field_usec(c->ref, 0, REF_D_PAD);
                ret->awaiting_assessment = ret->protective_assessment_due != 0;
                uint32_t flags = 0;
                if (reasons_parse(flag_texts, PQgetvalue(c->ref, 0, REF_D_FLAGS), &flags) < 0)
                        flags = 0;
                ret->awaiting_contact = (flags & FLAG_CONTACT_MISSING) != 0;
                c->feedback_requested = field_bool(c->ref, 0, REF_FEEDBACK);
        }
        PQclear(res);
        return 0;
}

static int write_case(batch *b, const outcome_ctx *c, const case_state *a, bool exists) {
        store_params p = {0};
        store_params_text(&p, c->case_id);
        if (!exists) {
                store_params_text(&p, PQgetvalue(c->ref, 0, REF_ID));
                store_params_text(&p, PQgetvalue(c->ref, 0, REF_DISTRICT));
        }
        store_params_text(&p, case_state_code_name(a->state));
        store_params_text(&p, decision_outcome_code(a->outcome));
        if (!exists) {
                store_params_text(&p, c->prof.name);
                store_params_int8(&p, (a->limit ? a->limit : c->prof.limit) / USEC_PER_SEC);
        }
        params_ts_null(&p, a->deadline);
        params_text_null(&p, a->deadline ? deadline_kind_code(a->deadline_kind) : "");
        params_ts_null(&p, a->protective_assessment_due);
        store_params_bool(&p, a->awaiting_assessment);
        store_params_bool(&p, a->awaiting_clearance);
        store_params_bool(&p, a->awaiting_contact);
        params_ts_null(&p, a->scheduled_at);
        store_params_bool(&p, a->police_attending);
        params_ts_null(&p, a->held_at);
        params_ts_null(&p, a->closed_at);
        if (!exists)
                store_params_bool(&p, c->feedback_requested);
        store_params_ts(&p, b->now);
        PGresult *res = NULL;
        int r = exec_params(b->s, exists ? "case update" : "case insert", exists ? SQL_CASE_UPDATE : SQL_CASE_INSERT,
                            &p, 0, &res);
        if (r < 0)
                return r;
        unsigned rows = cmd_rows(res);
        PQclear(res);
        if (rows != 1)
                return store_fail(b->s, -EIO, "case %s: %u rows", exists ? "update" : "insert", rows);
        return 0;
}

static int add_scheduling(batch *b, outcome_ctx *c, const case_state *a) {
        int r = load_contacts(b, c);
        if (r >= 0)
                r = load_personal(b, c);
        if (r >= 0)
                r = contacts_views(&c->contacts);
        if (r < 0)
                return r == -ENOMEM ? store_fail(b->s, r, "scheduling: out of memory") : r;
        const char *age_s = PQgetisnull(c->ref, 0, REF_D_AGE) ? NULL : PQgetvalue(c->ref, 0, REF_D_AGE);
        long age = age_s ? strtol(age_s, NULL, 10) : -1;
        char name[NAME_MAX_LEN];
        snprintf(name, sizeof name, "scheduling/%s", c->ev->event_id);
        const scheduling_info info = {
                .case_id = c->case_id,
                .district = PQgetvalue(c->ref, 0, REF_DISTRICT),
                .deadline = a->deadline,
                .deadline_kind = a->deadline_kind,
                .child_given_name = personal_text(c, 1),
                .child_family_name = personal_text(c, 2),
                /* rules.c: summon_guardians = age known and below adult_age (DS 2024:30). */
                .summon_guardians = age >= 0 && age < c->prof.adult_age,
                .guardians = c->contacts.gp,
                .n_guardians = c->contacts.n,
                .police_reporting_unit = PQgetvalue(c->ref, 0, REF_UNIT),
                .profile = &c->prof,
                .name = name,
        };
        r = events_scheduling(b->cfg, &info, b->now, &b->events);
        if (r < 0)
                return store_fail(b->s, r, "scheduling event: %s", strerror(-r));
        return 0;
}

static int add_feedback(batch *b, const outcome_ctx *c, const lifecycle_result *lr) {
        const feedback_ref ref = {
                .case_id = c->case_id,
                .referral_id = PQgetvalue(c->ref, 0, REF_ID),
                .police_case_number = PQgetvalue(c->ref, 0, REF_CASE_NUMBER),
                .feedback_requested = c->feedback_requested,
        };
        for (size_t i = 0; i < lr->n_feedback; i++) {
                char name[NAME_MAX_LEN];
                snprintf(name, sizeof name, "feedback/%s/%s", feedback_status_code(lr->feedback[i]), c->ev->event_id);
                /* events_feedback applies the level and the referral's wish (DOMAIN.md "Feedback to the police"). */
                int r = events_feedback(b->cfg, &ref, lr->feedback[i], lr->assessment, lr->after.scheduled_at, name,
                                        c->at, &b->events);
                if (r < 0)
                        return store_fail(b->s, r, "feedback event: %s", strerror(-r));
        }
        return 0;
}

static int add_audit(batch *b, const outcome_ctx *c, const case_state *before, const lifecycle_result *lr) {
        char bdesc[DESCRIBE_MAX], adesc[DESCRIBE_MAX + 2 * NAME_MAX_LEN], applied[RFC3339_MAX];
        if (case_state_describe(before, bdesc, sizeof bdesc) < 0 || case_state_describe(&lr->after, adesc, DESCRIBE_MAX) < 0)
                return store_fail(b->s, -ENOBUFS, "audit: case description too long");
        size_t n = strlen(adesc);
        snprintf(adesc + n, sizeof adesc - n, ";event_id=%s;applied_at=%s", c->ev->event_id,
                 clock_format_rfc3339(b->now, applied));
        audit_rows *a = &b->audit;
        store_arr_text(&a->case_id, c->case_id);
        store_arr_text(&a->referral_id, PQgetvalue(c->ref, 0, REF_ID));
        store_arr_ts(&a->at, c->at);
        store_arr_text(&a->kind, actor_kind_code(c->ev));
        store_arr_text(&a->name, c->ev->actor && c->ev->actor->name ? c->ev->actor->name : "");
        store_arr_text(&a->action, lr->action ? lr->action : "");
        store_arr_text(&a->before, bdesc);
        store_arr_text(&a->after, adesc);
        /* The override's reason: in the audit only, never in logs or feedback. */
        bool ov = lifecycle_kind(c->ev) == OUTCOME_KIND_OVERRIDE && c->ev->override;
        store_arr_text(&a->detail, ov && c->ev->override->reason ? c->ev->override->reason : "");
        a->n++;
        return 0;
}

static int apply_outcome(batch *b, store_message *m, outcome_ctx *c) {
        const CaseOutcome *ev = m->case_outcome;
        c->ev = ev;
        c->at = codec_timestamp_usec(ev->occurred_at);

        /* a. The case id. */
        if (ev->case_id && *ev->case_id) {
                if (!uuid_canonical(ev->case_id, c->case_id)) {
                        codec_error e = {.reason = DLR_UNKNOWN_CASE};
                        snprintf(e.detail, sizeof e.detail, "case_id is not a case id (a UUID)");
                        return dead_letter(b, m, &e, NULL);
                }
        } else {
                ids_case_id(ev->referral_id, c->case_id);
        }

        /* b. Once per event id. */
        store_params p = {0};
        store_params_text(&p, ev->event_id);
        store_params_text(&p, c->case_id);
        store_params_text(&p, outcome_kind_code(lifecycle_kind(ev)));
        store_params_ts(&p, c->at);
        store_params_ts(&p, b->now);
        store_params_text(&p, m->topic);
        store_params_int4(&p, m->partition);
        store_params_int8(&p, m->offset);
        PGresult *res = NULL;
        int r = exec_params(b->s, "outcome event", SQL_EVENT_INSERT, &p, 0, &res);
        if (r < 0)
                return r;
        unsigned rows = cmd_rows(res);
        PQclear(res);
        snprintf(m->case_id, sizeof m->case_id, "%s", c->case_id);
        if (rows == 0) {
                m->status = STORE_DUPLICATE;
                b->res.duplicates++;
                return 0;
        }

        /* c. The referral, then the case, locked. */
        p = (store_params){0};
        store_params_text(&p, c->case_id);
        r = exec_params(b->s, "referral", SQL_REFERRAL_LOCK, &p, 0, &c->ref);
        if (r < 0)
                return r;
        if (PQntuples(c->ref) != 1) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE,
                              *ev->case_id ? "no case or referral has this case_id" : "no referral has this referral_id",
                              NULL);
        }
        if (ev->referral_id && *ev->referral_id && strcmp(ev->referral_id, PQgetvalue(c->ref, 0, REF_ID)) != 0) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE, "case_id and referral_id name different cases", NULL);
        }
        if (PQgetisnull(c->ref, 0, REF_D_OUTCOME)) {
                m->case_id[0] = '\0';
                return reject(b, m, DLR_UNKNOWN_CASE, "the referral has no decision", NULL);
        }
        case_state before;
        bool exists, unknown_state;
        r = load_case(b, c, &before, &exists, &unknown_state);
        if (r < 0)
                return r;
        if (unknown_state)
                return reject(b, m, DLR_ILLEGAL_TRANSITION, "the case's stored state is unknown to this version",
                              c->case_id);

        /* d. The state machine. */
        lifecycle_result lr;
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
                if (r >= 0 && lifecycle_kind(ev) == OUTCOME_KIND_CONTACT_SUPPLIED)
                        r = contacts_merge(&c->contacts, ev->contact_details_supplied->guardians,
                                           ev->contact_details_supplied->n_guardians, c->at);
                if (r == -ENOMEM)
                        r = store_fail(b->s, r, "case contacts: out of memory");
                if (r >= 0)
                        r = write_contacts(b, c);
                if (r < 0)
                        return r;
        }
        if (lr.send_scheduling) {
                r = add_scheduling(b, c, &lr.after);
                if (r < 0)
                        return r;
        }
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

static int write_audit(batch *b) {
        audit_rows *a = &b->audit;
        if (a->n == 0)
                return 0;
        store_arr *arrs[] = {&a->case_id, &a->referral_id, &a->at, &a->kind, &a->name,
                             &a->action, &a->before, &a->after, &a->detail};
        store_params p = {0};
        for (size_t i = 0; i < sizeof arrs / sizeof *arrs; i++) {
                if (store_arr_finish(arrs[i]) < 0)
                        return store_fail(b->s, -ENOMEM, "audit: out of memory");
                store_params_arr(&p, arrs[i]);
        }
        return exec_params(b->s, "audit", SQL_AUDIT, &p, 0, NULL);
}

static int write_outbox(batch *b, unsigned *ret_rows) {
        *ret_rows = 0;
        if (b->events.n == 0)
                return 0;
        store_arr id = {0}, topic = {0}, key = {0}, type = {0}, t = {0}, payload = {0};
        store_arr_reset(&id, STORE_OID_TEXT);
        store_arr_reset(&topic, STORE_OID_TEXT);
        store_arr_reset(&key, STORE_OID_TEXT);
        store_arr_reset(&type, STORE_OID_TEXT);
        store_arr_reset(&t, STORE_OID_TIMESTAMPTZ);
        store_arr_reset(&payload, STORE_OID_BYTEA);
        for (size_t i = 0; i < b->events.n; i++) {
                const outbox_event *e = &b->events.v[i];
                store_arr_text(&id, e->event_id);
                store_arr_text(&topic, e->topic);
                store_arr_text(&key, e->key);
                store_arr_text(&type, e->ce_type);
                store_arr_ts(&t, e->ce_time);
                store_arr_bytes(&payload, e->payload, e->len);
        }
        int r;
        PGresult *res = NULL;
        if (store_arr_finish(&id) < 0 || store_arr_finish(&topic) < 0 || store_arr_finish(&key) < 0 ||
            store_arr_finish(&type) < 0 || store_arr_finish(&t) < 0 || store_arr_finish(&payload) < 0) {
                r = store_fail(b->s, -ENOMEM, "outbox: out of memory");
        } else {
                store_params p = {0};
                store_params_arr(&p, &id);
                store_params_arr(&p, &topic);
                store_params_arr(&p, &key);
                store_params_arr(&p, &type);
                store_params_arr(&p, &t);
                store_params_arr(&p, &payload);
                r = exec_params(b->s, "outbox", SQL_OUTBOX, &p, 0, &res);
                if (r >= 0)
                        *ret_rows = first_count(res);
                PQclear(res);
        }
        store_arr_free(&id);
        store_arr_free(&topic);
        store_arr_free(&key);
        store_arr_free(&type);
        store_arr_free(&t);
        store_arr_free(&payload);
        return r;
}

int store_outcome_batch(store *s, const config *cfg, const char *group, usec_t now,
                        store_message *msgs, size_t n,
                        const store_offset *offsets, size_t n_offsets,
                        store_batch_result *ret) {
        if (ret)
                *ret = (store_batch_result){0};
        if (!s || !cfg || !group || (n > 0 && !msgs) || (n_offsets > 0 && !offsets))
                return -EINVAL;
        if (!s->conn || PQstatus(s->conn) != CONNECTION_OK)
                return store_fail(s, -ECONNRESET, "not connected to PostgreSQL");
        if (PQpipelineStatus(s->conn) != PQ_PIPELINE_OFF)
                return store_fail(s, -EBUSY, "outcome batch: the connection is in pipeline mode");
        /* A failed batch may have left its transaction open: never join it. */
        store_rollback(s);
        if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
                return store_fail(s, -ECONNRESET, "outcome batch: the connection is not idle");

        batch b = {.s = s, .cfg = cfg, .now = now};
        audit_init(&b.audit);
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = STORE_PENDING;
                msgs[i].case_id[0] = '\0';
                msgs[i].outcome = 0;
                /* A rejection of an earlier attempt; a decoding error stays (its copy is in rejection). */
                if (msgs[i].case_outcome && msgs[i].error == &msgs[i].rejection)
                        msgs[i].error = NULL;
        }

        int r = exec_params(s, "begin", "BEGIN ISOLATION LEVEL READ COMMITTED", NULL, 0, NULL);
        if (r >= 0)
                r = offsets_cas(&b, group, offsets, n_offsets);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                store_message *m = &msgs[i];
                if (!m->case_outcome) {
                        codec_error e = {.reason = DLR_UNDECODABLE};
                        snprintf(e.detail, sizeof e.detail, "not a valid CaseOutcome");
                        r = dead_letter(&b, m, m->error ? m->error : &e, NULL);
                        continue;
                }
                outcome_ctx c = {0};
                r = apply_outcome(&b, m, &c);
                ctx_free(&c);
        }
        unsigned outbox_rows = 0;
        if (r >= 0)
                r = write_audit(&b);
        if (r >= 0)
                r = write_outbox(&b, &outbox_rows);
        /* Wake the relay; delivered at COMMIT (ARCHITECTURE.md: NOTIFY only wakes it). */
        if (r >= 0 && outbox_rows > 0)
                r = exec_params(s, "notify", SQL_NOTIFY, NULL, 0, NULL);
        if (r >= 0)
                r = exec_params(s, "commit", "COMMIT", NULL, 0, NULL);
        if (r < 0)
                store_rollback(s);
        b.res.events = outbox_rows;
        if (r >= 0 && ret)
                *ret = b.res;
        event_list_free(&b.events);
        audit_free(&b.audit);
        return r;
}
