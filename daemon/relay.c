/* The outbox relay. See relay.h for the contract.
 *
 * Why it is shaped this way (docs/design.md "The outbox relay", "The producer"):
 *  - Every outbox row is unsent (schemas/004_outbox_sent.sql). Each pass reads
 *    them oldest first (ORDER BY id, the primary key) and never remembers a
 *    "last id": a row whose transaction commits after a higher id was
 *    published is still there, so the next pass finds it.
 *  - A row is marked sent only on a delivery report without error, in bulk
 *    (one statement per pass): deleted from the outbox, and its record, with
 *    the payload's size but not the payload, inserted into outbox_sent. A
 *    delete, not an UPDATE of sent_at: the UPDATE rewrote the whole row,
 *    payload included, and left dead index entries for the next pass to walk.
 *    A crash between delivery and the marking publishes the row again with the
 *    same ce_id; consumers drop it by that id.
 *  - The idempotent producer (acks=all) keeps the produce order within a
 *    partition, and a case's events share a key, so they stay in id order. After
 *    a failed delivery the key is held back (with backoff) until the row is
 *    produced again, so later rows of the case do not overtake it in a new pass.
 *    (Rows of that key already in flight can still land; that is the one
 *    reordering left, and only after an error.)
 *  - One active relay: a session advisory lock on the relay's own connection.
 *    When the session ends (crash, network) the server releases the lock and a
 *    standby takes it at its next attempt (every relay.poll_ms).
 *  - Never blocks on Kafka: delivery reports are served with rd_kafka_poll(0)
 *    and the main queue wakes a pipe (relay_producer_fd) through
 *    rd_kafka_queue_io_event_enable. The PostgreSQL connection is opened with
 *    PQconnectStart/PQconnectPoll; queries on an open connection are short
 *    round trips.
 *  - A fatal idempotence error (rd_kafka_fatal_error) cannot be cleared: the
 *    producer is flushed, destroyed and recreated; its rows stay unsent.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "cleanup.h"
#include "key_blocks.h"
#include "log.h"
#include "pg.h"
#include "kafka_conf.h"
#include "metrics.h"
#include "metrics_kafka.h"
#include "relay.h"
#include "relay_dead.h"
#include "sqlstate.h"

#define RECONNECT_MIN (100 * 1000)
#define RECONNECT_MAX (30 * USEC_PER_SEC)
#define DEFAULT_BATCH 500
#define DEFAULT_POLL_MS 1000
#define POLL_SERVE_MAX 10000            /* callbacks served per rd_kafka_poll round */
#define FATAL_FLUSH_MS 100           /* what is not reported by then stays unsent */
#define CONNECT_TIMEOUT (10 * USEC_PER_SEC)  /* libpq's connect_timeout does not apply to PQconnectPoll */

typedef struct flight_link {
        struct flight_link *prev, *next;
} flight_link;

/* One produced row awaiting its delivery report; the message's opaque. */
typedef struct flight {
        flight_link link;               /* first: a flight_link * is its flight * */
        int64_t id;
        usec_t created;                 /* the outbox row's created_at (realtime) */
        int topic;                      /* metrics_topic, or -1 */
        char key[];
} flight;

typedef enum pg_state {
        PG_NONE,
        PG_CONNECTING,
        PG_READY,
} pg_state;

struct relay {
        const config *cfg;
        char *bootstrap;

        PGconn *pg;
        pg_state pg_state;
        PostgresPollingStatusType pg_polling;
        usec_t reconnect_at;            /* monotonic */
        usec_t reconnect_backoff;
        bool active;
        usec_t connect_deadline;        /* monotonic */
        bool session_set;               /* the session's settings are applied */
        usec_t next_lock_try;           /* monotonic */
        bool query_due;
        usec_t next_poll;               /* monotonic */

        rd_kafka_t *rk;
        rd_kafka_queue_t *mainq;
        int pipe[2];
        bool fatal;

