/* allvarsctl: what the database subcommands share (see ctl_db.h). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_db.h"
#include "store.h"

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
                if (access(CONFIG_DEFAULT_PATH, F_OK) < 0 && errno == ENOENT)
                        return 0;
                path = CONFIG_DEFAULT_PATH;
        }
        char err[512] = "";
        int r = config_load(path, &c->cfg, err, sizeof err);
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

/* The server's NOTICEs ("schema already exists, skipping") are not for the operator. */
static void drop_notice(void *arg, const char *message) {
        (void)arg;
        (void)message;
}

static const char *first_line(const char *s, char *buf, size_t size) {
        size_t n = strcspn(s, "\n");
        snprintf(buf, size, "%.*s", (int)n, s);
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
        c->pg = PQconnectdbParams(keys, values, 1);
        char line[512];
        if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
                ctl_fail(c, "cannot connect to PostgreSQL: %s",
                         c->pg ? first_line(PQerrorMessage(c->pg), line, sizeof line) : "out of memory");
                return -ECONNREFUSED;
        }
        PQsetNoticeProcessor(c->pg, drop_notice, NULL);
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
        char line[512];
        ctl_fail(c, "database: %s", msg ? msg : first_line(PQerrorMessage(c->pg), line, sizeof line));
        PQclear(res);
        return NULL;
}

/* Human output ------------------------------------------------------------ */

/* Columns of a character each, counted by UTF-8 lead bytes (Swedish text). */
static size_t text_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

/* Values come partly from outside (the police's referral ids): a control
 * character must not reach the terminal. */
