/* The relay's PostgreSQL session: opened without blocking (PQconnectStart and
 * PQconnectPoll), every reply awaited in bounded time, the advisory lock that
 * makes one relay active, LISTEN for the outbox's notifications, and the
 * marking of delivered rows (docs/design.md "The outbox relay"). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "relay_state.h"
#include "sqlstate.h"

void pg_close(relay *r, const char *why) {
        if (r->pg)
                PQfinish(r->pg);
        r->pg = NULL;
        r->pg_state = PG_NONE;
        r->session_set = false;
        if (r->active) {
                r->active = false;
                r->fig.active = false;
                log_struct(LOG_WARNING, MSGID_RELAY, "MESSAGE=Outbox relay standby: %s", why, NULL);
        }
        usec_t mono = clock_monotonic();
        r->reconnect_at = mono + r->reconnect_backoff;
        r->reconnect_backoff = r->reconnect_backoff * 2 > RECONNECT_MAX ? RECONNECT_MAX : r->reconnect_backoff * 2;
}

void pg_start(relay *r) {
        /* short statements: JIT only costs */
        static const char *const defaults[] = {"options", "-c jit=off", NULL};
        static const char *const fixed[] = {"application_name", "allvarsd-relay", NULL};
        const char *keys[PGCONN_KEYS_MAX], *vals[PGCONN_KEYS_MAX];
        pgconn_keys(r->cfg->db_conninfo, r->cfg->db_password, defaults, fixed, keys, vals);

        r->pg = PQconnectStartParams(keys, vals, 1);
        if (!r->pg || PQstatus(r->pg) == CONNECTION_BAD) {
                set_error(r, "PostgreSQL: %s", r->pg ? PQerrorMessage(r->pg) : "out of memory");
                pg_close(r, "cannot connect to PostgreSQL");
                return;
        }
        r->pg_state = PG_CONNECTING;
        r->pg_polling = PGRES_POLLING_WRITING;
        r->connect_deadline = clock_monotonic() + CONNECT_TIMEOUT;
}

