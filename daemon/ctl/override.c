/* allvarsctl override: a social worker's override of a case's outcome, sent as
 * a CaseOutcome to the outcomes topic like every other outcome event, so that
 * the daemon applies it once, audits it and publishes what follows. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "codec.h"
#include "common.h"
#include "ids.h"
#include "kafka.h"

#define OUTCOMES_TOPIC_DEFAULT "allvarssamtal.outcomes.v1"  /* outcome.proto's topic */
#define CE_TYPE_CASE_OUTCOME   "se.allvarssamtal.v1.CaseOutcome"
#define CE_SOURCE              "urn:allvarsctl"
#define WAIT_POLL_USEC         (200 * 1000)

static const char usage[] =
        "Usage: allvarsctl override ID --outcome ELIGIBLE|NOT_ELIGIBLE|DEFERRED|MANUAL_REVIEW --by NAME\n"
        "                          [--reason-file PATH] [--wait SECONDS] [--json]\n"
        "                          [--config PATH | --database CONNINFO] [--bootstrap HOST:PORT]\n"
        "Override the outcome of case ID (a case id or the police's referral id) as social worker NAME.\n"
        "The override is a CaseOutcome event produced to the outcomes topic (topics.outcomes; the key is\n"
        "the case id), applied by allvarsd like any outcome event and recorded in the audit trail. Prints\n"
        "the event id. The reason is read from standard input, or from --reason-file: never from the\n"
        "command line, where it would stay in /proc/PID/cmdline and the shell's history.\n\n"
        "  --outcome O            the new outcome\n"
        "  --reason-file PATH     why, in plain words (stored with the case; give no personal data);\n"
        "                         - or no --reason-file: standard input\n"
        "  --by NAME              the social worker's user id\n"
        "  --wait SECONDS         wait until allvarsd has applied or rejected the event, and say which\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists):\n"
        "                         database.*, kafka.* and topics.outcomes\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n"
        "  --bootstrap HOST:PORT  the Kafka cluster (default: kafka.bootstrap.servers)\n"
        "  --json                 one JSON object, for scripts\n";

static const struct {
        const char *name;
        Allvarssamtal__V1__Outcome value;
} outcomes[] = {
        {"ELIGIBLE", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE},
        {"NOT_ELIGIBLE", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE},
        {"DEFERRED", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_DEFERRED},
        {"MANUAL_REVIEW", ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_MANUAL_REVIEW},
};

