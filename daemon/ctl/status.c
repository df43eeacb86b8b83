/* allvarsctl status: the running instances (as they report themselves in
 * allvarsd.instances: schemas/007_instances.sql) and which one holds the relay,
 * how far the consumers are (and how far behind, when Kafka is known), the
 * gaps in their input, the outbox backlog, dead letters, cases by district and state, the alerts of the
 * last day, and each instance's last database error of each class. Figures
 * since an instance's start are labelled so; the rest are the database's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kafka.h"
#include "print.h"
#include "relay.h"

static const char usage[] =
        "Usage: allvarsctl status [--json] [--config PATH | --database CONNINFO] [--bootstrap HOST:PORT]\n"
        "                         [--now TIME]\n"
        "The instances of allvarsd (host, pid, version, started, last heartbeat, whether it holds the\n"
        "outbox relay, its counts since start), the relay lock's holders, consumer positions per\n"
        "partition (and the lag, when Kafka is known from kafka.bootstrap.servers or --bootstrap), gaps\n"
        "in the input (messages gone from Kafka before they were read), the outbox backlog and the age of its oldest unsent event, dead letters, cases by district and\n"
        "state, the alerts raised in the last 24 hours, and each running instance's last database\n"
        "error of each class.\n\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists);\n"
        "                         its database.* keys give the connection\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI instead; without either,\n"
        "                         libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE, ...)\n"
        "  --bootstrap HOST:PORT  the Kafka cluster, for the lag\n"
        "  --now TIME             count ages as of this RFC 3339 time (default: clock.file, else now)\n"
        "  --json                 one JSON object, for scripts\n";

/* An instance is running when it has not stopped and its heartbeat (every
 * 15 s, by the server's clock) is recent. */
#define RUNNING(i) "(" i ".stopped_at IS NULL AND " i ".heartbeat_at > now() - interval '60 seconds')"

/* $1 now, $2 topics, $3 partitions, $4 high watermarks (NULL: unknown), $5 the relay's lock key. */
#define SUMMARY_SQL                                                                                              \
        "SELECT " CTL_SQL_TS("$1::timestamptz") " AS at,"                                                        \
        " (SELECT count(*) FROM allvarsd.cases WHERE closed_at IS NULL) AS open_cases,"                          \
        " (SELECT count(*) FROM allvarsd.cases c WHERE " CTL_SQL_OVERDUE("c", "$1::timestamptz") ") AS overdue_cases"

/* With insecure.allow_plaintext = true in the configuration: said first. */
static const ctl_section summary_insecure = {
        "summary", NULL, CTL_RECORD,
        SUMMARY_SQL ", 'insecure.allow_plaintext = true: TLS to PostgreSQL and Kafka not enforced' AS transport",
        NULL, NULL};

