/* Decoding and validation: every dead-letter reason the codec gives, for
 * referrals and case outcomes, and the protobuf-c behaviour it relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_BYTES (1024 * 1024)

/* ---- raw protobuf, for what protobuf-c will not encode (NUL in strings) ---- */

typedef struct wire {
        uint8_t b[96 * 1024];
        size_t n;
} wire;

static void put_varint(wire *w, uint64_t v) {
        while (v >= 0x80) {
                w->b[w->n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        w->b[w->n++] = (uint8_t)v;
}

static void put_bytes(wire *w, unsigned field, const void *data, size_t len) {
        put_varint(w, field << 3 | 2);
        put_varint(w, len);
        memcpy(w->b + w->n, data, len);
        w->n += len;
}

static void put_int(wire *w, unsigned field, uint64_t v) {
        put_varint(w, field << 3 | 0);
        put_varint(w, v);
}

/* ---- a valid referral ---- */

typedef struct fixture {
        Allvarssamtal__V1__PoliceReferral r;
        Allvarssamtal__V1__Person subject;
        Google__Protobuf__Timestamp reported, incident, committed;
        Allvarssamtal__V1__Guardian g[40];
        Allvarssamtal__V1__Guardian *gp[40];
        Allvarssamtal__V1__Concern concerns[40];
        Allvarssamtal__V1__Offence o[70];
        Allvarssamtal__V1__Offence *op[70];
} fixture;

static void init(fixture *f) {
        memset(f, 0, sizeof *f);
        f->r = (Allvarssamtal__V1__PoliceReferral)ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        f->subject = (Allvarssamtal__V1__Person)ALLVARSSAMTAL__V1__PERSON__INIT;
        f->reported = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->incident = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->committed = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->r.referral_id = (char *)"PM-2025-000123";
        f->r.police_case_number = (char *)"5000-K123456-25";
        f->reported.seconds = 1741600800;
        f->r.reported_at = &f->reported;
        f->incident.seconds = 1741500000;
        f->r.incident_at = &f->incident;
        f->r.district = (char *)"hisingen";
        f->subject.identity_number = (char *)"20120314-0122";
        f->subject.given_name = (char *)"Åsa";
        f->subject.family_name = (char *)"Exempel";
        f->r.subject = &f->subject;
        for (size_t i = 0; i < 40; i++) {
                f->g[i] = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
                f->g[i].name = (char *)"Sara Exempel";
                f->g[i].phone = (char *)"070-123 45 67";
                f->gp[i] = &f->g[i];
                f->concerns[i] = ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        }
        for (size_t i = 0; i < 70; i++) {
                f->o[i] = (Allvarssamtal__V1__Offence)ALLVARSSAMTAL__V1__OFFENCE__INIT;
                f->o[i].code = (char *)"BRB 8:1";
                f->o[i].severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY;
                f->o[i].imprisonable = true;
                f->op[i] = &f->o[i];
        }
        f->r.guardians = f->gp;
        f->r.n_guardians = 1;
        f->r.concerns = f->concerns;
        f->r.n_concerns = 1;
        f->r.offences = f->op;
        f->r.n_offences = 1;
        f->committed.seconds = 1741400000;
        f->o[0].committed_at = &f->committed;
        f->r.reporting_unit = (char *)"LPO Hisingen";
        f->r.narrative = (char *)"Pojken greps efter en stöld i butik.";
}

static void pack(const fixture *f, wire *w) {
        uint8_t *buf;
        size_t n = codec_pack(&f->r.base, &buf);
        assert_non_null(buf);
        assert_true(n <= sizeof w->b);
        memcpy(w->b, buf, n);
        w->n = n;
        free(buf);
}

static void expect_ok(const wire *w) {
        codec_error err;
        codec_referral *r = codec_referral_decode(w->b, w->n, MAX_BYTES, &err);
        if (!r)
                fail_msg("rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);
        codec_referral_free(r);
}

static void expect_reject(const wire *w, dead_letter_reason reason, const char *detail_part) {
        codec_error err;
        codec_referral *r = codec_referral_decode(w->b, w->n, MAX_BYTES, &err);
        if (r) {
                codec_referral_free(r);
                fail_msg("accepted, expected %s about %s", dead_letter_reason_code(reason),
                         detail_part ? detail_part : "?");
        }
        if (err.reason != reason)
                fail_msg("%s (%s), expected %s", dead_letter_reason_code(err.reason), err.detail,
                         dead_letter_reason_code(reason));
        if (detail_part && !strstr(err.detail, detail_part))
                fail_msg("detail \"%s\" does not name %s", err.detail, detail_part);
        assert_null(strchr(err.detail, '\n'));
}

static void expect_fixture_reject(const fixture *f, dead_letter_reason reason, const char *detail_part) {
        wire w;
        pack(f, &w);
        expect_reject(&w, reason, detail_part);
}

/* ---- referrals ---- */

static void test_valid_referral(void **state) {
        (void)state;
        fixture f;
        init(&f);
        wire w;
        pack(&f, &w);
        codec_error err;
        codec_referral *r = codec_referral_decode(w.b, w.n, MAX_BYTES, &err);
        assert_non_null(r);
        const Allvarssamtal__V1__PoliceReferral *m = codec_referral_msg(r);
        assert_string_equal(m->referral_id, "PM-2025-000123");
        assert_string_equal(m->subject->given_name, "Åsa");
        assert_int_equal(m->reported_at->seconds, 1741600800);
        assert_int_equal(m->n_guardians, 1);
        assert_string_equal(m->guardians[0]->phone, "070-123 45 67");
        assert_int_equal(m->n_offences, 1);
        assert_true(m->offences[0]->imprisonable);
        assert_string_equal(m->narrative, "Pojken greps efter en stöld i butik.");
        codec_referral_free(r);
        codec_referral_free(NULL);
        assert_null(codec_referral_msg(NULL));

        /* The minimum: id, reported_at, an empty subject. */
        f.r = (Allvarssamtal__V1__PoliceReferral)ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        f.subject = (Allvarssamtal__V1__Person)ALLVARSSAMTAL__V1__PERSON__INIT;
        f.r.referral_id = (char *)"x";
        f.r.reported_at = &f.reported;
        f.r.subject = &f.subject;
        pack(&f, &w);
        expect_ok(&w);
        /* Unknown fields (a newer publisher) are ignored. */
        put_int(&w, 99, 7);
        put_bytes(&w, 98, "future", 6);
        expect_ok(&w);
}

static void test_empty_and_oversized(void **state) {
        (void)state;
        codec_error err;
        assert_null(codec_referral_decode("", 0, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_EMPTY);
        assert_null(codec_referral_decode(NULL, 0, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_EMPTY);
        fixture f;
        init(&f);
        wire w;
        pack(&f, &w);
        assert_null(codec_referral_decode(w.b, w.n, w.n - 1, &err));
        assert_int_equal(err.reason, DLR_OVERSIZED);
        codec_referral *r = codec_referral_decode(w.b, w.n, w.n, &err);
        assert_non_null(r);
        codec_referral_free(r);
        assert_null(codec_outcome_decode("", 0, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_EMPTY);
}

static void test_undecodable(void **state) {
        (void)state;
        codec_error err;
        static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        assert_null(codec_referral_decode(garbage, sizeof garbage, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_UNDECODABLE);
        /* Truncated: a length running past the end. */
        fixture f;
        init(&f);
        wire w;
        pack(&f, &w);
        for (size_t cut = 1; cut < w.n; cut += 7) {
                codec_referral *r = codec_referral_decode(w.b, w.n - cut, MAX_BYTES, &err);
                if (r)          /* a cut on a field boundary can still be a (shorter) message */
                        codec_referral_free(r);
                else
                        assert_true(err.reason == DLR_UNDECODABLE || err.reason == DLR_MISSING_FIELD ||
                                    err.reason == DLR_INVALID_TEXT);
        }
        /* A wrong wire type for a string field. */
        wire x = {.n = 0};
        put_int(&x, 1, 5);
        expect_reject(&x, DLR_UNDECODABLE, NULL);
        /* Text that is not protobuf at all. */
        const char *text = "referral_id: \"PM-1\"";
        assert_null(codec_referral_decode(text, strlen(text), MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_UNDECODABLE);
}

static void test_missing_fields(void **state) {
        (void)state;
        fixture f;
        init(&f);
        f.r.referral_id = (char *)"";
        expect_fixture_reject(&f, DLR_MISSING_FIELD, "referral_id");
        init(&f);
        f.r.reported_at = NULL;
        expect_fixture_reject(&f, DLR_MISSING_FIELD, "reported_at");
        init(&f);
        f.r.subject = NULL;
        expect_fixture_reject(&f, DLR_MISSING_FIELD, "subject");
        codec_error err;
        wire w;
        pack(&f, &w);
        assert_null(codec_referral_decode(w.b, w.n, MAX_BYTES, &err));
        assert_string_equal(err.detail, "subject is required");
}

static void test_referral_id(void **state) {
        (void)state;
        fixture f;
        char id[200];
        init(&f);
        memset(id, 'a', 128);
        id[128] = '\0';
        f.r.referral_id = id;
        wire w;
        pack(&f, &w);
        expect_ok(&w);
        id[128] = 'a';
        id[129] = '\0';
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "referral_id");
        static const char *const bad[] = {"PM 1", "PM\t1", "PM-\x7f", "PM-å", " PM", "PM\n"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                f.r.referral_id = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_FIELD, "referral_id");
        }
        f.r.referral_id = (char *)"!~{}PM-1/2:3";
        pack(&f, &w);
        expect_ok(&w);
}

static void test_timestamps(void **state) {
        (void)state;
        fixture f;
        wire w;
        init(&f);
        f.reported.seconds = 946684800;                 /* 2000-01-01T00:00:00Z */
        pack(&f, &w);
        expect_ok(&w);
        f.reported.seconds = 946684799;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "reported_at");
        f.reported.seconds = 4102444799LL;              /* 2099-12-31T23:59:59Z */
        f.reported.nanos = 999999999;
        pack(&f, &w);
        expect_ok(&w);
        f.reported.nanos = 1000000000;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "reported_at");
        f.reported.nanos = -1;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "reported_at");
        f.reported.nanos = 0;
        f.reported.seconds = 4102444800LL;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "reported_at");
        f.reported.seconds = -62135596800LL;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "reported_at");

        init(&f);
        f.incident.seconds = -2208988800LL;             /* 1900-01-01 */
        pack(&f, &w);
        expect_ok(&w);
        f.incident.seconds = -2208988801LL;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "incident_at");
        f.incident.seconds = 4102444800LL;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "incident_at");

        init(&f);
        f.committed.seconds = 4102444800LL;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "offences[0].committed_at");
        f.committed.seconds = 0;
        f.committed.nanos = -5;
        expect_fixture_reject(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "offences[0].committed_at");
}

