/* allvarsctl: the plumbing its subcommands share (see common.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "pgconn.h"
#include "sqlstate.h"

enum {
        OPT_CONFIG = 0x1001,
        OPT_DATABASE,
        OPT_BOOTSTRAP,
        OPT_JSON,
        OPT_NOW,
};

static const struct option global_options[] = {
        {"config", required_argument, NULL, OPT_CONFIG},
        {"database", required_argument, NULL, OPT_DATABASE},
        {"bootstrap", required_argument, NULL, OPT_BOOTSTRAP},
        {"json", no_argument, NULL, OPT_JSON},
        {"now", required_argument, NULL, OPT_NOW},
        {"help", no_argument, NULL, 'h'},
};
#define N_GLOBAL (sizeof global_options / sizeof global_options[0])

void ctl_init(ctl *c, const char *command, const char *usage) {
        *c = (ctl){.command = command, .usage = usage};
}

void ctl_done(ctl *c) {
        if (!c)
                return;
        if (c->pg)
                PQfinish(c->pg);
        c->pg = NULL;
        config_free(c->cfg);
        c->cfg = NULL;
}

static void vmessage(ctl *c, const char *fmt, va_list ap) {
        fprintf(stderr, "allvarsctl %s: ", c->command);
        vfprintf(stderr, fmt, ap);
}

int ctl_usage_error(ctl *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vmessage(c, fmt, ap);
        va_end(ap);
        fprintf(stderr, " (see allvarsctl %s --help)\n", c->command);
        return CTL_EXIT_USAGE;
}

int ctl_fail(ctl *c, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vmessage(c, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return CTL_EXIT_FAILURE;
}

int ctl_parse_count(const char *s, long long *ret) {
        char *end;
        if (!s || !isdigit((unsigned char)s[0]))
                return -EINVAL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int ctl_getopt(ctl *c, int argc, char **argv, const struct option *own) {
        if (!c->options[0].name) {
                size_t n = 0;
                for (size_t i = 0; own && own[i].name && n < 31 - N_GLOBAL; i++)
                        c->options[n++] = own[i];
                for (size_t i = 0; i < N_GLOBAL; i++)
                        c->options[n++] = global_options[i];
                c->options[n] = (struct option){0};
                optind = 0;             /* a full restart of getopt for this argv */
        }
        opterr = 0;
        for (;;) {
                int o = getopt_long(argc, argv, ":c:h", c->options, NULL);
                switch (o) {
                case 'c':
                case OPT_CONFIG: c->config_path = optarg; continue;
                case OPT_DATABASE: c->database = optarg; continue;
                case OPT_BOOTSTRAP: c->bootstrap = optarg; continue;
                case OPT_JSON: c->json = true; continue;
                case OPT_NOW: {
                        usec_t t;
                        if (clock_parse_rfc3339(optarg, &t) < 0) {
                                ctl_usage_error(c, "--now: not an RFC 3339 time: %s", optarg);
                                return CTL_OPT_ERROR;
                        }
                        c->now_arg = optarg;
                        continue;
                }
                case 'h': fputs(c->usage, stdout); return CTL_OPT_HELP;
                case ':':
                        ctl_usage_error(c, "option %s needs a value", argv[optind - 1]);
                        return CTL_OPT_ERROR;
                case '?':
                        if (optopt)
                                ctl_usage_error(c, "unknown option -%c", optopt);
                        else
                                ctl_usage_error(c, "unknown option %s", argv[optind - 1]);
                        return CTL_OPT_ERROR;
                default: return o;
                }
        }
}

int ctl_load_config(ctl *c) {
        const char *path = c->config_path;
        if (!path) {
                if (c->database)
                        return 0;
                /* No configuration file: libpq's PG* environment is the connection. */
                if (access(CTL_CONFIG_DEFAULT_PATH, F_OK) < 0 && errno == ENOENT)
                        return 0;
                path = CTL_CONFIG_DEFAULT_PATH;
        }
        /* allvarsctl's own file (the operator's role), never the daemon's
         * unless named: the pepper is not needed here. */
        char err[512] = "";
        int r = config_load_client(path, &c->cfg, err, sizeof err);
        if (r < 0) {
                ctl_fail(c, "configuration: %s%s", err[0] ? err : strerror(-r),
                         c->database ? ""
                                     : " (without it, give --database CONNINFO, or leave out --config where no "
                                       "configuration file exists to use the PG* environment)");
                c->cfg = NULL;
                return r;
        }
        return 0;
}

static int settle_now(ctl *c) {
        usec_t t;
        if (c->now_arg) {
                int r = clock_parse_rfc3339(c->now_arg, &t);
                if (r < 0)
                        return r;
        } else if (c->cfg && c->cfg->clock_file && c->cfg->clock_file[0]) {
                /* The daemon's clock (tests set it): deadlines look the same to both. */
                clock_source clk;
                int r = clock_source_init(&clk, c->cfg->clock_file);
                if (r < 0) {
                        ctl_fail(c, "clock.file %s: %s", c->cfg->clock_file, strerror(-r));
                        return r;
                }
                t = clock_now(&clk);
                clock_source_done(&clk);
        } else
                t = clock_realtime();
        clock_format_rfc3339(t, c->now);
        return 0;
}

