/* Test harness: see harness.h. */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "identity.h"
#include "outcome_batch.h"

static const char *env_or(const char *name, const char *fallback) {
        const char *v = getenv(name);
        return v && *v ? v : fallback;
}

/* ---- files of the source tree ---- */

char *harness_repo_path(const char *rel, char *buf, size_t size) {
        const char *root = getenv("ALLVARS_ROOT");
        if (root && *root) {
                snprintf(buf, size, "%s/%s", root, rel);
                return buf;
        }
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
                exe[n] = '\0';
                snprintf(buf, size, "%s/%s", dirname(dirname(dirname(exe))), rel); /* .../build/tests/test-x */
                if (access(buf, R_OK) == 0)
                        return buf;
        }
        snprintf(buf, size, "%s", rel);
        return buf;
}

char *harness_schemas_dir(char *buf, size_t size) {
        const char *d = getenv("ALLVARS_SCHEMAS");
        if (d && *d) {
                snprintf(buf, size, "%s", d);
                return buf;
        }
        return harness_repo_path("schemas", buf, size);
}

char *harness_read_file(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "harness: cannot open %s: %m\n", path);
                return NULL;
        }
        char *buf = NULL;
        size_t len = 0;
        FILE *m = open_memstream(&buf, &len);
        if (!m) {
                fclose(f);
                return NULL;
        }
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
                fwrite(chunk, 1, n, m);
        bool failed = ferror(f);
        fclose(f);
        if (fclose(m) != 0 || failed) {
                fprintf(stderr, "harness: cannot read %s\n", path);
                free(buf);
                return NULL;
        }
        return buf;
}

/* ---- PostgreSQL ---- */

bool harness_pg_available(void) {
        return getenv("PGHOST") != NULL;
}

/* Appends key='value' to a conninfo string, quoting as libpq requires. */
static int conninfo_add(char *buf, size_t size, const char *key, const char *value) {
        size_t n = strlen(buf);
        int w = snprintf(buf + n, size - n, "%s%s='", n ? " " : "", key);
        if (w < 0 || (size_t)w >= size - n)
                return -ENAMETOOLONG;
        n += (size_t)w;
        for (const char *p = value; *p; p++) {
                if (n + 3 >= size)
                        return -ENAMETOOLONG;
                if (*p == '\'' || *p == '\\')
                        buf[n++] = '\\';
                buf[n++] = *p;
        }
        if (n + 2 > size)
                return -ENAMETOOLONG;
        buf[n++] = '\'';
        buf[n] = '\0';
        return 0;
}

static int conninfo_for(const char *dbname, char *buf, size_t size) {
        int r;
        buf[0] = '\0';
        /* Only what pg.sh set: libpq's defaults fill the rest the same way. */
        if (getenv("PGHOST") && (r = conninfo_add(buf, size, "host", getenv("PGHOST"))) < 0)
                return r;
        if (getenv("PGPORT") && (r = conninfo_add(buf, size, "port", getenv("PGPORT"))) < 0)
                return r;
        if (getenv("PGUSER") && (r = conninfo_add(buf, size, "user", getenv("PGUSER"))) < 0)
                return r;
        return conninfo_add(buf, size, "dbname", dbname);
}

int harness_pg_connect(const char *dbname, PGconn **ret) {
        char conninfo[1024];
        int r = conninfo_for(dbname ? dbname : env_or("PGDATABASE", "postgres"), conninfo, sizeof conninfo);
        if (r < 0)
                return r;
        PGconn *c = PQconnectdb(conninfo);
        if (!c || PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "harness: cannot connect (%s): %s", conninfo,
                        c ? PQerrorMessage(c) : "out of memory\n");
                PQfinish(c);
                return -ECONNREFUSED;
        }
        /* "relation already exists, skipping" and the like are not what a test looks for. */
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        *ret = c;
        return 0;
}

/* 0 when res is a success, else -EIO after printing why; clears res. */
static int command_done(PGconn *c, PGresult *res, const char *sql) {
        ExecStatusType st = PQresultStatus(res);
        int r = 0;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                fprintf(stderr, "harness: SQL failed: %.200s: %s", sql, PQerrorMessage(c));
                r = -EIO;
        }
        PQclear(res);
        return r;
}

int harness_exec(PGconn *c, const char *sql) {
        return command_done(c, PQexec(c, sql), sql);
}

int harness_exec_params(PGconn *c, const char *sql, int n, const char *const *values, const int *lengths,
                        const int *formats) {
        return command_done(c, PQexecParams(c, sql, n, NULL, values, lengths, formats, 0), sql);
}

