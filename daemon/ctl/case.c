/* allvarsctl case ID: one case (or referral) in full: the decision explained
 * in words, deadlines, alerts, outcome events and the audit trail.
 *
 * Ids, codes and times only: no identity numbers, names, contact details,
 * narratives or free-text override reasons are selected here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "common.h"
#include "lifecycle.h"
#include "print.h"
#include "reasons.h"

static const char case_usage[] =
        "Usage: allvarsctl case ID [--json] [--config PATH | --database CONNINFO] [--now TIME]\n"
        "       allvarsctl case ID --personal [--by NAME] [--json] [--config PATH | --database CONNINFO]\n"
        "One case in full: ID is the case id or the police's referral id (a NOT_ELIGIBLE referral has\n"
        "no case but is shown too). The decision with its reasons and flags explained in Swedish and\n"
        "English, the profile it was made under, the deadlines (the protective assessment's too, with or\n"
        "without a case), the alerts raised, the outcome events applied (a held conversation's\n"
        "participants and what followed), and the audit trail. Ids, codes and times only: no personal\n"
        "data is shown.\n"
        "With --personal, only the child's and the guardians' personal data (identity number, names,\n"
        "contacts, the narrative), read through a function that records who read them, and when, in\n"
        "the case's audit trail.\n\n"
        "  --personal             show the personal data instead (audited)\n"
        "  --by NAME              who reads them, for the audit trail (default: the database login)\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n"
        "  --now TIME             count time left as of this RFC 3339 time (default: clock.file, else now)\n"
        "  --json                 one JSON object, for scripts\n";

/* The explained codes of a comma-separated column of decisions. */
#define SQL_EXPLAINED(column, codes, sv, en)                                                             \
        "SELECT x.code, e.sv, e.en FROM allvarsd.decisions d"                                           \
        " CROSS JOIN LATERAL unnest(string_to_array(nullif(d." column ", ''), ',')) WITH ORDINALITY"     \
        "  AS x(code, n)"                                                                               \
        " LEFT JOIN unnest(" codes ", " sv ", " en ") AS e(code, sv, en) ON e.code = x.code"            \
        " WHERE d.referral_id = $1::text ORDER BY x.n"

/* $1 referral id, $2 now, $3-$5 reason codes/sv/en, $6-$8 flag codes/sv/en. */
static const ctl_section case_sections[] = {
        {"case", NULL, CTL_RECORD,
         "SELECT r.case_id, r.referral_id, nullif(r.police_case_number, '') AS police_case_number, r.district,"
         " c.state, coalesce(c.outcome, d.outcome) AS outcome, d.outcome AS decided_outcome,"
         " " CTL_SQL_TS("r.reported_at") " AS reported_at, " CTL_SQL_TS("r.incident_at") " AS incident_at,"
         " " CTL_SQL_TS("r.received_at") " AS received_at, " CTL_SQL_TS("d.decided_at") " AS decided_at,"
         " " CTL_SQL_TS("c.deadline") " AS deadline, c.deadline_kind,"
         " " CTL_SQL_TIME_LEFT " AS time_left, t.s AS seconds_left,"
         " " CTL_SQL_TS("coalesce(c.protective_assessment_due, CASE WHEN pa.recorded_at IS NULL THEN pa.due_at END)")
         " AS protective_assessment_due, " CTL_SQL_TS("pa.recorded_at") " AS assessed_at,"
         " " CTL_SQL_TS("c.scheduled_at") " AS scheduled_at, c.police_attending,"
         " " CTL_SQL_TS("c.held_at") " AS held_at, " CTL_SQL_TS("c.closed_at") " AS closed_at,"
         " nullif(concat_ws(', ', CASE WHEN c.awaiting_assessment OR (c.case_id IS NULL AND pa.case_id IS NOT NULL"
         "  AND pa.recorded_at IS NULL) THEN 'protective assessment' END,"
         "  CASE WHEN c.awaiting_clearance THEN 'clearance from the police' END,"
         "  CASE WHEN c.awaiting_contact THEN 'contact details' END), '') AS waiting_for,"
         " r.feedback_requested, d.profile_name AS profile, d.profile_version, pp.params AS profile_params,"
         " d.age, d.prior_referrals, d.prior_qualifying, c.revision,"
         " " CTL_SQL_TS("c.created_at") " AS opened_at, " CTL_SQL_TS("c.updated_at") " AS updated_at,"
         " " CTL_SQL_TS("r.purged_at") " AS personal_data_purged_at"
         " FROM allvarsd.referrals r LEFT JOIN allvarsd.decisions d ON d.referral_id = r.referral_id"
         " LEFT JOIN allvarsd.profile_params pp ON pp.params_key = d.params_key"
         " LEFT JOIN allvarsd.cases c ON c.case_id = r.case_id"
         " LEFT JOIN allvarsd.assessment_duties pa ON pa.case_id = r.case_id"
         " CROSS JOIN LATERAL (SELECT " CTL_SQL_SECONDS_LEFT("$2::timestamptz") " AS s) t"
         " WHERE r.referral_id = $1::text",
         NULL, "seconds_left"},
        {"reasons", "Reasons", CTL_RECORDS, SQL_EXPLAINED("reasons", "$3::text[]", "$4::text[]", "$5::text[]"), "none", NULL},
        {"flags", "Flags", CTL_RECORDS, SQL_EXPLAINED("flags", "$6::text[]", "$7::text[]", "$8::text[]"), "none", NULL},
        {"alerts", "Alerts raised", CTL_TABLE,
         "SELECT a.kind, " CTL_SQL_TS("a.due_at") " AS due_at, " CTL_SQL_TS("a.raised_at") " AS raised_at"
         " FROM (SELECT case_id, kind, due_at, raised_at FROM allvarsd.case_alerts"
         "       UNION ALL SELECT case_id, 'PROTECTIVE_ASSESSMENT_OVERDUE', alerted_due, alerted_at"
         "         FROM allvarsd.assessment_duties WHERE alerted_due IS NOT NULL) a"
         " JOIN allvarsd.referrals r ON r.case_id = a.case_id"
         " WHERE r.referral_id = $1::text ORDER BY a.raised_at, a.kind",
         "none", NULL},
        {"events", "Outcome events applied", CTL_TABLE,
         "SELECT e.event_id, e.kind, " CTL_SQL_TS("e.occurred_at") " AS occurred_at,"
         " " CTL_SQL_TS("e.applied_at") " AS applied_at,"
         " array_to_string(e.participants, ',') AS participants, array_to_string(e.follow_up, ',') AS follow_up"
         " FROM allvarsd.outcome_events e JOIN allvarsd.referrals r ON r.case_id = e.case_id"
         " WHERE r.referral_id = $1::text ORDER BY e.applied_at, e.event_id",
         "none", NULL},
        /* detail holds an override's free-text reason: only whether there is one. */
        {"audit", "Audit trail", CTL_TABLE,
         "SELECT " CTL_SQL_TS("a.at") " AS at,"
         " a.actor_kind || CASE WHEN a.actor_name <> '' THEN ':' || a.actor_name ELSE '' END AS who,"
         " a.action, CASE WHEN a.before <> '' OR a.after <> '' THEN coalesce(nullif(a.before, ''), '-')"
         "  || ' -> ' || coalesce(nullif(a.after, ''), '-') END AS change,"
         " a.before, a.after, a.reason_recorded"
         " FROM allvarsd.audit_trail a"
         " WHERE a.case_id = (SELECT case_id FROM allvarsd.referrals WHERE referral_id = $1::text)"
         "  OR (a.case_id IS NULL AND a.referral_id = $1::text)"
         " ORDER BY a.at, a.id",
         "none", "before,after,reason_recorded"},
};

