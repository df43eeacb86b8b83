/* A worker: one thread of the daemon that runs one job (the outbox relay, the
 * periodic jobs) on its own database connection, so that the consumer's
 * batches never wait for it and it never waits for them.
 *
 * The thread calls the job's step, then sleeps in poll() on the descriptors
 * the step named and on the worker's own eventfd until the step's deadline.
 * A reloaded configuration is handed over by reference and applied between
 * two steps; the worker drops its reference to the old one after the job has
 * switched, so the main thread never frees a configuration a job still reads.
 * Signals stay blocked in the thread (it inherits the main thread's mask). */
#pragma once

#include <poll.h>
#include <stddef.h>

#include "clock.h"
#include "config.h"

#define WORKER_MAX_FDS 4

typedef struct worker worker;

typedef struct worker_job {
        const char *name;               /* thread name, at most 15 characters */
        void *userdata;
        /* Do what is due with cfg. Fill up to WORKER_MAX_FDS descriptors to
         * wait on (events set by the job) into fds and their count into
         * *ret_n; return the monotonic time of the next call (it comes sooner
         * when a descriptor becomes ready). Runs on the worker's thread. */
        usec_t (*step)(void *userdata, const config *cfg, struct pollfd *fds, size_t *ret_n);
        /* Optional: the configuration changed (on the worker's thread, between steps). */
        void (*reconfigure)(void *userdata, const config *cfg);
} worker_job;

/* Since when (monotonic) the step in progress runs, or 0 when the thread
 * sleeps between steps (or w is NULL): for the watchdog. */
usec_t worker_step_started(const worker *w);

/* Start the thread with a reference of its own to cfg. Returns 0 or a negative errno. */
int worker_start(const worker_job *job, config *cfg, worker **ret);
/* Hand the worker a new configuration (it takes its own reference). */
void worker_reconfigure(worker *w, config *cfg);
/* Ask the thread to stop after the step in progress, without waiting. */
void worker_request_stop(worker *w);
/* Ask the thread to stop, wait for the step in progress to end, join it and
 * free the worker. The job's userdata is the caller's. NULL is fine. */
void worker_stop(worker *w);
