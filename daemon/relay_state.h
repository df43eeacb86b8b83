/* What the relay's files share (relay.c: the step and its passes;
 * relay_producer.c: the producer, its flights and delivery reports;
 * relay_session.c: the PostgreSQL session that holds the lock). Not for use
 * outside daemon/relay*.c. Calls go one way: relay.c -> the other two. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "key_blocks.h"
#include "pg.h"
#include "relay.h"
#include "relay_dead.h"

#define RECONNECT_MIN (100 * 1000)
#define RECONNECT_MAX (30 * USEC_PER_SEC)
#define DEFAULT_BATCH 500
#define DEFAULT_POLL_MS 1000
#define POLL_SERVE_MAX 10000            /* callbacks served per rd_kafka_poll round */
#define FATAL_FLUSH_MS 100           /* what is not reported by then stays unsent */
#define CONNECT_TIMEOUT (10 * USEC_PER_SEC)  /* libpq's connect_timeout does not apply to PQconnectPoll */
/* Delivered rows wait this long for more before they are marked sent (unless a
 * pass's worth already waits): at 500 referrals/s the relay marked after every
 * delivery report, some 400 statements and transactions a second of a few rows
 * each. Marking later only keeps the rows in the outbox (left out of the reads
 * meanwhile, relay_read.c), and widens by as much the window in which a crash
 * publishes a delivered row again, which consumers drop by its ce_id. */
#define MARK_DELAY (20 * 1000)

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

/* An outbox id below the relay's hi not seen yet (relay_read.c). */
typedef struct relay_gap {
        int64_t id;
        usec_t since;                   /* monotonic: noted at */
} relay_gap;

/* Ids sorted, each with when it was noted. */
typedef struct relay_gaps {
        relay_gap *v;
        size_t n, cap;
} relay_gaps;

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

        /* What the passes read (relay_read.c). */
        int64_t hi;                     /* every row this relay produced has an id <= hi */
        relay_gaps gaps;                /* ids <= hi not seen yet: looked up by every pass */
        relay_gaps late;                /* gaps past their time: looked up every relay.poll_ms */
        usec_t next_late;               /* monotonic */
        int64_t *retry;                 /* delivery failed since the last pass: read again */
        size_t n_retry, cap_retry;
        bool sweep_due;                 /* the next pass reads from the oldest row */
        usec_t next_sweep;              /* monotonic */

        rd_kafka_t *rk;
        rd_kafka_queue_t *mainq;
        int pipe[2];
        bool fatal;

        flight_link flights;            /* list head */
        uint64_t n_flights;
        int64_t *delivered;             /* delivered, not yet marked sent */
        size_t n_delivered, cap_delivered;
        usec_t delivered_since;         /* monotonic: when the first of them was delivered */
        key_blocks blocks;              /* held back after a failed delivery */
        relay_dead *dead;               /* refused for good, not yet dead-lettered (relay_dead.h) */
        size_t n_dead, cap_dead;
        relay_refusal refusal;          /* deliveries failing and retried (relay_dead.h) */

        relay_figures fig;
};

/* One line: libpq's messages end in newlines. */
__attribute__((format(printf, 2, 3))) static inline void set_error(relay *r, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->fig.last_error, sizeof r->fig.last_error, fmt, ap);
        va_end(ap);
        char *s = r->fig.last_error;
        for (char *p = s; *p; p++)
                if (*p == '\n' || *p == '\r')
                        *p = ' ';
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == ' ')
                s[--n] = '\0';
}

/* A binary int8 or timestamptz column. */
static inline int64_t be64(const char *p) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
                v = v << 8 | (uint8_t)p[i];
        return (int64_t)v;
}

static inline unsigned relay_batch(const relay *r) {
        return r->cfg->relay_batch ? r->cfg->relay_batch : DEFAULT_BATCH;
}

static inline usec_t relay_poll_interval(const relay *r) {
        return (usec_t)(r->cfg->relay_poll_ms ? r->cfg->relay_poll_ms : DEFAULT_POLL_MS) * 1000;
}

/* Backpressure: rows in flight before the relay stops reading more. */
static inline uint64_t flights_max(const relay *r) {
        return (uint64_t)relay_batch(r) * 4;
}

/* relay_read.c: one pass: read unsent rows (relay_read or relay_read_new) and produce them. */
int relay_publish(relay *r, usec_t mono);

/* relay_producer.c */
int producer_new(relay *r, char *err, size_t err_size);
void producer_destroy(relay *r);
/* Serve delivery reports, errors and logs (waiting up to timeout_ms for the first). */
void producer_serve(relay *r, int timeout_ms);
/* After a fatal idempotence error: fail what it holds, start a new producer. */
int producer_recreate(relay *r);
/* Produce row i of an outbox read (columns as publish() selects them).
 * Returns 0, 1 when the producer's queue is full (stop this pass), or a
 * negative errno (the row's key is held back). */
int produce_row(relay *r, PGresult *res, int i);

/* relay_session.c */
void pg_start(relay *r);
/* End the session (the lock goes with it) and schedule a reconnect. */
void pg_close(relay *r, const char *why);
/* Advance a connection attempt as far as its socket allows, without waiting. */
void pg_advance(relay *r);
short pg_connect_events(const relay *r);
/* A failed statement: -ECONNRESET (the connection is closed) or -EIO. */
int pg_failed(relay *r, PGresult *res, const char *what);
/* Read what the server sent: notifications, or the connection's end. */
int pg_consume(relay *r);
/* A statement the session prepared (relay_session.c: relay_lock, relay_read,
 * relay_mark_sent), its reply bounded; NULL when the connection was given up. */
PGresult *exec_prepared(relay *r, const char *name, const pg_params *p, int result_format);
/* Take the advisory lock and LISTEN when it is free: the relay turns active. */
int try_lock(relay *r);
/* Delivered rows leave the outbox for outbox_sent. */
int mark_sent(relay *r);