static int param_texts(ctl_params *p, const reason_text *table) {
        size_t n = 0;
        while (table[n].code)
                n++;
        const char **col = calloc(3 * (n + 1), sizeof *col);
        if (!col)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                col[i] = table[i].code;
                col[n + i] = table[i].sv;
                col[2 * n + i] = table[i].en;
        }
        int r = 0;
        for (size_t k = 0; k < 3 && r >= 0; k++)
                r = ctl_param_array(p, CTL_OID_TEXT_ARRAY, col + k * n, n);
        free(col);
        return r;
}

/* The personal data as shown: one row per person, the child's fields read
 * from the referral as consumed. */
enum { PD_PERSON, PD_ORDINAL, PD_IDENTITY, PD_BIRTH, PD_NAME, PD_PHONE, PD_EMAIL, PD_ADDRESS, PD_NARRATIVE, PD_N };

/* The child's identity, birth date, name and narrative, decoded from the
 * stored PoliceReferral (schemas/017_personal_payload.sql stores no other
 * copy); col[k][i] point into the decoded message, the name into *name
 * (the caller frees it). */
static int child_fields(ctl *c, const char *hex, codec_referral **ret, const char **col[PD_N], size_t i,
                        char **name) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)hex, &len);
        if (!raw)
                return -ENOMEM;
        codec_error err;
        *ret = codec_referral_decode(raw, len, SIZE_MAX, &err);
        PQfreemem(raw);
        if (!*ret)
                return ctl_fail(c, "the stored referral does not decode (%s: %s)", dead_letter_reason_code(err.reason),
                                err.detail),
                       -EBADMSG;
        const PoliceReferral *m = codec_referral_msg(*ret);
        const Allvarssamtal__V1__Person *child = m->subject;
        const char *given = child && child->given_name ? child->given_name : "";
        const char *family = child && child->family_name ? child->family_name : "";
        if (asprintf(name, "%s%s%s", given, *given && *family ? " " : "", family) < 0) {
                *name = NULL;
                return -ENOMEM;
        }
        col[PD_IDENTITY][i] = child && child->identity_number ? child->identity_number : "";
        col[PD_BIRTH][i] = child && child->birth_date ? child->birth_date : "";
        col[PD_NAME][i] = *name;
        col[PD_NARRATIVE][i] = m->narrative ? m->narrative : "";
        return 0;
}

