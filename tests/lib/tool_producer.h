/* The test tools' producer (referral-gen, outcome-gen and hostile-gen in
 * tests/tools/): an idempotent librdkafka producer that counts its delivery
 * reports, retries a full queue, and tells at the end whether every message
 * it was given was delivered. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

typedef struct tool_producer {
        rd_kafka_t *rk;
        const char *name;               /* the tool's, for its error lines */
        long sent, delivered, failed;
} tool_producer;

/* bootstrap, then NULL-terminated pairs of librdkafka properties that add to
 * or override the defaults (idempotence on, linger.ms 5, log_level 3); a
 * NULL value leaves its property as it is.
 * Returns 0, or -1 after printing why on stderr. */
int tool_producer_new(tool_producer *p, const char *name, const char *bootstrap, ...)
        __attribute__((sentinel));

/* Produce one message, waiting while librdkafka's queue is full. msgflags:
 * RD_KAFKA_MSG_F_FREE (the producer frees buf, also when it fails) or
 * RD_KAFKA_MSG_F_COPY. partition: RD_KAFKA_PARTITION_UA for the partitioner's. */
void tool_produce(tool_producer *p, const char *topic, int32_t partition, const char *key, void *buf, size_t len,
                  int msgflags);

/* Wait for every delivery report (up to 60 s) and destroy the producer.
 * Returns 0 when every message was delivered, else 1. */
int tool_producer_finish(tool_producer *p);