static const ctl_section sections[] = {
        {"summary", NULL, CTL_RECORD, SUMMARY_SQL, NULL, NULL},
        {"instances", "Instances (decided and dead-lettered: since each one started)", CTL_TABLE,
         "SELECT i.host, i.pid, i.version, " CTL_SQL_TS("i.started_at") " AS started,"
         " floor(extract(epoch FROM now() - i.heartbeat_at))::bigint AS heartbeat_age_s,"
         " CASE WHEN i.stopped_at IS NOT NULL THEN 'stopped' WHEN " RUNNING("i") " THEN 'running'"
         "  ELSE 'silent' END AS state,"
         " CASE WHEN i.relay_active AND " RUNNING("i") " THEN 'active' ELSE 'standby' END AS relay,"
         " i.partitions, i.decided AS decided_since_start, i.dead_lettered AS dead_lettered_since_start"
         " FROM allvarsd.instances i"
         " ORDER BY i.stopped_at IS NOT NULL, i.heartbeat_at DESC, i.host, i.pid",
         "none", NULL},
        {"relay", "Outbox relay", CTL_RECORD,
         /* pg_locks shows a one-bigint advisory lock as classid (high) and objid (low 32 bits). */
         "SELECT (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted"
         "        AND database = " THIS_DATABASE_OID
         "        AND objsubid = 1 AND classid::bigint = ($5::bigint >> 32)"
         "        AND objid::bigint = ($5::bigint & 4294967295))"
         "        AS lock_holders,"
         " (SELECT string_agg(i.host || ' pid ' || i.pid, ', ' ORDER BY i.host, i.pid) FROM allvarsd.instances i"
         "   WHERE i.relay_active AND " RUNNING("i") ") AS held_by",
         NULL, NULL},
        {"consumers", "Consumer positions", CTL_TABLE,
         "SELECT o.consumer_group AS \"group\", o.topic, o.partition, o.next_offset,"
         " w.high AS high_watermark,"
         " CASE WHEN w.high IS NOT NULL THEN greatest(w.high - o.next_offset, 0) END AS lag,"
         " " CTL_SQL_TS("o.updated_at") " AS updated_at"
         " FROM allvarsd.consumer_offsets o"
         " LEFT JOIN unnest($2::text[], $3::int4[], $4::int8[]) AS w(topic, partition, high)"
         "  ON w.topic = o.topic AND w.partition = o.partition"
         " ORDER BY o.consumer_group, o.topic, o.partition",
         "none", NULL},
        {"outbox", "Outbox (database)", CTL_RECORD,
         "SELECT b.unsent, " CTL_SQL_TS("b.oldest") " AS oldest_unsent,"
         " CASE WHEN b.oldest IS NOT NULL THEN " CTL_SQL_DURATION("greatest(t.s, 0)") " END AS oldest_age,"
         " t.s AS oldest_age_seconds"
         " FROM (SELECT count(*) AS unsent, min(created_at) AS oldest FROM allvarsd.outbox) b"
         " CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM $1::timestamptz - b.oldest))::bigint AS s) t",
         NULL, "oldest_age_seconds"},
        {"dead_letters", "Dead letters (database)", CTL_RECORD,
         "SELECT count(*) AS total,"
         " count(*) FILTER (WHERE received_at > $1::timestamptz - interval '24 hours') AS last_24h,"
         " count(*) FILTER (WHERE replayed_at IS NULL) AS not_replayed,"
         " " CTL_SQL_TS("max(received_at)") " AS latest"
         " FROM allvarsd.dead_letter_summary",
         NULL, NULL},
        {"cases", "Cases by district and state (database)", CTL_TABLE,
         "SELECT c.district, c.state, count(*) AS cases,"
         " count(*) FILTER (WHERE " CTL_SQL_OVERDUE("c", "$1::timestamptz") ") AS overdue"
         " FROM allvarsd.cases c GROUP BY c.district, c.state ORDER BY c.district, c.state",
         "none", NULL},
        {"partition_gaps", "Gaps: input gone from Kafka before it was read, never decided", CTL_TABLE,
         "SELECT g.consumer_group AS \"group\", g.topic, g.partition, g.from_offset,"
         " g.to_offset - 1 AS to_offset, g.to_offset - g.from_offset AS messages,"
         " " CTL_SQL_TS("g.detected_at") " AS detected_at"
         " FROM allvarsd.partition_gaps g ORDER BY g.detected_at DESC, g.topic, g.partition LIMIT 50",
         "none", NULL},
        {"alerts", "Alerts raised in the last 24 hours", CTL_TABLE,
         "SELECT kind, count(*) AS alerts FROM allvarsd.case_alerts"
         " WHERE raised_at > $1::timestamptz - interval '24 hours' AND raised_at <= $1::timestamptz"
         " GROUP BY kind ORDER BY kind",
         "none", NULL},
        {"errors", "Last database error of each class (running instances)", CTL_TABLE,
         "SELECT i.host, i.pid, e.class, e.error FROM allvarsd.instances i"
         " CROSS JOIN LATERAL (VALUES ('transient', i.error_transient), ('data', i.error_data),"
         "  ('deployment', i.error_deployment), ('other', i.error_other)) AS e(class, error)"
         " WHERE e.error IS NOT NULL AND " RUNNING("i") " ORDER BY i.host, i.pid, e.class",
         "none", NULL},
};

int ctl_status_main(int argc, char **argv) {
        ctl c;
        ctl_init(&c, "status", usage);
        int o;
        while ((o = ctl_getopt(&c, argc, argv, NULL)) != -1)
                return o == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);

        int r = ctl_connect(&c, true);
        ctl_watermarks w = {0};
        ctl_params p = {0};
        if (r >= 0)
                r = ctl_watermarks_query(&c, &w, "status");
        if (r >= 0) {
                ctl_param(&p, CTL_OID_TIMESTAMPTZ, c.now);
                r = ctl_param_array(&p, CTL_OID_TEXT_ARRAY, (const char *const *)w.topic, w.n);
        }
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT4_ARRAY, (const char *const *)w.partition, w.n);
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT8_ARRAY, (const char *const *)w.high, w.n);
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)RELAY_LOCK_KEY);
        if (r >= 0)
                ctl_param(&p, CTL_OID_INT8, key);
        if (r == -ENOMEM)
                ctl_fail(&c, "out of memory");
        ctl_section shown[sizeof sections / sizeof sections[0]];
        memcpy(shown, sections, sizeof shown);
        if (c.cfg && c.cfg->insecure_allow_plaintext)
                shown[0] = summary_insecure;
        if (r >= 0)
                r = ctl_show(&c, shown, sizeof shown / sizeof shown[0], &p);
        ctl_params_done(&p);
        ctl_watermarks_free(&w);
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
