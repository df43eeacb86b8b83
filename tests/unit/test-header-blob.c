/* A dead letter's headers as one byte string and back (daemon/header_blob.c): what
 * replay sends is what came, NULL and empty values and binary bytes included;
 * a damaged string is refused; a header is an id only when it looks like one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "header_blob.h"

static void test_round_trip(void **state) {
        (void)state;
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        rd_kafka_header_add(h, "ce_id", -1, "ev-1", -1);
        rd_kafka_header_add(h, "nothing", -1, NULL, 0);
        rd_kafka_header_add(h, "empty", -1, "", 0);
        rd_kafka_header_add(h, "binary", -1, "\0\xff\x01", 3);
        rd_kafka_header_add(h, "ce_id", -1, "ev-2", -1); /* repeated: kept in order */
        uint8_t *blob;
        size_t len;
        assert_int_equal(header_blob_encode(h, &blob, &len), 0);
        assert_int_equal(len, (2 + 5 + 4 + 4) + (2 + 7 + 4) + (2 + 5 + 4) + (2 + 6 + 4 + 3) + (2 + 5 + 4 + 4));

        rd_kafka_headers_t *back = rd_kafka_headers_new(4);
        assert_int_equal(header_blob_decode(blob, len, back), 0);
        assert_int_equal(rd_kafka_header_cnt(back), 5);
        for (size_t i = 0; i < 5; i++) {
                const char *n1, *n2;
                const void *v1, *v2;
                size_t s1, s2;
                assert_int_equal(rd_kafka_header_get_all(h, i, &n1, &v1, &s1), 0);
                assert_int_equal(rd_kafka_header_get_all(back, i, &n2, &v2, &s2), 0);
                assert_string_equal(n1, n2);
                assert_int_equal(v1 == NULL, v2 == NULL);
                assert_int_equal(s1, s2);
                if (s1)
                        assert_memory_equal(v1, v2, s1);
        }
        char id[HEADER_ID_MAX + 1];
        header_id(back, "ce_id", id);
        assert_string_equal(id, "ev-2");
        rd_kafka_headers_destroy(back);

        /* Every truncation of it is refused, and nothing else is added. */
        for (size_t cut = 1; cut < len; cut++) {
                rd_kafka_headers_t *t = rd_kafka_headers_new(4);
                int r = header_blob_decode(blob, cut, t);
                /* A cut between two headers is a shorter, valid list. */
                if (r == 0)
                        assert_true(rd_kafka_header_cnt(t) < 5);
                else
                        assert_int_equal(r, -EBADMSG);
                rd_kafka_headers_destroy(t);
        }
        free(blob);
        rd_kafka_headers_destroy(h);

        assert_int_equal(header_blob_encode(NULL, &blob, &len), 0);
        assert_null(blob);
        assert_int_equal(len, 0);
}

static void test_header_id(void **state) {
        (void)state;
        rd_kafka_headers_t *h = rd_kafka_headers_new(4);
        char id[HEADER_ID_MAX + 1];
        header_id(h, "ce_id", id);
        assert_string_equal(id, "");
        rd_kafka_header_add(h, "ce_id", -1, "has blank", -1);
        header_id(h, "ce_id", id);
        assert_string_equal(id, "");
        rd_kafka_header_add(h, "ce_id", -1, "\xc3\x85", -1);
        header_id(h, "ce_id", id);
        assert_string_equal(id, "");
        char longer[HEADER_ID_MAX + 2];
        memset(longer, 'a', sizeof longer - 1);
        longer[sizeof longer - 1] = '\0';
        rd_kafka_header_add(h, "ce_id", -1, longer, -1);
        header_id(h, "ce_id", id);
        assert_string_equal(id, "");
        longer[HEADER_ID_MAX] = '\0';
        rd_kafka_header_add(h, "ce_id", -1, longer, -1);
        header_id(h, "ce_id", id);
        assert_string_equal(id, longer);
        header_id(NULL, "ce_id", id);
        assert_string_equal(id, "");
        rd_kafka_headers_destroy(h);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_header_id),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
