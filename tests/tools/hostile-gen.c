/* hostile-gen: produce hostile input to Kafka, for the tests of bounded memory
 * and of a daemon that never stops on bad input.
 *
 *   hostile-gen --bootstrap B --topic T --count N [--seed S] MODE
 *     --unknown-fields K   valid referrals, each followed by K unknown fields of
 *                          two bytes (field 15, varint 0): 500,000 make 1 MB
 *     --fuzz-referrals     mutations of valid referrals, one kind after another:
 *                          none, bit flips, truncation, the message twice (every
 *                          field duplicated), unknown fields of every wire type, a
 *                          huge repeated field, absurd timestamps, invalid UTF-8
 *     --fuzz-outcomes      the same mutations of valid case outcomes (of cases
 *                          that do not exist: each is applied or dead-lettered)
 *
 * Referral i has id "hz-S-i" (unique: a mutation never makes another's id).
 * Prints "sent=N delivered=D failed=F"; exit 0 when every message was delivered. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "codec.h"
#include "tool_producer.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "allvarssamtal/v1/referral.pb-c.h"

static uint64_t rng;
static uint32_t rnd(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return (uint32_t)(rng >> 11);
}
static uint32_t below(uint32_t n) {
        return n ? rnd() % n : 0;
}

typedef struct buf {
        uint8_t *p;
        size_t n, cap;
} buf;

static void put(buf *b, const void *p, size_t n) {
        if (b->n + n > b->cap) {
                b->cap = (b->n + n) * 2;
                b->p = realloc(b->p, b->cap);
                if (!b->p)
                        abort();
        }
        memcpy(b->p + b->n, p, n);
        b->n += n;
}
static void put_varint(buf *b, uint64_t v) {
        uint8_t t[10];
        size_t k = 0;
        while (v >= 0x80) {
                t[k++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        t[k++] = (uint8_t)v;
        put(b, t, k);
}
static void put_tag(buf *b, uint32_t field, unsigned wire) {
        put_varint(b, (uint64_t)field << 3 | wire);
}
static void put_len(buf *b, uint32_t field, const void *p, size_t n) {
        put_tag(b, field, 2);
        put_varint(b, n);
        put(b, p, n);
}

static void referral(long i, uint64_t seed, buf *out) {
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        Google__Protobuf__Timestamp reported = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Guardian g = ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        Allvarssamtal__V1__Guardian *gp[1] = {&g};
        Allvarssamtal__V1__Concern concern = ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        char id[64];
        snprintf(id, sizeof id, "hz-%llu-%ld", (unsigned long long)seed, i);
        r.referral_id = id;
        r.police_case_number = "5000-K1-25";
        codec_timestamp_set(&reported, clock_realtime() - USEC_PER_HOUR);
        r.reported_at = &reported;
        r.district = "hisingen";
        /* A child of 12 with a birth date only: no identity number to check. */
        subject.birth_date = "2013-06-15";
        subject.given_name = "Testbarn";
        subject.family_name = "Exempel";
        r.subject = &subject;
        g.name = "Vårdnadshavare Exempel";
        g.phone = "070-000 00 00";
        r.guardians = gp;
        r.n_guardians = 1;
        r.concerns = &concern;
        r.n_concerns = 1;
        r.narrative = "Testtext utan personuppgifter.";
        uint8_t *p;
        size_t n = codec_pack(&r.base, &p);
        put(out, p, n);
        free(p);
}

static void outcome(long i, uint64_t seed, buf *out) {
        CaseOutcome o = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Google__Protobuf__Timestamp at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        Allvarssamtal__V1__CaseCancelled cancelled = ALLVARSSAMTAL__V1__CASE_CANCELLED__INIT;
        char id[64], rid[64];
        snprintf(id, sizeof id, "hz-outcome-%llu-%ld", (unsigned long long)seed, i);
        snprintf(rid, sizeof rid, "hz-no-such-referral-%llu-%ld", (unsigned long long)seed, i);
        o.event_id = id;
        o.referral_id = rid;
        codec_timestamp_set(&at, clock_realtime());
        o.occurred_at = &at;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        actor.name = "handlaggare-1";
        o.actor = &actor;
        cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_MOVED;
        o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
        o.cancelled = &cancelled;
        uint8_t *p;
        size_t n = codec_pack(&o.base, &p);
        put(out, p, n);
        free(p);
}

