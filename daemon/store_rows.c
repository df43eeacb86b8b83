/* The rows every transaction shares (store_rows.h). */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "header_blob.h"
#include "relay.h"
#include "store.h"
#include "store_rows.h"

/* once: the event may exist already, and its event_id is unique
 * (schemas/012_outbox_once.sql). */
#define OUTBOX_COLUMNS(once)                                                                            \
        "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload, once)"           \
        " SELECT u.id::uuid, u.topic, u.key, u.type, u.t, u.payload, " once                             \
        "   FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bytea[])" \
        "        WITH ORDINALITY AS u(id, topic, key, type, t, payload, ord)"

/* An event made again (its id names what it is about: a dead letter's
 * topic, partition and offset; an alert's case and due time; an outcome's
 * event id) must not fail the transaction, nor be published again once
 * delivered (then in outbox_sent; the one race left is in
 * schemas/004_outbox_sent.sql). Planned at each call (pg_pipe_send_sql): as a
 * prepared statement on a session begun while outbox_sent was empty, its
 * generic plan scanned the whole of outbox_sent for each event, 100-240 ms a
 * call by the end of a 1,000,000-referral replay (bench/README.md), until
 * autovacuum's ANALYZE of the table made it plan again. */
static const char rows_outbox_once_sql[] =
        OUTBOX_COLUMNS("true")
        "  WHERE NOT EXISTS (SELECT 1 FROM allvarsd.outbox_sent s WHERE s.event_id = u.id::uuid AND s.once)"
        "  ORDER BY u.ord"
        " ON CONFLICT (event_id) WHERE once DO NOTHING";

const pg_statement store_rows_statements[] = {
        { "rows_offsets_cas",
          "WITH v AS (SELECT * FROM unnest($2::text[], $3::int4[], $4::int8[], $5::int8[])"
          "                  AS v(topic, part, expected, next)),"
          " upd AS (UPDATE allvarsd.consumer_offsets o SET next_offset = v.next, updated_at = now()"
          "           FROM v WHERE v.expected >= 0 AND o.consumer_group = $1::text AND o.topic = v.topic"
          "            AND o.partition = v.part AND o.next_offset = v.expected RETURNING 1),"
          " ins AS (INSERT INTO allvarsd.consumer_offsets (consumer_group, topic, partition, next_offset)"
          "         SELECT $1::text, v.topic, v.part, v.next FROM v WHERE v.expected < 0"
          "         ON CONFLICT DO NOTHING RETURNING 1)"
          " SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)" },
        /* In the order the events were made: the relay publishes by id per key.
         * Events made only here and now (a new referral's): no index on their
         * ids (schemas/012_outbox_once.sql). */
        { "rows_outbox", OUTBOX_COLUMNS("false") "  ORDER BY u.ord" },
        { "rows_audit",
          "INSERT INTO allvarsd.audit (case_id, referral_id, at, actor_kind, actor_name, action, before, after,"
          "                            detail)"
          " SELECT a.case_id::uuid, a.referral_id, a.at, a.kind, a.name, a.action, a.before, a.after, a.detail"
          "   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],"
          "               $7::text[], $8::text[], $9::text[]) WITH ORDINALITY"
          "        AS a(case_id, referral_id, at, kind, name, action, before, after, detail, ord)"
          "  ORDER BY a.ord" },
        { "rows_dead_letters",
          "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset, reason,"
          "                                   detail, payload, source_key, source_headers, source_ce_id,"
          "                                   source_event_id, received_at)"
          " SELECT u.id::uuid, u.topic, u.part, u.off, u.reason, u.detail, u.payload, u.key, u.headers, u.ce_id,"
          "        u.event_id, $12::timestamptz"
          "   FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::text[], $6::text[], $7::bytea[],"
          "               $8::bytea[], $9::bytea[], $10::text[], $11::text[])"
          "        AS u(id, topic, part, off, reason, detail, payload, key, headers, ce_id, event_id)"
          " ON CONFLICT DO NOTHING" },
        /* The referrals' statistics rows as the tables now say they are
         * (schemas/011_referral_stats.sql: the view defines them, in the
         * table's column order): inserted, or updated when they differ.
         * Selected by case id (referrals' unique index), keyed by referral id
         * (schemas/019_referral_stats_by_referral.sql), in its order, so
         * that two transactions lock them alike. */
        { "rows_stats",
          "INSERT INTO allvarsd.referral_stats AS s"
          " SELECT v.* FROM allvarsd.referral_stats_source v WHERE v.case_id = ANY ($1::text[]::uuid[])"
          "  ORDER BY v.referral_id"
          " ON CONFLICT (referral_id) DO UPDATE"
          " SET (" STATS_COLUMNS ") = ROW(excluded.*)"
          " WHERE (s.*) IS DISTINCT FROM (excluded.*)" },
        /* Wakes the relay; delivered at COMMIT, and only then (docs/design.md
         * "The outbox relay": NOTIFY only wakes it, the table is the truth). */
        { "rows_notify", "SELECT pg_notify('" RELAY_NOTIFY_CHANNEL "', '')" },
        { NULL, NULL },
};

