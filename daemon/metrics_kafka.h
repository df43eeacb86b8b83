/* librdkafka's statistics (statistics.interval.ms) into the metrics registry:
 * per broker the round trip time and request queues, per client the message
 * queues. The JSON is read with json-c. */
#pragma once

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "metrics.h"

/* Parse one statistics document of client c into the registry. Returns 0 or
 * -EINVAL when it is not the JSON librdkafka writes. Pure but for the registry. */
int metrics_kafka_stats(metrics_client c, const char *json, size_t len);

/* When metrics.listen is set: ask conf for statistics every 5 s (unless
 * kafka.statistics.interval.ms says otherwise) and install the callback that
 * feeds metrics_kafka_stats. A no-op otherwise. Returns 0 or a negative errno
 * with the reason in err. */
int metrics_kafka_enable(rd_kafka_conf_t *conf, metrics_client c, const config *cfg, char *err, size_t err_size);
