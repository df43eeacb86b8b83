/* Lanes: the connections a batch is stored on in parallel. Lane 0 is the
 * consumer's own store and runs on the caller's thread; every other lane has
 * a thread and a PostgreSQL connection of its own, made (and made again after
 * a loss) by the lane itself when it is next given work. The consumer splits
 * a batch by partition (each partition whole in one lane), so each partition's offsets
 * are compare-and-set by exactly one transaction, and runs the parts at once:
 * PostgreSQL can then use more than one core for one batch. Two lanes'
 * transactions meet where two instances' would (the persons rows, a duplicate
 * referral id). On the persons they take turns (below) rather than wait for
 * each other's locks: the lower lane goes first. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
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
/* lanes_run in two halves, so that the caller may do other work while the
 * other lanes finish: lanes_start hands each lane k >= 1 its work, runs lane
 * 0's on the caller's thread and returns when that is done (rets[0] set);
 * lanes_wait waits for the others (rets[k] set). args must stay valid, and
 * no other run may start, until lanes_wait returned. Lane 0's store is the
 * caller's again as soon as lanes_start returned. */
void lanes_start(lanes *l, lane_fn fn, void *const *args, int *rets);
void lanes_wait(lanes *l, void *const *args, int *rets);
/* Why lane k's last run failed (its connection's or its store's last error),
 * one line; after lanes_wait. */
void lanes_error(const lanes *l, unsigned k, char *buf, size_t size);

/* ---- turns: rows that two lanes of one run would both lock ----
 * A lane publishes the keys of the rows it will lock (lanes_publish, once per
 * run; it waits until every lane of the run has published or finished). A key
 * that a lower lane also published is that lane's first: the higher lane
 * leaves its referrals of that key for last, and takes them only once every
 * lower lane has finished (lanes_wait_below), so that it reads what they
 * committed without ever waiting for their locks. A turn that does not come
 * within `timeout` returns -EAGAIN (the caller rolls back and retries): a
 * wait PostgreSQL cannot see must not close a cycle with one it can (another
 * instance holding a lock a lower lane waits for). Lanes of one (l NULL, or
 * one lane) never wait. */
#define LANE_KEY_LEN 32

/* The lane of a run a piece of work belongs to (NULL: none). */
typedef struct lane_turn {
        lanes *l;
        unsigned k;
} lane_turn;

int lanes_publish(lanes *l, unsigned k, const uint8_t (*keys)[LANE_KEY_LEN], size_t n, usec_t timeout);
/* Whether a lane below k published key (after lanes_publish returned 0). */
bool lanes_taken_below(lanes *l, unsigned k, const uint8_t key[LANE_KEY_LEN]);
int lanes_wait_below(lanes *l, unsigned k, usec_t timeout);
