/* Lanes: the connections a batch is stored on in parallel. Lane 0 is the
 * consumer's own store, which the consumer connects; every other lane has a
 * PostgreSQL connection of its own, made (and made again after a loss) by the
 * lane itself when it is next given work. When there are two lanes or more,
 * each has a thread (lane 0 too) and the caller hands out work without
 * waiting; a single lane runs on the caller's thread. The consumer gives each
 * lane whole partitions, and a partition to no second lane while one holds it,
 * so each partition's offsets are compare-and-set by exactly one transaction
 * at a time: PostgreSQL can then use more than one core, and a lane takes its
 * next part as soon as it is done with the last. Two lanes' transactions meet
 * where two instances' would (the persons rows, a duplicate referral id). On
 * the persons they take turns (below) rather than wait for each other's
 * locks: the older transaction goes first. */
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
/* lanes_run in two halves: lanes_start hands each lane its work and returns
 * at once (a single lane, without a thread, runs its work first); lanes_wait
 * waits for them all (rets[k] set). args must stay valid, and no other work
 * may be given, until lanes_wait returned; lane 0's store is the lane's, not
 * the caller's, until then. */
void lanes_start(lanes *l, lane_fn fn, void *const *args, int *rets);
void lanes_wait(lanes *l, void *const *args, int *rets);
/* Why lane k's last run failed (its connection's or its store's last error),
 * one line; after lanes_wait or lanes_take. */
void lanes_error(const lanes *l, unsigned k, char *buf, size_t size);

/* ---- one lane at a time: each lane takes its next work when it is done ----
 * lanes_give hands lane k, which has no work (none given, or its result
 * taken), fn(store of lane k, arg) and returns at once (a single lane without
 * a thread runs it first). lanes_done says whether it has returned, without
 * waiting; lanes_take waits for it and returns its result, after which lane k
 * may be given work again. arg must stay valid until then. A lane that
 * finishes writes a byte to the descriptor given to lanes_notify (a
 * non-blocking pipe the caller polls), so that the caller need not wait. */
void lanes_notify(lanes *l, int fd);
void lanes_give(lanes *l, unsigned k, lane_fn fn, void *arg);
bool lanes_done(lanes *l, unsigned k);
int lanes_take(lanes *l, unsigned k);

/* ---- turns: rows that two lanes' transactions would both lock ----
 * A lane's transaction publishes the keys of the rows it will lock
 * (lanes_publish, once; a retry keeps its place), which orders it after every
 * transaction that published before. A key that an older transaction still
 * running also published is that transaction's first: the younger leaves its
 * referrals of that key for last, and takes them only once every older
 * transaction still running then has finished (lanes_wait_before), so that it
 * reads what they committed without ever waiting for their locks. Waits go
 * from younger to older only, so they never close a cycle among the lanes. A
 * turn that does not come within `timeout` returns -EAGAIN (the caller rolls
 * back and retries): a wait PostgreSQL cannot see must not close a cycle with
 * one it can (another instance holding a lock an older lane waits for). Lanes
 * of one (l NULL, or one lane) never wait. */
#define LANE_KEY_LEN 32

/* The lane a piece of work runs on (NULL: none). */
typedef struct lane_turn {
        lanes *l;
        unsigned k;
} lane_turn;

int lanes_publish(lanes *l, unsigned k, const uint8_t (*keys)[LANE_KEY_LEN], size_t n);
/* Whether an older transaction still running published key (after
 * lanes_publish). */
bool lanes_taken_before(lanes *l, unsigned k, const uint8_t key[LANE_KEY_LEN]);
int lanes_wait_before(lanes *l, unsigned k, usec_t timeout);
