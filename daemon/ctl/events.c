/* allvarsctl events: read allvarsd's topics and print each event in a readable
 * line (or a JSON object): where it is, its CloudEvents headers, and its
 * content with personal data masked. --show-personal-data shows it only to a
 * role that may read the personal rows, and records each case shown in the
 * audit trail before printing it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "codec.h"
#include "commands.h"
#include "common.h"
#include "describe.h"
#include "kafka.h"
#include "kafka_conf.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "allvarssamtal/v1/referral.pb-c.h"

static const char usage[] =
        "Usage: allvarsctl events [--config PATH | --bootstrap HOST:PORT] [--topic T]... [--from-beginning]\n"
        "                         [--idle-exit MS] [--count N] [--json]\n"
        "                         [--show-personal-data [--database CONNINFO]]\n"
        "Print the events on allvarsd's topics, one readable line each (or one JSON object with --json):\n"
        "topic/partition@offset, key, CloudEvents headers and the decoded message. The input topics\n"
        "(referrals, outcomes) are decoded too. Names, contact details, identity numbers, birth dates,\n"
        "the narrative and an override's reason are shown as (personal).\n\n"
        "  --config PATH          configuration file: kafka.* (TLS, SASL) and topics.* (default: "
        CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --bootstrap HOST:PORT  the Kafka cluster (default: kafka.bootstrap.servers)\n"
        "  --topic T              a topic to read (repeatable; default: the four output topics)\n"
        "  --from-beginning       from the oldest message (default: only new ones)\n"
        "  --idle-exit MS         exit after MS milliseconds without a message\n"
        "  --count N              exit after N messages\n"
        "  --show-personal-data   unmasked, for a database role that may read the personal rows; each\n"
        "                         case shown is recorded in the audit trail (who, when, which event)\n"
        "  --json                 one JSON object per line\n"
        "Exits 1 when the cluster cannot be reached or a topic does not exist.\n";

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf, size_t size) {
        const void *v;
        size_t len;
        buf[0] = 0;
        if (!h || rd_kafka_header_get_last(h, name, &v, &len) != RD_KAFKA_RESP_ERR_NO_ERROR || !v)
                return "";
        snprintf(buf, size, "%.*s", (int)len, (const char *)v);
        return buf;
}

static void json_string(const char *s, size_t n, FILE *f) {
        fputc('"', f);
        for (size_t i = 0; i < n; i++) {
                unsigned char ch = (unsigned char)s[i];
                if (ch == '"' || ch == '\\')
                        fprintf(f, "\\%c", ch);
                else if (ch < 0x20)
                        fprintf(f, "\\u%04x", ch);
                else
                        fputc(ch, f);
        }
        fputc('"', f);
}

typedef struct reader {
        ctl *c;
        const char *topic_referrals, *topic_outcomes;
        bool show_personal;
} reader;

/* The message type: from ce_type, or the input topic it was read from. */
static const ProtobufCMessageDescriptor *descriptor_for(const reader *rd, const char *topic, const char *type) {
        const ProtobufCMessageDescriptor *d = describe_descriptor_for_ce_type(type);
        if (d)
                return d;
        if (strcmp(topic, rd->topic_referrals) == 0)
                return &allvarssamtal__v1__police_referral__descriptor;
        if (strcmp(topic, rd->topic_outcomes) == 0)
                return &allvarssamtal__v1__case_outcome__descriptor;
        return NULL;
}

/* Before personal data is shown: who, when, which case and event. */
static int audit_shown(reader *rd, const rd_kafka_message_t *km, const char *ce_id) {
        char where[512], key[128];
        snprintf(where, sizeof where, "allvarsctl events: %s/%d@%lld ce_id=%s", rd_kafka_topic_name(km->rkt),
                 (int)km->partition, (long long)km->offset, ce_id);
        snprintf(key, sizeof key, "%.*s", (int)(km->key_len < 127 ? km->key_len : 127),
                 km->key ? (const char *)km->key : "");
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_TEXT, key);
        ctl_param(&p, CTL_OID_TEXT, where);
        PGresult *res = ctl_exec(rd->c,
                                 "INSERT INTO allvarsd.audit (case_id, at, actor_kind, actor_name, action, detail)"
                                 " VALUES (CASE WHEN $1 ~ '^[0-9a-fA-F-]{36}$' THEN $1::uuid END, now(), 'OPERATOR',"
                                 " session_user, 'PERSONAL_DATA_SHOWN', $2)",
                                 &p);
        if (!res)
                return -EIO;
        PQclear(res);
        return 0;
}

