/* notify.c: what arrives on a NOTIFY_SOCKET of the test's own, and the STATUS
 * line's wording. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "notify.h"

typedef struct listener {
        char dir[64];
        char path[128];
        int fd;
} listener;

static int setup(void **state) {
        listener *l = calloc(1, sizeof *l);
        assert_non_null(l);
        strcpy(l->dir, "/tmp/test-notify-XXXXXX");
        assert_non_null(mkdtemp(l->dir));
        snprintf(l->path, sizeof l->path, "%s/notify", l->dir);
        l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        assert_true(l->fd >= 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, l->path);
        assert_int_equal(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
        struct timeval tv = {.tv_sec = 2};
        assert_int_equal(setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
        assert_int_equal(setenv("NOTIFY_SOCKET", l->path, 1), 0);
        *state = l;
        return 0;
}

static int teardown(void **state) {
        listener *l = *state;
        unsetenv("NOTIFY_SOCKET");
        close(l->fd);
        unlink(l->path);
        rmdir(l->dir);
        free(l);
        return 0;
}

/* The next datagram, or "" after the timeout. */
static char *receive(listener *l, char *buf, size_t size) {
        ssize_t n = recv(l->fd, buf, size - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        return buf;
}

static bool nothing_pending(listener *l) {
        char b[16];
        return recv(l->fd, b, sizeof b, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static void test_ready_stopping_watchdog(void **state) {
        listener *l = *state;
        char buf[4096];
        notify_ready();
        assert_string_equal(receive(l, buf, sizeof buf), "READY=1");
        notify_watchdog();
        assert_string_equal(receive(l, buf, sizeof buf), "WATCHDOG=1");
        notify_stopping();
        assert_string_equal(receive(l, buf, sizeof buf), "STOPPING=1");
        assert_true(nothing_pending(l));
}

static void test_reloading_carries_monotonic_time(void **state) {
        listener *l = *state;
        char buf[4096];
        usec_t before = clock_monotonic();
        notify_reloading();
        usec_t after = clock_monotonic();
        receive(l, buf, sizeof buf);
        long long t = -1;
        int n = 0;
        assert_int_equal(sscanf(buf, "RELOADING=1\nMONOTONIC_USEC=%lld%n", &t, &n), 1);
        assert_int_equal(buf[n], 0);
        assert_true(t >= before && t <= after);
}

static void test_status_datagram(void **state) {
        listener *l = *state;
        char buf[4096];
        notify_figures f = {
                .referrals_decided = 1234,
                .duplicates = 3,
                .dead_letters = 2,
                .db_known = true,
                .db_age_s = 12,
                .cases_open = 56,
                .outbox_backlog = 0,
                .alerts_raised = 7,
                .partitions_assigned = 4,
                .state = "running",
                .last_error = "PostgreSQL: connection refused",
        };
        notify_status(&f);
        assert_string_equal(receive(l, buf, sizeof buf),
                            "STATUS=running; since start: 1234 decided, 3 duplicates, 2 dead letters, 7 alerts; "
                            "4 partitions; database 12 s ago: 56 cases open, outbox 0; last error: PostgreSQL: "
                            "connection refused");
}

/* A newline in free text would start a second assignment of the protocol. */
static void test_status_cannot_inject_assignments(void **state) {
        listener *l = *state;
        char buf[4096];
        notify_figures f = {.state = "running\nREADY=1", .last_error = "bad\nSTOPPING=1\r\x01"};
        notify_status(&f);
        receive(l, buf, sizeof buf);
        assert_null(strchr(buf, '\n'));
        assert_null(strchr(buf, '\r'));
        assert_int_equal(strncmp(buf, "STATUS=running READY=1; ", 24), 0);
        assert_non_null(strstr(buf, "; last error: bad STOPPING=1  "));
}

static void test_format_status_wording(void **state) {
        (void)state;
        char buf[512];
        notify_figures f = {.referrals_decided = 1, .duplicates = 1, .dead_letters = 1, .cases_open = 1,
                            .outbox_backlog = 12, .alerts_raised = 1, .partitions_assigned = 1, .db_known = true};
        assert_string_equal(notify_format_status(&f, buf, sizeof buf),
                            "running; since start: 1 decided, 1 duplicate, 1 dead letter, 1 alert; 1 partition; "
                            "database 0 s ago: 1 case open, outbox 12");
        /* Before the jobs have read the database, no "0 cases open" that is not so. */
        f = (notify_figures){.state = "PostgreSQL unavailable, partitions paused", .last_error = ""};
        assert_string_equal(notify_format_status(&f, buf, sizeof buf),
                            "PostgreSQL unavailable, partitions paused; since start: 0 decided, 0 duplicates, "
                            "0 dead letters, 0 alerts; 0 partitions; database figures not read yet");
        f.referrals_decided = UINT64_MAX;
        assert_non_null(strstr(notify_format_status(&f, buf, sizeof buf), ": 18446744073709551615 decided,"));
}

static void test_format_status_truncates_safely(void **state) {
        (void)state;
        notify_figures f = {.referrals_decided = 99999, .last_error = "a long error message that does not fit"};
        char full[512];
        notify_format_status(&f, full, sizeof full);
        for (size_t size = 1; size < strlen(full) + 3; size++) {
                char buf[600];
                memset(buf, 'X', sizeof buf);
                assert_ptr_equal(notify_format_status(&f, buf, size), buf);
                size_t n = strlen(buf);
                assert_true(n < size);
                assert_int_equal(strncmp(buf, full, n), 0);   /* a prefix of the whole line */
                assert_int_equal(buf[size], 'X');              /* nothing written past size */
        }
        char z = 'Z';
        notify_format_status(&f, &z, 0);
        assert_int_equal(z, 'Z');
}

static void test_no_socket_is_a_no_op(void **state) {
        listener *l = *state;
        unsetenv("NOTIFY_SOCKET");
        notify_ready();
        notify_status(&(notify_figures){.state = "x"});
        assert_true(nothing_pending(l));
        setenv("NOTIFY_SOCKET", l->path, 1);
}

static void test_watchdog_usec(void **state) {
        (void)state;
        char pid[32];
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        assert_int_equal(notify_watchdog_usec(), 0);
        setenv("WATCHDOG_USEC", "30000000", 1);
        assert_int_equal(notify_watchdog_usec(), 30 * USEC_PER_SEC);
        snprintf(pid, sizeof pid, "%d", (int)getpid());
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(notify_watchdog_usec(), 30 * USEC_PER_SEC);
        /* Meant for another process (e.g. the ExecStartPre one): not us. */
        snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
        setenv("WATCHDOG_PID", pid, 1);
        assert_int_equal(notify_watchdog_usec(), 0);
        unsetenv("WATCHDOG_PID");
        setenv("WATCHDOG_USEC", "nonsense", 1);
        assert_int_equal(notify_watchdog_usec(), 0);
        unsetenv("WATCHDOG_USEC");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_ready_stopping_watchdog, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reloading_carries_monotonic_time, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_datagram, setup, teardown),
                cmocka_unit_test_setup_teardown(test_status_cannot_inject_assignments, setup, teardown),
                cmocka_unit_test(test_format_status_wording),
                cmocka_unit_test(test_format_status_truncates_safely),
                cmocka_unit_test_setup_teardown(test_no_socket_is_a_no_op, setup, teardown),
                cmocka_unit_test(test_watchdog_usec),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
