/* PostgreSQL: the connection, the schema's migrations, and the transactions
 * that make allvarsd effectively once. Every batch of consumed messages is one
 * transaction that writes the referrals, decisions, cases, audit entries,
 * outbox rows, dead letters and the consumed offsets (compare-and-set), or
 * nothing. libpq only; no logging here (the caller logs). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "ids.h"
#include "rules.h"

#define STORE_SCHEMA_VERSION 9          /* the newest migration this build knows */

typedef struct store store;

/* Connect with a libpq conninfo string (password merged in when given).
 * Returns 0, or -ECONNREFUSED with a one-line reason in err. */
int store_connect(const char *conninfo, const char *password, store **ret, char *err, size_t err_size);
void store_free(store *s);
bool store_connected(const store *s);
int store_reconnect(store *s, char *err, size_t err_size);
int store_socket(const store *s);       /* PQsocket, for the event loop */
const char *store_last_error(const store *s);  /* one line, never personal data */

/* Apply the migrations in dir (NNN_name.sql, in order) that are not yet in
 * allvarsd.schema_migrations, each in its own transaction; idempotent.
 * Returns the number applied, or a negative errno. */
int store_migrate(store *s, const char *dir, char *err, size_t err_size);
/* The schema version in the database must be exactly STORE_SCHEMA_VERSION:
 * -EPROTO when newer or older (run --migrate), -ENOENT when none. */
int store_check_schema(store *s, int *ret_version);

/* Consumed offsets: the next offset to read for each partition, or -1 when the
 * database has none for it (then the consumer starts from the topic's start). */
int store_load_offsets(store *s, const char *group, const char *topic,
                       const int32_t *partitions, size_t n, int64_t *ret_next);

typedef enum store_message_status {
        STORE_PENDING = 0,
        STORE_DECIDED,                  /* a new referral, decided */
        STORE_DUPLICATE,                /* referral id seen before: nothing written */
        STORE_DEAD_LETTERED,
} store_message_status;

/* One consumed referral message of a batch. The consumer fills the inputs;
 * the store fills the outputs. Messages of one partition are in offset order. */
typedef struct store_message {
        /* inputs */
        const char *topic;
        int32_t partition;
        int64_t offset;
        const void *payload;
        size_t len;
        const PoliceReferral *referral; /* decoded and valid, or NULL */
        const CaseOutcome *case_outcome; /* for store_outcome_batch: decoded and valid, or NULL */
        const codec_error *error;       /* when referral == NULL: why it is dead-lettered */
        /* outputs */
        store_message_status status;
        char case_id[UUID_STR_LEN];
        decision_outcome outcome;
        uint32_t reasons, flags;
        codec_error rejection;          /* why the store dead-lettered a decoded message (an
                                         * outcome's unknown case or illegal transition);
                                         * error then points here */
} store_message;

/* The position of one partition: the batch moves it from expected_next (what
 * the database held when the consumer last read or wrote it; -1: no row yet)
 * to new_next (last offset in the batch + 1). */
typedef struct store_offset {
        const char *topic;
        int32_t partition;
        int64_t expected_next;
        int64_t new_next;
} store_offset;

typedef struct store_batch_result {
        unsigned decided, duplicates, dead_lettered, cases_opened, events, alerts;
} store_batch_result;

/* Decide and store a batch of referral messages in one transaction:
 *   1. compare-and-set every partition's offset (fenced: -ESTALE, nothing written);
 *   2. insert the referrals (ON CONFLICT DO NOTHING: duplicates), their personal
 *      rows and raw payloads;
 *   3. lock the persons (FOR UPDATE, ordered) and read their history;
 *   4. decide with rules_decide under config_profile_for(district);
 *   5. write decisions, cases, contacts, audit, outbox events (events.h), the
 *      alert of DEADLINE_PASSED_ON_ARRIVAL, and dead letters; COMMIT.
 * Returns 0; -ESTALE when an offset moved (reload offsets, re-seek);
 * -EAGAIN on a serialization failure or deadlock (retry the batch);
 * -ECONNRESET when the connection broke (outcome unknown: reconnect, reload
 * offsets, re-seek); another negative errno otherwise (nothing written). */
int store_referral_batch(store *s, const config *cfg, const char *group, usec_t now,
                         store_message *msgs, size_t n,
                         const store_offset *offsets, size_t n_offsets,
                         store_batch_result *ret);

/* A gap in an input partition (consumer.c): the offsets [from, to) that Kafka
 * no longer had (its log start was log_start) when the consumer came to read
 * them. Records it in partition_gaps with the operators' alert in the outbox,
 * in one transaction of its own; once per partition and first offset
 * (*ret_new false when it was recorded before). 0 or a negative errno
 * (-ECONNRESET: the connection broke). */
int store_partition_gap(store *s, const config *cfg, const char *group, const char *topic, int32_t partition,
                        int64_t from, int64_t to, int64_t log_start, usec_t now, bool *ret_new);

/* Figures for STATUS= and `allvarsctl status`. */
typedef struct store_figures {
        uint64_t cases_open;
        uint64_t outbox_backlog;        /* unsent rows: an upper bound (id span), 0 exactly when none */
        usec_t outbox_oldest;           /* created_at of the oldest unsent row, 0 when none */
        uint64_t dead_letters;
} store_figures;
int store_figures_read(store *s, store_figures *ret);

/* Lifecycle (store_outcomes.c): apply a batch of consumed outcome messages in
 * one transaction, with the same offset compare-and-set as referrals. Each
 * message is applied once by its event id (a repeat is STORE_DUPLICATE), to
 * the case named by case_id or by the police's referral_id; an unknown case
 * or an illegal transition is dead-lettered (STORE_DEAD_LETTERED) and the rest
 * flow. Outcomes use store_message with `case_outcome` set instead of `referral`. */
int store_outcome_batch(store *s, const config *cfg, const char *group, usec_t now,
                        store_message *msgs, size_t n,
                        const store_offset *offsets, size_t n_offsets,
                        store_batch_result *ret);

/* The raw libpq connection, for the modules that keep their SQL beside their
 * logic (store_outcomes.c, deadline_watch.c, retention.c, allvarsctl). */
struct pg_conn;
struct pg_conn *store_pg(store *s);
