/* Identity numbers, civil dates, ages and the Europe/Stockholm calendar. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "identity.h"


/* "YYYYMMDD-NNNC" (twelve digits) with a correct check digit; day as written. */
static const char *pnr12(char *buf, int y, int m, int d, int serial, char sep) {
        char nine[40];
        snprintf(nine, sizeof nine, "%02d%02d%02d%03d", y % 100, m, d, serial);
        if (sep)
                sprintf(buf, "%04d%02d%02d%c%03d%d", y, m, d, sep, serial, harness_luhn_digit(nine));
        else
                sprintf(buf, "%04d%02d%02d%03d%d", y, m, d, serial, harness_luhn_digit(nine));
        return buf;
}

/* "YYMMDD-NNNC" (ten digits). */
static const char *pnr10(char *buf, int y, int m, int d, int serial, char sep) {
        char nine[40];
        snprintf(nine, sizeof nine, "%02d%02d%02d%03d", y % 100, m, d, serial);
        if (sep)
                sprintf(buf, "%02d%02d%02d%c%03d%d", y % 100, m, d, sep, serial, harness_luhn_digit(nine));
        else
                sprintf(buf, "%02d%02d%02d%03d%d", y % 100, m, d, serial, harness_luhn_digit(nine));
        return buf;
}

static const civil_date REPORT = {2025, 3, 10};

static void assert_date(civil_date d, int y, int m, int day) {
        assert_int_equal(d.year, y);
        assert_int_equal(d.month, m);
        assert_int_equal(d.day, day);
}

static usec_t at(const char *rfc3339) {
        usec_t t;
        assert_int_equal(clock_parse_rfc3339(rfc3339, &t), 0);
        return t;
}

static void test_check_digit_helper(void **state) {
        (void)state;
        /* The published example numbers 19121212-1212 and 811218-9876 (Skatteverket). */
        assert_int_equal(harness_luhn_digit("121212121"), 2);
        assert_int_equal(harness_luhn_digit("811218987"), 6);
}