int harness_vquery_row(PGconn *c, PGresult **ret, const char *fmt, va_list ap) {
        char *sql = NULL;
        if (vasprintf(&sql, fmt, ap) < 0)
                return -ENOMEM;
        PGresult *res = PQexec(c, sql);
        int r = 0;
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                fprintf(stderr, "harness: %s: %s", sql, PQerrorMessage(c));
                r = -EIO;
        } else if (PQntuples(res) != 1) {
                fprintf(stderr, "harness: %s: %d rows, want 1\n", sql, PQntuples(res));
                r = -EIO;
        }
        free(sql);
        if (r < 0) {
                PQclear(res);
                return r;
        }
        *ret = res;
        return 0;
}

/* Runs "<verb> <identifier><rest>" on the maintenance database. */
static int exec_admin(const char *verb, const char *ident, const char *rest) {
        PGconn *c = NULL;
        int r = harness_pg_connect(NULL, &c);
        if (r < 0)
                return r;
        char *q = PQescapeIdentifier(c, ident, strlen(ident));
        char sql[512];
        if (!q) {
                r = -EINVAL;
        } else if ((size_t)snprintf(sql, sizeof sql, "%s %s%s", verb, q, rest) >= sizeof sql) {
                r = -ENAMETOOLONG;
        } else {
                r = harness_exec(c, sql);
        }
        PQfreemem(q);
        PQfinish(c);
        return r;
}

int harness_db_create(const char *template_name, harness_db *ret) {
        return harness_db_create_locale(template_name, NULL, ret);
}

int harness_db_create_locale(const char *template_name, const char *locale, harness_db *ret) {
        harness_db db = {0};
        uint64_t rnd;
        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                return -errno;
        snprintf(db.name, sizeof db.name, "allvars_t_%ld_%016" PRIx64, (long)getpid(), rnd);

        PGconn *c = NULL;
        int r = harness_pg_connect(NULL, &c);
        if (r < 0)
                return r;
        const char *tmpl = template_name ? template_name : "template0";
        char *q = PQescapeIdentifier(c, tmpl, strlen(tmpl));
        if (!q) {
                PQfinish(c);
                return -EINVAL;
        }
        char *l = locale ? PQescapeLiteral(c, locale, strlen(locale)) : NULL;
        PQfinish(c);
        if (locale && !l) {
                PQfreemem(q);
                return -EINVAL;
        }
        char rest[200];
        int w = snprintf(rest, sizeof rest, " TEMPLATE %s%s%s", q, l ? " LOCALE " : "", l ? l : "");
        PQfreemem(q);
        PQfreemem(l);
        if (w < 0 || (size_t)w >= sizeof rest)
                return -ENAMETOOLONG;
        r = exec_admin("CREATE DATABASE", db.name, rest);
        if (r < 0)
                return r;
        r = conninfo_for(db.name, db.conninfo, sizeof db.conninfo);
        if (r < 0) {
                harness_db_drop(&db);
                return r;
        }
        *ret = db;
        return 0;
}

int harness_schema_db_create(harness_db *ret) {
        harness_db db;
        store *st = NULL;
        char dir[PATH_MAX], err[512];
        int r = harness_db_create(NULL, &db);
        if (r < 0)
                return r;
        r = harness_store_connect(&db, &st);
        if (r >= 0) {
                r = store_migrate(st, harness_schemas_dir(dir, sizeof dir), err, sizeof err);
                if (r < 0)
                        fprintf(stderr, "harness: store_migrate %s: %s\n", dir, err);
        }
        store_free(st);
        if (r < 0) {
                harness_db_drop(&db);
                return r;
        }
        *ret = db;
        return 0;
}

int harness_db_drop(const harness_db *db) {
        if (!db || !db->name[0])
                return 0;
        return exec_admin("DROP DATABASE IF EXISTS", db->name, " WITH (FORCE)");
}

int harness_db_exec(const harness_db *db, const char *sql) {
        PGconn *c = NULL;
        int r = harness_pg_connect(db->name, &c);
        if (r < 0)
                return r;
        r = harness_exec(c, sql);
        PQfinish(c);
        return r;
}

int harness_store_connect(const harness_db *db, store **ret) {
        char err[512];
        int r = store_connect(db->conninfo, NULL, ret, err, sizeof err);
        if (r < 0)
                fprintf(stderr, "harness: store_connect: %s\n", err);
        return r;
}

