/* kafka-topics: create topics on a real broker with librdkafka's Admin API
 * (no JVM start per call), and print partition high watermarks.
 *
 *   kafka-topics BOOTSTRAP create PARTITIONS TOPIC...
 *   kafka-topics BOOTSTRAP watermarks TOPIC       (prints "PARTITION HIGH" lines)
 *   kafka-topics BOOTSTRAP committed GROUP TOPIC  (prints "PARTITION OFFSET": the group's
 *                                                   committed offsets, -1001 when none)
 *   kafka-topics BOOTSTRAP config TOPIC [KEY VALUE]  (sets the topic's configuration to
 *                                                   KEY=VALUE alone, or to the broker's
 *                                                   defaults: AlterConfigs replaces them all)
 * Exit 0 on success; an existing topic counts as success. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "kafka_conf.h"

static int create(rd_kafka_t *rk, int partitions, int n, char **names) {
        rd_kafka_NewTopic_t **nt = calloc((size_t)n, sizeof *nt);
        char e[256];
        for (int i = 0; i < n; i++) {
                nt[i] = rd_kafka_NewTopic_new(names[i], partitions, 1, e, sizeof e);
                if (!nt[i]) {
                        fprintf(stderr, "kafka-topics: %s: %s\n", names[i], e);
                        return 1;
                }
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, nt, (size_t)n, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        int rc = 0;
        if (!ev || rd_kafka_event_error(ev)) {
                fprintf(stderr, "kafka-topics: %s\n", ev ? rd_kafka_event_error_string(ev) : "timed out");
                rc = 1;
        } else {
                size_t cnt;
                const rd_kafka_topic_result_t **res =
                        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
                for (size_t i = 0; i < cnt; i++) {
                        rd_kafka_resp_err_t err = rd_kafka_topic_result_error(res[i]);
                        if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                                fprintf(stderr, "kafka-topics: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                                        rd_kafka_topic_result_error_string(res[i]));
                                rc = 1;
                        }
                }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
        free(nt);
        return rc;
}

static int watermarks(rd_kafka_t *rk, const char *topic) {
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, 10000);
        rd_kafka_topic_destroy(t);
        if (err || md->topic_cnt != 1 || md->topics[0].err) {
                fprintf(stderr, "kafka-topics: %s: metadata failed\n", topic);
                return 1;
        }
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
                int64_t lo, hi;
                int32_t id = md->topics[0].partitions[p].id;
                if (rd_kafka_query_watermark_offsets(rk, topic, id, &lo, &hi, 10000)) {
                        fprintf(stderr, "kafka-topics: %s [%d]: watermarks failed\n", topic, (int)id);
                        return 1;
                }
                printf("%d %lld\n", (int)id, (long long)hi);
        }
        rd_kafka_metadata_destroy(md);
        return 0;
}

static int committed(const char *bootstrap, const char *group, const char *topic) {
        char e[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof e);
        rd_kafka_conf_set(conf, "group.id", group, e, sizeof e);
        rd_kafka_conf_set(conf, "log_level", "3", e, sizeof e);
        rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
        if (!c) {
                fprintf(stderr, "kafka-topics: %s\n", e);
                return 1;
        }
        int n = kafka_partition_count(c, topic, 10000, e, sizeof e);
        int rc = n < 0;
        if (n < 0)
                fprintf(stderr, "kafka-topics: %s\n", e);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
        for (int p = 0; p < n; p++)
                rd_kafka_topic_partition_list_add(l, topic, p);
        if (n > 0 && rd_kafka_committed(c, l, 10000)) {
                fprintf(stderr, "kafka-topics: committed offsets of %s: no answer\n", group);
                rc = 1;
        }
        for (int i = 0; !rc && i < l->cnt; i++)
                printf("%d %lld\n", (int)l->elems[i].partition, (long long)l->elems[i].offset);
        rd_kafka_topic_partition_list_destroy(l);
        rd_kafka_destroy(c);
        return rc;
}

/* The topic's whole configuration: KEY=VALUE, or nothing (the broker's defaults). */
static int config(rd_kafka_t *rk, const char *topic, const char *key, const char *value) {
        rd_kafka_ConfigResource_t *cr = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
        if (key && rd_kafka_ConfigResource_set_config(cr, key, value)) {
                fprintf(stderr, "kafka-topics: %s: cannot set %s\n", topic, key);
                rd_kafka_ConfigResource_destroy(cr);
                return 1;
        }
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_AlterConfigs(rk, &cr, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        int rc = 0;
        if (!ev || rd_kafka_event_error(ev)) {
                fprintf(stderr, "kafka-topics: %s\n", ev ? rd_kafka_event_error_string(ev) : "timed out");
                rc = 1;
        } else {
                size_t cnt;
                const rd_kafka_ConfigResource_t **res =
                        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &cnt);
                for (size_t i = 0; i < cnt; i++)
                        if (rd_kafka_ConfigResource_error(res[i])) {
                                fprintf(stderr, "kafka-topics: %s: %s\n", topic,
                                        rd_kafka_ConfigResource_error_string(res[i]));
                                rc = 1;
                        }
        }
        if (ev)
                rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_ConfigResource_destroy(cr);
        return rc;
}

int main(int argc, char **argv) {
        if (argc < 4) {
                fprintf(stderr, "usage: kafka-topics BOOTSTRAP create PARTITIONS TOPIC... | watermarks TOPIC\n");
                return 64;
        }
        char e[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], e, sizeof e);
        rd_kafka_conf_set(conf, "log_level", "3", e, sizeof e);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        if (!rk) {
                fprintf(stderr, "kafka-topics: %s\n", e);
                return 1;
        }
        int rc = 64;
        if (strcmp(argv[2], "committed") == 0 && argc == 5)
                rc = committed(argv[1], argv[3], argv[4]);
        else if (strcmp(argv[2], "create") == 0 && argc >= 5)
                rc = create(rk, atoi(argv[3]), argc - 4, argv + 4);
        else if (strcmp(argv[2], "config") == 0 && (argc == 4 || argc == 6))
                rc = config(rk, argv[3], argc == 6 ? argv[4] : NULL, argc == 6 ? argv[5] : NULL);
        else if (strcmp(argv[2], "watermarks") == 0)
                rc = watermarks(rk, argv[3]);
        rd_kafka_destroy(rk);
        return rc;
}
