/* The rows every transaction shares, written in one place: the offsets'
 * compare-and-set, outbox rows (the events), audit rows, dead letters, the
 * referrals' statistics rows, and the NOTIFY that wakes the relay. The referral and outcome batches, the deadline
 * watch and retention collect their rows here and queue them on their round
 * trip (pg.h); the statements are prepared once per session. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "messages.h"
#include "codec.h"
#include "config.h"
#include "events.h"
#include "pg.h"

extern const pg_statement store_rows_statements[];

/* Every column of allvarsd.referral_stats, in its order: an upsert sets them
 * all (ROW(excluded.*)), whoever made the row. */
#define STATS_COLUMNS                                                                                  \
        "case_id, district, reported_at, person_key, outcome, profile_name, profile_version, state, facts," \
        " assessment_due, assessed_at, cleared_at, contact_at, deadline, held_at, closed_at, referral_id"

enum { ROWS_AUDIT_COLS = 9, ROWS_OUTBOX_COLS = 6, ROWS_DEAD_COLS = 11, ROWS_OFFSET_COLS = 4 };

typedef struct store_rows {
        pg_arr audit[ROWS_AUDIT_COLS];
        unsigned n_audit;
        pg_arr outbox[2][ROWS_OUTBOX_COLS];      /* [0] new events, [1] once: events that may exist already */
        unsigned n_outbox[2];
        pg_arr dead[ROWS_DEAD_COLS];
        unsigned n_dead;
        pg_arr offsets[ROWS_OFFSET_COLS];
        unsigned n_offsets;
        pg_arr stats;                   /* case ids whose referral_stats row is written again */
        unsigned n_stats;
        /* the statements queued by store_rows_send, -1 when none */
        int q_outbox[2];
} store_rows;

struct store;
/* Make the session ready for a transaction that writes shared rows: the
 * statements of list (store_referrals.h, ...) and of this module prepared
 * (store_ready); then BEGIN unless begin is false (the caller sends it in its
 * first round trip). -ENOTCONN without a usable session. */
int store_rows_ready(struct store *st, const pg_statement *list, bool begin);

/* Start a transaction's rows (keeps the buffers). */
void store_rows_reset(store_rows *w);
void store_rows_free(store_rows *w);

/* One audit row. actor_kind "DAEMON" for the daemon's own entries; before,
 * after and detail are never NULL in the table ("" when none). */
typedef struct audit_entry {
        const char *case_id;            /* may be NULL */
        const char *referral_id;
        usec_t at;
        const char *actor_kind;
        const char *actor_name;         /* NULL: "" */
        const char *action;
        const char *before, *after, *detail;    /* NULL: "" */
} audit_entry;
void store_rows_audit(store_rows *w, const audit_entry *e);

/* The outbox rows of events v[from..ev->n). once (or an event's own again):
 * an event made again (a replayed offset, the deadline watch, an outcome
 * retried) is skipped while in the outbox and once delivered (in outbox_sent:
 * the rows with once set have unique ids, schemas/012_outbox_once.sql);
 * without it, the events must be new (a new referral's: their ids name its
 * new case) and their ids are not indexed. */
void store_rows_events(store_rows *w, const event_list *ev, size_t from, bool once);

/* A dead letter: its DeadLetter event (events_dead_letter, appended to ev;
 * the caller writes it with store_rows_events, once) and its dead_letters row with the payload (not when over
 * cfg->max_message_bytes: the table is not a blob store). case_id may be NULL. */
int store_rows_dead_letter(store_rows *w, const config *cfg, usec_t now, const store_message *m,
                           const codec_error *err, const char *case_id, event_list *ev);

/* The referral of case_id changed in a way the follow-up report counts (an
 * outcome event, a MISSED alert of the deadline watch): its referral_stats
 * row is written again from the tables, after the transaction's other
 * statements (schemas/011_referral_stats.sql). A case id given twice, or with
 * no referral, is harmless. A new referral's row is made by the referral
 * batch itself (referral_stats.h, referral_rows_stats). */
void store_rows_stats(store_rows *w, const char *case_id);

/* The compare-and-set of the partitions' offsets: a just-revoked partition's
 * messages can still arrive (librdkafka #1359), so every partition must be
 * where this consumer last saw it, or nothing is written (docs/design.md
 * "Effectively once").
 * Queue it on p; after the sync, store_rows_offsets_check on its result. */
int store_rows_send_offsets(store_rows *w, pg_pipe *p, const char *group, const store_offset *offs, size_t n,
                            pg_params *params);
/* -ESTALE when a partition's stored offset moved (recorded in the session). */
int store_rows_offsets_check(pg_session *s, const PGresult *res, size_t n);

/* Queue the audit, outbox, dead-letter and statistics rows collected, and the NOTIFY when
 * there are events, on p. params must hold room for ROWS_PARAMS entries and
 * live until the sync. received_at of dead letters is now. */
#define ROWS_PARAMS 5
int store_rows_send(store_rows *w, pg_pipe *p, usec_t now, pg_params params[ROWS_PARAMS]);
/* After the sync: the outbox rows actually written (skipped ones not counted). */
unsigned store_rows_events_written(const store_rows *w, const pg_pipe *p);

/* One round trip of its own: the rows collected, and COMMIT ("store_commit",
 * store.h) unless commit is false. The outbox rows written in *ret_events. */
int store_rows_write(store_rows *w, pg_session *s, usec_t now, bool commit, unsigned *ret_events);
