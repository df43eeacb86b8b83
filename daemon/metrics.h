/* The daemon's metrics: counters, gauges and histograms in one process-wide
 * registry, and their rendering in the Prometheus text exposition format
 * (version 0.0.4). Pure: no I/O, no logging.
 *
 * Every value is a C11 atomic, written with relaxed stores by the thread that
 * counts (the batch loop, a lane, the relay, the periodic jobs, librdkafka's
 * statistics callback) and read the same way by the scraping thread
 * (metrics_http.c), so a scrape never waits for a batch and a batch never
 * waits for a scrape. A histogram's count is the sum of its buckets as read,
 * so +Inf and _count always agree; its _sum may be one observation ahead.
 *
 * Database figures (outbox depth, open cases, ...) are set by the periodic
 * jobs from their own queries; the scrape serves them from here.
 *
 * Labels hold codes, topic names, partition and broker numbers only: never a
 * referral id, case id or anything personal. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* Counters and gauges without labels, or with one label of a fixed set. */
typedef enum metric {
        /* counters */
        M_REFERRALS_CONSUMED,           /* referral messages in committed batches */
        M_REFERRALS_DECIDED,            /* label: outcome (decision_outcome) */
        M_DUPLICATES,                   /* label: kind (metrics_kind) */
        M_DEAD_LETTERS,                 /* label: reason (dead_letter_reason) */
        M_OUTCOMES_APPLIED,
        M_OUTCOMES_REJECTED,            /* label: reason (dead_letter_reason) */
        M_BATCHES_FENCED,
        M_EVENTS_PUBLISHED,             /* label: topic (metrics_topic) */
        M_EVENT_DELIVERY_FAILURES,      /* label: topic (metrics_topic) */
        M_ALERTS_RAISED,                /* label: kind (alert_kind) */
        M_DATABASE_ERRORS,              /* label: class (sqlstate_class) */
        M_PARTITION_GAPS,               /* label: topic (metrics_topic) */
        M_LANE_SECONDS,                 /* label: step (lane_step); added in microseconds */
        /* gauges */
        M_RELAY_LOCK_HELD,              /* this instance: 0 or 1 */
        M_RELAY_IN_FLIGHT,
        M_PARTITIONS_ASSIGNED,
        M_DATABASE_AVAILABLE,           /* the batch connection: 0 or 1 */
        M_DB_OUTBOX_DEPTH,              /* the database figures: */
        M_DB_OUTBOX_OLDEST_AGE,
        M_DB_CASES_OPEN,
        M_DB_CASES_OVERDUE,
        M_DB_PROTECTIVE_OVERDUE,
        M_DB_DEAD_LETTERS,
        M_DB_RELAY_HOLDERS,
        M_DB_FIGURES_TIME,
        M_DB_CASE_FIGURES_TIME,
        M_START_TIME,
        _M_MAX,
} metric;

typedef enum metric_histogram {
        H_BATCH_MESSAGES,               /* messages per committed transaction */
        H_BATCH_COMMIT,                 /* seconds: one lane's transaction, BEGIN to COMMIT */
        H_DECISION_AGE,                 /* seconds: Kafka timestamp to the decision's COMMIT */
        H_PUBLISH_LATENCY,              /* seconds: outbox insert to delivery report */
        _H_MAX,
} metric_histogram;

/* The topics, by role; their names come from the configuration. */
typedef enum metrics_topic {
        MT_REFERRALS,
        MT_OUTCOMES,
        MT_SCHEDULING,
        MT_FEEDBACK,
        MT_ALERTS,
        MT_DEAD_LETTER,
        _MT_MAX,
} metrics_topic;

/* Where a lane's time goes (allvarsd_lane_seconds_total): the steps of a
 * referral batch's transaction, an outcome batch's whole transaction, and a
 * lane's connection waiting for the other lanes. metrics_lane_time adds to
 * one. */