static void test_unknown_enums(void **state) {
        (void)state;
        fixture f;
        init(&f);
        f.r.n_concerns = 3;
        f.concerns[1] = (Allvarssamtal__V1__Concern)7;
        expect_fixture_reject(&f, DLR_UNKNOWN_ENUM, "concerns[1]");
        f.concerns[1] = (Allvarssamtal__V1__Concern)-1;
        expect_fixture_reject(&f, DLR_UNKNOWN_ENUM, "concerns[1]");
        f.concerns[1] = ALLVARSSAMTAL__V1__CONCERN__CONCERN_UNSPECIFIED;
        wire w;
        pack(&f, &w);
        expect_ok(&w);
        init(&f);
        f.r.n_offences = 2;
        f.o[1].severity = (Allvarssamtal__V1__Severity)9;
        expect_fixture_reject(&f, DLR_UNKNOWN_ENUM, "offences[1].severity");
        f.o[1].severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_GRAVE;
        pack(&f, &w);
        expect_ok(&w);
}

static void test_size_limits(void **state) {
        (void)state;
        fixture f;
        wire w;
        init(&f);
        f.r.n_guardians = 32;
        f.r.n_concerns = 32;
        f.r.n_offences = 64;
        pack(&f, &w);
        expect_ok(&w);
        f.r.n_guardians = 33;
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "guardians");
        f.r.n_guardians = 1;
        f.r.n_concerns = 33;
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "concerns");
        f.r.n_concerns = 1;
        f.r.n_offences = 65;
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "offences");

        static char big[70 * 1024];
        init(&f);
        memset(big, 'a', sizeof big - 1);
        big[256] = '\0';
        f.subject.given_name = big;
        pack(&f, &w);
        expect_ok(&w);
        big[256] = 'a';
        big[257] = '\0';
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "subject.given_name");
        f.subject.given_name = (char *)"Åsa";
        f.g[0].name = big;
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "guardians[0].name");
        f.g[0].name = (char *)"Sara";
        memset(big, 'a', sizeof big - 1);
        big[64 * 1024] = '\0';
        f.r.narrative = big;
        pack(&f, &w);
        expect_ok(&w);
        big[64 * 1024] = 'a';
        big[64 * 1024 + 1] = '\0';
        expect_fixture_reject(&f, DLR_INVALID_FIELD, "narrative");
}

