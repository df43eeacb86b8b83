/* Benchmark of the rules engine: decode a varied set of referrals once, then
 * time rules_decide over ~5M iterations with each built-in profile, on one
 * core. Prints decisions per second (the target: at least 1,000,000). Also times
 * codec_referral_decode, for reference.
 *
 *   make OPT=1 && build-opt/bench/bench-rules [ITERATIONS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "identity.h"
#include "profiles.h"
#include "rules.h"

#define N_REFERRALS 256

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint32_t rnd(uint32_t n) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state % n);
}

static int check_digit(const char *nine) {
        int sum = 0;
        for (int i = 0; i < 9; i++) {
                int v = (nine[i] - '0') * (i % 2 == 0 ? 2 : 1);
                sum += v / 10 + v % 10;
        }
        return (10 - sum % 10) % 10;
}

/* One packed referral of a realistic mix: ages 5-22, most with identity
 * numbers (some ten-digit, some samordningsnummer, a few invalid), guardians,
 * concerns, offences, some acute risk or preliminary investigation. */
static size_t make_referral(size_t i, uint8_t **ret) {
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person s = ALLVARSSAMTAL__V1__PERSON__INIT;
        Google__Protobuf__Timestamp rep = GOOGLE__PROTOBUF__TIMESTAMP__INIT, inc = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Guardian g[2] = {ALLVARSSAMTAL__V1__GUARDIAN__INIT, ALLVARSSAMTAL__V1__GUARDIAN__INIT};
        Allvarssamtal__V1__Guardian *gp[2] = {&g[0], &g[1]};
        Allvarssamtal__V1__Offence o = ALLVARSSAMTAL__V1__OFFENCE__INIT;
        Allvarssamtal__V1__Offence *op[1] = {&o};
        Allvarssamtal__V1__Concern concerns[2];
        char id[40], ident[40], birth[40], nine[40];

        snprintf(id, sizeof id, "bench-%zu", i);
        r.referral_id = id;
        r.police_case_number = (char *)"5000-K123456-25";
        usec_t reported = (usec_t)(1704067200 + rnd(2 * 365 * 86400)) * USEC_PER_SEC;   /* 2024-2025 */
        codec_timestamp_set(&rep, reported);
        r.reported_at = &rep;
        codec_timestamp_set(&inc, reported - (usec_t)rnd(30 * 24) * USEC_PER_HOUR);
        r.incident_at = &inc;
        r.district = (char *)"hisingen";

        int year = 2002 + (int)rnd(19), month = 1 + (int)rnd(12), day = 1 + (int)rnd(28), serial = (int)rnd(1000);
        int written_day = rnd(20) == 0 ? day + 60 : day;
        snprintf(nine, sizeof nine, "%02d%02d%02d%03d", year % 100, month, written_day, serial);
        int check = check_digit(nine);
        if (rnd(50) == 0)
                check = (check + 1) % 10;
        switch (rnd(10)) {
        case 0: snprintf(ident, sizeof ident, "%02d%02d%02d-%03d%d", year % 100, month, written_day, serial, check); break;
        case 1: snprintf(ident, sizeof ident, "%04d%02d%02d%03d%d", year, month, written_day, serial, check); break;
        default: snprintf(ident, sizeof ident, "%04d%02d%02d-%03d%d", year, month, written_day, serial, check); break;
        }
        s.identity_number = ident;
        if (rnd(10) == 0) {
                snprintf(birth, sizeof birth, "%04d-%02d-%02d", year, month, day);
                s.birth_date = birth;
                if (rnd(2))
                        s.identity_number = (char *)"";
        }
        s.given_name = (char *)"Alva";
        s.family_name = (char *)"Exempelsson";
        r.subject = &s;
        r.n_guardians = rnd(3);
        for (size_t k = 0; k < r.n_guardians; k++) {
                g[k].name = (char *)"Sara Exempelsson";
                g[k].phone = rnd(10) < 7 ? (char *)"070-123 45 67" : (char *)"";
        }
        r.guardians = gp;
        r.n_concerns = rnd(3);
        for (size_t k = 0; k < r.n_concerns; k++)
                concerns[k] = (Allvarssamtal__V1__Concern)(1 + rnd(3));
        r.concerns = concerns;
        if (rnd(2)) {
                o.code = (char *)"BRB 8:1";
                o.severity = (Allvarssamtal__V1__Severity)(1 + rnd(3));
                o.imprisonable = rnd(3) != 0;
                r.n_offences = 1;
                r.offences = op;
        }
        r.acute_risk = rnd(20) == 0;
        r.preliminary_investigation = rnd(10) == 0;
        r.reporting_unit = (char *)"LPO Hisingen";
        r.narrative = (char *)"Pojken greps efter en stöld i butik tillsammans med två äldre ungdomar.";
        return codec_pack(&r.base, ret);
}

