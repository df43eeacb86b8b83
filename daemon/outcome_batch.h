/* The outcome batch: where a consumed CaseOutcome moves its case. One batch
 * is one transaction, with the same offset compare-and-set as referrals;
 * per message, in order:
 *   a. the case id: case_id, or uuid5 of the police's referral_id (ids.h);
 *   b. the event id recorded once (a repeat is STORE_DUPLICATE, nothing else);
 *   c. the referral, then the case, locked (store_outcomes.h);
 *   d. lifecycle_apply (pure) under the case's profile (case_profile.h);
 *   e. applied: the case written, the guardians merged (contacts.h), an
 *      audit row, the feedback and scheduling events (events.h);
 *      rejected (unknown case, illegal transition): the event's record is
 *      taken back (a later replay of the dead letter may apply) and the
 *      message is a dead letter; the partition flows on.
 * The audit, outbox and dead-letter rows (store_rows.h), the NOTIFY and the
 * COMMIT end the batch in one round trip.
 *
 * Choices (the rules themselves are in lifecycle.c):
 *  - Event ids: "feedback/<STATUS>/<outcome event id>" and "scheduling/<outcome
 *    event id>" under the case (ids_event_id), unique per outcome event and
 *    the same on every retry.
 *  - A feedback status is stamped with the event's occurred_at (when the
 *    status was reached, also on a replay years later); a scheduling request
 *    with now (when it was made).
 *  - Audit: at = occurred_at; who = actor kind + name; before/after =
 *    case_state_describe, and after ends with ";event_id=...;applied_at=...".
 *    detail holds an override's reason and nothing else: it is personal-free
 *    by rule and never logged.
 *  - Guardians: the case's case_contacts rows; when it has none, the
 *    referral's own guardians from its stored payload seed them. */
#pragma once

#include <stddef.h>

#include "messages.h"
#include "clock.h"
#include "config.h"
#include "store.h"

/* Returns as referral_batch_store. Outcomes use store_message with
 * `case_outcome` set instead of `referral`. */
int outcome_batch_store(store *s, const config *cfg, const char *group, usec_t now,
                        store_message *msgs, size_t n,
                        const store_offset *offsets, size_t n_offsets,
                        store_batch_result *ret);

/* One message alone, without offsets, rolled back (referral_batch_try). */
int outcome_batch_try(store *s, const config *cfg, const char *group, usec_t now, store_message *m);
