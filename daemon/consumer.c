/* The Kafka consumer and the batch loop. See consumer.h for the contract.
 *
 * Why it is shaped this way (docs/design.md "The consumer", "Effectively once"):
 *  - eager `range` assignment: cooperative-sticky has known hangs before 2.3
 *    (librdkafka #4783, #4527, #4381, #4686);
 *  - rd_kafka_consumer_poll() and our own batch, not consume_batch (librdkafka #4208);
 *  - offsets are assigned once, explicitly, from PostgreSQL (librdkafka #5345), and every
 *    batch fences its offsets with a compare-and-set in the same transaction,
 *    so a message from a partition we just lost (librdkafka #1359) cannot be decided twice.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "batch.h"
#include "cleanup.h"
#include "consumer.h"
#include "events.h"
#include "kafka_conf.h"
#include "lanes.h"
#include "log.h"
#include "metrics.h"
#include "metrics_kafka.h"
#include "reasons.h"
#include "sqlstate.h"

#define BACKOFF_MIN (100 * 1000)
#define BACKOFF_MAX (30 * USEC_PER_SEC)
#define LATE_SLACK (1000)               /* 1 ms: polled right after a flush */
#define SEEK_TIMEOUT_MS 5000
/* A batch is stored when its payloads and their decoded forms reach this
 * (or batch.max_messages): with one message's decoding bounded by the codec
 * (CODEC_DECODE_BUDGET), a batch of hostile messages stays within the
 * daemon's memory target whatever the count. */
#define CONSUMER_BATCH_MAX_BYTES (8u << 20)
#define WATERMARK_TIMEOUT_MS 2000       /* telling a gap's cause: one ListOffsets round trip */

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
        char lane_error[256];           /* why the last failed lane failed, for database_lost */
        size_t fenced_messages;         /* of the last flush: messages of parts fenced */

        consumer_seek_fn seek_fault;    /* tests only: stands in for rd_kafka_seek_partitions */
        void *seek_fault_arg;

        consumer_figures fig;
};

static void set_error(consumer *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(consumer *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->fig.last_error, sizeof c->fig.last_error, fmt, ap);
        va_end(ap);
}

static partition_state *part_find(consumer *c, const char *topic, int32_t partition) {
        for (size_t i = 0; i < c->n_parts; i++)
                if (c->parts[i].partition == partition && strcmp(c->parts[i].topic, topic) == 0)
                        return &c->parts[i];
        return NULL;
}

static void parts_clear(consumer *c) {
        for (size_t i = 0; i < c->n_parts; i++)
                free(c->parts[i].topic);
        free(c->parts);
        c->parts = NULL;
        c->n_parts = 0;
        c->fig.partitions = 0;
}

static void batch_drop(consumer *c) {
        for (size_t i = 0; i < c->n_batch; i++) {
                codec_referral_free(c->batch[i].referral);
                codec_outcome_free(c->batch[i].outcome);
                rd_kafka_message_destroy(c->batch[i].km);
        }
        c->n_batch = 0;
        c->batch_bytes = 0;
}

static bool batch_full(const consumer *c) {
        return c->n_batch >= c->max_batch || c->batch_bytes >= CONSUMER_BATCH_MAX_BYTES;
}

/* Decode km and add it to the batch (which takes it over). */
static void batch_add(consumer *c, rd_kafka_message_t *km) {
        batch_entry *e = &c->batch[c->n_batch++];
        *e = (batch_entry){.km = km};
        size_t decoded = 0;
        if (strcmp(rd_kafka_topic_name(km->rkt), c->cfg->topic_outcomes) == 0) {
                e->outcome = codec_outcome_decode(km->payload, km->len, c->cfg->max_message_bytes, &e->error);
                decoded = codec_outcome_mem(e->outcome);
        } else {
                e->referral = codec_referral_decode(km->payload, km->len, c->cfg->max_message_bytes, &e->error);
                decoded = codec_referral_mem(e->referral);
        }
        c->batch_bytes += km->len + decoded;
}

/* Read the stored positions of every partition that lacks one. Returns 0 or
 * the store's error. Partitions are grouped by topic for store_load_offsets. */
static int parts_load(consumer *c, bool only_invalid) {
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                if (only_invalid && p->valid)
                        continue;
                int64_t next;
                int r = store_load_offsets(c->st, c->cfg->group_id, p->topic, &p->partition, 1, &next);
                if (r < 0)
                        return r;
                p->stored_next = next;
                p->pos = next < 0 ? 0 : next;
                p->valid = true;
        }
        return 0;
}

static rd_kafka_topic_partition_list_t *parts_list(consumer *c, bool only_with_offsets) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->n_parts);
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
                if (only_with_offsets)
                        tp->offset = p->stored_next < 0 ? RD_KAFKA_OFFSET_BEGINNING : p->stored_next;
        }
        return l;
}

static void pause_all(consumer *c) {
        if (c->n_parts == 0)
                return;
        rd_kafka_topic_partition_list_t *l = parts_list(c, false);
        rd_kafka_pause_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
}

/* Where a partition's next message is: its position, or the topic's start
 * when the database has none and nothing was read yet. */
static int64_t part_target(const partition_state *p) {
        return p->stored_next < 0 && p->pos == 0 ? RD_KAFKA_OFFSET_BEGINNING : p->pos;
}

