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