static void put_text(FILE *f, const char *s) {
        for (; *s; s++)
                fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static void put_padded(FILE *f, const char *s, size_t width, bool right, bool last) {
        size_t w = text_width(s);
        if (right)
                for (; w < width; w++)
                        fputc(' ', f);
        put_text(f, s);
        if (!right && !last)
                for (; w < width; w++)
                        fputc(' ', f);
}

static bool hidden(const char *hide, const char *name) {
        size_t n = strlen(name);
        for (const char *h = hide; h && *h;) {
                size_t len = strcspn(h, ",");
                if (len == n && strncmp(h, name, n) == 0)
                        return true;
                h += len;
                if (*h == ',')
                        h++;
        }
        return false;
}

static bool numeric_type(Oid t) {
        return t == 20 || t == 21 || t == 23 || t == 700 || t == 701 || t == 1700;
}

static void label_of(const char *name, bool upper, char *buf, size_t size) {
        size_t i = 0;
        for (; name[i] && i + 1 < size; i++)
                buf[i] = name[i] == '_' ? ' ' : upper ? (char)toupper((unsigned char)name[i]) : name[i];
        buf[i] = 0;
}

static const char *cell(const PGresult *res, int row, int col) {
        if (PQgetisnull(res, row, col))
                return "-";
        if (PQftype(res, col) == CTL_OID_BOOL)
                return PQgetvalue(res, row, col)[0] == 't' ? "yes" : "no";
        return PQgetvalue(res, row, col);
}

void ctl_print_table(FILE *f, const PGresult *res, const char *hide, const char *indent) {
        int rows = PQntuples(res), cols = PQnfields(res);
        size_t width[cols];
        char label[cols][64];
        int last = -1;
        for (int j = 0; j < cols; j++) {
                label_of(PQfname(res, j), true, label[j], sizeof label[j]);
                width[j] = text_width(label[j]);
                if (hidden(hide, PQfname(res, j)))
                        continue;
                last = j;
                for (int i = 0; i < rows; i++) {
                        size_t w = text_width(cell(res, i, j));
                        if (w > width[j])
                                width[j] = w;
                }
        }
        for (int i = -1; i < rows; i++) {
                fputs(indent, f);
                bool first = true;
                for (int j = 0; j < cols; j++) {
                        if (hidden(hide, PQfname(res, j)))
                                continue;
                        if (!first)
                                fputs("  ", f);
                        first = false;
                        bool right = numeric_type(PQftype(res, j));
                        put_padded(f, i < 0 ? label[j] : cell(res, i, j), width[j], right, j == last);
                }
                fputc('\n', f);
        }
}

void ctl_print_record(FILE *f, const PGresult *res, int row, const char *hide, const char *indent) {
        int cols = PQnfields(res);
        size_t width = 0;
        char label[64];
        for (int j = 0; j < cols; j++) {
                label_of(PQfname(res, j), false, label, sizeof label);
                if (!hidden(hide, PQfname(res, j)) && text_width(label) > width)
                        width = text_width(label);
        }
        for (int j = 0; j < cols; j++) {
                if (hidden(hide, PQfname(res, j)))
                        continue;
                label_of(PQfname(res, j), false, label, sizeof label);
                fputs(indent, f);
                put_padded(f, label, width, false, false);
                fputs("  ", f);
                put_text(f, cell(res, row, j));
                fputc('\n', f);
        }
}

static int append(char **buf, size_t *len, const char *s) {
        size_t n = strlen(s);
        char *b = realloc(*buf, *len + n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + *len, s, n + 1);
        *buf = b;
        *len += n;
        return 0;
}

/* One SQL text: the JSON of a section. */
static int append_section_json(char **buf, size_t *len, const ctl_section *s) {
        int r = append(buf, len, s->shape == CTL_RECORD ? "(SELECT row_to_json(q) FROM (" :
                                                          "(SELECT coalesce(json_agg(q), '[]'::json) FROM (");
        if (r >= 0)
                r = append(buf, len, s->sql);
        if (r >= 0)
                r = append(buf, len, ") q)");
        return r;
}

static int show_json(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        char *sql = NULL;
        size_t len = 0;
        int r = append(&sql, &len, "SELECT ");
        if (n == 1 && !sections[0].key)
                r = r < 0 ? r : append_section_json(&sql, &len, &sections[0]);
        else {
                r = r < 0 ? r : append(&sql, &len, "json_build_object(");
                for (size_t i = 0; i < n && r >= 0; i++) {
                        /* Keys are fixed words of this program, never input. */
                        char key[80];
                        snprintf(key, sizeof key, "%s'%s', ", i ? ", " : "", sections[i].key);
                        r = append(&sql, &len, key);
                        r = r < 0 ? r : append_section_json(&sql, &len, &sections[i]);
                }
                r = r < 0 ? r : append(&sql, &len, ")");
        }
        if (r < 0) {
                free(sql);
                ctl_fail(c, "out of memory");
                return r;
        }
        PGresult *res = ctl_exec(c, sql, p);
        free(sql);
        if (!res)
                return -EIO;
        if (PQntuples(res) == 1)
                printf("%s\n", PQgetisnull(res, 0, 0) ? "null" : PQgetvalue(res, 0, 0));
        PQclear(res);
        return 0;
}

static int show_human(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        for (size_t i = 0; i < n; i++) {
                const ctl_section *s = &sections[i];
                PGresult *res = ctl_exec(c, s->sql, p);
                if (!res)
                        return -EIO;
                const char *indent = s->title ? "  " : "";
                if (i > 0)
                        putchar('\n');
                if (s->title)
                        printf("%s\n", s->title);
                int rows = PQntuples(res);
                if (rows == 0 && s->empty)
                        printf("%s%s\n", indent, s->empty);
                else if (s->shape == CTL_TABLE)
                        ctl_print_table(stdout, res, s->hide, indent);
                else
                        for (int j = 0; j < rows && (j == 0 || s->shape == CTL_RECORDS); j++) {
                                if (j > 0)
                                        putchar('\n');
                                ctl_print_record(stdout, res, j, s->hide, indent);
                        }
                PQclear(res);
        }
        return 0;
}

int ctl_show(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        if (c->json)
                return show_json(c, sections, n, p);
        /* The sections of one view come from one snapshot. */
        PGresult *res = ctl_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL);
        if (!res)
                return -EIO;
        PQclear(res);
        int r = show_human(c, sections, n, p);
        res = ctl_exec(c, r < 0 ? "ROLLBACK" : "COMMIT", NULL);
        PQclear(res);
        return r;
}

/* Kafka ------------------------------------------------------------------- */

