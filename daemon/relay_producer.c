/* The relay's producer: librdkafka's idempotent producer, one flight per
 * produced outbox row until its delivery report, rows the brokers refuse for
 * good set aside to be dead-lettered (relay_dead.h), and the producer recreated
 * after a fatal error (docs/design.md "The producer"). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_conf.h"
#include "log.h"
#include "metrics.h"
#include "metrics_kafka.h"
#include "relay_state.h"

/* ---- flights and delivery reports ---- */

static void flight_unlink(relay *r, flight *f) {
        f->link.prev->next = f->link.next;
        f->link.next->prev = f->link.prev;
        r->n_flights--;
        r->fig.in_flight = r->n_flights;
}

static void flights_free(relay *r) {
        while (r->flights.next != &r->flights) {
                flight *f = (flight *)r->flights.next;
                flight_unlink(r, f);
                free(f);
        }
}

/* Append id to a growing array; false when out of memory. */
static bool ids_push(int64_t **v, size_t *n, size_t *cap, int64_t id) {
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 256;
                int64_t *w = realloc(*v, c * sizeof *w);
                if (!w)
                        return false;
                *v = w;
                *cap = c;
        }
        (*v)[(*n)++] = id;
        return true;
}

static void delivered_push(relay *r, int64_t id) {
        if (r->n_delivered == 0)
                r->delivered_since = clock_monotonic();
        /* Out of memory: the row stays unsent and is published again: a duplicate, not a loss. */
        (void)ids_push(&r->delivered, &r->n_delivered, &r->cap_delivered, id);
}

/* A row whose delivery failed: the next pass looks it up again (relay_read.c);
 * out of memory, the next pass is a sweep, which finds it. */
static void retry_push(relay *r, int64_t id) {
        if (!ids_push(&r->retry, &r->n_retry, &r->cap_retry, id))
                r->sweep_due = true;
}

/* A row the brokers refuse for good: dead-lettered at the next pass, and its
 * key released so that the case's later rows go on. */
static void dead_push(relay *r, int64_t id, const char *key, rd_kafka_resp_err_t err) {
        r->fig.failed++;
        key_blocks_delivered(&r->blocks, key, clock_monotonic());
        set_error(r, "outbox row %" PRId64 " refused by the brokers: %s; dead-lettered", id, rd_kafka_err2str(err));
        log_struct(LOG_ERR, MSGID_KAFKA_ERROR, "MESSAGE=Outbox row %" PRId64 " refused by the brokers (%s): "
                   "dead-lettered, with an alert; the case's later events go on", id, rd_kafka_err2name(err), NULL);
        if (r->n_dead == r->cap_dead) {
                size_t cap = r->cap_dead ? r->cap_dead * 2 : 16;
                relay_dead *v = realloc(r->dead, cap * sizeof *v);
                if (!v)
                        return; /* produced again next pass, refused again */
                r->dead = v;
                r->cap_dead = cap;
        }
        r->dead[r->n_dead++] = (relay_dead){.id = id, .err = err};
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        relay *r = opaque;
        flight *f = m->_private;
        if (!f)
                return;
        flight_unlink(r, f);
        usec_t mono = clock_monotonic();
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                r->fig.published++;
                metrics_inc(M_EVENTS_PUBLISHED, (unsigned)f->topic);
                metrics_observe(H_PUBLISH_LATENCY, (double)(clock_realtime() - f->created) / USEC_PER_SEC);
                delivered_push(r, f->id);
                key_blocks_delivered(&r->blocks, f->key, mono);
                /* Over when every row held back after a failure has gone through,
                 * not at the first success of another partition or topic. */
                if (r->blocks.n == 0)
                        relay_refusal_over(&r->refusal, r->fig.refusing);
        } else if (relay_dead_error(m->err)) {
                dead_push(r, f->id, f->key, m->err);
        } else {
                /* Kept unsent; the key waits so the case's later rows do not overtake it. */
                r->fig.failed++;
                metrics_inc(M_EVENT_DELIVERY_FAILURES, (unsigned)f->topic);
                key_blocks_hold(&r->blocks, f->key, mono);
                retry_push(r, f->id);
                /* It may be stored all the same (POSSIBLY_PERSISTED, docs/design.md "The producer"): the
                 * retry then duplicates it under the same ce_id, never loses it. */
                const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "?";
                set_error(r, "delivery of outbox row %" PRId64 " to %s failed: %s", f->id, topic,
                          rd_kafka_err2str(m->err));
                relay_refusal_note(&r->refusal, m->err, topic, r->fig.refusing, sizeof r->fig.refusing);
        }
        free(f);
}

