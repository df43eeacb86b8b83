/* allvarsctl's Kafka client: a librdkafka configuration from the
 * configuration file and --bootstrap (status reads watermarks with it), and
 * one idempotent producer for the two commands that write a message
 * (override, dead-letters replay). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common.h"

/* Kafka: whether a bootstrap is known (--bootstrap or kafka.bootstrap.servers). */
bool ctl_kafka_known(const ctl *c);
/* A librdkafka configuration from the configuration's kafka.* keys and
 * --bootstrap. Returns 0 or a negative errno after printing why. */
int ctl_kafka_conf(ctl *c, rd_kafka_conf_t **ret);

typedef struct ctl_delivery {
        int32_t partition;
        int64_t offset;
} ctl_delivery;

/* Produce one message with an idempotent producer (acks=all), flush, and check
 * its delivery report. headers (may be NULL) is taken over. Returns 0 with
 * where it was written, or a negative errno after printing why. */
int ctl_produce(ctl *c, const char *topic, const void *key, size_t key_len, const void *payload, size_t len,
                rd_kafka_headers_t *headers, ctl_delivery *ret);

/* The high watermark of every partition with a stored position (status,
 * check): topic, partition and high as strings for query parameters; a
 * broker that cannot be reached leaves them unknown (NULL) with one warning
 * naming who. Returns 0 or a negative errno after printing why. */
typedef struct ctl_watermarks {
        size_t n;
        char **topic, **partition, **high;
} ctl_watermarks;
int ctl_watermarks_query(ctl *c, ctl_watermarks *w, const char *who);
void ctl_watermarks_free(ctl_watermarks *w);
