/* The built-in profiles (docs/domain.md "Policy profiles") and their overrides. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "profiles.h"

static const profile *find(const char *name) {
        const profile *p = profiles_find(name);
        assert_non_null(p);
        assert_string_equal(p->name, name);
        return p;
}

static void assert_common(const profile *p) {
        assert_int_equal(p->version, 1);
        assert_int_equal(p->protective_assessment_within, 24 * USEC_PER_HOUR);
        assert_int_equal(p->late_referral_after, 14 * USEC_PER_DAY);
        assert_int_equal(p->adult_age, 18);
        assert_int_equal(p->criminal_responsibility_age, 15);
        assert_true(p->at_risk_fraction > 0.7499 && p->at_risk_fraction < 0.7501);
}

static void test_builtins(void **state) {
        (void)state;
        assert_int_equal(profiles_builtin_count(), 4);
        assert_string_equal(profiles_builtin(0)->name, PROFILE_DEFAULT);
        assert_string_equal(profiles_builtin(0)->name, "goteborg-motion-2024");
        assert_string_equal(profiles_builtin(1)->name, "stockholm-2019");
        assert_string_equal(profiles_builtin(2)->name, "ds-2024-30");
        assert_string_equal(profiles_builtin(3)->name, "trollhattan-tuti");
        assert_null(profiles_builtin(4));
        assert_null(profiles_find("goteborg"));
        assert_null(profiles_find(""));
        assert_null(profiles_find(NULL));
        for (size_t i = 0; i < profiles_builtin_count(); i++)
                assert_ptr_equal(profiles_find(profiles_builtin(i)->name), profiles_builtin(i));
}

static void test_goteborg(void **state) {
        (void)state;
        const profile *p = find("goteborg-motion-2024");
        assert_common(p);
        assert_int_equal(p->min_age, 10);
        assert_int_equal(p->max_age, 17);
        assert_int_equal(p->qualifying_marks,
                         MARK_INAPPROPRIATE_ENVIRONMENT | MARK_CRIMINAL_BEHAVIOUR | MARK_SUSPECTED_CRIME);
        assert_int_equal(p->first_time_marks, 0);
        assert_false(p->imprisonable_required);
        assert_int_equal(p->limit, 48 * USEC_PER_HOUR);
        assert_int_equal(p->deadline_kind, DEADLINE_CONVERSATION);
}

static void test_stockholm(void **state) {
        (void)state;
        const profile *p = find("stockholm-2019");
        assert_common(p);
        assert_int_equal(p->min_age, 0);
        assert_int_equal(p->max_age, 20);
        assert_int_equal(p->qualifying_marks, MARK_SUSPECTED_CRIME);
        assert_int_equal(p->first_time_marks, MARK_SUSPECTED_CRIME);
        assert_false(p->imprisonable_required);
        assert_int_equal(p->limit, 48 * USEC_PER_HOUR);
        assert_int_equal(p->deadline_kind, DEADLINE_CONVERSATION);
}

static void test_ds(void **state) {
        (void)state;
        const profile *p = find("ds-2024-30");
        assert_common(p);
        assert_int_equal(p->min_age, 0);
        assert_int_equal(p->max_age, 20);
        assert_int_equal(p->qualifying_marks, MARK_IMPRISONABLE_OFFENCE);
        assert_int_equal(p->first_time_marks, MARK_IMPRISONABLE_OFFENCE);
        assert_true(p->imprisonable_required);
        assert_int_equal(p->limit, 24 * USEC_PER_HOUR);
        assert_int_equal(p->deadline_kind, DEADLINE_SUMMONS);
}

static void test_tuti(void **state) {
        (void)state;
        const profile *p = find("trollhattan-tuti");
        assert_common(p);
        assert_int_equal(p->min_age, 9);
        assert_int_equal(p->max_age, 17);
        assert_int_equal(p->qualifying_marks, MARK_SUSPECTED_CRIME | MARK_CRIMINAL_BEHAVIOUR);
        assert_int_equal(p->first_time_marks, MARK_SUSPECTED_CRIME | MARK_CRIMINAL_BEHAVIOUR);
        assert_false(p->imprisonable_required);
        assert_int_equal(p->limit, 14 * USEC_PER_DAY);
        assert_int_equal(p->deadline_kind, DEADLINE_CONVERSATION);
}

static void test_set_each_parameter(void **state) {
        (void)state;
        profile p = *find("stockholm-2019");
        assert_int_equal(profile_set(&p, "min_age", "12"), 0);
        assert_int_equal(p.min_age, 12);
        assert_int_equal(profile_set(&p, "max_age", "18"), 0);
        assert_int_equal(p.max_age, 18);
        assert_int_equal(profile_set(&p, "limit_hours", "72"), 0);
        assert_int_equal(p.limit, 72 * USEC_PER_HOUR);
        assert_int_equal(profile_set(&p, "protective_assessment_hours", "8"), 0);
        assert_int_equal(p.protective_assessment_within, 8 * USEC_PER_HOUR);
        assert_int_equal(profile_set(&p, "late_referral_days", "30"), 0);
        assert_int_equal(p.late_referral_after, 30 * USEC_PER_DAY);
        assert_int_equal(profile_set(&p, "first_time", "no"), 0);
        assert_int_equal(p.first_time_marks, 0);
        assert_int_equal(profile_set(&p, "first_time", "yes"), 0);
        assert_int_equal(p.first_time_marks, p.qualifying_marks);
        assert_int_equal(profile_set(&p, "first_time", "false"), 0);
        assert_int_equal(p.first_time_marks, 0);
        assert_int_equal(profile_set(&p, "first_time", "true"), 0);
        assert_int_equal(p.first_time_marks, MARK_SUSPECTED_CRIME);
        assert_int_equal(profile_set(&p, "adult_age", "21"), 0);
        assert_int_equal(p.adult_age, 21);
        assert_int_equal(profile_set(&p, "criminal_responsibility_age", "14"), 0);
        assert_int_equal(p.criminal_responsibility_age, 14);
        assert_int_equal(profile_set(&p, "at_risk_percent", "50"), 0);
        assert_true(p.at_risk_fraction > 0.4999 && p.at_risk_fraction < 0.5001);
        assert_int_equal(profile_set(&p, "version", "3"), 0);
        assert_int_equal(p.version, 3);
        /* The built-in is untouched. */
        assert_int_equal(find("stockholm-2019")->max_age, 20);
        assert_int_equal(find("stockholm-2019")->version, 1);
}

