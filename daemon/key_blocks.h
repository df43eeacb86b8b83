/* The relay's held-back keys: after a failed delivery a case's key waits
 * (with a doubling backoff) until its row is produced again, so that the
 * case's later rows do not overtake it. Pure: the caller gives the time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"

#define KEY_BACKOFF_MIN (500 * 1000)
#define KEY_BACKOFF_MAX (30 * USEC_PER_SEC)

typedef struct key_block {
        char *key;
        usec_t until;                   /* monotonic */
        usec_t backoff;
} key_block;

typedef struct key_blocks {
        key_block *v;
        size_t n, cap;
} key_blocks;

/* Is key held back at mono? */
bool key_blocks_held(const key_blocks *k, const char *key, usec_t mono);
/* Hold key back (again: twice as long, up to KEY_BACKOFF_MAX). Out of
 * memory, only the backoff is lost: the row stays unsent. */
void key_blocks_hold(key_blocks *k, const char *key, usec_t mono);
/* A row of key was delivered: a block whose wait is over is dropped. */
void key_blocks_delivered(key_blocks *k, const char *key, usec_t mono);
/* Forget blocks long past (e.g. of rows another relay has since published). */
void key_blocks_prune(key_blocks *k, usec_t mono);
void key_blocks_free(key_blocks *k);
