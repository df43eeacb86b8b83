/* Test harness: see harness.h. */
#include "harness.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback) {
        const char *v = getenv(name);
        return v && *v ? v : fallback;
}

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
        *ret = c;
        return 0;
}

static int exec_on(PGconn *c, const char *sql) {
        PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);
        int r = 0;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                fprintf(stderr, "harness: SQL failed: %s", PQerrorMessage(c));
                r = -EIO;
        }
        PQclear(res);
        return r;
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
                r = exec_on(c, sql);
        }
        PQfreemem(q);
        PQfinish(c);
        return r;
}

int harness_db_create(const char *template_name, harness_db *ret) {
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
        PQfinish(c);
        if (!q)
                return -EINVAL;
        char rest[200];
        int w = snprintf(rest, sizeof rest, " TEMPLATE %s", q);
        PQfreemem(q);
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
        r = exec_on(c, sql);
        PQfinish(c);
        return r;
}

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
