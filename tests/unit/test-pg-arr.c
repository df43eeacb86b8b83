/* Binary int4 arrays: what pg_arr builds as a parameter, pg_arr_int4_read reads
 * back from a result (the persons' history, daemon/store_referrals.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "pg.h"

static void build_int4(pg_arr *a, const int32_t *v, size_t n) {
        pg_arr_reset(a, PG_OID_INT4);
        for (size_t i = 0; i < n; i++)
                pg_arr_int4(a, v[i]);
        assert_int_equal(pg_arr_finish(a), 0);
}

/* The elements read back from a, which must read. */
static size_t read_back(const pg_arr *a, int32_t *out, size_t max) {
        size_t n = 99;
        assert_int_equal(pg_arr_int4_read(a->b.s, a->b.len, out, max, &n), 0);
        return n;
}

static void test_round_trip(void **state) {
        (void)state;
        static const int32_t v[] = {5, -1, 0, 2147483647, 5, 64};
        pg_arr a = { 0 };
        build_int4(&a, v, 6);
        int32_t out[8];
        assert_int_equal(read_back(&a, out, 8), 6);
        assert_memory_equal(out, v, sizeof v);
        pg_arr_free(&a);
}

static void test_empty(void **state) {
        (void)state;
        pg_arr a = { 0 };
        build_int4(&a, NULL, 0);
        int32_t out[1];
        assert_int_equal(read_back(&a, out, 1), 0);
        pg_arr_free(&a);
}

static void test_too_many(void **state) {
        (void)state;
        static const int32_t v[] = {1, 2, 3};
        pg_arr a = { 0 };
        build_int4(&a, v, 3);
        int32_t out[2];
        size_t n = 0;
        assert_int_equal(pg_arr_int4_read(a.b.s, a.b.len, out, 2, &n), -E2BIG);
        assert_int_equal(n, 3);         /* how many there are: room for them next time */
        pg_arr_free(&a);
}

static void test_refused(void **state) {
        (void)state;
        int32_t out[8];
        size_t n;
        pg_arr a = { 0 };
        /* a NULL element */
        pg_arr_reset(&a, PG_OID_INT4);
        pg_arr_int4(&a, 1);
        pg_arr_null(&a);
        assert_int_equal(pg_arr_finish(&a), 0);
        assert_int_equal(pg_arr_int4_read(a.b.s, a.b.len, out, 8, &n), -EBADMSG);
        /* text, not int4 */
        pg_arr_reset(&a, PG_OID_TEXT);
        pg_arr_text(&a, "abcd");
        assert_int_equal(pg_arr_finish(&a), 0);
        assert_int_equal(pg_arr_int4_read(a.b.s, a.b.len, out, 8, &n), -EBADMSG);
        /* cut short, by one byte and to less than a header */
        static const int32_t v[] = {7, 8};
        build_int4(&a, v, 2);
        assert_int_equal(pg_arr_int4_read(a.b.s, a.b.len - 1, out, 8, &n), -EBADMSG);
        assert_int_equal(pg_arr_int4_read(a.b.s, 11, out, 8, &n), -EBADMSG);
        assert_int_equal(pg_arr_int4_read(a.b.s, a.b.len, out, 8, &n), 0);
        /* an element whose length is not 4, though the sizes add up */
        uint8_t odd[20 + 16];
        memcpy(odd, a.b.s, sizeof odd);
        memset(odd + 20 + 8, 0xff, 4);  /* the second element's length: -1, a NULL */
        assert_int_equal(pg_arr_int4_read(odd, sizeof odd, out, 8, &n), -EBADMSG);
        /* two dimensions */
        uint8_t two[20 + 8];
        memcpy(two, a.b.s, sizeof two);
        two[3] = 2;
        assert_int_equal(pg_arr_int4_read(two, sizeof two, out, 8, &n), -EBADMSG);
        pg_arr_free(&a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_empty),
                cmocka_unit_test(test_too_many),
                cmocka_unit_test(test_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
