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
