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
        size_t bytes;                   /* its share of batch_bytes */
} batch_entry;

/* A lane's part of the batch while the lane stores it: its messages, moved
 * out of the batch, and the run that stores them (consumer_batch.c). */
typedef struct lane_flight {
        batch_entry *entries;           /* cap_batch of them */
        size_t n;
        batch_run *run;                 /* NULL: the lane holds nothing of ours */
} lane_flight;

typedef struct partition_state {
        char *topic;
        int32_t partition;
        int64_t stored_next;            /* next offset as the database holds it; -1: no row */
        int64_t told_next;              /* stored_next as last committed to Kafka, for lag tools; -1: none */
        int64_t pos;                    /* next offset to accept from Kafka */
        bool valid;                     /* stored_next was read from the database */
        bool seek_pending;              /* paused: its seek to pos failed; nothing accepted until it succeeds */
        bool fresh;                     /* the next message is the first since an assignment or a seek */
        size_t pending;                 /* its messages in the batch (gathered, not yet given to a lane) */
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

        batch_entry *batch;             /* gathered, not yet given to a lane */
        size_t n_batch, cap_batch;      /* in the batch; the array's size */
        lane_flight *flights;           /* one per lane */
        size_t max_batch;               /* batch.max_messages (<= cap_batch) */
        size_t batch_bytes;             /* payloads and their decoded forms */
        size_t flight_msgs, flight_bytes;       /* the same of what the lanes store */
        usec_t batch_started;           /* monotonic */
        bool batch_behind;              /* begun while a lane stored: stored as soon as a lane is free */
        usec_t last_flush_end;          /* monotonic: when the last batch_flush returned */
        usec_t tell_kafka_at;           /* monotonic: when the positions go to Kafka next (consumer_tell_kafka) */

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

/* Commit the stored positions that moved to Kafka, for lag tools only (the
 * database is the source of truth): at most once a second (CONSUMER_TELL_KAFKA_USEC),
 * or now when `now`. */
#define CONSUMER_TELL_KAFKA_USEC USEC_PER_SEC
void consumer_tell_kafka(consumer *c, bool now);

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
/* Decode km, a message of partition p, and add it to the batch (which takes it over). */
void consumer_batch_add(consumer *c, partition_state *p, rd_kafka_message_t *km);
/* The lane that stores an earlier part of partition p, or -1. */
int consumer_batch_holder(const consumer *c, const partition_state *p);
/* room[k], for each lane k: how many more messages of the partitions lane k
 * holds the batch may take, its share of batch.max_messages (a lanes_count()
 * part) less what the batch has of them already. Past it they wait in
 * librdkafka's queues, so that the batch keeps room for the partitions the
 * other lanes could store when they are done. */
void consumer_batch_held_room(const consumer *c, size_t *room);
/* The batch to the lanes. With two lanes or more, consumer_batch_send first
 * takes what the lanes that are done did, then gives each lane without a part
 * the batch's messages of the partitions no other lane holds, and returns
 * without waiting: the messages of partitions still held stay in the batch
 * for their lane's next part. A part small enough for one transaction while
 * no lane stores is stored at once (the latency at a low rate). A batch with
 * outcomes waits for every lane, then its referrals and then its outcomes are
 * stored, all at once, before it returns (an outcome may concern a case a
 * referral of the same batch opened). consumer_batch_land waits for every
 * lane and takes what they did (0 when nothing was in flight). Each returns
 * 0, -ESTALE when a part was fenced by the stored offsets
 * (c->fenced_messages say how many), or the store's error (the caller
 * re-reads positions or declares the database lost). Whatever uses the
 * positions the database holds, the consumer's own store (lane 0's), or the
 * lanes, lands first. */
int consumer_batch_send(consumer *c);
int consumer_batch_land(consumer *c);
/* consumer_batch_land for the lanes that are done only: never waits. */
int consumer_batch_reap(consumer *c);
bool consumer_batch_flying(const consumer *c);
/* Messages the lanes are storing. */
size_t consumer_batch_in_flight(const consumer *c);
/* The lanes' parts: allocated for cap_batch messages each (or grown to it). */
int consumer_flights_alloc(consumer *c);
void consumer_flights_free(consumer *c);
