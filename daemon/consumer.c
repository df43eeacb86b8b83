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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "consumer_state.h"
#include "kafka_conf.h"
#include "log.h"
#include "metrics.h"
#include "metrics_kafka.h"

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
         * up to 64 MiB by default; a few batches ahead is enough here. The
         * bound applies to each queue the fetched messages wait in: one queue
         * per partition (take_round), so 2 MiB each: 8 MiB for
         * the four partitions of the bench, as before; at 8 MiB each the
         * daemon's peak RSS went from 54-59 to 98 MiB. A total of 4 MiB left
         * the batch connections idle waiting for the next batch's messages
         * (10,600/s against 12,100-12,500/s at 8; bench/README.md).
         * And 256 KiB per partition and fetch, where librdkafka asks for 1 MiB:
         * a fetched message keeps the whole fetch response it came in alive
         * until it is destroyed, and the batch and the lanes keep theirs until
         * their COMMIT. The daemon's peak RSS over a million referrals was
         * 54.2-55.6 MiB in three runs, against 63.2-65.8 in four at 1 MiB
         * (bench/README.md "Smaller fetches"). A larger message is still
         * fetched whole (docs/design.md "Fetch size";
         * tests/integration/hostile.bats). */
        if (kafka_conf_set(conf, "queued.max.messages.kbytes", "2048", err, err_size) < 0 ||
            kafka_conf_set(conf, "queued.min.messages", "5000", err, err_size) < 0 ||
            kafka_conf_set(conf, "max.partition.fetch.bytes", "262144", err, err_size) < 0)
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
        rd_kafka_conf_set_rebalance_cb(conf, consumer_on_rebalance);
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
        if (r >= 0)
                r = consumer_flights_alloc(c);
        if (r >= 0)     /* a lane that is done wakes the loop like a message does */
                lanes_notify(c->lanes, c->pipe[1]);
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

/* What a batch's storing came to (r from consumer_batch_send or _land, n
 * its messages); a failure leaves the positions to the database. */
static void stored(consumer *c, int r, size_t n) {
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
                /* What was gathered meanwhile follows positions no longer ours. */
                consumer_batch_drop(c);
                int rr = parts_reseek(c);
                if (rr < 0)
                        consumer_database_lost(c, rr);
        } else if (r < 0) {
                /* Connection lost (the COMMIT's outcome is unknown) or another
                 * error: nothing is acknowledged; pause, reconnect, re-read. */
                consumer_database_lost(c, r);
        }
        c->fenced_messages = 0;         /* counted by the lanes' parts of this result only */
}

/* Wait for the lanes, if any stores, and take what they did. */
static void land(consumer *c) {
        size_t n = consumer_batch_in_flight(c);
        if (consumer_batch_flying(c))
                stored(c, consumer_batch_land(c), n);
}

/* Give the batch to the lanes (consumer_batch_send): what they store is
 * taken when they are done, while the next is gathered. */
static void flush(consumer *c) {
        size_t n = c->n_batch + consumer_batch_in_flight(c);
        if (c->n_batch > 0)
                stored(c, consumer_batch_send(c), n);
}

/* A message polled: into the batch, or dropped when it is not ours (yet). */
static void take(consumer *c, rd_kafka_message_t *km, usec_t mono) {
        if (km->err) {
                if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                        set_error(c, "kafka: %s", rd_kafka_message_errstr(km));
                        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Kafka: %s", rd_kafka_message_errstr(km),
                                   NULL);
                }
                rd_kafka_message_destroy(km);
                return;
        }
        partition_state *p = part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
        if (!p || !p->valid || p->seek_pending || km->offset < p->pos || c->database_down) {
                rd_kafka_message_destroy(km);     /* not ours (yet): the stored position rules */
                return;
        }
        if (km->offset > p->pos && part_has_position(p)) {
                /* A gap: what it is may be written on the consumer's own
                 * store (consumer_gap_seen), which is lane 0's: the lanes
                 * land first, and the message is looked at again. */
                if (consumer_batch_flying(c)) {
                        const char *topic = rd_kafka_topic_name(km->rkt);
                        land(c);
                        p = part_find(c, topic, km->partition);
                        if (!p || !p->valid || p->seek_pending || km->offset < p->pos || c->database_down) {
                                rd_kafka_message_destroy(km);
                                return;
                        }
                }
                if (km->offset > p->pos && !consumer_gap_seen(c, p, km->offset)) {
                        rd_kafka_message_destroy(km);
                        return;
                }
        }
        p->fresh = false;
        p->pos = km->offset + 1;
        if (c->n_batch == 0) {
                c->batch_started = mono;
                c->batch_behind = consumer_batch_flying(c);
        }
        consumer_batch_add(c, p, km);
}

