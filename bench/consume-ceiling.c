/* consume-ceiling: how fast librdkafka alone reads a topic on this machine,
 * with no processing, as the ceiling the daemon's replay is compared with.
 *
 *   consume-ceiling BOOTSTRAP TOPIC
 *
 * Reads every partition from its low to its high watermark at the start (no
 * consumer group: assign, like the daemon after its join, with the daemon's
 * poll call) and prints "messages=N bytes=B seconds=S per_s=R", timed from the
 * assignment to the last message. Exit 0 when every message was read. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kafka_conf.h"

#define TIMEOUT_MS 10000

int main(int argc, char **argv) {
        if (argc != 3) {
                fprintf(stderr, "usage: consume-ceiling BOOTSTRAP TOPIC\n");
                return 64;
        }
        const char *bootstrap = argv[1], *topic = argv[2];
        char e[512];
        rd_kafka_t *rk = kafka_reader_new(bootstrap, "bench-consume-ceiling", NULL, e, sizeof e);
        if (!rk) {
                fprintf(stderr, "consume-ceiling: %s\n", e);
                return 1;
        }

        int parts = kafka_partition_count(rk, topic, TIMEOUT_MS, e, sizeof e);
        if (parts < 1) {
                fprintf(stderr, "%s: %s\n", "consume-ceiling", parts < 0 ? e : "topic has no partitions");
                return 1;
        }
        rd_kafka_resp_err_t err;

        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
        long long total = 0;
        for (int p = 0; p < parts; p++) {
                int64_t lo, hi;
                err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TIMEOUT_MS);
                if (err) {
                        fprintf(stderr, "consume-ceiling: watermarks of %s [%d]: %s\n", topic, p, rd_kafka_err2str(err));
                        return 1;
                }
                rd_kafka_topic_partition_list_add(list, topic, p)->offset = lo;
                total += hi - lo;
        }

        usec_t start = clock_monotonic(), last = start;
        err = rd_kafka_assign(rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
                fprintf(stderr, "consume-ceiling: assign: %s\n", rd_kafka_err2str(err));
                return 1;
        }
        long long got = 0, bytes = 0;
        while (got < total) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, TIMEOUT_MS);
                if (!m) {
                        fprintf(stderr, "consume-ceiling: nothing for %d s after %lld of %lld messages\n",
                                TIMEOUT_MS / 1000, got, total);
                        break;
                }
                if (m->err) {
                        fprintf(stderr, "consume-ceiling: %s\n", rd_kafka_message_errstr(m));
                } else {
                        got++;
                        bytes += (long long)m->len;
                        last = clock_monotonic();
                }
                rd_kafka_message_destroy(m);
        }
        double secs = (double)(last - start) / 1e6;
        printf("messages=%lld bytes=%lld seconds=%.3f per_s=%.0f\n", got, bytes, secs, secs > 0 ? (double)got / secs : 0.0);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return got == total ? 0 : 1;
}
