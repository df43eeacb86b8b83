/* What the relay says while the brokers refuse its events (daemon/relay_dead.c
 * relay_refusal_note/over): the error STATUS= names, and which one wins when
 * librdkafka's own errors follow a broker's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "relay_dead.h"

static void test_broker_error_named(void **state) {
        (void)state;
        relay_refusal x = {0};
        char status[120] = "";
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "t.feedback", status, sizeof status);
        assert_non_null(strstr(status, "TOPIC_AUTHORIZATION_FAILED"));
        assert_int_equal(x.n, 1);
        relay_refusal_over(&x, status);
        assert_string_equal(status, "");
        assert_int_equal(x.n, 0);
}

/* A produce refused by the brokers can take the rest of its partition's
 * messages with it, reported with librdkafka's local _DESTROY: the operator
 * must still read what to fix (seen in test-relay's failed-delivery test). */
static void test_local_error_does_not_hide_the_brokers(void **state) {
        (void)state;
        relay_refusal x = {0};
        char status[120] = "";
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "t.feedback", status, sizeof status);
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR__DESTROY, "t.feedback", status, sizeof status);
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "t.scheduling", status, sizeof status);
        assert_non_null(strstr(status, "TOPIC_AUTHORIZATION_FAILED"));
        assert_null(strstr(status, "_DESTROY"));
        assert_int_equal(x.n, 3);
        assert_int_equal(x.err, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
        /* Another answer of the brokers does replace it. */
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP, "t.feedback", status, sizeof status);
        assert_non_null(strstr(status, "INVALID_TIMESTAMP"));
}

/* Alone, a local error is what there is to say (the brokers unreachable). */
static void test_local_error_alone(void **state) {
        (void)state;
        relay_refusal x = {0};
        char status[120] = "";
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, "t.feedback", status, sizeof status);
        assert_non_null(strstr(status, "_MSG_TIMED_OUT"));
        relay_refusal_note(&x, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, "t.feedback", status, sizeof status);
        assert_non_null(strstr(status, "TOPIC_AUTHORIZATION_FAILED"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_broker_error_named),
                cmocka_unit_test(test_local_error_does_not_hide_the_brokers),
                cmocka_unit_test(test_local_error_alone),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
