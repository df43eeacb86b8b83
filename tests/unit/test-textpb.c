/* The text format reader of allvarsctl decide (daemon/textpb.c): what protoc
 * --encode accepts comes out as the same message, errors name a line and a field
 * but never a value, and binary input is not mistaken for text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "textpb.h"

static Allvarssamtal__V1__PoliceReferral *parse(const char *text) {
        uint8_t *wire;
        size_t len;
        char err[200] = "";
        int r = textpb_encode(&allvarssamtal__v1__police_referral__descriptor, text, strlen(text), &wire, &len, err,
                              sizeof err);
        if (r < 0)
                fail_msg("rejected: %s", err);
        Allvarssamtal__V1__PoliceReferral *m = allvarssamtal__v1__police_referral__unpack(NULL, len, wire);
        free(wire);
        assert_non_null(m);
        return m;
}

static void expect_error(const char *text, const char *want) {
        uint8_t *wire = NULL;
        size_t len;
        char err[200] = "";
        assert_int_equal(textpb_encode(&allvarssamtal__v1__police_referral__descriptor, text, strlen(text), &wire,
                                       &len, err, sizeof err),
                         -EINVAL);
        assert_null(wire);
        assert_string_equal(err, want);
}

static void test_syntax(void **state) {
        (void)state;
        Allvarssamtal__V1__PoliceReferral *m = parse(
                "# a comment\n"
                "referral_id: 'PM-\\x41\\101-1' # comment\n"
                "reported_at < seconds: 1741600800 nanos: 5 >, incident_at: { seconds: -1 };\n"
                "subject { identity_number: \"2011\" \"0923-3849\" given_name: \"\\303\\205sa\\t\\\"A\\\" \\u00c5\" }\n"
                "concerns: [CONCERN_CRIMINAL_BEHAVIOUR, 3] concerns: CONCERN_INAPPROPRIATE_ENVIRONMENT\n"
                "offences { code: \"BRB 8:2\" severity: 1 imprisonable: t }\n"
                "guardians [{ name: \"x\" }, { name: \"y\" phone: \"070\" }]\n"
                "acute_risk: true feedback_requested: False\n");
        assert_string_equal(m->referral_id, "PM-AA-1");
        assert_int_equal(m->reported_at->seconds, 1741600800);
        assert_int_equal(m->reported_at->nanos, 5);
        assert_int_equal(m->incident_at->seconds, -1);
        assert_string_equal(m->subject->identity_number, "20110923-3849");
        assert_string_equal(m->subject->given_name, "\xc3\x85sa\t\"A\" \xc3\x85");
        assert_int_equal(m->n_concerns, 3);
        assert_int_equal(m->concerns[0], ALLVARSSAMTAL__V1__CONCERN__CONCERN_CRIMINAL_BEHAVIOUR);
        assert_int_equal(m->concerns[1], ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        assert_int_equal(m->concerns[2], ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT);
        assert_int_equal(m->n_offences, 1);
        assert_int_equal(m->offences[0]->severity, ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY);
        assert_true(m->offences[0]->imprisonable);
        assert_int_equal(m->n_guardians, 2);
        assert_string_equal(m->guardians[1]->phone, "070");
        assert_true(m->acute_risk);
        assert_false(m->feedback_requested);
        allvarssamtal__v1__police_referral__free_unpacked(m, NULL);

        /* Nothing but comments: an empty message (the codec then says what is missing). */
        m = parse("# nothing\n\n");
        assert_string_equal(m->referral_id, "");
        allvarssamtal__v1__police_referral__free_unpacked(m, NULL);
}

static void test_errors_name_no_values(void **state) {
        (void)state;
        expect_error("referral_id: \"PM-1\"\nsubject { nickname: \"Hemlig\" }", "line 2: Person has no field nickname");
        expect_error("referral_id: \"Hemlig", "line 1: referral_id: unterminated string");
        expect_error("\n\nreported_at { seconds: \"Hemlig\" }", "line 3: seconds: expected a value");
        expect_error("acute_risk: Hemlig", "line 1: acute_risk: expected true or false");
        expect_error("concerns: CONCERN_HEMLIG", "line 1: concerns: not a value of Concern");
        expect_error("referral_id \"PM-1\"", "line 1: referral_id: expected ':'");
        expect_error("subject { given_name: \"x\"", "line 1: Person: missing '}'");
        expect_error("referral_id: [\"a\"]", "line 1: referral_id: a list for a field that is not repeated");
        expect_error("referral_id: \"\\q\"", "line 1: referral_id: unknown escape");
        expect_error("referral_id: \"\\ud800\"", "line 1: referral_id: bad code point");
        expect_error("reported_at { seconds: 99999999999999999999 }", "line 1: seconds: not an integer in range");
        /* Nesting is bounded. */
        char deep[400] = "";
        for (int i = 0; i < 20; i++)
                strcat(deep, "subject { ");
        uint8_t *wire = NULL;
        size_t len;
        char err[200];
        assert_int_equal(textpb_encode(&allvarssamtal__v1__police_referral__descriptor, deep, strlen(deep), &wire,
                                       &len, err, sizeof err),
                         -EINVAL);
}

static void test_sniff(void **state) {
        (void)state;
        const ProtobufCMessageDescriptor *d = &allvarssamtal__v1__police_referral__descriptor;
        const char *text = "# x\nreferral_id: \"PM-1\"\n";
        assert_true(textpb_sniff(d, (const uint8_t *)text, strlen(text)));
        assert_true(textpb_sniff(d, (const uint8_t *)"subject {}", 10));
        assert_false(textpb_sniff(d, (const uint8_t *)"nickname: 1", 11));
        assert_false(textpb_sniff(d, (const uint8_t *)"", 0));
        /* A binary referral: tag 0x0a (field 1), its length, then the id. */
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        r.referral_id = (char *)"PM-2025-000123";
        r.district = (char *)"hisingen";
        uint8_t *buf;
        size_t n = codec_pack(&r.base, &buf);
        assert_false(textpb_sniff(d, buf, n));
        free(buf);
        /* A tag that is a printable letter (field 14, 'r'), followed by a length. */
        assert_false(textpb_sniff(d, (const uint8_t *)"r\x05hello", 7));
        assert_false(textpb_sniff(d, (const uint8_t *)"rhello", 6));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_syntax),
                cmocka_unit_test(test_errors_name_no_values),
                cmocka_unit_test(test_sniff),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