static const uint32_t audit_oids[ROWS_AUDIT_COLS] = { PG_OID_TEXT, PG_OID_TEXT, PG_OID_TIMESTAMPTZ,
                                                      PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT,
                                                      PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT };
static const uint32_t outbox_oids[ROWS_OUTBOX_COLS] = { PG_OID_TEXT, PG_OID_TEXT, PG_OID_TEXT,
                                                        PG_OID_TEXT, PG_OID_TIMESTAMPTZ, PG_OID_BYTEA };
static const uint32_t dead_oids[ROWS_DEAD_COLS] = { PG_OID_TEXT,  PG_OID_TEXT,  PG_OID_INT4,  PG_OID_INT8,
                                                    PG_OID_TEXT,  PG_OID_TEXT,  PG_OID_BYTEA, PG_OID_BYTEA,
                                                    PG_OID_BYTEA, PG_OID_TEXT,  PG_OID_TEXT };
static const uint32_t offset_oids[ROWS_OFFSET_COLS] = { PG_OID_TEXT, PG_OID_INT4, PG_OID_INT8, PG_OID_INT8 };

static void reset_cols(pg_arr *a, const uint32_t *oids, size_t n) {
        for (size_t i = 0; i < n; i++)
                pg_arr_reset(&a[i], oids[i]);
}

static void free_cols(pg_arr *a, size_t n) {
        for (size_t i = 0; i < n; i++)
                pg_arr_free(&a[i]);
}

void store_rows_reset(store_rows *w) {
        reset_cols(w->audit, audit_oids, ROWS_AUDIT_COLS);
        reset_cols(w->outbox[0], outbox_oids, ROWS_OUTBOX_COLS);
        reset_cols(w->outbox[1], outbox_oids, ROWS_OUTBOX_COLS);
        reset_cols(w->dead, dead_oids, ROWS_DEAD_COLS);
        reset_cols(w->offsets, offset_oids, ROWS_OFFSET_COLS);
        pg_arr_reset(&w->stats, PG_OID_TEXT);
        w->n_audit = w->n_outbox[0] = w->n_outbox[1] = w->n_dead = w->n_offsets = w->n_stats = 0;
        w->q_outbox[0] = w->q_outbox[1] = -1;
}

void store_rows_free(store_rows *w) {
        if (!w)
                return;
        free_cols(w->audit, ROWS_AUDIT_COLS);
        free_cols(w->outbox[0], ROWS_OUTBOX_COLS);
        free_cols(w->outbox[1], ROWS_OUTBOX_COLS);
        free_cols(w->dead, ROWS_DEAD_COLS);
        free_cols(w->offsets, ROWS_OFFSET_COLS);
        pg_arr_free(&w->stats);
}

static const char *or_empty(const char *s) {
        return s ? s : "";
}

void store_rows_audit(store_rows *w, const audit_entry *e) {
        assert(e->action && e->actor_kind);
        pg_arr *a = w->audit;
        pg_arr_text(&a[0], e->case_id);
        pg_arr_text(&a[1], e->referral_id);
        pg_arr_ts(&a[2], e->at);
        pg_arr_text(&a[3], e->actor_kind);
        pg_arr_text(&a[4], or_empty(e->actor_name));
        pg_arr_text(&a[5], e->action);
        pg_arr_text(&a[6], or_empty(e->before));
        pg_arr_text(&a[7], or_empty(e->after));
        pg_arr_text(&a[8], or_empty(e->detail));
        w->n_audit++;
}