static void pg_notice_ignore(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

short pg_connect_events(const relay *r) {
        return r->pg_polling == PGRES_POLLING_READING ? POLLIN : POLLOUT;
}

/* Advance a connection attempt as far as its socket allows, without waiting. */
void pg_advance(relay *r) {
        for (int i = 0; i < 32 && r->pg_state == PG_CONNECTING; i++) {
                struct pollfd p = {.fd = PQsocket(r->pg), .events = pg_connect_events(r)};
                if (p.fd >= 0 && poll(&p, 1, 0) == 0) {
                        if (clock_monotonic() >= r->connect_deadline) {
                                set_error(r, "PostgreSQL: connection attempt timed out");
                                pg_close(r, "cannot connect to PostgreSQL");
                        }
                        return;
                }
                r->pg_polling = PQconnectPoll(r->pg);
                if (r->pg_polling == PGRES_POLLING_FAILED) {
                        set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
                        pg_close(r, "cannot connect to PostgreSQL");
                        return;
                }
                if (r->pg_polling != PGRES_POLLING_OK)
                        continue;
                /* libpq would print server notices (e.g. the FATAL of a terminated
                 * session) on stderr; errors reach last_error instead. */
                PQsetNoticeProcessor(r->pg, pg_notice_ignore, NULL);
                r->pg_state = PG_READY;
                r->reconnect_backoff = RECONNECT_MIN;
                r->next_lock_try = 0;
        }
}

/* A failed statement: the connection's end, or an error of the statement. */
int pg_failed(relay *r, PGresult *res, const char *what) {
        if (!r->pg)
                return -ECONNRESET; /* given up already (relay_exec): said so there */
        set_error(r, "PostgreSQL %s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(r->pg));
        metrics_database_error(sqlstate_classify(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL),
                               r->fig.last_error);
        if (res)
                PQclear(res);
        if (PQstatus(r->pg) == CONNECTION_BAD) {
                pg_close(r, "connection to PostgreSQL lost");
                return -ECONNRESET;
        }
        return -EIO;
}

/* Read what the server sent: notifications, or the connection's end. */
int pg_consume(relay *r) {
        if (!PQconsumeInput(r->pg)) {
                set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
                pg_close(r, "connection to PostgreSQL lost");
                return -ECONNRESET;
        }
        PGnotify *n;
        while ((n = PQnotifies(r->pg))) {
                r->query_due = true;
                PQfreemem(n);
        }
        return 0;
}

/* The relay's statements, prepared once per session (try_lock). */
static const struct {
        const char *name, *sql;
} statements[] = {
        { "relay_lock", "SELECT pg_try_advisory_lock($1::bigint)" },
        /* The sweep (relay_read.c): from the oldest row, the rows in flight
         * left out; a lower id that committed late is found here. */
        { "relay_read",
          "SELECT id, event_id::text, topic, key, ce_type, ce_time, payload, created_at"
          "  FROM allvarsd.outbox"
          " WHERE id <> ALL($1::bigint[]) AND key <> ALL($2::text[])"
          " ORDER BY id LIMIT $3::integer" },
        /* The fast pass (relay_read.c): the ids not seen yet below hi ($2),
         * and the rows above it, from the primary key's range, not its head. */
        { "relay_read_new",
          "SELECT id, event_id::text, topic, key, ce_type, ce_time, payload, created_at FROM ("
          "  (SELECT id, event_id, topic, key, ce_type, ce_time, payload, created_at FROM allvarsd.outbox"
          "    WHERE id = ANY($2::bigint[]) AND key <> ALL($3::text[]))"
          "  UNION ALL"
          "  (SELECT id, event_id, topic, key, ce_type, ce_time, payload, created_at FROM allvarsd.outbox"
          "    WHERE id > $1::bigint AND key <> ALL($3::text[]) ORDER BY id LIMIT $4::integer)"
          ") o ORDER BY id" },
        /* A row already gone (another relay marked it) returns nothing here. An
         * event id already in outbox_sent (re-inserted in the window that
         * schemas/004_outbox_sent.sql describes, so published twice) is not
         * recorded twice: the row still leaves the outbox, the marking never
         * fails on it. Only the events that may be made again have unique ids
         * (once, schemas/012_outbox_once.sql); the others are only inserted,
         * without ON CONFLICT, which would make each row a speculative insertion
         * (and a confirmation record in the WAL) whatever its once. */
        { "relay_mark_sent",
          "WITH d AS (DELETE FROM allvarsd.outbox WHERE id = ANY($1::bigint[])"
          "           RETURNING id, event_id, topic, key, ce_type, ce_time,"
          "                     octet_length(payload) AS payload_bytes, created_at, once),"
          " plain AS (INSERT INTO allvarsd.outbox_sent"
          "                  (id, event_id, topic, key, ce_type, ce_time, payload_bytes, created_at, sent_at, once)"
          "           SELECT d.id, d.event_id, d.topic, d.key, d.ce_type, d.ce_time, d.payload_bytes, d.created_at,"
          "                  now(), false"
          "             FROM d WHERE NOT d.once)"
          " INSERT INTO allvarsd.outbox_sent"
          "        (id, event_id, topic, key, ce_type, ce_time, payload_bytes, created_at, sent_at, once)"
          " SELECT d.id, d.event_id, d.topic, d.key, d.ce_type, d.ce_time, d.payload_bytes, d.created_at, now(), true"
          "   FROM d WHERE d.once"
          " ON CONFLICT (event_id) WHERE once DO NOTHING" },
};

/* The reply of a statement just sent (sent: what PQsend* returned), awaited
 * in bounded time (pg_await: a link that drops packets without a reset would
 * otherwise hold the relay for as long as it lasts). The last result; NULL
 * when the connection was given up, and closed here, so that pg_failed()
 * returns -ECONNRESET. docs/design.md "Silent links". */
static PGresult *exec_sent(relay *r, int sent) {
        int w;
        PGresult *res = pg_await_result(r->pg, sent, &w);
        if (w == 0)
                return res;
        if (w == -ETIMEDOUT)
                set_error(r, "PostgreSQL: no reply within %lld ms", (long long)(PG_REPLY_TIMEOUT_DEFAULT / 1000));
        else
                set_error(r, "PostgreSQL: %s", PQerrorMessage(r->pg));
        pg_close(r, "connection to PostgreSQL lost");
        return NULL;
}

/* sql by the simple protocol (several statements allowed). */
static PGresult *exec_simple(relay *r, const char *sql) {
        return exec_sent(r, PQsendQuery(r->pg, sql));
}

PGresult *exec_prepared(relay *r, const char *name, const pg_params *p, int result_format) {
        return exec_sent(r, PQsendQueryPrepared(r->pg, name, p->n, p->values, p->lengths, p->formats, result_format));
}

int try_lock(relay *r) {
        if (!r->session_set) {
                /* The lock lives as long as this session: let the server notice a
                 * dead peer (host gone, network cut) in about a minute rather than
                 * the kernel's two hours, so that a standby can take over. */
                /* The relay's writes (marking rows sent, its own dead letters) do
                 * not wait for their WAL flush: losing one in a crash of the server
                 * only publishes its rows again, with the same ce_id, which the
                 * contract already allows after any crash between a delivery and
                 * its marking. Waiting made every new event queue behind the last
                 * marking's fsync, and doubled the commits that the decisions'
                 * fsyncs wait behind (docs/design.md "The outbox relay"). */
                /* Its statements planned once per session, and by the primary
                 * key whatever the outbox's statistics: each looks rows up by id
                 * (a range from hi, the ids of a pass), which the index serves at
                 * any size of the table. Left to choose, the server planned them
                 * again at every call (a few ids: cheaper, it estimated, than
                 * the generic plan's ten), 0.2-0.4 ms a call, a fifth of its CPU
                 * at 500 referrals/s; and a generic plan made while the outbox
                 * was a page would scan it whole as a backlog grows, until an
                 * ANALYZE (docs/design.md "The outbox relay"). */
                PGresult *res = exec_simple(r, "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; "
                                               "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 60000; "
                                               "SET synchronous_commit = off; "
                                               "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off");
                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return pg_failed(r, res, "session settings");
                PQclear(res);
                for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
                        res = exec_sent(r, PQsendPrepare(r->pg, statements[i].name, statements[i].sql, 0, NULL));
                        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                                return pg_failed(r, res, statements[i].name);
                        PQclear(res);
                }
                r->session_set = true;
        }
        pg_params p = {0};
        pg_params_int8(&p, RELAY_LOCK_KEY);
        PGresult *res = exec_prepared(r, "relay_lock", &p, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_failed(r, res, "advisory lock");
        bool got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
        if (!got)
                return 0;
        res = exec_simple(r, "LISTEN " RELAY_NOTIFY_CHANNEL);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_failed(r, res, "LISTEN");
        PQclear(res);
        r->active = true;
        r->fig.active = true;
        r->query_due = true;    /* a NOTIFY sent before LISTEN is not delivered: look now */
        r->sweep_due = true;    /* from the oldest row: another relay may have left rows below hi */
        log_struct(LOG_NOTICE, MSGID_RELAY, "MESSAGE=Outbox relay active: holds the advisory lock", NULL);
        return 0;
}

/* The relay's own statements, with binary parameters (pg.h). */

int mark_sent(relay *r) {
        if (r->n_delivered == 0)
                return 0;
        _cleanup_(pg_arr_free) pg_arr ids = { 0 };
        pg_arr_reset(&ids, PG_OID_INT8);
        for (size_t i = 0; i < r->n_delivered; i++)
                pg_arr_int8(&ids, r->delivered[i]);
        pg_params p = { 0 };
        if (pg_params_arr(&p, &ids) < 0)
                return -ENOMEM;
        PGresult *res = exec_prepared(r, "relay_mark_sent", &p, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
                return pg_failed(r, res, "marking outbox rows sent");
        PQclear(res);
        r->n_delivered = 0;
        return 0;
}
