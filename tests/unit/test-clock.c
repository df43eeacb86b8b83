/* The clock: RFC 3339 in UTC, and the settable clock of the tests (clock.file). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

static void assert_parse(const char *s, int64_t secs, int64_t usec) {
        usec_t t = 0;
        if (clock_parse_rfc3339(s, &t) != 0)
                fail_msg("rejected: %s", s);
        assert_int_equal(t, secs * USEC_PER_SEC + usec);
}

static void assert_rejected(const char *s) {
        usec_t t = 12345;
        if (clock_parse_rfc3339(s, &t) != -EINVAL)
                fail_msg("accepted: %s", s);
        assert_int_equal(t, 12345);
}

static void assert_format(usec_t t, const char *expected) {
        char buf[RFC3339_MAX];
        assert_ptr_equal(clock_format_rfc3339(t, buf), buf);
        assert_string_equal(buf, expected);
}

static void test_parse(void **state) {
        (void)state;
        assert_parse("1970-01-01T00:00:00Z", 0, 0);
        assert_parse("2025-03-12T10:00:00Z", 1741773600, 0);
        assert_parse("2025-03-12t10:00:00z", 1741773600, 0);
        assert_parse("2025-03-12 10:00:00Z", 1741773600, 0);
        assert_parse("2025-03-12T11:00:00+01:00", 1741773600, 0);
        assert_parse("2025-03-12T05:30:00-04:30", 1741773600, 0);
        assert_parse("2025-03-12T10:00:00.5Z", 1741773600, 500000);
        assert_parse("2025-03-12T10:00:00.123456Z", 1741773600, 123456);
        assert_parse("2025-03-12T10:00:00.123456789Z", 1741773600, 123456);     /* nanoseconds truncated */
        assert_parse("2024-02-29T00:00:00Z", 1709164800, 0);
        assert_parse("2000-01-01T00:00:00Z", 946684800, 0);
        assert_parse("2100-01-01T00:00:00Z", 4102444800LL, 0);
        assert_parse("1900-01-01T00:00:00Z", -2208988800LL, 0);
        assert_parse("1969-12-31T23:59:59.5Z", -1, 500000);
}

