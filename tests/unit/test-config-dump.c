/* config*.c: the restart record, the dump (secrets masked, read back), the
 * transport's TLS rules, loading a file, and that allvarsd.conf(5) and the
 * example stay in step with the table of keys. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_fixture.h"

static char *restart_record(const config *c) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        config_restart_write(c, f);
        fclose(f);
        return out;
}

/* --check-reload: the file parsed without reading credentials, compared with
 * what the running daemon (which read them) wrote at start. */
static void test_restart_record(void **state) {
        (void)state;
        char dir[128], path[256], buf[512], text[1024];
        snprintf(dir, sizeof dir, "%s/creds-reload", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/pepper", dir);
        write_file(path, "ppppppppppppppppppppppppppppppppppppppppp", 40);
        snprintf(path, sizeof path, "%s/db", dir);
        write_file(path, "the-db-password\n", 16);
        const char *running_text = "database.conninfo = host=db dbname=allvarsd user=allvarsd_runtime"
                                   " sslmode=verify-full\n"
                                   "database.password = @credential:db\npepper = @credential:pepper\n"
                                   "kafka.bootstrap.servers = k1:9092\nkafka.security.protocol = SASL_SSL\n"
                                   "kafka.sasl.password = @credential:kp\n"
                                   "topics.alerts = a1\nprofile.name = stockholm-2019\n";
        /* The daemon: credentials read. */
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        snprintf(path, sizeof path, "%s/kp", dir);
        write_file(path, "kafka-secret", 12);
        config *running = NULL;
        assert_int_equal(config_parse_string("t.conf", running_text, &running, err, sizeof err), 0);
        char *record = restart_record(running);
        /* References, never contents; reloadable keys left out. */
        assert_null(strstr(record, "the-db-password"));
        assert_null(strstr(record, "kafka-secret"));
        assert_null(strstr(record, "pppp"));
        assert_non_null(strstr(record, "database.password = @credential:db\n"));
        assert_non_null(strstr(record, "pepper = @credential:pepper\n"));
        assert_non_null(strstr(record, "kafka.sasl.password = @credential:kp\n"));
        assert_non_null(strstr(record, "topics.alerts = a1\n"));
        assert_null(strstr(record, "profile.name"));
        unsetenv("CREDENTIALS_DIRECTORY");

        /* The check: no credentials directory at all, same file: nothing differs. */
        snprintf(path, sizeof path, "%s/t.conf", tmpdir);
        write_file(path, running_text, strlen(running_text));
        config *c = NULL;
        assert_int_equal(config_load(path, &c, err, sizeof err), -EINVAL);
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), 0);
        assert_int_equal(config_restart_compare(c, record, buf, sizeof buf), 0);
        assert_string_equal(buf, "");
        config_free(c);

        /* A reloadable change passes; restart-only changes are named, added and removed keys too. */
        snprintf(text, sizeof text, "%s%s", running_text, "profile.name = ds-2024-30\nbatch.max_messages = 7\n");
        write_file(path, text, strlen(text));
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), 0);
        assert_int_equal(config_restart_compare(c, record, buf, sizeof buf), 0);
        config_free(c);
        snprintf(text, sizeof text, "%s%s", running_text,
                 "topics.alerts = a2\npepper = @credential:pepper2\nkafka.linger.ms = 5\nbatch.connections = 3\n");
        write_file(path, text, strlen(text));
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), 0);
        assert_int_equal(config_restart_compare(c, record, buf, sizeof buf), 1);
        assert_string_equal(buf, "topics.alerts, pepper, batch.connections, kafka.linger.ms");
        config_free(c);
        const char *no_sasl = "database.conninfo = host=db dbname=allvarsd user=allvarsd_runtime sslmode=verify-full\n"
                              "database.password = @credential:db\npepper = @credential:pepper\n"
                              "kafka.bootstrap.servers = k1:9092\nkafka.security.protocol = SASL_SSL\n"
                              "topics.alerts = a1\n";
        write_file(path, no_sasl, strlen(no_sasl));
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), 0);
        assert_int_equal(config_restart_compare(c, record, buf, sizeof buf), 1);
        assert_string_equal(buf, "kafka.sasl.password");
        config_free(c);

        /* Still checked without credentials: a broken value, a missing required key. */
        snprintf(text, sizeof text, "%s%s", running_text, "profile.name = nope\n");
        write_file(path, text, strlen(text));
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "unknown profile \"nope\""));
        const char *no_pepper = "database.conninfo = host=db\n";
        write_file(path, no_pepper, strlen(no_pepper));
        assert_int_equal(config_load_flags(path, CONFIG_NO_CREDENTIALS, &c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "pepper is required"));
        free(record);
        config_free(running);
}

