/* See relay_dead.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "events.h"
#include "log.h"
#include "pg.h"
#include "relay_dead.h"
#include "strbuf.h"

bool relay_dead_error(rd_kafka_resp_err_t err) {
        return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
               err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE || err == RD_KAFKA_RESP_ERR_INVALID_RECORD;
}

static const char SQL_TAKE[] =
        "WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS u(id, err)),"
        " d AS (DELETE FROM allvarsd.outbox o USING u WHERE o.id = u.id"
        "       RETURNING o.id, o.event_id, o.topic, o.key, o.ce_type, octet_length(o.payload) AS bytes,"
        "                 o.created_at, u.err)"
        " INSERT INTO allvarsd.outbox_undeliverable"
        " SELECT id, event_id, topic, key, ce_type, bytes, created_at, now(), err FROM d"
        " ON CONFLICT DO NOTHING"
        " RETURNING event_id::text, topic, key, payload_bytes, id, error";

/* Delivered ones have left the outbox (schemas/004_outbox_sent.sql). */
static const char SQL_EVENT[] =
        "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
        " SELECT $1::uuid, $2, $3, $4, timestamptz 'epoch' + $5::bigint * interval '1 microsecond', decode($6, 'hex')"
        "  WHERE NOT EXISTS (SELECT 1 FROM allvarsd.outbox_sent s WHERE s.event_id = $1::uuid AND s.once)"
        " ON CONFLICT (event_id) WHERE once DO NOTHING";