/* One message from each partition's own queue that has one, in turn, until
 * the batch is full: a backlog on four partitions fills a batch with a
 * quarter from each, where the consumer's queue would hand over one
 * partition's fetched messages (up to max.partition.fetch.bytes) before the
 * next's, and one lane would store most of the batch while the other waited
 * (bench/README.md). The partitions a lane holds (an earlier part of them
 * still storing) are taken from only within that lane's room
 * (consumer_batch_held_room): a batch full of one lane's partitions would
 * leave the others nothing to take when they are done. Returns how many
 * messages were taken. */
static size_t take_round(consumer *c, usec_t mono) {
        unsigned n_lanes = lanes_count(c->lanes);
        size_t taken = 0, room[n_lanes];
        bool flying = consumer_batch_flying(c);
        if (flying)
                consumer_batch_held_room(c, room);
        for (size_t i = 0; i < c->n_parts && !consumer_batch_full(c); i++) {
                if (!c->parts[i].queue)
                        continue;
                int holder = flying ? consumer_batch_holder(c, &c->parts[i]) : -1;
                if (holder >= 0 && room[holder] == 0)
                        continue;
                rd_kafka_message_t *km = rd_kafka_consume_queue(c->parts[i].queue, 0);
                if (!km)
                        continue;
                taken++;
                if (holder >= 0)
                        room[holder]--;
                take(c, km, mono);
        }
        return taken;
}

/* Per batch, the commits were as many OffsetCommit requests as transactions
 * (some 300 a second at 500 referrals/s), each an append to the broker's
 * __consumer_offsets. */
void consumer_tell_kafka(consumer *c, bool now) {
        usec_t mono = clock_monotonic();
        if (!now && mono < c->tell_kafka_at)
                return;
        c->tell_kafka_at = mono + CONSUMER_TELL_KAFKA_USEC;
        rd_kafka_topic_partition_list_t *l = NULL;
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                if (p->stored_next < 0 || p->stored_next == p->told_next)
                        continue;
                if (!l)
                        l = rd_kafka_topic_partition_list_new((int)c->n_parts);
                rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->stored_next;
                p->told_next = p->stored_next;
        }
        if (l) {
                rd_kafka_commit(c->rk, l, 1);
                rd_kafka_topic_partition_list_destroy(l);
        }
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
                        consumer_database_lost(c, r);
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
        /* What the lanes that are done did (one that finishes writes to the
         * pipe, like a message that arrives). */
        if (consumer_batch_flying(c))
                stored(c, consumer_batch_reap(c), consumer_batch_in_flight(c));
        consumer_tell_kafka(c, false);
        /* The consumer's queue first: rebalances, errors, and the messages of
         * partitions without a queue of their own. */
        while (!consumer_batch_full(c)) {
                rd_kafka_message_t *km = rd_kafka_consumer_poll(c->rk, 0);
                if (!km)
                        break;
                take(c, km, mono);
        }
        while (!consumer_batch_full(c) && take_round(c, mono) > 0)
                ;

        /* A batch begun with what arrived while the last one was being stored
         * has waited already: store it as soon as nothing more is queued,
         * rather than after batch.max_wait_ms more (adaptive batching, as in
         * group commit: the batch grows with the rate times the store time). */
        usec_t wait = (usec_t)c->cfg->batch_max_wait_ms * 1000;
        bool behind = c->batch_behind || c->batch_started <= c->last_flush_end + LATE_SLACK;
        if (c->n_batch > 0 &&
            (behind || consumer_batch_full(c) || clock_monotonic() - c->batch_started >= wait)) {
                size_t before = c->n_batch;
                flush(c);
                c->last_flush_end = clock_monotonic();
                /* More may be waiting: come back at once. */
                if (c->n_batch < before)
                        return clock_monotonic();
                /* Nothing could be given: the lanes hold every partition of
                 * what is left. A lane that is done wakes the loop. */
                return clock_monotonic() + USEC_PER_SEC;
        }
        /* Nothing to store yet. What the lanes store is taken when they are
         * done (above): a lane that is done wakes the loop. */
        if (c->n_batch > 0)
                return c->batch_started + wait;
        return clock_monotonic() + USEC_PER_SEC;
}

