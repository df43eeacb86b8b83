/* The referral batch (store.h, store_referral_batch): one READ COMMITTED
 * transaction in three pipelined round trips, whatever the batch size:
 *
 *   1. BEGIN; the offsets' compare-and-set; INSERT the referrals in
 *      referral_id order ON CONFLICT DO NOTHING RETURNING the new ones;
 *   2. the persons of the new referrals: INSERT ON CONFLICT DO NOTHING, lock
 *      them FOR UPDATE in key order, then (a new statement, so a new snapshot
 *      that sees what a concurrent batch committed while we waited for the
 *      lock) read their history;
 *   -  decide each new referral in C (rules.h);
 *   3. personal rows, decisions, cases, contacts, audit, alerts, outbox rows,
 *      dead letters, NOTIFY; COMMIT.
 *
 * Every statement is prepared once per session and takes its rows as arrays in
 * PostgreSQL's binary format (unnest), so 500 referrals cost the same three
 * round trips as 5. Two instances deciding referrals of one person serialise
 * on the persons row: the second reads the first's referral as history. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "identity.h"
#include "reasons.h"
#include "lifecycle.h"
#include "store_internal.h"

#define NOTIFY_CHANNEL "allvarsd_outbox"        /* relay.h RELAY_NOTIFY_CHANNEL */
#define ARR_POOL 72                     /* arrays of the largest round trip (3: 67) */
#define PARAMS_TEXT_MAX 1024

const store_statement store_referral_statements[] = {
        /* Fenced positions (NOTES.md: a revoked partition's messages may still
         * arrive): every row must match its expected value, or the batch is stale. */
        { "av_offsets_cas",
          "WITH v AS (SELECT * FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[])"
          "                  AS v(topic, part, expected, next)),"
          " upd AS (UPDATE consumer_offsets o SET next_offset = v.next, updated_at = now()"
          "           FROM v WHERE v.expected >= 0 AND o.consumer_group = $1::text AND o.topic = v.topic"
          "            AND o.partition = v.part AND o.next_offset = v.expected RETURNING 1),"
          " ins AS (INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
          "         SELECT $1::text, v.topic, v.part, v.next FROM v WHERE v.expected < 0"
          "         ON CONFLICT DO NOTHING RETURNING 1)"
          " SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)" },
        /* In referral_id order: two instances take the index entries in the same order. */
        { "av_referrals_insert",
          "INSERT INTO referrals (referral_id, case_id, person_key, marks, district, reported_at, incident_at,"
          "                       feedback_requested, police_case_number, reporting_unit, source_topic,"
          "                       source_partition, source_offset, received_at)"
          " SELECT u.id, u.case_id::uuid, u.pk, u.marks, u.district, u.reported, u.incident, u.feedback,"
          "        u.pcn, u.unit, u.topic, u.part, u.off, $14::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::text[], $6::timestamptz[],"
          "               $7::timestamptz[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::int4[],"
          "               $13::int8[])"
          "        AS u(id, case_id, pk, marks, district, reported, incident, feedback, pcn, unit, topic, part, off)"
          "  ORDER BY u.id COLLATE \"C\""
          " ON CONFLICT (referral_id) DO NOTHING"
          " RETURNING referral_id" },
        { "av_persons_insert",
          "INSERT INTO persons (person_key)"
          " SELECT k FROM unnest($1::bytea[]) AS k ORDER BY k"
          " ON CONFLICT DO NOTHING" },
        /* In key order (the array is sorted), so that two batches sharing
         * persons cannot deadlock here; one index lookup per key whatever
         * plan the statistics of the moment would suggest. */
        { "av_persons_lock",
          "SELECT 1 FROM unnest($1::bytea[]) AS u(k)"
          " CROSS JOIN LATERAL (SELECT 1 FROM persons p WHERE p.person_key = u.k FOR UPDATE) AS l" },
        /* The marks of each person's referrals as this transaction sees them
         * (with its own new ones, which decide_all() takes out again). One index
         * lookup per person, whatever the statistics say about the table. */
        { "av_history",
          "SELECT k.i, h.marks, h.n"
          "  FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, i)"
          "  CROSS JOIN LATERAL (SELECT r.marks, count(*) AS n FROM referrals r"
          "                       WHERE r.person_key = k.key GROUP BY r.marks) AS h" },
        { "av_personal_insert",
          "INSERT INTO referral_personal (referral_id, identity_number, birth_date, given_name, family_name,"
          "                               narrative, payload)"
          " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
          "                      $7::bytea[])" },
        { "av_decisions_insert",
          "INSERT INTO decisions (referral_id, outcome, reasons, flags, age, deadline, deadline_kind,"
          "                       protective_assessment_due, profile_name, profile_version, profile_params,"
          "                       prior_referrals, prior_qualifying, decided_at)"
          " SELECT u.*, $14::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[],"
          "               $7::text[], $8::timestamptz[], $9::text[], $10::int4[], $11::text[], $12::int4[],"
          "               $13::int4[]) AS u" },
        { "av_cases_insert",
          "INSERT INTO cases (case_id, referral_id, district, state, outcome, profile_name, limit_seconds,"
          "                   deadline, deadline_kind, protective_assessment_due, awaiting_assessment,"
          "                   awaiting_clearance, awaiting_contact, feedback_requested, created_at, updated_at)"
          " SELECT u.case_id::uuid, u.rid, u.district, u.state, u.outcome, u.profile, u.lim, u.deadline, u.dk,"
          "        u.pad, u.aa, u.ac, u.acon, u.fb, $15::timestamptz, $15::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[],"
          "               $8::timestamptz[], $9::text[], $10::timestamptz[], $11::bool[], $12::bool[],"
          "               $13::bool[], $14::bool[])"
          "        AS u(case_id, rid, district, state, outcome, profile, lim, deadline, dk, pad, aa, ac, acon, fb)" },
        { "av_contacts_insert",
          "INSERT INTO case_contacts (case_id, ordinal, name, phone, email, postal_address, supplied_at)"
          " SELECT u.case_id::uuid, u.ord, u.name, u.phone, u.email, u.addr, $7::timestamptz"
          "   FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[])"
          "        AS u(case_id, ord, name, phone, email, addr)" },
        { "av_audit_insert",
          "INSERT INTO audit (case_id, referral_id, at, actor_kind, action, before, after)"
          " SELECT u.case_id::uuid, u.rid, $6::timestamptz, 'DAEMON', u.action, u.before, u.after"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY"
          "        AS u(case_id, rid, action, before, after, ord)"
          "  ORDER BY u.ord" },
        { "av_alerts_insert",
          "INSERT INTO case_alerts (case_id, kind, due_at, raised_at)"
          " SELECT u.case_id::uuid, u.kind, u.due, $4::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(case_id, kind, due)"
          " ON CONFLICT DO NOTHING" },
        /* In the order the events were made: the relay publishes by id per key.
         * A new referral's events are new (their ids name its case). */
        { "av_outbox_insert",
          "INSERT INTO outbox (event_id, topic, key, ce_type, ce_time, payload)"
          " SELECT u.id::uuid, u.topic, u.key, u.type, u.t, u.payload"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])"
          "        WITH ORDINALITY AS u(id, topic, key, type, t, payload, ord)"
          "  ORDER BY u.ord" },
        /* A dead letter's event is named by its topic, partition and offset:
         * a replayed offset (offsets reset by hand) must not fail the batch,
         * nor publish the event again once delivered (in outbox_sent; the
         * one race left is in schemas/004_outbox_sent.sql). */
        { "av_outbox_insert_once",
          "INSERT INTO outbox (event_id, topic, key, ce_type, ce_time, payload)"
          " SELECT u.id::uuid, u.topic, u.key, u.type, u.t, u.payload"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])"
          "        WITH ORDINALITY AS u(id, topic, key, type, t, payload, ord)"
          "  WHERE NOT EXISTS (SELECT 1 FROM outbox_sent s WHERE s.event_id = u.id::uuid)"
          "  ORDER BY u.ord"
          " ON CONFLICT (event_id) DO NOTHING" },
        { "av_dead_letters_insert",
          "INSERT INTO dead_letters (event_id, source_topic, source_partition, source_offset, reason, detail,"
          "                          payload, received_at)"
          " SELECT u.id::uuid, u.topic, u.part, u.off, u.reason, u.detail, u.payload, $8::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::bytea[])"
          "        AS u(id, topic, part, off, reason, detail, payload)"
          " ON CONFLICT DO NOTHING" },
        { "av_notify", "SELECT pg_notify('" NOTIFY_CHANNEL "', '')" },
        { NULL, NULL },
};