static int exec(PGconn *pg, const char *sql, int n, const char *const *params, ExecStatusType want,
                PGresult **ret, char *why, size_t why_size) {
        /* Bounded like every reply the relay awaits (docs/design.md "Silent links"). */
        int w;
        PGresult *res = pg_await_result(pg, n ? PQsendQueryParams(pg, sql, n, NULL, params, NULL, NULL, 0)
                                              : PQsendQuery(pg, sql),
                                        &w);
        if (w < 0) {
                snprintf(why, why_size, "undeliverable events: %s",
                         w == -ETIMEDOUT ? "no reply from PostgreSQL in time" : "connection to PostgreSQL lost");
                return -ECONNRESET;
        }
        if (PQresultStatus(res) != want) {
                const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                snprintf(why, why_size, "undeliverable events: %s", m ? m : "no result");
                PQclear(res);
                return -EIO;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

static bool is_uuid(const char *s) {
        return strlen(s) == 36 && strspn(s, "0123456789abcdefABCDEF-") == 36;
}

static int write_events(PGconn *pg, const event_list *ev, char *why, size_t why_size) {
        for (size_t i = 0; i < ev->n; i++) {
                const outbox_event *e = &ev->v[i];
                char *hex = malloc(2 * e->len + 1), t[24];
                if (!hex)
                        return -ENOMEM;
                for (size_t k = 0; k < e->len; k++)
                        snprintf(hex + 2 * k, 3, "%02x", e->payload[k]);
                hex[2 * e->len] = 0;
                snprintf(t, sizeof t, "%" PRId64, (int64_t)e->ce_time);
                const char *params[] = {e->event_id, e->topic, e->key, e->ce_type, t, hex};
                int r = exec(pg, SQL_EVENT, 6, params, PGRES_COMMAND_OK, NULL, why, why_size);
                free(hex);
                if (r < 0)
                        return r;
        }
        return 0;
}

int relay_dead_write(PGconn *pg, const config *cfg, const relay_dead *v, size_t n, usec_t now, char *why,
                     size_t why_size) {
        strbuf ids = {0}, errs = {0};
        strbuf_adds(&ids, "{");
        strbuf_adds(&errs, "{");
        for (size_t i = 0; i < n; i++) {
                strbuf_addf(&ids, "%s%" PRId64, i ? "," : "", v[i].id);
                strbuf_addf(&errs, "%s%s", i ? "," : "", rd_kafka_err2name(v[i].err));
        }
        strbuf_adds(&ids, "}");
        strbuf_adds(&errs, "}");
        event_list ev = {0};
        PGresult *res = NULL;
        int r = ids.oom || errs.oom ? -ENOMEM : 0;
        if (r >= 0)
                r = exec(pg, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL, why, why_size);
        if (r >= 0) {
                const char *params[] = {ids.s, errs.s};
                r = exec(pg, SQL_TAKE, 2, params, PGRES_TUPLES_OK, &res, why, why_size);
        }
        for (int i = 0; r >= 0 && res && i < PQntuples(res); i++) {
                const char *event_id = PQgetvalue(res, i, 0), *topic = PQgetvalue(res, i, 1),
                           *key = PQgetvalue(res, i, 2);
                codec_error err = {.reason = DLR_OVERSIZED};
                snprintf(err.detail, sizeof err.detail, "the event %s is %s bytes: refused by the brokers (%s)",
                         event_id, PQgetvalue(res, i, 3), PQgetvalue(res, i, 5));
                r = events_dead_letter(cfg, topic, -1, strtoll(PQgetvalue(res, i, 4), NULL, 10), &err,
                                       is_uuid(key) ? key : NULL, now, &ev);
                if (r >= 0)
                        r = events_undeliverable(cfg, key, event_id, topic, now, &ev);
        }
        PQclear(res);
        if (r >= 0)
                r = write_events(pg, &ev, why, why_size);
        if (r >= 0)
                r = exec(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL, why, why_size);
        if (r < 0 && r != -ECONNRESET && PQtransactionStatus(pg) != PQTRANS_IDLE) {
                char ignored[8];
                exec(pg, "ROLLBACK", 0, NULL, PGRES_COMMAND_OK, NULL, ignored, sizeof ignored);
        }
        if (r == -ENOMEM)
                snprintf(why, why_size, "undeliverable events: out of memory");
        event_list_free(&ev);
        strbuf_free(&ids);
        strbuf_free(&errs);
        return r < 0 ? r : 0;
}

#define REFUSAL_LOG_EVERY (60 * USEC_PER_SEC) /* a lasting refusal is said again this often */

/* What an operator is to do about a delivery that keeps failing. */
static const char *refusal_hint(rd_kafka_resp_err_t err) {
        switch (err) {
        case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
                /* docs/design.md "The outbox relay": the CreateTime is this host's clock. */
                return "the message timestamp is this host's wall clock, and the brokers accept none more than "
                       "log.message.timestamp.after.max.ms (1 h by default) ahead of theirs: this host's clock is "
                       "probably ahead, correct it (NTP, timedatectl)";
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
                return "the topic is missing: create it (docs/contract.md \"Topics\")";
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
                return "the relay's principal may not write the topic: grant it Write";
        case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
                return "not acknowledged within message.timeout.ms: the brokers are unreachable or overloaded";
        default:
                return "the brokers' error";
        }
}

void relay_refusal_note(relay_refusal *x, rd_kafka_resp_err_t err, const char *topic, char *status,
                        size_t status_size) {
        usec_t mono = clock_monotonic();
        x->n++;
        /* The brokers' answer (a positive code) says what to fix; librdkafka's own
         * errors (negative: _DESTROY, _MSG_TIMED_OUT, ...) that follow it in the same
         * episode are its consequences, and do not take its place. */
        if (x->err > 0 && err < 0)
                err = x->err;
        bool say = x->err != err || mono - x->logged >= REFUSAL_LOG_EVERY;
        x->err = err;
        snprintf(status, status_size, "events held: %s (%s)", rd_kafka_err2name(err),
                 err == RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP ? "this host's clock ahead of the brokers'?" : topic);
        if (!say)
                return;
        x->logged = mono;
        log_struct(LOG_ERR, MSGID_KAFKA_ERROR,
                   "MESSAGE=Outbox relay: the brokers refuse events (%s, topic %s): %s; %" PRIu64
                   " deliveries refused since it began, the events stay in the outbox and are retried",
                   rd_kafka_err2name(err), topic, refusal_hint(err), x->n, NULL);
}

void relay_refusal_over(relay_refusal *x, char *status) {
        if (!x->err)
                return;
        log_struct(LOG_NOTICE, MSGID_KAFKA_ERROR,
                   "MESSAGE=Outbox relay: the brokers accept events again (%" PRIu64
                   " deliveries refused meanwhile, the last with %s; all retried)",
                   x->n, rd_kafka_err2name(x->err), NULL);
        x->err = RD_KAFKA_RESP_ERR_NO_ERROR;
        x->n = 0;
        status[0] = 0;
}