/* protobuf-c allocates wire length + 1 bytes for a string and NUL-terminates it:
 * the arena sees the wire length and finds NULs inside. */
static void test_embedded_nul(void **state) {
        (void)state;
        fixture f;
        wire w;
        init(&f);
        pack(&f, &w);
        /* A later occurrence of a field replaces the earlier one (proto3 "last one wins"). */
        wire ok = w;
        put_bytes(&ok, 14, "abcde", 5);
        expect_ok(&ok);
        codec_referral *r = codec_referral_decode(ok.b, ok.n, MAX_BYTES, NULL);
        assert_non_null(r);
        assert_string_equal(codec_referral_msg(r)->narrative, "abcde");
        codec_referral_free(r);

        wire bad = w;
        put_bytes(&bad, 14, "ab\0cd", 5);
        expect_reject(&bad, DLR_INVALID_TEXT, "narrative");
        bad = w;
        put_bytes(&bad, 14, "abcd\0", 5);
        expect_reject(&bad, DLR_INVALID_TEXT, "narrative");
        bad = w;
        put_bytes(&bad, 14, "\0", 1);
        expect_reject(&bad, DLR_INVALID_TEXT, "narrative");
        bad = w;
        put_bytes(&bad, 1, "PM-1\0evil", 9);
        expect_reject(&bad, DLR_INVALID_TEXT, "referral_id");
        /* Inside a submessage: a second subject merges into the first. */
        wire sub = {.n = 0};
        put_bytes(&sub, 3, "Å\0sa", 5);
        bad = w;
        put_bytes(&bad, 6, sub.b, sub.n);
        expect_reject(&bad, DLR_INVALID_TEXT, "subject.given_name");
        sub.n = 0;
        put_bytes(&sub, 2, "07\0", 3);
        bad = w;
        put_bytes(&bad, 7, sub.b, sub.n);
        expect_reject(&bad, DLR_INVALID_TEXT, "guardians[1].phone");
        /* An empty string on the wire is fine. */
        bad = w;
        put_bytes(&bad, 14, "", 0);
        expect_ok(&bad);
}

