/* log.c: the stderr line (captured), the journald native protocol (a socket
 * of the test's own at /run/systemd/journal/socket inside a private mount
 * namespace, when the test may create one), and a real journald when the
 * machine runs one. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "log.h"

/* ---- stderr capture ---- */

typedef struct capture {
        int saved;
        FILE *file;
} capture;

static void capture_begin(capture *c) {
        fflush(stderr);
        c->file = tmpfile();
        assert_non_null(c->file);
        c->saved = dup(STDERR_FILENO);
        assert_true(c->saved >= 0);
        assert_true(dup2(fileno(c->file), STDERR_FILENO) >= 0);
}

/* Returns what was written to stderr since capture_begin (static buffer). */
static const char *capture_end(capture *c) {
        static char buf[16384];
        fflush(stderr);
        assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
        close(c->saved);
        rewind(c->file);
        size_t n = fread(buf, 1, sizeof buf - 1, c->file);
        buf[n] = 0;
        fclose(c->file);
        return buf;
}

static void test_stderr_line_has_message_and_fields(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        capture_begin(&c);
        int r = log_struct(LOG_INFO, MSGID_DECIDED, "REFERRAL_ID=%s", "R-1", "CASE_ID=%s", "c0ffee", "PARTITION=%d", 3,
                           "MESSAGE=Referral %s decided: %s", "R-1", "ELIGIBLE", "OFFSET=%lld", 42LL, NULL);
        const char *out = capture_end(&c);
        assert_int_equal(r, 0);
        assert_string_equal(out, "info Referral R-1 decided: ELIGIBLE REFERRAL_ID=R-1 CASE_ID=c0ffee PARTITION=3 "
                                 "OFFSET=42\n");
}

/* Each field's arguments are skipped by type, so mixed types line up. */
static void test_mixed_argument_types(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
        capture_begin(&c);
        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "A=%lld", -5LL, "B=%.2f", 1.5, "C=%zu", (size_t)7, "D=%*d", 4, 42,
                   "E=%c%hhd", 'x', (signed char)9, "F=%lu/%s", 8UL, "end", "G=%%", "H=%Lf", (long double)2.0,
                   "MESSAGE=%s", "mixed", NULL);
        const char *out = capture_end(&c);
        assert_string_equal(out, "warning mixed A=-5 B=1.50 C=7 D=\"  42\" E=x9 F=8/end G=% H=2.000000\n");
}

static void test_max_priority(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        assert_int_equal(log_get_max_priority(), LOG_NOTICE);
        capture_begin(&c);
        log_info("not shown");
        log_debug("not shown either");
        log_struct(LOG_INFO, MSGID_DECIDED, "MESSAGE=hidden", NULL);
        log_notice("shown %d", 1);
        log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "MESSAGE=also shown", NULL);
        const char *out = capture_end(&c);
        assert_string_equal(out, "notice shown 1\nerr also shown\n");

        log_setup(LOG_TARGET_STDERR, LOG_DEBUG);
        capture_begin(&c);
        log_debug("now shown");
        out = capture_end(&c);
        assert_string_equal(out, "debug now shown\n");
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
}

static void test_errno_formatting_and_return(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        capture_begin(&c);
        errno = EPERM;
        int r1 = log_error_errno(-ENOENT, "open %s: %m", "/x");
        int saved = errno;
        int r2 = log_warning_errno(EIO, "write: %m");
        int r3 = log_info("plain");
        const char *out = capture_end(&c);
        assert_int_equal(r1, -ENOENT);
        assert_int_equal(r2, -EIO);
        assert_int_equal(r3, 0);
        assert_int_equal(saved, EPERM); /* logging does not clobber errno */
        assert_string_equal(out, "err open /x: No such file or directory ERRNO=2\n"
                                 "warning write: Input/output error ERRNO=5\n"
                                 "info plain\n");
        /* Filtered out, it still returns the error. */
        log_setup(LOG_TARGET_STDERR, LOG_ERR);
        assert_int_equal(log_warning_errno(-EAGAIN, "x"), -EAGAIN);
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
}

/* One event, one physical line: values cannot forge another line. */
static void test_escaping_and_quoting(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        capture_begin(&c);
        log_struct(LOG_INFO, MSGID_DEAD_LETTER, "REASON=%s", "bad\nerr forged line", "EMPTY=", "QUOTE=%s", "a\"b",
                   "MESSAGE=two\nlines\tand\x01", NULL);
        const char *out = capture_end(&c);
        assert_string_equal(out,
                            "info two\\nlines\\tand\\x01 REASON=\"bad\\nerr forged line\" EMPTY=\"\" QUOTE=\"a\\\"b\"\n");
}