void store_rows_events(store_rows *w, const event_list *ev, size_t from, bool once) {
        for (size_t i = from; i < ev->n; i++) {
                const outbox_event *e = &ev->v[i];
                int k = once || e->again;
                pg_arr *a = w->outbox[k];
                pg_arr_text(&a[0], e->event_id);
                pg_arr_text(&a[1], e->topic);
                pg_arr_text(&a[2], e->key);
                pg_arr_text(&a[3], e->ce_type);
                pg_arr_ts(&a[4], e->ce_time);
                pg_arr_bytes(&a[5], e->payload, e->len);
                w->n_outbox[k]++;
        }
}

void store_rows_stats(store_rows *w, const char *case_id) {
        pg_arr_text(&w->stats, case_id);
        w->n_stats++;
}

int store_rows_dead_letter(store_rows *w, const config *cfg, usec_t now, const store_message *m,
                           const codec_error *err, const char *case_id, event_list *ev) {
        /* What its producer knows it by (docs/contract.md "Dead letters"): the key,
         * the ce_id header when it is an id, the message's own id; the headers for
         * a replay. A key larger than a message could be is not kept. */
        char ce_id[HEADER_ID_MAX + 1];
        header_id(m->headers, "ce_id", ce_id);
        const bool key = m->key && m->key_len <= cfg->max_message_bytes;
        const dead_letter_source src = {
                .topic = m->topic,
                .partition = m->partition,
                .offset = m->offset,
                .key = key ? m->key : NULL,
                .key_len = key ? m->key_len : 0,
                .ce_id = ce_id[0] ? ce_id : NULL,
                .event_id = m->source_event_id,
        };
        uint8_t *headers = NULL;
        size_t headers_len = 0;
        int r = header_blob_encode(m->headers, &headers, &headers_len);
        if (r == -ENOMEM)
                return r;
        size_t first = ev->n;
        r = events_dead_letter_of(cfg, &src, err, case_id, now, ev);
        if (r < 0) {
                free(headers);
                return r;
        }
        assert(ev->n == first + 1);     /* a dead letter always has its event */
        pg_arr *a = w->dead;
        pg_arr_text(&a[0], ev->v[first].event_id);
        pg_arr_text(&a[1], m->topic);
        pg_arr_int4(&a[2], m->partition);
        pg_arr_int8(&a[3], m->offset);
        pg_arr_text(&a[4], dead_letter_reason_code(err->reason));
        pg_arr_text(&a[5], err->detail);
        if (m->payload && m->len <= cfg->max_message_bytes)
                pg_arr_bytes(&a[6], m->payload, m->len);
        else
                pg_arr_null(&a[6]);
        if (src.key)
                pg_arr_bytes(&a[7], src.key, src.key_len);
        else
                pg_arr_null(&a[7]);
        if (headers && headers_len <= cfg->max_message_bytes)
                pg_arr_bytes(&a[8], headers, headers_len);
        else
                pg_arr_null(&a[8]);
        free(headers);
        if (src.ce_id)
                pg_arr_text(&a[9], src.ce_id);
        else
                pg_arr_null(&a[9]);
        if (src.event_id)
                pg_arr_text(&a[10], src.event_id);
        else
                pg_arr_null(&a[10]);
        w->n_dead++;
        return 0;
}

static int add_cols(pg_params *p, pg_arr *a, size_t n) {
        int r = 0;
        for (size_t i = 0; i < n; i++)
                if (pg_params_arr(p, &a[i]) < 0)
                        r = -ENOMEM;
        return r;
}

