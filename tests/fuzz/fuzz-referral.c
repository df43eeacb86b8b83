/* libFuzzer: arbitrary bytes -> codec_referral_decode -> rules_decide with
 * every built-in profile, checking the decision's invariants. The same bytes
 * also go through codec_outcome_decode. Build: make fuzz; run:
 *   build-fuzz/fuzz/fuzz-referral -max_total_time=60 tests/fuzz/corpus/referral */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "identity.h"
#include "profiles.h"
#include "reasons.h"
#include "rules.h"

#define CHECK(x)                                                                          \
        do {                                                                              \
                if (!(x)) {                                                               \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x); \
                        abort();                                                          \
                }                                                                         \
        } while (0)

static void check_decision(const profile *p, const PoliceReferral *r, const decision *d, usec_t now) {
        usec_t reported = codec_timestamp_usec(r->reported_at);
        CHECK(d->outcome >= OUTCOME_ELIGIBLE && d->outcome <= OUTCOME_MANUAL_REVIEW);
        CHECK((d->reasons & ~(uint32_t)REASON_ALL) == 0);
        CHECK((d->flags & ~(uint32_t)FLAG_ALL) == 0);
        CHECK(d->profile == p);
        CHECK((d->outcome == OUTCOME_ELIGIBLE) == (d->reasons == 0));
        if (d->outcome == OUTCOME_ELIGIBLE) {
                CHECK(d->deadline == reported + p->limit);
                CHECK(d->deadline_kind == p->deadline_kind);
                CHECK(((d->flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL) != 0) == (d->deadline <= now));
        } else {
                CHECK(d->deadline == 0 && d->deadline_kind == DEADLINE_NONE);
                CHECK(!(d->flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL));
        }
        if (d->outcome == OUTCOME_MANUAL_REVIEW)
                CHECK(d->age == -1 && (d->reasons == REASON_IDENTITY_INVALID || d->reasons == REASON_AGE_UNKNOWN ||
                                       d->reasons == REASON_IDENTITY_MISMATCH));
        else
                CHECK(d->age >= 0 && d->age < 10000 && civil_date_valid(d->birth));
        if (d->age >= 0 && d->outcome != OUTCOME_MANUAL_REVIEW && !(d->reasons & (REASON_BELOW_MIN_AGE | REASON_ABOVE_MAX_AGE)))
                CHECK(d->age >= p->min_age && d->age <= p->max_age);
        /* docs/domain.md "Decision", step 4: a due time for every child (under adult_age,
         * or age unknown) with acute risk, and for nobody else. */
        CHECK((d->protective_assessment_due != 0) == (r->acute_risk && (d->age < 0 || d->age < p->adult_age)));
        CHECK(!(d->flags & FLAG_UNDER_15) || d->age >= 0);
        CHECK(!(d->flags & FLAG_CONTACT_MISSING) || d->age >= 0);
        CHECK(d->summon_guardians == (d->age >= 0 && d->age < p->adult_age));
        CHECK(civil_date_valid(d->report_date));
        if (d->id.status == IDENTITY_VALID) {
                CHECK(strlen(d->id.normalised) == 12);
                CHECK(civil_date_compare(d->id.birth, d->report_date) <= 0);
        }

        char buf[512];
        uint32_t back;
        reasons_format(reason_texts, d->reasons, buf, sizeof buf);
        CHECK(reasons_parse(reason_texts, buf, &back) == 0 && back == d->reasons);
        reasons_format(flag_texts, d->flags, buf, sizeof buf);
        CHECK(reasons_parse(flag_texts, buf, &back) == 0 && back == d->flags);
        char t[RFC3339_MAX];
        clock_format_rfc3339(d->deadline, t);
        clock_format_rfc3339(d->protective_assessment_due, t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int initialised;
        if (!initialised) {
                if (tz_init() < 0)
                        abort();
                initialised = 1;
        }
        codec_error err;
        codec_referral *ref = codec_referral_decode(data, size, 1024 * 1024, &err);
        if (!ref) {
                CHECK(err.reason >= DLR_EMPTY && err.reason <= DLR_TIMESTAMP_OUT_OF_RANGE);
                CHECK(memchr(err.detail, '\0', sizeof err.detail) != NULL);
                CHECK(strchr(err.detail, '\n') == NULL);
        } else {
                const PoliceReferral *r = codec_referral_msg(ref);
                CHECK(r->reported_at && r->subject && r->referral_id[0]);
                usec_t reported = codec_timestamp_usec(r->reported_at);
                static const usec_t offsets[] = {0, 47 * USEC_PER_HOUR, 400 * USEC_PER_DAY};
                rules_history histories[] = {{0, 0}, {3, 1}};
                for (size_t i = 0; i < profiles_builtin_count(); i++) {
                        const profile *p = profiles_builtin(i);
                        for (size_t k = 0; k < sizeof offsets / sizeof offsets[0]; k++) {
                                decision d;
                                rules_history *h = &histories[k % 2];
                                rules_decide(p, r, h, reported + offsets[k], &d);
                                check_decision(p, r, &d, reported + offsets[k]);
                        }
                }
                codec_referral_free(ref);
        }
        codec_outcome *o = codec_outcome_decode(data, size, 1024 * 1024, &err);
        codec_outcome_free(o);
        return 0;
}