static bool part_has_position(const partition_state *p) {
        return p->stored_next >= 0 || p->pos > 0;
}

static void seek_failed(consumer *c, partition_state *p, const char *why) {
        set_error(c, "seek %s [%d]: %s", p->topic, (int)p->partition, why);
        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                   "OFFSET=%lld", (long long)p->pos,
                   "MESSAGE=Seek of %s [%d] to offset %lld failed: %s; partition paused, retrying", p->topic,
                   (int)p->partition, (long long)p->pos, why, NULL);
        rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(one, p->topic, p->partition);
        rd_kafka_pause_partitions(c->rk, one);
        rd_kafka_topic_partition_list_destroy(one);
        p->seek_pending = true;
}

/* Seek the partitions (all, those whose last seek failed, or only `only`) to
 * their positions and resume those that moved. A partition whose seek failed
 * stays paused and is retried with a backoff: resumed, it would go on from
 * wherever librdkafka had fetched to, past messages never stored. Returns how
 * many failed. */
static size_t parts_seek(consumer *c, bool only_pending, partition_state *only) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->n_parts + 1);
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                if ((only_pending && !p->seek_pending) || (only && p != only))
                        continue;
                rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = part_target(p);
        }
        size_t failed = 0;
        if (l->cnt == 0) {
                rd_kafka_topic_partition_list_destroy(l);
                return 0;
        }
        /* Resumed first: librdkafka 2.0.2 does not finish a seek of a paused
         * partition (it times out). Nothing is taken meanwhile: this thread
         * is in the seek, and what was fetched before it is discarded. */
        rd_kafka_resume_partitions(c->rk, l);
        rd_kafka_error_t *e = c->seek_fault ? c->seek_fault(c->seek_fault_arg, l)
                                            : rd_kafka_seek_partitions(c->rk, l, SEEK_TIMEOUT_MS);
        for (int i = 0; i < l->cnt; i++) {
                partition_state *p = part_find(c, l->elems[i].topic, l->elems[i].partition);
                if (!p)
                        continue;
                if (e || l->elems[i].err) {
                        seek_failed(c, p, e ? rd_kafka_error_string(e) : rd_kafka_err2str(l->elems[i].err));
                        failed++;
                        continue;
                }
                p->seek_pending = false;
                p->fresh = true;
        }
        if (e)
                rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(l);
        if (failed) {
                c->seek_backoff = c->seek_backoff ? c->seek_backoff * 2 : BACKOFF_MIN;
                if (c->seek_backoff > BACKOFF_MAX)
                        c->seek_backoff = BACKOFF_MAX;
                c->seek_retry_at = clock_monotonic() + c->seek_backoff;
        } else if (only_pending)
                c->seek_backoff = 0;
        return failed;
}

/* Move every partition back to the position the database holds and resume. */
static int parts_reseek(consumer *c) {
        int r = parts_load(c, false);
        if (r < 0)
                return r;
        if (c->n_parts == 0)
                return 0;
        parts_seek(c, false, NULL);
        c->reload_needed = false;
        return 0;
}

static void database_lost(consumer *c, int r) {
        /* The failing connection's reason: a batch lane's, or the consumer's own. */
        const char *why = c->lane_error[0] ? c->lane_error : store_last_error(c->st);
        if (r == -EACCES) {
                /* Not an outage: the role, a grant or the schema is wrong (sqlstate.h
                 * "deployment"). Said every time it recurs, until an operator fixes it. */
                log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "ERRNO=%d", -r,
                           "MESSAGE=PostgreSQL refused the daemon's statement (%s): fix the deployment"
                           " (roles and grants: deploy/roles.sql, allvarsd --migrate); partitions paused, retrying",
                           why, NULL);
                set_error(c, "deployment: %s", why);
        } else {
                /* A full disk and its kin (class 53) are outages too, but with a
                 * fix: said with it, and said again when the cause changes. */
                char state[6];
                const char *hint = sqlstate_outage_hint(sqlstate_in_text(why, state));
                if (!c->database_down || (hint && !c->database_hinted))
                        log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "ERRNO=%d", -r,
                                   "MESSAGE=PostgreSQL unavailable (%s)%s%s; partitions paused, retrying", why,
                                   hint ? ": " : "", hint ? hint : "", NULL);
                c->database_hinted = hint != NULL;
                if (hint)
                        set_error(c, "database: %s (%s)", hint, why);
                else
                        set_error(c, "database: %s", why);
        }
        c->lane_error[0] = 0;
        c->database_down = true;
        c->reload_needed = true;
        for (size_t i = 0; i < c->n_parts; i++)
                c->parts[i].valid = false;
        pause_all(c);
        batch_drop(c);
        c->backoff = c->backoff ? c->backoff * 2 : BACKOFF_MIN;
        if (c->backoff > BACKOFF_MAX)
                c->backoff = BACKOFF_MAX;
        c->retry_at = clock_monotonic() + c->backoff;
}