        flight_link flights;            /* list head */
        uint64_t n_flights;
        int64_t *delivered;             /* delivered, not yet marked sent */
        size_t n_delivered, cap_delivered;
        key_blocks blocks;              /* held back after a failed delivery */
        relay_dead *dead;               /* refused for good, not yet dead-lettered (relay_dead.h) */
        size_t n_dead, cap_dead;
        relay_refusal refusal;          /* deliveries failing and retried (relay_dead.h) */

        relay_figures fig;
};

static void set_error(relay *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(relay *r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->fig.last_error, sizeof r->fig.last_error, fmt, ap);
        va_end(ap);
        /* One line: libpq's messages end in newlines. */
        char *s = r->fig.last_error;
        for (char *p = s; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == ' ')
                s[--n] = '\0';
}

static unsigned relay_batch(const relay *r) {
        return r->cfg->relay_batch ? r->cfg->relay_batch : DEFAULT_BATCH;
}

static usec_t relay_poll_interval(const relay *r) {
        return (usec_t)(r->cfg->relay_poll_ms ? r->cfg->relay_poll_ms : DEFAULT_POLL_MS) * 1000;
}

/* Backpressure: rows in flight before the relay stops reading more. */
static uint64_t flights_max(const relay *r) {
        return (uint64_t)relay_batch(r) * 4;
}

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