static double seconds_since(usec_t start) {
        return (double)(clock_monotonic() - start) / (double)USEC_PER_SEC;
}

int main(int argc, char **argv) {
        long iterations = argc > 1 ? atol(argv[1]) : 5000000;
        if (iterations <= 0)
                iterations = 5000000;
        if (tz_init() < 0) {
                fprintf(stderr, "bench-rules: the time zone Europe/Stockholm is not available\n");
                return 1;
        }

        uint8_t *packed[N_REFERRALS];
        size_t len[N_REFERRALS];
        codec_referral *decoded[N_REFERRALS];
        const PoliceReferral *refs[N_REFERRALS];
        for (size_t i = 0; i < N_REFERRALS; i++) {
                len[i] = make_referral(i, &packed[i]);
                codec_error err;
                decoded[i] = codec_referral_decode(packed[i], len[i], 1 << 20, &err);
                if (!decoded[i]) {
                        fprintf(stderr, "bench-rules: referral %zu rejected: %s\n", i, err.detail);
                        return 1;
                }
                refs[i] = codec_referral_msg(decoded[i]);
        }

        /* Decoding, for reference (not part of the rules figure). */
        long decode_iterations = iterations / 5;
        usec_t start = clock_monotonic();
        for (long k = 0; k < decode_iterations; k++) {
                size_t i = (size_t)k % N_REFERRALS;
                codec_referral *c = codec_referral_decode(packed[i], len[i], 1 << 20, NULL);
                codec_referral_free(c);
        }
        double secs = seconds_since(start);
        printf("%-24s %12.0f decodes/s (%ld decodes, %.2f s)\n", "codec_referral_decode",
               (double)decode_iterations / secs, decode_iterations, secs);

        unsigned long outcomes[5] = {0};
        double slowest = 0;
        usec_t now = (usec_t)1767225600 * USEC_PER_SEC;       /* 2026-01-01 */
        for (size_t pi = 0; pi < profiles_builtin_count(); pi++) {
                const profile *p = profiles_builtin(pi);
                rules_history h[4] = {{0, 0}, {1, 0}, {2, 1}, {0, 0}};
                decision d;
                start = clock_monotonic();
                for (long k = 0; k < iterations; k++) {
                        rules_decide(p, refs[(size_t)k % N_REFERRALS], &h[k & 3], now, &d);
                        outcomes[d.outcome]++;
                }
                secs = seconds_since(start);
                double rate = (double)iterations / secs;
                if (slowest == 0 || rate < slowest)
                        slowest = rate;
                printf("%-24s %12.0f decisions/s (%ld decisions, %.2f s)\n", p->name, rate, iterations, secs);
        }
        printf("%-24s %12.0f decisions/s\n", "slowest profile", slowest);
        printf("outcomes: ELIGIBLE %lu, NOT_ELIGIBLE %lu, DEFERRED %lu, MANUAL_REVIEW %lu\n", outcomes[1], outcomes[2],
               outcomes[3], outcomes[4]);

        for (size_t i = 0; i < N_REFERRALS; i++) {
                codec_referral_free(decoded[i]);
                free(packed[i]);
        }
        return 0;
}
