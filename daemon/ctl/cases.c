/* allvarsctl cases: one line per case, with its deadline and the time left.
 *
 * Ids, codes and times only: no identity numbers, names, contact details,
 * narratives or free-text override reasons are selected here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "lifecycle.h"
#include "print.h"
#include "reasons.h"

static const char cases_usage[] =
        "Usage: allvarsctl cases [--overdue] [--district D] [--state S] [--limit N] [--json]\n"
        "                        [--config PATH | --database CONNINFO] [--now TIME]\n"
        "One line per case: case id, district, state, outcome, deadline (UTC), deadline kind, the time\n"
        "left or overdue, and flags: open cases first, the nearest deadline first.\n\n"
        "  --overdue              only cases whose deadline passed without the conversation held\n"
        "                         and that are not closed\n"
        "  --district D           only district D (any case)\n"
        "  --state S              only state S (ELIGIBLE, DEFERRED, MANUAL_REVIEW, SCHEDULED, HELD,\n"
        "                         DECLINED, CANCELLED, NOT_ELIGIBLE)\n"
        "  --limit N              at most N cases (default 1000; 0: all)\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n"
        "  --now TIME             count time left as of this RFC 3339 time (default: clock.file, else now)\n"
        "  --json                 a JSON array, for scripts\n";

/* $1 now, $2 overdue only, $3 district, $4 state, $5 limit. */
static const ctl_section cases_section = {
        NULL, NULL, CTL_TABLE,
        "SELECT c.case_id, c.district, c.state, c.outcome, " CTL_SQL_TS("c.deadline") " AS deadline,"
        " c.deadline_kind, " CTL_SQL_TIME_LEFT " AS time_left, t.s AS seconds_left, " CTL_SQL_CASE_FLAGS " AS flags"
        " FROM allvarsd.cases c JOIN allvarsd.decisions d ON d.referral_id = c.referral_id"
        " CROSS JOIN LATERAL (SELECT " CTL_SQL_SECONDS_LEFT("$1::timestamptz") " AS s) t"
        " WHERE ($2::bool IS NOT TRUE OR " CTL_SQL_OVERDUE("c", "$1::timestamptz") ")"
        " AND ($3::text IS NULL OR lower(c.district) = lower($3::text))"
        " AND ($4::text IS NULL OR c.state = $4::text)"
        " ORDER BY c.closed_at IS NOT NULL, c.deadline NULLS LAST, c.created_at, c.case_id LIMIT $5::int8",
        "No cases.", "seconds_left",
};

int ctl_cases_main(int argc, char **argv) {
        enum { OPT_OVERDUE = 1, OPT_DISTRICT, OPT_STATE, OPT_LIMIT };
        static const struct option options[] = {
                {"overdue", no_argument, NULL, OPT_OVERDUE},
                {"district", required_argument, NULL, OPT_DISTRICT},
                {"state", required_argument, NULL, OPT_STATE},
                {"limit", required_argument, NULL, OPT_LIMIT},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "cases", cases_usage);
        bool overdue = false;
        const char *district = NULL, *state = NULL;
        long long limit = 1000;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_OVERDUE: overdue = true; break;
                case OPT_DISTRICT: district = optarg; break;
                case OPT_STATE:
                        if (case_state_code_from_name(optarg) < 0 || strcmp(optarg, "NONE") == 0)
                                return ctl_usage_error(&c, "--state: unknown state %s", optarg);
                        state = optarg;
                        break;
                case OPT_LIMIT:
                        if (ctl_parse_count(optarg, &limit) < 0)
                                return ctl_usage_error(&c, "--limit: not a number: %s", optarg);
                        break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);

        int r = ctl_connect(&c, true);
        if (r >= 0) {
                char limit_text[24];
                snprintf(limit_text, sizeof limit_text, "%lld", limit);
                ctl_params p = {0};
                ctl_param(&p, CTL_OID_TIMESTAMPTZ, c.now);
                ctl_param(&p, CTL_OID_BOOL, overdue ? "true" : "false");
                ctl_param(&p, CTL_OID_TEXT, district);
                ctl_param(&p, CTL_OID_TEXT, state);
                ctl_param(&p, CTL_OID_INT8, limit > 0 ? limit_text : NULL);
                r = ctl_show(&c, &cases_section, 1, &p);
        }
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