/* One referral message of the batch. */
typedef struct item {
        store_message *m;
        const PoliceReferral *r;
        size_t idx;                     /* message order */
        bool first;                     /* the first copy of its referral id in the batch */
        bool is_new;                    /* inserted by this batch */
        bool has_key;
        int key;                        /* index into the batch's person keys, -1 */
        int next_same_person;           /* the next new item of the same person (message order), -1 */
        uint32_t marks;
        identity id;
        uint8_t person_key[PERSON_KEY_LEN];
        char case_id[UUID_STR_LEN];
        rules_history h;
        decision d;
        const profile *p;
} item;

typedef struct history_row {
        int key;
        uint32_t marks;
        uint32_t count;
} history_row;

typedef struct profile_text {
        const profile *p;
        char params[PARAMS_TEXT_MAX];
} profile_text;

struct store_scratch {
        item *items;
        size_t n_items, cap_items;
        item **sorted;                  /* the first copies, by referral_id */
        size_t n_sorted;
        uint8_t (*keys)[PERSON_KEY_LEN];
        size_t n_keys;
        int *last_of_key;
        history_row *hist;
        size_t n_hist, cap_hist;
        size_t *hist_start;             /* rows of key k: hist[hist_start[k] .. hist_start[k + 1]) */
        profile_text *profiles;
        size_t n_profiles, cap_profiles;
        store_arr arrs[ARR_POOL];
        size_t n_arrs;
        event_list events;
};

void store_scratch_free(struct store_scratch *sc) {
        if (!sc)
                return;
        free(sc->items);
        free(sc->sorted);
        free(sc->keys);
        free(sc->last_of_key);
        free(sc->hist);
        free(sc->hist_start);
        free(sc->profiles);
        for (size_t i = 0; i < ARR_POOL; i++)
                store_arr_free(&sc->arrs[i]);
        event_list_free(&sc->events);
        free(sc);
}