static void test_invalid_field_names_dropped(void **state) {
        (void)state;
        capture c;
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        capture_begin(&c);
        log_struct(LOG_INFO, MSGID_CONFIG, "lower=1", "_TRUSTED=1", "NOEQUALS", "9LEAD=1", "OK_1=yes",
                   "MESSAGE=m", NULL);
        log_struct(LOG_INFO, MSGID_PURGE, "CASES=%u", 2u, NULL); /* MESSAGE forgotten */
        const char *out = capture_end(&c);
        assert_string_equal(out, "info m OK_1=yes\ninfo PURGE CASES=2\n");
}

static void test_msgid_catalog(void **state) {
        (void)state;
        assert_string_equal(log_msgid_string(MSGID_NONE), "");
        assert_string_equal(log_msgid_name(MSGID_NONE), "");
        assert_string_equal(log_msgid_string(_MSGID_MAX), "");
        assert_string_equal(log_msgid_name(MSGID_DECIDED), "DECIDED");
        assert_string_equal(log_msgid_name(MSGID_EMBEDDED_KAFKA), "EMBEDDED_KAFKA");
        /* Fixed values: an interface for journalctl MESSAGE_ID= and alerting. */
        assert_string_equal(log_msgid_string(MSGID_STARTED), "8d35574769b44a59ab1a44c996471184");
        assert_string_equal(log_msgid_string(MSGID_BATCH_FENCED), "3c1b000b4c954deb9eb1d7deb4a094a4");
        for (int i = MSGID_NONE + 1; i < _MSGID_MAX; i++) {
                const char *a = log_msgid_string(i);
                assert_int_equal(strlen(a), 32);
                assert_int_equal(strspn(a, "0123456789abcdef"), 32);
                assert_true(strlen(log_msgid_name(i)) > 0);
                for (int j = i + 1; j < _MSGID_MAX; j++) {
                        assert_string_not_equal(a, log_msgid_string(j));
                        assert_string_not_equal(log_msgid_name(i), log_msgid_name(j));
                }
        }
}

/* AUTO: stderr only talks to journald when JOURNAL_STREAM names our stderr. */
static void test_auto_without_journal_stream(void **state) {
        (void)state;
        capture c;
        unsetenv("JOURNAL_STREAM");
        log_setup(LOG_TARGET_AUTO, LOG_INFO);
        capture_begin(&c);
        log_info("to stderr");
        const char *out = capture_end(&c);
        assert_string_equal(out, "info to stderr\n");
        setenv("JOURNAL_STREAM", "1:2", 1); /* someone else's stream */
        log_setup(LOG_TARGET_AUTO, LOG_INFO);
        capture_begin(&c);
        log_info("still stderr");
        out = capture_end(&c);
        assert_string_equal(out, "info still stderr\n");
        unsetenv("JOURNAL_STREAM");
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
}

/* ---- the journald native protocol, on a socket of our own ---- */

/* Fields of one datagram (journald's native protocol: "NAME=value\n", or
 * "NAME\n" + 64-bit little-endian length + value + "\n" for values with a
 * newline). Returns the value of name (static buffer) or NULL; *count is how
 * often name occurs. */
static const char *datagram_field(const char *d, size_t n, const char *name, int *count) {
        static char value[4096];
        const char *found = NULL;
        size_t nl = strlen(name);
        *count = 0;
        for (size_t i = 0; i < n;) {
                const char *line = d + i, *end = memchr(line, '\n', n - i);
                assert_non_null(end);
                const char *eq = memchr(line, '=', (size_t)(end - line));
                const char *v;
                size_t vlen, next;
                if (eq) {
                        v = eq + 1;
                        vlen = (size_t)(end - v);
                        next = (size_t)(end - d) + 1;
                } else {
                        uint64_t le = 0;
                        memcpy(&le, end + 1, 8);
                        v = end + 9;
                        vlen = (size_t)le;
                        next = (size_t)(v - d) + vlen + 1;
                        eq = end;
                }
                if ((size_t)(eq - line) == nl && memcmp(line, name, nl) == 0) {
                        (*count)++;
                        assert_true(vlen < sizeof value);
                        memcpy(value, v, vlen);
                        value[vlen] = 0;
                        found = value;
                }
                i = next;
        }
        return found;
}

/* The child (in its own mount namespace, with a tmpfs on /run) binds the
 * journal socket, logs, and forwards each datagram to the parent through a
 * pipe (length, then bytes). Exit 77: namespaces not allowed here. */
