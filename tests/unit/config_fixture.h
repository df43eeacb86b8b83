/* What the configuration tests share (test-config.c, test-config-dump.c): a
 * temporary directory with a pepper file (group_setup, group_teardown), the
 * base configuration, and parsing helpers that assert. Include after cmocka.h. */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"

static __attribute__((unused)) char tmpdir[64];
static __attribute__((unused)) char pepper_path[128];   /* 48 random-looking bytes, some NUL */
static __attribute__((unused)) char err[512];

#define BASE "database.conninfo = host=db.example.org dbname=allvarsd user=allvarsd\n" \
             "pepper = @file:%s\n"
/* As a file must be to load: a remote server over verified TLS. */
#define BASE_TLS "database.conninfo = host=db.example.org dbname=allvarsd user=allvarsd sslmode=verify-full\n" \
                 "pepper = @file:%s\n"

static inline void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static inline int group_setup(void **state) {
        (void)state;
        strcpy(tmpdir, "/tmp/test-config-XXXXXX");
        assert_non_null(mkdtemp(tmpdir));
        snprintf(pepper_path, sizeof pepper_path, "%s/pepper", tmpdir);
        uint8_t p[48];
        for (size_t i = 0; i < sizeof p; i++)
                p[i] = (uint8_t)(i * 37 + 11);
        p[5] = 0;
        p[47] = 'x';
        write_file(pepper_path, p, sizeof p);
        unsetenv("CREDENTIALS_DIRECTORY");
        return 0;
}

static inline int group_teardown(void **state) {
        (void)state;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Parse BASE plus extra lines; the config or NULL (err holds why). */
static inline config *parse(const char *extra) {
        char *text = NULL;
        config *c = NULL;
        assert_true(asprintf(&text, BASE "%s", pepper_path, extra) > 0);
        int r = config_parse_string("t.conf", text, &c, err, sizeof err);
        free(text);
        if (r < 0) {
                assert_null(c);
                assert_true(err[0] != 0);
                return NULL;
        }
        assert_non_null(c);
        return c;
}

/* Parse and expect an error containing want. */
static inline void parse_fails(const char *text, const char *want) {
        config *c = NULL;
        int r = config_parse_string("t.conf", text, &c, err, sizeof err);
        if (r >= 0)
                fail_msg("parsed, but expected \"%s\":\n%s", want, text);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        if (!strstr(err, want))
                fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static inline void parse_extra_fails(const char *extra, const char *want) {
        char *text = NULL;
        assert_true(asprintf(&text, BASE "%s", pepper_path, extra) > 0);
        parse_fails(text, want);
        free(text);
}