/* A position as people read it: librdkafka's logical offsets by name. */
static const char *offset_text(int64_t offset, char buf[static 24]) {
        switch (offset) {
        case RD_KAFKA_OFFSET_BEGINNING: return "beginning";
        case RD_KAFKA_OFFSET_END: return "end";
        case RD_KAFKA_OFFSET_STORED:
        case RD_KAFKA_OFFSET_INVALID: return "stored";
        }
        snprintf(buf, 24, "%lld", (long long)offset);
        return buf;
}

/* Each partition with its position: on ASSIGNED the one it starts from, on
 * REVOKED the one the database holds (librdkafka's list says -1001 there). */
static void log_partitions(consumer *c, log_msgid id, const rd_kafka_topic_partition_list_t *l) {
        char buf[512], num[24];
        size_t o = 0;
        buf[0] = 0;
        for (int i = 0; i < l->cnt && o < sizeof buf - 64; i++) {
                int64_t off = l->elems[i].offset;
                partition_state *p = part_find(c, l->elems[i].topic, l->elems[i].partition);
                if (id == MSGID_REVOKED && p && p->valid)
                        off = p->stored_next >= 0 ? p->stored_next : RD_KAFKA_OFFSET_BEGINNING;
                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s[%d]@%s", i ? " " : "", l->elems[i].topic,
                                      (int)l->elems[i].partition, offset_text(off, num));
        }
        log_struct(LOG_INFO, id, "PARTITIONS=%s", buf, "MESSAGE=%s %d partition(s): %s",
                   id == MSGID_ASSIGNED ? "Assigned" : "Revoked", l->cnt, buf, NULL);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l, void *opaque) {
        consumer *c = opaque;

        metrics_partitions_clear();
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                parts_clear(c);
                batch_drop(c);
                c->parts = calloc((size_t)l->cnt + 1, sizeof *c->parts);
                if (!c->parts)
                        abort();
                for (int i = 0; i < l->cnt; i++) {
                        c->parts[i].topic = strdup(l->elems[i].topic);
                        if (!c->parts[i].topic)
                                abort();
                        c->parts[i].partition = l->elems[i].partition;
                        c->parts[i].stored_next = -1;
                        c->parts[i].fresh = true;
                }
                c->n_parts = (size_t)l->cnt;
                c->fig.partitions = (unsigned)l->cnt;

                int r = c->database_down ? -ENOTCONN : parts_load(c, false);
                if (r >= 0) {
                        for (int i = 0; i < l->cnt; i++)
                                l->elems[i].offset = c->parts[i].stored_next < 0 ? RD_KAFKA_OFFSET_BEGINNING
                                                                                  : c->parts[i].stored_next;
                        rd_kafka_assign(rk, l);
                        log_partitions(c, MSGID_ASSIGNED, l);
                } else {
                        /* Without PostgreSQL we do not know where to start: take the
                         * partitions (so the group settles), pause them, and seek
                         * when the database is back. Messages before that are dropped. */
                        rd_kafka_assign(rk, l);
                        rd_kafka_pause_partitions(rk, l);
                        c->reload_needed = true;
                        if (!c->database_down)
                                database_lost(c, r);
                        log_partitions(c, MSGID_ASSIGNED, l);
                }
                c->fig.assigned_once = true;
        } else {
                if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
                        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Rebalance error: %s", rd_kafka_err2str(err),
                                   NULL);
                else
                        log_partitions(c, MSGID_REVOKED, l);
                /* What was not stored yet belongs to the partitions' next owner. */
                batch_drop(c);
                parts_clear(c);
                rd_kafka_assign(rk, NULL);
        }
}

