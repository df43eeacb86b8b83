/* allvarsctl's plumbing, shared by its subcommands: the global options
 * (--config, --database, --bootstrap, --json, --now), loading the
 * configuration, connecting with libpq, query parameters, and finding a case.
 * Printing is in print.h, Kafka in kafka.h.
 *
 * Output shows ids, codes and times only: it lands in terminals and tickets,
 * so no query of allvarsctl selects personal data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <getopt.h>
#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "commands.h"                   /* the subcommands' entry points */
#include "lifecycle.h"

/* Exit codes of every subcommand. */
#define CTL_EXIT_OK      0
#define CTL_EXIT_FAILURE 1
#define CTL_EXIT_USAGE   2

/* Seconds allvarsctl waits for PostgreSQL to answer a connection. */
#define CTL_CONNECT_TIMEOUT 10

/* ctl_getopt's answers besides a command's own option values. */
#define CTL_OPT_HELP  (-2)              /* --help was given: usage printed */
#define CTL_OPT_ERROR (-3)              /* a usage error: one line printed */

/* PostgreSQL type oids for the parameters (pg_type.h is server-side only). */
#define CTL_OID_BOOL        16
#define CTL_OID_INT8        20
#define CTL_OID_INT4        23
#define CTL_OID_TEXT        25
#define CTL_OID_DATE        1082
#define CTL_OID_TIMESTAMPTZ 1184
#define CTL_OID_INT4_ARRAY  1007
#define CTL_OID_TEXT_ARRAY  1009
#define CTL_OID_INT8_ARRAY  1016

/* SQL: a timestamptz as RFC 3339 UTC (whole seconds), and a number of seconds
 * s >= 0 as "2d 3h", "5h 07m" or "12m". */
#define CTL_SQL_TS(x) "to_char((" x ") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
#define CTL_SQL_DURATION(s)                                                                              \
        "(CASE WHEN (" s ") >= 86400 THEN ((" s ") / 86400)::text || 'd ' || ((" s ") % 86400 / 3600)::text " \
        "|| 'h' WHEN (" s ") >= 3600 THEN ((" s ") / 3600)::text || 'h ' || lpad(((" s ") % 3600 / 60)::text, " \
        "2, '0') || 'm' ELSE ((" s ") / 60)::text || 'm' END)"
/* SQL: the seconds until the deadline of the case (alias c) at now, while the
 * conversation is owed (lifecycle.h CASE_SQL_OWED); as "in 2d 3h" or
 * "overdue 12m" (t.s: those seconds). */
#define CTL_SQL_SECONDS_LEFT(now) \
        "CASE WHEN " CASE_SQL_OWED("c") " THEN floor(extract(epoch FROM c.deadline - " now "))::bigint END"
#define CTL_SQL_TIME_LEFT                                                                                  \
        "CASE WHEN t.s >= 0 THEN 'in ' || " CTL_SQL_DURATION("t.s") " WHEN t.s < 0 THEN 'overdue ' || " \
        CTL_SQL_DURATION("-t.s") " END"
/* SQL: the decision's (alias d) flags and what the case (c) still waits for, as codes. */
#define CTL_SQL_CASE_FLAGS                                                                                 \
        "nullif(concat_ws(',', nullif(d.flags, ''),"                                                    \
        " CASE WHEN c.awaiting_assessment THEN 'AWAITING_ASSESSMENT' END,"                               \
        " CASE WHEN c.awaiting_clearance THEN 'AWAITING_CLEARANCE' END,"                                 \
        " CASE WHEN c.awaiting_contact THEN 'AWAITING_CONTACT' END), '')"
/* SQL: the case (alias a) is overdue at now: lifecycle.h's one definition,
 * the deadline watch's MISSED. */
#define CTL_SQL_OVERDUE(a, now) CASE_SQL_OVERDUE(a, now)

typedef struct ctl {
        const char *command;            /* "status": for messages */
        const char *usage;              /* the command's usage text, printed by --help */
        const char *config_path;        /* --config, or NULL */
        const char *database;           /* --database CONNINFO, or NULL */
        const char *bootstrap;          /* --bootstrap HOST:PORT, or NULL */
        const char *now_arg;            /* --now TIME, or NULL */
        bool json;
        config *cfg;                    /* after ctl_load_config: NULL when none was read */
        PGconn *pg;                     /* after ctl_connect */
        char now[RFC3339_MAX];          /* after ctl_connect: "now" for the queries */
        struct option options[32];      /* the command's options and the global ones */
} ctl;

void ctl_init(ctl *c, const char *command, const char *usage);
/* Release the connection and the configuration. */
void ctl_done(ctl *c);

/* getopt_long over the command's own options (may be NULL) and the global
 * ones, which it handles itself. Returns a command option's value, -1 at the
 * end (optind then indexes the first operand), CTL_OPT_HELP after printing the
 * usage, or CTL_OPT_ERROR after printing one line. argv[0] is the command. */
int ctl_getopt(ctl *c, int argc, char **argv, const struct option *own);

/* Print "allvarsctl CMD: MESSAGE" (and, for usage errors, a pointer to --help)
 * on stderr; return the exit code to use. */
int ctl_usage_error(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ctl_fail(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parse a non-negative integer option value; -EINVAL when it is not one. */
int ctl_parse_count(const char *s, long long *ret);

/* Load the configuration: --config if given (it must load); else, without
 * --database, the default file when it exists. With --database and no
 * --config, or without a config file, nothing is loaded (c->cfg stays NULL)
 * and the connection comes from --database or libpq's PG* environment.
 * Returns 0 or a negative errno after printing the reason. */
int ctl_load_config(ctl *c);
/* ctl_load_config, then connect (read_only: every transaction read only) and
 * settle c->now. Returns 0 or a negative errno after printing the reason. */
int ctl_connect(ctl *c, bool read_only);

/* Query parameters, all passed as text with their types given. */
typedef struct ctl_params {
        int n;
        const char *values[12];
        Oid types[12];
        char *owned[12];                /* array literals built here, freed by ctl_params_done */
        int n_owned;
} ctl_params;
void ctl_param(ctl_params *p, Oid type, const char *value);
/* An array parameter (text[], int4[], int8[]: the type's oid) from n strings,
 * as a PostgreSQL array literal; NULL items are SQL NULLs. */
int ctl_param_array(ctl_params *p, Oid type, const char *const *items, size_t n);
void ctl_params_done(ctl_params *p);

/* Run a query; NULL after printing the error (one line) on failure. */
PGresult *ctl_exec(ctl *c, const char *sql, const ctl_params *p);

/* Refuse the global options a command does not use (--json, --bootstrap,
 * --now): returns 0, or the exit code after printing the usage error. */
int ctl_only_connection_options(ctl *c);

/* libpq's notice processor that drops the server's NOTICEs ("schema already
 * exists, skipping"): they are not for the operator. */
void ctl_drop_notice(void *arg, const char *message);

/* Find a referral by its case id or the police's referral id: 0 with both ids
 * (malloc'd), -ENOENT when there is none, -EIO after printing a database error. */
int ctl_case_resolve(ctl *c, const char *id, char **ret_referral_id, char **ret_case_id);

/* Whether s is a UUID in the 8-4-4-4-12 hex form. */
bool ctl_is_uuid(const char *s);
