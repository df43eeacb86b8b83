/* A batch stored by the module of its input, with its retries. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "config.h"
#include "messages.h"
#include "lanes.h"
#include "store.h"

/* Store a batch with the module of its input (referral_batch.h or
 * outcome_batch.h): retried at once on a serialization failure or deadlock;
 * when PostgreSQL refuses a value of a message (SQLSTATE class 22 or 23),
 * each message is tried alone, rolled back, to find the ones refused: they
 * become dead letters (INVALID_FIELD, the SQLSTATE and the statement's name
 * in the detail, never the value) and the batch is stored again without
 * them, so the partition moves on and the rest is stored. Trying costs
 * nothing while no value is refused; a savepoint per message would cost a
 * round trip per message on every batch. Returns as referral_batch_store. */
int batch_store(store *s, const config *cfg, const char *group, usec_t now, bool outcomes,
                store_message *msgs, size_t n, const store_offset *offsets, size_t n_offsets,
                const lane_turn *turn, store_batch_result *ret);
