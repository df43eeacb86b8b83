/* The referral tables (store_referrals.h). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_referrals.h"

const pg_statement store_referral_statements[] = {
        /* In referral_id order: two instances take the index entries in the same order. */
        { "ref_referrals_insert",
          "INSERT INTO allvarsd.referrals (referral_id, case_id, person_key, marks, district, reported_at,"
          "                                incident_at, feedback_requested, police_case_number, reporting_unit,"
          "                                source_topic, source_partition, source_offset, received_at)"
          " SELECT u.id, u.case_id::uuid, u.pk, u.marks, u.district, u.reported, u.incident, u.feedback,"
          "        u.pcn, u.unit, u.topic, u.part, u.off, $14::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::bytea[], $4::int4[], $5::text[], $6::timestamptz[],"
          "               $7::timestamptz[], $8::bool[], $9::text[], $10::text[], $11::text[], $12::int4[],"
          "               $13::int8[])"
          "        AS u(id, case_id, pk, marks, district, reported, incident, feedback, pcn, unit, topic, part, off)"
          "  ORDER BY u.id COLLATE \"C\""
          " ON CONFLICT (referral_id) DO NOTHING"
          " RETURNING referral_id" },
        /* The persons of the batch's new referrals, each inserted with the
         * marks of its new referrals, or, when the row is there already, given
         * them (schemas/013_persons_history.sql): ON CONFLICT DO UPDATE locks
         * the row it meets, waiting for a transaction that has it, and updates
         * the latest version. In key order (the array is sorted) so that two
         * batches sharing persons cannot deadlock here. What each row holds
         * then is the history: the person's referrals as committed when the
         * lock was granted, and this batch's own (which the batch takes out
         * again); the daemon counts it by marks. $1 the sorted distinct keys;
         * $2 the new referrals' marks, person by person in key order; $3 and
         * $4 each person's first and last element of $2 (from 1). Measured
         * alone (bench/persons-history), slicing $2 and counting in the
         * daemon cost the server 13.1 µs a person, where grouping the marks
         * by person and counting them in SQL cost 17.7. */
        { "ref_persons_history",
          "INSERT INTO allvarsd.persons AS p (person_key, marks)"
          " SELECT k.key, ($2::int4[])[k.lo:k.hi]"
          "   FROM unnest($1::bytea[], $3::int4[], $4::int4[]) AS k(key, lo, hi)"
          "  ORDER BY k.key"
          " ON CONFLICT (person_key) DO UPDATE SET marks = p.marks || excluded.marks"
          " RETURNING p.person_key, p.marks" },
        { "ref_personal_insert",
          "INSERT INTO allvarsd.referral_personal (referral_id, payload)"
          " SELECT * FROM unnest($1::text[], $2::bytea[])" },
        /* The decisions, each naming its profile's parameters by key: $15 the
         * batch's distinct profile_params texts, $11 each row's position in
         * it (from 1). The key is md5 of the text (schemas/016_profile_params.sql),
         * so nothing is looked up; the texts the daemon registered at start
         * or reload (store_profile_params_register) are there, committed,
         * and the CTE's insert finds them in the index and writes nothing.
         * It stays so that a decision never names a text that is not stored:
         * one it has not seen yet is inserted with the decision. */
        { "ref_decisions_insert",
          "WITH pp AS (SELECT md5(x.t)::uuid AS key, x.t, x.i"
          "              FROM unnest($15::text[]) WITH ORDINALITY AS x(t, i)),"
          " ins AS (INSERT INTO allvarsd.profile_params (params_key, params)"
          "         SELECT pp.key, pp.t FROM pp ORDER BY pp.key"
          "         ON CONFLICT (params_key) DO NOTHING)"
          " INSERT INTO allvarsd.decisions (referral_id, outcome, reasons, flags, age, deadline, deadline_kind,"
          "                                protective_assessment_due, profile_name, profile_version,"
          "                                params_key, prior_referrals, prior_qualifying, decided_at)"
          " SELECT u.id, u.outcome, u.reasons, u.flags, u.age, u.deadline, u.dk, u.pad, u.profile, u.version,"
          "        pp.key, u.prior, u.qualifying, $14::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int4[], $6::timestamptz[],"
          "               $7::text[], $8::timestamptz[], $9::text[], $10::int4[], $11::int4[], $12::int4[],"
          "               $13::int4[])"
          "        AS u(id, outcome, reasons, flags, age, deadline, dk, pad, profile, version, pi, prior, qualifying)"
          "   JOIN pp ON pp.i = u.pi" },
        /* The profiles' texts as the daemon knows them at start and after a
         * reload (referral_batch_register_profiles), in autocommit: committed
         * before a batch names them, so that the insert above meets them
         * committed and never waits for a lane's transaction that has one
         * uncommitted (schemas/016_profile_params.sql). */
        { "ref_params_register",
          "INSERT INTO allvarsd.profile_params (params_key, params)"
          " SELECT md5(x.t)::uuid, x.t FROM unnest($1::text[]) AS x(t) ORDER BY 1"
          " ON CONFLICT (params_key) DO NOTHING" },
        { "ref_cases_insert",
          "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
          "                            limit_seconds, deadline, deadline_kind, protective_assessment_due,"
          "                            awaiting_assessment, awaiting_clearance, awaiting_contact,"
          "                            feedback_requested, created_at, updated_at)"
          " SELECT u.case_id::uuid, u.rid, u.district, u.state, u.outcome, u.profile, u.lim, u.deadline, u.dk,"
          "        u.pad, u.aa, u.ac, u.acon, u.fb, $15::timestamptz, $15::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[],"
          "               $8::timestamptz[], $9::text[], $10::timestamptz[], $11::bool[], $12::bool[],"
          "               $13::bool[], $14::bool[])"
          "        AS u(case_id, rid, district, state, outcome, profile, lim, deadline, dk, pad, aa, ac, acon, fb)" },
        { "ref_contacts_insert",
          "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, email, postal_address, supplied_at)"
          " SELECT u.case_id::uuid, u.ord, u.name, u.phone, u.email, u.addr, $7::timestamptz"
          "   FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[])"
          "        AS u(case_id, ord, name, phone, email, addr)" },
        { "ref_alerts_insert",
          "INSERT INTO allvarsd.case_alerts (case_id, kind, due_at, raised_at)"
          " SELECT u.case_id::uuid, u.kind, u.due, $4::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(case_id, kind, due)"
          " ON CONFLICT DO NOTHING" },
        { "ref_duties_insert",
          "INSERT INTO allvarsd.assessment_duties (case_id, referral_id, district, due_at, created_at)"
          " SELECT u.case_id::uuid, u.rid, u.district, u.due, $5::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS u(case_id, rid, district, due)" },
        /* The new referrals' statistics rows as the batch made them
         * (referral_stats.h); the columns left out are NULL. A plain insert:
         * the referrals are this transaction's own (their insert above), so no
         * other transaction can have written their rows, nor be writing them
         * (store_rows.h "rows_stats" selects a referral's row from the tables,
         * which show it to nobody before this commit). ON CONFLICT cost an
         * index search per row before the insert's own. */
        { "ref_stats_insert",
          "INSERT INTO allvarsd.referral_stats (case_id, district, reported_at, person_key, outcome, profile_name,"
          "                                     profile_version, state, facts, assessment_due, deadline, referral_id)"
          " SELECT u.case_id::uuid, u.district, u.reported, u.pk, u.outcome, u.profile, u.version, u.state,"
          "        u.facts, u.due, u.deadline, u.rid"
          "   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bytea[], $5::text[], $6::text[],"
          "               $7::int4[], $8::text[], $9::int4[], $10::timestamptz[], $11::timestamptz[], $12::text[])"
          "        AS u(case_id, district, reported, pk, outcome, profile, version, state, facts, due, deadline, rid)" },
        { NULL, NULL },
};

