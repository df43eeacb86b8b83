/* Reason and flag codes: stable, complete, explained, and round-tripping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "reasons.h"
#include "rules.h"

static void check_table(const reason_text *table, uint32_t all, const char *const *codes) {
        uint32_t seen = 0;
        size_t n = 0;
        for (const reason_text *t = table; t->code; t++, n++) {
                /* In bit order, one bit each, the codes as published. */
                assert_int_equal(t->bit, 1u << n);
                assert_non_null(codes[n]);
                assert_string_equal(t->code, codes[n]);
                assert_non_null(t->sv);
                assert_non_null(t->en);
                assert_true(strlen(t->sv) > 20);
                assert_true(strlen(t->en) > 20);
                assert_null(strchr(t->code, ','));
                seen |= t->bit;
                for (const reason_text *u = table; u != t; u++)
                        assert_string_not_equal(u->code, t->code);
                assert_ptr_equal(reasons_lookup(table, t->code), t);
        }
        assert_null(codes[n]);
        assert_int_equal(seen, all);
}

static void test_reason_table(void **state) {
        (void)state;
        static const char *const codes[] = {
                "IDENTITY_INVALID",        "AGE_UNKNOWN",       "IDENTITY_MISMATCH",
                "BELOW_MIN_AGE",           "ABOVE_MAX_AGE",     "NO_QUALIFYING_CONCERN",
                "NOT_FIRST_SUSPICION",     "NOT_IMPRISONABLE",  "PROTECTIVE_ASSESSMENT_FIRST",
                "PRELIMINARY_INVESTIGATION", NULL,
        };
        check_table(reason_texts, REASON_ALL, codes);
        assert_int_equal(reasons_lookup(reason_texts, "IDENTITY_INVALID")->bit, REASON_IDENTITY_INVALID);
        assert_int_equal(reasons_lookup(reason_texts, "PRELIMINARY_INVESTIGATION")->bit,
                         REASON_PRELIMINARY_INVESTIGATION);
}

static void test_flag_table(void **state) {
        (void)state;
        static const char *const codes[] = {
                "CONTACT_MISSING", "LATE_REFERRAL", "UNDER_15", "REPEAT_REFERRAL", "DEADLINE_PASSED_ON_ARRIVAL", NULL,
        };
        check_table(flag_texts, FLAG_ALL, codes);
        assert_int_equal(reasons_lookup(flag_texts, "UNDER_15")->bit, FLAG_UNDER_15);
        assert_null(reasons_lookup(flag_texts, "IDENTITY_INVALID"));
        assert_null(reasons_lookup(flag_texts, "under_15"));
        assert_null(reasons_lookup(flag_texts, NULL));
}

static void test_format(void **state) {
        (void)state;
        char buf[512];
        assert_int_equal(reasons_format(reason_texts, 0, buf, sizeof buf), 0);
        assert_string_equal(buf, "");
        assert_int_equal(reasons_format(flag_texts, FLAG_CONTACT_MISSING | FLAG_UNDER_15, buf, sizeof buf),
                         strlen("CONTACT_MISSING,UNDER_15"));
        assert_string_equal(buf, "CONTACT_MISSING,UNDER_15");
        /* Bit order, whatever order the bits were set in; unknown bits ignored. */
        reasons_format(reason_texts, REASON_PRELIMINARY_INVESTIGATION | REASON_PROTECTIVE_ASSESSMENT_FIRST | (1u << 30),
                       buf, sizeof buf);
        assert_string_equal(buf, "PROTECTIVE_ASSESSMENT_FIRST,PRELIMINARY_INVESTIGATION");
        /* Truncation: the full length is returned, the buffer stays terminated. */
        char small[10];
        size_t n = reasons_format(flag_texts, FLAG_ALL, small, sizeof small);
        assert_int_equal(n, strlen("CONTACT_MISSING,LATE_REFERRAL,UNDER_15,REPEAT_REFERRAL,DEADLINE_PASSED_ON_ARRIVAL"));
        assert_int_equal(strlen(small), sizeof small - 1);
        assert_int_equal(reasons_format(flag_texts, FLAG_ALL, NULL, 0), n);
}

static void test_round_trip(void **state) {
        (void)state;
        char buf[512];
        for (uint32_t bits = 0; bits <= REASON_ALL; bits++) {
                uint32_t back = 0xdeadbeef;
                reasons_format(reason_texts, bits, buf, sizeof buf);
                assert_null(strchr(buf, ' '));
                assert_int_equal(reasons_parse(reason_texts, buf, &back), 0);
                assert_int_equal(back, bits);
        }
        for (uint32_t bits = 0; bits <= FLAG_ALL; bits++) {
                uint32_t back = 0xdeadbeef;
                reasons_format(flag_texts, bits, buf, sizeof buf);
                assert_int_equal(reasons_parse(flag_texts, buf, &back), 0);
                assert_int_equal(back, bits);
        }
}

static void test_parse(void **state) {
        (void)state;
        uint32_t bits = 0;
        assert_int_equal(reasons_parse(reason_texts, "", &bits), 0);
        assert_int_equal(bits, 0);
        /* Any order, duplicates harmless. */
        assert_int_equal(reasons_parse(reason_texts, "NOT_IMPRISONABLE,AGE_UNKNOWN,AGE_UNKNOWN", &bits), 0);
        assert_int_equal(bits, REASON_NOT_IMPRISONABLE | REASON_AGE_UNKNOWN);
        static const char *const bad[] = {
                "NOPE", "AGE_UNKNOWN,", ",AGE_UNKNOWN", "AGE_UNKNOWN,,NOT_IMPRISONABLE", "AGE_UNKNOWN, NOT_IMPRISONABLE",
                "age_unknown", "UNDER_15", "AGE_UNKNOWNX", "AGE_UNKNOW", ",",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                bits = 42;
                assert_int_equal(reasons_parse(reason_texts, bad[i], &bits), -EINVAL);
                assert_int_equal(bits, 42);
        }
        assert_int_equal(reasons_parse(reason_texts, NULL, &bits), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reason_table), cmocka_unit_test(test_flag_table),
                cmocka_unit_test(test_format),       cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_parse),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