/* Transient errors are retried by librdkafka; they become the last error shown. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        (void)rk;
        consumer *c = opaque;
        set_error(c, "kafka: %s: %s", rd_kafka_err2str(err), reason);
        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Kafka consumer: %s: %s", rd_kafka_err2str(err), reason,
                   NULL);
}

int consumer_new(const config *cfg, const char *bootstrap, store *st, clock_source *clk, consumer **ret, char *err,
                 size_t err_size) {
        consumer *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->cfg = cfg;
        c->st = st;
        c->clk = clk;
        c->pipe[0] = c->pipe[1] = -1;

        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* Defaults an operator may override with kafka.*: librdkafka prefetches
         * up to 64 MiB by default; a few batches ahead is enough here. */
        if (kafka_conf_set(conf, "queued.max.messages.kbytes", "4096", err, err_size) < 0 ||
            kafka_conf_set(conf, "queued.min.messages", "20000", err, err_size) < 0)
                goto fail_conf;
        for (size_t i = 0; i < cfg->n_kafka; i++)
                if (kafka_conf_set(conf, cfg->kafka[i].key, cfg->kafka[i].value, err, err_size) < 0)
                        goto fail_conf;
        /* What effectively-once rests on: not overridable. */
        if (kafka_conf_set(conf, "group.id", cfg->group_id, err, err_size) < 0 ||
            kafka_conf_set(conf, "enable.auto.commit", "false", err, err_size) < 0 ||
            kafka_conf_set(conf, "enable.auto.offset.store", "false", err, err_size) < 0 ||
            kafka_conf_set(conf, "partition.assignment.strategy", "range", err, err_size) < 0 ||
            kafka_conf_set(conf, "auto.offset.reset", "earliest", err, err_size) < 0 ||
            kafka_conf_set(conf, "enable.partition.eof", "false", err, err_size) < 0 ||
            kafka_conf_set(conf, "client.id", "allvarsd", err, err_size) < 0 ||
            kafka_conf_set(conf, "log.queue", "true", err, err_size) < 0)
                goto fail_conf;
        if (bootstrap && kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, err_size) < 0)
                goto fail_conf;
        if (metrics_kafka_enable(conf, MC_CONSUMER, cfg, err, err_size) < 0)
                goto fail_conf;
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_opaque(conf, c);

        char e[512];
        c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
        if (!c->rk) {
                snprintf(err, err_size, "kafka consumer: %s", e);
                goto fail_conf;
        }
        rd_kafka_poll_set_consumer(c->rk);
        c->queue = rd_kafka_queue_get_consumer(c->rk);
        if (pipe2(c->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                snprintf(err, err_size, "pipe: %m");
                consumer_free(c);
                return -errno;
        }
        rd_kafka_queue_io_event_enable(c->queue, c->pipe[1], "1", 1);

        rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(2);
        rd_kafka_topic_partition_list_add(topics, cfg->topic_referrals, RD_KAFKA_PARTITION_UA);
        rd_kafka_topic_partition_list_add(topics, cfg->topic_outcomes, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t rerr = rd_kafka_subscribe(c->rk, topics);
        rd_kafka_topic_partition_list_destroy(topics);
        if (rerr) {
                snprintf(err, err_size, "subscribe: %s", rd_kafka_err2str(rerr));
                consumer_free(c);
                return -EINVAL;
        }
        c->cap_batch = c->max_batch = cfg->batch_max_messages ? cfg->batch_max_messages : 500;
        c->batch = calloc(c->cap_batch, sizeof *c->batch);
        int r = c->batch ? lanes_new(cfg, st, cfg->batch_connections, &c->lanes) : -ENOMEM;
        if (r < 0) {
                snprintf(err, err_size, "batch connections: %s", strerror(-r));
                consumer_free(c);
                return r;
        }
        *ret = c;
        return 0;

fail_conf:
        rd_kafka_conf_destroy(conf);
        free(c);
        return -EINVAL;
}

int consumer_fd(const consumer *c) {
        return c->pipe[0];
}

static void drain_pipe(consumer *c) {
        char buf[64];
        while (read(c->pipe[0], buf, sizeof buf) > 0)
                ;
}

static void log_message_outcome(const store_message *m) {
        switch (m->status) {
        case STORE_DECIDED: {
                if (m->case_outcome) {
                        log_struct(LOG_INFO, MSGID_OUTCOME, "CASE_ID=%s", m->case_id, "EVENT_ID=%s",
                                   m->case_outcome->event_id, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition,
                                   "OFFSET=%lld", (long long)m->offset, "MESSAGE=Outcome %s applied to case %s",
                                   m->case_outcome->event_id, m->case_id, NULL);
                        break;
                }
                char reasons[256], flags[256];
                reasons_format(reason_texts, m->reasons, reasons, sizeof reasons);
                reasons_format(flag_texts, m->flags, flags, sizeof flags);
                log_struct(LOG_INFO, MSGID_DECIDED, "REFERRAL_ID=%s", m->referral->referral_id, "CASE_ID=%s",
                           m->case_id, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld",
                           (long long)m->offset, "OUTCOME=%s", decision_outcome_code(m->outcome), "REASONS=%s",
                           reasons, "FLAGS=%s", flags, "MESSAGE=Referral %s decided: %s%s%s%s%s",
                           m->referral->referral_id, decision_outcome_code(m->outcome), reasons[0] ? " " : "",
                           reasons, flags[0] ? " flags " : "", flags, NULL);
                break;
        }
        case STORE_DUPLICATE:
                if (m->case_outcome) {
                        log_struct(LOG_NOTICE, MSGID_DUPLICATE, "EVENT_ID=%s", m->case_outcome->event_id, "TOPIC=%s",
                                   m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld", (long long)m->offset,
                                   "MESSAGE=Outcome %s seen before; ignored", m->case_outcome->event_id, NULL);
                        break;
                }
                /* INFO, not NOTICE: duplicates are routine (bench/README.md: 100,000 per 1M
                 * replay); the figures count them. */
                log_struct(LOG_INFO, MSGID_DUPLICATE, "REFERRAL_ID=%s", m->referral->referral_id, "TOPIC=%s",
                           m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld", (long long)m->offset,
                           "MESSAGE=Referral %s seen before; ignored", m->referral->referral_id, NULL);
                break;
        case STORE_DEAD_LETTERED:
                log_struct(LOG_WARNING, MSGID_DEAD_LETTER, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition,
                           "OFFSET=%lld", (long long)m->offset, "REASON=%s", dead_letter_reason_code(m->error->reason),
                           "MESSAGE=Message at %s [%d] offset %lld dead-lettered: %s: %s", m->topic,
                           (int)m->partition, (long long)m->offset, dead_letter_reason_code(m->error->reason),
                           m->error->detail, NULL);
                break;
        case STORE_PENDING:
                break;
        }
}

/* One lane's part of a batch (lanes.h): its messages and its partitions' offsets. */
typedef struct lane_work {
        const config *cfg;
        usec_t now;
        bool outcomes;
        store_message *msgs;
        size_t n;
        store_offset *offs;
        size_t n_offs;
        const int64_t *ts_ms;           /* each message's Kafka timestamp (ms), -1 when none */
        usec_t duration;                /* the transaction, retries included */
        store_batch_result res;
} lane_work;

/* On the lane's thread: one transaction (batch.h: retried on a deadlock or a
 * serialization failure, a message PostgreSQL refuses dead-lettered). */
static int lane_store(store *st, void *arg) {
        lane_work *w = arg;
        usec_t start = clock_monotonic();
        int r = batch_store(st, w->cfg, w->cfg->group_id, w->now, w->outcomes, w->msgs, w->n, w->offs, w->n_offs,
                            &w->res);
        w->duration = clock_monotonic() - start;
        return r;
}

/* The metrics of a committed transaction (metrics.h): what it decided,
 * applied and rejected, its size and time, and each decision's age. */
static void count_committed(const lane_work *w) {
        usec_t committed = clock_realtime();
        metrics_observe(H_BATCH_MESSAGES, (double)w->n);
        metrics_observe(H_BATCH_COMMIT, (double)w->duration / USEC_PER_SEC);
        metrics_add(M_DUPLICATES, w->outcomes ? MK_OUTCOME : MK_REFERRAL, w->res.duplicates);
        metrics_add(M_ALERTS_RAISED, ALERT_MISSED, w->res.alerts);
        if (!w->outcomes)
                metrics_add(M_REFERRALS_CONSUMED, 0, w->n);
        for (size_t i = 0; i < w->n; i++) {
                const store_message *m = &w->msgs[i];
                if (m->status == STORE_DEAD_LETTERED && m->error) {
                        metrics_inc(M_DEAD_LETTERS, m->error->reason);
                        if (w->outcomes)
                                metrics_inc(M_OUTCOMES_REJECTED, m->error->reason);
                } else if (m->status == STORE_DECIDED && w->outcomes) {
                        metrics_inc(M_OUTCOMES_APPLIED, 0);
                } else if (m->status == STORE_DECIDED) {
                        metrics_inc(M_REFERRALS_DECIDED, m->outcome);
                        if (w->ts_ms[i] > 0)
                                metrics_observe(H_DECISION_AGE,
                                                (double)(committed - w->ts_ms[i] * 1000) / USEC_PER_SEC);
                }
        }
}

/* A lane's transaction committed: count, advance its partitions, tell Kafka, log. */
static void lane_committed(consumer *c, const lane_work *w) {
        count_committed(w);
        c->fig.batches++;
        if (w->outcomes)
                c->fig.outcomes += w->res.decided;
        else
                c->fig.decided += w->res.decided;
        c->fig.duplicates += w->res.duplicates;
        c->fig.dead_lettered += w->res.dead_lettered;
        c->fig.events += w->res.events;
        c->fig.alerts += w->res.alerts;
        rd_kafka_topic_partition_list_t *commit = rd_kafka_topic_partition_list_new((int)w->n_offs);
        for (size_t j = 0; j < w->n_offs; j++) {
                partition_state *p = part_find(c, w->offs[j].topic, w->offs[j].partition);
                if (p)
                        p->stored_next = w->offs[j].new_next;
                rd_kafka_topic_partition_list_add(commit, w->offs[j].topic, w->offs[j].partition)->offset =
                        w->offs[j].new_next;
        }
        /* Only for lag tools: PostgreSQL is the source of truth. */
        rd_kafka_commit(c->rk, commit, 1);
        rd_kafka_topic_partition_list_destroy(commit);
        for (size_t i = 0; i < w->n; i++)
                if (log_get_max_priority() >= LOG_INFO || w->msgs[i].status != STORE_DECIDED)
                        log_message_outcome(&w->msgs[i]);
}

/* The key rule (docs/contract.md "Keys and ids"): an outcome's Kafka key is its
 * case's id, so that all of a case's events are on one partition, in order.
 * Another key is a dead letter on the first message of a misconfigured producer,
 * not a reordering weeks later. */
static bool outcome_key_ok(const CaseOutcome *o, const rd_kafka_message_t *km, codec_error *err) {
        int r = ids_outcome_key_check(o->case_id, o->referral_id, km->key, km->key_len);
        if (r == 0)
                return true;
        if (r == -EBADMSG) {
                err->reason = DLR_WRONG_KEY;
                snprintf(err->detail, sizeof err->detail, "the key is not the case id %s",
                         *o->case_id ? "of case_id" : "computed from referral_id");
        } else {
                err->reason = DLR_INVALID_FIELD;
                snprintf(err->detail, sizeof err->detail, "case_id and referral_id name different cases");
        }
        return false;
}

/* What the producer knows message km by, for its dead letter (DeadLetter's
 * source_* fields) and a replay: its key, its headers, and its own id, also when
 * it failed validation (then read into id). */
static void source_of(const consumer *c, rd_kafka_message_t *km, bool outcomes, const codec_outcome *out,
                      const codec_referral *ref, store_message *m, char id[static CODEC_ID_MAX + 1]) {
        m->key = km->key;
        m->key_len = km->key ? km->key_len : 0;
        rd_kafka_headers_t *h = NULL;
        m->headers = rd_kafka_message_headers(km, &h) == RD_KAFKA_RESP_ERR_NO_ERROR ? h : NULL;
        if (out)
                m->source_event_id = codec_outcome_msg(out)->event_id;
        else if (ref)
                m->source_event_id = codec_referral_msg(ref)->referral_id;
        else {
                codec_message_id(outcomes ? &allvarssamtal__v1__case_outcome__descriptor
                                          : &allvarssamtal__v1__police_referral__descriptor,
                                 km->payload, km->len, c->cfg->max_message_bytes, id);
                m->source_event_id = id[0] ? id : NULL;
        }
}

/* Store the messages of one topic of the batch: referrals are decided, outcomes
 * applied to their cases. The messages are grouped by lane (partition modulo
 * lanes) and each lane's part is one transaction, all lanes at once; a part
 * that committed advances its positions even when another failed (the caller
 * then re-reads every position from the database). */
static int flush_topic(consumer *c, batch_entry **batch, size_t n, bool outcomes, usec_t now) {
        unsigned n_lanes = lanes_count(c->lanes);
        _cleanup_free_ batch_entry **ordered = calloc(n, sizeof *ordered);
        _cleanup_free_ store_message *msgs = calloc(n, sizeof *msgs);
        _cleanup_free_ char(*ids)[CODEC_ID_MAX + 1] = calloc(n, sizeof *ids);
        _cleanup_free_ store_offset *offs = calloc(n, sizeof *offs);
        _cleanup_free_ int64_t *ts = calloc(n, sizeof *ts);
        _cleanup_free_ lane_work *work = calloc(n_lanes, sizeof *work);
        _cleanup_free_ void **args = calloc(n_lanes, sizeof *args);
        _cleanup_free_ int *rets = calloc(n_lanes, sizeof *rets);
        if (!ordered || !msgs || !ids || !offs || !ts || !work || !args || !rets)
                return -ENOMEM;

        /* Each lane's messages contiguous, in consumed order; a partition is in
         * one lane only, so each lane's offsets come out contiguous too. */
        size_t g = 0, n_offs = 0;
        for (unsigned k = 0; k < n_lanes; k++) {
                size_t first = g, first_off = n_offs;
                for (size_t i = 0; i < n; i++)
                        if ((unsigned)batch[i]->km->partition % n_lanes == k)
                                ordered[g++] = batch[i];
                for (size_t i = first; i < g; i++) {
                        rd_kafka_message_t *km = ordered[i]->km;
                        store_message *m = &msgs[i];
                        m->topic = rd_kafka_topic_name(km->rkt);
                        m->partition = km->partition;
                        m->offset = km->offset;
                        m->payload = km->payload;
                        m->len = km->len;
                        ts[i] = rd_kafka_message_timestamp(km, NULL);
                        batch_entry *e = ordered[i];
                        if (e->outcome && outcome_key_ok(codec_outcome_msg(e->outcome), km, &e->error))
                                m->case_outcome = codec_outcome_msg(e->outcome);
                        else if (e->referral)
                                m->referral = codec_referral_msg(e->referral);
                        if (!m->referral && !m->case_outcome)
                                m->error = &e->error;
                        source_of(c, km, outcomes, e->outcome, e->referral, m, ids[i]);

                        store_offset *o = NULL;
                        for (size_t j = first_off; j < n_offs; j++)
                                if (offs[j].partition == m->partition && strcmp(offs[j].topic, m->topic) == 0)
                                        o = &offs[j];
                        if (!o) {
                                partition_state *p = part_find(c, m->topic, m->partition);
                                o = &offs[n_offs++];
                                o->topic = m->topic;
                                o->partition = m->partition;
                                o->expected_next = p ? p->stored_next : -1;
                        }
                        o->new_next = m->offset + 1;
                }
                work[k] = (lane_work){.cfg = c->cfg, .now = now, .outcomes = outcomes, .msgs = msgs + first,
                                      .n = g - first, .offs = offs + first_off, .n_offs = n_offs - first_off,
                                      .ts_ms = ts + first};
                args[k] = g > first ? &work[k] : NULL;
        }

        lanes_run(c->lanes, lane_store, args, rets);

        int r = 0;
        for (unsigned k = 0; k < n_lanes; k++) {
                if (!args[k])
                        continue;
                if (rets[k] == 0) {
                        lane_committed(c, &work[k]);
                        continue;
                }
                if (rets[k] == -ESTALE)
                        c->fenced_messages += work[k].n;
                if (r == 0 || rets[k] != -ESTALE) {
                        r = rets[k];    /* a lost connection outweighs a fenced part */
                        lanes_error(c->lanes, k, c->lane_error, sizeof c->lane_error);
                }
        }
        if (r == 0)
                c->backoff = 0;
        return r;
}

/* Store the batch, referrals before outcomes (an outcome may concern a case
 * opened by a referral of the same batch). */
static int batch_flush(consumer *c) {
        size_t n = c->n_batch;
        if (n == 0)
                return 0;
        usec_t now = clock_now(c->clk);
        c->fenced_messages = 0;
        batch_entry **part = calloc(n, sizeof *part);
        int r = part ? 0 : -ENOMEM;
        for (int pass = 0; pass < 2 && r == 0; pass++) {
                size_t k = 0;
                for (size_t i = 0; i < n; i++) {
                        bool is_outcome = strcmp(rd_kafka_topic_name(c->batch[i].km->rkt), c->cfg->topic_outcomes) == 0;
                        if (is_outcome == (pass == 1))
                                part[k++] = &c->batch[i];
                }
                if (k)
                        r = flush_topic(c, part, k, pass == 1, now);
        }
        free(part);

        if (r == -ESTALE) {
                /* Someone else moved a position: we no longer own it, or a message
                 * came from a partition just revoked. Believe the database. (Parts
                 * of the batch on other lanes may have been stored: not counted.) */
                c->fig.fenced++;
                metrics_inc(M_BATCHES_FENCED, 0);
                c->lane_error[0] = 0;
                log_struct(LOG_NOTICE, MSGID_BATCH_FENCED,
                           "MESSAGE=%zu message(s) of a batch of %zu fenced by the stored offsets; re-reading positions",
                           c->fenced_messages, n, NULL);
                batch_drop(c);
                int rr = parts_reseek(c);
                if (rr < 0)
                        database_lost(c, rr);
        } else if (r < 0) {
                /* Connection lost (the COMMIT's outcome is unknown) or another
                 * error: nothing is acknowledged; pause, reconnect, re-read. */
                database_lost(c, r);
        }
        batch_drop(c);
        return r;
}

/* The first message of a partition is above its position: were the offsets
 * between never handed to us, or are they gone from Kafka? Returns true to
 * take the message, false to drop it (the partition is read again from its
 * position, or paused). */
static bool gap_seen(consumer *c, partition_state *p, int64_t offset) {
        if (!p->fresh) {
                /* Within a run of messages: ours to explain (a batch dropped
                 * after librdkafka had fetched past it) or Kafka's (a
                 * transaction marker). Read again from the position; what
                 * comes first after the seek tells. */
                log_struct(LOG_DEBUG, MSGID_KAFKA_ERROR, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                           "MESSAGE=%s [%d]: offset %lld after %lld; seeking back", p->topic, (int)p->partition,
                           (long long)offset, (long long)p->pos - 1, NULL);
                parts_seek(c, false, p);
                return false;
        }
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t err =
                rd_kafka_query_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi, WATERMARK_TIMEOUT_MS);
        if (err) {
                /* Cannot tell now: take nothing past the position, try again later. */
                seek_failed(c, p, rd_kafka_err2str(err));
                c->seek_backoff = c->seek_backoff ? c->seek_backoff : BACKOFF_MIN;
                c->seek_retry_at = clock_monotonic() + c->seek_backoff;
                return false;
        }
        if (lo <= p->pos) {
                /* Kafka still has the offsets in between: compacted away, or
                 * transaction markers. Allowed, counted. */
                c->fig.gaps_explained++;
                log_struct(LOG_DEBUG, MSGID_PARTITION_GAP, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                           "MESSAGE=%s [%d]: offsets %lld-%lld skipped by Kafka (compaction or transaction markers)",
                           p->topic, (int)p->partition, (long long)p->pos, (long long)offset - 1, NULL);
                return true;
        }
        /* Gone: retention, deleted records or an offset reset moved the log
         * start past our position. The messages there were never decided. */
        int64_t to = lo < offset ? lo : offset;
        bool is_new = false;
        int r = store_partition_gap(c->st, c->cfg, c->cfg->group_id, p->topic, p->partition, p->pos, to, lo,
                                    clock_now(c->clk), &is_new);
        if (r < 0) {
                database_lost(c, r);
                return false;
        }
        c->fig.gaps_lost++;
        c->fig.offsets_lost += (uint64_t)(to - p->pos);
        set_error(c, "%s [%d]: offsets %lld-%lld gone from Kafka before they were read", p->topic, (int)p->partition,
                  (long long)p->pos, (long long)to - 1);
        log_struct(LOG_ERR, MSGID_PARTITION_GAP, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                   "OFFSET=%lld", (long long)p->pos, "GAP_FROM=%lld", (long long)p->pos, "GAP_TO=%lld",
                   (long long)to, "MESSAGE=%s [%d]: offsets %lld-%lld were gone from Kafka (log start %lld) before "
                   "they were read; never decided%s",
                   p->topic, (int)p->partition, (long long)p->pos, (long long)to - 1, (long long)lo,
                   is_new ? "; alert raised" : " (recorded before)", NULL);
        int t = metrics_topic_of(p->topic);
        if (t >= 0)
                metrics_inc(M_PARTITION_GAPS, (unsigned)t);     /* allvarsd_partition_gaps_total */
        return true;
}

