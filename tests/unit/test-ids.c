/* ids.c: UUIDv5 against RFC 4122 / Python's uuid module, the project's two
 * namespaces pinned by known ids (they must never change), and HMAC-SHA-256
 * against RFC 4231 (ids.c computes it from the digest itself: every key
 * length the RFC covers, and the block-size boundary). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ids.h"

static void hex(const uint8_t *b, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                sprintf(out + 2 * i, "%02x", b[i]);
}

/* uuid.uuid5(uuid.NAMESPACE_DNS, "python.org") in Python's documentation. */
static void test_uuid5_known_vector(void **state) {
        (void)state;
        static const uint8_t ns_dns[16] = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                           0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
        char id[UUID_STR_LEN];
        ids_uuid5(ns_dns, "python.org", strlen("python.org"), id);
        assert_string_equal(id, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
}

static void test_uuid5_version_and_variant(void **state) {
        (void)state;
        static const uint8_t ns[16] = {0};
        char id[UUID_STR_LEN];
        for (unsigned i = 0; i < 200; i++) {
                char name[16];
                snprintf(name, sizeof name, "n%u", i);
                ids_uuid5(ns, name, strlen(name), id);
                assert_int_equal(strlen(id), 36);
                assert_int_equal(id[8], '-');
                assert_int_equal(id[13], '-');
                assert_int_equal(id[18], '-');
                assert_int_equal(id[23], '-');
                assert_int_equal(id[14], '5');                     /* version 5 */
                assert_non_null(strchr("89ab", id[19]));           /* variant 10x */
                for (size_t j = 0; j < 36; j++)
                        assert_true(id[j] == '-' || strchr("0123456789abcdef", id[j]));
        }
}

static void test_uuid5_binary_name(void **state) {
        (void)state;
        static const uint8_t ns[16] = {1};
        static const uint8_t a[] = {'x', 0, 'y'}, b[] = {'x', 0, 'z'};
        char ia[UUID_STR_LEN], ib[UUID_STR_LEN], ic[UUID_STR_LEN];
        ids_uuid5(ns, a, sizeof a, ia);
        ids_uuid5(ns, b, sizeof b, ib);
        ids_uuid5(ns, a, 1, ic);     /* "x" alone */
        assert_string_not_equal(ia, ib); /* bytes after a NUL count */
        assert_string_not_equal(ia, ic);
}

/* The namespaces are a contract: these ids were computed with Python,
 * uuid.uuid5(uuid.UUID(NS), name), from the values documented in ids.c. */
static void test_case_and_event_ids_are_pinned(void **state) {
        (void)state;
        char cid[UUID_STR_LEN], eid[UUID_STR_LEN];
        ids_case_id("POL-2025-000123", cid);
        assert_string_equal(cid, "3166ed5f-e165-55f2-bd5d-9a6abc2ca811");
        ids_event_id(cid, "feedback/RECEIVED", eid);
        assert_string_equal(eid, "9c64b328-5a7d-5ab1-b7c2-1428671c83cb");
        ids_event_id(cid, "scheduling", eid);
        assert_string_equal(eid, "50ac4c23-fba3-5963-a0d4-aaadfb32b510");
        ids_case_id("\xc3\x84rende-\xc3\xb6", cid); /* UTF-8 bytes as given */
        assert_string_equal(cid, "3a2b4815-e647-53ba-852a-d3b77c8091d4");
}

static void test_ids_are_stable_and_distinct(void **state) {
        (void)state;
        char a[UUID_STR_LEN], b[UUID_STR_LEN], c[UUID_STR_LEN];
        ids_case_id("R-1", a);
        ids_case_id("R-1", b);
        ids_case_id("R-2", c);
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
        /* The two namespaces differ: the same text is not the same id. */
        ids_event_id("R", "1", b);  /* uuid5(NS_EVENT, "R/1") */
        ids_case_id("R/1", c);      /* uuid5(NS_CASE, "R/1") */
        assert_string_not_equal(b, c);
        /* "case/a" + "b" vs "case" + "a/b": the separator is part of the name, as documented. */
        ids_event_id("case/a", "b", a);
        ids_event_id("case", "a/b", b);
        assert_string_equal(a, b);
}

/* RFC 4231 section 4.2 (test case 1) and 4.3 (test case 2). */
/* The key rule: an outcome's key is its case id, which anyone can compute from the
 * referral id (Python: uuid.uuid5(UUID("31575f85-488e-4d92-b478-9bc0789503b8"), referral_id)). */
static void test_outcome_key_check(void **state) {
        (void)state;
        const char *cid = "fa25b861-078e-5c4d-bba2-88a8810ffb3c"; /* of PM-2025-000123, computed with Python */
        char computed[UUID_STR_LEN];
        ids_case_id("PM-2025-000123", computed);
        assert_string_equal(computed, cid);
        assert_int_equal(ids_outcome_key_check(cid, "", cid, strlen(cid)), 0);
        assert_int_equal(ids_outcome_key_check("", "PM-2025-000123", cid, strlen(cid)), 0);
        assert_int_equal(ids_outcome_key_check(cid, "PM-2025-000123", cid, strlen(cid)), 0);
        /* The referral id as the key, no key, a prefix, another case, upper case. */
        assert_int_equal(ids_outcome_key_check("", "PM-2025-000123", "PM-2025-000123", 14), -EBADMSG);
        assert_int_equal(ids_outcome_key_check(cid, "", NULL, 0), -EBADMSG);
        assert_int_equal(ids_outcome_key_check(cid, "", cid, strlen(cid) - 1), -EBADMSG);
        assert_int_equal(ids_outcome_key_check(cid, "", "00000000-0000-5000-8000-000000000000", 36), -EBADMSG);
        assert_int_equal(ids_outcome_key_check(cid, "", "FA25B861-078E-5C4D-BBA2-88A8810FFB3C", 36), -EBADMSG);
        /* case_id and referral_id of two cases. */
        assert_int_equal(ids_outcome_key_check(cid, "PM-2025-000124", cid, strlen(cid)), -EINVAL);
}

static void test_person_key_rfc4231(void **state) {
        (void)state;
        uint8_t key[20], out[PERSON_KEY_LEN];
        char h[2 * PERSON_KEY_LEN + 1];
        memset(key, 0x0b, sizeof key);
        assert_int_equal(ids_person_key(key, sizeof key, "Hi There", out), 0);
        hex(out, sizeof out, h);
        assert_string_equal(h, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

        assert_int_equal(ids_person_key((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", out), 0);
        hex(out, sizeof out, h);
        assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void check_key(const uint8_t *key, size_t key_len, const char *text, const char *want) {
        uint8_t out[PERSON_KEY_LEN];
        char h[2 * PERSON_KEY_LEN + 1];
        assert_int_equal(ids_person_key(key, key_len, text, out), 0);
        hex(out, sizeof out, h);
        assert_string_equal(h, want);
}

/* RFC 4231 test cases 3 and 4 (key and data of other lengths), 6 and 7 (a
 * 131-byte key: longer than SHA-256's 64-byte block, so hashed first). Case 5
 * truncates the output and the API has no truncation. */
static void test_person_key_rfc4231_long_keys(void **state) {
        (void)state;
        uint8_t key[131];
        char text[200];

        memset(key, 0xaa, 20);
        memset(text, 0xdd, 50);
        text[50] = 0;
        check_key(key, 20, text, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

        for (size_t i = 0; i < 25; i++)
                key[i] = (uint8_t)(i + 1);
        memset(text, 0xcd, 50);
        text[50] = 0;
        check_key(key, 25, text, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

        memset(key, 0xaa, sizeof key);
        check_key(key, sizeof key, "Test Using Larger Than Block-Size Key - Hash Key First",
                  "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
        check_key(key, sizeof key,
                  "This is a test using a larger than block-size key and a larger than block-size data. The key "
                  "needs to be hashed before being used by the HMAC algorithm.",
                  "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

/* The block-size boundary (a 64-byte key is used as is, 65 bytes are hashed)
 * and an empty text. python3: hmac.new(b'k'*64, b'200501012384', hashlib.sha256). */
static void test_person_key_block_boundary(void **state) {
        (void)state;
        uint8_t key[65];
        memset(key, 'k', sizeof key);
        check_key(key, 64, "200501012384", "119dcdff7a2e2cb039aeec50b4d91847bf5a255342a597a747468d3b400aadb2");
        check_key(key, 65, "200501012384", "0d1b43cd76be0a67c81e47f337c64cab1d55b79af614df86012dec1a35d8e7ab");
        check_key(key, 32, "", "a4ad8e340e32bf1d916005cb1dc92795148897965e36ae56c0adc357474b5372");
}

/* One thread per store connection may hash at once, the first calls racing
 * for the digests fetched once: every thread gets the known values. */
#define THREADS 4
#define ROUNDS 2000

static void *hash_many(void *arg) {
        int *bad = arg;
        uint8_t pepper[32], out[PERSON_KEY_LEN];
        char h[2 * PERSON_KEY_LEN + 1], id[UUID_STR_LEN];
        memset(pepper, 'p', sizeof pepper);
        static const uint8_t ns_dns[16] = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                                           0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
        for (int i = 0; i < ROUNDS; i++) {
                if (ids_person_key(pepper, sizeof pepper, "200501012384", out) != 0) {
                        (*bad)++;
                        continue;
                }
                hex(out, sizeof out, h);
                if (strcmp(h, "942db1f7220287f967f91524576c36abf945e6a14006f3d13234af493645ef27") != 0)
                        (*bad)++;
                ids_uuid5(ns_dns, "python.org", strlen("python.org"), id);
                if (strcmp(id, "886313e1-3b8a-5372-9b90-0c9aee199e5d") != 0)
                        (*bad)++;
        }
        return NULL;
}

static void test_person_key_threads(void **state) {
        (void)state;
        pthread_t th[THREADS];
        int bad[THREADS] = {0};
        for (int i = 0; i < THREADS; i++)
                assert_int_equal(pthread_create(&th[i], NULL, hash_many, &bad[i]), 0);
        for (int i = 0; i < THREADS; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                assert_int_equal(bad[i], 0);
        }
}

static void test_person_key_depends_on_pepper(void **state) {
        (void)state;
        uint8_t p1[32], p2[32], a[PERSON_KEY_LEN], b[PERSON_KEY_LEN], c[PERSON_KEY_LEN];
        char h[2 * PERSON_KEY_LEN + 1];
        memset(p1, 'p', sizeof p1);
        memcpy(p2, p1, sizeof p2);
        p2[31] ^= 1;
        assert_int_equal(ids_person_key(p1, sizeof p1, "200501012384", a), 0);
        assert_int_equal(ids_person_key(p1, sizeof p1, "200501012384", b), 0);
        assert_int_equal(ids_person_key(p2, sizeof p2, "200501012384", c), 0);
        assert_memory_equal(a, b, sizeof a);
        assert_memory_not_equal(a, c, sizeof a);
        /* python3: hmac.new(b'p'*32, b'200501012384', hashlib.sha256).hexdigest() */
        hex(a, sizeof a, h);
        assert_string_equal(h, "942db1f7220287f967f91524576c36abf945e6a14006f3d13234af493645ef27");
        assert_int_equal(ids_person_key(NULL, 0, "200501012384", a), -EIO);
        /* The thread keeps its keyed context: a pepper changed in place (same
         * address and length, as a reload may leave it), then a shorter one,
         * then the first again, each gives its own key. */
        p1[0] ^= 1;
        assert_int_equal(ids_person_key(p1, sizeof p1, "200501012384", b), 0);
        assert_memory_not_equal(a, b, sizeof a);
        p1[0] ^= 1;
        assert_int_equal(ids_person_key(p1, 16, "200501012384", c), 0);
        assert_memory_not_equal(a, c, sizeof a);
        assert_int_equal(ids_person_key(p1, sizeof p1, "200501012384", b), 0);
        assert_memory_equal(a, b, sizeof a);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_uuid5_known_vector),
                cmocka_unit_test(test_uuid5_version_and_variant),
                cmocka_unit_test(test_uuid5_binary_name),
                cmocka_unit_test(test_case_and_event_ids_are_pinned),
                cmocka_unit_test(test_ids_are_stable_and_distinct),
                cmocka_unit_test(test_outcome_key_check),
                cmocka_unit_test(test_person_key_rfc4231),
                cmocka_unit_test(test_person_key_depends_on_pepper),
                cmocka_unit_test(test_person_key_rfc4231_long_keys),
                cmocka_unit_test(test_person_key_block_boundary),
                cmocka_unit_test(test_person_key_threads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
