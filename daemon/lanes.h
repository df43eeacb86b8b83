/* Lanes: the connections a batch is stored on in parallel. Lane 0 is the
 * consumer's own store and runs on the caller's thread; every other lane has
 * a thread and a PostgreSQL connection of its own, made (and made again after
 * a loss) by the lane itself when it is next given work. The consumer splits
 * a batch by partition (partition modulo lanes), so each partition's offsets
 * are compare-and-set by exactly one transaction, and runs the parts at once:
 * PostgreSQL can then use more than one core for one batch. Two lanes'
 * transactions meet only where two instances' would (the persons rows, a
 * duplicate referral id) and are ordered there the same way (store_referrals.c). */
#pragma once

#include "config.h"
#include "store.h"

typedef struct lanes lanes;

/* Work for one lane: runs on that lane's thread with that lane's store, which
 * is connected when fn is called. Returns 0 or a negative errno. */
typedef int (*lane_fn)(store *st, void *arg);

/* n >= 1 lanes; first is the caller's store (lane 0, not owned). The others
 * connect with cfg's database settings (read now; a restart-only key). */
int lanes_new(const config *cfg, store *first, unsigned n, lanes **ret);
void lanes_free(lanes *l);
unsigned lanes_count(const lanes *l);
/* Run fn(store of lane k, args[k]) for every k < lanes_count() whose args[k]
 * is not NULL, all at once; wait for all; rets[k] gets each result (0 for a
 * lane without work). A lane that cannot connect returns that error. */
void lanes_run(lanes *l, lane_fn fn, void *const *args, int *rets);
/* Why lane k's last run failed (its connection's or its store's last error), one line. */
void lanes_error(const lanes *l, unsigned k, char *buf, size_t size);
