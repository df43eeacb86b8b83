/* The outbox relay: publishes committed outbox rows to Kafka with the
 * idempotent producer, as CloudEvents (binary mode: ce_* headers, key = case
 * id, value = protobuf), and marks them sent on a delivery report without
 * error. One relay is active across all instances: it holds a PostgreSQL
 * session advisory lock on its own connection; the others stand by and take
 * over when the holder's session ends. Woken by LISTEN allvarsd_outbox and a
 * timer; never assumes outbox ids are gap-free or committed in order. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "config.h"

#define RELAY_LOCK_KEY 0x616c6c7661727364LL     /* "allvarsd" */
/* pg_locks lists the advisory locks of every database on the server, and an
 * advisory lock belongs to the database it was taken in: two allvarsd databases
 * on one server each have their own relay. A count of the relay's holders is
 * made over the rows whose database is this one (SQL, for "database = ..."). */
#define THIS_DATABASE_OID "(SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
#define RELAY_NOTIFY_CHANNEL "allvarsd_outbox"

typedef struct relay relay;

typedef struct relay_figures {
        bool active;                    /* holds the advisory lock */
        uint64_t published;             /* delivery reports without error, since start */
        uint64_t failed;                /* delivery reports with an error (retried later) */
        uint64_t in_flight;
        uint64_t sweeps;                /* passes that read from the oldest unsent row (relay_read.c) */
        char last_error[200];
        char refusing[120];             /* "" or what deliveries keep failing with (for STATUS=) */
} relay_figures;

/* conninfo/password: the runtime role's connection (a second session of its own).
 * bootstrap: "host:port,..." for the producer, or NULL to take kafka.* from cfg.
 * Returns 0 or a negative errno with a one-line reason in err. */
int relay_new(const config *cfg, const char *bootstrap, relay **ret, char *err, size_t err_size);
/* Flush what is in flight (bounded by timeout), release the lock, close. */
void relay_free(relay *r, usec_t flush_timeout);

/* Do the work that is due: take the lock if free; when active, read unsent rows
 * (oldest first, up to relay.batch), produce them, serve delivery reports and
 * mark delivered rows sent. Never blocks longer than max_block. Returns 0 or a
 * negative errno (database or Kafka trouble; call again later). */
int relay_step(relay *r, usec_t max_block);
/* File descriptors to wait on (the PostgreSQL socket for notifications); -1 if none. */
int relay_fd(const relay *r);
/* The producer's file descriptor that becomes readable when delivery reports wait, or -1. */
int relay_producer_fd(const relay *r);
/* The poll events to wait for on relay_fd (POLLOUT while a connection is being made). */
short relay_fd_events(const relay *r);
/* The monotonic time at which relay_step has work without any descriptor
 * becoming ready (0: now, e.g. more unsent rows than one read took). */
usec_t relay_next_due(const relay *r);
void relay_figures_read(const relay *r, relay_figures *ret);
/* Apply a reloaded configuration (batch size, poll interval). */
void relay_reconfigure(relay *r, const config *cfg);