static int fake_journal_child(int out) {
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                return 77;
        if (mkdir("/run/systemd", 0755) < 0 || mkdir("/run/systemd/journal", 0755) < 0)
                return 1;
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX, .sun_path = "/run/systemd/journal/socket"};
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
                return 1;
        struct timeval tv = {.tv_sec = 2};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

        /* 1: an explicit journal target; 2: AUTO with JOURNAL_STREAM naming our stderr. */
        log_setup(LOG_TARGET_JOURNAL, LOG_INFO);
        log_struct(LOG_NOTICE, MSGID_DECIDED, "REFERRAL_ID=%s", "R-9", "PARTITION=%d", 2,
                   "MESSAGE=Referral %s decided\nsecond line", "R-9", NULL);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        struct stat st;
        char js[64];
        if (null < 0 || dup2(null, STDERR_FILENO) < 0 || fstat(STDERR_FILENO, &st) < 0)
                return 1;
        snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", js, 1);
        log_setup(LOG_TARGET_AUTO, LOG_INFO);
        log_error_errno(-EACCES, "auto %m");

        for (int i = 0; i < 2; i++) {
                static char buf[65536];
                ssize_t n = recv(fd, buf, sizeof buf, 0);
                if (n <= 0)
                        return 2;
                uint32_t len = (uint32_t)n;
                if (write(out, &len, sizeof len) != sizeof len || write(out, buf, len) != (ssize_t)len)
                        return 1;
        }
        return 0;
}

static size_t read_datagram(int fd, char *buf, size_t size) {
        uint32_t len = 0;
        assert_int_equal(read(fd, &len, sizeof len), sizeof len);
        assert_true(len < size);
        size_t got = 0;
        while (got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                assert_true(n > 0);
                got += (size_t)n;
        }
        buf[len] = 0;
        return len;
}

static void test_journal_native_protocol(void **state) {
        (void)state;
        int p[2];
        assert_int_equal(pipe(p), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                _exit(fake_journal_child(p[1]));
        }
        close(p[1]);
        static char d1[65536], d2[65536];
        int status;
        /* Read only once the child is done: it exits 77 before writing when not allowed. */
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                close(p[0]);
                /* tests/run: a "[machine]" reason is a skip CI accepts. */
                printf("SKIP: [machine] no user and network namespaces for a fake journal socket\n");
                skip();
        }
        assert_int_equal(WEXITSTATUS(status), 0);
        size_t n1 = read_datagram(p[0], d1, sizeof d1), n2 = read_datagram(p[0], d2, sizeof d2);
        close(p[0]);

        int count;
        assert_string_equal(datagram_field(d1, n1, "PRIORITY", &count), "5");
        assert_string_equal(datagram_field(d1, n1, "MESSAGE_ID", &count), log_msgid_string(MSGID_DECIDED));
        assert_string_equal(datagram_field(d1, n1, "SYSLOG_IDENTIFIER", &count), "allvarsd");
        assert_string_equal(datagram_field(d1, n1, "REFERRAL_ID", &count), "R-9");
        assert_string_equal(datagram_field(d1, n1, "PARTITION", &count), "2");
        assert_string_equal(datagram_field(d1, n1, "MESSAGE", &count), "Referral R-9 decided\nsecond line");
        assert_string_equal(datagram_field(d1, n1, "CODE_FUNC", &count), "fake_journal_child");
        const char *file = datagram_field(d1, n1, "CODE_FILE", &count);
        assert_int_equal(count, 1); /* ours, not libsystemd's own location as well */
        assert_non_null(strstr(file, "test-log.c"));
        assert_true(atoi(datagram_field(d1, n1, "CODE_LINE", &count)) > 0);

        assert_string_equal(datagram_field(d2, n2, "PRIORITY", &count), "3");
        assert_string_equal(datagram_field(d2, n2, "MESSAGE", &count), "auto Permission denied");
        assert_string_equal(datagram_field(d2, n2, "ERRNO", &count), "13");
        assert_null(datagram_field(d2, n2, "MESSAGE_ID", &count)); /* plain messages have none */
}

/* Look for the entry with journalctl (export format) for up to 5 s; 0 when
 * found with our fields, 3 when not, 77 when journalctl cannot read here. */