static const char *config_kafka(const ctl *c, const char *key) {
        for (size_t i = 0; c->cfg && i < c->cfg->n_kafka; i++)
                if (strcmp(c->cfg->kafka[i].key, key) == 0)
                        return c->cfg->kafka[i].value;
        return NULL;
}

bool ctl_kafka_known(const ctl *c) {
        if (c->bootstrap)
                return true;
        /* kafka.embedded lives inside the daemon's process: nothing to reach. */
        if (!c->cfg || c->cfg->kafka_embedded)
                return false;
        return config_kafka(c, "bootstrap.servers") || config_kafka(c, "metadata.broker.list");
}

int ctl_kafka_conf(ctl *c, rd_kafka_conf_t **ret) {
        if (!ctl_kafka_known(c)) {
                ctl_fail(c, "no Kafka to reach: give --bootstrap HOST:PORT or kafka.bootstrap.servers in the "
                            "configuration");
                return -ENOENT;
        }
        char err[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* Our own defaults first: the configuration's kafka.* keys may change them. */
        if (rd_kafka_conf_set(conf, "client.id", "allvarsctl", err, sizeof err) ||
            rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) ||
            rd_kafka_conf_set(conf, "message.timeout.ms", "30000", err, sizeof err))
                goto fail;
        for (size_t i = 0; c->cfg && !c->cfg->kafka_embedded && i < c->cfg->n_kafka; i++)
                if (rd_kafka_conf_set(conf, c->cfg->kafka[i].key, c->cfg->kafka[i].value, err, sizeof err)) {
                        ctl_fail(c, "kafka.%s: %s", c->cfg->kafka[i].key, err);
                        rd_kafka_conf_destroy(conf);
                        return -EINVAL;
                }
        if (c->bootstrap && rd_kafka_conf_set(conf, "bootstrap.servers", c->bootstrap, err, sizeof err))
                goto fail;
        *ret = conf;
        return 0;
fail:
        ctl_fail(c, "Kafka: %s", err);
        rd_kafka_conf_destroy(conf);
        return -EINVAL;
}

typedef struct delivery_state {
        bool done;
        rd_kafka_resp_err_t err;
        rd_kafka_msg_status_t status;
        int32_t partition;
        int64_t offset;
} delivery_state;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
        (void)rk;
        (void)opaque;
        delivery_state *d = m->_private;
        d->done = true;
        d->err = m->err;
        d->status = rd_kafka_message_status(m);
        d->partition = m->partition;
        d->offset = m->offset;
}

int ctl_produce(ctl *c, const char *topic, const void *key, size_t key_len, const void *payload, size_t len,
                rd_kafka_headers_t *headers, ctl_delivery *ret) {
        rd_kafka_conf_t *conf;
        char err[512];
        int r = ctl_kafka_conf(c, &conf);
        if (r < 0) {
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return r;
        }
        /* Exactly one copy, written to every in-sync replica (NOTES.md: producer). */
        if (rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err) ||
            rd_kafka_conf_set(conf, "acks", "all", err, sizeof err)) {
                ctl_fail(c, "Kafka: %s", err);
                rd_kafka_conf_destroy(conf);
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return -EINVAL;
        }
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!rk) {
                ctl_fail(c, "Kafka: %s", err);
                if (headers)
                        rd_kafka_headers_destroy(headers);
                return -EINVAL;
        }
        delivery_state d = {.partition = -1, .offset = -1};
        rd_kafka_resp_err_t e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)payload, len),
                RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
        if (e) {
                if (headers)
                        rd_kafka_headers_destroy(headers);  /* not taken over on failure */
                ctl_fail(c, "cannot produce to %s: %s", topic, rd_kafka_err2str(e));
                rd_kafka_destroy(rk);
                return -EIO;
        }
        /* The delivery report comes within message.timeout.ms, whatever happens. */
        while (!d.done) {
                rd_kafka_flush(rk, 1000);
                if (!d.done && rd_kafka_fatal_error(rk, err, sizeof err)) {
                        ctl_fail(c, "Kafka: %s", err);
                        break;
                }
        }
        rd_kafka_destroy(rk);
        if (!d.done)
                return -EIO;
        if (d.err) {
                ctl_fail(c, "not delivered to %s: %s%s", topic, rd_kafka_err2str(d.err),
                         d.status == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED ? " (it may have been written all the same)"
                                                                             : "");
                return -EIO;
        }
        *ret = (ctl_delivery){.partition = d.partition, .offset = d.offset};
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