static void test_invalid_utf8(void **state) {
        (void)state;
        static const char *const bad[] = {
                "\xff",                 /* never valid */
                "a\x80",                /* a lone continuation byte */
                "\xc3",                 /* truncated */
                "\xc3(",                /* bad continuation */
                "\xc0\xaf",             /* overlong '/' */
                "\xe0\x80\xaf",         /* overlong */
                "\xed\xa0\x80",         /* a surrogate */
                "\xf4\x90\x80\x80",     /* above U+10FFFF */
                "\xf8\x88\x80\x80\x80", /* five bytes */
        };
        fixture f;
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                init(&f);
                f.r.narrative = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_TEXT, "narrative");
                init(&f);
                f.subject.family_name = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_TEXT, "subject.family_name");
                init(&f);
                f.o[0].code = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_TEXT, "offences[0].code");
                init(&f);
                f.g[0].postal_address = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_TEXT, "guardians[0].postal_address");
                init(&f);
                f.r.district = (char *)bad[i];
                expect_fixture_reject(&f, DLR_INVALID_TEXT, "district");
        }
        static const char *const good[] = {"åäö ÅÄÖ", "Ĳ", "€", "𝄞", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "日本"};
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                init(&f);
                f.r.narrative = (char *)good[i];
                wire w;
                pack(&f, &w);
                expect_ok(&w);
        }
}