/* Room for n messages; buffers are kept for the next batch. */
static int scratch_reserve(store *s, size_t n) {
        if (!s->scratch) {
                s->scratch = calloc(1, sizeof *s->scratch);
                if (!s->scratch)
                        return -ENOMEM;
        }
        struct store_scratch *sc = s->scratch;
        if (n > sc->cap_items) {
                size_t cap = n < 64 ? 64 : n;
                item *items = realloc(sc->items, cap * sizeof *items);
                if (!items)
                        return -ENOMEM;
                sc->items = items;
                item **sorted = realloc(sc->sorted, cap * sizeof *sorted);
                if (!sorted)
                        return -ENOMEM;
                sc->sorted = sorted;
                uint8_t(*keys)[PERSON_KEY_LEN] = realloc(sc->keys, cap * sizeof *keys);
                if (!keys)
                        return -ENOMEM;
                sc->keys = keys;
                int *last = realloc(sc->last_of_key, cap * sizeof *last);
                if (!last)
                        return -ENOMEM;
                sc->last_of_key = last;
                size_t *start = realloc(sc->hist_start, (cap + 1) * sizeof *start);
                if (!start)
                        return -ENOMEM;
                sc->hist_start = start;
                sc->cap_items = cap;
        }
        sc->n_items = sc->n_sorted = sc->n_keys = sc->n_hist = 0;
        /* Profiles are described afresh per batch: a reloaded configuration
         * may put a different profile at a freed one's address. */
        sc->n_profiles = 0;
        event_list_clear(&sc->events);
        return 0;
}

static store_arr *arr(struct store_scratch *sc, uint32_t oid) {
        if (sc->n_arrs >= ARR_POOL)
                abort();                /* a programming error: the statements are fixed */
        store_arr *a = &sc->arrs[sc->n_arrs++];
        store_arr_reset(a, oid);
        return a;
}

/* Finish the arrays a[0..n) and add them as parameters. */
static int add_arrays(store_params *p, store_arr **a, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = store_arr_finish(a[i]);
                if (r < 0)
                        return r;
                store_params_arr(p, a[i]);
        }
        return 0;
}

static const char *profile_params(store *s, const profile *p) {
        struct store_scratch *sc = s->scratch;
        for (size_t i = 0; i < sc->n_profiles; i++)
                if (sc->profiles[i].p == p)
                        return sc->profiles[i].params;
        if (sc->n_profiles == sc->cap_profiles) {
                size_t cap = sc->cap_profiles ? sc->cap_profiles * 2 : 8;
                profile_text *v = realloc(sc->profiles, cap * sizeof *v);
                if (!v)
                        return NULL;
                sc->profiles = v;
                sc->cap_profiles = cap;
        }
        profile_text *t = &sc->profiles[sc->n_profiles++];
        t->p = p;
        profile_describe(p, t->params, sizeof t->params);       /* truncated at worst */
        return t->params;
}