static char *dump(const config *c) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        assert_non_null(f);
        config_dump(c, f);
        fclose(f);
        return out;
}

static void test_dump_masks_secrets(void **state) {
        (void)state;
        char dir[128], path[256];
        snprintf(dir, sizeof dir, "%s/creds2", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/pw", dir);
        write_file(path, "hunter2-db", 10);
        snprintf(path, sizeof path, "%s/kpw", dir);
        write_file(path, "hunter2-kafka", 13);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        config *c = parse("database.conninfo = host=db password = 'hunter2 x\\'y' dbname=a\n"
                          "database.password = @credential:pw\n"
                          "kafka.sasl.password = @credential:kpw\n"
                          "kafka.ssl.key.password = hunter2-key\n"
                          "kafka.bootstrap.servers = k1:9092\n"
                          "district.hisingen.profile = ds-2024-30\n");
        unsetenv("CREDENTIALS_DIRECTORY");
        assert_non_null(c);
        char *out = dump(c);
        assert_null(strstr(out, "hunter2"));
        assert_non_null(strstr(out, "\ndatabase.conninfo = host=db password = (secret) dbname=a\n"));
        assert_non_null(strstr(out, "\ndatabase.password = (secret)\n"));
        assert_non_null(strstr(out, "\npepper = (secret)\n"));
        assert_non_null(strstr(out, "\nkafka.sasl.password = (secret)\n"));
        assert_non_null(strstr(out, "\nkafka.ssl.key.password = (secret)\n"));
        assert_non_null(strstr(out, "\nkafka.bootstrap.servers = k1:9092\n"));
        assert_non_null(strstr(out, "\ndistrict.hisingen.profile = ds-2024-30\n"));
        assert_non_null(strstr(out, "# effective default profile: name=goteborg-motion-2024;"));
        /* The pepper's bytes do not appear either. */
        assert_null(memmem(out, strlen(out), c->pepper + 6, 8));
        free(out);
        config_free(c);

        static const struct {
                const char *in, *out;
        } uris[] = {
                {"postgresql://allvarsd:hunter2@db:5432/allvarsd?sslmode=verify-full",
                 "postgresql://allvarsd:(secret)@db:5432/allvarsd?sslmode=verify-full"},
                {"postgres://db/allvarsd?user=a&password=hunter2&sslmode=require",
                 "postgres://db/allvarsd?user=a&password=(secret)&sslmode=require"},
                {"postgresql://u@db/x?password=hunter2", "postgresql://u@db/x?password=(secret)"},
                {"host=db password=hunter2", "host=db password=(secret)"},
                {"password=hunter2 host=db passwordx=1", "password=(secret) host=db passwordx=1"},
                /* libpq reads a backslash-escaped blank as part of the value */
                {"host=db password=hunter2\\ more x=1", "host=db password=(secret) x=1"},
                /* and user info up to an '@' before any '/', '?' included */
                {"postgresql://u:hunter2?x@db/a", "postgresql://u:(secret)@db/a"},
                {"host=db password='hunter2", "(secret: not a connection string libpq can read)"},
                {"host=db 'x password=hunter2", "(secret: not a connection string libpq can read)"},
                {"postgres://db/x?pass%77ord=hunter2", "postgres://db/x?password=(secret)"},
        };
        for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++) {
                char line[512];
                snprintf(line, sizeof line, "database.conninfo = %s\n", uris[i].in);
                c = parse(line);
                assert_non_null(c);
                out = dump(c);
                snprintf(line, sizeof line, "\ndatabase.conninfo = %s\n", uris[i].out);
                if (!strstr(out, line))
                        fail_msg("conninfo %s dumped as:\n%s", uris[i].in, out);
                assert_null(strstr(out, "hunter2"));
                free(out);
                config_free(c);
        }
}