/* The child's and the guardians' personal data, read through the function
 * that records who read them, and when, in the case's audit trail
 * (schemas/006_operator_role.sql): the operator's role cannot read those
 * tables itself. The child's fields are decoded here; PostgreSQL then makes
 * the output from the rows as it does every other view (print.h), so the
 * JSON form is its json_agg. */
static int show_personal(ctl *c, const char *referral_id, const char *by) {
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_TEXT, referral_id);
        ctl_param(&p, CTL_OID_TEXT, by);
        PGresult *res = ctl_exec(c,
                                 "SELECT person, ordinal::text, name, phone, email, postal_address, referral"
                                 " FROM allvarsd.read_personal_data($1::text, $2::text)",
                                 &p);
        if (!res)
                return -EIO;
        int n = PQntuples(res);
        if (n == 0 && !c->json) {
                printf("No personal data (purged); this read is recorded in the audit trail.\n");
                PQclear(res);
                return 0;
        }
        const char **cells = calloc((size_t)PD_N * (size_t)(n + 1), sizeof *cells), **col[PD_N];
        for (int k = 0; k < PD_N; k++)
                col[k] = cells ? cells + (size_t)k * (size_t)(n + 1) : NULL;
        codec_referral *child = NULL;
        char *child_name = NULL;
        int r = cells ? 0 : -ENOMEM;
        for (int i = 0; i < n && r >= 0; i++) {
                const char *v[7];
                for (int j = 0; j < 7; j++)
                        v[j] = PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j);
                col[PD_PERSON][i] = v[0];
                col[PD_ORDINAL][i] = v[1];
                col[PD_NAME][i] = v[2];
                col[PD_PHONE][i] = v[3];
                col[PD_EMAIL][i] = v[4];
                col[PD_ADDRESS][i] = v[5];
                if (v[6] && !child)
                        r = child_fields(c, v[6], &child, col, (size_t)i, &child_name);
        }
        ctl_params q = {0};
        for (int k = 0; k < PD_N && r >= 0; k++)
                r = ctl_param_array(&q, k == PD_ORDINAL ? CTL_OID_INT4_ARRAY : CTL_OID_TEXT_ARRAY, col[k], (size_t)n);
        PGresult *out = NULL;
        if (r >= 0) {
#define PD_ROWS                                                                                                      \
        " FROM unnest($1::text[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],"        \
        " $8::text[], $9::text[]) AS q(person, ordinal, identity_number, birth_date, name, phone, email,"           \
        " postal_address, narrative)"
                out = ctl_exec(c,
                               c->json ? "SELECT coalesce(json_agg(q), '[]'::json) FROM (SELECT *" PD_ROWS ") q"
                                       : "SELECT *" PD_ROWS,
                               &q);
#undef PD_ROWS
                if (!out)
                        r = -EIO;
        }
        if (out && c->json)
                printf("%s\n", PQgetvalue(out, 0, 0));
        else if (out)
                for (int i = 0; i < PQntuples(out); i++) {
                        if (i > 0)
                                putchar('\n');
                        ctl_print_record(stdout, out, i, NULL, "");
                }
        PQclear(out);
        ctl_params_done(&q);
        codec_referral_free(child);
        free(child_name);
        free(cells);
        PQclear(res);
        return r == -ENOMEM ? ctl_fail(c, "out of memory"), r : r;
}

int ctl_case_main(int argc, char **argv) {
        ctl c;
        ctl_init(&c, "case", case_usage);
        enum { OPT_PERSONAL = 1, OPT_BY };
        static const struct option options[] = {
                {"personal", no_argument, NULL, OPT_PERSONAL},
                {"by", required_argument, NULL, OPT_BY},
                {NULL, 0, NULL, 0},
        };
        bool personal = false;
        const char *by = NULL;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_PERSONAL: personal = true; break;
                case OPT_BY: by = optarg; break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        if (by && !personal)
                return ctl_usage_error(&c, "--by is for --personal");
        if (optind >= argc)
                return ctl_usage_error(&c, "a case id or referral id is required");
        if (optind + 1 < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind + 1]);
        const char *id = argv[optind];

        char *referral_id = NULL, *case_id = NULL;
        /* --personal writes its audit row: a transaction that may write. */
        int r = ctl_connect(&c, !personal);
        if (r >= 0) {
                r = ctl_case_resolve(&c, id, &referral_id, &case_id);
                if (r == -ENOENT)
                        ctl_fail(&c, "no case or referral with the id %s", id);
                else if (r == -ENOMEM)
                        ctl_fail(&c, "out of memory");
        }
        if (r >= 0 && personal)
                r = show_personal(&c, referral_id, by);
        else if (r >= 0) {
                ctl_params p = {0};
                ctl_param(&p, CTL_OID_TEXT, referral_id);
                ctl_param(&p, CTL_OID_TIMESTAMPTZ, c.now);
                r = param_texts(&p, reason_texts);
                if (r >= 0)
                        r = param_texts(&p, flag_texts);
                if (r >= 0)
                        r = ctl_show(&c, case_sections, sizeof case_sections / sizeof case_sections[0], &p);
                else
                        ctl_fail(&c, "out of memory");
                ctl_params_done(&p);
        }
        free(referral_id);
        free(case_id);
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