static void test_detail_never_holds_values(void **state) {
        (void)state;
        fixture f;
        codec_error err;
        wire w;
        init(&f);
        f.r.referral_id = (char *)"SECRET ID";
        pack(&f, &w);
        assert_null(codec_referral_decode(w.b, w.n, MAX_BYTES, &err));
        assert_null(strstr(err.detail, "SECRET"));
        init(&f);
        f.subject.given_name = (char *)"Hemlig\xff";
        pack(&f, &w);
        assert_null(codec_referral_decode(w.b, w.n, MAX_BYTES, &err));
        assert_null(strstr(err.detail, "Hemlig"));
}

/* Arbitrary bytes never crash the decoder (run it under ASan: make SAN=1). */
static void test_random_bytes(void **state) {
        (void)state;
        fixture f;
        init(&f);
        wire w;
        pack(&f, &w);
        uint64_t x = 0x2545f4914f6cdd1dull;
        for (int i = 0; i < 20000; i++) {
                wire m = w;
                for (int k = 0; k < 1 + i % 4; k++) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        m.b[x % m.n] = (uint8_t)(x >> 32);
                }
                codec_error err;
                codec_referral *r = codec_referral_decode(m.b, m.n, MAX_BYTES, &err);
                if (r)
                        codec_referral_free(r);
                else
                        assert_true(err.reason >= DLR_UNDECODABLE && err.reason <= DLR_TIMESTAMP_OUT_OF_RANGE);
                codec_outcome *o = codec_outcome_decode(m.b, m.n, MAX_BYTES, &err);
                codec_outcome_free(o);
        }
}

/* Many empty submessages cost far more memory than bytes: bounded, no crash. */
static void test_amplification(void **state) {
        (void)state;
        static wire w;
        w.n = 0;
        put_bytes(&w, 1, "PM-1", 4);
        while (w.n < sizeof w.b - 2)
                put_bytes(&w, 7, "", 0);
        codec_error err;
        codec_referral *r = codec_referral_decode(w.b, w.n, sizeof w.b, &err);
        assert_null(r);
        assert_true(err.reason == DLR_INVALID_FIELD || err.reason == DLR_UNDECODABLE ||
                    err.reason == DLR_MISSING_FIELD || err.reason == DLR_OVERSIZED);
}

/* A valid referral followed by n unknown fields of two bytes each (field 15,
 * varint 0), in a malloc'd buffer. */
static uint8_t *with_unknown_fields(size_t n, size_t *ret_len) {
        fixture f;
        init(&f);
        uint8_t *valid;
        size_t len = codec_pack(&f.r.base, &valid);
        assert_non_null(valid);
        uint8_t *b = malloc(len + 2 * n);
        assert_non_null(b);
        memcpy(b, valid, len);
        free(valid);
        for (size_t i = 0; i < n; i++) {
                b[len + 2 * i] = 15 << 3;
                b[len + 2 * i + 1] = 0;
        }
        *ret_len = len + 2 * n;
        return b;
}

/* protobuf-c keeps every unknown field (and a record per field while it
 * scans): 500,000 of them in 1 MB took 53 MB. Decoding is bounded by a budget
 * per message; beyond it the message is OVERSIZED, never an allocation of
 * tens of bytes per input byte. A few unknown fields (a newer producer) pass. */