#define T PG_OID_TEXT
#define TS PG_OID_TIMESTAMPTZ
#define B PG_OID_BOOL
static const uint32_t cols[RT_N][RT_COLS_MAX] = {
        [RT_REFERRALS] = { T, T, PG_OID_BYTEA, PG_OID_INT4, T, TS, TS, B, T, T, T, PG_OID_INT4, PG_OID_INT8 },
        [RT_PERSONAL] = { T, PG_OID_BYTEA },
        [RT_DECISIONS] = { T, T, T, T, PG_OID_INT4, TS, T, TS, T, PG_OID_INT4, PG_OID_INT4, PG_OID_INT4, PG_OID_INT4 },
        [RT_CASES] = { T, T, T, T, T, T, PG_OID_INT8, TS, T, TS, B, B, B, B },
        [RT_CONTACTS] = { T, PG_OID_INT4, T, T, T, T },
        [RT_ALERTS] = { T, T, TS },
        [RT_DUTIES] = { T, T, T, TS },
        [RT_STATS] = { T, T, TS, PG_OID_BYTEA, T, T, PG_OID_INT4, T, PG_OID_INT4, TS, TS, T },
};
#undef T
#undef TS
#undef B
static const char *const insert_stmt[RT_N] = {
        "ref_referrals_insert", "ref_personal_insert", "ref_decisions_insert",
        "ref_cases_insert",     "ref_contacts_insert", "ref_alerts_insert", "ref_duties_insert",
        "ref_stats_insert",
};