static void test_published_numbers(void **state) {
        (void)state;
        identity id;
        assert_int_equal(identity_parse("19121212-1212", REPORT, &id), IDENTITY_VALID);
        assert_int_equal(id.status, IDENTITY_VALID);
        assert_date(id.birth, 1912, 12, 12);
        assert_false(id.coordination_number);
        assert_string_equal(id.normalised, "191212121212");

        assert_int_equal(identity_parse("191212121212", REPORT, &id), IDENTITY_VALID);
        assert_string_equal(id.normalised, "191212121212");

        assert_int_equal(identity_parse("811218-9876", REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1981, 12, 18);
        assert_string_equal(id.normalised, "198112189876");
}

static void test_absent(void **state) {
        (void)state;
        identity id;
        assert_int_equal(identity_parse("", REPORT, &id), IDENTITY_ABSENT);
        assert_int_equal(id.status, IDENTITY_ABSENT);
        assert_int_equal(identity_parse(NULL, REPORT, &id), IDENTITY_ABSENT);
}

static void test_bad_check_digit(void **state) {
        (void)state;
        identity id;
        char buf[16];
        assert_int_equal(identity_parse("19121212-1213", REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(id.status, IDENTITY_INVALID);
        assert_int_equal(identity_parse("121212-1213", REPORT, &id), IDENTITY_INVALID);
        /* Every wrong last digit fails, the right one passes. */
        pnr12(buf, 2012, 5, 17, 382, '-');
        for (char c = '0'; c <= '9'; c++) {
                buf[12] = c;
                char nine[10] = "120517382";
                bool right = c - '0' == harness_luhn_digit(nine);
                assert_int_equal(identity_parse(buf, REPORT, &id), right ? IDENTITY_VALID : IDENTITY_INVALID);
        }
        /* Transposed digits are caught too. */
        pnr12(buf, 2012, 5, 17, 382, 0);
        char t = buf[9];
        buf[9] = buf[10];
        buf[10] = t;
        assert_int_equal(identity_parse(buf, REPORT, &id), IDENTITY_INVALID);
}

static void test_impossible_dates(void **state) {
        (void)state;
        identity id;
        char buf[16];
        /* The check digit is right in each: only the date is wrong. */
        assert_int_equal(identity_parse(pnr12(buf, 2012, 2, 30, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 13, 1, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 0, 1, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 1, 0, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 4, 31, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2011, 2, 29, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 2, 29, 123, '-'), REPORT, &id), IDENTITY_VALID);
        assert_int_equal(identity_parse(pnr10(buf, 2012, 2, 30, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        /* A samordningsnummer whose day minus 60 does not exist. */
        assert_int_equal(identity_parse(pnr12(buf, 2012, 2, 90, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2012, 1, 60, 123, '-'), REPORT, &id), IDENTITY_INVALID);
}

static void test_born_after_report(void **state) {
        (void)state;
        identity id;
        char buf[16];
        assert_int_equal(identity_parse(pnr12(buf, 2025, 3, 11, 123, '-'), REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse(pnr12(buf, 2025, 3, 10, 123, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2025, 3, 10);
}

static void test_coordination_number(void **state) {
        (void)state;
        identity id;
        char buf[16];
        assert_int_equal(identity_parse(pnr12(buf, 2011, 6, 75, 234, '-'), REPORT, &id), IDENTITY_VALID);
        assert_true(id.coordination_number);
        assert_date(id.birth, 2011, 6, 15);
        char plain[16];
        assert_string_equal(id.normalised, pnr12(plain, 2011, 6, 75, 234, 0));   /* day as written */
        /* Ten digits as well, and the last day of a month. */
        assert_int_equal(identity_parse(pnr10(buf, 2010, 1, 91, 111, 0), REPORT, &id), IDENTITY_VALID);
        assert_true(id.coordination_number);
        assert_date(id.birth, 2010, 1, 31);
}

static void test_formats(void **state) {
        (void)state;
        identity id;
        char buf[16];
        pnr12(buf, 2012, 5, 17, 382, '-');
        assert_int_equal(identity_parse(buf, REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2012, 5, 17);
        /* '+' with twelve digits is not a form. */
        buf[8] = '+';
        assert_int_equal(identity_parse(buf, REPORT, &id), IDENTITY_INVALID);
        buf[8] = ' ';
        assert_int_equal(identity_parse(buf, REPORT, &id), IDENTITY_INVALID);
        pnr12(buf, 2012, 5, 17, 382, 0);
        assert_int_equal(identity_parse(buf, REPORT, &id), IDENTITY_VALID);

        static const char *const bad[] = {
                "19121212-121", "19121212-12123", "1912121-21212", "abcdefghijkl", "191212121212 ",
                " 191212121212", "121212--1212", "121212*1212", "12121-21212",  "1", "19121212_1212",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_int_equal(identity_parse(bad[i], REPORT, &id), IDENTITY_INVALID);
        /* Ten digits read as YYMMDDNNNC: 191212-1212 has the wrong check digit (5 is right). */
        assert_int_equal(harness_luhn_digit("191212121"), 5);
        assert_int_equal(identity_parse("1912121212", REPORT, &id), IDENTITY_INVALID);
        assert_int_equal(identity_parse("1912121215", REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2019, 12, 12);
}

static void test_ten_digit_century(void **state) {
        (void)state;
        identity id;
        char buf[16];
        /* Without '+': the most recent century in which the birth date is not after the report. */
        assert_int_equal(identity_parse(pnr10(buf, 2012, 5, 17, 382, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2012, 5, 17);
        assert_memory_equal(id.normalised, "2012", 4);
        assert_int_equal(identity_parse(pnr10(buf, 2012, 5, 17, 382, 0), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2012, 5, 17);
        /* Born on the report date: this century, age 0. */
        assert_int_equal(identity_parse(pnr10(buf, 2025, 3, 10, 382, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2025, 3, 10);
        /* A day later in the year: the last century, aged 99. */
        assert_int_equal(identity_parse(pnr10(buf, 1925, 3, 11, 382, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1925, 3, 11);
        assert_int_equal(civil_date_age(id.birth, REPORT), 99);
        assert_int_equal(identity_parse(pnr10(buf, 1999, 12, 31, 382, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1999, 12, 31);
}

static void test_ten_digit_plus(void **state) {
        (void)state;
        identity id;
        char buf[16];
        /* '+': the person is 100 or older on the report date. */
        assert_int_equal(identity_parse(pnr10(buf, 1925, 3, 10, 382, '+'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1925, 3, 10);
        assert_int_equal(civil_date_age(id.birth, REPORT), 100);
        assert_memory_equal(id.normalised, "1925", 4);
        assert_int_equal(identity_parse(pnr10(buf, 1825, 3, 11, 382, '+'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1825, 3, 11);
        assert_int_equal(civil_date_age(id.birth, REPORT), 199);
        assert_int_equal(identity_parse("121212+1212", REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 1912, 12, 12);
        assert_int_equal(identity_parse("121212-1212", REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2012, 12, 12);
        /* 29 February: 2000 is a leap year, 1900 is not. */
        assert_int_equal(identity_parse(pnr10(buf, 2000, 2, 29, 382, '-'), REPORT, &id), IDENTITY_VALID);
        assert_date(id.birth, 2000, 2, 29);
        assert_int_equal(identity_parse(pnr10(buf, 1900, 2, 29, 382, '+'), REPORT, &id), IDENTITY_INVALID);
}

static void test_civil_dates(void **state) {
        (void)state;
        civil_date d;
        assert_true(civil_date_parse("2012-02-29", &d));
        assert_date(d, 2012, 2, 29);
        assert_false(civil_date_parse("2011-02-29", &d));
        assert_false(civil_date_parse("2012-13-01", &d));
        assert_false(civil_date_parse("2012-00-10", &d));
        assert_false(civil_date_parse("2012-01-00", &d));
        assert_false(civil_date_parse("2012-1-10", &d));
        assert_false(civil_date_parse("20120110", &d));
        assert_false(civil_date_parse("2012-01-10x", &d));
        assert_false(civil_date_parse("", &d));
        assert_false(civil_date_parse(NULL, &d));
        assert_true(civil_date_valid((civil_date){2000, 2, 29}));
        assert_false(civil_date_valid((civil_date){1900, 2, 29}));
        assert_int_equal(civil_date_compare((civil_date){2012, 1, 1}, (civil_date){2012, 1, 1}), 0);
        assert_true(civil_date_compare((civil_date){2011, 12, 31}, (civil_date){2012, 1, 1}) < 0);
        assert_true(civil_date_compare((civil_date){2012, 2, 1}, (civil_date){2012, 1, 31}) > 0);
}

static void test_ages(void **state) {
        (void)state;
        civil_date b = {2012, 3, 10};
        /* A person reaches an age on the birthday itself. */
        assert_int_equal(civil_date_age(b, (civil_date){2025, 3, 9}), 12);
        assert_int_equal(civil_date_age(b, (civil_date){2025, 3, 10}), 13);
        assert_int_equal(civil_date_age(b, (civil_date){2025, 3, 11}), 13);
        assert_int_equal(civil_date_age(b, (civil_date){2012, 3, 10}), 0);
        assert_true(civil_date_age(b, (civil_date){2012, 3, 9}) < 0);
        /* Born 29 February: 1 March in common years, 29 February in leap years. */
        civil_date leap = {2008, 2, 29};
        assert_int_equal(civil_date_age(leap, (civil_date){2025, 2, 28}), 16);
        assert_int_equal(civil_date_age(leap, (civil_date){2025, 3, 1}), 17);
        assert_int_equal(civil_date_age(leap, (civil_date){2024, 2, 28}), 15);
        assert_int_equal(civil_date_age(leap, (civil_date){2024, 2, 29}), 16);
}

static void test_stockholm_date(void **state) {
        (void)state;
        /* CET: 23:30 UTC is already the next day in Stockholm. */
        assert_date(stockholm_date(at("2025-03-09T23:30:00Z")), 2025, 3, 10);
        assert_date(stockholm_date(at("2025-03-09T22:59:59Z")), 2025, 3, 9);
        assert_date(stockholm_date(at("2025-03-09T23:00:00Z")), 2025, 3, 10);
        /* CEST: midnight is 22:00 UTC. */
        assert_date(stockholm_date(at("2025-07-01T21:59:59Z")), 2025, 7, 1);
        assert_date(stockholm_date(at("2025-07-01T22:00:00Z")), 2025, 7, 2);
        /* Around the changes: 2025-03-30T01:00Z (to CEST), 2025-10-26T01:00Z (to CET). */
        assert_date(stockholm_date(at("2025-03-30T21:59:59Z")), 2025, 3, 30);
        assert_date(stockholm_date(at("2025-03-30T22:00:00Z")), 2025, 3, 31);
        assert_date(stockholm_date(at("2025-03-29T22:59:59Z")), 2025, 3, 29);
        assert_date(stockholm_date(at("2025-03-29T23:00:00Z")), 2025, 3, 30);
        assert_date(stockholm_date(at("2025-10-25T21:59:59Z")), 2025, 10, 25);
        assert_date(stockholm_date(at("2025-10-25T22:00:00Z")), 2025, 10, 26);
        assert_date(stockholm_date(at("2025-10-26T22:59:59Z")), 2025, 10, 26);
        assert_date(stockholm_date(at("2025-10-26T23:00:00Z")), 2025, 10, 27);
        /* New year. */
        assert_date(stockholm_date(at("2024-12-31T23:00:00Z")), 2025, 1, 1);
        /* Outside the precomputed range the system's zone answers. */
        assert_date(stockholm_date(at("1990-06-30T22:30:00Z")), 1990, 7, 1);
        assert_date(stockholm_date(at("2150-01-01T00:30:00Z")), 2150, 1, 1);
}

/* The precomputed offsets agree with localtime_r at many instants. */
static void test_stockholm_date_matches_localtime(void **state) {
        (void)state;
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < 100000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                int64_t secs = 946000000 + (int64_t)(x % (4110000000ull - 946000000ull));
                if (i % 4 == 0)        /* land near the hour to exercise transitions */
                        secs -= secs % 3600 + (int64_t)(x >> 60) - 8;
                time_t tt = (time_t)secs;
                struct tm tm;
                assert_non_null(localtime_r(&tt, &tm));
                civil_date d = stockholm_date((usec_t)secs * USEC_PER_SEC + (usec_t)(x % 1000000));
                if (d.year != tm.tm_year + 1900 || d.month != tm.tm_mon + 1 || d.day != tm.tm_mday)
                        fail_msg("%lld: %d-%d-%d vs %d-%d-%d", (long long)secs, d.year, d.month, d.day,
                                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check_digit_helper),
                cmocka_unit_test(test_published_numbers),
                cmocka_unit_test(test_absent),
                cmocka_unit_test(test_bad_check_digit),
                cmocka_unit_test(test_impossible_dates),
                cmocka_unit_test(test_born_after_report),
                cmocka_unit_test(test_coordination_number),
                cmocka_unit_test(test_formats),
                cmocka_unit_test(test_ten_digit_century),
                cmocka_unit_test(test_ten_digit_plus),
                cmocka_unit_test(test_civil_dates),
                cmocka_unit_test(test_ages),
                cmocka_unit_test(test_stockholm_date),
                cmocka_unit_test(test_stockholm_date_matches_localtime),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