typedef enum lane_step {
        LS_PREPARE,                     /* before the transaction: ids, person keys, sorting */
        LS_DEDUP,                       /* round trip 1: the referrals' insert (which finds the duplicates), the offsets */
        LS_HISTORY,                     /* round trip 2: the persons' histories */
        LS_RULES,                       /* the rules (rules_decide) */
        LS_ROWS,                        /* the rows and events of the decided referrals, built */
        LS_WRITE,                       /* round trip 3: the rows sent and stored, the COMMIT */
        LS_TURN,                        /* waiting for another lane's persons (lanes.h "turns") */
        LS_OUTCOMES,                    /* an outcome batch's transaction, whole */
        LS_RUN_WAIT,                    /* done (or without work), while the run's other lanes store */
        _LS_MAX,
} lane_step;

typedef enum metrics_kind {
        MK_REFERRAL,
        MK_OUTCOME,
        _MK_MAX,
} metrics_kind;

/* librdkafka's clients whose statistics are kept. */
typedef enum metrics_client {
        MC_CONSUMER,
        MC_PRODUCER,
        _MC_MAX,
} metrics_client;

#define METRICS_MAX_PARTITIONS 256      /* per input topic; higher partitions are not shown */
#define METRICS_MAX_BROKERS    16       /* per client, by slot; see metrics_broker_set */
#define METRICS_LABEL_MAX      64

/* Label values of M_* with a label range over 0 .. N-1 of their enum; values
 * outside are ignored. For metrics without a label, `label` is ignored. */
void metrics_add(metric m, unsigned label, uint64_t n);
void metrics_set(metric m, unsigned label, double v);
void metrics_observe(metric_histogram h, double v);
static inline void metrics_inc(metric m, unsigned label) {
        metrics_add(m, label, 1);
}
/* Add the time since *since (monotonic µs) to step, and move *since to now. */
void metrics_lane_time(lane_step step, usec_t *since);
uint64_t metrics_counter_value(metric m, unsigned label);
double metrics_gauge_value(metric m, unsigned label);
/* Count and sum of a histogram, and the count of observations <= le (a bucket bound). */
void metrics_histogram_read(metric_histogram h, uint64_t *ret_count, double *ret_sum);

/* The names of the topics (before the first scrape; names longer than
 * METRICS_LABEL_MAX - 1 are cut). */
void metrics_set_topic(metrics_topic t, const char *name);
/* The role of a topic name, or -1. */
int metrics_topic_of(const char *name);
/* Build information, shown as allvarsd_build_info{version, schema_version}. */
void metrics_set_build(const char *version, int schema_version);

/* Per partition of an input topic (MT_REFERRALS, MT_OUTCOMES): the stored
 * position (next offset to read) and the lag (high watermark minus it). Only
 * the consumer's thread writes these. */
void metrics_partition_set(metrics_topic t, int32_t partition, int64_t stored_next, int64_t lag);
/* Forget every partition of every topic (a revocation). */
void metrics_partitions_clear(void);

/* librdkafka's statistics of one broker (slot < METRICS_MAX_BROKERS, in the
 * order the statistics list them; nodeid < 0 clears the slot). Times in
 * seconds. Only the thread that serves that client's callbacks writes. */
typedef struct metrics_broker {
        int32_t nodeid;
        double rtt_avg, rtt_p99;
        int64_t outbuf_requests, waitresp_requests;
        int64_t requests_sent, responses_received; /* since the client began (tx, rx) */
} metrics_broker;
void metrics_broker_set(metrics_client c, unsigned slot, const metrics_broker *b);
/* Client-wide figures: messages in the producer's queues (msg_cnt), the
 * consumer's prefetched messages (sum of fetchq_cnt), ops waiting for the
 * application (replyq). */
void metrics_client_set(metrics_client c, int64_t queue_messages, int64_t fetchq_messages, int64_t replyq);

/* A PostgreSQL error of SQLSTATE class c (sqlstate.h): counted in
 * M_DATABASE_ERRORS, and its one-line message (never personal data) kept as
 * the class's last error for the instance heartbeat. The message is kept
 * under a mutex that only this and metrics_last_database_error take, never
 * the scrape. */
void metrics_database_error(unsigned c, const char *message);
/* The last error of class c ("" when none) into buf. */
void metrics_last_database_error(unsigned c, char *buf, size_t size);

/* Render every metric into a malloc'd NUL-terminated buffer. Returns 0 or -ENOMEM. */
int metrics_render(char **ret, size_t *ret_len);

/* Tests: every value back to zero, labels and build info kept. */
void metrics_reset(void);