static size_t n_cols(int t) {
        size_t c = 0;
        while (c < RT_COLS_MAX && cols[t][c])
                c++;
        return c;
}

void referral_rows_reset(referral_rows *w) {
        for (int t = 0; t < RT_N; t++) {
                for (size_t c = 0; c < n_cols(t); c++)
                        pg_arr_reset(&w->c[t][c], cols[t][c]);
                w->rows[t] = 0;
        }
        pg_arr_reset(&w->keys, PG_OID_BYTEA);
        pg_arr_reset(&w->key_marks, PG_OID_INT4);
        pg_arr_reset(&w->key_lo, PG_OID_INT4);
        pg_arr_reset(&w->key_hi, PG_OID_INT4);
        pg_arr_reset(&w->params, PG_OID_TEXT);
        for (size_t i = 0; i < w->n_params; i++)
                free(w->param_texts[i]);
        w->n_params = 0;
        w->q_alerts = -1;
}

void referral_rows_free(referral_rows *w) {
        for (int t = 0; t < RT_N; t++)
                for (size_t c = 0; c < RT_COLS_MAX; c++)
                        pg_arr_free(&w->c[t][c]);
        pg_arr_free(&w->keys);
        pg_arr_free(&w->key_marks);
        pg_arr_free(&w->key_lo);
        pg_arr_free(&w->key_hi);
        free(w->hist);
        w->hist = NULL;
        w->cap_hist = 0;
        pg_arr_free(&w->params);
        for (size_t i = 0; i < w->n_params; i++)
                free(w->param_texts[i]);
        free(w->param_texts);
        w->param_texts = NULL;
        w->n_params = w->cap_params = 0;
}

void referral_rows_referral(referral_rows *w, const referral_row *r) {
        pg_arr *a = w->c[RT_REFERRALS];
        pg_arr_text(&a[0], r->referral_id);
        pg_arr_text(&a[1], r->case_id);
        if (r->person_key)
                pg_arr_bytes(&a[2], r->person_key, PERSON_KEY_LEN);
        else
                pg_arr_null(&a[2]);
        pg_arr_int4(&a[3], (int32_t)r->marks);
        pg_arr_text(&a[4], r->district);
        pg_arr_ts(&a[5], r->reported_at);
        pg_arr_ts(&a[6], r->incident_at);
        pg_arr_bool(&a[7], r->feedback_requested);
        pg_arr_text(&a[8], r->police_case_number);
        pg_arr_text(&a[9], r->reporting_unit);
        pg_arr_text(&a[10], r->topic);
        pg_arr_int4(&a[11], r->partition);
        pg_arr_int8(&a[12], r->offset);
        w->rows[RT_REFERRALS]++;
}

void referral_rows_personal(referral_rows *w, const personal_row *r) {
        pg_arr *a = w->c[RT_PERSONAL];
        pg_arr_text(&a[0], r->referral_id);
        pg_arr_bytes(&a[1], r->payload, r->payload ? r->len : 0);
        w->rows[RT_PERSONAL]++;
}