/* A random (version 4) UUID, RFC 4122 4.4. */
static int random_uuid(char ret[static UUID_STR_LEN]) {
        uint8_t b[16];
        size_t got = 0;
        while (got < sizeof b) {
                ssize_t n = getrandom(b + got, sizeof b - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
        snprintf(ret, UUID_STR_LEN, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
        return 0;
}

/* What became of the event: $1 event id, $2 case id, $3 topic, $4 partition, $5 offset. */
static const char wait_sql[] =
        "SELECT 'applied', " CTL_SQL_TS("e.applied_at") ", c.state, c.outcome"
        " FROM allvarsd.outcome_events e LEFT JOIN allvarsd.cases c ON c.case_id = e.case_id"
        " WHERE e.event_id = $1::text AND e.case_id = $2::uuid"
        " UNION ALL"
        " SELECT 'rejected', d.reason, d.detail, d.id::text FROM allvarsd.dead_letters d"
        " WHERE d.source_topic = $3::text AND d.source_partition = $4::int4 AND d.source_offset = $5::int8";

static const char json_sql[] =
        "SELECT json_build_object('event_id', $1::text, 'case_id', $2::text, 'topic', $3::text,"
        " 'partition', $4::int4, 'offset', $5::int8, 'result', $6::text,"
        " 'applied', (SELECT row_to_json(q) FROM (SELECT e.kind, " CTL_SQL_TS("e.applied_at") " AS applied_at,"
        "   c.state, c.outcome FROM allvarsd.outcome_events e"
        "   LEFT JOIN allvarsd.cases c ON c.case_id = e.case_id WHERE e.event_id = $1::text) q),"
        " 'dead_letter', (SELECT row_to_json(q) FROM (SELECT d.id, d.reason, d.detail"
        "   FROM allvarsd.dead_letters d WHERE d.source_topic = $3::text AND d.source_partition = $4::int4"
        "   AND d.source_offset = $5::int8) q))";

static int add_header(rd_kafka_headers_t *h, const char *name, const char *value) {
        return rd_kafka_header_add(h, name, -1, value, -1) ? -EINVAL : 0;
}

/* Poll until the daemon applied or rejected the event: 1 applied, 0 timed out,
 * -EBADMSG rejected (printed), -EIO. */
static int wait_applied(ctl *c, const ctl_params *p, long long seconds, bool quiet) {
        usec_t until = clock_monotonic() + seconds * USEC_PER_SEC;
        for (;;) {
                PGresult *res = ctl_exec(c, wait_sql, p);
                if (!res)
                        return -EIO;
                int r = 0;
                if (PQntuples(res) > 0) {
                        bool applied = strcmp(PQgetvalue(res, 0, 0), "applied") == 0;
                        if (applied && !quiet)
                                printf("applied at %s: the case is now %s (outcome %s)\n", PQgetvalue(res, 0, 1),
                                       PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3));
                        else if (!applied)
                                ctl_fail(c, "rejected by allvarsd: %s: %s (dead letter %s)", PQgetvalue(res, 0, 1),
                                         PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3));
                        r = applied ? 1 : -EBADMSG;
                }
                PQclear(res);
                if (r != 0 || clock_monotonic() >= until)
                        return r;
                usleep(WAIT_POLL_USEC);
        }
}

#define REASON_MAX (16 * 1024)

/* The reason, from path ("-" or NULL: standard input), without its final
 * newline. The codec's validation judges it (blank, too long, not UTF-8). */
static int read_reason(ctl *c, const char *path, char **ret) {
        bool std_in = !path || strcmp(path, "-") == 0;
        FILE *f = std_in ? stdin : fopen(path, "re");
        if (!f) {
                int e = errno;
                ctl_fail(c, "--reason-file %s: %s", path, strerror(e));
                return -e;
        }
        char *buf = malloc(REASON_MAX + 2);
        size_t n = buf ? fread(buf, 1, REASON_MAX + 1, f) : 0;
        bool failed = !buf || ferror(f);
        if (!std_in)
                fclose(f);
        if (failed) {
                free(buf);
                ctl_fail(c, "cannot read the reason");
                return -EIO;
        }
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                n--;
        buf[n] = 0;
        *ret = buf;
        return 0;
}

int ctl_override_main(int argc, char **argv) {
        enum { OPT_OUTCOME = 1, OPT_REASON, OPT_REASON_FILE, OPT_BY, OPT_WAIT };
        static const struct option options[] = {
                {"outcome", required_argument, NULL, OPT_OUTCOME},
                {"reason", required_argument, NULL, OPT_REASON},
                {"reason-file", required_argument, NULL, OPT_REASON_FILE},
                {"by", required_argument, NULL, OPT_BY},
                {"wait", required_argument, NULL, OPT_WAIT},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "override", usage);
        const char *outcome_name = NULL, *reason_file = NULL, *by = NULL;
        char *reason = NULL;
        Allvarssamtal__V1__Outcome outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_UNSPECIFIED;
        long long wait = -1;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_OUTCOME:
                        outcome_name = optarg;
                        for (size_t i = 0; i < sizeof outcomes / sizeof outcomes[0]; i++)
                                if (strcmp(optarg, outcomes[i].name) == 0)
                                        outcome = outcomes[i].value;
                        if (!outcome)
                                return ctl_usage_error(&c, "--outcome: %s is not one of ELIGIBLE, NOT_ELIGIBLE, "
                                                           "DEFERRED, MANUAL_REVIEW", optarg);
                        break;
                case OPT_REASON:
                        return ctl_usage_error(&c, "--reason: not on the command line (it would stay in "
                                                   "/proc/PID/cmdline and the shell's history); give it on "
                                                   "standard input or with --reason-file PATH");
                case OPT_REASON_FILE: reason_file = optarg; break;
                case OPT_BY: by = optarg; break;
                case OPT_WAIT:
                        if (ctl_parse_count(optarg, &wait) < 0)
                                return ctl_usage_error(&c, "--wait: not a number of seconds: %s", optarg);
                        break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (optind >= argc)
                return ctl_usage_error(&c, "a case id or referral id is required");
        if (optind + 1 < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind + 1]);
        if (!outcome_name)
                return ctl_usage_error(&c, "--outcome is required");
        if (!by || !by[0])
                return ctl_usage_error(&c, "--by is required");
        const char *id = argv[optind];
        if (read_reason(&c, reason_file, &reason) < 0) {
                ctl_done(&c);
                return CTL_EXIT_FAILURE;
        }

        char *referral_id = NULL, *case_id = NULL;
        uint8_t *buf = NULL;
        int exit_code = CTL_EXIT_FAILURE;
        int r = ctl_connect(&c, true);
        if (r < 0)
                goto out;
        r = ctl_case_resolve(&c, id, &referral_id, &case_id);
        if (r == -ENOENT)
                ctl_fail(&c, "no case or referral with the id %s", id);
        else if (r == -ENOMEM)
                ctl_fail(&c, "out of memory");
        if (r < 0)
                goto out;

        char event_id[UUID_STR_LEN];
        r = random_uuid(event_id);
        if (r < 0) {
                ctl_fail(&c, "getrandom: %s", strerror(-r));
                goto out;
        }
        usec_t now;
        r = clock_parse_rfc3339(c.now, &now);
        if (r < 0) {
                ctl_fail(&c, "cannot read the time %s", c.now);
                goto out;
        }

        Allvarssamtal__V1__CaseOutcome ev = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Google__Protobuf__Timestamp occurred = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        Allvarssamtal__V1__DecisionOverride ov = ALLVARSSAMTAL__V1__DECISION_OVERRIDE__INIT;
        codec_timestamp_set(&occurred, now);
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        actor.name = (char *)by;
        ov.outcome = outcome;
        ov.reason = (char *)reason;
        ev.event_id = event_id;
        ev.case_id = case_id;
        ev.referral_id = referral_id;
        ev.occurred_at = &occurred;
        ev.actor = &actor;
        ev.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
        ev.override = &ov;
        size_t len = codec_pack(&ev.base, &buf);
        if (!buf) {
                ctl_fail(&c, "out of memory");
                goto out;
        }

        /* The daemon's own validation, before anything is sent: a bad event
         * would only end as a dead letter. */
        codec_error cerr = {0};
        codec_outcome *check = codec_outcome_decode(buf, len, SIZE_MAX, &cerr);
        if (!check) {
                exit_code = ctl_usage_error(&c, "the override would be rejected: %s: %s",
                                            dead_letter_reason_code(cerr.reason), cerr.detail);
                goto out;
        }
        codec_outcome_free(check);

        const char *topic = c.cfg && c.cfg->topic_outcomes ? c.cfg->topic_outcomes : OUTCOMES_TOPIC_DEFAULT;
        rd_kafka_headers_t *h = rd_kafka_headers_new(6);
        /* CloudEvents Kafka binding, binary mode (docs/design.md "The event envelope"). */
        if (add_header(h, "content-type", "application/protobuf") < 0 || add_header(h, "ce_specversion", "1.0") < 0 ||
            add_header(h, "ce_id", event_id) < 0 || add_header(h, "ce_type", CE_TYPE_CASE_OUTCOME) < 0 ||
            add_header(h, "ce_source", CE_SOURCE) < 0 || add_header(h, "ce_time", c.now) < 0) {
                rd_kafka_headers_destroy(h);
                ctl_fail(&c, "cannot build the event's headers");
                goto out;
        }
        ctl_delivery d;
        r = ctl_produce(&c, topic, case_id, strlen(case_id), buf, len, h, &d);
        if (r < 0) {
                fprintf(stderr, "allvarsctl override: event %s was not confirmed\n", event_id);
                goto out;
        }
        if (!c.json) {
                printf("%s\n", event_id);
                fflush(stdout);
        }

        char partition[16], offset[24];
        snprintf(partition, sizeof partition, "%d", (int)d.partition);
        snprintf(offset, sizeof offset, "%lld", (long long)d.offset);
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_TEXT, event_id);
        ctl_param(&p, CTL_OID_TEXT, case_id);
        ctl_param(&p, CTL_OID_TEXT, topic);
        ctl_param(&p, CTL_OID_INT4, partition);
        ctl_param(&p, CTL_OID_INT8, offset);
        const char *result = "produced";
        exit_code = CTL_EXIT_OK;
        if (wait >= 0) {
                r = wait_applied(&c, &p, wait, c.json);
                if (r == 0)
                        ctl_fail(&c, "not applied within %lld s: is allvarsd running and keeping up? "
                                     "(see allvarsctl status)", wait);
                result = r > 0 ? "applied" : r == -EBADMSG ? "rejected" : r == 0 ? "timed_out" : "unknown";
                if (r <= 0)
                        exit_code = CTL_EXIT_FAILURE;
        }
        if (c.json) {
                ctl_param(&p, CTL_OID_TEXT, result);
                PGresult *res = ctl_exec(&c, json_sql, &p);
                if (res && PQntuples(res) == 1)
                        printf("%s\n", PQgetvalue(res, 0, 0));
                else
                        exit_code = CTL_EXIT_FAILURE;
                PQclear(res);
        }
out:
        free(buf);
        free(reason);
        free(referral_id);
        free(case_id);
        ctl_done(&c);
        return exit_code;
}
