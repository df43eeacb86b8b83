/* librdkafka statistics into metrics. See metrics_kafka.h; the fields are
 * those of librdkafka's STATISTICS.md (2.0.2): rtt in microseconds. */
#include <errno.h>
#include <string.h>

#include <json-c/json.h>

#include "kafka_conf.h"
#include "metrics_kafka.h"

#define STATS_INTERVAL_MS "5000"

static int64_t get_int(json_object *o, const char *key) {
        json_object *v;
        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

static double get_usec(json_object *o, const char *window, const char *key) {
        json_object *w, *v;
        if (!json_object_object_get_ex(o, window, &w) || !json_object_object_get_ex(w, key, &v))
                return 0;
        return (double)json_object_get_int64(v) / 1e6;
}

int metrics_kafka_stats(metrics_client c, const char *json, size_t len) {
        json_tokener *tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_object *root = json_tokener_parse_ex(tok, json, (int)len);
        bool ok = root && json_tokener_get_error(tok) == json_tokener_success &&
                  json_object_is_type(root, json_type_object);
        json_tokener_free(tok);
        if (!ok) {
                json_object_put(root);
                return -EINVAL;
        }

        unsigned slot = 0;
        json_object *brokers;
        if (json_object_object_get_ex(root, "brokers", &brokers) && json_object_is_type(brokers, json_type_object)) {
                json_object_object_foreach(brokers, name, b) {
                        (void)name;
                        if (!json_object_is_type(b, json_type_object))
                                continue;
                        metrics_broker mb = {.nodeid = (int32_t)get_int(b, "nodeid")};
                        /* The bootstrap entries (nodeid -1), the group coordinator's
                         * second connection to a broker (source "logical") and the
                         * internal ones are not brokers of their own. */
                        json_object *src;
                        const char *source = json_object_object_get_ex(b, "source", &src)
                                                     ? json_object_get_string(src)
                                                     : "";
                        if (mb.nodeid < 0 || slot >= METRICS_MAX_BROKERS || strcmp(source, "logical") == 0 ||
                            strcmp(source, "internal") == 0)
                                continue;
                        mb.rtt_avg = get_usec(b, "rtt", "avg");
                        mb.rtt_p99 = get_usec(b, "rtt", "p99");
                        mb.outbuf_requests = get_int(b, "outbuf_cnt");
                        mb.waitresp_requests = get_int(b, "waitresp_cnt");
                        mb.requests_sent = get_int(b, "tx");
                        mb.responses_received = get_int(b, "rx");
                        metrics_broker_set(c, slot++, &mb);
                }
        }
        for (; slot < METRICS_MAX_BROKERS; slot++)
                metrics_broker_set(c, slot, NULL);

        int64_t fetchq = 0;
        json_object *topics;
        if (json_object_object_get_ex(root, "topics", &topics) && json_object_is_type(topics, json_type_object)) {
                json_object_object_foreach(topics, tname, t) {
                        (void)tname;
                        json_object *parts;
                        if (!json_object_object_get_ex(t, "partitions", &parts) ||
                            !json_object_is_type(parts, json_type_object))
                                continue;
                        json_object_object_foreach(parts, pname, p) {
                                (void)pname;
                                fetchq += get_int(p, "fetchq_cnt");
                        }
                }
        }
        metrics_client_set(c, get_int(root, "msg_cnt"), fetchq, get_int(root, "replyq"));
        json_object_put(root);
        return 0;
}

static int on_stats(rd_kafka_t *rk, char *json, size_t len, metrics_client c) {
        (void)rk;
        metrics_kafka_stats(c, json, len);
        return 0;       /* librdkafka frees json */
}

static int on_consumer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)opaque;
        return on_stats(rk, json, len, MC_CONSUMER);
}

static int on_producer_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
        (void)opaque;
        return on_stats(rk, json, len, MC_PRODUCER);
}

int metrics_kafka_enable(rd_kafka_conf_t *conf, metrics_client c, const config *cfg, char *err, size_t err_size) {
        if (!cfg->metrics_listen || !cfg->metrics_listen[0])
                return 0;
        bool given = false;
        for (size_t i = 0; i < cfg->n_kafka; i++)
                if (strcmp(cfg->kafka[i].key, "statistics.interval.ms") == 0)
                        given = true;
        if (!given) {
                int r = kafka_conf_set(conf, "statistics.interval.ms", STATS_INTERVAL_MS, err, err_size);
                if (r < 0)
                        return r;
        }
        rd_kafka_conf_set_stats_cb(conf, c == MC_CONSUMER ? on_consumer_stats : on_producer_stats);
        return 0;
}
