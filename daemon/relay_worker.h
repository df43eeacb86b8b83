/* The outbox relay on a worker thread (worker.h): the thread steps the relay
 * when PostgreSQL notifies it of new rows, when delivery reports wait, or on
 * relay.poll_ms; the main thread reads the relay's figures through here. */
#pragma once

#include "relay.h"
#include "worker.h"

typedef struct relay_worker relay_worker;

/* rel stays the caller's; it must outlive the worker thread. */
int relay_worker_new(relay *rel, relay_worker **ret);
void relay_worker_free(relay_worker *rw);
worker_job relay_worker_job(relay_worker *rw);
/* The figures as of the relay's last step; any thread. */
void relay_worker_figures(relay_worker *rw, relay_figures *ret);