static void test_unknown_fields_budget(void **state) {
        (void)state;
        size_t len;
        uint8_t *b = with_unknown_fields(500000, &len);
        assert_true(len <= MAX_BYTES);
        codec_error err;
        codec_referral *r = codec_referral_decode(b, len, MAX_BYTES, &err);
        assert_null(r);
        assert_int_equal(err.reason, DLR_OVERSIZED);
        assert_non_null(strstr(err.detail, "memory budget"));
        free(b);
        assert_true(codec_decode_budget(len) <= CODEC_DECODE_BUDGET);
        assert_true(CODEC_DECODE_BUDGET <= 8u << 20);

        b = with_unknown_fields(100, &len);
        r = codec_referral_decode(b, len, MAX_BYTES, &err);
        if (!r)
                fail_msg("rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);
        assert_true(codec_referral_mem(r) <= codec_decode_budget(len));
        codec_referral_free(r);
        free(b);
}

/* ---- case outcomes ---- */

typedef struct outcome_fixture {
        CaseOutcome o;
        Google__Protobuf__Timestamp occurred, scheduled;
        Allvarssamtal__V1__Actor actor;
        Allvarssamtal__V1__ConversationScheduled conv;
        Allvarssamtal__V1__ProtectiveAssessmentRecorded pa;
        Allvarssamtal__V1__CaseCancelled cancelled;
        Allvarssamtal__V1__ContactDetailsSupplied contact;
        Allvarssamtal__V1__Guardian g;
        Allvarssamtal__V1__Guardian *gp[1];
        Allvarssamtal__V1__DecisionOverride ov;
} outcome_fixture;

static void outcome_init(outcome_fixture *f) {
        memset(f, 0, sizeof *f);
        f->o = (CaseOutcome)ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        f->occurred = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->scheduled = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->actor = (Allvarssamtal__V1__Actor)ALLVARSSAMTAL__V1__ACTOR__INIT;
        f->conv = (Allvarssamtal__V1__ConversationScheduled)ALLVARSSAMTAL__V1__CONVERSATION_SCHEDULED__INIT;
        f->pa = (Allvarssamtal__V1__ProtectiveAssessmentRecorded)ALLVARSSAMTAL__V1__PROTECTIVE_ASSESSMENT_RECORDED__INIT;
        f->cancelled = (Allvarssamtal__V1__CaseCancelled)ALLVARSSAMTAL__V1__CASE_CANCELLED__INIT;
        f->contact = (Allvarssamtal__V1__ContactDetailsSupplied)ALLVARSSAMTAL__V1__CONTACT_DETAILS_SUPPLIED__INIT;
        f->g = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        f->ov = (Allvarssamtal__V1__DecisionOverride)ALLVARSSAMTAL__V1__DECISION_OVERRIDE__INIT;
        f->o.event_id = (char *)"ev-1";
        f->o.case_id = (char *)"6f1c7a52-0c1e-4e8e-9a43-1f2a3b4c5d6e";
        f->occurred.seconds = 1741600800;
        f->o.occurred_at = &f->occurred;
        f->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        f->actor.name = (char *)"booking";
        f->o.actor = &f->actor;
        f->scheduled.seconds = 1741700000;
        f->conv.scheduled_at = &f->scheduled;
        f->o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
        f->o.conversation_scheduled = &f->conv;
        f->g.name = (char *)"Sara";
        f->g.phone = (char *)"070-1234567";
        f->gp[0] = &f->g;
        f->contact.guardians = f->gp;
        f->contact.n_guardians = 1;
        f->ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE;
        f->ov.reason = (char *)"Samtal behövs ändå";
}

static void outcome_expect(const outcome_fixture *f, dead_letter_reason reason, const char *detail_part) {
        uint8_t *buf;
        size_t n = codec_pack(&f->o.base, &buf);
        assert_non_null(buf);
        codec_error err;
        codec_outcome *o = codec_outcome_decode(buf, n, MAX_BYTES, &err);
        free(buf);
        if (reason == 0) {
                if (!o)
                        fail_msg("rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);
                codec_outcome_free(o);
                return;
        }
        if (o) {
                codec_outcome_free(o);
                fail_msg("accepted, expected %s", dead_letter_reason_code(reason));
        }
        if (err.reason != reason)
                fail_msg("%s (%s), expected %s", dead_letter_reason_code(err.reason), err.detail,
                         dead_letter_reason_code(reason));
        if (detail_part && !strstr(err.detail, detail_part))
                fail_msg("detail \"%s\" does not name %s", err.detail, detail_part);
}

static void test_outcome_valid(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        outcome_expect(&f, 0, NULL);
        uint8_t *buf;
        size_t n = codec_pack(&f.o.base, &buf);
        codec_outcome *o = codec_outcome_decode(buf, n, MAX_BYTES, NULL);
        free(buf);
        assert_non_null(o);
        assert_string_equal(codec_outcome_msg(o)->event_id, "ev-1");
        assert_int_equal(codec_outcome_msg(o)->conversation_scheduled->scheduled_at->seconds, 1741700000);
        codec_outcome_free(o);
        codec_outcome_free(NULL);
        /* The police know only their own referral id. */
        f.o.case_id = (char *)"";
        f.o.referral_id = (char *)"PM-2025-000123";
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
        f.actor.name = (char *)"";
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED;
        Allvarssamtal__V1__InvestigationCleared ic = ALLVARSSAMTAL__V1__INVESTIGATION_CLEARED__INIT;
        f.o.investigation_cleared = &ic;
        outcome_expect(&f, 0, NULL);
}

static void test_outcome_rejects(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        f.o.event_id = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "event_id");
        f.o.event_id = (char *)"ev 1";
        outcome_expect(&f, DLR_INVALID_FIELD, "event_id");

        outcome_init(&f);
        f.o.case_id = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "case_id or referral_id");
        f.o.referral_id = (char *)"bad id";
        outcome_expect(&f, DLR_INVALID_FIELD, "referral_id");

        outcome_init(&f);
        f.o.occurred_at = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "occurred_at");
        outcome_init(&f);
        f.occurred.seconds = 100;
        outcome_expect(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "occurred_at");

        outcome_init(&f);
        f.o.actor = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "actor");
        outcome_init(&f);
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_UNSPECIFIED;
        outcome_expect(&f, DLR_MISSING_FIELD, "actor.kind");
        f.actor.kind = (Allvarssamtal__V1__ActorKind)9;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "actor.kind");
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        f.actor.name = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "actor.name");
        f.actor.name = (char *)"handl\xc3";
        outcome_expect(&f, DLR_INVALID_TEXT, "actor.name");
        f.actor.name = (char *)"anna.handlaggare";
        outcome_expect(&f, 0, NULL);

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE__NOT_SET;
        outcome_expect(&f, DLR_MISSING_FIELD, "change");

        outcome_init(&f);
        f.conv.scheduled_at = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "scheduled_at");
        f.conv.scheduled_at = &f.scheduled;
        f.scheduled.seconds = 5000000000LL;
        outcome_expect(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "scheduled_at");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED;
        f.o.contact_details_supplied = &f.contact;
        outcome_expect(&f, 0, NULL);
        f.g.phone = (char *)"07\xff";
        outcome_expect(&f, DLR_INVALID_TEXT, "contact_details_supplied.guardians[0].phone");
        f.contact.n_guardians = 0;
        outcome_expect(&f, DLR_MISSING_FIELD, "contact_details_supplied.guardians");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
        f.o.override = &f.ov;
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        outcome_expect(&f, 0, NULL);
        f.ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_UNSPECIFIED;
        outcome_expect(&f, DLR_MISSING_FIELD, "override.outcome");
        f.ov.outcome = (Allvarssamtal__V1__Outcome)17;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "override.outcome");
        f.ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        f.ov.reason = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "override.reason");
        f.ov.reason = (char *)"  \n";
        outcome_expect(&f, DLR_MISSING_FIELD, "override.reason");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
        f.o.cancelled = &f.cancelled;
        f.cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_MOVED;
        outcome_expect(&f, 0, NULL);
        f.cancelled.reason = (Allvarssamtal__V1__CancelReason)42;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "cancelled.reason");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED;
        f.o.protective_assessment_recorded = &f.pa;
        outcome_expect(&f, 0, NULL);
}

