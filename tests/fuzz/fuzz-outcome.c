/* libFuzzer: arbitrary bytes -> codec_outcome_decode -> lifecycle_apply from
 * every state (with and without each pending deferral, with and without a
 * deadline), under every built-in profile, checking the state machine's
 * invariants. Build: make fuzz; run:
 *   build-fuzz/fuzz/fuzz-outcome -max_total_time=60 tests/fuzz/corpus/outcome */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "lifecycle.h"
#include "profiles.h"

#define CHECK(x)                                                                                  \
        do {                                                                                      \
                if (!(x)) {                                                                       \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x); \
                        abort();                                                                  \
                }                                                                                 \
        } while (0)

#define T_REPORT ((usec_t)1741593600 * USEC_PER_SEC)  /* 2025-03-10T08:00:00Z */

static bool is_open(case_state_code s) {
        return s == CASE_ELIGIBLE || s == CASE_DEFERRED || s == CASE_MANUAL_REVIEW || s == CASE_SCHEDULED;
}

static void check_text(const char *s, size_t size) {
        CHECK(memchr(s, '\0', size) != NULL);
        CHECK(strchr(s, '\n') == NULL);
}

static void check(const case_state *b, const CaseOutcome *ev, const profile *p, const lifecycle_result *r) {
        outcome_kind k = lifecycle_kind(ev);
        usec_t at = codec_timestamp_usec(ev->occurred_at);
        check_text(r->error.detail, sizeof r->error.detail);
        if (r->rejected) {
                /* A rejection changes nothing and causes nothing, and says why in codes. */
                CHECK(memcmp(&r->after, b, sizeof *b) == 0);
                CHECK(!r->send_scheduling && r->n_feedback == 0 && r->action == NULL);
                CHECK(r->error.detail[0] != '\0');
                CHECK(r->error.reason >= DLR_EMPTY && r->error.reason <= DLR_ILLEGAL_TRANSITION);
                if (r->error.reason == DLR_ILLEGAL_TRANSITION)
                        CHECK(strstr(r->error.detail, outcome_kind_code(k)) == r->error.detail);
                /* Never a value from the event in the detail: the override's reason above all. */
                if (k == OUTCOME_KIND_OVERRIDE && ev->override && strlen(ev->override->reason) >= 8)
                        CHECK(strstr(r->error.detail, ev->override->reason) == NULL);
                return;
        }
        CHECK(r->action != NULL);
        CHECK(r->n_feedback <= LIFECYCLE_MAX_FEEDBACK);
        /* Nothing comes back from a closed case; only an override opens one from NONE. */
        CHECK(is_open(b->state) || (b->state == CASE_NONE && k == OUTCOME_KIND_OVERRIDE));
        CHECK(r->after.state != CASE_NONE);
        if (case_state_closed(r->after.state))
                CHECK(r->after.closed_at == at);
        else
                CHECK(r->after.closed_at == 0);
        if (r->after.state == CASE_ELIGIBLE || r->after.state == CASE_SCHEDULED)
                CHECK(r->after.deadline != 0 && r->after.deadline_kind != DEADLINE_NONE);
        if (r->after.state == CASE_SCHEDULED)
                CHECK(r->after.scheduled_at != 0);
        /* A resolved deferral leaves a case DEFERRED only while another is pending. */
        if (r->after.state == CASE_DEFERRED && (k == OUTCOME_KIND_ASSESSMENT_RECORDED || k == OUTCOME_KIND_CLEARED))
                CHECK(r->after.awaiting_assessment || r->after.awaiting_clearance);
        if (r->send_scheduling)
                CHECK(r->after.state == CASE_ELIGIBLE);
        if (b->state == CASE_DEFERRED && r->after.state == CASE_ELIGIBLE && k != OUTCOME_KIND_OVERRIDE) {
                /* Counted from the moment the last deferral was resolved (docs/domain.md "Decision", step 4). */
                CHECK(r->after.deadline == at + p->limit);
                CHECK(r->send_scheduling);
        }
        for (size_t i = 0; i < r->n_feedback; i++)
                CHECK(r->feedback[i] >= FEEDBACK_RECEIVED && r->feedback[i] <= FEEDBACK_CANCELLED);
        if (k == OUTCOME_KIND_OVERRIDE) {
                CHECK(r->n_feedback == 1 && r->feedback[0] == FEEDBACK_ASSESSED);
                CHECK(r->assessment == r->after.outcome);
        }
        char desc[768];
        CHECK(case_state_describe(&r->after, desc, sizeof desc) == 0);
        check_text(desc, sizeof desc);
        CHECK(case_state_code_from_name(case_state_code_name(r->after.state)) == (int)r->after.state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        codec_error err;
        codec_outcome *o = codec_outcome_decode(data, size, 1024 * 1024, &err);
        if (!o) {
                CHECK(err.reason >= DLR_EMPTY && err.reason <= DLR_ILLEGAL_TRANSITION);
                check_text(err.detail, sizeof err.detail);
                return 0;
        }
        const CaseOutcome *ev = codec_outcome_msg(o);
        CHECK(lifecycle_kind(ev) != OUTCOME_KIND_NONE);

        for (size_t pi = 0; pi < profiles_builtin_count(); pi++) {
                const profile *p = profiles_builtin(pi);
                for (int st = CASE_NONE; st <= CASE_NOT_ELIGIBLE; st++)
                        for (unsigned v = 0; v < 16; v++) {
                                case_state b = {0};
                                b.state = (case_state_code)st;
                                b.limit = p->limit;
                                b.outcome = st == CASE_NONE || st == CASE_NOT_ELIGIBLE ? OUTCOME_NOT_ELIGIBLE
                                            : st == CASE_DEFERRED                     ? OUTCOME_DEFERRED
                                            : st == CASE_MANUAL_REVIEW                ? OUTCOME_MANUAL_REVIEW
                                                                                      : OUTCOME_ELIGIBLE;
                                b.awaiting_assessment = v & 1;
                                b.awaiting_clearance = v & 2;
                                b.awaiting_contact = v & 4;
                                if (b.awaiting_assessment)
                                        b.protective_assessment_due = T_REPORT + p->protective_assessment_within;
                                if ((v & 8) || st == CASE_ELIGIBLE || st == CASE_SCHEDULED) {
                                        b.deadline = T_REPORT + p->limit;
                                        b.deadline_kind = p->deadline_kind;
                                }
                                if (st == CASE_SCHEDULED || st == CASE_HELD)
                                        b.scheduled_at = T_REPORT + USEC_PER_DAY;
                                if (case_state_closed(b.state))
                                        b.closed_at = T_REPORT + USEC_PER_DAY;
                                if (st == CASE_HELD)
                                        b.held_at = b.closed_at;
                                lifecycle_result r;
                                lifecycle_apply(&b, ev, p, T_REPORT, &r);
                                check(&b, ev, p, &r);
                        }
        }
        codec_outcome_free(o);
        return 0;
}
