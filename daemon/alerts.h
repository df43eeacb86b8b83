/* A deadline alert raised on a case, built in one place whoever raises it
 * (the referral batch for a deadline passed on arrival, the deadline watch):
 * its DeadlineAlert event, for MISSED the police's NOT_HELD_IN_TIME feedback
 * (subject to the feedback policy), and its audit row. The events' ids depend
 * only on the case, the kind and the due time, so an alert raised twice
 * (on arrival, then by the watch after a restore) is the same event and is
 * published once (docs/design.md "Effectively once"). */
#pragma once

#include <stdbool.h>

#include "config.h"
#include "events.h"
#include "store_rows.h"

typedef struct alert_case {
        const char *case_id;
        const char *referral_id;
        const char *police_case_number;
        const char *district;
        const char *state;              /* case_state_code_name */
        deadline_kind deadline_kind;
        bool feedback_requested;
} alert_case;

/* Append the alert's events to ev and its audit row (at now) to rows. */
int alert_raise(const config *cfg, const alert_case *c, alert_kind kind, usec_t due_at, usec_t now,
                event_list *ev, store_rows *rows);
