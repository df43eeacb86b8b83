/* The instances of allvarsd that share a database, as they report
 * themselves: one row each in allvarsd.instances (schemas/007_instances.sql),
 * written by the periodic jobs (a heartbeat), read by `allvarsctl status` and
 * `allvarsctl check`. Also the database figures only the metrics need
 * (overdue cases, the relay lock's holders). libpq only; no logging. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "store.h"

#define INSTANCE_ID_MAX 128
#define INSTANCES_FORGET_AFTER "7 days"         /* rows of instances silent that long are deleted */

typedef struct instance_self {
        char id[INSTANCE_ID_MAX];       /* host:pid:start, unique per process */
        char host[64];
        int pid;
        const char *version;
        usec_t started;                 /* realtime */
} instance_self;

/* Fill who this process is. */
void instance_self_init(instance_self *self, const char *version);

/* What the heartbeat says besides who: from the metrics registry. */
typedef struct instance_beat {
        bool relay_active;
        unsigned partitions;
        uint64_t decided, dead_lettered;        /* since start */
        const char *last_error[4];              /* per sqlstate_class, "" when none */
} instance_beat;

/* Insert or update this instance's row (heartbeat_at = the server's now()),
 * and forget instances silent for INSTANCES_FORGET_AFTER. */
int instances_heartbeat(store *st, const instance_self *self, const instance_beat *beat);
/* A clean stop: the row says so (stopped_at). */
int instances_stopped(store *st, const instance_self *self);

typedef struct instances_figures {
        uint64_t relay_holders;                 /* sessions holding the relay's advisory lock */
} instances_figures;
int instances_figures_read(store *st, instances_figures *ret);