/* What --check-config prints reads back as the same configuration. */
static void test_dump_reads_back(void **state) {
        (void)state;
        config *c = parse("clock.file = \" /odd \\\"path\\\"\"\nkafka.client.rack = \"rack 1\"\nbatch.max_wait_ms = 0\n"
                          "feedback.level = statutory\nlog.target = stderr\nkafka.embedded = yes\n"
                          "limits.max_message_bytes = 4K\n");
        assert_non_null(c);
        char *out = dump(c);
        /* Secrets and comments do not read back; put the pepper back in. */
        char *text = NULL;
        assert_true(asprintf(&text, "%s\npepper = @file:%s\n", out, pepper_path) > 0);
        char *p = strstr(text, "\npepper = ");
        assert_non_null(p);
        p[1] = '#';
        while ((p = strstr(text, "= (secret)")))
                memcpy(p, "= \"\"      ", 10);
        config *d = NULL;
        if (config_parse_string("dump", text, &d, err, sizeof err) < 0)
                fail_msg("%s\n%s", err, text);
        char *out2 = dump(d);
        assert_string_equal(out, out2);
        assert_string_equal(d->clock_file, " /odd \"path\"");
        assert_int_equal(d->max_message_bytes, 4096);
        free(out);
        free(out2);
        free(text);
        config_free(c);
        config_free(d);
}

/* config_check_transport on "<conninfo>\n<extra>": 0, or -EPERM with want in err. */
static void transport(const char *conninfo, const char *extra, const char *want) {
        char *text = NULL;
        assert_true(asprintf(&text, "database.conninfo = %s\npepper = @file:%s\n%s", conninfo, pepper_path, extra) > 0);
        config *c = NULL;
        if (config_parse_string("t.conf", text, &c, err, sizeof err) < 0)
                fail_msg("%s\n%s", err, text);
        free(text);
        int r = config_check_transport(c, err, sizeof err);
        if (!want && r < 0)
                fail_msg("refused: %s (%s / %s)", err, conninfo, extra);
        if (want) {
                if (r != -EPERM)
                        fail_msg("accepted, expected a refusal about %s (%s / %s)", want, conninfo, extra);
                if (!strstr(err, want) || !strstr(err, "insecure.allow_plaintext"))
                        fail_msg("\"%s\" does not name %s and the key that allows it", err, want);
        }
        config_free(c);
}

#define REMOTE_KAFKA "kafka.bootstrap.servers = kafka1.example.org:9093,127.0.0.1:9092\n"
#define KAFKA_TLS REMOTE_KAFKA "kafka.security.protocol = SASL_SSL\n"

/* TLS enforced: each refusal, what is local, and the explicit override. */
static void test_transport_tls_enforced(void **state) {
        (void)state;
        /* PostgreSQL on another machine: verify-full only. */
        transport("host=db.example.org dbname=a", KAFKA_TLS, "sslmode=verify-full");
        transport("host=db.example.org dbname=a sslmode=require", KAFKA_TLS, "not require");
        transport("postgresql://db.example.org/a?sslmode=verify-ca", KAFKA_TLS, "not verify-ca");
        transport("hostaddr=10.1.2.3 dbname=a sslmode=prefer", KAFKA_TLS, "sslmode=verify-full");
        transport("host=/run/postgresql,db.example.org dbname=a", KAFKA_TLS, "sslmode=verify-full");
        transport("host=db.example.org dbname=a sslmode=verify-full", KAFKA_TLS, NULL);
        transport("postgresql://db.example.org/a?sslmode=verify-full", KAFKA_TLS, NULL);
        /* Local: a unix socket, loopback addresses, localhost. */
        transport("host=/run/postgresql dbname=a", "", NULL);
        transport("dbname=a", "", NULL);
        transport("host=127.0.0.1 dbname=a", "", NULL);
        transport("host=localhost,::1 dbname=a", "", NULL);
        transport("postgresql://127.0.0.1:5432/a", "", NULL);
        transport("host=127.0.0.1.example.org dbname=a", "", "sslmode=verify-full");

        /* Kafka brokers on other machines: SSL or SASL_SSL. */
        const char *db = "host=/run/postgresql dbname=a";
        transport(db, REMOTE_KAFKA, "security.protocol");
        transport(db, REMOTE_KAFKA "kafka.security.protocol = SASL_PLAINTEXT\n", "not SASL_PLAINTEXT");
        transport(db, REMOTE_KAFKA "kafka.security.protocol = plaintext\n", "not plaintext");
        transport(db, REMOTE_KAFKA "kafka.security.protocol = ssl\n", NULL);
        transport(db, "kafka.bootstrap.servers = 127.0.0.1:9092,localhost:9093,[::1]:9094\n", NULL);
        transport(db, "kafka.bootstrap.servers = PLAINTEXT://broker.example.org:9092\n", "security.protocol");
        transport(db, "kafka.bootstrap.servers = kafka1.example.org:9093\nkafka.embedded = true\n", NULL);
        /* Turning verification off is refused wherever the brokers are. */
        transport(db, KAFKA_TLS "kafka.enable.ssl.certificate.verification = false\n", "certificates");
        transport(db, "kafka.enable.ssl.certificate.verification = false\n", "certificates");
        transport(db, KAFKA_TLS "kafka.ssl.endpoint.identification.algorithm = none\n", "host names");
        transport(db, KAFKA_TLS "kafka.ssl.endpoint.identification.algorithm = https\n", NULL);

        /* The one explicit key allows each of them. */
        const char *all = REMOTE_KAFKA "kafka.enable.ssl.certificate.verification = false\n"
                                       "kafka.ssl.endpoint.identification.algorithm = none\n"
                                       "insecure.allow_plaintext = true\n";
        transport("host=db.example.org dbname=a sslmode=disable", all, NULL);

        /* A file that breaks the rule does not load (allvarsd, allvarsctl, --check-config). */
        char path[256], text[512];
        config *c = NULL;
        snprintf(path, sizeof path, "%s/plain.conf", tmpdir);
        int n = snprintf(text, sizeof text, BASE "%s", pepper_path, "");
        write_file(path, text, (size_t)n);
        assert_int_equal(config_load(path, &c, err, sizeof err), -EPERM);
        assert_null(c);
        assert_non_null(strstr(err, "sslmode=verify-full"));
        n = snprintf(text, sizeof text, BASE "insecure.allow_plaintext = true\n", pepper_path);
        write_file(path, text, (size_t)n);
        assert_int_equal(config_load(path, &c, err, sizeof err), 0);
        assert_true(c->insecure_allow_plaintext);
        config_free(c);
}

