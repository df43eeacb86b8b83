/* allvarsctl events: read allvarsd's output topics and print each event in a
 * readable line: where it is, its CloudEvents headers, and its content.
 *
 *   allvarsctl events --bootstrap HOST:PORT [--topic T]... [--from-beginning]
 *                     [--idle-exit MS] [--count N]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "commands.h"
#include "describe.h"
#include "kafka_conf.h"

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

static void print_event(const rd_kafka_message_t *km) {
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(km, &h);
        char id[128], type[128];
        header(h, "ce_id", id, sizeof id);
        header(h, "ce_type", type, sizeof type);
        printf("%s/%d@%lld key=%.*s ce_id=%s ce_type=%s ", rd_kafka_topic_name(km->rkt), (int)km->partition,
               (long long)km->offset, (int)km->key_len, km->key ? (const char *)km->key : "", id, type);
        const ProtobufCMessageDescriptor *d = describe_descriptor_for_ce_type(type);
        ProtobufCMessage *m = d ? protobuf_c_message_unpack(d, NULL, km->len, km->payload) : NULL;
        if (m) {
                describe_message(m, stdout);
                protobuf_c_message_free_unpacked(m, NULL);
        } else
                printf("<%zu bytes%s>", km->len, d ? ", undecodable" : "");
        putchar('\n');
        fflush(stdout);
}

int ctl_events_main(int argc, char **argv) {
        static const struct option options[] = {
                {"bootstrap", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
                {"from-beginning", no_argument, NULL, 'B'},  {"idle-exit", required_argument, NULL, 'i'},
                {"count", required_argument, NULL, 'n'},     {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *bootstrap = getenv("ALLVARS_KAFKA_BOOTSTRAP");
        const char *topics[16];
        size_t n_topics = 0;
        bool from_beginning = false;
        long idle_ms = -1, count = -1;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "b:t:Bi:n:h", options, NULL)) >= 0) {
                switch (c) {
                case 'b': bootstrap = optarg; break;
                case 't':
                        if (n_topics < 16)
                                topics[n_topics++] = optarg;
                        break;
                case 'B': from_beginning = true; break;
                case 'i': idle_ms = atol(optarg); break;
                case 'n': count = atol(optarg); break;
                case 'h':
                        printf("allvarsctl events --bootstrap HOST:PORT [--topic T]... [--from-beginning] "
                               "[--idle-exit MS] [--count N]\n");
                        return 0;
                default: return 2;
                }
        }
        if (!bootstrap) {
                fprintf(stderr, "allvarsctl events: --bootstrap is required\n");
                return 2;
        }
        if (n_topics == 0) {
                static const char *defaults[] = {"allvarssamtal.scheduling.v1", "police.feedback.v1",
                                                 "allvarssamtal.alerts.v1", "allvarssamtal.deadletter.v1"};
                for (size_t i = 0; i < 4; i++)
                        topics[n_topics++] = defaults[i];
        }

        char e[512];
        rd_kafka_t *rk = kafka_reader_new(bootstrap, "allvarsctl-events", NULL, e, sizeof e);
        if (!rk) {
                fprintf(stderr, "allvarsctl events: %s\n", e);
                return 1;
        }

        /* Assign every partition of the topics directly: no group, no rebalance wait. */
        rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(16);
        for (size_t i = 0; i < n_topics; i++) {
                int n = kafka_partition_count(rk, topics[i], 10000, e, sizeof e);
                if (n < 0)
                        fprintf(stderr, "allvarsctl events: %s\n", e);
                for (int p = 0; p < n; p++)
                        rd_kafka_topic_partition_list_add(assign, topics[i], p)->offset =
                                from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        }
        rd_kafka_assign(rk, assign);
        rd_kafka_topic_partition_list_destroy(assign);

        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        usec_t last = clock_monotonic();
        long seen = 0;
        while (!stop && (count < 0 || seen < count)) {
                rd_kafka_message_t *km = rd_kafka_consumer_poll(rk, 100);
                if (!km) {
                        if (idle_ms >= 0 && clock_monotonic() - last > idle_ms * 1000)
                                break;
                        continue;
                }
                if (!km->err) {
                        print_event(km);
                        seen++;
                        last = clock_monotonic();
                } else if (km->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                        fprintf(stderr, "allvarsctl events: %s\n", rd_kafka_message_errstr(km));
                rd_kafka_message_destroy(km);
        }
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return 0;
}