static void test_parse_rejects(void **state) {
        (void)state;
        static const char *const bad[] = {
                "",
                "2025-03-12",
                "2025-03-12T10:00:00",                  /* no zone */
                "2025-03-12T10:00Z",
                "2025-3-12T10:00:00Z",
                "2025-03-12X10:00:00Z",
                "2025-13-01T00:00:00Z",
                "2025-00-01T00:00:00Z",
                "2025-02-29T00:00:00Z",
                "2025-02-30T00:00:00Z",
                "2025-04-31T00:00:00Z",
                "2025-03-00T00:00:00Z",
                "2025-03-12T24:00:00Z",
                "2025-03-12T10:60:00Z",
                "2025-03-12T10:00:60Z",
                "2025-03-12T10:00:00.Z",
                "2025-03-12T10:00:00Zjunk",
                "2025-03-12T10:00:00+0100",
                "2025-03-12T10:00:00+24:00",
                " 2025-03-12T10:00:00Z",
                "２025-03-12T10:00:00Z",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                assert_rejected(bad[i]);
        usec_t t;
        assert_int_equal(clock_parse_rfc3339(NULL, &t), -EINVAL);
}

static void test_format(void **state) {
        (void)state;
        assert_format(0, "1970-01-01T00:00:00Z");
        assert_format(1741773600 * USEC_PER_SEC, "2025-03-12T10:00:00Z");
        assert_format(1741773600 * USEC_PER_SEC + 123456, "2025-03-12T10:00:00.123456Z");
        assert_format(1741773600 * USEC_PER_SEC + 500000, "2025-03-12T10:00:00.500000Z");
        assert_format(-1, "1969-12-31T23:59:59.999999Z");
        assert_format(-2208988800LL * USEC_PER_SEC, "1900-01-01T00:00:00Z");
        assert_format(951782400LL * USEC_PER_SEC, "2000-02-29T00:00:00Z");
        /* Four-digit years only. */
        assert_format(INT64_MAX, "9999-12-31T23:59:59.999999Z");
        assert_format(INT64_MIN, "0000-01-01T00:00:00Z");
}

static void test_round_trip(void **state) {
        (void)state;
        uint64_t x = 0x9e3779b97f4a7c15ull;
        for (int i = 0; i < 100000; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                usec_t t = (usec_t)(x % (200ull * 365 * 24 * 3600 * 1000000)) - 50LL * 365 * 24 * 3600 * 1000000;
                if (i % 2)
                        t -= t % USEC_PER_SEC;
                char buf[RFC3339_MAX];
                usec_t back;
                clock_format_rfc3339(t, buf);
                assert_int_equal(clock_parse_rfc3339(buf, &back), 0);
                assert_int_equal(back, t);
                /* The system agrees on the calendar. */
                time_t secs = (time_t)(t >= 0 ? t / USEC_PER_SEC : (t - USEC_PER_SEC + 1) / USEC_PER_SEC);
                struct tm tm;
                char sys[40];
                gmtime_r(&secs, &tm);
                strftime(sys, sizeof sys, "%Y-%m-%dT%H:%M:%S", &tm);
                assert_memory_equal(buf, sys, 19);
        }
}

static void test_system_clocks(void **state) {
        (void)state;
        usec_t rt = clock_realtime();
        assert_true(rt > 1700000000LL * USEC_PER_SEC);
        assert_true(llabs((long long)(rt - (usec_t)time(NULL) * USEC_PER_SEC)) < 2 * USEC_PER_SEC);
        usec_t a = clock_monotonic(), b = clock_monotonic();
        assert_true(b >= a);
        clock_source c;
        assert_int_equal(clock_source_init(&c, NULL), 0);
        usec_t now = clock_now(&c);
        assert_true(llabs((long long)(now - clock_realtime())) < USEC_PER_SEC);
        clock_source_done(&c);
        clock_source_done(NULL);
}

static void write_file(const char *path, const char *content, time_t mtime) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(content, f);
        assert_int_equal(fclose(f), 0);
        struct timespec ts[2] = {{mtime, 0}, {mtime, 0}};
        assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void test_file_clock(void **state) {
        (void)state;
        char dir[] = "/tmp/test-clock-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[64];
        snprintf(path, sizeof path, "%s/now", dir);
        clock_source c;

        /* Missing or bad file: an error at init. */
        assert_int_equal(clock_source_init(&c, path), -ENOENT);
        write_file(path, "yesterday\n", 1000);
        assert_int_equal(clock_source_init(&c, path), -EINVAL);

        write_file(path, "2025-03-12T10:00:00Z\n", 1000);
        assert_int_equal(clock_source_init(&c, path), 0);
        usec_t t0 = 1741773600 * USEC_PER_SEC;
        assert_int_equal(clock_now(&c), t0);
        /* Frozen: the same time later on. */
        usleep(2000);
        assert_int_equal(clock_now(&c), t0);

        /* A new time with a new mtime is picked up. */
        write_file(path, "2025-03-14T10:00:01Z", 2000);
        assert_int_equal(clock_now(&c), t0 + 48 * USEC_PER_HOUR + USEC_PER_SEC);
        /* An unreadable rewrite keeps the last good time. */
        write_file(path, "", 3000);
        assert_int_equal(clock_now(&c), t0 + 48 * USEC_PER_HOUR + USEC_PER_SEC);
        write_file(path, "2025-03-15T00:00:00+01:00", 4000);
        assert_int_equal(clock_now(&c), 1741993200LL * USEC_PER_SEC);
        /* The file removed: the last time stays. */
        assert_int_equal(unlink(path), 0);
        assert_int_equal(clock_now(&c), 1741993200LL * USEC_PER_SEC);
        /* offset is added to the file's time. */
        c.offset = USEC_PER_HOUR;
        assert_int_equal(clock_now(&c), 1741993200LL * USEC_PER_SEC + USEC_PER_HOUR);
        clock_source_done(&c);
        assert_null(c.file);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),         cmocka_unit_test(test_parse_rejects),
                cmocka_unit_test(test_format),        cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_system_clocks), cmocka_unit_test(test_file_clock),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