static int print_event(reader *rd, const rd_kafka_message_t *km) {
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(km, &h);
        char id[128], type[128];
        header(h, "ce_id", id, sizeof id);
        header(h, "ce_type", type, sizeof type);
        const char *topic = rd_kafka_topic_name(km->rkt);
        const ProtobufCMessageDescriptor *d = descriptor_for(rd, topic, type);
        ProtobufCMessage *m = d && km->len <= CODEC_DECODE_BUDGET / 8 ? protobuf_c_message_unpack(d, NULL, km->len,
                                                                                                  km->payload)
                                                                      : NULL;
        if (m && rd->show_personal && audit_shown(rd, km, id) < 0) {
                protobuf_c_message_free_unpacked(m, NULL);
                return -EIO;
        }
        char *text = NULL;
        size_t text_len = 0;
        FILE *mem = open_memstream(&text, &text_len);
        if (!mem)
                return -ENOMEM;
        if (m) {
                (rd->show_personal ? describe_message : describe_message_masked)(m, mem);
                protobuf_c_message_free_unpacked(m, NULL);
        } else
                fprintf(mem, "<%zu bytes%s>", km->len, d ? ", undecodable" : "");
        fclose(mem);
        const char *key = km->key ? (const char *)km->key : "";
        if (rd->c->json) {
                printf("{\"topic\":");
                json_string(topic, strlen(topic), stdout);
                printf(",\"partition\":%d,\"offset\":%lld,\"key\":", (int)km->partition, (long long)km->offset);
                json_string(key, km->key_len, stdout);
                printf(",\"ce_id\":");
                json_string(id, strlen(id), stdout);
                printf(",\"ce_type\":");
                json_string(type, strlen(type), stdout);
                printf(",\"message\":");
                json_string(text, text_len, stdout);
                printf("}\n");
        } else
                printf("%s/%d@%lld key=%.*s ce_id=%s ce_type=%s %s\n", topic, (int)km->partition,
                       (long long)km->offset, (int)km->key_len, key, id, type, text);
        free(text);
        fflush(stdout);
        return 0;
}

/* May this session's role read the personal rows (and record that it did)? */
static int personal_data_allowed(ctl *c) {
        PGresult *res = ctl_exec(c,
                                 "SELECT has_table_privilege(current_user, 'allvarsd.referral_personal', 'SELECT')"
                                 " AND has_table_privilege(current_user, 'allvarsd.audit', 'INSERT')",
                                 NULL);
        if (!res)
                return -EIO;
        bool ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!ok)
                return ctl_fail(c, "--show-personal-data: the role %s may not read personal data",
                                PQuser(c->pg)), -EACCES;
        return 0;
}

