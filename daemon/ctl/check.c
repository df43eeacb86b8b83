/* allvarsctl check: a health check for monitoring systems, in the interface
 * of the monitoring-plugins (Nagios, Icinga, Naemon, Sensu): one line
 * "ALLVARSD STATE - what | performance data" and the exit code 0 OK,
 * 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugins' guidelines,
 * "Plugin Return Codes" and "Performance data"). Read only. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kafka.h"
#include "relay.h"

enum { CHECK_OK, CHECK_WARNING, CHECK_CRITICAL, CHECK_UNKNOWN };

static const char usage[] =
        "Usage: allvarsctl check [--config PATH | --database CONNINFO] [--bootstrap HOST:PORT] [--now TIME]\n"
        "                        [--heartbeat-max S] [--outbox-age-warning S] [--outbox-age-critical S]\n"
        "                        [--lag-warning N] [--lag-critical N] [--overdue-warning N]\n"
        "                        [--overdue-critical N] [--dead-letters-warning N] [--dead-letters-critical N]\n"
        "A health check for monitoring systems (the monitoring-plugins interface): one line\n"
        "\"ALLVARSD OK|WARNING|CRITICAL|UNKNOWN - ... | performance data\", exit code 0, 1, 2 or 3.\n\n"
        "CRITICAL, always: no running instance (no heartbeat within --heartbeat-max), or no instance\n"
        "holding the outbox relay. Thresholds, as in the monitoring-plugins: a figure above N; \"off\"\n"
        "turns one off:\n"
        "  --heartbeat-max S          an instance is running when its heartbeat is this recent (60)\n"
        "  --outbox-age-warning S     the oldest unsent event's age, in seconds (60)\n"
        "  --outbox-age-critical S    (300)\n"
        "  --lag-warning N            the largest lag of a partition, in messages, when Kafka is known\n"
        "                             from kafka.bootstrap.servers or --bootstrap (1000)\n"
        "  --lag-critical N           (10000)\n"
        "  --overdue-warning N        open cases past their deadline (0: any)\n"
        "  --overdue-critical N       (off)\n"
        "  --dead-letters-warning N   messages dead-lettered in the last hour (0: any)\n"
        "  --dead-letters-critical N  (off)\n"
        "UNKNOWN: the database cannot be read, or the options are wrong.\n";

/* $1 now, $2 heartbeat max (s), $3 the relay's lock key, $4-$6 the watermarks. */
static const char SQL[] =
        "SELECT (SELECT count(*) FROM allvarsd.instances i WHERE i.stopped_at IS NULL"
        "         AND i.heartbeat_at > now() - $2::bigint * interval '1 second'),"
        "       (SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted"
        "         AND database = " THIS_DATABASE_OID
        "         AND objsubid = 1 AND classid::bigint = ($3::bigint >> 32)"
        "         AND objid::bigint = ($3::bigint & 4294967295)),"
        "       (SELECT coalesce(greatest(floor(extract(epoch FROM $1::timestamptz - min(created_at))), 0)::bigint, 0)"
        "          FROM allvarsd.outbox),"
        "       (SELECT count(*) FROM allvarsd.cases c WHERE " CTL_SQL_OVERDUE("c", "$1::timestamptz") "),"
        "       (SELECT count(*) FROM allvarsd.dead_letter_summary WHERE received_at > $1::timestamptz - interval '1 hour'"
        "         AND received_at <= $1::timestamptz),"
        "       (SELECT max(greatest(w.high - o.next_offset, 0)) FILTER (WHERE w.high IS NOT NULL)"
        "          FROM allvarsd.consumer_offsets o"
        "          JOIN unnest($4::text[], $5::int4[], $6::int8[]) AS w(topic, partition, high)"
        "            ON w.topic = o.topic AND w.partition = o.partition)";

typedef struct figure {
        const char *label;              /* performance data label */
        const char *unit;               /* "s" or "" */
        long long warn, crit;           /* a value above it; -1: off */
        long long value;
        bool known;
} figure;

typedef struct report {
        int state;
        char text[512];
        size_t len;
} report;