static int item_by_id(const void *a, const void *b) {
        const item *x = *(item *const *)a, *y = *(item *const *)b;
        int c = strcmp(x->r->referral_id, y->r->referral_id);
        if (c)
                return c;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

static int id_to_item(const void *key, const void *elem) {
        return strcmp(key, (*(item *const *)elem)->r->referral_id);
}

static int key_cmp(const void *a, const void *b) {
        return memcmp(a, b, PERSON_KEY_LEN);
}

static int hist_cmp(const void *a, const void *b) {
        const history_row *x = a, *y = b;
        return (x->key > y->key) - (x->key < y->key);
}

static const char *str(const char *s) {
        return s ? s : "";
}

/* The referral as far as the store needs it before the decision: case id,
 * marks, and the person key from the identity number parsed on the Stockholm
 * date of reported_at, exactly as rules_decide parses it. */
static int item_prepare(const config *cfg, item *it) {
        const PoliceReferral *r = it->r;
        ids_case_id(r->referral_id, it->case_id);
        it->marks = rules_marks(r);
        it->key = -1;
        it->next_same_person = -1;
        const char *number = r->subject ? r->subject->identity_number : "";
        civil_date on = stockholm_date(codec_timestamp_usec(r->reported_at));
        if (identity_parse(str(number), on, &it->id) == IDENTITY_VALID) {
                int k = ids_person_key(cfg->pepper, cfg->pepper_len, it->id.normalised, it->person_key);
                if (k < 0)
                        return k;
                it->has_key = true;
        }
        return 0;
}

/* Round trip 1: BEGIN, the offsets, the referrals. */
static int rt_claim(store *s, const char *group, usec_t now, const store_offset *offsets, size_t n_offsets) {
        struct store_scratch *sc = s->scratch;
        sc->n_arrs = 0;
        store_params po = { 0 }, pr = { 0 };
        int r;

        if (n_offsets > 0) {
                store_arr *a[4] = { arr(sc, STORE_OID_TEXT), arr(sc, STORE_OID_INT4), arr(sc, STORE_OID_INT8),
                                    arr(sc, STORE_OID_INT8) };
                for (size_t i = 0; i < n_offsets; i++) {
                        store_arr_text(a[0], offsets[i].topic);
                        store_arr_int4(a[1], offsets[i].partition);
                        store_arr_int8(a[2], offsets[i].expected_next < 0 ? -1 : offsets[i].expected_next);
                        store_arr_int8(a[3], offsets[i].new_next);
                }
                store_params_text(&po, group);
                if ((r = add_arrays(&po, a, 4)) < 0)
                        return store_fail(s, r, "batch: out of memory");
        }
        if (sc->n_sorted > 0) {
                store_arr *a[13];
                static const uint32_t oids[13] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_BYTEA, STORE_OID_INT4,
                                                   STORE_OID_TEXT, STORE_OID_TIMESTAMPTZ, STORE_OID_TIMESTAMPTZ,
                                                   STORE_OID_BOOL, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
                                                   STORE_OID_INT4, STORE_OID_INT8 };
                for (size_t i = 0; i < 13; i++)
                        a[i] = arr(sc, oids[i]);
                for (size_t i = 0; i < sc->n_sorted; i++) {
                        const item *it = sc->sorted[i];
                        const PoliceReferral *ref = it->r;
                        store_arr_text(a[0], ref->referral_id);
                        store_arr_text(a[1], it->case_id);
                        if (it->has_key)
                                store_arr_bytes(a[2], it->person_key, PERSON_KEY_LEN);
                        else
                                store_arr_null(a[2]);
                        store_arr_int4(a[3], (int32_t)it->marks);
                        store_arr_text(a[4], str(ref->district));
                        store_arr_ts(a[5], codec_timestamp_usec(ref->reported_at));
                        store_arr_ts(a[6], codec_timestamp_usec(ref->incident_at));
                        store_arr_bool(a[7], ref->feedback_requested);
                        store_arr_text(a[8], str(ref->police_case_number));
                        store_arr_text(a[9], str(ref->reporting_unit));
                        store_arr_text(a[10], it->m->topic);
                        store_arr_int4(a[11], it->m->partition);
                        store_arr_int8(a[12], it->m->offset);
                }
                if ((r = add_arrays(&pr, a, 13)) < 0)
                        return store_fail(s, r, "batch: out of memory");
                store_params_ts(&pr, now);
        }

        store_pipe p;
        if ((r = store_pipe_begin(s, &p)) < 0)
                return r;
        int q_cas = -1, q_ref = -1;
        r = store_pipe_send(&p, "av_begin", NULL, 0);
        if (r >= 0 && n_offsets > 0)
                r = q_cas = store_pipe_send(&p, "av_offsets_cas", &po, 0);
        if (r >= 0 && sc->n_sorted > 0)
                r = q_ref = store_pipe_send(&p, "av_referrals_insert", &pr, 0);
        if (r >= 0)
                r = store_pipe_sync(&p);
        if (r < 0)
                goto out;

        if (q_cas >= 0 && strtoull(PQgetvalue(p.res[q_cas], 0, 0), NULL, 10) != n_offsets) {
                r = store_fail(s, -ESTALE, "batch: a partition's stored offset moved (rebalanced or another consumer)");
                goto out;
        }
        if (q_ref >= 0) {
                const PGresult *res = p.res[q_ref];
                for (int row = 0; row < PQntuples(res); row++) {
                        item **hit = bsearch(PQgetvalue(res, row, 0), sc->sorted, sc->n_sorted, sizeof *sc->sorted,
                                             id_to_item);
                        if (!hit) {
                                r = store_fail(s, -EIO, "batch: the database returned a referral id not in the batch");
                                goto out;
                        }
                        (*hit)->is_new = true;
                }
        }
out:
        store_pipe_end(&p);
        return r < 0 ? r : 0;
}

/* The distinct person keys of the new referrals, sorted; each item's index. */
static void collect_keys(struct store_scratch *sc) {
        for (size_t i = 0; i < sc->n_items; i++) {
                item *it = &sc->items[i];
                if (it->is_new && it->has_key)
                        memcpy(sc->keys[sc->n_keys++], it->person_key, PERSON_KEY_LEN);
        }
        qsort(sc->keys, sc->n_keys, PERSON_KEY_LEN, key_cmp);
        size_t u = 0;
        for (size_t i = 0; i < sc->n_keys; i++)
                if (u == 0 || memcmp(sc->keys[u - 1], sc->keys[i], PERSON_KEY_LEN) != 0)
                        memmove(sc->keys[u++], sc->keys[i], PERSON_KEY_LEN);
        sc->n_keys = u;
        for (size_t i = 0; i < sc->n_items; i++) {
                item *it = &sc->items[i];
                if (!it->is_new || !it->has_key)
                        continue;
                uint8_t(*k)[PERSON_KEY_LEN] = bsearch(it->person_key, sc->keys, sc->n_keys, PERSON_KEY_LEN, key_cmp);
                it->key = (int)(k - sc->keys);
        }
}

