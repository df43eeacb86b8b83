/* allvarsctl: its Kafka configuration and its producer (see kafka.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

static const char *config_kafka(const ctl *c, const char *key) {
        for (size_t i = 0; c->cfg && i < c->cfg->n_kafka; i++)
                if (strcmp(c->cfg->kafka[i].key, key) == 0)
                        return c->cfg->kafka[i].value;
        return NULL;
}

bool ctl_kafka_known(const ctl *c) {
        if (c->bootstrap)
                return true;
        /* kafka.embedded lives inside the daemon's process: nothing to reach. */
        if (!c->cfg || c->cfg->kafka_embedded)
                return false;
        return config_kafka(c, "bootstrap.servers") || config_kafka(c, "metadata.broker.list");
}

int ctl_kafka_conf(ctl *c, rd_kafka_conf_t **ret) {
        if (!ctl_kafka_known(c)) {
                ctl_fail(c, "no Kafka to reach: give --bootstrap HOST:PORT or kafka.bootstrap.servers in the "
                            "configuration");
                return -ENOENT;
        }
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* Our own defaults first: the configuration's kafka.* keys may change them. */
        if (rd_kafka_conf_set(conf, "client.id", "allvarsctl", err, sizeof err) ||
            rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) ||
            rd_kafka_conf_set(conf, "message.timeout.ms", "30000", err, sizeof err))
                goto fail;
        for (size_t i = 0; c->cfg && !c->cfg->kafka_embedded && i < c->cfg->n_kafka; i++)
                if (rd_kafka_conf_set(conf, c->cfg->kafka[i].key, c->cfg->kafka[i].value, err, sizeof err)) {
                        ctl_fail(c, "kafka.%s: %s", c->cfg->kafka[i].key, err);
                        rd_kafka_conf_destroy(conf);
                        return -EINVAL;
                }
        if (c->bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof err))
                goto fail;
        *ret = conf;
        return 0;
fail:
        ctl_fail(c, "Kafka: %s", err);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
}

typedef struct delivery_state {
        bool done;
        rd_kafka_resp_err_t err;
        rd_kafka_msg_status_t status;
        int32_t partition;
        int64_t offset;
} delivery_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        delivery_state *d = m->_private;
        d->done = true;
        d->err = m->err;
        d->status = rd_kafka_message_status(m);
        d->partition = m->partition;
        d->offset = m->offset;
}

int ctl_produce(ctl *c, const char *topic, const void *key, size_t key_len, const void *payload, size_t len,
                rd_kafka_headers_t *headers, ctl_delivery *ret) {
        rd_kafka_conf_t *conf;
        char err[512];
        int r = ctl_kafka_conf(c, &conf);
        if (r < 0) {
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return r;
        }
        /* Exactly one copy, written to every in-sync replica (docs/design.md "The producer"). */
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err) ||
            rd_kafka_conf_set(conf, "acks", "all", err, sizeof err)) {
                ctl_fail(c, "Kafka: %s", err);
                rd_kafka_conf_destroy(conf);
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return -EINVAL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) {
                ctl_fail(c, "Kafka: %s", err);
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return -EINVAL;
        }
        delivery_state d = {.partition = -1, .offset = -1};
        rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)payload, len),
                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
        if (e) {
                if (headers)
                        rd_kafka_headers_destroy(headers);  /* not taken over on failure */
                ctl_fail(c, "cannot produce to %s: %s", topic, rd_kafka_err2str(e));
                rd_kafka_destroy(rk);
                return -EIO;
        }
        /* The delivery report comes within message.timeout.ms, whatever happens. */
        while (!d.done) {
                rd_kafka_flush(rk, 1000);
                if (!d.done && rd_kafka_fatal_error(rk, err, sizeof err)) {
                        ctl_fail(c, "Kafka: %s", err);
                        break;
                }
        }
        rd_kafka_destroy(rk);
        if (!d.done)
                return -EIO;
        if (d.err) {
                ctl_fail(c, "not delivered to %s: %s%s", topic, rd_kafka_err2str(d.err),
                         d.status == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED ? " (it may have been written all the same)"
                                                                             : "");
                return -EIO;
        }
        *ret = (ctl_delivery){.partition = d.partition, .offset = d.offset};
        return 0;
}

void ctl_watermarks_free(ctl_watermarks *w) {
        for (size_t i = 0; i < w->n; i++) {
                free(w->topic[i]);
                free(w->partition[i]);
                free(w->high[i]);
        }
        free(w->topic);
        free(w->partition);
        free(w->high);
        *w = (ctl_watermarks){0};
}

int ctl_watermarks_query(ctl *c, ctl_watermarks *w, const char *who) {
        PGresult *res = ctl_exec(c,
                                 "SELECT DISTINCT topic, partition FROM allvarsd.consumer_offsets ORDER BY 1, 2",
                                 NULL);
        if (!res)
                return -EIO;
        size_t n = (size_t)PQntuples(res);
        w->topic = calloc(n + 1, sizeof *w->topic);
        w->partition = calloc(n + 1, sizeof *w->partition);
        w->high = calloc(n + 1, sizeof *w->high);
        if (!w->topic || !w->partition || !w->high) {
                PQclear(res);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                w->topic[i] = strdup(PQgetvalue(res, (int)i, 0));
                w->partition[i] = strdup(PQgetvalue(res, (int)i, 1));
                w->n++;
                if (!w->topic[i] || !w->partition[i]) {
                        PQclear(res);
                        return -ENOMEM;
                }
        }
        PQclear(res);
        if (n == 0 || !ctl_kafka_known(c))
                return 0;

        rd_kafka_conf_t *conf;
        int r = ctl_kafka_conf(c, &conf);
        if (r < 0)
                return r;
        char err[512];
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) {
                ctl_fail(c, "Kafka: %s", err);
                return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
                int64_t lo, hi;
                rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, w->topic[i], atoi(w->partition[i]),
                                                                         &lo, &hi, 5000);
                if (e) {
                        fprintf(stderr, "allvarsctl %s: lag of %s [%s] unknown: %s\n", who, w->topic[i],
                                w->partition[i], rd_kafka_err2str(e));
                        /* An unreachable cluster would cost the timeout per partition. */
                        if (e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT ||
                            e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
                                break;
                        continue;
                }
                if (asprintf(&w->high[i], "%lld", (long long)hi) < 0) {
                        w->high[i] = NULL;
                        r = -ENOMEM;
                        break;
                }
        }
        rd_kafka_destroy(rk);
        return r;
}
