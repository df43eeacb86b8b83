/* Gaps in an input partition: the offsets Kafka no longer had when the
 * consumer came to read them. See store.h (store_partition_gap) and
 * schemas/009_partition_gaps.sql. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "events.h"
#include "store_internal.h"

#define SQL_TS(p) "(timestamptz 'epoch' + (" p ")::bigint * interval '1 microsecond')"

static const char SQL_INSERT_GAP[] =
        "INSERT INTO allvarsd.partition_gaps (consumer_group, topic, partition, from_offset, to_offset, log_start,"
        "                                     detected_at)"
        " VALUES ($1, $2, $3::int, $4::bigint, $5::bigint, $6::bigint, " SQL_TS("$7") ")"
        " ON CONFLICT DO NOTHING RETURNING 1";

/* Delivered alerts have left the outbox (schemas/004_outbox_sent.sql). */
static const char SQL_INSERT_ALERT[] =
        "INSERT INTO allvarsd.outbox (event_id, topic, key, ce_type, ce_time, payload)"
        " SELECT $1::uuid, $2, $3, $4, " SQL_TS("$5") ", decode($6, 'hex')"
        "  WHERE NOT EXISTS (SELECT 1 FROM allvarsd.outbox_sent s WHERE s.event_id = $1::uuid)"
        " ON CONFLICT (event_id) DO NOTHING";

static char *hex_of(const uint8_t *v, size_t len) {
        static const char digits[] = "0123456789abcdef";
        char *h = malloc(2 * len + 1);
        if (!h)
                return NULL;
        for (size_t i = 0; i < len; i++) {
                h[2 * i] = digits[v[i] >> 4];
                h[2 * i + 1] = digits[v[i] & 15];
        }
        h[2 * len] = 0;
        return h;
}

int store_partition_gap(store *s, const config *cfg, const char *group, const char *topic, int32_t partition,
                        int64_t from, int64_t to, int64_t log_start, usec_t now, bool *ret_new) {
        event_list events = {0};
        int r = events_partition_gap(cfg, topic, partition, from, to, now, &events);
        if (r < 0)
                return store_fail(s, r, "partition gap: cannot build the alert");
        const outbox_event *e = &events.v[0];
        char *payload = hex_of(e->payload, e->len);
        if (!payload) {
                event_list_free(&events);
                return store_fail(s, -ENOMEM, "partition gap: out of memory");
        }
        char part[16], f[24], t[24], ls[24], at[24], ce_time[24];
        snprintf(part, sizeof part, "%" PRId32, partition);
        snprintf(f, sizeof f, "%" PRId64, from);
        snprintf(t, sizeof t, "%" PRId64, to);
        snprintf(ls, sizeof ls, "%" PRId64, log_start);
        snprintf(at, sizeof at, "%" PRId64, (int64_t)now);
        snprintf(ce_time, sizeof ce_time, "%" PRId64, (int64_t)e->ce_time);
        const char *gap[] = {group, topic, part, f, t, ls, at};
        const char *alert[] = {e->event_id, e->topic, e->key, e->ce_type, ce_time, payload};

        PGconn *pg;
        PGresult *res = NULL;
        bool inserted = false;
        r = store_job_begin(s, &pg);
        if (r >= 0)
                r = store_job_exec(pg, SQL_INSERT_GAP, 7, gap, PGRES_TUPLES_OK, &res);
        if (r >= 0) {
                inserted = PQntuples(res) > 0;
                PQclear(res);
                /* Once per gap: a restart that finds it again raises no second alert. */
                if (inserted)
                        r = store_job_exec(pg, SQL_INSERT_ALERT, 6, alert, PGRES_COMMAND_OK, NULL);
        }
        if (r >= 0)
                r = store_job_exec(pg, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL);
        free(payload);
        event_list_free(&events);
        if (r < 0) {
                store_rollback(s);
                if (r == -ECONNRESET)
                        s->broken = true;
                return store_fail(s, r, "partition gap: recording it failed");
        }
        if (ret_new)
                *ret_new = inserted;
        return 0;
}