static void test_outcome_embedded_nul(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        uint8_t *buf;
        size_t n = codec_pack(&f.o.base, &buf);
        wire w = {.n = n};
        memcpy(w.b, buf, n);
        free(buf);
        put_bytes(&w, 2, "case\0id", 7);
        codec_error err;
        assert_null(codec_outcome_decode(w.b, w.n, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_INVALID_TEXT);
        assert_non_null(strstr(err.detail, "case_id"));
}

/* ---- helpers ---- */

static void test_timestamps_convert(void **state) {
        (void)state;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        assert_int_equal(codec_timestamp_usec(NULL), 0);
        codec_timestamp_set(&ts, 1741773600 * USEC_PER_SEC + 123456);
        assert_int_equal(ts.seconds, 1741773600);
        assert_int_equal(ts.nanos, 123456000);
        assert_int_equal(codec_timestamp_usec(&ts), 1741773600 * USEC_PER_SEC + 123456);
        codec_timestamp_set(&ts, -1);
        assert_int_equal(ts.seconds, -1);
        assert_int_equal(ts.nanos, 999999000);
        assert_int_equal(codec_timestamp_usec(&ts), -1);
        ts.nanos = 999;                 /* below a microsecond */
        ts.seconds = 10;
        assert_int_equal(codec_timestamp_usec(&ts), 10 * USEC_PER_SEC);
}

/* The own id of a message that failed validation, for its dead letter. */
static void test_message_id(void **state) {
        (void)state;
        char id[CODEC_ID_MAX + 1];
        fixture f;
        init(&f);
        f.r.subject = NULL;                     /* invalid: MISSING_FIELD */
        wire w;
        pack(&f, &w);
        expect_reject(&w, DLR_MISSING_FIELD, "subject");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, MAX_BYTES, id);
        assert_string_equal(id, "PM-2025-000123");
        /* Not an id (a blank), too large, undecodable, empty: none. */
        f.r.referral_id = (char *)"PM 1";
        pack(&f, &w);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, MAX_BYTES, id);
        assert_string_equal(id, "");
        f.r.referral_id = (char *)"PM-2025-000123";
        pack(&f, &w);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, w.n - 1, id);
        assert_string_equal(id, "");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, "\xff\xff", 2, MAX_BYTES, id);
        assert_string_equal(id, "");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, "", 0, MAX_BYTES, id);
        assert_string_equal(id, "");
        /* An id with a NUL inside is not taken. */
        wire raw = {.n = 0};
        put_bytes(&raw, 1, "PM\0x", 4);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, raw.b, raw.n, MAX_BYTES, id);
        assert_string_equal(id, "");
        /* A CaseOutcome's event_id, also field 1. */
        outcome_fixture o;
        outcome_init(&o);
        o.o.actor = NULL;
        uint8_t *buf;
        size_t n = codec_pack(&o.o.base, &buf);
        codec_message_id(&allvarssamtal__v1__case_outcome__descriptor, buf, n, MAX_BYTES, id);
        assert_string_equal(id, "ev-1");
        free(buf);
}