/* The next message already fetched: the consumer's queue first, then each
 * partition's own, emptied in turn (*next: the first not yet emptied). */
static rd_kafka_message_t *drain_next(consumer *c, size_t *next) {
        rd_kafka_message_t *km = rd_kafka_consumer_poll(c->rk, 0);
        for (; !km && *next < c->n_parts; ++*next)
                if (c->parts[*next].queue && (km = rd_kafka_consume_queue(c->parts[*next].queue, 0)))
                        break;
        return km;
}

int consumer_drain(consumer *c) {
        /* Take what librdkafka already fetched for this batch, store it, then leave. */
        land(c);
        if (!c->database_down) {
                for (size_t next = 0; !consumer_batch_full(c);) {
                        rd_kafka_message_t *km = drain_next(c, &next);
                        if (!km)
                                break;
                        partition_state *p = km->err ? NULL : part_find(c, rd_kafka_topic_name(km->rkt), km->partition);
                        /* A gap is left to the next owner to tell. */
                        if (!p || !p->valid || p->seek_pending || km->offset != p->pos) {
                                rd_kafka_message_destroy(km);
                                continue;
                        }
                        p->pos = km->offset + 1;
                        consumer_batch_add(c, p, km);
                }
                /* A lane gets no partition another holds: once every lane
                 * is done, what is left goes. */
                for (int round = 0; round < 2 && c->n_batch > 0 && !c->database_down; round++) {
                        flush(c);
                        land(c);
                }
        }
        consumer_batch_drop(c);
        rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
        if (err)
                log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Leaving the group: %s", rd_kafka_err2str(err), NULL);
        return 0;
}

void consumer_free(consumer *c) {
        if (!c)
                return;
        (void)consumer_batch_land(c);   /* its lanes must be idle before they are freed */
        consumer_batch_drop(c);
        consumer_flights_free(c);
        parts_clear(c);                 /* its partition queues, before the handle they belong to */
        if (c->queue) {
                rd_kafka_queue_io_event_enable(c->queue, -1, NULL, 0);
                rd_kafka_queue_destroy(c->queue);
        }
        if (c->rk)
                rd_kafka_destroy(c->rk);
        lanes_free(c->lanes);
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
        /* The batch in flight is landed first: its lanes read the old
         * configuration, which the caller frees once this returns, and its
         * entries must not move. */
        land(c);
        c->cfg = cfg;
        c->params_registered = false;   /* its profiles may be new */
        size_t want = cfg->batch_max_messages ? cfg->batch_max_messages : 500;
        if (want > c->cap_batch) {
                /* Called between batches, on the thread that fills the arrays. */
                batch_entry *b = realloc(c->batch, want * sizeof *b);
                if (!b)
                        return -ENOMEM;
                c->batch = b;
                c->cap_batch = want;
                if (consumer_flights_alloc(c) < 0)
                        return -ENOMEM;
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
