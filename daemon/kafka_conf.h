/* What the consumer and the relay share about librdkafka: setting a property
 * with a clear error, and routing librdkafka's own log lines through log.h
 * (with log.queue=true they arrive on the thread that polls). */
#pragma once

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* rd_kafka_conf_set; on failure "kafka.KEY: reason" into err and -EINVAL. */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t err_size);

/* A log callback for rd_kafka_conf_set_log_cb: the line goes to log.h, named
 * by the client (rd_kafka_name). Never more urgent than LOG_ERR. */
void kafka_log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf);

/* A consumer for tools that assign partitions themselves and commit nothing
 * (allvarsctl events, the benchmark's readers): bootstrap, group.id, no auto
 * commit, librdkafka's own log at errors only, then the extra key/value pairs
 * (a NULL-terminated list, may be NULL), polled through its consumer queue.
 * NULL with a one-line reason in err on failure. */
rd_kafka_t *kafka_reader_new(const char *bootstrap, const char *group, const char *const *extra, char *err,
                             size_t err_size);

/* The number of partitions of a topic, from the cluster's metadata; a negative
 * value with a one-line reason in err when the topic is unknown or the cluster
 * does not answer within timeout_ms. Partitions are numbered 0 .. count-1. */
int kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t err_size);
