/* libFuzzer target: config_parse_string on arbitrary text. Beyond "no crash,
 * no leak, no undefined behaviour", a configuration that parses must dump to
 * text that parses again to the same dump (--check-config output can be used
 * as a configuration), and must need no restart against itself.
 *
 *   make fuzz && build-fuzz/fuzz/fuzz-config tests/fuzz/corpus/config/
 *
 * The seed corpus refers to @credential:pepper and @credential:db-password;
 * LLVMFuzzerInitialize provides them in $TMPDIR/allvarsd-fuzz-config-UID. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char creds[256];

static void write_credential(const char *name, const char *value) {
        char path[300];
        snprintf(path, sizeof path, "%s/%s", creds, name);
        FILE *f = fopen(path, "we");
        if (!f || fputs(value, f) < 0 || fclose(f) != 0)
                abort();
}

/* One fixed directory per user, reused: libFuzzer leaves with _Exit, so a
 * fresh temporary directory per run would never be removed. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void)argc;
        (void)argv;
        const char *tmp = getenv("TMPDIR");
        struct stat st;
        snprintf(creds, sizeof creds, "%s/allvarsd-fuzz-config-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
        if (mkdir(creds, 0700) < 0 && errno != EEXIST)
                abort();
        if (lstat(creds, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != getuid())
                abort();
        write_credential("pepper", "0123456789abcdef0123456789abcdef0123456789abcdef\n");
        write_credential("db-password", "fuzz\n");
        setenv("CREDENTIALS_DIRECTORY", creds, 1);
        return 0;
}

static char *dump(const config *c) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                abort();
        config_dump(c, f);
        fclose(f);
        return out;
}

/* The dump without its comment lines (effective profiles are comments: the
 * overrides that made them are not part of the dump). */
static void strip_comments(char *s) {
        char *out = s;
        for (char *line = s; *line;) {
                char *nl = strchr(line, '\n');
                size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
                if (line[0] != '#') {
                        memmove(out, line, n);
                        out += n;
                }
                line += n;
        }
        *out = 0;
}

/* Secrets are masked in the dump: give them back as references. */
static char *unmask(const char *d) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                abort();
        for (const char *line = d; *line;) {
                const char *nl = strchr(line, '\n');
                size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
                if (strncmp(line, "pepper = ", 9) == 0)
                        fputs("pepper = @credential:pepper\n", f);
                else if (strncmp(line, "database.password = (secret)", 28) == 0)
                        fputs("database.password = @credential:db-password\n", f);
                else
                        fwrite(line, 1, n, f);
                line += n;
        }
        fclose(f);
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = 0;
        /* Keep the fuzzer from making librdkafka load shared objects. */
        if (strstr(text, "plugin") || strstr(text, "interceptor")) {
                free(text);
                return 0;
        }

        config *c = NULL;
        char err[512];
        if (config_parse_string("fuzz", text, &c, err, sizeof err) < 0) {
                if (!err[0] || c)
                        abort(); /* a failure always says why, and returns nothing */
                free(text);
                return 0;
        }

        char restart[512];
        config_restart_needed(c, c, restart, sizeof restart);
        if (restart[0])
                abort();
        (void)config_profile_for(c, "Hisingen");
        (void)config_profile_for(c, "");

        char *d1 = dump(c);
        char *again = unmask(d1);
        config *c2 = NULL;
        if (config_parse_string("dump", again, &c2, err, sizeof err) < 0) {
                fprintf(stderr, "the dump does not parse: %s\n%s\n", err, again);
                abort();
        }
        char *d2 = dump(c2);
        strip_comments(d1);
        strip_comments(d2);
        if (strcmp(d1, d2) != 0) {
                fprintf(stderr, "the dump changed when read back:\n%s\n----\n%s\n", d1, d2);
                abort();
        }
        free(d1);
        free(d2);
        free(again);
        config_free(c2);
        config_free(c);
        free(text);
        return 0;
}
