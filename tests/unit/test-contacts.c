/* The guardian merge (contacts.h): a supplied guardian updates the known one
 * of the same name, others are appended, nothing is deleted. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "contacts.h"

static Allvarssamtal__V1__Guardian guardian(const char *name, const char *phone, const char *email,
                                             const char *address) {
        Allvarssamtal__V1__Guardian g;
        allvarssamtal__v1__guardian__init(&g);
        g.name = (char *)name;
        g.phone = (char *)phone;
        g.email = (char *)email;
        g.postal_address = (char *)address;
        return g;
}

static void known(contacts *c) {
        assert_int_equal(contacts_add(c, 1, "Anna Andersson", "0701", "", "Gatan 1", 10, false), 0);
        assert_int_equal(contacts_add(c, 2, "Bo Berg", "", "bo@example.se", "", 10, false), 0);
}

/* Same name (trimmed, ASCII case ignored): non-empty fields update, empty ones keep. */
static void test_same_name_updates(void **state) {
        (void)state;
        contacts c = { 0 };
        known(&c);
        Allvarssamtal__V1__Guardian g = guardian("  anna ANDERSSON ", "0709", "", NULL);
        Allvarssamtal__V1__Guardian *gp[] = { &g };
        assert_int_equal(contacts_merge(&c, gp, 1, 20), 0);
        assert_int_equal(c.n, 2);
        assert_string_equal(c.v[0].name, "Anna Andersson");
        assert_string_equal(c.v[0].phone, "0709");
        assert_string_equal(c.v[0].address, "Gatan 1");
        assert_true(c.v[0].dirty);
        assert_int_equal(c.v[0].supplied_at, 20);
        assert_false(c.v[1].dirty);
        assert_int_equal(c.v[1].supplied_at, 10);
        contacts_free(&c);
}

/* Nothing new for a known guardian: not written again. */
static void test_unchanged_not_dirty(void **state) {
        (void)state;
        contacts c = { 0 };
        known(&c);
        Allvarssamtal__V1__Guardian g = guardian("Bo Berg", "", "bo@example.se", "");
        Allvarssamtal__V1__Guardian *gp[] = { &g };
        assert_int_equal(contacts_merge(&c, gp, 1, 20), 0);
        assert_false(c.v[0].dirty);
        assert_false(c.v[1].dirty);
        contacts_free(&c);
}

/* Another name, or none: appended with the next ordinal; nothing deleted. */
static void test_others_appended(void **state) {
        (void)state;
        contacts c = { 0 };
        known(&c);
        Allvarssamtal__V1__Guardian g1 = guardian("Cecilia Carlsson", "0703", NULL, NULL);
        Allvarssamtal__V1__Guardian g2 = guardian(NULL, "0704", NULL, NULL);
        Allvarssamtal__V1__Guardian g3 = guardian("Anna Anderson", NULL, NULL, NULL);  /* not the same name */
        Allvarssamtal__V1__Guardian *gp[] = { &g1, NULL, &g2, &g3 };
        assert_int_equal(contacts_merge(&c, gp, 4, 30), 0);
        assert_int_equal(c.n, 5);
        assert_int_equal(c.v[2].ordinal, 3);
        assert_string_equal(c.v[2].name, "Cecilia Carlsson");
        assert_string_equal(c.v[2].email, "");
        assert_int_equal(c.v[3].ordinal, 4);
        assert_string_equal(c.v[3].name, "");
        assert_int_equal(c.v[4].ordinal, 5);
        for (size_t i = 2; i < 5; i++) {
                assert_true(c.v[i].dirty);
                assert_int_equal(c.v[i].supplied_at, 30);
        }
        assert_string_equal(c.v[0].phone, "0701");
        contacts_free(&c);
}

/* Ordinals follow the highest known, not the count (rows may have gaps). */
static void test_ordinal_after_gap(void **state) {
        (void)state;
        contacts c = { 0 };
        assert_int_equal(contacts_add(&c, 4, "Dan", "", "", "", 0, false), 0);
        Allvarssamtal__V1__Guardian g = guardian("Eva", NULL, NULL, NULL);
        Allvarssamtal__V1__Guardian *gp[] = { &g };
        assert_int_equal(contacts_merge(&c, gp, 1, 1), 0);
        assert_int_equal(c.v[1].ordinal, 5);
        contacts_free(&c);
}

/* A blank name never matches (two guardians supplied without names are two). */
static void test_blank_names_never_match(void **state) {
        (void)state;
        contacts c = { 0 };
        assert_int_equal(contacts_add(&c, 1, "  ", "0701", "", "", 0, false), 0);
        Allvarssamtal__V1__Guardian g = guardian(" ", "0702", NULL, NULL);
        Allvarssamtal__V1__Guardian *gp[] = { &g };
        assert_int_equal(contacts_merge(&c, gp, 1, 1), 0);
        assert_int_equal(c.n, 2);
        assert_string_equal(c.v[0].phone, "0701");
        contacts_free(&c);
}

/* Capped and deduplicated: 19 supplies of 32 new guardians each leave
 * CONTACTS_MAX; a nameless guardian with a known phone number or e-mail
 * updates that one; a guardian with nothing to contact is skipped. */
static void test_capped_and_deduplicated(void **state) {
        (void)state;
        contacts c = { 0 };
        static Allvarssamtal__V1__Guardian g[32];
        static Allvarssamtal__V1__Guardian *gp[32];
        static char names[32][64];
        int dropped = 0;
        for (int round = 0; round < 19; round++) {
                for (int i = 0; i < 32; i++) {
                        snprintf(names[i], sizeof names[i], "Vårdnadshavare %d-%d", round, i);
                        g[i] = guardian(names[i], "0700", NULL, NULL);
                        gp[i] = &g[i];
                }
                int r = contacts_merge(&c, gp, 32, round);
                assert_true(r >= 0);
                dropped += r;
        }
        assert_int_equal(c.n, CONTACTS_MAX);
        assert_int_equal(dropped, 19 * 32 - CONTACTS_MAX);
        contacts_free(&c);

        contacts d = { 0 };
        assert_int_equal(contacts_add(&d, 1, "", "0701", "", "", 0, false), 0);
        Allvarssamtal__V1__Guardian same = guardian("", "0701", "ny@example.se", NULL);
        Allvarssamtal__V1__Guardian empty = guardian(" ", "", NULL, "");
        Allvarssamtal__V1__Guardian *sp[] = { &same, &same, &empty };
        assert_int_equal(contacts_merge(&d, sp, 3, 5), 0);
        assert_int_equal(d.n, 1);
        assert_string_equal(d.v[0].email, "ny@example.se");
        assert_true(d.v[0].dirty);
        contacts_free(&d);
}

/* The views for the scheduling request point at the contacts. */
static void test_views(void **state) {
        (void)state;
        contacts c = { 0 };
        known(&c);
        assert_int_equal(contacts_views(&c), 0);
        assert_string_equal(c.gp[1]->name, "Bo Berg");
        assert_string_equal(c.gp[1]->email, "bo@example.se");
        assert_string_equal(c.gp[0]->postal_address, "Gatan 1");
        contacts_free(&c);
        contacts empty = { 0 };
        assert_int_equal(contacts_views(&empty), 0);
        contacts_free(&empty);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_same_name_updates),   cmocka_unit_test(test_unchanged_not_dirty),
                cmocka_unit_test(test_others_appended),     cmocka_unit_test(test_ordinal_after_gap),
                cmocka_unit_test(test_blank_names_never_match), cmocka_unit_test(test_views),
                cmocka_unit_test(test_capped_and_deduplicated),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
