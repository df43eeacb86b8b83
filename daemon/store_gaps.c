/* Gaps in an input partition: the offsets Kafka no longer had when the
 * consumer came to read them. See store.h (store_partition_gap) and
 * schemas/009_partition_gaps.sql. */
#include <errno.h>

#include "cleanup.h"
#include "events.h"
#include "store.h"
#include "store_rows.h"

static const pg_statement gap_statements[] = {
        { "gap_insert",
          "INSERT INTO allvarsd.partition_gaps (consumer_group, topic, partition, from_offset, to_offset,"
          "                                     log_start, detected_at)"
          " VALUES ($1::text, $2::text, $3::int4, $4::int8, $5::int8, $6::int8, $7::timestamptz)"
          " ON CONFLICT DO NOTHING RETURNING 1" },
        { NULL, NULL },
};

int store_partition_gap(store *st, const config *cfg, const char *group, const char *topic, int32_t partition,
                        int64_t from, int64_t to, int64_t log_start, usec_t now, bool *ret_new) {
        pg_session *s = store_session(st);
        event_list ev = { 0 };
        store_rows rows = { 0 };
        bool inserted = false;
        int r = events_partition_gap(cfg, topic, partition, from, to, now, &ev);
        if (r < 0) {
                event_list_free(&ev);
                return pg_fail(s, r, "partition gap: cannot build the alert");
        }
        r = pg_connected(s) ? store_ready(st, store_rows_statements) : -ENOTCONN;
        if (r >= 0)
                r = store_begin(st, gap_statements);
        if (r >= 0) {
                pg_params p = { 0 };
                pg_params_text(&p, group);
                pg_params_text(&p, topic);
                pg_params_int4(&p, partition);
                pg_params_int8(&p, from);
                pg_params_int8(&p, to);
                pg_params_int8(&p, log_start);
                pg_params_ts(&p, now);
                _cleanup_pqclear_ PGresult *res = NULL;
                r = pg_exec(s, "gap_insert", &p, 0, &res);
                inserted = r >= 0 && PQntuples(res) > 0;
        }
        /* Once per gap: a restart that finds it again raises no second alert. */
        if (r >= 0 && inserted) {
                store_rows_reset(&rows);
                store_rows_events(&rows, &ev, 0, true);
                pg_params params[ROWS_PARAMS];
                pg_pipe p;
                r = pg_pipe_begin(s, &p);
                if (r >= 0)
                        r = store_rows_send(&rows, &p, now, params);
                if (r >= 0)
                        r = pg_pipe_sync(&p);
                pg_pipe_end(&p);
        }
        if (r >= 0)
                r = store_commit(st);
        if (r < 0)
                store_rollback(st);
        store_rows_free(&rows);
        event_list_free(&ev);
        if (r >= 0 && ret_new)
                *ret_new = inserted;
        return r;
}
