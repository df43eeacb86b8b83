/* latency-consumer: when does each scheduling request become readable?
 *
 *   latency-consumer BOOTSTRAP TOPIC OUTFILE
 *
 * Starts at the topic's current end (explicit high watermarks, no consumer
 * group, so nothing published after "READY" is missed), decodes every
 * SchedulingRequest and writes "CASE_ID RECEIVED_USEC" per event to OUTFILE,
 * the time taken from the real-time clock as the message comes out of
 * rd_kafka_consumer_poll(). The bench joins the case id to the referral's
 * embedded produce time in SQL. Prints "READY" once assigned; runs until
 * SIGTERM or SIGINT, then prints "events=N undecodable=M". */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "kafka_conf.h"
#include "allvarssamtal/v1/scheduling.pb-c.h"

#define TIMEOUT_MS 10000

static volatile sig_atomic_t stop;
static void on_signal(int sig) {
        (void)sig;
        stop = 1;
}

int main(int argc, char **argv) {
        if (argc != 4) {
                fprintf(stderr, "usage: latency-consumer BOOTSTRAP TOPIC OUTFILE\n");
                return 64;
        }
        const char *bootstrap = argv[1], *topic = argv[2];
        FILE *out = fopen(argv[3], "w");
        if (!out) {
                perror(argv[3]);
                return 1;
        }
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);

        char e[512];
        /* Fetch responses as soon as one message is there: latency, not throughput. */
        static const char *const extra[] = {"fetch.wait.max.ms", "100", NULL};
        rd_kafka_t *rk = kafka_reader_new(bootstrap, "bench-latency", extra, e, sizeof e);
        if (!rk) {
                fprintf(stderr, "latency-consumer: %s\n", e);
                return 1;
        }

        int parts = kafka_partition_count(rk, topic, TIMEOUT_MS, e, sizeof e);
        if (parts < 1) {
                fprintf(stderr, "%s: %s\n", "latency-consumer", parts < 0 ? e : "topic has no partitions");
                return 1;
        }
        rd_kafka_resp_err_t err;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(parts);
        for (int p = 0; p < parts; p++) {
                int64_t lo, hi;
                err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, TIMEOUT_MS);
                if (err) {
                        fprintf(stderr, "latency-consumer: watermarks: %s\n", rd_kafka_err2str(err));
                        return 1;
                }
                rd_kafka_topic_partition_list_add(list, topic, p)->offset = hi;
        }
        err = rd_kafka_assign(rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
                fprintf(stderr, "latency-consumer: assign: %s\n", rd_kafka_err2str(err));
                return 1;
        }
        printf("READY\n");
        fflush(stdout);

        long events = 0, bad = 0;
        while (!stop) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
                if (!m)
                        continue;
                usec_t now = clock_realtime();
                if (m->err) {
                        fprintf(stderr, "latency-consumer: %s\n", rd_kafka_message_errstr(m));
                } else {
                        Allvarssamtal__V1__SchedulingRequest *sr =
                                allvarssamtal__v1__scheduling_request__unpack(NULL, m->len, m->payload);
                        if (sr && sr->case_id && sr->case_id[0]) {
                                fprintf(out, "%s %lld\n", sr->case_id, (long long)now);
                                events++;
                        } else {
                                bad++;
                        }
                        if (sr)
                                allvarssamtal__v1__scheduling_request__free_unpacked(sr, NULL);
                }
                rd_kafka_message_destroy(m);
        }
        fclose(out);
        printf("events=%ld undecodable=%ld\n", events, bad);
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
        return 0;
}
