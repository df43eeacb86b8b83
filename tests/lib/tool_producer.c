/* See tool_producer.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tool_producer.h"

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        tool_producer *p = opaque;
        if (m->err)
                p->failed++;
        else
                p->delivered++;
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *k, const char *v) {
        char e[512];
        if (rd_kafka_conf_set(conf, k, v, e, sizeof e) == RD_KAFKA_CONF_OK)
                return 0;
        fprintf(stderr, "%s: %s = %s: %s\n", name, k, v, e);
        return -1;
}

int tool_producer_new(tool_producer *p, const char *name, const char *bootstrap, ...) {
        *p = (tool_producer){.name = name};
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        int r = set(conf, name, "bootstrap.servers", bootstrap) | set(conf, name, "enable.idempotence", "true") |
                set(conf, name, "linger.ms", "5") | set(conf, name, "log_level", "3");
        va_list ap;
        va_start(ap, bootstrap);
        for (const char *k; r == 0 && (k = va_arg(ap, const char *));) {
                const char *v = va_arg(ap, const char *);
                if (v)
                        r = set(conf, name, k, v);
        }
        va_end(ap);
        if (r < 0) {
                rd_kafka_conf_destroy(conf);
                return -1;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_opaque(conf, p);
        char e[512];
        p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        if (!p->rk) {
                fprintf(stderr, "%s: %s\n", name, e);
                return -1;
        }
        return 0;
}

void tool_produce(tool_producer *p, const char *topic, int32_t partition, const char *key, void *buf, size_t len,
                  int msgflags) {
        for (;;) {
                rd_kafka_resp_err_t err = rd_kafka_producev(
                        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(msgflags),
                        RD_KAFKA_V_END);
                if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                        rd_kafka_poll(p->rk, 10);
                        continue;
                }
                if (err) {
                        fprintf(stderr, "%s: produce: %s\n", p->name, rd_kafka_err2str(err));
                        if (msgflags & RD_KAFKA_MSG_F_FREE)
                                free(buf);
                        p->failed++;
                }
                break;
        }
        p->sent++;
        rd_kafka_poll(p->rk, 0);
}

int tool_producer_finish(tool_producer *p) {
        rd_kafka_flush(p->rk, 60000);
        rd_kafka_destroy(p->rk);
        p->rk = NULL;
        return p->failed || p->delivered != p->sent ? 1 : 0;
}
