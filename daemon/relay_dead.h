/* Events the brokers refuse for good (larger than they accept, an invalid
 * record): the relay takes such a row out of the outbox, so that the case's
 * later events go on, keeps its record without the payload in
 * outbox_undeliverable, and writes in its place a DeadLetter (reason
 * OVERSIZED, on the dead-letter topic) and an EVENT_UNDELIVERABLE alert of
 * the case, in one transaction on the relay's session. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"

typedef struct relay_dead {
        int64_t id;                     /* the outbox row */
        rd_kafka_resp_err_t err;
} relay_dead;

/* A delivery or produce error that retrying cannot cure. */
bool relay_dead_error(rd_kafka_resp_err_t err);

/* Write the n rows' records, dead letters and alerts, every reply bounded
 * (pg_await_result); 0, or -EIO with the reason in why (the caller retries
 * with the same rows), or -ECONNRESET when no reply came in time or the
 * connection failed (the caller gives the session up). */
int relay_dead_write(PGconn *pg, const config *cfg, const relay_dead *v, size_t n, usec_t now, char *why,
                     size_t why_size);

/* Deliveries that fail and are retried (the row stays in the outbox): the
 * brokers refusing a timestamp, a missing topic, a denied write, a timeout. */
typedef struct relay_refusal {
        rd_kafka_resp_err_t err;        /* the last error; 0 once a delivery succeeds */
        uint64_t n;                     /* failed deliveries since the first of this episode */
        usec_t logged;                  /* monotonic: the episode's last log line */
} relay_refusal;

/* A failed delivery of a row kept for a retry: logged at the first failure of
 * an episode, on a new error, and every minute while it lasts, with what to do
 * about it; status (for STATUS=) says so until relay_refusal_over. A broker's
 * error stays the episode's error when librdkafka's local ones follow it. */
void relay_refusal_note(relay_refusal *x, rd_kafka_resp_err_t err, const char *topic, char *status,
                        size_t status_size);
/* Every row held back after a failure has been delivered (relay_producer.c):
 * the end of an episode is logged, status emptied. */
void relay_refusal_over(relay_refusal *x, char *status);
