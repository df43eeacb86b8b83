/* Decoding and validation of referrals: every dead-letter reason the codec
 * gives, and the protobuf-c behaviour it relies on (case outcomes and the
 * codec's helpers: test-codec-outcomes.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec_fixture.h"

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
                /* after whole words of ASCII (read eight bytes at a time) */
                "0123456789abcdef\xff",
                "0123456789abcde\xff" "0123456789",
                "01234567\x80" "1234567" "89",
                "01234567\xc3",
                "0123456789abcdef\xc3\xa5" "01234567\xed\xa0\x80",
                "0123456\xc3\xa5" "0123456789abcdef\x80",
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
        static const char *const good[] = {"åäö ÅÄÖ", "Ĳ", "€", "𝄞", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "日本",
                                            "0123456789abcdefåäö01234567€0123456789abcdef𝄞"};
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
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
