/* A deadline alert with its feedback and audit row (alerts.h). */
#include <stdio.h>

#include "alerts.h"

int alert_raise(const config *cfg, const alert_case *c, alert_kind kind, usec_t due_at, usec_t now,
                event_list *ev, store_rows *rows) {
        char due[RFC3339_MAX];
        clock_format_rfc3339(due_at, due);
        size_t first = ev->n;
        int r = events_alert(cfg, c->case_id, kind, due_at, c->deadline_kind, c->district, c->state, now, ev);
        if (r < 0)
                return r;
        bool feedback = false;
        if (kind == ALERT_MISSED) {
                /* Named by the due time: the same id on arrival and from the watch. */
                char name[64 + RFC3339_MAX];
                snprintf(name, sizeof name, "feedback/NOT_HELD_IN_TIME/%s", due);
                const feedback_ref ref = {
                        .case_id = c->case_id,
                        .referral_id = c->referral_id,
                        .police_case_number = c->police_case_number,
                        .feedback_requested = c->feedback_requested,
                };
                size_t before = ev->n;
                r = events_feedback(cfg, &ref, FEEDBACK_NOT_HELD_IN_TIME, (decision_outcome)0, 0, name, now, ev);
                if (r < 0)
                        return r;
                feedback = ev->n > before;
        }
        /* The same ids whoever raises it (schemas/012_outbox_once.sql). */
        for (size_t i = first; i < ev->n; i++)
                ev->v[i].again = true;
        char action[64], before[64], after[200];
        snprintf(action, sizeof action, "ALERT_%s", alert_kind_code(kind));
        snprintf(before, sizeof before, "state=%s", c->state);
        snprintf(after, sizeof after, "state=%s;alert=%s;due_at=%s%s", c->state, alert_kind_code(kind), due,
                 feedback ? ";feedback=NOT_HELD_IN_TIME" : "");
        store_rows_audit(rows, &(audit_entry){ .case_id = c->case_id,
                                               .referral_id = c->referral_id,
                                               .at = now,
                                               .actor_kind = "DAEMON",
                                               .action = action,
                                               .before = before,
                                               .after = after });
        return 0;
}
