/* What the consumer's files share (consumer.c: the loop and librdkafka's
 * handle; consumer_partitions.c: where each partition is; consumer_batch.c:
 * the batch and its transactions). Not for use outside daemon/consumer*.c.
 *
 * Calls go one way: consumer.c -> consumer_partitions.c -> consumer_batch.c. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "consumer.h"
#include "lanes.h"

#define BACKOFF_MIN (100 * 1000)
#define BACKOFF_MAX (30 * USEC_PER_SEC)
#define LATE_SLACK (1000)               /* 1 ms: polled right after a flush */
#define SEEK_TIMEOUT_MS 5000
/* A batch is stored when its payloads and their decoded forms reach this
 * (or batch.max_messages): with one message's decoding bounded by the codec
 * (CODEC_DECODE_BUDGET), a batch of hostile messages stays within the
 * daemon's memory target whatever the count. A batch's bytes are held up to
 * three times while it is stored (the messages, the dead letters' payload
 * array, libpq's output buffer) on top of librdkafka's prefetch: at 8 MiB,
 * 1 MB messages took the daemon to 57-66 MiB in one transaction
 * (tests/e2e/memory.bats); at 4 MiB, 44-47 MiB. Ordinary referrals (about
 * 1 KB) fill batch.max_messages long before it. */
#define CONSUMER_BATCH_MAX_BYTES (4u << 20)
#define WATERMARK_TIMEOUT_MS 2000       /* telling a gap's cause: one ListOffsets round trip */

typedef struct batch_run batch_run;

/* A consumed message, decoded when it joins the batch, so that the batch is
 * bounded by the memory it takes and not only by its count. */
typedef struct batch_entry {
        rd_kafka_message_t *km;
        codec_referral *referral;       /* decoded and valid, or NULL */
        codec_outcome *outcome;         /* decoded and valid, or NULL */
        codec_error error;              /* when neither: why it is dead-lettered */
} batch_entry;

typedef struct partition_state {
        char *topic;
        int32_t partition;
        int64_t stored_next;            /* next offset as the database holds it; -1: no row */
        int64_t pos;                    /* next offset to accept from Kafka */
        bool valid;                     /* stored_next was read from the database */
        bool seek_pending;              /* paused: its seek to pos failed; nothing accepted until it succeeds */
        bool fresh;                     /* the next message is the first since an assignment or a seek */
        /* Its own librdkafka queue, not forwarded to the consumer's: the batch
         * takes from every partition in turn (consumer.c take_round), so that
         * its parts, and the lanes they go to, are alike in size. NULL: its
         * messages come through the consumer's queue. */
        rd_kafka_queue_t *queue;
} partition_state;

struct consumer {
        const config *cfg;
        store *st;
        clock_source *clk;
        rd_kafka_t *rk;
        rd_kafka_queue_t *queue;
        int pipe[2];                    /* librdkafka writes here when the queue becomes non-empty */

        partition_state *parts;
        size_t n_parts;

        batch_entry *batch;
        size_t n_batch, cap_batch;      /* in the batch; the array's size */
        batch_entry *flight_batch;      /* the batch before, being stored (cap_batch too) */
        size_t n_flight;
        batch_run *flight;              /* its last run, when lanes besides lane 0 still store it */
        size_t max_batch;               /* batch.max_messages (<= cap_batch) */
        size_t batch_bytes;             /* payloads and their decoded forms */
        usec_t batch_started;           /* monotonic */
        usec_t last_flush_end;          /* monotonic: when the last batch_flush returned */

        bool database_down;
        bool database_hinted;           /* the outage was logged with its fix (sqlstate_outage_hint) */
        bool reload_needed;             /* some partitions lack a valid position */
        usec_t backoff;
        usec_t retry_at;                /* monotonic */
        usec_t seek_backoff;
        usec_t seek_retry_at;           /* monotonic: when to retry the partitions whose seek failed */

        lanes *lanes;                   /* the batch's connections (lane 0 is st) */
        bool params_registered;         /* cfg's profile texts are stored (referral_batch_register_profiles) */
        char lane_error[256];           /* why the last failed lane failed, for database_lost */
        size_t fenced_messages;         /* of the last flush: messages of parts fenced */

        consumer_seek_fn seek_fault;    /* tests only: stands in for rd_kafka_seek_partitions */
        void *seek_fault_arg;

        consumer_figures fig;
};

__attribute__((format(printf, 2, 3))) static inline void set_error(consumer *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->fig.last_error, sizeof c->fig.last_error, fmt, ap);
        va_end(ap);
}

static inline partition_state *part_find(consumer *c, const char *topic, int32_t partition) {
        for (size_t i = 0; i < c->n_parts; i++)
                if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0)
                        return &c->parts[i];
        return NULL;
}

/* consumer_partitions.c */
void parts_clear(consumer *c);
/* Seek the partitions (all, those whose last seek failed, or only `only`) to
 * their positions and resume those that moved; returns how many failed. */
size_t parts_seek(consumer *c, bool only_pending, partition_state *only);
/* Move every partition back to the position the database holds and resume. */
int parts_reseek(consumer *c);
bool part_has_position(const partition_state *p);
/* PostgreSQL failed with r: log once, pause every partition, drop the batch,
 * back off; consumer_step reconnects and re-reads the positions. */
void consumer_database_lost(consumer *c, int r);
void consumer_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l,
                           void *opaque);
/* The first message of a partition is above its position: true to take it. */
bool consumer_gap_seen(consumer *c, partition_state *p, int64_t offset);

/* consumer_batch.c */
/* A lane's part of a batch is at least this many messages (consumer_lanes_for). */
#define LANE_MIN_MESSAGES 64
/* How many of n_lanes lanes a part of n messages is split over (1 to lanes). */
unsigned consumer_lanes_for(unsigned n_lanes, size_t n);
void consumer_batch_drop(consumer *c);
bool consumer_batch_full(const consumer *c);
/* Decode km and add it to the batch (which takes it over). */
void consumer_batch_add(consumer *c, rd_kafka_message_t *km);
/* The batch to the lanes, referrals before outcomes: consumer_batch_send
 * starts storing it and returns once lane 0's part is done, leaving the other
 * lanes' in flight, so that the next batch is gathered while they finish;
 * consumer_batch_land waits for them and takes what they did (0 when
 * nothing was in flight). Each returns 0, -ESTALE when a part was fenced by
 * the stored offsets (c->fenced_messages say how many), or the store's error
 * (the caller re-reads positions or declares the database lost); send lands
 * what was in flight first. Whatever uses the
 * positions the database holds, or the lanes, lands first. */
int consumer_batch_send(consumer *c);
int consumer_batch_land(consumer *c);
bool consumer_batch_flying(const consumer *c);