static void test_set_rejects(void **state) {
        (void)state;
        profile p = *find("goteborg-motion-2024");
        profile before = p;
        assert_int_equal(profile_set(&p, "no_such_key", "1"), -ENOENT);
        assert_int_equal(profile_set(&p, "name", "x"), -ENOENT);
        static const char *const bad_numbers[] = {"", "-1", "+3", " 3", "3 ", "3x", "x", "1.5", "99999999999999999999"};
        for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++) {
                assert_int_equal(profile_set(&p, "min_age", bad_numbers[i]), -EINVAL);
                assert_int_equal(profile_set(&p, "limit_hours", bad_numbers[i]), -EINVAL);
                assert_int_equal(profile_set(&p, "version", bad_numbers[i]), -EINVAL);
        }
        assert_int_equal(profile_set(&p, "min_age", NULL), -EINVAL);
        assert_int_equal(profile_set(&p, "max_age", "151"), -EINVAL);
        assert_int_equal(profile_set(&p, "limit_hours", "0"), -EINVAL);
        assert_int_equal(profile_set(&p, "protective_assessment_hours", "0"), -EINVAL);
        assert_int_equal(profile_set(&p, "at_risk_percent", "0"), -EINVAL);
        assert_int_equal(profile_set(&p, "at_risk_percent", "100"), -EINVAL);
        assert_int_equal(profile_set(&p, "version", "0"), -EINVAL);
        assert_int_equal(profile_set(&p, "first_time", "maybe"), -EINVAL);
        assert_int_equal(profile_set(&p, "first_time", ""), -EINVAL);
        /* Nothing changed by a rejected value. */
        assert_memory_equal(&p, &before, sizeof p);
}

static void test_param_names(void **state) {
        (void)state;
        size_t n = 0;
        for (const char *const *k = profile_param_names; *k; k++, n++) {
                profile p = *find("goteborg-motion-2024");
                const char *value = strcmp(*k, "first_time") == 0 ? "yes" : "12";
                if (profile_set(&p, *k, value) != 0)
                        fail_msg("profile_set rejects its own parameter %s", *k);
        }
        assert_int_equal(n, 10);
}

static void test_describe(void **state) {
        (void)state;
        char buf[1024];
        assert_int_equal(profile_describe(find("goteborg-motion-2024"), buf, sizeof buf), 0);
        assert_string_equal(buf, "name=goteborg-motion-2024;version=1;min_age=10;max_age=17;"
                                 "qualifying=INAPPROPRIATE_ENVIRONMENT|CRIMINAL_BEHAVIOUR|SUSPECTED_CRIME;"
                                 "first_time=NONE;imprisonable_required=no;limit_hours=48;deadline_kind=CONVERSATION;"
                                 "protective_assessment_hours=24;late_referral_days=14;adult_age=18;"
                                 "criminal_responsibility_age=15;at_risk_percent=75");
        assert_int_equal(profile_describe(find("ds-2024-30"), buf, sizeof buf), 0);
        assert_non_null(strstr(buf, ";qualifying=IMPRISONABLE_OFFENCE;first_time=IMPRISONABLE_OFFENCE;"
                                    "imprisonable_required=yes;limit_hours=24;deadline_kind=SUMMONS;"));
        assert_int_equal(profile_describe(find("trollhattan-tuti"), buf, sizeof buf), 0);
        assert_non_null(strstr(buf, ";limit_hours=336;"));
        /* Overrides show. */
        profile p = *find("stockholm-2019");
        assert_int_equal(profile_set(&p, "limit_hours", "72"), 0);
        assert_int_equal(profile_set(&p, "version", "2"), 0);
        assert_int_equal(profile_describe(&p, buf, sizeof buf), 0);
        assert_non_null(strstr(buf, "name=stockholm-2019;version=2;"));
        assert_non_null(strstr(buf, ";limit_hours=72;"));
        /* Too small a buffer: truncated, terminated, reported. */
        char small[16];
        assert_int_equal(profile_describe(&p, small, sizeof small), -ENOBUFS);
        assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_builtins),        cmocka_unit_test(test_goteborg),
                cmocka_unit_test(test_stockholm),       cmocka_unit_test(test_ds),
                cmocka_unit_test(test_tuti),            cmocka_unit_test(test_set_each_parameter),
                cmocka_unit_test(test_set_rejects),     cmocka_unit_test(test_param_names),
                cmocka_unit_test(test_describe),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
