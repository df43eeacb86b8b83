/* The outbox relay. See relay.h for the contract.
 *
 * Why it is shaped this way (docs/design.md "The outbox relay", "The producer"):
 *  - Every outbox row is unsent (schemas/004_outbox_sent.sql). A pass reads
 *    the rows above the highest id it has handled and the ids below it not
 *    seen yet; a sweep from the oldest row, at least every 20 relay.poll_ms,
 *    finds any row whose transaction committed later than those look
 *    (relay_read.c).
 *  - A row is marked sent only on a delivery report without error, in bulk
 *    (one statement for what was delivered within MARK_DELAY, or a pass's
 *    worth, relay_state.h): deleted from the outbox, and its record, with
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
#include "log.h"
#include "relay_state.h"

/* ---- the step ---- */

/* Delivered rows to mark sent now (MARK_DELAY): a pass's worth, or the first
 * of them delivered MARK_DELAY ago; at once while not active (a standby only
 * finishes what it delivered). */
static bool mark_due(const relay *r, usec_t mono) {
        return r->n_delivered > 0 && (!r->active || r->n_delivered >= relay_batch(r) ||
                                      mono >= r->delivered_since + MARK_DELAY);
}

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
        if (mark_due(r, mono) && (k = mark_sent(r)) < 0) {
                if (k == -ECONNRESET)
                        return k;
                ret = k;
        }
        if (r->n_dead > 0) {
                char why[300];
                if ((k = relay_dead_write(r->pg, r->cfg, r->dead, r->n_dead, clock_realtime(), why, sizeof why)) < 0) {
                        set_error(r, "%s", why);
                        if (k == -ECONNRESET) {
                                pg_close(r, "connection to PostgreSQL lost");
                                return k;
                        }
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
                if ((k = relay_publish(r, mono)) < 0 && ret == 0)
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
        if (r->n_delivered > 0 && r->delivered_since + MARK_DELAY < r->next_poll)
                return r->delivered_since + MARK_DELAY;
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
        free(r->gaps.v);
        free(r->late.v);
        free(r->retry);
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