int harness_pepper_file_new(char *path, size_t size) {
        uint8_t pepper[48];
        if (getrandom(pepper, sizeof pepper, 0) != (ssize_t)sizeof pepper)
                return -EIO;
        if ((size_t)snprintf(path, size, "/tmp/allvars-pepper-XXXXXX") >= size)
                return -ENAMETOOLONG;
        int fd = mkostemp(path, O_CLOEXEC);
        if (fd < 0) {
                path[0] = '\0';
                return -errno;
        }
        int r = write(fd, pepper, sizeof pepper) == (ssize_t)sizeof pepper ? 0 : -EIO;
        close(fd);
        if (r < 0) {
                unlink(path);
                path[0] = '\0';
        }
        return r;
}

int harness_config_new(const char *config_name, const char *conninfo, const char *pepper_path,
                       const char *extra_config, config **ret) {
        char *text = NULL, err[512];
        if (asprintf(&text, "database.conninfo = %s\npepper = @file:%s\n%s", conninfo, pepper_path,
                     extra_config ? extra_config : "") < 0)
                return -ENOMEM;
        int r = config_parse_string(config_name, text, ret, err, sizeof err);
        free(text);
        if (r < 0)
                fprintf(stderr, "harness: config: %s\n", err);
        return r;
}

int harness_store_env_new(const char *config_name, const char *extra_config, harness_store_env *ret) {
        harness_store_env e = {0};
        int r;
        if (!harness_pg_available()) {
                fprintf(stderr, "harness: no PostgreSQL: set PGHOST/PGPORT/PGUSER"
                                " (tests/run does; or source tests/lib/pg.sh; pg_start)\n");
                return -ENXIO;
        }
        r = harness_schema_db_create(&e.db);
        if (r < 0)
                return r;
        if ((r = harness_pg_connect(e.db.name, &e.pg)) < 0 ||
            (r = harness_pepper_file_new(e.pepper_path, sizeof e.pepper_path)) < 0 ||
            (r = harness_config_new(config_name, e.db.conninfo, e.pepper_path, extra_config, &e.cfg)) < 0 ||
            (r = harness_store_connect(&e.db, &e.st)) < 0) {
                harness_store_env_done(&e);
                return r;
        }
        *ret = e;
        return 0;
}

void harness_store_env_done(harness_store_env *e) {
        if (!e)
                return;
        store_free(e->st);
        config_free(e->cfg);
        PQfinish(e->pg);
        if (e->pepper_path[0])
                unlink(e->pepper_path);
        harness_db_drop(&e->db);
        *e = (harness_store_env){0};
}

int harness_store_setup(void **state, size_t fixture_size, const char *config_name, const char *extra_config) {
        /* The fixture starts with its env: a pointer to it is one to the env (C11 6.7.2.1). */
        harness_store_env *e = calloc(1, fixture_size > sizeof *e ? fixture_size : sizeof *e);
        *state = e;
        if (!e || harness_store_env_new(config_name, extra_config, e) < 0) {
                free(e);
                *state = NULL;
                return -1;
        }
        return 0;
}

/* Every statistics row the daemon wrote says what the tables say now
 * (schemas/011_referral_stats.sql), and every referral the referral batch
 * decided (its DECIDED audit row) has one: a row left stale by a transaction
 * that changed what the report counts without writing it again, or made
 * wrong by the referral batch (which makes a new referral's row itself,
 * daemon/referral_stats.h), is a difference from the view; a decided
 * referral without its row is one too (a test's own referral rows, inserted
 * by SQL, have none). -1 and a line on stderr for each. */
static int stats_check(PGconn *c) {
        if (!c || PQstatus(c) != CONNECTION_OK)
                return 0;
        PGresult *res = PQexec(c, "SELECT d.case_id, d.outcome, coalesce(d.state, ''), d.what FROM"
                                  " (SELECT *, 'differs from' AS what FROM"
                                  "   (SELECT * FROM allvarsd.referral_stats"
                                  "    EXCEPT SELECT * FROM allvarsd.referral_stats_source) t"
                                  "  UNION ALL"
                                  "  SELECT *, 'is missing, selected by' FROM"
                                  "   (SELECT * FROM allvarsd.referral_stats_source v WHERE NOT EXISTS"
                                  "     (SELECT 1 FROM allvarsd.referral_stats s WHERE s.case_id = v.case_id)"
                                  "    AND EXISTS (SELECT 1 FROM allvarsd.audit a WHERE a.case_id = v.case_id"
                                  "                AND a.action = 'DECIDED' AND a.actor_kind = 'DAEMON')) m) d");
        int r = 0;
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
                for (int i = 0; i < PQntuples(res); i++, r = -1)
                        fprintf(stderr, "# referral_stats row of case %s (%s, %s) %s referral_stats_source\n",
                                PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2),
                                PQgetvalue(res, i, 3));
        else
                fprintf(stderr, "# referral_stats check: %s", PQerrorMessage(c));
        PQclear(res);
        return r;
}

