/* The referral tables: referrals, persons and their history, referral_personal,
 * decisions, cases, case_contacts and case_alerts. Typed rows in, PostgreSQL
 * out: what goes in a row is decided by referral_batch.c. A batch is one READ
 * COMMITTED transaction in three pipelined round trips, whatever its size:
 *
 *   1. store_referrals_claim: BEGIN; the offsets' compare-and-set
 *      (store_rows.h); INSERT the referrals in referral_id order ON CONFLICT
 *      DO NOTHING RETURNING the new ones;
 *   2. store_referrals_history: the persons of the new referrals, inserted
 *      or updated in key order with the marks of their new referrals (the
 *      update locks the row, and waits for a concurrent batch that has it);
 *      the marks each row then holds are the history;
 *   3. store_referrals_write: personal rows, decisions, cases, contacts,
 *      alerts, duties, statistics rows, then the shared rows (store_rows.h);
 *      COMMIT.
 *
 * Every statement takes its rows as arrays in PostgreSQL's binary format
 * (unnest), so 500 referrals cost the same three round trips as 5. Two
 * instances deciding referrals of one person serialise on the persons row:
 * the second reads the first's referral as history. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages.h"
#include "pg.h"
#include "store_rows.h"

extern const pg_statement store_referral_statements[];

enum {
        RT_REFERRALS, RT_PERSONAL, RT_DECISIONS, RT_CASES, RT_CONTACTS, RT_ALERTS, RT_DUTIES, RT_STATS, RT_N,
        RT_COLS_MAX = 14,
};

/* The rows of one batch, column by column. */
typedef struct referral_rows {
        pg_arr c[RT_N][RT_COLS_MAX];
        unsigned rows[RT_N];
        pg_arr keys;                    /* the persons of round trip 2 */
        pg_arr key_marks;               /* their new referrals' marks, by person */
        pg_arr key_lo, key_hi;          /* each person's first and last in key_marks, from 1 */
        int32_t *hist;                  /* a person's history as read back */
        size_t cap_hist;
        /* The distinct profile_params texts of the decisions (the last
         * parameter of their insert): each decision names its text by its
         * position here, from 1 (schemas/016_profile_params.sql). */
        pg_arr params;
        char **param_texts;
        size_t n_params, cap_params;
        int q_alerts;                   /* the alerts' statement in round trip 3, -1 */
} referral_rows;

void referral_rows_reset(referral_rows *w);
void referral_rows_free(referral_rows *w);

typedef struct referral_row {
        const char *referral_id, *case_id;
        const uint8_t *person_key;      /* PERSON_KEY_LEN bytes, NULL: unknown identity */
        uint32_t marks;
        const char *district;
        usec_t reported_at, incident_at;
        bool feedback_requested;
        const char *police_case_number, *reporting_unit;
        const char *topic;
        int32_t partition;
        int64_t offset;
} referral_row;
void referral_rows_referral(referral_rows *w, const referral_row *r);

/* The PoliceReferral as consumed: the only copy of the child's identity,
 * names and the narrative (schemas/017_personal_payload.sql). */
typedef struct personal_row {
        const char *referral_id;
        const void *payload;
        size_t len;
} personal_row;
void referral_rows_personal(referral_rows *w, const personal_row *r);

typedef struct decision_row {
        const char *referral_id, *outcome, *reasons, *flags;
        int age;                        /* -1: unknown */
        usec_t deadline;                /* 0: none */
        const char *deadline_kind;      /* NULL: none */
        usec_t protective_assessment_due;
        const char *profile_name;
        uint32_t profile_version;
        int32_t params_index;           /* its profile's parameters: referral_rows_params */
        uint32_t prior_referrals, prior_qualifying;
} decision_row;
/* The position (from 1) of a text of a profile's parameters among the
 * rows' distinct texts, copied in when new; -ENOMEM. The texts are stored
 * once each (profile_params) with the decisions that name them. */
int32_t referral_rows_params(referral_rows *w, const char *text);
void referral_rows_decision(referral_rows *w, const decision_row *r);

typedef struct case_row {
        const char *case_id, *referral_id, *district, *state, *outcome, *profile_name;
        int64_t limit_seconds;
        usec_t deadline;
        const char *deadline_kind;
        usec_t protective_assessment_due;
        bool awaiting_assessment, awaiting_clearance, awaiting_contact, feedback_requested;
} case_row;
void referral_rows_case(referral_rows *w, const case_row *r);

void referral_rows_contact(referral_rows *w, const char *case_id, int32_t ordinal, const char *name,
                           const char *phone, const char *email, const char *postal_address);
void referral_rows_alert(referral_rows *w, const char *case_id, const char *kind, usec_t due_at);
/* The protective assessment a referral without a case owes (docs/domain.md
 * "Protective assessment"): assessment_duties, watched by deadline_watch.c. */
void referral_rows_duty(referral_rows *w, const char *case_id, const char *referral_id, const char *district,
                        usec_t due_at);

/* A new referral's referral_stats row, made by the batch (referral_stats.h):
 * the columns it can have at its decision; assessed_at, cleared_at,
 * contact_at, held_at and closed_at are NULL. A plain insert in the batch's
 * message order, keyed by the referral id since version 19
 * (store_referrals.c "ref_stats_insert"). */
typedef struct stats_row {
        const char *case_id, *referral_id, *district;
        usec_t reported_at;
        const uint8_t *person_key;      /* PERSON_KEY_LEN bytes, NULL: unknown identity */
        const char *outcome, *profile_name;
        uint32_t profile_version;
        const char *state;              /* the case's, NULL: no case */
        uint32_t facts;
        usec_t assessment_due;          /* 0: none */
        usec_t deadline;                /* the case's, 0: none */
} stats_row;
void referral_rows_stats(referral_rows *w, const stats_row *r);

/* Store the profile_params texts (n of them) that are not stored yet, in a
 * statement of its own (autocommit: call it outside a transaction). w's
 * parameter buffers are used and left empty. */
int store_referrals_register_params(pg_session *s, referral_rows *w, const char *const *texts, size_t n);

/* Round trip 1. For each referral the batch inserted (new: not seen before),
 * is_new(ctx, referral_id) is called; a negative return ends the batch.
 * -ESTALE when a partition's offset moved. */
int store_referrals_claim(pg_session *s, referral_rows *w, store_rows *shared, const char *group, usec_t now,
                          const store_offset *offsets, size_t n_offsets,
                          int (*is_new)(void *ctx, const char *referral_id), void *ctx);

/* Round trip 2, for the sorted distinct person keys (n > 0) and the n_new
 * new referrals of those persons: each one's key index (into keys) and marks,
 * added to its person's history. For every (person, marks) group of the
 * history, with them: row(ctx, key index, marks, count). */
int store_referrals_history(pg_session *s, referral_rows *w, const uint8_t (*keys)[PERSON_KEY_LEN], size_t n,
                            const int32_t *key_of, const uint32_t *marks, size_t n_new,
                            int (*row)(void *ctx, size_t key, uint32_t marks, uint32_t count), void *ctx);

/* Round trip 3: everything collected, the shared rows, and COMMIT unless
 * commit is false (a trial: the caller rolls back). The outbox rows and
 * alerts actually written in *ret_events, *ret_alerts. */
int store_referrals_write(pg_session *s, referral_rows *w, store_rows *shared, usec_t now, bool commit,
                          unsigned *ret_events, unsigned *ret_alerts);