static void test_load_file(void **state) {
        (void)state;
        char path[256], text[512];
        config *c = NULL;
        snprintf(path, sizeof path, "%s/allvarsd.conf", tmpdir);
        int n = snprintf(text, sizeof text, BASE_TLS "relay.batch = 7\n", pepper_path);
        write_file(path, text, (size_t)n);
        assert_int_equal(config_load(path, &c, err, sizeof err), 0);
        assert_string_equal(c->path, path);
        assert_int_equal(c->relay_batch, 7);
        config_free(c);

        n = snprintf(text, sizeof text, BASE "relay.batch = x\n", pepper_path);
        write_file(path, text, (size_t)n);
        assert_int_equal(config_load(path, &c, err, sizeof err), -EINVAL);
        char want[300];
        snprintf(want, sizeof want, "%s:3: relay.batch:", path);
        assert_non_null(strstr(err, want));

        snprintf(path, sizeof path, "%s/absent.conf", tmpdir);
        assert_int_equal(config_load(path, &c, err, sizeof err), -ENOENT);
        assert_non_null(strstr(err, "absent.conf: cannot read: No such file or directory"));
        assert_true(config_load(tmpdir, &c, err, sizeof err) < 0);

        snprintf(path, sizeof path, "%s/nul.conf", tmpdir);
        write_file(path, "log.level = info\0x\n", 19);
        assert_int_equal(config_load(path, &c, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "NUL"));
}

/* ---- the man page and the example against the table ---- */

static char *man_fragment(void) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        config_write_man(f);
        fclose(f);
        return out;
}

#define MAN_BEGIN ".\\\" BEGIN KEYS: generated by config_write_man (tests/unit/test-config.c checks it)\n"
#define MAN_END ".\\\" END KEYS\n"

/* Keys named in the fragment (".B name" after ".TP"), with roff escapes undone. */
static size_t fragment_keys(const char *frag, char keys[][128], size_t max) {
        size_t n = 0;
        for (const char *p = strstr(frag, ".TP\n.B "); p && n < max; p = strstr(p + 1, ".TP\n.B ")) {
                const char *s = p + 7, *e = strchr(s, '\n');
                size_t j = 0;
                for (; s < e && j < 126; s++) {
                        if (strncmp(s, "\\fI", 3) == 0 || strncmp(s, "\\fR", 3) == 0) {
                                keys[n][j++] = s[2] == 'I' ? '<' : '>'; /* placeholders as in the table */
                                s += 2;
                                continue;
                        }
                        if (*s == '\\')
                                continue;
                        keys[n][j++] = *s;
                }
                keys[n][j] = 0;
                n++;
        }
        return n;
}