/* Transient errors (brokers down, ...) are retried by librdkafka and logged
 * through kafka_log_cb; they only become the last error here. Fatal ones are logged
 * by producer_recreate. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
        (void)rk;
        relay *r = opaque;
        if (err == RD_KAFKA_RESP_ERR__FATAL)
                r->fatal = true;
        set_error(r, "kafka: %s: %s", rd_kafka_err2str(err), reason);
}

/* ---- the producer ---- */

/* Keys of consumers only (librdkafka CONFIGURATION.md, column C): the relay's
 * producer would warn about each of them. */
static const char *const consumer_only_keys[] = {
        "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
        "heartbeat.interval.ms", "group.protocol.type", "coordinator.query.interval.ms",
        "max.poll.interval.ms", "enable.auto.commit", "auto.commit.enable", "auto.commit.interval.ms",
        "enable.auto.offset.store", "queued.min.messages", "queued.max.messages.kbytes",
        "fetch.wait.max.ms", "fetch.message.max.bytes", "max.partition.fetch.bytes", "fetch.max.bytes",
        "fetch.min.bytes", "fetch.error.backoff.ms", "offset.store.method", "offset.store.path",
        "offset.store.sync.interval.ms", "isolation.level", "enable.partition.eof", "check.crcs",
        "auto.offset.reset", "consume.callback.max.messages",
        /* The relay is idempotent, not transactional: it has no transactions to begin. */
        "transactional.id",
        NULL,
};

static bool producer_key_wanted(const char *k) {
        for (size_t i = 0; consumer_only_keys[i]; i++)
                if (strcmp(consumer_only_keys[i], k) == 0)
                        return false;
        return true;
}

void producer_destroy(relay *r) {
        if (r->mainq) {
                rd_kafka_queue_io_event_enable(r->mainq, -1, NULL, 0);
                rd_kafka_queue_destroy(r->mainq);
                r->mainq = NULL;
        }
        if (r->rk) {
                rd_kafka_destroy(r->rk);
                r->rk = NULL;
        }
        /* No report comes for what the destroyed producer held: those rows stay unsent. */
        flights_free(r);
        r->fatal = false;
}

int producer_new(relay *r, char *err, size_t err_size) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int ret;
        /* Defaults an operator may tune through kafka.* ... */
        static const char *const tunable[][2] = {
                /* long: a timed-out message may be stored anyway (docs/design.md "The producer") */
                {"message.timeout.ms", "300000"},
                /* A pass produces its rows in one loop, which batches them
                 * without waiting; librdkafka's default of 5 ms only delayed
                 * each event by as much (bench/README.md). */
                {"linger.ms", "1"},
                {"compression.type", "none"},
                {"client.id", "allvarsd-relay"},
        };
        for (size_t i = 0; i < sizeof tunable / sizeof tunable[0]; i++)
                if ((ret = kafka_conf_set(conf, tunable[i][0], tunable[i][1], err, err_size)) < 0)
                        goto fail;
        for (size_t i = 0; i < r->cfg->n_kafka; i++)
                if (producer_key_wanted(r->cfg->kafka[i].key) &&
                    (ret = kafka_conf_set(conf, r->cfg->kafka[i].key, r->cfg->kafka[i].value, err, err_size)) < 0)
                        goto fail;
        /* ... and what the relay's guarantees rest on: not overridable. */
        if ((ret = kafka_conf_set(conf, "enable.idempotence", "true", err, err_size)) < 0 ||
            (ret = kafka_conf_set(conf, "acks", "all", err, err_size)) < 0 ||
            (ret = kafka_conf_set(conf, "log.queue", "true", err, err_size)) < 0)
                goto fail;
        if (r->bootstrap && (ret = kafka_conf_set(conf, "bootstrap.servers", r->bootstrap, err, err_size)) < 0)
                goto fail;
        if ((ret = metrics_kafka_enable(conf, MC_PRODUCER, r->cfg, err, err_size)) < 0)
                goto fail;
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_error_cb(conf, on_error);
        rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
        rd_kafka_conf_set_opaque(conf, r);

        char e[512];
        r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        if (!r->rk) {
                snprintf(err, err_size, "kafka producer: %s", e);
                ret = -EINVAL;
                goto fail;
        }
        rd_kafka_set_log_queue(r->rk, NULL);
        r->mainq = rd_kafka_queue_get_main(r->rk);
        /* Delivery reports, errors and logs wait on the main queue; it writes a
         * byte to the pipe when it turns non-empty, so the event loop can poll it. */
        rd_kafka_queue_io_event_enable(r->mainq, r->pipe[1], "1", 1);
        return 0;