/* A handful per batch: a linear search. */
int32_t referral_rows_params(referral_rows *w, const char *text) {
        for (size_t i = 0; i < w->n_params; i++)
                if (strcmp(w->param_texts[i], text) == 0)
                        return (int32_t)i + 1;
        if (w->n_params == w->cap_params) {
                size_t cap = w->cap_params ? w->cap_params * 2 : 4;
                char **v = realloc(w->param_texts, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                w->param_texts = v;
                w->cap_params = cap;
        }
        char *copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        w->param_texts[w->n_params++] = copy;
        pg_arr_text(&w->params, copy);
        return (int32_t)w->n_params;
}

void referral_rows_decision(referral_rows *w, const decision_row *r) {
        pg_arr *a = w->c[RT_DECISIONS];
        pg_arr_text(&a[0], r->referral_id);
        pg_arr_text(&a[1], r->outcome);
        pg_arr_text(&a[2], r->reasons);
        pg_arr_text(&a[3], r->flags);
        if (r->age >= 0)
                pg_arr_int4(&a[4], r->age);
        else
                pg_arr_null(&a[4]);
        pg_arr_ts(&a[5], r->deadline);
        pg_arr_text(&a[6], r->deadline_kind);
        pg_arr_ts(&a[7], r->protective_assessment_due);
        pg_arr_text(&a[8], r->profile_name);
        pg_arr_int4(&a[9], (int32_t)r->profile_version);
        pg_arr_int4(&a[10], r->params_index);
        pg_arr_int4(&a[11], (int32_t)r->prior_referrals);
        pg_arr_int4(&a[12], (int32_t)r->prior_qualifying);
        w->rows[RT_DECISIONS]++;
}

void referral_rows_case(referral_rows *w, const case_row *r) {
        pg_arr *a = w->c[RT_CASES];
        pg_arr_text(&a[0], r->case_id);
        pg_arr_text(&a[1], r->referral_id);
        pg_arr_text(&a[2], r->district);
        pg_arr_text(&a[3], r->state);
        pg_arr_text(&a[4], r->outcome);
        pg_arr_text(&a[5], r->profile_name);
        pg_arr_int8(&a[6], r->limit_seconds);
        pg_arr_ts(&a[7], r->deadline);
        pg_arr_text(&a[8], r->deadline_kind);
        pg_arr_ts(&a[9], r->protective_assessment_due);
        pg_arr_bool(&a[10], r->awaiting_assessment);
        pg_arr_bool(&a[11], r->awaiting_clearance);
        pg_arr_bool(&a[12], r->awaiting_contact);
        pg_arr_bool(&a[13], r->feedback_requested);
        w->rows[RT_CASES]++;
}

void referral_rows_contact(referral_rows *w, const char *case_id, int32_t ordinal, const char *name,
                           const char *phone, const char *email, const char *postal_address) {
        pg_arr *a = w->c[RT_CONTACTS];
        pg_arr_text(&a[0], case_id);
        pg_arr_int4(&a[1], ordinal);
        pg_arr_text(&a[2], name);
        pg_arr_text(&a[3], phone);
        pg_arr_text(&a[4], email);
        pg_arr_text(&a[5], postal_address);
        w->rows[RT_CONTACTS]++;
}

void referral_rows_alert(referral_rows *w, const char *case_id, const char *kind, usec_t due_at) {
        pg_arr *a = w->c[RT_ALERTS];
        pg_arr_text(&a[0], case_id);
        pg_arr_text(&a[1], kind);
        pg_arr_ts(&a[2], due_at);
        w->rows[RT_ALERTS]++;
}

void referral_rows_duty(referral_rows *w, const char *case_id, const char *referral_id, const char *district,
                        usec_t due_at) {
        pg_arr *a = w->c[RT_DUTIES];
        pg_arr_text(&a[0], case_id);
        pg_arr_text(&a[1], referral_id);
        pg_arr_text(&a[2], district);
        pg_arr_ts(&a[3], due_at);
        w->rows[RT_DUTIES]++;
}

void referral_rows_stats(referral_rows *w, const stats_row *r) {
        pg_arr *a = w->c[RT_STATS];
        pg_arr_text(&a[0], r->case_id);
        pg_arr_text(&a[1], r->district);
        pg_arr_ts(&a[2], r->reported_at);
        if (r->person_key)
                pg_arr_bytes(&a[3], r->person_key, PERSON_KEY_LEN);
        else
                pg_arr_null(&a[3]);
        pg_arr_text(&a[4], r->outcome);
        pg_arr_text(&a[5], r->profile_name);
        pg_arr_int4(&a[6], (int32_t)r->profile_version);
        pg_arr_text(&a[7], r->state);
        pg_arr_int4(&a[8], (int32_t)r->facts);
        pg_arr_ts(&a[9], r->assessment_due);
        pg_arr_ts(&a[10], r->deadline);
        pg_arr_text(&a[11], r->referral_id);
        w->rows[RT_STATS]++;
}

/* The table's columns as parameters, then the time the statement stamps, if any. */
static int table_params(pg_session *s, referral_rows *w, int t, usec_t now, pg_params *p) {
        *p = (pg_params){ 0 };
        int r = 0;
        for (size_t c = 0; c < n_cols(t); c++)
                if (pg_params_arr(p, &w->c[t][c]) < 0)
                        r = -ENOMEM;
        if (r < 0)
                return pg_fail(s, r, "batch: out of memory");
        /* received_at, decided_at, created_at, supplied_at, raised_at, created_at */
        if (t != RT_PERSONAL && t != RT_STATS)
                pg_params_ts(p, now);
        /* the decisions' distinct profile_params texts */
        if (t == RT_DECISIONS && pg_params_arr(p, &w->params) < 0)
                return pg_fail(s, -ENOMEM, "batch: out of memory");
        return 0;
}

int store_referrals_claim(pg_session *s, referral_rows *w, store_rows *shared, const char *group, usec_t now,
                          const store_offset *offsets, size_t n_offsets,
                          int (*is_new)(void *ctx, const char *referral_id), void *ctx) {
        pg_params po, pr;
        pg_pipe p;
        int r = pg_pipe_begin(s, &p);
        if (r < 0)
                return r;
        int q_cas = -1, q_ref = -1;
        r = pg_pipe_send(&p, "store_begin", NULL, 0);
        if (r >= 0 && n_offsets > 0)
                r = q_cas = store_rows_send_offsets(shared, &p, group, offsets, n_offsets, &po);
        if (r >= 0 && w->rows[RT_REFERRALS] > 0 && (r = table_params(s, w, RT_REFERRALS, now, &pr)) >= 0)
                r = q_ref = pg_pipe_send(&p, insert_stmt[RT_REFERRALS], &pr, 0);
        if (r >= 0)
                r = pg_pipe_sync(&p);
        if (r >= 0 && q_cas >= 0)
                r = store_rows_offsets_check(s, p.res[q_cas], n_offsets);
        for (int row = 0; r >= 0 && q_ref >= 0 && row < PQntuples(p.res[q_ref]); row++)
                if ((r = is_new(ctx, PQgetvalue(p.res[q_ref], row, 0))) < 0)
                        r = pg_fail(s, r, "batch: the database returned a referral id not in the batch");
        pg_pipe_end(&p);
        return r < 0 ? r : 0;
}

static int int32_cmp(const void *a, const void *b) {
        int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
        return (x > y) - (x < y);
}

/* One person's history as the statement returned it: counted by marks. */
static int count_history(pg_session *s, referral_rows *w, const PGresult *res, int i, size_t key,
                         int (*row)(void *ctx, size_t key, uint32_t marks, uint32_t count), void *ctx) {
        const char *data = PQgetvalue(res, i, 1);
        size_t len = (size_t)PQgetlength(res, i, 1), n;
        int r = pg_arr_int4_read(data, len, w->hist, w->cap_hist, &n);
        if (r == -E2BIG) {
                size_t cap = n < 64 ? 64 : n;
                int32_t *h = realloc(w->hist, cap * sizeof *h);
                if (!h)
                        return pg_fail(s, -ENOMEM, "batch: out of memory");
                w->hist = h;
                w->cap_hist = cap;
                r = pg_arr_int4_read(data, len, w->hist, w->cap_hist, &n);
        }
        if (r < 0)
                return pg_fail(s, -EIO, "batch: a person's history is not an array of marks");
        if (n > 1)
                qsort(w->hist, n, sizeof *w->hist, int32_cmp);
        for (size_t j = 0; j < n;) {
                size_t k = j;
                while (k < n && w->hist[k] == w->hist[j])
                        k++;
                if ((r = row(ctx, key, (uint32_t)w->hist[j], (uint32_t)(k - j))) < 0)
                        return pg_fail(s, r, "batch: out of memory");
                j = k;
        }
        return 0;
}

int store_referrals_history(pg_session *s, referral_rows *w, const uint8_t (*keys)[PERSON_KEY_LEN], size_t n,
                            const int32_t *key_of, const uint32_t *marks, size_t n_new,
                            int (*row)(void *ctx, size_t key, uint32_t marks, uint32_t count), void *ctx) {
        assert(n > 0);
        pg_arr_reset(&w->keys, PG_OID_BYTEA);
        pg_arr_reset(&w->key_marks, PG_OID_INT4);
        pg_arr_reset(&w->key_lo, PG_OID_INT4);
        pg_arr_reset(&w->key_hi, PG_OID_INT4);
        /* The marks person by person: each person's end in $2 (a counting sort). */
        uint32_t *end = calloc(n + 1, sizeof *end);
        int32_t *by_key = malloc((n_new ? n_new : 1) * sizeof *by_key);
        if (!end || !by_key) {
                free(end);
                free(by_key);
                return pg_fail(s, -ENOMEM, "batch: out of memory");
        }
        for (size_t i = 0; i < n_new; i++) {
                assert(key_of[i] >= 0 && (size_t)key_of[i] < n);
                end[key_of[i] + 1]++;
        }
        for (size_t k = 0; k < n; k++) {
                pg_arr_bytes(&w->keys, keys[k], PERSON_KEY_LEN);
                pg_arr_int4(&w->key_lo, (int32_t)end[k] + 1);
                end[k + 1] += end[k];
                pg_arr_int4(&w->key_hi, (int32_t)end[k + 1]);
        }
        for (size_t i = 0; i < n_new; i++)      /* end[k] is now person k's first place */
                by_key[end[key_of[i]]++] = (int32_t)marks[i];
        for (size_t i = 0; i < n_new; i++)
                pg_arr_int4(&w->key_marks, by_key[i]);
        free(end);
        free(by_key);
        pg_params pk = { 0 };
        if (pg_params_arr(&pk, &w->keys) < 0 || pg_params_arr(&pk, &w->key_marks) < 0 ||
            pg_params_arr(&pk, &w->key_lo) < 0 || pg_params_arr(&pk, &w->key_hi) < 0)
                return pg_fail(s, -ENOMEM, "batch: out of memory");
        PGresult *res = NULL;
        int r = pg_exec(s, "ref_persons_history", &pk, 1, &res);
        for (int i = 0; r >= 0 && i < PQntuples(res); i++) {
                const uint8_t(*k)[PERSON_KEY_LEN] = NULL;
                if (PQgetlength(res, i, 0) == PERSON_KEY_LEN)
                        k = bsearch(PQgetvalue(res, i, 0), keys, n, PERSON_KEY_LEN, ids_person_key_cmp);
                if (!k) {
                        r = pg_fail(s, -EIO, "batch: history row for an unknown person");
                        break;
                }
                r = count_history(s, w, res, i, (size_t)(k - keys), row, ctx);
        }
        PQclear(res);
        return r < 0 ? r : 0;
}

int store_referrals_write(pg_session *s, referral_rows *w, store_rows *shared, usec_t now, bool commit,
                          unsigned *ret_events, unsigned *ret_alerts) {
        *ret_events = *ret_alerts = 0;
        pg_params params[RT_N], shared_params[ROWS_PARAMS];
        pg_pipe p;
        int r = pg_pipe_begin(s, &p);
        if (r < 0)
                return r;
        /* cases before the rows that name them (audit, alerts) */
        for (int t = RT_PERSONAL; t < RT_N && r >= 0; t++) {
                if (w->rows[t] == 0)
                        continue;
                if ((r = table_params(s, w, t, now, &params[t])) >= 0)
                        r = pg_pipe_send(&p, insert_stmt[t], &params[t], 0);
                if (t == RT_ALERTS)
                        w->q_alerts = r;
        }
        if (r >= 0)
                r = store_rows_send(shared, &p, now, shared_params);
        if (r >= 0 && commit)
                r = pg_pipe_send(&p, "store_commit", NULL, 0);
        if (r >= 0)
                r = pg_pipe_sync(&p);
        if (r >= 0) {
                /* Rows inserted, without those ON CONFLICT DO NOTHING skipped. */
                *ret_events = store_rows_events_written(shared, &p);
                if (w->q_alerts >= 0)
                        *ret_alerts = pg_cmd_rows(p.res[w->q_alerts]);
        }
        pg_pipe_end(&p);
        return r < 0 ? r : 0;
}

int store_referrals_register_params(pg_session *s, referral_rows *w, const char *const *texts, size_t n) {
        pg_arr_reset(&w->params, PG_OID_TEXT);
        for (size_t i = 0; i < n; i++)
                pg_arr_text(&w->params, texts[i]);
        pg_params p = { 0 };
        if (pg_params_arr(&p, &w->params) < 0)
                return pg_fail(s, -ENOMEM, "out of memory");
        int r = pg_exec(s, "ref_params_register", &p, 0, NULL);
        pg_arr_reset(&w->params, PG_OID_TEXT);
        return r < 0 ? r : 0;
}
