/* Retention (gallring): remove the personal data (identity numbers, names,
 * contact details, narrative, raw payloads) of cases closed longer than
 * retention.closed_case_days and of NOT_ELIGIBLE referrals older than
 * retention.not_eligible_days; keep the pseudonymous rows for statistics and
 * the audit skeleton. Each purge is itself audited (SoL 12 kap. 1-2 §§). */
#pragma once

#include "clock.h"
#include "config.h"
#include "store.h"

typedef struct retention_result {
        unsigned referrals, cases, dead_letters, outbox_rows;
} retention_result;

int retention_run(store *s, const config *cfg, usec_t now, retention_result *ret);
