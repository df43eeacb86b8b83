/* The periodic jobs: the deadline watch, the retention purge and the figures
 * for STATUS=, on a connection of their own and run by a worker thread
 * (worker.h), so a slow watch over many open cases never holds up a batch.
 * Both jobs are safe to run beside the batches and beside other instances:
 * their writes are keyed and conflict-free (deadline_watch.c, retention.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "store.h"
#include "worker.h"

typedef struct jobs jobs;

typedef struct jobs_figures {
        bool have_db;                   /* db below was read at least once */
        store_figures db;
        usec_t db_read_at;              /* monotonic: when db was read */
        bool have_cases;                /* cases below was read at least once */
        store_case_figures cases;
        usec_t cases_read_at;           /* monotonic: when cases was read (less often than db) */
        uint64_t alerts;                /* raised by the deadline watch since start */
        bool database_down;
        char last_error[200];
} jobs_figures;

/* The clock comes from cfg's clock.file (a restart-only key). */
int jobs_new(const config *cfg, jobs **ret);
void jobs_free(jobs *j);
/* The job for worker_start; j must outlive the worker. */
worker_job jobs_job(jobs *j);
/* A consistent copy of the figures; any thread. */
void jobs_figures_read(jobs *j, jobs_figures *ret);
