/* allvarsctl status: how far the consumers are (and how far behind, when Kafka
 * is known), the gaps in their input, the outbox backlog, dead letters, cases by district and state, and
 * the alerts of the last day. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kafka.h"
#include "print.h"

static const char usage[] =
        "Usage: allvarsctl status [--json] [--config PATH | --database CONNINFO] [--bootstrap HOST:PORT]\n"
        "                         [--now TIME]\n"
        "Consumer positions per partition (and the lag, when Kafka is known from kafka.bootstrap.servers\n"
        "or --bootstrap), gaps in the input (messages gone from Kafka before they were read), the outbox backlog and the age of its oldest unsent event, dead letters, cases\n"
        "by district and state, and the alerts raised in the last 24 hours.\n\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists);\n"
        "                         its database.* keys give the connection\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI instead; without either,\n"
        "                         libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE, ...)\n"
        "  --bootstrap HOST:PORT  the Kafka cluster, for the lag\n"
        "  --now TIME             count ages as of this RFC 3339 time (default: clock.file, else now)\n"
        "  --json                 one JSON object, for scripts\n";

#define SUMMARY_SQL                                                                                              \
        "SELECT " CTL_SQL_TS("$1") " AS at,"                                                                     \
        " (SELECT count(*) FROM allvarsd.cases WHERE closed_at IS NULL) AS open_cases,"                          \
        " (SELECT count(*) FROM allvarsd.cases c WHERE " CTL_SQL_OVERDUE("c", "$1") ") AS overdue_cases"

/* With insecure.allow_plaintext = true in the configuration: said first. */
static const ctl_section summary_insecure = {
        "summary", NULL, CTL_RECORD,
        SUMMARY_SQL ", 'insecure.allow_plaintext = true: TLS to PostgreSQL and Kafka not enforced' AS transport",
        NULL, NULL};

/* $1 now, $2 topics, $3 partitions, $4 high watermarks (NULL: unknown). */
static const ctl_section sections[] = {
        {"summary", NULL, CTL_RECORD, SUMMARY_SQL, NULL, NULL},
        {"consumers", "Consumer positions", CTL_TABLE,
         "SELECT o.consumer_group AS \"group\", o.topic, o.partition, o.next_offset,"
         " w.high AS high_watermark,"
         " CASE WHEN w.high IS NOT NULL THEN greatest(w.high - o.next_offset, 0) END AS lag,"
         " " CTL_SQL_TS("o.updated_at") " AS updated_at"
         " FROM allvarsd.consumer_offsets o"
         " LEFT JOIN unnest($2, $3, $4) AS w(topic, partition, high)"
         "  ON w.topic = o.topic AND w.partition = o.partition"
         " ORDER BY o.consumer_group, o.topic, o.partition",
         "none", NULL},
        {"outbox", "Outbox", CTL_RECORD,
         "SELECT b.unsent, " CTL_SQL_TS("b.oldest") " AS oldest_unsent,"
         " CASE WHEN b.oldest IS NOT NULL THEN " CTL_SQL_DURATION("greatest(t.s, 0)") " END AS oldest_age,"
         " t.s AS oldest_age_seconds"
         " FROM (SELECT count(*) AS unsent, min(created_at) AS oldest FROM allvarsd.outbox) b"
         " CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM $1 - b.oldest))::bigint AS s) t",
         NULL, "oldest_age_seconds"},
        {"dead_letters", "Dead letters", CTL_RECORD,
         "SELECT count(*) AS total,"
         " count(*) FILTER (WHERE received_at > $1 - interval '24 hours') AS last_24h,"
         " count(*) FILTER (WHERE replayed_at IS NULL) AS not_replayed,"
         " " CTL_SQL_TS("max(received_at)") " AS latest"
         " FROM allvarsd.dead_letters",
         NULL, NULL},
        {"cases", "Cases by district and state", CTL_TABLE,
         "SELECT c.district, c.state, count(*) AS cases,"
         " count(*) FILTER (WHERE " CTL_SQL_OVERDUE("c", "$1") ") AS overdue"
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
         " WHERE raised_at > $1 - interval '24 hours' AND raised_at <= $1 GROUP BY kind ORDER BY kind",
         "none", NULL},
};

typedef struct watermarks {
        size_t n;
        char **topic, **partition, **high;
} watermarks;

static void watermarks_free(watermarks *w) {
        for (size_t i = 0; i < w->n; i++) {
                free(w->topic[i]);
                free(w->partition[i]);
                free(w->high[i]);
        }
        free(w->topic);
        free(w->partition);
        free(w->high);
        *w = (watermarks){0};
}

/* The high watermark of every partition with a stored position. A broker that
 * cannot be reached leaves them unknown (NULL) with one warning. */
static int query_watermarks(ctl *c, watermarks *w) {
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
                        fprintf(stderr, "allvarsctl status: lag of %s [%s] unknown: %s\n", w->topic[i],
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

int ctl_status_main(int argc, char **argv) {
        ctl c;
        ctl_init(&c, "status", usage);
        int o;
        while ((o = ctl_getopt(&c, argc, argv, NULL)) != -1)
                return o == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);

        int r = ctl_connect(&c, true);
        watermarks w = {0};
        ctl_params p = {0};
        if (r >= 0)
                r = query_watermarks(&c, &w);
        if (r >= 0) {
                ctl_param(&p, CTL_OID_TIMESTAMPTZ, c.now);
                r = ctl_param_array(&p, CTL_OID_TEXT_ARRAY, (const char *const *)w.topic, w.n);
        }
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT4_ARRAY, (const char *const *)w.partition, w.n);
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT8_ARRAY, (const char *const *)w.high, w.n);
        if (r == -ENOMEM)
                ctl_fail(&c, "out of memory");
        ctl_section shown[sizeof sections / sizeof sections[0]];
        memcpy(shown, sections, sizeof shown);
        if (c.cfg && c.cfg->insecure_allow_plaintext)
                shown[0] = summary_insecure;
        if (r >= 0)
                r = ctl_show(&c, shown, sizeof shown / sizeof shown[0], &p);
        ctl_params_done(&p);
        watermarks_free(&w);
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
