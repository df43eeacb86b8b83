/* SQLSTATE classes: what the daemon does about a PostgreSQL error. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "sqlstate.h"

static void test_transient(void **state) {
        (void)state;
        static const char *const codes[] = {"08006", "08001", "40001", "40P01", "53100", "53300",
                                            "57014", "57P01", "57P02", "57P03", "55P03", NULL};
        for (const char *const *c = codes; *c; c++)
                assert_int_equal(sqlstate_classify(*c), SQLSTATE_TRANSIENT);
        assert_int_equal(sqlstate_classify(NULL), SQLSTATE_TRANSIENT);
        assert_int_equal(sqlstate_classify(""), SQLSTATE_TRANSIENT);
}

static void test_data(void **state) {
        (void)state;
        static const char *const codes[] = {"22021", "22001", "22P02", "23505", "23514", "23503", NULL};
        for (const char *const *c = codes; *c; c++)
                assert_int_equal(sqlstate_classify(*c), SQLSTATE_DATA);
}

static void test_deployment(void **state) {
        (void)state;
        static const char *const codes[] = {"28P01", "28000", "3D000", "3F000", "42501", "42P01", "42703", NULL};
        for (const char *const *c = codes; *c; c++)
                assert_int_equal(sqlstate_classify(*c), SQLSTATE_DEPLOYMENT);
}

static void test_other(void **state) {
        (void)state;
        assert_int_equal(sqlstate_classify("XX000"), SQLSTATE_OTHER);
        assert_int_equal(sqlstate_classify("25P02"), SQLSTATE_OTHER);
        assert_int_equal(sqlstate_classify("55000"), SQLSTATE_OTHER);  /* only 55P03 is a timeout */
        assert_int_equal(sqlstate_classify("3D0"), SQLSTATE_TRANSIENT); /* not a code: no answer */
        assert_string_equal(sqlstate_class_name(SQLSTATE_DATA), "data");
        assert_string_equal(sqlstate_class_name(SQLSTATE_DEPLOYMENT), "deployment");
        assert_string_equal(sqlstate_class_name(SQLSTATE_TRANSIENT), "transient");
        assert_string_equal(sqlstate_class_name(SQLSTATE_OTHER), "other");
}

/* Each deployment error names its fix; the other classes have none. */
static void test_fix(void **state) {
        (void)state;
        assert_non_null(strstr(sqlstate_fix("3D000"), "createdb"));
        assert_non_null(strstr(sqlstate_fix("28P01"), "password"));
        assert_non_null(strstr(sqlstate_fix("28000"), "roles.sql"));
        assert_non_null(strstr(sqlstate_fix("42501"), "grant"));
        assert_non_null(strstr(sqlstate_fix("42P01"), "--migrate"));
        assert_null(sqlstate_fix("08006"));
        assert_null(sqlstate_fix("23505"));
        assert_null(sqlstate_fix(""));
        assert_null(sqlstate_fix(NULL));
        char st[6];
        assert_string_equal(sqlstate_in_text("migrate: x: permission denied for table t (SQLSTATE 42501)", st), "42501");
        assert_string_equal(sqlstate_in_text("connection lost", st), "");
        assert_string_equal(sqlstate_in_text("(SQLSTATE 4250", st), "");
        assert_string_equal(sqlstate_in_text(NULL, st), "");
}

/* A full disk (53100) and its kin are outages with a hint, not data or deployment errors. */
static void test_outage_hint(void **state) {
        (void)state;
        assert_int_equal(sqlstate_classify("53100"), SQLSTATE_TRANSIENT);
        assert_non_null(strstr(sqlstate_outage_hint("53100"), "disk is full"));
        assert_non_null(strstr(sqlstate_outage_hint("53300"), "max_connections"));
        assert_non_null(sqlstate_outage_hint("53400"));
        assert_null(sqlstate_outage_hint("22001"));
        assert_null(sqlstate_outage_hint("08006"));
        assert_null(sqlstate_outage_hint(""));
        assert_null(sqlstate_outage_hint(NULL));
        char st[6];
        assert_non_null(sqlstate_outage_hint(sqlstate_in_text(
                "ref_referrals_insert: could not extend file \"base/1/2\": No space left on device (SQLSTATE 53100)", st)));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fix),
                cmocka_unit_test(test_transient),
                cmocka_unit_test(test_data),
                cmocka_unit_test(test_deployment),
                cmocka_unit_test(test_other),
                cmocka_unit_test(test_outage_hint),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
