/* The instances table and the metrics' extra database figures. See instances.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "instances.h"
#include "relay.h"
#include "pg.h"
#include "store.h"

void instance_self_init(instance_self *self, const char *version) {
        *self = (instance_self){.pid = (int)getpid(), .version = version, .started = clock_realtime()};
        if (gethostname(self->host, sizeof self->host) < 0 || !self->host[0])
                snprintf(self->host, sizeof self->host, "unknown");
        self->host[sizeof self->host - 1] = 0;
        snprintf(self->id, sizeof self->id, "%s:%d:%" PRId64, self->host, self->pid, (int64_t)self->started);
}

static const pg_statement instances_statements[] = {
        { "instances_heartbeat",
        "WITH forget AS ("
        "  DELETE FROM allvarsd.instances WHERE heartbeat_at < now() - interval '" INSTANCES_FORGET_AFTER "')"
        " INSERT INTO allvarsd.instances (instance_id, host, pid, version, started_at, heartbeat_at, relay_active,"
        "   partitions, decided, dead_lettered, error_transient, error_data, error_deployment, error_other)"
        " VALUES ($1::text, $2::text, $3::integer, $4::text, $5::timestamptz, now(), $6::boolean, $7::integer, $8::bigint,"
        "   $9::bigint, nullif($10::text, ''), nullif($11::text, ''), nullif($12::text, ''), nullif($13::text, ''))"
        " ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL,"
        "   relay_active = EXCLUDED.relay_active, partitions = EXCLUDED.partitions, decided = EXCLUDED.decided,"
        "   dead_lettered = EXCLUDED.dead_lettered, error_transient = EXCLUDED.error_transient,"
        "   error_data = EXCLUDED.error_data, error_deployment = EXCLUDED.error_deployment,"
        "   error_other = EXCLUDED.error_other" },
        { "instances_stopped",
          "UPDATE allvarsd.instances SET stopped_at = now(), relay_active = false WHERE instance_id = $1::text" },
        /* $1 the relay's lock key. An advisory lock on one bigint shows in
         * pg_locks as classid = its high, objid = its low 32 bits, objsubid = 1
         * (PostgreSQL's manual, "pg_locks"). */
        { "instances_figures",
          "SELECT count(*) FROM pg_catalog.pg_locks"
          " WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND database = " THIS_DATABASE_OID
          "   AND classid::bigint = ($1::bigint >> 32) AND objid::bigint = ($1::bigint & 4294967295)" },
        { NULL, NULL },
};

/* One statement of the list on st's session (prepared on first use). */
static int exec(store *st, const char *name, const pg_params *p, PGresult **ret) {
        int r = store_ready(st, instances_statements);
        return r < 0 ? r : pg_exec(store_session(st), name, p, 0, ret);
}

int instances_heartbeat(store *st, const instance_self *self, const instance_beat *beat) {
        pg_params p = {0};
        pg_params_text(&p, self->id);
        pg_params_text(&p, self->host);
        pg_params_int4(&p, self->pid);
        pg_params_text(&p, self->version);
        pg_params_ts(&p, self->started);
        pg_params_bool(&p, beat->relay_active);
        pg_params_int4(&p, (int32_t)beat->partitions);
        pg_params_int8(&p, (int64_t)beat->decided);
        pg_params_int8(&p, (int64_t)beat->dead_lettered);
        for (int i = 0; i < 4; i++)
                pg_params_text(&p, beat->last_error[i] ? beat->last_error[i] : "");
        return exec(st, "instances_heartbeat", &p, NULL);
}

int instances_stopped(store *st, const instance_self *self) {
        pg_params p = {0};
        pg_params_text(&p, self->id);
        return exec(st, "instances_stopped", &p, NULL);
}

int instances_figures_read(store *st, instances_figures *ret) {
        pg_params p = {0};
        pg_params_int8(&p, RELAY_LOCK_KEY);
        PGresult *res;
        int r = exec(st, "instances_figures", &p, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return pg_fail(store_session(st), -EIO, "instance figures: no row");
        }
        ret->relay_holders = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return 0;
}
