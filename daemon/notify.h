/* The systemd notification protocol: READY, STATUS, RELOADING, STOPPING and the
 * watchdog. Works without systemd too (NOTIFY_SOCKET unset: no-ops). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

/* The live figures shown in `systemctl status` (STATUS=). */
typedef struct notify_figures {
        uint64_t referrals_decided;     /* since start */
        uint64_t duplicates;
        uint64_t dead_letters;          /* since start */
        bool db_known;                  /* the two below have been read from the database */
        uint64_t db_age_s;              /* how long ago they were read */
        uint64_t cases_open;            /* from the database, refreshed now and then */
        uint64_t outbox_backlog;        /* unsent outbox rows (an upper bound; 0 exactly when none) */
        uint64_t alerts_raised;
        unsigned partitions_assigned;
        const char *state;              /* "running", "database unavailable, partitions paused", ... */
        const char *last_error;         /* one line, no personal data, or NULL */
} notify_figures;

void notify_ready(void);
void notify_reloading(void);            /* RELOADING=1 with MONOTONIC_USEC= */
void notify_stopping(void);
void notify_watchdog(void);
/* The watchdog interval the service manager expects a ping within, or 0. */
usec_t notify_watchdog_usec(void);
void notify_status(const notify_figures *f);
/* Format the STATUS line (without "STATUS="); returns buf. */
char *notify_format_status(const notify_figures *f, char *buf, size_t size);