int ctl_events_main(int argc, char **argv) {
        enum { OPT_TOPIC = 1, OPT_FROM_BEGINNING, OPT_IDLE_EXIT, OPT_COUNT, OPT_SHOW_PERSONAL };
        static const struct option options[] = {
                {"topic", required_argument, NULL, OPT_TOPIC},
                {"from-beginning", no_argument, NULL, OPT_FROM_BEGINNING},
                {"idle-exit", required_argument, NULL, OPT_IDLE_EXIT},
                {"count", required_argument, NULL, OPT_COUNT},
                {"show-personal-data", no_argument, NULL, OPT_SHOW_PERSONAL},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "events", usage);
        reader rd = {.c = &c};
        const char *topics[16];
        size_t n_topics = 0;
        bool from_beginning = false;
        long long idle_ms = -1, count = -1;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_TOPIC:
                        if (n_topics == sizeof topics / sizeof topics[0])
                                return ctl_usage_error(&c, "--topic: at most 16 topics");
                        topics[n_topics++] = optarg;
                        break;
                case OPT_FROM_BEGINNING: from_beginning = true; break;
                case OPT_IDLE_EXIT:
                        if (ctl_parse_count(optarg, &idle_ms) < 0)
                                return ctl_usage_error(&c, "--idle-exit: not a number of milliseconds: %s", optarg);
                        break;
                case OPT_COUNT:
                        if (ctl_parse_count(optarg, &count) < 0)
                                return ctl_usage_error(&c, "--count: not a number: %s", optarg);
                        break;
                case OPT_SHOW_PERSONAL: rd.show_personal = true; break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
        if (!c.bootstrap)
                c.bootstrap = getenv("ALLVARS_KAFKA_BOOTSTRAP");

        int exit_code = CTL_EXIT_FAILURE;
        rd_kafka_t *rk = NULL;
        rd_kafka_conf_t *conf = NULL;
        int r = rd.show_personal ? ctl_connect(&c, false) : ctl_load_config(&c);
        if (r >= 0 && rd.show_personal)
                r = personal_data_allowed(&c);
        if (r < 0)
                goto out;
        if (!ctl_kafka_known(&c)) {
                exit_code = ctl_usage_error(&c, "--bootstrap or a configuration with kafka.bootstrap.servers is "
                                                "required");
                goto out;
        }
        rd.topic_referrals = c.cfg ? c.cfg->topic_referrals : "police.referrals.v1";
        rd.topic_outcomes = c.cfg ? c.cfg->topic_outcomes : "allvarssamtal.outcomes.v1";
        if (n_topics == 0) {
                topics[n_topics++] = c.cfg ? c.cfg->topic_scheduling : "allvarssamtal.scheduling.v1";
                topics[n_topics++] = c.cfg ? c.cfg->topic_feedback : "police.feedback.v1";
                topics[n_topics++] = c.cfg ? c.cfg->topic_alerts : "allvarssamtal.alerts.v1";
                topics[n_topics++] = c.cfg ? c.cfg->topic_dead_letter : "allvarssamtal.deadletter.v1";
        }

        char e[512];
        if (ctl_kafka_conf(&c, &conf) < 0)
                goto out;
        if (kafka_conf_set(conf, "group.id", "allvarsctl-events", e, sizeof e) < 0 ||
            kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e) < 0 ||
            kafka_conf_set(conf, "log_level", "3", e, sizeof e) < 0) {
                ctl_fail(&c, "%s", e);
                goto out;
        }
        rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
        if (!rk) {
                ctl_fail(&c, "Kafka: %s", e);
                goto out;
        }
        conf = NULL;
        rd_kafka_poll_set_consumer(rk);

        /* Every partition of the topics directly: no group, no rebalance wait. A
         * cluster that cannot be reached or a topic that does not exist is an error. */
        rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(16);
        for (size_t i = 0; i < n_topics && r >= 0; i++) {
                int n = kafka_partition_count(rk, topics[i], 10000, e, sizeof e);
                if (n <= 0) {
                        ctl_fail(&c, "%s", n < 0 ? e : "a topic without partitions");
                        r = -EIO;
                }
                for (int p = 0; p < n; p++)
                        rd_kafka_topic_partition_list_add(assign, topics[i], p)->offset =
                                from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        }
        if (r >= 0)
                rd_kafka_assign(rk, assign);
        rd_kafka_topic_partition_list_destroy(assign);
        if (r < 0)
                goto out;

        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        usec_t last = clock_monotonic();
        long long seen = 0;
        while (!stop && (count < 0 || seen < count) && r >= 0) {
                rd_kafka_message_t *km = rd_kafka_consumer_poll(rk, 100);
                if (!km) {
                        if (idle_ms >= 0 && clock_monotonic() - last > (usec_t)idle_ms * 1000)
                                break;
                        continue;
                }
                if (!km->err) {
                        r = print_event(&rd, km);
                        seen++;
                        last = clock_monotonic();
                } else if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        fprintf(stderr, "allvarsctl events: %s\n", rd_kafka_message_errstr(km));
                rd_kafka_message_destroy(km);
        }
        if (r >= 0)
                exit_code = CTL_EXIT_OK;
        rd_kafka_consumer_close(rk);
out:
        if (conf)
                rd_kafka_conf_destroy(conf);
        if (rk)
                rd_kafka_destroy(rk);
        ctl_done(&c);
        return exit_code;
}
