/* See kafka_conf.h. */
#include <errno.h>
#include <stdio.h>

#include "kafka_conf.h"
#include "log.h"

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t err_size) {
        char e[256];
        if (rd_kafka_conf_set(conf, key, value, e, sizeof e) != RD_KAFKA_CONF_OK) {
                snprintf(err, err_size, "kafka.%s: %s", key, e);
                return -EINVAL;
        }
        return 0;
}

rd_kafka_t *kafka_reader_new(const char *bootstrap, const char *group, const char *const *extra, char *err,
                             size_t err_size) {
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int r = kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, err_size);
        if (r == 0)
                r = kafka_conf_set(conf, "group.id", group, err, err_size);
        if (r == 0)
                r = kafka_conf_set(conf, "enable.auto.commit", "false", err, err_size);
        if (r == 0)
                r = kafka_conf_set(conf, "log_level", "3", err, err_size);
        for (size_t i = 0; r == 0 && extra && extra[i]; i += 2)
                r = kafka_conf_set(conf, extra[i], extra[i + 1], err, err_size);
        if (r < 0) {
                rd_kafka_conf_destroy(conf);
                return NULL;
        }
        char e[256];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
        if (!rk) {
                rd_kafka_conf_destroy(conf);
                snprintf(err, err_size, "%s", e);
                return NULL;
        }
        rd_kafka_poll_set_consumer(rk);
        return rk;
}

void kafka_log_cb(const rd_kafka_t *rk, int level, const char *facility, const char *buf) {
        /* librdkafka logs a fatal error at LOG_EMERG, which journald would send to every terminal. */
        if (level < LOG_ERR)
                level = LOG_ERR;
        if (level > log_get_max_priority())
                return;
        log_struct(level, MSGID_KAFKA_ERROR, "KAFKA_CLIENT=%s", rd_kafka_name(rk), "KAFKA_FACILITY=%s", facility,
                   "MESSAGE=librdkafka %s %s: %s", rd_kafka_name(rk), facility, buf, NULL);
}

int kafka_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *err, size_t err_size) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
        rd_kafka_topic_destroy(t);
        if (!e && (md->topic_cnt != 1 || md->topics[0].err))
                e = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        int n = e ? -EIO : md->topics[0].partition_cnt;
        if (e)
                snprintf(err, err_size, "topic %s: %s", topic, rd_kafka_err2str(e));
        if (md)
                rd_kafka_metadata_destroy(md);
        return n;
}