static void test_man_page_matches_table(void **state) {
        (void)state;
        char *frag = man_fragment();
        char path[PATH_MAX];
        char *page = harness_read_file(harness_repo_path("deploy/allvarsd.conf.5", path, sizeof path));
        assert_non_null(page);
        const char *b = strstr(page, MAN_BEGIN), *e = strstr(page, MAN_END);
        assert_non_null(b);
        assert_non_null(e);
        b += strlen(MAN_BEGIN);
        assert_true(e >= b);
        size_t len = (size_t)(e - b);
        if (len != strlen(frag) || memcmp(b, frag, len) != 0)
                fail_msg("deploy/allvarsd.conf.5 is out of date: paste the output of config_write_man between the "
                         "KEYS markers:\n%s",
                         frag);

        /* Every key the page names is one the parser knows, and the main ones are there. */
        static char keys[128][128];
        size_t n = fragment_keys(frag, keys, 128);
        assert_true(n >= 30);
        for (size_t i = 0; i < n; i++) {
                if (strchr(keys[i], '<'))
                        continue;
                char line[256];
                snprintf(line, sizeof line, "%s = \x01\n", keys[i]);
                config *c = parse(line);
                if (!c && strstr(err, "unknown key"))
                        fail_msg("the man page names %s, which the parser does not know", keys[i]);
                config_free(c);
        }
        /* An unknown key is refused, so the check above can fail. */
        assert_null(parse("not.in.page = \x01\n"));
        assert_non_null(strstr(err, "unknown key"));
        free(page);
        free(frag);
}

/* The example names every key (set or commented out) and loads as it is. */
static void test_example_configuration(void **state) {
        (void)state;
        char *frag = man_fragment();
        char example[PATH_MAX];
        char *text = harness_read_file(harness_repo_path("deploy/allvarsd.conf.example", example, sizeof example));
        assert_non_null(text);
        static char keys[128][128];
        size_t n = fragment_keys(frag, keys, 128);
        for (size_t i = 0; i < n; i++) {
                if (strchr(keys[i], '<'))
                        continue;
                char a[160], b[160];
                snprintf(a, sizeof a, "\n%s =", keys[i]);
                snprintf(b, sizeof b, "\n#%s =", keys[i]);
                if (!strstr(text, a) && !strstr(text, b))
                        fail_msg("%s does not mention %s", example, keys[i]);
        }

        char dir[128], path[256];
        snprintf(dir, sizeof dir, "%s/creds3", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/pepper", dir);
        write_file(path, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", 65);
        snprintf(path, sizeof path, "%s/db-password", dir);
        write_file(path, "x\n", 2);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        config *c = NULL;
        int r = config_load(example, &c, err, sizeof err);
        unsetenv("CREDENTIALS_DIRECTORY");
        if (r < 0)
                fail_msg("%s", err);
        assert_int_equal(c->pepper_len, 64);
        assert_non_null(c->db_password);
        /* The roles of deploy/roles.sql: the daemon's, and allvarsctl's in its own file. */
        assert_non_null(strstr(c->db_conninfo, "user=allvarsd_runtime "));
        /* Deployable as it is: Kafka configured, and the pepper (mode 0600 here) accepted. */
        assert_int_equal(config_check_deployment(c, err, sizeof err), 0);
        config_free(c);
        char ctl_example[PATH_MAX];
        harness_repo_path("deploy/allvarsctl.conf.example", ctl_example, sizeof ctl_example);
        r = config_load_client(ctl_example, &c, err, sizeof err);
        if (r < 0)
                fail_msg("%s", err);
        assert_non_null(strstr(c->db_conninfo, "user=allvarsd_operator "));
        assert_null(c->pepper);
        config_free(c);
        /* As the daemon's file it is incomplete: no pepper. */
        assert_int_equal(config_load(ctl_example, &c, err, sizeof err), -EINVAL);
        char roles[PATH_MAX];
        char *sql = harness_read_file(harness_repo_path("deploy/roles.sql", roles, sizeof roles));
        assert_non_null(sql);
        assert_non_null(strstr(sql, "CREATE ROLE allvarsd_runtime LOGIN"));
        assert_non_null(strstr(sql, "CREATE ROLE allvarsd_operator LOGIN"));
        free(sql);
        free(text);
        free(frag);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_restart_record),
                cmocka_unit_test(test_dump_masks_secrets),
                cmocka_unit_test(test_dump_reads_back),
                cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_transport_tls_enforced),
                cmocka_unit_test(test_man_page_matches_table),
                cmocka_unit_test(test_example_configuration),
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