static void say(report *r, int state, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(report *r, int state, const char *fmt, ...) {
        if (state > r->state)
                r->state = state;
        if (r->len >= sizeof r->text - 1)
                return;
        if (r->len)
                r->len += (size_t)snprintf(r->text + r->len, sizeof r->text - r->len, "; ");
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(r->text + r->len, sizeof r->text - r->len, fmt, ap);
        va_end(ap);
        if (n > 0)
                r->len += (size_t)n;
        if (r->len >= sizeof r->text)
                r->len = sizeof r->text - 1;
}

/* The state of a figure against its thresholds. */
static int judge(const figure *f) {
        if (!f->known)
                return CHECK_OK;
        if (f->crit >= 0 && f->value > f->crit)
                return CHECK_CRITICAL;
        if (f->warn >= 0 && f->value > f->warn)
                return CHECK_WARNING;
        return CHECK_OK;
}

static void threshold(char *buf, size_t size, long long t) {
        if (t >= 0)
                snprintf(buf, size, "%lld", t);
        else
                buf[0] = 0;
}

static const char *const state_names[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};

static int unknown(const char *why) {
        printf("ALLVARSD UNKNOWN - %s\n", why);
        return CHECK_UNKNOWN;
}

int ctl_check_main(int argc, char **argv) {
        enum { O_HEARTBEAT = 300, O_OW, O_OC, O_LW, O_LC, O_VW, O_VC, O_DW, O_DC };
        static const struct option own[] = {
                {"heartbeat-max", required_argument, NULL, O_HEARTBEAT},
                {"outbox-age-warning", required_argument, NULL, O_OW},
                {"outbox-age-critical", required_argument, NULL, O_OC},
                {"lag-warning", required_argument, NULL, O_LW},
                {"lag-critical", required_argument, NULL, O_LC},
                {"overdue-warning", required_argument, NULL, O_VW},
                {"overdue-critical", required_argument, NULL, O_VC},
                {"dead-letters-warning", required_argument, NULL, O_DW},
                {"dead-letters-critical", required_argument, NULL, O_DC},
                {NULL, 0, NULL, 0},
        };
        long long heartbeat = 60;
        figure outbox = {"outbox_age", "s", 60, 300, 0, false}, lag = {"lag", "", 1000, 10000, 0, false},
               overdue = {"overdue_cases", "", 0, -1, 0, false}, dead = {"dead_letters_1h", "", 0, -1, 0, false};
        struct {
                int opt;
                long long *v;
        } map[] = {{O_HEARTBEAT, &heartbeat}, {O_OW, &outbox.warn}, {O_OC, &outbox.crit}, {O_LW, &lag.warn},
                   {O_LC, &lag.crit},         {O_VW, &overdue.warn}, {O_VC, &overdue.crit}, {O_DW, &dead.warn},
                   {O_DC, &dead.crit}};
        ctl c;
        ctl_init(&c, "check", usage);
        int o;
        while ((o = ctl_getopt(&c, argc, argv, own)) != -1) {
                if (o == CTL_OPT_HELP)
                        return CHECK_OK;
                bool found = false;
                for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
                        if (map[i].opt == o) {
                                found = true;
                                if (strcmp(optarg, "off") == 0 && map[i].v != &heartbeat)
                                        *map[i].v = -1;
                                else if (ctl_parse_count(optarg, map[i].v) < 0) {
                                        ctl_usage_error(&c, "not a count: %s", optarg);
                                        return unknown("bad options");
                                }
                        }
                if (!found)
                        return unknown("bad options");
        }
        if (optind < argc) {
                ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
                return unknown("bad options");
        }
        if (c.json) {
                ctl_usage_error(&c, "--json: check prints one line");
                return unknown("bad options");
        }
        if (heartbeat <= 0)
                heartbeat = 60;

        int r = ctl_connect(&c, true);
        ctl_watermarks w = {0};
        if (r >= 0)
                r = ctl_watermarks_query(&c, &w, "check");
        if (r < 0) {
                ctl_watermarks_free(&w);
                ctl_done(&c);
                return unknown("cannot read the database (see stderr)");
        }
        char hb[24], key[24];
        snprintf(hb, sizeof hb, "%lld", heartbeat);
        snprintf(key, sizeof key, "%lld", (long long)RELAY_LOCK_KEY);
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_TIMESTAMPTZ, c.now);
        ctl_param(&p, CTL_OID_INT8, hb);
        ctl_param(&p, CTL_OID_INT8, key);
        r = ctl_param_array(&p, CTL_OID_TEXT_ARRAY, (const char *const *)w.topic, w.n);
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT4_ARRAY, (const char *const *)w.partition, w.n);
        if (r >= 0)
                r = ctl_param_array(&p, CTL_OID_INT8_ARRAY, (const char *const *)w.high, w.n);
        PGresult *res = r >= 0 ? ctl_exec(&c, SQL, &p) : NULL;
        ctl_params_done(&p);
        ctl_watermarks_free(&w);
        if (!res || PQntuples(res) != 1) {
                PQclear(res);
                ctl_done(&c);
                return unknown("cannot read the database (see stderr)");
        }
        long long instances = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        long long holders = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        outbox.value = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        overdue.value = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
        dead.value = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
        outbox.known = overdue.known = dead.known = true;
        if (!PQgetisnull(res, 0, 5)) {
                lag.value = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
                lag.known = true;
        }
        PQclear(res);
        ctl_done(&c);

        report rep = {0};
        if (instances < 1)
                say(&rep, CHECK_CRITICAL, "no running instance (no heartbeat in %lld s)", heartbeat);
        if (holders < 1)
                say(&rep, CHECK_CRITICAL, "no instance holds the outbox relay");
        int s;
        if ((s = judge(&outbox)))
                say(&rep, s, "oldest unsent event %lld s old", outbox.value);
        if ((s = judge(&lag)))
                say(&rep, s, "a partition %lld messages behind", lag.value);
        if ((s = judge(&overdue)))
                say(&rep, s, "%lld open case(s) past their deadline", overdue.value);
        if ((s = judge(&dead)))
                say(&rep, s, "%lld message(s) dead-lettered in the last hour", dead.value);
        if (rep.state == CHECK_OK)
                say(&rep, CHECK_OK, "%lld instance(s) running, relay held, outbox oldest %lld s, %lld overdue, "
                                    "%lld dead letter(s) in the last hour%s",
                    instances, outbox.value, overdue.value, dead.value, lag.known ? "" : ", lag unknown");

        printf("ALLVARSD %s - %s | instances=%lld;;1:;0; relay_holders=%lld;;1:;0;", state_names[rep.state],
               rep.text, instances, holders);
        const figure *figs[] = {&outbox, &lag, &overdue, &dead};
        for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
                if (!figs[i]->known)
                        continue;
                char wbuf[24], cbuf[24];
                threshold(wbuf, sizeof wbuf, figs[i]->warn);
                threshold(cbuf, sizeof cbuf, figs[i]->crit);
                printf(" %s=%lld%s;%s;%s;0;", figs[i]->label, figs[i]->value, figs[i]->unit, wbuf, cbuf);
        }
        printf("\n");
        return rep.state;
}
