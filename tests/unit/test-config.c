/* config*.c: the parser, defaults, errors with file and line, secrets from
 * files and credentials, kafka.* pass-through, profiles per district, SIGHUP
 * comparison, the dump, and that allvarsd.conf(5) and the example stay in
 * step with the table of keys. */
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

#include "config.h"
#include "harness.h"

static char tmpdir[64];
static char pepper_path[128];   /* 48 random-looking bytes, some NUL */
static char err[512];

#define BASE "database.conninfo = host=db.example.org dbname=allvarsd user=allvarsd\n" \
             "pepper = @file:%s\n"
/* As a file must be to load: a remote server over verified TLS. */
#define BASE_TLS "database.conninfo = host=db.example.org dbname=allvarsd user=allvarsd sslmode=verify-full\n" \
                 "pepper = @file:%s\n"

static void write_file(const char *path, const void *data, size_t len) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
}

static int group_setup(void **state) {
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

static int group_teardown(void **state) {
        (void)state;
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
        return system(cmd) == 0 ? 0 : -1;
}

/* Parse BASE plus extra lines; the config or NULL (err holds why). */
static config *parse(const char *extra) {
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
static void parse_fails(const char *text, const char *want) {
        config *c = NULL;
        int r = config_parse_string("t.conf", text, &c, err, sizeof err);
        if (r >= 0)
                fail_msg("parsed, but expected \"%s\":\n%s", want, text);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        if (!strstr(err, want))
                fail_msg("error \"%s\" does not contain \"%s\"", err, want);
}

static void parse_extra_fails(const char *extra, const char *want) {
        char *text = NULL;
        assert_true(asprintf(&text, BASE "%s", pepper_path, extra) > 0);
        parse_fails(text, want);
        free(text);
}

static void test_defaults(void **state) {
        (void)state;
        config *c = parse("");
        assert_non_null(c);
        assert_string_equal(c->path, "t.conf");
        assert_false(c->kafka_embedded);
        assert_int_equal(c->n_kafka, 0);
        assert_string_equal(c->group_id, "allvarsd");
        assert_string_equal(c->topic_referrals, "police.referrals.v1");
        assert_string_equal(c->topic_outcomes, "allvarssamtal.outcomes.v1");
        assert_string_equal(c->topic_scheduling, "allvarssamtal.scheduling.v1");
        assert_string_equal(c->topic_feedback, "police.feedback.v1");
        assert_string_equal(c->topic_alerts, "allvarssamtal.alerts.v1");
        assert_string_equal(c->topic_dead_letter, "allvarssamtal.deadletter.v1");
        assert_string_equal(c->db_conninfo, "host=db.example.org dbname=allvarsd user=allvarsd");
        assert_null(c->db_password);
        assert_int_equal(c->pepper_len, 48);
        assert_int_equal(c->pepper[5], 0);
        assert_int_equal(c->pepper[47], 'x');
        assert_string_equal(c->profile.name, "goteborg-motion-2024");
        assert_int_equal(c->profile.min_age, 10);
        assert_int_equal(c->n_districts, 0);
        assert_int_equal(c->feedback_level, FEEDBACK_CONVERSATION);
        assert_false(c->feedback_always);
        assert_int_equal(c->batch_max_messages, 500);
        assert_int_equal(c->batch_max_wait_ms, 20);
        assert_int_equal(c->max_message_bytes, 1048576);
        assert_true(c->relay_enabled);
        assert_int_equal(c->relay_batch, 1000);
        assert_int_equal(c->relay_poll_ms, 500);
        assert_int_equal(c->deadline_watch_interval_s, 30);
        assert_int_equal(c->retention_interval_s, 3600);
        assert_int_equal(c->retention_closed_days, 1825);
        assert_int_equal(c->retention_not_eligible_days, 180);
        assert_string_equal(c->event_source, "urn:allvarsd");
        assert_string_equal(c->log_target, "auto");
        assert_string_equal(c->log_level, "info");
        assert_null(c->clock_file);
        config_free(c);
        config_free(NULL);
}

static void test_syntax(void **state) {
        (void)state;
        config *c = parse("# a comment\n"
                          "\n"
                          "   # indented comment\n"
                          "\tbatch.max_messages\t=\t 100  \r\n"
                          "event.source=urn:x#not-a-comment\n"
                          "feedback.always = YES\n"
                          "feedback.level = statutory\n"
                          "log.level = \"debug\"\n"
                          "clock.file = \"  /tmp/a \\\"b\\\" \\\\ c  \"\n"
                          "kafka.client.rack = a=b\n"
                          "limits.max_message_bytes = 2M\n"
                          "relay.enabled = off\n"
                          "batch.max_messages = 200\n"); /* the last one wins */
        assert_non_null(c);
        assert_int_equal(c->batch_max_messages, 200);
        assert_string_equal(c->event_source, "urn:x#not-a-comment");
        assert_true(c->feedback_always);
        assert_int_equal(c->feedback_level, FEEDBACK_STATUTORY);
        assert_string_equal(c->log_level, "debug");
        assert_string_equal(c->clock_file, "  /tmp/a \"b\" \\ c  ");
        assert_int_equal(c->n_kafka, 1);
        assert_string_equal(c->kafka[0].key, "client.rack");
        assert_string_equal(c->kafka[0].value, "a=b");
        assert_int_equal(c->max_message_bytes, 2 * 1024 * 1024);
        assert_false(c->relay_enabled);
        config_free(c);

        /* An empty value means "not set" for an optional string. */
        c = parse("clock.file =\ndatabase.password = \"\"\n");
        assert_non_null(c);
        assert_null(c->clock_file);
        assert_null(c->db_password);
        config_free(c);
}

static void test_errors_name_file_and_line(void **state) {
        (void)state;
        /* BASE is two lines: the extra ones start at line 3. */
        parse_extra_fails("\n# c\nno.such.key = 1\n", "t.conf:5: unknown key \"no.such.key\"");
        parse_extra_fails("just words\n", "t.conf:3: expected \"key = value\"");
        parse_extra_fails(" = 5\n", "t.conf:3: a key must come before");
        parse_extra_fails("bad key = 5\n", "t.conf:3: \"bad key\" is not a key");
        parse_extra_fails("clock.file = \"open\n", "t.conf:3: clock.file: the closing quote is missing");
        parse_extra_fails("clock.file = \"a\" b\n", "t.conf:3: clock.file: text after the closing quote");
        parse_extra_fails("clock.file = \"a\\q\"\n", "unknown escape");
        parse_extra_fails("batch.max_messages = 0\n", "t.conf:3: batch.max_messages: \"0\" is not a whole number from 1 to 100000");
        parse_extra_fails("batch.max_messages = 100001\n", "from 1 to 100000");
        parse_extra_fails("batch.max_messages = -1\n", "is not a whole number");
        parse_extra_fails("batch.max_messages = 99999999999999999999999\n", "is not a whole number");
        parse_extra_fails("batch.max_messages = 5 # five\n", "is not a whole number");
        parse_extra_fails("batch.max_messages =\n", "is not a whole number");
        parse_extra_fails("limits.max_message_bytes = 1\n", "is not a size from 1024");
        parse_extra_fails("limits.max_message_bytes = 1T\n", "is not a size");
        parse_extra_fails("limits.max_message_bytes = 17179869184G\n", "is not a size");
        parse_extra_fails("relay.enabled = maybe\n", "relay.enabled: \"maybe\" is not a boolean");
        parse_extra_fails("feedback.level = all\n", "feedback.level: \"all\" is not one of: statutory, conversation");
        parse_extra_fails("log.target = syslog\n", "is not one of: auto, journal, stderr");
        parse_extra_fails("topics.alerts = bad topic\n", "topics.alerts: \"bad topic\" is not a Kafka topic name");
        parse_extra_fails("topics.alerts =\n", "is not a Kafka topic name");
        parse_extra_fails("kafka.group.id =\n", "kafka.group.id: must not be empty");
        parse_extra_fails("event.source = \"\"\n", "event.source: must not be empty");
        parse_extra_fails("database.conninfo =\n", "database.conninfo: must not be empty");
}

static void test_required_keys(void **state) {
        (void)state;
        char *text = NULL;
        assert_true(asprintf(&text, "pepper = @file:%s\n", pepper_path) > 0);
        parse_fails(text, "t.conf: database.conninfo is required");
        free(text);
        parse_fails("database.conninfo = dbname=x\n", "t.conf: pepper is required");
        parse_fails("", "is required");
}

static void test_pepper_and_secrets_from_files(void **state) {
        (void)state;
        char path[256], text[1024], dir[128];
        config *c = NULL;

        /* Never in the file itself. */
        parse_fails("database.conninfo = dbname=x\npepper = 0123456789abcdef0123456789abcdef0123\n",
                    "t.conf:2: pepper: give it as @file:PATH or @credential:NAME");

        /* Too short after reading; one trailing newline does not count. */
        snprintf(path, sizeof path, "%s/short", tmpdir);
        write_file(path, "0123456789abcdef0123456789abcde\n", 32);
        snprintf(text, sizeof text, "database.conninfo = dbname=x\npepper = @file:%s\n", path);
        parse_fails(text, "pepper: 31 bytes; at least 32 are needed");
        write_file(path, "0123456789abcdef0123456789abcdef\r\n", 34);
        assert_int_equal(config_parse_string("t.conf", text, &c, err, sizeof err), 0);
        assert_int_equal(c->pepper_len, 32);
        assert_memory_equal(c->pepper, "0123456789abcdef0123456789abcdef", 32);
        config_free(c);

        /* Missing file, a directory, a FIFO (must not block). */
        snprintf(text, sizeof text, "database.conninfo = dbname=x\npepper = @file:%s/nope\n", tmpdir);
        parse_fails(text, "t.conf:2: pepper: cannot read");
        parse_fails(text, "nope: No such file or directory");
        snprintf(text, sizeof text, "database.conninfo = dbname=x\npepper = @file:%s\n", tmpdir);
        parse_fails(text, "Is a directory");
        snprintf(path, sizeof path, "%s/fifo", tmpdir);
        assert_int_equal(mkfifo(path, 0600), 0);
        snprintf(text, sizeof text, "database.conninfo = dbname=x\npepper = @file:%s\n", path);
        parse_fails(text, "not a regular file");
        parse_fails("database.conninfo = dbname=x\npepper = @file:\n", "@file: needs a path");

        /* Credentials: $CREDENTIALS_DIRECTORY/name. */
        snprintf(text, sizeof text,
                 "database.conninfo = @credential:conninfo\ndatabase.password = @credential:db-password\n"
                 "pepper = @credential:pepper\n");
        unsetenv("CREDENTIALS_DIRECTORY");
        parse_fails(text, "t.conf:1: database.conninfo: @credential:conninfo, but $CREDENTIALS_DIRECTORY is not set");
        snprintf(dir, sizeof dir, "%s/creds", tmpdir);
        assert_int_equal(mkdir(dir, 0700), 0);
        snprintf(path, sizeof path, "%s/pepper", dir);
        write_file(path, "ppppppppppppppppppppppppppppppppppppppppp\n", 42);
        snprintf(path, sizeof path, "%s/db-password", dir);
        write_file(path, "s3cret pass\n", 12);
        snprintf(path, sizeof path, "%s/conninfo", dir);
        write_file(path, "host=h dbname=d\n", 16);
        setenv("CREDENTIALS_DIRECTORY", dir, 1);
        assert_int_equal(config_parse_string("t.conf", text, &c, err, sizeof err), 0);
        assert_string_equal(c->db_conninfo, "host=h dbname=d");
        assert_string_equal(c->db_password, "s3cret pass");
        assert_int_equal(c->pepper_len, 41);
        config_free(c);

        parse_fails("database.conninfo = @credential:../conninfo\n", "is not a credential name");
        parse_fails("database.conninfo = @credential:\n", "is not a credential name");
        parse_fails("database.conninfo = @credential:absent\n", "cannot read");
        /* A NUL byte is fine in the pepper (bytes), not in a string. */
        snprintf(path, sizeof path, "%s/conninfo", dir);
        write_file(path, "host=h\0dbname=d", 15);
        parse_fails("database.conninfo = @credential:conninfo\n", "contains a NUL byte");
        unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_kafka_pass_through(void **state) {
        (void)state;
        config *c = parse("kafka.bootstrap.servers = k1:9092,k2:9092\n"
                          "kafka.security.protocol = SASL_SSL\n"
                          "kafka.sasl.mechanisms = SCRAM-SHA-512\n"
                          "kafka.sasl.username = allvarsd\n"
                          "kafka.sasl.password = pw\n"
                          "kafka.group.id = city-allvarsd\n"
                          "kafka.embedded = true\n"
                          "kafka.bootstrap.servers = k3:9092\n");
        assert_non_null(c);
        assert_true(c->kafka_embedded);
        assert_string_equal(c->group_id, "city-allvarsd");
        assert_int_equal(c->n_kafka, 5); /* group.id and embedded are ours; the duplicate replaced */
        assert_string_equal(c->kafka[0].key, "bootstrap.servers");
        assert_string_equal(c->kafka[0].value, "k3:9092");
        assert_string_equal(c->kafka[1].key, "security.protocol");
        assert_string_equal(c->kafka[4].key, "sasl.password");
        config_free(c);

        parse_extra_fails("kafka.no.such.property = 1\n", "t.conf:3: kafka.no.such.property: No such configuration property");
        parse_extra_fails("kafka.session.timeout.ms = soon\n", "t.conf:3: kafka.session.timeout.ms:");
        parse_extra_fails("kafka.enable.auto.commit = true\n", "kafka.enable.auto.commit: set by allvarsd itself");
        parse_extra_fails("kafka.acks = 1\n", "kafka.acks: set by allvarsd itself");
        parse_extra_fails("kafka. = 1\n", "a librdkafka property name must follow");
}

static void test_profiles(void **state) {
        (void)state;
        /* Order in the file does not matter: the parameter applies to the named profile. */
        config *c = parse("profile.limit_hours = 72\nprofile.version = 7\nprofile.name = stockholm-2019\n");
        assert_non_null(c);
        assert_string_equal(c->profile.name, "stockholm-2019");
        assert_int_equal(c->profile.limit, 72 * USEC_PER_HOUR);
        assert_int_equal(c->profile.version, 7);
        assert_int_equal(c->profile.max_age, 20);
        config_free(c);

        parse_extra_fails("profile.name = malmo-2030\n", "t.conf:3: profile.name: unknown profile \"malmo-2030\" (known: goteborg-motion-2024, ");
        parse_extra_fails("\nprofile.colour = blue\n", "t.conf:4: profile: unknown profile parameter \"colour\" (known: min_age,");
        parse_extra_fails("profile.min_age = old\n", "t.conf:3: profile.min_age: \"old\" is not a valid value");
        parse_extra_fails("profile.min_age = 18\nprofile.max_age = 12\n", "profile: min_age 18 is above max_age 12");
}

static void test_district_profiles(void **state) {
        (void)state;
        config *c = parse("profile.limit_hours = 72\n"
                          "district.Hisingen.profile = ds-2024-30\n"
                          "district.hisingen.max_age = 19\n"
                          "district.Centrum.at_risk_percent = 50\n"
                          "district.SYDV\xc3\x84ST.profile = goteborg-motion-2024\n"
                          "district.nordost.profile = trollhattan-tuti\n"
                          "district.nordost.profile = stockholm-2019\n");
        assert_non_null(c);
        assert_int_equal(c->n_districts, 4);
        assert_string_equal(c->districts[0].district, "hisingen");
        assert_string_equal(c->districts[2].district, "sydv\xc3\xa4st");

        const profile *p = config_profile_for(c, "HISINGEN");
        assert_ptr_equal(p, &c->districts[0].profile);
        assert_string_equal(p->name, "ds-2024-30");
        assert_int_equal(p->max_age, 19);
        assert_int_equal(p->limit, 24 * USEC_PER_HOUR); /* another profile: no profile.* overrides */

        p = config_profile_for(c, "centrum");
        assert_string_equal(p->name, "goteborg-motion-2024");
        assert_int_equal(p->limit, 72 * USEC_PER_HOUR); /* the default profile's overrides... */
        assert_true(p->at_risk_fraction > 0.49 && p->at_risk_fraction < 0.51); /* ...and its own */
        assert_true(c->profile.at_risk_fraction > 0.74);

        p = config_profile_for(c, "Sydv\xc3\xa4st");
        assert_ptr_equal(p, &c->districts[2].profile);
        assert_int_equal(p->limit, 72 * USEC_PER_HOUR);
        p = config_profile_for(c, "nordost");
        assert_string_equal(p->name, "stockholm-2019"); /* the last line wins */

        assert_ptr_equal(config_profile_for(c, "unknown"), &c->profile);
        assert_ptr_equal(config_profile_for(c, ""), &c->profile);
        assert_ptr_equal(config_profile_for(c, NULL), &c->profile);
        config_free(c);

        parse_extra_fails("district.x.profile = nope\n", "t.conf:3: district.x.profile: unknown profile \"nope\"");
        parse_extra_fails("district.x = 1\n", "expected district.<name>.profile");
        parse_extra_fails("district..profile = ds-2024-30\n", "expected district.<name>.profile");
        parse_extra_fails("district.a.b.c = 1\n", "expected district.<name>.profile");
        parse_extra_fails("district.a.min_age = 30\n", "t.conf: district.a: min_age 30 is above max_age 17");
        parse_extra_fails("district.a.nonsense = 30\n", "t.conf:3: district.a: unknown profile parameter");
}

static void test_restart_needed(void **state) {
        (void)state;
        char buf[512];
        config *a = parse("kafka.bootstrap.servers = k1:9092\nkafka.linger.ms = 5\n");
        config *b = parse("kafka.bootstrap.servers = k1:9092\nkafka.linger.ms = 5\n"
                          "profile.name = ds-2024-30\nbatch.max_messages = 10\nlog.level = debug\n"
                          "feedback.level = statutory\nretention.closed_case_days = 10\nrelay.poll_ms = 10\n"
                          "district.x.profile = stockholm-2019\nevent.source = urn:y\n");
        assert_non_null(a);
        assert_non_null(b);
        config_restart_needed(a, b, buf, sizeof buf);
        assert_string_equal(buf, "");
        config_free(b);

        b = parse("kafka.bootstrap.servers = k2:9092\nkafka.client.rack = r\n"
                  "topics.referrals = other\ndatabase.password = x\nkafka.group.id = g2\nrelay.enabled = false\n"
                  "kafka.embedded = true\nclock.file = /tmp/now\n");
        assert_non_null(b);
        config_restart_needed(a, b, buf, sizeof buf);
        assert_string_equal(buf, "kafka.embedded, kafka.group.id, topics.referrals, database.password, relay.enabled, "
                                 "clock.file, kafka.bootstrap.servers, kafka.linger.ms, kafka.client.rack");
        /* Never past the buffer. */
        char small[20];
        memset(small, 'X', sizeof small);
        config_restart_needed(a, b, small, 12);
        assert_true(strlen(small) < 12);
        assert_int_equal(small[12], 'X');
        config_free(b);

        /* The pepper is compared by content. */
        char path[256], text[512];
        snprintf(path, sizeof path, "%s/pepper2", tmpdir);
        write_file(path, "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq", 40);
        snprintf(text, sizeof text, "database.conninfo = host=db.example.org dbname=allvarsd user=allvarsd\n"
                                    "pepper = @file:%s\nkafka.bootstrap.servers = k1:9092\nkafka.linger.ms = 5\n", path);
        assert_int_equal(config_parse_string("t.conf", text, &b, err, sizeof err), 0);
        config_restart_needed(a, b, buf, sizeof buf);
        assert_string_equal(buf, "pepper");
        config_free(b);
        config_free(a);
}

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
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_syntax),
                cmocka_unit_test(test_errors_name_file_and_line),
                cmocka_unit_test(test_required_keys),
                cmocka_unit_test(test_pepper_and_secrets_from_files),
                cmocka_unit_test(test_kafka_pass_through),
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_district_profiles),
                cmocka_unit_test(test_restart_needed),
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