static void test_reason_codes(void **state) {
        (void)state;
        static const char *const codes[] = {
                NULL,          "EMPTY",        "OVERSIZED",    "UNDECODABLE",           "MISSING_FIELD",
                "INVALID_FIELD", "UNKNOWN_ENUM", "INVALID_TEXT", "TIMESTAMP_OUT_OF_RANGE", "UNKNOWN_CASE",
                "ILLEGAL_TRANSITION", "WRONG_KEY",
        };
        for (int r = DLR_EMPTY; r <= DLR_WRONG_KEY; r++) {
                assert_string_equal(dead_letter_reason_code((dead_letter_reason)r), codes[r]);
                /* Numbers as in the proto. */
                const ProtobufCEnumValue *v =
                        protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__dead_letter_reason__descriptor, r);
                assert_non_null(v);
                assert_string_equal(v->name + strlen("DEAD_LETTER_REASON_"), codes[r]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid_referral),
                cmocka_unit_test(test_empty_and_oversized),
                cmocka_unit_test(test_undecodable),
                cmocka_unit_test(test_missing_fields),
                cmocka_unit_test(test_referral_id),
                cmocka_unit_test(test_timestamps),
                cmocka_unit_test(test_unknown_enums),
                cmocka_unit_test(test_size_limits),
                cmocka_unit_test(test_embedded_nul),
                cmocka_unit_test(test_invalid_utf8),
                cmocka_unit_test(test_detail_never_holds_values),
                cmocka_unit_test(test_random_bytes),
                cmocka_unit_test(test_amplification),
                cmocka_unit_test(test_unknown_fields_budget),
                cmocka_unit_test(test_outcome_valid),
                cmocka_unit_test(test_outcome_rejects),
                cmocka_unit_test(test_outcome_embedded_nul),
                cmocka_unit_test(test_timestamps_convert),
                cmocka_unit_test(test_message_id),
                cmocka_unit_test(test_reason_codes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