static int journal_entry_check(const char *token) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "journalctl -q --no-pager -o export ALLVARSD_TEST=%s 2>/dev/null", token);
        for (int i = 0; i < 50; i++) {
                static char out[65536];
                FILE *f = popen(cmd, "r");
                if (!f)
                        return 77;
                size_t n = fread(out, 1, sizeof out - 1, f);
                out[n] = 0;
                int rc = pclose(f);
                if (i == 0 && n == 0 && !(WIFEXITED(rc) && WEXITSTATUS(rc) == 0))
                        return 77; /* no permission to read the journal, or no journal */
                if (strstr(out, "MESSAGE_ID=8d35574769b44a59ab1a44c996471184\n") &&
                    strstr(out, "SYSLOG_IDENTIFIER=allvarsd\n") && strstr(out, "REFERRAL_ID=R-7\n") &&
                    strstr(out, "_TRANSPORT=journal\n") && strstr(out, "PRIORITY=6\n") &&
                    strstr(out, "CODE_FUNC=journal_log_and_check\n"))
                        return 0;
                usleep(100 * 1000);
        }
        return 3;
}

static int journal_log_and_check(void) {
        char token[64];
        snprintf(token, sizeof token, "%d%ld", (int)getpid(), (long)time(NULL));
        log_setup(LOG_TARGET_JOURNAL, LOG_INFO);
        log_struct(LOG_INFO, MSGID_STARTED, "ALLVARSD_TEST=%s", token, "REFERRAL_ID=R-7",
                   "MESSAGE=test-log %s", token, NULL);
        log_setup(LOG_TARGET_STDERR, LOG_INFO);
        return journal_entry_check(token);
}

/* No journald on this machine (a container, CI): start systemd-journald
 * itself in a private mount namespace with tmpfs on /run and /var/log, so
 * nothing of the host is touched. 77 when that is not possible. */
static int private_journald_child(void) {
        static const char journald[] = "/lib/systemd/systemd-journald";
        if (access(journald, X_OK) < 0 || access("/usr/bin/journalctl", X_OK) < 0)
                return 77;
        if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 ||
            mount("tmpfs", "/var/log", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                return 77;
        mkdir("/run/systemd", 0755);
        mkdir("/run/systemd/journal", 0755);
        pid_t jd = fork();
        if (jd < 0)
                return 77;
        if (jd == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
                dup2(null, STDERR_FILENO);
                setenv("SYSTEMD_LOG_TARGET", "console", 1); /* its own messages to /dev/null, not kmsg */
                execl(journald, journald, (char *)NULL);
                _exit(127);
        }
        int r = 77;
        for (int i = 0; i < 100; i++) {
                if (access("/run/systemd/journal/socket", W_OK) == 0) {
                        r = journal_log_and_check();
                        break;
                }
                usleep(50 * 1000);
        }
        kill(jd, SIGTERM);
        waitpid(jd, NULL, 0);
        return r;
}

/* A real journald: the machine's own when it runs one, else a private one. */
static void test_real_journald(void **state) {
        (void)state;
        int r;
        if (access("/run/systemd/journal/socket", W_OK) == 0 && access("/usr/bin/journalctl", X_OK) == 0) {
                r = journal_log_and_check();
        } else {
                fflush(NULL);
                pid_t pid = fork();
                assert_true(pid >= 0);
                if (pid == 0)
                        _exit(private_journald_child());
                int status;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status));
                r = WEXITSTATUS(status);
        }
        if (r == 77) {
                printf("SKIP: [machine] no private journald here (namespaces or journalctl not allowed)\n");
                skip();
        }
        if (r != 0)
                fail_msg("the journal entry did not appear with its fields (%d)", r);
}

/* ---- allvarsd(8) lists the catalog ---- */

static void test_man_page_lists_catalog(void **state) {
        (void)state;
        char path[PATH_MAX];
        char *page = harness_read_file(harness_repo_path("deploy/allvarsd.8", path, sizeof path));
        assert_non_null(page);
        for (int i = MSGID_NONE + 1; i < _MSGID_MAX; i++) {
                char line[128];
                snprintf(line, sizeof line, "\n.TP\n\\fB%s\\fR %s\n", log_msgid_name(i), log_msgid_string(i));
                if (!strstr(page, line))
                        fail_msg("%s does not list %s %s", path, log_msgid_name(i), log_msgid_string(i));
        }
        free(page);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stderr_line_has_message_and_fields),
                cmocka_unit_test(test_mixed_argument_types),
                cmocka_unit_test(test_max_priority),
                cmocka_unit_test(test_errno_formatting_and_return),
                cmocka_unit_test(test_escaping_and_quoting),
                cmocka_unit_test(test_invalid_field_names_dropped),
                cmocka_unit_test(test_msgid_catalog),
                cmocka_unit_test(test_auto_without_journal_stream),
                cmocka_unit_test(test_journal_native_protocol),
                cmocka_unit_test(test_real_journald),
                cmocka_unit_test(test_man_page_lists_catalog),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
