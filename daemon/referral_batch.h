/* The referral batch: where a consumed referral is decided. For each message:
 * decoded (by the consumer) -> the identity parsed once (identity.h: birth
 * date, the person key) -> the person's history, read under the person's
 * lock -> rules_decide under the district's profile -> the events of the
 * decision (events.h) -> the case as the lifecycle opens it (lifecycle.h);
 * the rows go to PostgreSQL through store_referrals.h and store_rows.h, all
 * in one transaction with the partitions' offsets (compare-and-set). */
#pragma once

#include <stddef.h>

#include "messages.h"
#include "clock.h"
#include "config.h"
#include "lanes.h"
#include "store.h"

/* Decide and store a batch of referral messages in one transaction:
 *   1. compare-and-set every partition's offset (fenced: -ESTALE, nothing written);
 *   2. insert the referrals (ON CONFLICT DO NOTHING: duplicates);
 *   3. insert the persons new to the database and lock the others (one
 *      statement, ordered, store_referrals.c) and read their history; with
 *      turn (a lane of several, lanes.h "turns"), the persons a lower lane
 *      also has are left out here: steps 3-5 run for them once that lane has
 *      finished, in the same transaction, before the COMMIT;
 *   4. decide with rules_decide under config_profile_for(district);
 *   5. write decisions, cases, contacts, audit, outbox events, the alert of
 *      DEADLINE_PASSED_ON_ARRIVAL, and dead letters; COMMIT.
 * Returns 0; -ESTALE when an offset moved (reload offsets, re-seek);
 * -EAGAIN on a serialization failure or deadlock (retry the batch);
 * -ECONNRESET when the connection broke (outcome unknown: reconnect, reload
 * offsets, re-seek); -EBADMSG when PostgreSQL refused a value of a message
 * (batch_store finds which); another negative errno otherwise (nothing written). */
int referral_batch_store(store *s, const config *cfg, const char *group, usec_t now,
                         store_message *msgs, size_t n,
                         const store_offset *offsets, size_t n_offsets,
                         const lane_turn *turn, store_batch_result *ret);

/* Store the parameters of cfg's profiles (the default and each district's,
 * as the decisions name them: profile_params) that are not stored yet, in
 * autocommit, so that no batch transaction is the first to insert one
 * (schemas/016_profile_params.sql). Call it outside a transaction, before
 * the first batch of a configuration. 0, -ENOTCONN, or the mapped error. */
int referral_batch_register_profiles(store *st, const config *cfg);

/* The same for one message alone, without offsets, rolled back: 0, or the
 * error storing it would cause (batch_store: which message PostgreSQL refused). */
int referral_batch_try(store *s, const config *cfg, const char *group, usec_t now, store_message *m);