int harness_store_teardown(void **state) {
        harness_store_env *e = *state;
        int r = e ? stats_check(e->pg) : 0;
        harness_store_env_done(e);
        free(e);
        return r;
}

char *harness_usec_param(char buf[static 24], usec_t t) {
        if (t == 0)
                return NULL;
        snprintf(buf, 24, "%lld", (long long)t);
        return buf;
}

/* ---- identity numbers and the calendar ---- */

int harness_luhn_digit(const char *nine) {
        int sum = 0;
        for (int i = 0; i < 9; i++) {
                int v = (nine[i] - '0') * (i % 2 == 0 ? 2 : 1);
                sum += v / 10 + v % 10;
        }
        return (10 - sum % 10) % 10;
}

int harness_tz_setup(void **state) {
        (void)state;
        return tz_init() == 0 ? 0 : -1;
}

/* ---- Kafka ---- */

const char *harness_kafka_bootstrap(void) {
        return env_or("ALLVARS_KAFKA_BOOTSTRAP", NULL);
}

int harness_mock_new(int brokers, harness_mock **ret) {
        char err[256];
        harness_mock *m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* The owning handle only hosts the cluster: keep it quiet. */
        if (rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err) != RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                free(m);
                return -EINVAL;
        }
        m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
        if (!m->rk) {
                fprintf(stderr, "harness: rd_kafka_new: %s\n", err);
                rd_kafka_conf_destroy(conf);
                free(m);
                return -ENOMEM;
        }
        m->cluster = rd_kafka_mock_cluster_new(m->rk, brokers);
        if (!m->cluster) {
                fprintf(stderr, "harness: rd_kafka_mock_cluster_new failed\n");
                harness_mock_free(m);
                return -ENOMEM;
        }
        m->bootstraps = rd_kafka_mock_cluster_bootstraps(m->cluster);
        *ret = m;
        return 0;
}

harness_mock *harness_mock_free(harness_mock *m) {
        if (!m)
                return NULL;
        if (m->cluster)
                rd_kafka_mock_cluster_destroy(m->cluster);
        if (m->rk)
                rd_kafka_destroy(m->rk);
        free(m);
        return NULL;
}

int harness_mock_topic(harness_mock *m, const char *topic, int partitions) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(m->cluster, topic, partitions, 1);
        if (e) {
                fprintf(stderr, "harness: mock topic %s: %s\n", topic, rd_kafka_err2str(e));
                return -EINVAL;
        }
        return 0;
}

int harness_outcome_send(harness_store_env *h, const char *group, int64_t *next, CaseOutcome *ev, usec_t now,
                         store_message_status *ret_status, char *ret_detail, size_t detail_size) {
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        actor.name = "handläggare-7";
        ev->actor = &actor;
        uint8_t *buf = NULL;
        size_t len = codec_pack(&ev->base, &buf);
        if (!buf) {
                snprintf(ret_detail, detail_size, "packing: out of memory");
                return -1;
        }
        codec_error err;
        codec_outcome *dec = codec_outcome_decode(buf, len, h->cfg->max_message_bytes, &err);
        if (!dec) {
                snprintf(ret_detail, detail_size, "decoding: %s", err.detail);
                free(buf);
                return -1;
        }
        store_message m = {.topic = h->cfg->topic_outcomes, .partition = 0, .offset = *next + 1,
                           .payload = buf, .len = len, .case_outcome = codec_outcome_msg(dec)};
        store_offset off = {.topic = h->cfg->topic_outcomes, .partition = 0, .expected_next = *next,
                            .new_next = m.offset + 1};
        store_batch_result res = {0};
        int r = outcome_batch_store(h->st, h->cfg, group, now, &m, 1, &off, 1, &res);
        if (r < 0)
                snprintf(ret_detail, detail_size, "outcome_batch_store: %s", store_last_error(h->st));
        else {
                *next = off.new_next;
                *ret_status = m.status;
                snprintf(ret_detail, detail_size, "%s", m.error ? m.error->detail : "");
        }
        codec_outcome_free(dec);
        free(buf);
        return r < 0 ? -1 : 0;
}
