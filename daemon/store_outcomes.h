/* The tables an outcome event touches: outcome_events (once per event id),
 * the referral and its decision, the case, referral_personal and
 * case_contacts. Typed rows in and out; what an outcome does to a case is
 * decided by outcome_batch.c. Results point into libpq's result, kept in
 * the struct until its _free. Errors as pg.h, never with values. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "contacts.h"
#include "lifecycle.h"
#include "pg.h"

extern const pg_statement store_outcome_statements[];

/* Record the event id: *ret_new false when it was recorded before. A held
 * conversation's participants and follow-up are comma-separated codes
 * (lifecycle_held_codes), NULL for other events. */
int store_outcome_event_claim(pg_session *s, const char *event_id, const char *case_id, const char *kind,
                              usec_t occurred_at, usec_t now, const char *topic, int32_t partition, int64_t offset,
                              const char *participants, const char *follow_up, bool *ret_new);
/* Take the record back (a rejected event: a later replay may apply). */
int store_outcome_event_unclaim(pg_session *s, const char *event_id);

/* A referral and its decision, locked FOR NO KEY UPDATE (every outcome of a
 * case takes this lock first, so two overrides of a NOT_ELIGIBLE referral
 * cannot both open its case). */
typedef struct stored_referral {
        PGresult *res;
        const char *referral_id, *district, *police_case_number, *reporting_unit;
        bool feedback_requested;
        usec_t received_at;
        bool decided;                   /* a decision row exists; then: */
        const char *outcome, *flags, *profile_name;
        int age;                        /* -1: unknown */
        usec_t protective_assessment_due;
        /* Its row in assessment_duties (a NOT_ELIGIBLE child with acute risk):
         * awaiting the assessment, or recorded; both false without a row. */
        bool duty_pending, duty_recorded;
} stored_referral;
/* 1 with the row, 0 when no referral has this case id. */
int store_referral_lock(pg_session *s, const char *case_id, stored_referral *ret);
void stored_referral_free(stored_referral *r);
/* The assessment owed by a referral without a case is recorded at `at`. */
int store_duty_record(pg_session *s, const char *case_id, usec_t at);

/* A case, locked FOR UPDATE. */
typedef struct stored_case {
        PGresult *res;
        const char *state, *outcome, *profile_name, *deadline_kind;
        int64_t limit_seconds;
        usec_t deadline, protective_assessment_due, scheduled_at, held_at, closed_at;
        bool awaiting_assessment, awaiting_clearance, awaiting_contact, police_attending, feedback_requested;
        int64_t revision;               /* store_case_write makes it revision + 1 */
} stored_case;
/* 1 with the row, 0 when the referral has no case. */
int store_case_lock(pg_session *s, const char *case_id, stored_case *ret);
void stored_case_free(stored_case *c);

/* A case as the lifecycle leaves it: UPDATE (revision + 1), or INSERT (an
 * override opening a case) with the columns only an insert sets. */
typedef struct case_insert {
        const char *referral_id, *district, *profile_name;
        int64_t limit_seconds;
        bool feedback_requested;
} case_insert;
int store_case_write(pg_session *s, const char *case_id, const case_state *a, const case_insert *insert,
                     usec_t now);

/* The referral's personal row: the PoliceReferral as consumed, which holds
 * the child's names (schemas/017_personal_payload.sql). */
typedef struct stored_personal {
        PGresult *res;
        const void *payload;            /* NULL when none (purged) */
        size_t len;
} stored_personal;
int store_referral_personal(pg_session *s, const char *referral_id, stored_personal *ret);
void stored_personal_free(stored_personal *p);

/* The case's case_contacts rows, appended to c (not dirty). */
int store_case_contacts(pg_session *s, const char *case_id, contacts *c);
/* Write the dirty contacts (upsert by ordinal); supplied_at 0 is now. */
int store_case_contacts_write(pg_session *s, const char *case_id, const contacts *c, usec_t now);