/* Round trip 2: the persons, locked, and their history. */
static int rt_persons(store *s) {
        struct store_scratch *sc = s->scratch;
        sc->n_arrs = 0;
        store_arr *keys = arr(sc, STORE_OID_BYTEA);
        for (size_t i = 0; i < sc->n_keys; i++)
                store_arr_bytes(keys, sc->keys[i], PERSON_KEY_LEN);
        store_params pk = { 0 };
        int r = store_arr_finish(keys);
        if (r < 0)
                return store_fail(s, r, "batch: out of memory");
        store_params_arr(&pk, keys);

        store_pipe p;
        if ((r = store_pipe_begin(s, &p)) < 0)
                return r;
        int q_hist = -1;
        r = store_pipe_send(&p, "av_persons_insert", &pk, 0);
        if (r >= 0)
                r = store_pipe_send(&p, "av_persons_lock", &pk, 0);
        if (r >= 0)
                r = q_hist = store_pipe_send(&p, "av_history", &pk, 0);
        if (r >= 0)
                r = store_pipe_sync(&p);
        if (r < 0)
                goto out;

        const PGresult *res = p.res[q_hist];
        size_t rows = (size_t)PQntuples(res);
        if (rows > sc->cap_hist) {
                history_row *h = realloc(sc->hist, rows * sizeof *h);
                if (!h) {
                        r = store_fail(s, -ENOMEM, "batch: out of memory");
                        goto out;
                }
                sc->hist = h;
                sc->cap_hist = rows;
        }
        for (size_t i = 0; i < rows; i++) {
                long long k = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
                if (k < 1 || (size_t)k > sc->n_keys) {
                        r = store_fail(s, -EIO, "batch: history row for an unknown person");
                        goto out;
                }
                sc->hist[i] = (history_row){
                        .key = (int)k - 1,
                        .marks = (uint32_t)strtoul(PQgetvalue(res, (int)i, 1), NULL, 10),
                        .count = (uint32_t)strtoul(PQgetvalue(res, (int)i, 2), NULL, 10),
                };
        }
        sc->n_hist = rows;
out:
        store_pipe_end(&p);
        return r < 0 ? r : 0;
}

/* The history of each new referral: the person's referrals that the history
 * read saw, less this one and the batch's later ones (message order); so the
 * stored referrals and the batch's earlier ones count. */
static int decide_all(store *s, const config *cfg, usec_t now) {
        struct store_scratch *sc = s->scratch;
        if (sc->n_hist > 0)     /* hist is NULL until the first history row (qsort needs a pointer) */
                qsort(sc->hist, sc->n_hist, sizeof *sc->hist, hist_cmp);
        for (size_t k = 0, h = 0; k <= sc->n_keys; k++) {
                while (h < sc->n_hist && sc->hist[h].key < (int)k)
                        h++;
                sc->hist_start[k] = h;
        }
        for (size_t k = 0; k < sc->n_keys; k++)
                sc->last_of_key[k] = -1;
        for (size_t i = 0; i < sc->n_items; i++) {
                item *it = &sc->items[i];
                if (!it->is_new || it->key < 0)
                        continue;
                if (sc->last_of_key[it->key] >= 0)
                        sc->items[sc->last_of_key[it->key]].next_same_person = (int)i;
                sc->last_of_key[it->key] = (int)i;
        }

        for (size_t i = 0; i < sc->n_items; i++) {
                item *it = &sc->items[i];
                if (!it->is_new)
                        continue;
                it->p = config_profile_for(cfg, it->r->district);
                it->h = (rules_history){ 0 };
                if (it->key >= 0) {
                        uint32_t ftm = it->p->first_time_marks;
                        uint64_t all = 0, qualifying = 0;
                        for (size_t h = sc->hist_start[it->key]; h < sc->hist_start[it->key + 1]; h++) {
                                all += sc->hist[h].count;
                                if (sc->hist[h].marks & ftm)
                                        qualifying += sc->hist[h].count;
                        }
                        for (int j = (int)i; j >= 0; j = sc->items[j].next_same_person) {
                                if (all == 0 || ((sc->items[j].marks & ftm) && qualifying == 0))
                                        return store_fail(s, -EIO, "batch: the history read missed this batch's referrals");
                                all--;
                                if (sc->items[j].marks & ftm)
                                        qualifying--;
                        }
                        it->h.prior_referrals = (uint32_t)all;
                        it->h.prior_qualifying = (uint32_t)qualifying;
                }
                rules_decide(it->p, it->r, &it->h, now, &it->d);
        }
        return 0;
}

/* The statements of round trip 3, their arrays and row counts. */
enum { T_PERSONAL, T_DECISIONS, T_CASES, T_CONTACTS, T_AUDIT, T_ALERTS, T_DEAD, T_OUTBOX, T_OUTBOX_ONCE, T_N };
static const char *const t_stmt[T_N] = {
        "av_personal_insert", "av_decisions_insert",    "av_cases_insert",  "av_contacts_insert",    "av_audit_insert",
        "av_alerts_insert",   "av_dead_letters_insert", "av_outbox_insert", "av_outbox_insert_once",
};
static const uint32_t t_cols[T_N][14] = {
        [T_PERSONAL] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
                         STORE_OID_TEXT, STORE_OID_BYTEA },
        [T_DECISIONS] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_INT4,
                          STORE_OID_TIMESTAMPTZ, STORE_OID_TEXT, STORE_OID_TIMESTAMPTZ, STORE_OID_TEXT,
                          STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_INT4, STORE_OID_INT4 },
        [T_CASES] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
                      STORE_OID_TEXT, STORE_OID_INT8, STORE_OID_TIMESTAMPTZ, STORE_OID_TEXT,
                      STORE_OID_TIMESTAMPTZ, STORE_OID_BOOL, STORE_OID_BOOL, STORE_OID_BOOL, STORE_OID_BOOL },
        [T_CONTACTS] = { STORE_OID_TEXT, STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
                         STORE_OID_TEXT },
        [T_AUDIT] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT },
        [T_ALERTS] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TIMESTAMPTZ },
        [T_OUTBOX] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TIMESTAMPTZ,
                       STORE_OID_BYTEA },
        [T_OUTBOX_ONCE] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TIMESTAMPTZ,
                            STORE_OID_BYTEA },
        [T_DEAD] = { STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_INT4, STORE_OID_INT8, STORE_OID_TEXT,
                     STORE_OID_TEXT, STORE_OID_BYTEA },
};

