/* config*.c: the parser, defaults, errors with file and line, secrets from
 * files and credentials, kafka.* pass-through, profiles per district, and the
 * SIGHUP comparison (the restart record, the dump, the transport and the man
 * page: test-config-dump.c). */
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
        assert_int_equal(c->batch_max_wait_ms, 5);
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
        };
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
