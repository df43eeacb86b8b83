/* The deadline watch (docs/domain.md "Deadline watch"): AT_RISK when the profile's
 * share of the limit (75 %) has passed with nothing scheduled, MISSED when the
 * deadline passed and the conversation (or, for a SUMMONS deadline, the summons)
 * did not happen, PROTECTIVE_ASSESSMENT_OVERDUE when the assessment is late.
 * Each alert is raised once per case and due time, across restarts and
 * instances: the case_alerts row, the outbox alert and the police's
 * NOT_HELD_IN_TIME feedback are written in one transaction. */
#pragma once

#include "clock.h"
#include "config.h"
#include "store.h"

typedef struct deadline_watch_result {
        unsigned at_risk, missed, assessment_overdue;
} deadline_watch_result;

/* One pass over the open cases at time now. Returns 0 or a negative errno
 * (-ECONNRESET etc. as referral_batch_store). Safe to run on several instances
 * at once (FOR UPDATE SKIP LOCKED and the case_alerts primary key). */
int deadline_watch_run(store *s, const config *cfg, usec_t now, deadline_watch_result *ret);