fail:
        rd_kafka_conf_destroy(conf);
        return ret;
}

void producer_serve(relay *r, int timeout_ms) {
        char buf[256];
        while (read(r->pipe[0], buf, sizeof buf) > 0)
                ;
        if (!r->rk)
                return;
        int served = rd_kafka_poll(r->rk, timeout_ms);
        for (int i = 0; served > 0 && i < POLL_SERVE_MAX; i++)
                served = rd_kafka_poll(r->rk, 0);
}

/* After a fatal idempotence error the producer is unusable (librdkafka
 * INTRODUCTION.md "Idempotent Producer"): fail what it holds, start a new one. */
int producer_recreate(relay *r) {
        char reason[512] = "";
        rd_kafka_resp_err_t e = rd_kafka_fatal_error(r->rk, reason, sizeof reason);
        set_error(r, "kafka fatal error: %s: %s; recreating the producer", rd_kafka_err2str(e), reason);
        log_struct(LOG_ERR, MSGID_KAFKA_ERROR, "MESSAGE=Outbox relay: fatal producer error (%s: %s); recreating it",
                   rd_kafka_err2str(e), reason, NULL);
        rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(r->rk, FATAL_FLUSH_MS);
        producer_serve(r, 0);
        producer_destroy(r);
        char err[300];
        int ret = producer_new(r, err, sizeof err);
        if (ret < 0)
                set_error(r, "recreating the producer: %s", err); /* retried at the next step */
        r->query_due = true;
        r->sweep_due = true; /* what was in flight is unsent again */
        return ret;
}

/* ---- producing an outbox row ---- */

/* Produce one row. Returns 0, 1 when the producer's queue is full (stop this
 * pass), or a negative errno (the row's key is held back). */
int produce_row(relay *r, PGresult *res, int i) {
        int64_t id = be64(PQgetvalue(res, i, 0));
        const char *event_id = PQgetvalue(res, i, 1);
        const char *topic = PQgetvalue(res, i, 2);
        const char *key = PQgetvalue(res, i, 3);
        const char *ce_type = PQgetvalue(res, i, 4);
        usec_t ce_time = be64(PQgetvalue(res, i, 5)) + PG_EPOCH_USEC;
        const char *payload = PQgetvalue(res, i, 6);
        size_t len = (size_t)PQgetlength(res, i, 6);
        usec_t created = be64(PQgetvalue(res, i, 7)) + PG_EPOCH_USEC;

        char time[RFC3339_MAX];
        clock_format_rfc3339(ce_time, time);
        size_t key_len = strlen(key);
        flight *f = malloc(sizeof *f + key_len + 1);
        if (!f)
                return 1;
        f->id = id;
        f->created = created;
        f->topic = metrics_topic_of(topic);
        memcpy(f->key, key, key_len + 1);

        const char *source = r->cfg->event_source ? r->cfg->event_source : "urn:allvarsd";
        /* CloudEvents Kafka protocol binding, binary content mode (docs/design.md "The event envelope"). */
        rd_kafka_resp_err_t e = rd_kafka_producev(
                r->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_HEADER("content-type", "application/protobuf", -1),
                RD_KAFKA_V_HEADER("ce_specversion", "1.0", -1), RD_KAFKA_V_HEADER("ce_id", event_id, -1),
                RD_KAFKA_V_HEADER("ce_type", ce_type, -1), RD_KAFKA_V_HEADER("ce_source", source, -1),
                RD_KAFKA_V_HEADER("ce_time", time, -1), RD_KAFKA_V_OPAQUE(f), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                free(f);
                return 1;
        }
        if (relay_dead_error(e)) {
                free(f);
                dead_push(r, id, key, e);
                return 0;
        }
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                free(f);
                r->fig.failed++;
                key_blocks_hold(&r->blocks, key, clock_monotonic());
                set_error(r, "producing outbox row %" PRId64 " to %s: %s", id, topic, rd_kafka_err2str(e));
                if (e == RD_KAFKA_RESP_ERR__FATAL)
                        r->fatal = true;
                return -EIO;
        }
        f->link.next = &r->flights;
        f->link.prev = r->flights.prev;
        r->flights.prev->next = &f->link;
        r->flights.prev = &f->link;
        r->n_flights++;
        r->fig.in_flight = r->n_flights;
        return 0;
}