static void delivered_push(relay *r, int64_t id) {
        if (r->n_delivered == r->cap_delivered) {
                size_t cap = r->cap_delivered ? r->cap_delivered * 2 : 256;
                int64_t *v = realloc(r->delivered, cap * sizeof *v);
                if (!v)
                        return; /* the row stays unsent and is published again: a duplicate, not a loss */
                r->delivered = v;
                r->cap_delivered = cap;
        }
        r->delivered[r->n_delivered++] = id;
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
                relay_refusal_over(&r->refusal, r->fig.refusing);
        } else if (relay_dead_error(m->err)) {
                dead_push(r, f->id, f->key, m->err);
        } else {
                /* Kept unsent; the key waits so the case's later rows do not overtake it. */
                r->fig.failed++;
                metrics_inc(M_EVENT_DELIVERY_FAILURES, (unsigned)f->topic);
                key_blocks_hold(&r->blocks, f->key, mono);
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

static void producer_destroy(relay *r) {
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

static int producer_new(relay *r, char *err, size_t err_size) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int ret;
        /* Defaults an operator may tune through kafka.* ... */
        static const char *const tunable[][2] = {
                /* long: a timed-out message may be stored anyway (docs/design.md "The producer") */
                {"message.timeout.ms", "300000"},
                {"linger.ms", "5"},
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

static void producer_serve(relay *r, int timeout_ms) {
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
static int producer_recreate(relay *r) {
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
        return ret;
}

/* ---- PostgreSQL ---- */

static void pg_close(relay *r, const char *why) {
        if (r->pg)
                PQfinish(r->pg);
        r->pg = NULL;
        r->pg_state = PG_NONE;
        r->session_set = false;
        if (r->active) {
                r->active = false;
                r->fig.active = false;
                log_struct(LOG_WARNING, MSGID_RELAY, "MESSAGE=Outbox relay standby: %s", why, NULL);
        }
        usec_t mono = clock_monotonic();
        r->reconnect_at = mono + r->reconnect_backoff;
        r->reconnect_backoff = r->reconnect_backoff * 2 > RECONNECT_MAX ? RECONNECT_MAX : r->reconnect_backoff * 2;
}

static void pg_start(relay *r) {
        /* Entries before the expanded dbname are defaults the conninfo may
         * override; those after it win (libpq PQconnectdbParams). */
        const char *keys[12], *vals[12];
        size_t n = 0;
        keys[n] = "keepalives", vals[n++] = "1";
        keys[n] = "keepalives_idle", vals[n++] = "30";
        keys[n] = "keepalives_interval", vals[n++] = "10";
        keys[n] = "keepalives_count", vals[n++] = "3";
        keys[n] = "options", vals[n++] = "-c jit=off";   /* short statements: JIT only costs */
        keys[n] = "dbname", vals[n++] = r->cfg->db_conninfo ? r->cfg->db_conninfo : "";
        if (r->cfg->db_password && r->cfg->db_password[0])
                keys[n] = "password", vals[n++] = r->cfg->db_password;
        keys[n] = "application_name", vals[n++] = "allvarsd-relay";
        keys[n] = NULL, vals[n] = NULL;

        r->pg = PQconnectStartParams(keys, vals, 1);
        if (!r->pg || PQstatus(r->pg) == CONNECTION_BAD) {
                set_error(r, "PostgreSQL: %s", r->pg ? PQerrorMessage(r->pg) : "out of memory");
                pg_close(r, "cannot connect to PostgreSQL");
                return;
        }
        r->pg_state = PG_CONNECTING;
        r->pg_polling = PGRES_POLLING_WRITING;
        r->connect_deadline = clock_monotonic() + CONNECT_TIMEOUT;
}

static void pg_notice_ignore(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static short pg_connect_events(const relay *r) {
        return r->pg_polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
}

/* Advance a connection attempt as far as its socket allows, without waiting. */
static void pg_advance(relay *r) {
        for (int i = 0; i < 32 && r->pg_state == PG_CONNECTING; i++) {
                struct pollfd p = {.fd = PQsocket(r->pg), .events = pg_connect_events(r)};
                if (p.fd >= 0 && poll(&p, 1, 0) == 0) {
                        if (clock_monotonic() >= r->connect_deadline) {
                                set_error(r, "PostgreSQL: connection attempt timed out");
                                pg_close(r, "cannot connect to PostgreSQL");
                        }
                        return;
                }
                r->pg_polling = PQconnectPoll(r->pg);
                if (r->pg_polling == PGRES_POLLING_FAILED) {
                        set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
                        pg_close(r, "cannot connect to PostgreSQL");
                        return;
                }
                if (r->pg_polling != PGRES_POLLING_OK)
                        continue;
                /* libpq would print server notices (e.g. the FATAL of a terminated
                 * session) on stderr; errors reach last_error instead. */
                PQsetNoticeProcessor(r->pg, pg_notice_ignore, NULL);
                r->pg_state = PG_READY;
                r->reconnect_backoff = RECONNECT_MIN;
                r->next_lock_try = 0;
        }
}

/* A failed statement: the connection's end, or an error of the statement. */
static int pg_failed(relay *r, PGresult *res, const char *what) {
        if (!r->pg)
                return -ECONNRESET; /* given up already (relay_exec): said so there */
        set_error(r, "PostgreSQL %s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(r->pg));
        metrics_database_error(sqlstate_classify(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL),
                               r->fig.last_error);
        if (res)
                PQclear(res);
        if (PQstatus(r->pg) == CONNECTION_BAD) {
                pg_close(r, "connection to PostgreSQL lost");
                return -ECONNRESET;
        }
        return -EIO;
}

/* Read what the server sent: notifications, or the connection's end. */
static int pg_consume(relay *r) {
        if (!PQconsumeInput(r->pg)) {
                set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
                pg_close(r, "connection to PostgreSQL lost");
                return -ECONNRESET;
        }
        PGnotify *n;
        while ((n = PQnotifies(r->pg))) {
                r->query_due = true;
                PQfreemem(n);
        }
        return 0;
}

/* One statement (p NULL: the simple protocol, several statements allowed),
 * its reply awaited in bounded time (pg_await: a link that drops packets
 * without a reset would otherwise hold the relay for as long as it lasts).
 * The last result; NULL when the connection was given up, and closed here, so
 * that pg_failed() returns -ECONNRESET. docs/design.md "Silent links". */
static PGresult *exec_params(relay *r, const char *sql, const pg_params *p, int result_format) {
        int sent = p ? PQsendQueryParams(r->pg, sql, p->n, NULL, p->values, p->lengths, p->formats, result_format)
                     : PQsendQuery(r->pg, sql);
        int w = sent ? pg_await(r->pg) : -ECONNRESET;
        PGresult *res = NULL, *next;
        while (w == 0 && (next = PQgetResult(r->pg))) {
                PQclear(res);
                res = next;
                w = pg_await(r->pg);
        }
        if (w == 0)
                return res;
        PQclear(res);
        if (w == -ETIMEDOUT)
                set_error(r, "PostgreSQL: no reply within %lld ms", (long long)(PG_REPLY_TIMEOUT_DEFAULT / 1000));
        else
                set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
        pg_close(r, "connection to PostgreSQL lost");
        return NULL;
}

static int try_lock(relay *r) {
        if (!r->session_set) {
                /* The lock lives as long as this session: let the server notice a
                 * dead peer (host gone, network cut) in about a minute rather than
                 * the kernel's two hours, so that a standby can take over. */
                PGresult *res = exec_params(r,
                                            "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; "
                                            "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 60000",
                                            NULL, 0);
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return pg_failed(r, res, "session settings");
                PQclear(res);
                r->session_set = true;
        }
        pg_params p = {0};
        pg_params_int8(&p, RELAY_LOCK_KEY);
        PGresult *res = exec_params(r, "SELECT pg_try_advisory_lock($1::bigint)", &p, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_failed(r, res, "advisory lock");
        bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!got)
                return 0;
        res = exec_params(r, "LISTEN " RELAY_NOTIFY_CHANNEL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_failed(r, res, "LISTEN");
        PQclear(res);
        r->active = true;
        r->fig.active = true;
        r->query_due = true;    /* a NOTIFY sent before LISTEN is not delivered: look now */
        log_struct(LOG_NOTICE, MSGID_RELAY, "MESSAGE=Outbox relay active: holds the advisory lock", NULL);
        return 0;
}

/* The relay's own statements, with binary parameters (pg.h). */

static int mark_sent(relay *r) {
        if (r->n_delivered == 0)
                return 0;
        _cleanup_(pg_arr_free) pg_arr ids = { 0 };
        pg_arr_reset(&ids, PG_OID_INT8);
        for (size_t i = 0; i < r->n_delivered; i++)
                pg_arr_int8(&ids, r->delivered[i]);
        pg_params p = { 0 };
        if (pg_params_arr(&p, &ids) < 0)
                return -ENOMEM;
        /* A row already gone (another relay marked it) returns nothing here. An
         * event id already in outbox_sent (re-inserted in the window that
         * schemas/004_outbox_sent.sql describes, so published twice) is not
         * recorded twice: the row still leaves the outbox, the marking never
         * fails on it. */
        PGresult *res = exec_params(r,
                                     "WITH d AS (DELETE FROM allvarsd.outbox WHERE id = ANY($1::bigint[]) "
                                     "           RETURNING id, event_id, topic, key, ce_type, ce_time, "
                                     "                     octet_length(payload) AS payload_bytes, created_at) "
                                     "INSERT INTO allvarsd.outbox_sent "
                                     "       (id, event_id, topic, key, ce_type, ce_time, payload_bytes, created_at, "
                                     "        sent_at) "
                                     "SELECT d.id, d.event_id, d.topic, d.key, d.ce_type, d.ce_time, d.payload_bytes, "
                                     "       d.created_at, now() FROM d "
                                     "ON CONFLICT DO NOTHING",
                                     &p, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_failed(r, res, "marking outbox rows sent");
        PQclear(res);
        r->n_delivered = 0;
        return 0;
}

static int64_t be64(const char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | (uint8_t)p[i];
        return (int64_t)v;
}

/* The ids to leave out (in flight, or delivered and not yet marked), and the keys held back. */
static void excluded(relay *r, usec_t mono, pg_arr *ids, pg_arr *keys) {
        for (flight_link *l = r->flights.next; l != &r->flights; l = l->next)
                pg_arr_int8(ids, ((flight *)l)->id);
        for (size_t i = 0; i < r->n_delivered; i++)
                pg_arr_int8(ids, r->delivered[i]);
        for (size_t i = 0; i < r->n_dead; i++)
                pg_arr_int8(ids, r->dead[i].id);
        for (size_t i = 0; i < r->blocks.n; i++)
                if (r->blocks.v[i].until > mono)
                        pg_arr_text(keys, r->blocks.v[i].key);
}

/* Produce one row. Returns 0, 1 when the producer's queue is full (stop this
 * pass), or a negative errno (the row's key is held back). */
static int produce_row(relay *r, PGresult *res, int i) {
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

/* One pass: read unsent rows oldest first and produce them. */
static int publish(relay *r, usec_t mono) {
        unsigned limit = relay_batch(r);
        uint64_t room = flights_max(r) - r->n_flights;
        if (room < limit)
                limit = (unsigned)room;
        _cleanup_(pg_arr_free) pg_arr ids = { 0 };
        _cleanup_(pg_arr_free) pg_arr keys = { 0 };
        pg_arr_reset(&ids, PG_OID_INT8);
        pg_arr_reset(&keys, PG_OID_TEXT);
        excluded(r, mono, &ids, &keys);
        pg_params p = { 0 };
        if (pg_params_arr(&p, &ids) < 0 || pg_params_arr(&p, &keys) < 0)
                return -ENOMEM;
        pg_params_int4(&p, (int32_t)limit);
        /* No "id > last": a lower id that commits late is still unsent here. */
        PGresult *res = exec_params(r,
                                    "SELECT id, event_id::text, topic, key, ce_type, ce_time, payload, created_at "
                                    "FROM allvarsd.outbox "
                                    "WHERE id <> ALL($1::bigint[]) AND key <> ALL($2::text[]) "
                                    "ORDER BY id LIMIT $3::integer",
                                    &p, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_failed(r, res, "reading the outbox");
        int rows = PQntuples(res), ret = 0;
        bool full = false;
        for (int i = 0; i < rows; i++) {
                if (key_blocks_held(&r->blocks, PQgetvalue(res, i, 3), mono))
                        continue; /* an earlier row of this key failed in this pass */
                int k = produce_row(r, res, i);
                if (k == 1) {
                        full = true;
                        break;
                }
                if (k < 0 && ret == 0)
                        ret = k;
        }
        PQclear(res);
        /* More may wait behind a full batch. */
        r->query_due = !full && (unsigned)rows == limit && limit > 0;
        return ret;
}

/* ---- the step ---- */

static int work(relay *r, usec_t mono) {
        int ret = 0, k;

        if (r->rk && (r->fatal || rd_kafka_fatal_error(r->rk, NULL, 0)))
                if ((k = producer_recreate(r)) < 0)
                        ret = k;
        if (!r->rk) {
                char err[300];
                if ((k = producer_new(r, err, sizeof err)) < 0) {
                        set_error(r, "creating the producer: %s", err);
                        ret = k;
                }
        }
        producer_serve(r, 0);

        if (r->pg_state == PG_NONE && mono >= r->reconnect_at)
                pg_start(r);
        if (r->pg_state == PG_CONNECTING)
                pg_advance(r);
        if (r->pg_state != PG_READY)
                return ret ? ret : -ENOTCONN;

        if ((k = pg_consume(r)) < 0)
                return k;
        /* Delivered rows are marked whether or not this relay is still active. */
        if ((k = mark_sent(r)) < 0) {
                if (k == -ECONNRESET)
                        return k;
                ret = k;
        }
        if (r->n_dead > 0) {
                char why[300];
                if ((k = relay_dead_write(r->pg, r->cfg, r->dead, r->n_dead, clock_realtime(), why, sizeof why)) < 0) {
                        set_error(r, "%s", why);
                        ret = k;
                } else
                        r->n_dead = 0;
        }
        if (!r->active && mono >= r->next_lock_try) {
                r->next_lock_try = mono + relay_poll_interval(r);
                if ((k = try_lock(r)) < 0)
                        return k;
        }
        if (!r->active || !r->rk)
                return ret;
        key_blocks_prune(&r->blocks, mono);
        if ((r->query_due || mono >= r->next_poll) && r->n_flights < flights_max(r)) {
                r->next_poll = mono + relay_poll_interval(r);
                if ((k = publish(r, mono)) < 0 && ret == 0)
                        ret = k;
                if (k == -ECONNRESET)
                        return k;
                /* Hand the batch to the network now, and serve what is ready. */
                producer_serve(r, 0);
        }
        return ret;
}

/* The earliest time (monotonic) at which work() has something to do without an event. */
static usec_t next_due(const relay *r) {
        if (r->pg_state == PG_NONE)
                return r->reconnect_at;
        if (r->pg_state == PG_CONNECTING)
                return r->connect_deadline; /* or the socket, whichever comes first */
        if (!r->active)
                return r->next_lock_try;
        if (r->query_due && r->n_flights < flights_max(r))
                return 0;
        return r->next_poll;
}

int relay_step(relay *r, usec_t max_block) {
        usec_t start = clock_monotonic();
        usec_t deadline = start + (max_block > 0 ? max_block : 0);
        int ret = work(r, start);

        usec_t now = clock_monotonic();
        usec_t until = next_due(r);
        if (until > deadline)
                until = deadline;
        if (now >= until)
                return ret;

        /* Wait for a delivery report, a notification, the connection's next
         * step or the next due time. */
        int ms = (int)((until - now + 999) / 1000);
        struct pollfd fds[2] = {
                {.fd = r->pipe[0], .events = POLLIN},
                {.fd = r->pg_state != PG_NONE ? PQsocket(r->pg) : -1,
                 .events = r->pg_state == PG_CONNECTING ? pg_connect_events(r) : POLLIN},
        };
        if (poll(fds, 2, ms) < 0 && errno != EINTR)
                return ret ? ret : -errno;
        now = clock_monotonic();
        int k = work(r, now);
        return k < 0 ? k : ret;
}

int relay_new(const config *cfg, const char *bootstrap, relay **ret, char *err, size_t err_size) {
        relay *r = calloc(1, sizeof *r);
        if (!r) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        r->cfg = cfg;
        r->flights.next = r->flights.prev = &r->flights;
        r->pipe[0] = r->pipe[1] = -1;
        r->reconnect_backoff = RECONNECT_MIN;
        if (bootstrap && !(r->bootstrap = strdup(bootstrap))) {
                snprintf(err, err_size, "out of memory");
                relay_free(r, 0);
                return -ENOMEM;
        }
        if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                int e = -errno;
                snprintf(err, err_size, "pipe: %s", strerror(-e));
                relay_free(r, 0);
                return e;
        }
        int k = producer_new(r, err, err_size);
        if (k < 0) {
                relay_free(r, 0);
                return k;
        }
        /* The database may not answer yet: the relay stands by and retries. */
        pg_start(r);
        *ret = r;
        return 0;
}

void relay_free(relay *r, usec_t flush_timeout) {
        if (!r)
                return;
        if (r->rk) {
                /* Serves the delivery reports of what is in flight. */
                rd_kafka_flush(r->rk, (int)(flush_timeout / 1000));
                producer_serve(r, 0);
        }
        if (r->pg_state == PG_READY && r->n_delivered > 0)
                mark_sent(r);
        producer_destroy(r);
        /* Ending the session releases the advisory lock. */
        if (r->pg)
                PQfinish(r->pg);
        key_blocks_free(&r->blocks);
        free(r->dead);
        free(r->delivered);
        free(r->bootstrap);
        if (r->pipe[0] >= 0)
                close(r->pipe[0]);
        if (r->pipe[1] >= 0)
                close(r->pipe[1]);
        free(r);
}

int relay_fd(const relay *r) {
        return r && r->pg && r->pg_state != PG_NONE ? PQsocket(r->pg) : -1;
}

int relay_producer_fd(const relay *r) {
        return r ? r->pipe[0] : -1;
}

short relay_fd_events(const relay *r) {
        return r && r->pg_state == PG_CONNECTING ? pg_connect_events(r) : POLLIN;
}

usec_t relay_next_due(const relay *r) {
        return next_due(r);
}

void relay_figures_read(const relay *r, relay_figures *ret) {
        *ret = r->fig;
        ret->active = r->active;
        ret->in_flight = r->n_flights;
}

void relay_reconfigure(relay *r, const config *cfg) {
        /* relay.batch, relay.poll_ms and event.source are read from cfg on use. */
        r->cfg = cfg;
        r->query_due = true;
}