int store_rows_send_offsets(store_rows *w, pg_pipe *p, const char *group, const store_offset *offs, size_t n,
                            pg_params *params) {
        pg_arr *a = w->offsets;
        for (size_t i = 0; i < n; i++) {
                pg_arr_text(&a[0], offs[i].topic);
                pg_arr_int4(&a[1], offs[i].partition);
                pg_arr_int8(&a[2], offs[i].expected_next < 0 ? -1 : offs[i].expected_next);
                pg_arr_int8(&a[3], offs[i].new_next);
        }
        w->n_offsets = (unsigned)n;
        *params = (pg_params){ 0 };
        pg_params_text(params, group);
        if (add_cols(params, a, ROWS_OFFSET_COLS) < 0)
                return pg_fail(p->s, -ENOMEM, "offsets: out of memory");
        return pg_pipe_send(p, "rows_offsets_cas", params, 0);
}

int store_rows_offsets_check(pg_session *s, const PGresult *res, size_t n) {
        if (strtoull(PQgetvalue(res, 0, 0), NULL, 10) != n)
                return pg_fail(s, -ESTALE, "batch: a partition's stored offset moved (rebalanced or another consumer)");
        return 0;
}

int store_rows_send(store_rows *w, pg_pipe *p, usec_t now, pg_params params[ROWS_PARAMS]) {
        int r = 0;
        w->q_outbox[0] = w->q_outbox[1] = -1;
        for (size_t i = 0; i < ROWS_PARAMS; i++)
                params[i] = (pg_params){ 0 };
        if (w->n_audit > 0) {
                if (add_cols(&params[0], w->audit, ROWS_AUDIT_COLS) < 0)
                        return pg_fail(p->s, -ENOMEM, "audit: out of memory");
                if ((r = pg_pipe_send(p, "rows_audit", &params[0], 0)) < 0)
                        return r;
        }
        if (w->n_dead > 0) {
                if (add_cols(&params[1], w->dead, ROWS_DEAD_COLS) < 0)
                        return pg_fail(p->s, -ENOMEM, "dead letters: out of memory");
                pg_params_ts(&params[1], now);
                if ((r = pg_pipe_send(p, "rows_dead_letters", &params[1], 0)) < 0)
                        return r;
        }
        if (w->n_stats > 0) {
                if (pg_params_arr(&params[4], &w->stats) < 0)
                        return pg_fail(p->s, -ENOMEM, "statistics: out of memory");
                if ((r = pg_pipe_send(p, "rows_stats", &params[4], 0)) < 0)
                        return r;
        }
        for (int once = 0; once < 2; once++) {
                if (w->n_outbox[once] == 0)
                        continue;
                if (add_cols(&params[2 + once], w->outbox[once], ROWS_OUTBOX_COLS) < 0)
                        return pg_fail(p->s, -ENOMEM, "outbox: out of memory");
                r = once ? pg_pipe_send_sql(p, "rows_outbox_once", rows_outbox_once_sql, &params[3], 0)
                         : pg_pipe_send(p, "rows_outbox", &params[2], 0);
                if ((w->q_outbox[once] = r) < 0)
                        return r;
        }
        if (w->n_outbox[0] + w->n_outbox[1] > 0 && (r = pg_pipe_send(p, "rows_notify", NULL, 0)) < 0)
                return r;
        return 0;
}

unsigned store_rows_events_written(const store_rows *w, const pg_pipe *p) {
        unsigned n = 0;
        for (int once = 0; once < 2; once++)
                if (w->q_outbox[once] >= 0 && p->res[w->q_outbox[once]])
                        n += pg_cmd_rows(p->res[w->q_outbox[once]]);
        return n;
}

int store_rows_write(store_rows *w, pg_session *s, usec_t now, bool commit, unsigned *ret_events) {
        pg_params params[ROWS_PARAMS];
        pg_pipe p;
        int r = pg_pipe_begin(s, &p);
        if (r >= 0)
                r = store_rows_send(w, &p, now, params);
        if (r >= 0 && commit)
                r = pg_pipe_send(&p, "store_commit", NULL, 0);
        if (r >= 0)
                r = pg_pipe_sync(&p);
        if (r >= 0 && ret_events)
                *ret_events = store_rows_events_written(w, &p);
        pg_pipe_end(&p);
        return r < 0 ? r : 0;
}

int store_rows_ready(store *st, const pg_statement *list, bool begin) {
        if (!store_connected(st))
                return -ENOTCONN;
        int r = store_ready(st, store_rows_statements);
        if (r >= 0)
                r = begin ? store_begin(st, list) : store_ready(st, list);
        return r;
}