void ctl_drop_notice(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static const char *first_line(const char *s, char *buf, size_t size) {
        size_t n = strcspn(s, "\n");
        snprintf(buf, size, "%.*s", (int)n, s);
        return buf;
}

/* ": what to do" for an error of the deployment (sqlstate_fix), else "". */
static const char *fix_of(const char *sqlstate, char *buf, size_t size) {
        const char *fix = sqlstate_fix(sqlstate);
        snprintf(buf, size, "%s%s", fix ? ": " : "", fix ? fix : "");
        return buf;
}

int ctl_connect(ctl *c, bool read_only) {
        int r = ctl_load_config(c);
        if (r < 0)
                return r;
        r = settle_now(c);
        if (r < 0)
                return r;

        const char *conninfo = c->database ? c->database : c->cfg && c->cfg->db_conninfo ? c->cfg->db_conninfo : "";
        const char *password = !c->database && c->cfg ? c->cfg->db_password : NULL;
        const char *keys[4], *values[4];
        int n = 0;
        /* dbname with expand_dbname: a whole conninfo string or URI; later keys win. */
        keys[n] = "dbname", values[n++] = conninfo;
        if (password && password[0])
                keys[n] = "password", values[n++] = password;
        keys[n] = "fallback_application_name", values[n++] = "allvarsctl";
        keys[n] = NULL, values[n] = NULL;
        /* At most CTL_CONNECT_TIMEOUT s, and one attempt: a wrong password or a
         * missing database is said at once, with its fix. */
        char line[512], state[6], fix[300];
        r = pgconn_open(keys, values, CTL_CONNECT_TIMEOUT, &c->pg, state, line, sizeof line);
        if (r < 0) {
                ctl_fail(c, "cannot connect to PostgreSQL: %s%s", line, fix_of(state, fix, sizeof fix));
                return r;
        }
        PQsetNoticeProcessor(c->pg, ctl_drop_notice, NULL);
        PGresult *res = PQexec(c->pg, read_only ? "SET default_transaction_read_only = on; "
                                                  "SET statement_timeout = '60s'"
                                                : "SET statement_timeout = '60s'");
        bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok)
                ctl_fail(c, "database: %s", first_line(PQerrorMessage(c->pg), line, sizeof line));
        PQclear(res);
        return ok ? 0 : -EIO;
}

void ctl_param(ctl_params *p, Oid type, const char *value) {
        if (p->n >= (int)(sizeof p->values / sizeof p->values[0]))
                abort();        /* a programming error: too many parameters */
        p->types[p->n] = type;
        p->values[p->n++] = value;
}

int ctl_param_array(ctl_params *p, Oid type, const char *const *items, size_t n) {
        size_t len = 3;
        for (size_t i = 0; i < n; i++)
                len += (items[i] ? 2 * strlen(items[i]) : 4) + 3;
        char *s = malloc(len), *w = s;
        if (!s)
                return -ENOMEM;
        /* Array literal: every element double-quoted, \ and " escaped. */
        *w++ = '{';
        for (size_t i = 0; i < n; i++) {
                if (i)
                        *w++ = ',';
                if (!items[i]) {
                        memcpy(w, "NULL", 4);
                        w += 4;
                        continue;
                }
                *w++ = '"';
                for (const char *q = items[i]; *q; q++) {
                        if (*q == '"' || *q == '\\')
                                *w++ = '\\';
                        *w++ = *q;
                }
                *w++ = '"';
        }
        *w++ = '}';
        *w = 0;
        p->owned[p->n_owned++] = s;
        ctl_param(p, type, s);
        return 0;
}

void ctl_params_done(ctl_params *p) {
        for (int i = 0; i < p->n_owned; i++)
                free(p->owned[i]);
        p->n_owned = 0;
}

PGresult *ctl_exec(ctl *c, const char *sql, const ctl_params *p) {
        PGresult *res = PQexecParams(c->pg, sql, p ? p->n : 0, p ? p->types : NULL, p ? p->values : NULL, NULL,
                                     NULL, 0);
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
                return res;
        const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        char line[512], fix[300];
        ctl_fail(c, "database: %s%s", msg ? msg : first_line(PQerrorMessage(c->pg), line, sizeof line),
                 fix_of(state, fix, sizeof fix));
        PQclear(res);
        return NULL;
}

int ctl_only_connection_options(ctl *c) {
        if (c->json)
                return ctl_usage_error(c, "--json is not supported here");
        if (c->bootstrap)
                return ctl_usage_error(c, "--bootstrap is not used here");
        if (c->now_arg)
                return ctl_usage_error(c, "--now is not used here");
        return 0;
}

bool ctl_is_uuid(const char *s) {
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char)s[i]))
                        return false;
        }
        return s[36] == 0;
}

int ctl_case_resolve(ctl *c, const char *id, char **ret_referral_id, char **ret_case_id) {
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_TEXT, id);
        ctl_param(&p, CTL_OID_TEXT, ctl_is_uuid(id) ? id : NULL);
        PGresult *res = ctl_exec(c,
                                 "SELECT referral_id, case_id::text FROM allvarsd.referrals"
                                 " WHERE referral_id = $1::text OR case_id = $2::uuid"
                                 " ORDER BY referral_id = $1::text DESC LIMIT 1",
                                 &p);
        if (!res)
                return -EIO;
        int r = -ENOENT;
        if (PQntuples(res) == 1) {
                *ret_referral_id = strdup(PQgetvalue(res, 0, 0));
                *ret_case_id = strdup(PQgetvalue(res, 0, 1));
                r = *ret_referral_id && *ret_case_id ? 0 : -ENOMEM;
        }
        PQclear(res);
        return r;
}