typedef struct writes {
        store_arr *c[T_N][14];
        size_t n_cols[T_N];
        size_t rows[T_N];
} writes;

static void writes_init(struct store_scratch *sc, writes *w) {
        *w = (writes){ 0 };
        for (int t = 0; t < T_N; t++) {
                size_t c = 0;
                for (; c < 14 && t_cols[t][c]; c++)
                        w->c[t][c] = arr(sc, t_cols[t][c]);
                w->n_cols[t] = c;
        }
}

static void audit_row(writes *w, const char *case_id, const char *referral_id, const char *action,
                      const char *before, const char *after) {
        store_arr **a = w->c[T_AUDIT];
        store_arr_text(a[0], case_id);
        store_arr_text(a[1], referral_id);
        store_arr_text(a[2], action);
        store_arr_text(a[3], before);
        store_arr_text(a[4], after);
        w->rows[T_AUDIT]++;
}

/* The rows of one decided referral, and its events. */
static int write_decided(store *s, const config *cfg, usec_t now, const item *it, writes *w,
                         store_batch_result *res) {
        struct store_scratch *sc = s->scratch;
        const PoliceReferral *r = it->r;
        const decision *d = &it->d;
        const char *rid = r->referral_id;
        const Allvarssamtal__V1__Person *subj = r->subject;
        char reasons[512], flags[512], deadline[RFC3339_MAX] = "";
        reasons_format(reason_texts, d->reasons, reasons, sizeof reasons);
        reasons_format(flag_texts, d->flags, flags, sizeof flags);
        if (d->deadline)
                clock_format_rfc3339(d->deadline, deadline);
        const char *params = profile_params(s, it->p);
        if (!params)
                return -ENOMEM;
        const char *dk = d->deadline_kind != DEADLINE_NONE ? deadline_kind_code(d->deadline_kind) : NULL;

        store_arr **a = w->c[T_PERSONAL];
        store_arr_text(a[0], rid);
        store_arr_text(a[1], subj ? str(subj->identity_number) : "");
        store_arr_text(a[2], subj ? str(subj->birth_date) : "");
        store_arr_text(a[3], subj ? str(subj->given_name) : "");
        store_arr_text(a[4], subj ? str(subj->family_name) : "");
        store_arr_text(a[5], str(r->narrative));
        store_arr_bytes(a[6], it->m->payload, it->m->payload ? it->m->len : 0);
        w->rows[T_PERSONAL]++;

        a = w->c[T_DECISIONS];
        store_arr_text(a[0], rid);
        store_arr_text(a[1], decision_outcome_code(d->outcome));
        store_arr_text(a[2], reasons);
        store_arr_text(a[3], flags);
        if (d->age >= 0)
                store_arr_int4(a[4], d->age);
        else
                store_arr_null(a[4]);
        store_arr_ts(a[5], d->deadline);
        store_arr_text(a[6], dk);
        store_arr_ts(a[7], d->protective_assessment_due);
        store_arr_text(a[8], it->p->name);
        store_arr_int4(a[9], (int32_t)it->p->version);
        store_arr_text(a[10], params);
        store_arr_int4(a[11], (int32_t)it->h.prior_referrals);
        store_arr_int4(a[12], (int32_t)it->h.prior_qualifying);
        w->rows[T_DECISIONS]++;

        char after[1400];
        snprintf(after, sizeof after, "outcome=%s;reasons=%s;flags=%s;deadline=%s", decision_outcome_code(d->outcome),
                 reasons, flags, deadline);
        audit_row(w, it->case_id, rid, "DECIDED", "", after);

        int k = events_for_decision(cfg, r, d, it->case_id, now, &sc->events);
        if (k < 0)
                return k;

        /* The case as the state machine opens it, so the two never disagree. */
        case_state cs;
        lifecycle_open(d, &cs);
        if (cs.state == CASE_NONE)
                return 0;
        const char *state = case_state_code_name(cs.state);
        res->cases_opened++;
        a = w->c[T_CASES];
        store_arr_text(a[0], it->case_id);
        store_arr_text(a[1], rid);
        store_arr_text(a[2], str(r->district));
        store_arr_text(a[3], state);
        store_arr_text(a[4], decision_outcome_code(d->outcome));
        store_arr_text(a[5], it->p->name);
        store_arr_int8(a[6], it->p->limit / USEC_PER_SEC);
        store_arr_ts(a[7], d->deadline);
        store_arr_text(a[8], dk);
        store_arr_ts(a[9], cs.protective_assessment_due);
        store_arr_bool(a[10], cs.awaiting_assessment);
        store_arr_bool(a[11], cs.awaiting_clearance);
        store_arr_bool(a[12], cs.awaiting_contact);
        store_arr_bool(a[13], r->feedback_requested);
        w->rows[T_CASES]++;

        a = w->c[T_CONTACTS];
        for (size_t g = 0; g < r->n_guardians; g++) {
                const Allvarssamtal__V1__Guardian *gd = r->guardians[g];
                if (!gd)
                        continue;
                store_arr_text(a[0], it->case_id);
                store_arr_int4(a[1], (int32_t)g + 1);
                store_arr_text(a[2], str(gd->name));
                store_arr_text(a[3], str(gd->phone));
                store_arr_text(a[4], str(gd->email));
                store_arr_text(a[5], str(gd->postal_address));
                w->rows[T_CONTACTS]++;
        }

        /* The deadline passed before the referral reached us: the MISSED alert
         * and the police's NOT_HELD_IN_TIME now, named as the deadline watch
         * names them (deadline_watch.c), so that it finds them raised. */
        if ((d->flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL) && d->deadline) {
                a = w->c[T_ALERTS];
                store_arr_text(a[0], it->case_id);
                store_arr_text(a[1], alert_kind_code(ALERT_MISSED));
                store_arr_ts(a[2], d->deadline);
                w->rows[T_ALERTS]++;
                k = events_alert(cfg, it->case_id, ALERT_MISSED, d->deadline, d->deadline_kind, str(r->district),
                                 state, now, &sc->events);
                if (k < 0)
                        return k;
                char name[64 + RFC3339_MAX];
                snprintf(name, sizeof name, "feedback/NOT_HELD_IN_TIME/%s", deadline);
                feedback_ref ref = {
                        .case_id = it->case_id,
                        .referral_id = rid,
                        .police_case_number = str(r->police_case_number),
                        .feedback_requested = r->feedback_requested,
                };
                size_t before = sc->events.n;
                k = events_feedback(cfg, &ref, FEEDBACK_NOT_HELD_IN_TIME, (decision_outcome)0, 0, name, now,
                                    &sc->events);
                if (k < 0)
                        return k;
                char b[64], af[200];
                snprintf(b, sizeof b, "state=%s", state);
                snprintf(af, sizeof af, "state=%s;alert=MISSED;due_at=%s%s", state, deadline,
                         sc->events.n > before ? ";feedback=NOT_HELD_IN_TIME" : "");
                audit_row(w, it->case_id, rid, "ALERT_MISSED", b, af);
        }
        return 0;
}