usec_t consumer_step(consumer *c) {
        usec_t mono = clock_monotonic();

        if (c->database_down) {
                if (mono < c->retry_at)
                        return c->retry_at;
                char e[256];
                int r = store_connected(c->st) ? 0 : store_reconnect(c->st, e, sizeof e);
                if (r >= 0)
                        r = parts_reseek(c);
                if (r < 0) {
                        database_lost(c, r);
                        return c->retry_at;
                }
                /* The backoff is reset by the next fully stored batch: a batch
                 * lane that still cannot connect keeps backing off. */
                c->database_down = false;
                c->database_hinted = false;
                log_struct(LOG_NOTICE, MSGID_DB_RECOVERED, "MESSAGE=PostgreSQL is back; partitions resumed", NULL);
        }
        if (c->seek_retry_at && mono >= c->seek_retry_at) {
                c->seek_retry_at = 0;
                parts_seek(c, true, NULL);
        }

        drain_pipe(c);
        while (!batch_full(c)) {
                rd_kafka_message_t *km = rd_kafka_consumer_poll(c->rk, 0);
                if (!km)
                        break;
                if (km->err) {
                        if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                                set_error(c, "kafka: %s", rd_kafka_message_errstr(km));
                                log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Kafka: %s",
                                           rd_kafka_message_errstr(km), NULL);
                        }
                        rd_kafka_message_destroy(km);
                        continue;
                }
                partition_state *p = part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
                if (!p || !p->valid || p->seek_pending || km->offset < p->pos || c->database_down) {
                        rd_kafka_message_destroy(km);     /* not ours (yet): the stored position rules */
                        continue;
                }
                if (km->offset > p->pos && part_has_position(p) && !gap_seen(c, p, km->offset)) {
                        rd_kafka_message_destroy(km);
                        continue;
                }
                p->fresh = false;
                p->pos = km->offset + 1;
                if (c->n_batch == 0)
                        c->batch_started = mono;
                batch_add(c, km);
        }

        /* A batch begun with what arrived while the last one was being stored
         * has waited already: store it as soon as nothing more is queued,
         * rather than after batch.max_wait_ms more (adaptive batching, as in
         * group commit: the batch grows with the rate times the store time). */
        usec_t wait = (usec_t)c->cfg->batch_max_wait_ms * 1000;
        bool behind = c->batch_started <= c->last_flush_end + LATE_SLACK;
        if (c->n_batch > 0 &&
            (behind || batch_full(c) || clock_monotonic() - c->batch_started >= wait)) {
                batch_flush(c);
                c->last_flush_end = clock_monotonic();
                /* More may be waiting: come back at once. */
                return clock_monotonic();
        }
        if (c->n_batch > 0)
                return c->batch_started + wait;
        return clock_monotonic() + USEC_PER_SEC;
}

