/* The consumed messages of a batch, as the consumer hands them to the batch
 * module of their input (referral_batch.h, outcome_batch.h) and gets them
 * back: each message's fate, each partition's new position, and the batch's
 * figures. One batch is one transaction: everything in it is stored, or nothing. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "codec.h"
#include "ids.h"
#include "rules.h"

typedef enum store_message_status {
        STORE_PENDING = 0,
        STORE_DECIDED,                  /* a new referral decided, or an outcome applied */
        STORE_DUPLICATE,                /* referral id or outcome event id seen before: nothing written */
        STORE_DEAD_LETTERED,
} store_message_status;

/* One consumed message of a batch. The consumer fills the inputs; the batch
 * fills the outputs. Messages of one partition are in offset order. */
typedef struct store_message {
        /* inputs */
        const char *topic;
        int32_t partition;
        int64_t offset;
        const void *payload;
        size_t len;
        const PoliceReferral *referral; /* decoded and valid, or NULL */
        const CaseOutcome *case_outcome; /* for outcome_batch_store: decoded and valid, or NULL */
        const codec_error *error;       /* when referral == NULL: why it is dead-lettered */
        /* what the producer knows the message by, for its dead letter and a replay */
        const void *key;                /* the Kafka key; NULL when it had none */
        size_t key_len;
        const rd_kafka_headers_t *headers; /* its headers (header_blob.h); NULL when none */
        const char *source_event_id;    /* its own id (referral_id, event_id) when it could be
                                         * decoded, even when rejected; NULL otherwise */
        /* outputs */
        store_message_status status;
        char case_id[UUID_STR_LEN];
        decision_outcome outcome;
        uint32_t reasons, flags;
        codec_error rejection;          /* why the batch dead-lettered a decoded message (an
                                         * outcome's unknown case or illegal transition, a value
                                         * PostgreSQL refused); error then points here */
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
