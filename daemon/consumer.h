/* The Kafka side of the pipeline: a librdkafka consumer in a group, with
 * auto-commit off. Positions come from PostgreSQL (store_load_offsets) on every
 * assignment and after every doubt (fenced batch, lost connection); batches are
 * built here from rd_kafka_consumer_poll() and handed to the store in one
 * transaction; Kafka's own committed offsets are written afterwards, once a
 * second (consumer_tell_kafka), only so that ordinary lag tools see progress. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"
#include "store.h"

typedef struct consumer consumer;

typedef struct consumer_figures {
        uint64_t decided, duplicates, dead_lettered, batches, fenced, events, alerts, outcomes;
        unsigned partitions;            /* assigned now */
        bool assigned_once;             /* the first assignment has completed (READY) */
        bool database_down;             /* partitions paused until PostgreSQL answers */
        uint64_t gaps_lost;             /* gaps of input gone from Kafka before it was read */
        uint64_t offsets_lost;          /* the offsets in them */
        uint64_t gaps_explained;        /* offsets Kafka skipped itself (compaction, transaction markers) */
        char last_error[200];
} consumer_figures;

/* bootstrap: overrides kafka.bootstrap.servers (the embedded cluster), or NULL.
 * The consumer subscribes to topics.referrals and topics.outcomes. */
int consumer_new(const config *cfg, const char *bootstrap, store *st, clock_source *clk,
                 consumer **ret, char *err, size_t err_size);

/* Poll what is waiting (never blocking), decide and store a batch when it is
 * full or old enough, reconnect to PostgreSQL when it was lost. Returns the
 * time at which it wants to be called again at the latest. */
usec_t consumer_step(consumer *c);
/* Becomes readable when messages or rebalance events wait. */
int consumer_fd(const consumer *c);

/* Finish the current batch (SIGTERM: drain), then leave the group. */
int consumer_drain(consumer *c);
void consumer_free(consumer *c);

/* Tests only: call fn instead of rd_kafka_seek_partitions (a seek that fails). */
typedef rd_kafka_error_t *(*consumer_seek_fn)(void *arg, rd_kafka_topic_partition_list_t *partitions);
void consumer_set_seek_fault(consumer *c, consumer_seek_fn fn, void *arg);
rd_kafka_t *consumer_kafka(consumer *c);

/* Apply a reloaded configuration between two batches: batch.max_messages,
 * batch.max_wait_ms and the limits take effect with the next batch (the batch
 * array grows when needed). -ENOMEM when it could not grow: the batches then
 * keep their old size, the rest applies. */
int consumer_reconfigure(consumer *c, const config *cfg);
void consumer_figures_read(const consumer *c, consumer_figures *ret);
/* Per-partition positions and lag, partitions assigned and the database's
 * availability into the metrics registry (metrics.h); the consumer's thread. */
void consumer_metrics_publish(consumer *c);
