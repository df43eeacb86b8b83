/* The instances table and the metrics' extra database figures. See instances.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "instances.h"
#include "lifecycle.h"
#include "relay.h"
#include "pg.h"

#define SQL_TS(p) "(timestamptz 'epoch' + (" p ")::bigint * interval '1 microsecond')"

void instance_self_init(instance_self *self, const char *version) {
        *self = (instance_self){.pid = (int)getpid(), .version = version, .started = clock_realtime()};
        if (gethostname(self->host, sizeof self->host) < 0 || !self->host[0])
                snprintf(self->host, sizeof self->host, "unknown");
        self->host[sizeof self->host - 1] = 0;
        snprintf(self->id, sizeof self->id, "%s:%d:%" PRId64, self->host, self->pid, (int64_t)self->started);
}

static int exec_params(store *st, const char *what, const char *sql, int n, const char *const *params,
                       PGresult **ret) {
        PGresult *res = PQexecParams(store_pg(st), sql, n, NULL, params, NULL, NULL, 0);
        ExecStatusType s = PQresultStatus(res);
        if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
                int r = pg_fail_result(store_session(st), what, res);
                PQclear(res);
                return r;
        }
        if (ret)
                *ret = res;
        else
                PQclear(res);
        return 0;
}

static const char SQL_HEARTBEAT[] =
        "WITH forget AS ("
        "  DELETE FROM allvarsd.instances WHERE heartbeat_at < now() - interval '" INSTANCES_FORGET_AFTER "')"
        " INSERT INTO allvarsd.instances (instance_id, host, pid, version, started_at, heartbeat_at, relay_active,"
        "   partitions, decided, dead_lettered, error_transient, error_data, error_deployment, error_other)"
        " VALUES ($1::text, $2::text, $3::integer, $4::text, " SQL_TS("$5") ", now(), $6::boolean, $7::integer, $8::bigint,"
        "   $9::bigint, nullif($10::text, ''), nullif($11::text, ''), nullif($12::text, ''), nullif($13::text, ''))"
        " ON CONFLICT (instance_id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL,"
        "   relay_active = EXCLUDED.relay_active, partitions = EXCLUDED.partitions, decided = EXCLUDED.decided,"
        "   dead_lettered = EXCLUDED.dead_lettered, error_transient = EXCLUDED.error_transient,"
        "   error_data = EXCLUDED.error_data, error_deployment = EXCLUDED.error_deployment,"
        "   error_other = EXCLUDED.error_other";

int instances_heartbeat(store *st, const instance_self *self, const instance_beat *beat) {
        char pid[16], started[24], parts[16], decided[24], dead[24];
        snprintf(pid, sizeof pid, "%d", self->pid);
        snprintf(started, sizeof started, "%" PRId64, (int64_t)self->started);
        snprintf(parts, sizeof parts, "%u", beat->partitions);
        snprintf(decided, sizeof decided, "%" PRIu64, beat->decided);
        snprintf(dead, sizeof dead, "%" PRIu64, beat->dead_lettered);
        const char *params[13] = {self->id, self->host, pid, self->version, started,
                                  beat->relay_active ? "true" : "false", parts, decided, dead};
        for (int i = 0; i < 4; i++)
                params[9 + i] = beat->last_error[i] ? beat->last_error[i] : "";
        return exec_params(st, "instance heartbeat", SQL_HEARTBEAT, 13, params, NULL);
}

int instances_stopped(store *st, const instance_self *self) {
        const char *params[1] = {self->id};
        return exec_params(st, "instance stopped",
                           "UPDATE allvarsd.instances SET stopped_at = now(), relay_active = false"
                           " WHERE instance_id = $1::text",
                           1, params, NULL);
}

/* $1 now (the daemon's clock), $2 the relay's lock key. An advisory lock on
 * one bigint shows in pg_locks as classid = its high, objid = its low 32 bits,
 * objsubid = 1 (PostgreSQL's manual, "pg_locks"). */
static const char SQL_FIGURES[] =
        "SELECT (SELECT count(*) FROM allvarsd.cases c WHERE " CASE_SQL_OVERDUE("c", SQL_TS("$1")) "),"
        "       (SELECT count(*) FROM allvarsd.cases"
        "         WHERE closed_at IS NULL AND awaiting_assessment"
        "           AND protective_assessment_due < " SQL_TS("$1") ")"
        /* and the children's assessments owed without a case (docs/domain.md "Protective assessment") */
        "       + (SELECT count(*) FROM allvarsd.assessment_duties d"
        "           WHERE d.recorded_at IS NULL AND d.due_at < " SQL_TS("$1")
        "             AND NOT EXISTS (SELECT 1 FROM allvarsd.cases c WHERE c.case_id = d.case_id)),"
        "       (SELECT count(*) FROM pg_catalog.pg_locks"
        "         WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        "           AND classid::bigint = ($2::bigint >> 32) AND objid::bigint = ($2::bigint & 4294967295))";

int instances_figures_read(store *st, usec_t now, instances_figures *ret) {
        char n[24], key[24];
        snprintf(n, sizeof n, "%" PRId64, (int64_t)now);
        snprintf(key, sizeof key, "%lld", (long long)RELAY_LOCK_KEY);
        const char *params[2] = {n, key};
        PGresult *res;
        int r = exec_params(st, "instance figures", SQL_FIGURES, 2, params, &res);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1) {
                PQclear(res);
                return pg_fail(store_session(st), -EIO, "instance figures: no row");
        }
        ret->cases_overdue = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        ret->protective_overdue = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
        ret->relay_holders = strtoull(PQgetvalue(res, 0, 2), NULL, 10);
        PQclear(res);
        return 0;
}