static int write_dead_letter(store *s, const config *cfg, usec_t now, const store_message *m, writes *w) {
        struct store_scratch *sc = s->scratch;
        static const codec_error unknown = { .reason = DLR_UNDECODABLE, .detail = "no reason given" };
        const codec_error *e = m->error ? m->error : &unknown;
        size_t before = sc->events.n;
        int k = events_dead_letter(cfg, m->topic, m->partition, m->offset, e, NULL, now, &sc->events);
        if (k < 0)
                return k;
        if (sc->events.n == before)
                return -EINVAL;
        store_arr **a = w->c[T_DEAD];
        store_arr_text(a[0], sc->events.v[before].event_id);
        store_arr_text(a[1], m->topic);
        store_arr_int4(a[2], m->partition);
        store_arr_int8(a[3], m->offset);
        store_arr_text(a[4], dead_letter_reason_code(e->reason));
        store_arr_text(a[5], e->detail);
        /* An oversized message is not kept: the table is not a blob store. */
        if (m->payload && m->len <= cfg->max_message_bytes)
                store_arr_bytes(a[6], m->payload, m->len);
        else
                store_arr_null(a[6]);
        w->rows[T_DEAD]++;
        return 0;
}

/* Round trip 3: everything else, and COMMIT. */
static int rt_write(store *s, const config *cfg, usec_t now, store_message *msgs, size_t n,
                    store_batch_result *res) {
        struct store_scratch *sc = s->scratch;
        sc->n_arrs = 0;
        writes w;
        writes_init(sc, &w);
        int r = 0;

        for (size_t i = 0; i < sc->n_items && r >= 0; i++)
                if (sc->items[i].is_new)
                        r = write_decided(s, cfg, now, &sc->items[i], &w, res);
        size_t first_dead_event = sc->events.n;
        for (size_t i = 0; i < n && r >= 0; i++)
                if (!msgs[i].referral)
                        r = write_dead_letter(s, cfg, now, &msgs[i], &w);
        if (r < 0)
                return store_fail(s, r, "batch: building the events failed: %s", strerror(-r));

        for (size_t i = 0; i < sc->events.n; i++) {
                const outbox_event *e = &sc->events.v[i];
                int t = i < first_dead_event ? T_OUTBOX : T_OUTBOX_ONCE;
                store_arr **a = w.c[t];
                store_arr_text(a[0], e->event_id);
                store_arr_text(a[1], e->topic);
                store_arr_text(a[2], e->key);
                store_arr_text(a[3], e->ce_type);
                store_arr_ts(a[4], e->ce_time);
                store_arr_bytes(a[5], e->payload, e->len);
                w.rows[t]++;
        }

        store_params params[T_N] = { 0 };
        for (int t = 0; t < T_N; t++) {
                if (!w.rows[t])
                        continue;
                if ((r = add_arrays(&params[t], w.c[t], w.n_cols[t])) < 0)
                        return store_fail(s, r, "batch: out of memory");
                /* decided_at, created_at, supplied_at, at, raised_at, received_at */
                if (t != T_PERSONAL && t != T_OUTBOX && t != T_OUTBOX_ONCE)
                        store_params_ts(&params[t], now);
        }

        store_pipe p;
        if ((r = store_pipe_begin(s, &p)) < 0)
                return r;
        int q[T_N];
        for (int t = 0; t < T_N; t++) {
                q[t] = -1;
                if (r >= 0 && w.rows[t])
                        r = q[t] = store_pipe_send(&p, t_stmt[t], &params[t], 0);
        }
        if (r >= 0 && sc->events.n > 0)
                r = store_pipe_send(&p, "av_notify", NULL, 0);
        if (r >= 0)
                r = store_pipe_send(&p, "av_commit", NULL, 0);
        if (r >= 0)
                r = store_pipe_sync(&p);
        if (r >= 0) {
                /* Rows inserted, without those ON CONFLICT DO NOTHING skipped. */
                for (int t = T_OUTBOX; t <= T_OUTBOX_ONCE; t++)
                        if (q[t] >= 0)
                                res->events += (unsigned)strtoul(PQcmdTuples(p.res[q[t]]), NULL, 10);
                if (q[T_ALERTS] >= 0)
                        res->alerts = (unsigned)strtoul(PQcmdTuples(p.res[q[T_ALERTS]]), NULL, 10);
        }
        store_pipe_end(&p);
        return r < 0 ? r : 0;
}