int consumer_drain(consumer *c) {
        /* Take what librdkafka already fetched for this batch, store it, then leave. */
        if (!c->database_down) {
                while (!batch_full(c)) {
                        rd_kafka_message_t *km = rd_kafka_consumer_poll(c->rk, 0);
                        if (!km)
                                break;
                        partition_state *p = km->err ? NULL : part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
                        /* A gap is left to the next owner to tell. */
                        if (!p || !p->valid || p->seek_pending || km->offset != p->pos) {
                                rd_kafka_message_destroy(km);
                                continue;
                        }
                        p->pos = km->offset + 1;
                        batch_add(c, km);
                }
                batch_flush(c);
        }
        batch_drop(c);
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err)
                log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Leaving the group: %s", rd_kafka_err2str(err), NULL);
        return 0;
}

void consumer_free(consumer *c) {
        if (!c)
                return;
        batch_drop(c);
        if (c->queue) {
                rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
                rd_kafka_queue_destroy(c->queue);
        }
        if (c->rk)
                rd_kafka_destroy(c->rk);
        lanes_free(c->lanes);
        parts_clear(c);
        free(c->batch);
        if (c->pipe[0] >= 0)
                close(c->pipe[0]);
        if (c->pipe[1] >= 0)
                close(c->pipe[1]);
        free(c);
}