/* Mutation k of a valid message in b (whose text field is `text_field`). */
static void mutate(buf *b, unsigned k, uint32_t text_field, uint32_t repeated_field, uint32_t ts_field) {
        switch (k) {
        case 0: /* valid */
                break;
        case 1: /* bit flips */
                for (unsigned j = 1 + below(8); j > 0; j--)
                        b->p[below((uint32_t)b->n)] ^= (uint8_t)(1u << below(8));
                break;
        case 2: /* truncation */
                b->n = 1 + below((uint32_t)b->n - 1);
                break;
        case 3: { /* every field twice: the message concatenated with itself */
                size_t n = b->n;
                uint8_t *copy = malloc(n);
                memcpy(copy, b->p, n);
                put(b, copy, n);
                free(copy);
                break;
        }
        case 4: /* unknown fields of every wire type */
                for (unsigned j = below(1000); j > 0; j--) {
                        uint32_t f = 100 + below(100000);
                        switch (below(4)) {
                        case 0: put_tag(b, f, 0); put_varint(b, rnd()); break;
                        case 1: put_tag(b, f, 1); put(b, "12345678", 8); break;
                        case 2: put_len(b, f, "unknown", 7); break;
                        default: put_tag(b, f, 5); put(b, "1234", 4); break;
                        }
                }
                break;
        case 5: /* a huge repeated field: 100,000 empty entries */
                for (unsigned j = 0; j < 100000; j++)
                        put_len(b, repeated_field, "", 0);
                break;
        case 6: { /* absurd timestamps: seconds near INT64_MAX, nanos out of range */
                buf ts = {0};
                put_tag(&ts, 1, 0);
                put_varint(&ts, below(2) ? (uint64_t)INT64_MAX : (uint64_t)INT64_MIN);
                put_tag(&ts, 2, 0);
                put_varint(&ts, below(2) ? 2000000000u : (uint64_t)-1);
                put_len(b, ts_field, ts.p, ts.n);
                free(ts.p);
                break;
        }
        default: /* invalid UTF-8 in a text field (the last one wins) */
                put_len(b, text_field, "Te\xff\xfe\xc3(xt\xed\xa0\x80", 12);
                break;
        }
}

int main(int argc, char **argv) {
        enum { M_NONE, M_UNKNOWN, M_FUZZ_REFERRALS, M_FUZZ_OUTCOMES } mode = M_NONE;
        static const struct option options[] = {
                {"bootstrap", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
                {"count", required_argument, NULL, 'n'},     {"seed", required_argument, NULL, 's'},
                {"unknown-fields", required_argument, NULL, 'u'},
                {"fuzz-referrals", no_argument, NULL, 'r'},  {"fuzz-outcomes", no_argument, NULL, 'o'},
                {NULL, 0, NULL, 0},
        };
        const char *bootstrap = NULL, *topic = NULL;
        long count = 10, unknown = 0;
        uint64_t seed = 1;
        int c;
        while ((c = getopt_long(argc, argv, "b:t:n:s:u:ro", options, NULL)) >= 0) {
                switch (c) {
                case 'b': bootstrap = optarg; break;
                case 't': topic = optarg; break;
                case 'n': count = atol(optarg); break;
                case 's': seed = strtoull(optarg, NULL, 10); break;
                case 'u': unknown = atol(optarg), mode = M_UNKNOWN; break;
                case 'r': mode = M_FUZZ_REFERRALS; break;
                case 'o': mode = M_FUZZ_OUTCOMES; break;
                default: return 64;
                }
        }
        if (!bootstrap || !topic || mode == M_NONE) {
                fprintf(stderr, "hostile-gen: --bootstrap, --topic and a mode are required\n");
                return 64;
        }
        rng = seed * 0x9E3779B97F4A7C15ULL + 1;

        tool_producer p;
        if (tool_producer_new(&p, "hostile-gen", bootstrap, "message.max.bytes", "1100000", NULL) < 0)
                return 1;
        for (long i = 0; i < count; i++) {
                buf b = {0};
                if (mode == M_FUZZ_OUTCOMES) {
                        outcome(i, seed, &b);
                        mutate(&b, (unsigned)(i % 8), 3, 2, 4);
                } else {
                        referral(i, seed, &b);
                        if (mode == M_UNKNOWN)
                                for (long j = 0; j < unknown; j++)
                                        put(&b, "\x78\x00", 2);
                        else
                                mutate(&b, (unsigned)(i % 8), 14, 7, 3);
                }
                char key[64];
                snprintf(key, sizeof key, "hz-%llu-%ld", (unsigned long long)seed, i);
                tool_produce(&p, topic, RD_KAFKA_PARTITION_UA, key, b.p, b.n, RD_KAFKA_MSG_F_COPY);
                free(b.p);
        }
        int done = tool_producer_finish(&p);
        printf("sent=%ld delivered=%ld failed=%ld\n", p.sent, p.delivered, p.failed);
        return done;
}