int store_referral_batch(store *s, const config *cfg, const char *group, usec_t now, store_message *msgs, size_t n,
                         const store_offset *offsets, size_t n_offsets, store_batch_result *ret) {
        store_batch_result res = { 0 };
        if (ret)
                *ret = res;
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = STORE_PENDING;
                msgs[i].case_id[0] = 0;
                msgs[i].outcome = 0;
                msgs[i].reasons = msgs[i].flags = 0;
        }
        int r = store_prepare_all(s);
        if (r < 0)
                return r;
        if ((r = scratch_reserve(s, n)) < 0)
                return store_fail(s, r, "batch: out of memory");
        /* A transaction left open by an earlier failure must not swallow this batch. */
        store_rollback(s);
        if (PQtransactionStatus(s->conn) != PQTRANS_IDLE)
                return store_fail(s, -ECONNRESET, "batch: the connection is not idle");

        struct store_scratch *sc = s->scratch;
        for (size_t i = 0; i < n; i++) {
                if (!msgs[i].referral)
                        continue;
                item *it = &sc->items[sc->n_items++];
                *it = (item){ .m = &msgs[i], .r = msgs[i].referral, .idx = i };
                if ((r = item_prepare(cfg, it)) < 0)
                        return store_fail(s, r, "batch: person key failed");
        }
        /* A later copy of a referral id in the same batch is a duplicate. */
        for (size_t i = 0; i < sc->n_items; i++)
                sc->sorted[i] = &sc->items[i];
        qsort(sc->sorted, sc->n_items, sizeof *sc->sorted, item_by_id);
        for (size_t i = 0; i < sc->n_items; i++) {
                item *it = sc->sorted[i];
                it->first = i == 0 || strcmp(sc->sorted[i - 1]->r->referral_id, it->r->referral_id) != 0;
                if (it->first)
                        sc->sorted[sc->n_sorted++] = it;
        }

        r = rt_claim(s, group, now, offsets, n_offsets);
        if (r >= 0) {
                collect_keys(sc);
                if (sc->n_keys > 0)
                        r = rt_persons(s);
        }
        if (r >= 0) {
                r = decide_all(s, cfg, now);
                if (r >= 0)
                        r = rt_write(s, cfg, now, msgs, n, &res);
        }
        event_list_clear(&sc->events);
        if (r < 0) {
                if (r != -ECONNRESET)
                        store_rollback(s);
                return r;
        }

        for (size_t i = 0; i < sc->n_items; i++) {
                const item *it = &sc->items[i];
                store_message *m = it->m;
                memcpy(m->case_id, it->case_id, UUID_STR_LEN);
                if (it->is_new) {
                        m->status = STORE_DECIDED;
                        m->outcome = it->d.outcome;
                        m->reasons = it->d.reasons;
                        m->flags = it->d.flags;
                        res.decided++;
                } else {
                        m->status = STORE_DUPLICATE;
                        res.duplicates++;
                }
        }
        for (size_t i = 0; i < n; i++)
                if (!msgs[i].referral) {
                        msgs[i].status = STORE_DEAD_LETTERED;
                        res.dead_lettered++;
                }
        if (ret)
                *ret = res;
        return 0;
}