/* allvarsctl migrate and check-config: the daemon's --migrate and
 * --check-config, for operators who run them apart from the service. */

static const char migrate_usage[] =
        "Usage: allvarsctl migrate [--schemas DIR] [--config PATH | --database CONNINFO]\n"
        "Apply the database migrations that are not applied yet, like allvarsd --migrate (run it as the\n"
        "migration owner, e.g. with --database).\n\n"
        "  --schemas DIR          where the migrations are (default " SCHEMAS_DIR ")\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n";

static int only_connection_options(ctl *c) {
        if (c->json)
                return ctl_usage_error(c, "--json is not supported here");
        if (c->bootstrap)
                return ctl_usage_error(c, "--bootstrap is not used here");
        if (c->now_arg)
                return ctl_usage_error(c, "--now is not used here");
        return 0;
}

int ctl_migrate_main(int argc, char **argv) {
        enum { OPT_SCHEMAS = 1 };
        static const struct option options[] = {
                {"schemas", required_argument, NULL, OPT_SCHEMAS},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "migrate", migrate_usage);
        const char *schemas = SCHEMAS_DIR;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                if (o == OPT_SCHEMAS)
                        schemas = optarg;
                else
                        return o == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        }
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
        int r = only_connection_options(&c);
        if (r)
                return r;

        r = ctl_load_config(&c);
        store *s = NULL;
        char err[512] = "";
        if (r >= 0) {
                const char *conninfo = c.database ? c.database : c.cfg && c.cfg->db_conninfo ? c.cfg->db_conninfo : "";
                const char *password = !c.database && c.cfg ? c.cfg->db_password : NULL;
                r = store_connect(conninfo, password, &s, err, sizeof err);
                if (r < 0)
                        ctl_fail(&c, "cannot connect to PostgreSQL: %s", err);
        }
        if (r >= 0) {
                PQsetNoticeProcessor((PGconn *)store_pg(s), drop_notice, NULL);
                r = store_migrate(s, schemas, err, sizeof err);
                if (r < 0)
                        ctl_fail(&c, "migration failed: %s", err[0] ? err : strerror(-r));
        }
        if (r >= 0) {
                int version = 0;
                int applied = r;
                r = store_check_schema(s, &version);
                if (r < 0)
                        ctl_fail(&c, "after %d migration(s), the schema is version %d; this allvarsctl expects %d",
                                 applied, version, STORE_SCHEMA_VERSION);
                else
                        printf("%d migration(s) applied; the schema is at version %d\n", applied, version);
        }
        store_free(s);
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}

static const char check_config_usage[] =
        "Usage: allvarsctl check-config [--config PATH]\n"
        "Read the configuration like allvarsd --check-config: print the effective values (secrets\n"
        "masked) and exit 0, or name the file, line and key that is wrong and exit 1.\n\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH ")\n";

int ctl_check_config_main(int argc, char **argv) {
        ctl c;
        ctl_init(&c, "check-config", check_config_usage);
        int o;
        while ((o = ctl_getopt(&c, argc, argv, NULL)) != -1)
                return o == CTL_OPT_HELP ? CTL_EXIT_OK : CTL_EXIT_USAGE;
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);
        int r = only_connection_options(&c);
        if (r)
                return r;
        if (c.database)
                return ctl_usage_error(&c, "--database is not used here");

        const char *path = c.config_path ? c.config_path : CONFIG_DEFAULT_PATH;
        char err[512] = "";
        r = config_load(path, &c.cfg, err, sizeof err);
        if (r < 0) {
                ctl_fail(&c, "%s", err[0] ? err : strerror(-r));
                c.cfg = NULL;
                return CTL_EXIT_FAILURE;
        }
        config_dump(c.cfg, stdout);
        printf("# %s: OK\n", path);
        ctl_done(&c);
        return CTL_EXIT_OK;
}