int consumer_reconfigure(consumer *c, const config *cfg) {
        if (!c)         /* a SIGHUP while waiting for PostgreSQL at start */
                return 0;
        c->cfg = cfg;
        size_t want = cfg->batch_max_messages ? cfg->batch_max_messages : 500;
        if (want > c->cap_batch) {
                /* Called between batches, on the thread that fills the array. */
                batch_entry *b = realloc(c->batch, want * sizeof *b);
                if (!b)
                        return -ENOMEM;
                c->batch = b;
                c->cap_batch = want;
        }
        /* A smaller size applies as it is: a batch already larger is stored at once. */
        c->max_batch = want;
        return 0;
}

void consumer_metrics_publish(consumer *c) {
        metrics_set(M_PARTITIONS_ASSIGNED, 0, (double)c->n_parts);
        metrics_set(M_DATABASE_AVAILABLE, 0, c->database_down ? 0 : 1);
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                int t = metrics_topic_of(p->topic);
                int64_t lo = -1, hi = -1;
                /* From the last fetch response: no broker round trip. */
                if (t < 0 || !p->valid ||
                    rd_kafka_get_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
                    hi < 0)
                        continue;
                int64_t from = p->stored_next >= 0 ? p->stored_next : lo;
                metrics_partition_set((metrics_topic)t, p->partition, p->stored_next, hi > from ? hi - from : 0);
        }
}

void consumer_set_seek_fault(consumer *c, consumer_seek_fn fn, void *arg) {
        c->seek_fault = fn;
        c->seek_fault_arg = arg;
}

rd_kafka_t *consumer_kafka(consumer *c) {
        return c->rk;
}

void consumer_figures_read(const consumer *c, consumer_figures *ret) {
        *ret = c->fig;
        ret->database_down = c->database_down;
}
