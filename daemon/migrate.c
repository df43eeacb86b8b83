/* The schema's migrations (store.h store_migrate): schemas/NNN_name.sql, in
 * order, each in its own transaction under the migrator's advisory lock,
 * recorded with its sha256 in allvarsd.schema_migrations. No logging here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "store.h"

/* pg_advisory_xact_lock key of the migrator: "allvarsm". Distinct from the
 * relay's RELAY_LOCK_KEY ("allvarsd"). */
#define MIGRATE_LOCK_KEY "7020098511035462509"

#define MIGRATIONS_MAX 1000

static bool result_ok(const PGresult *r) {
        ExecStatusType st = PQresultStatus(r);
        return r && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* Run one command (a migration's file may hold many); 0 or the mapped error. */
static int exec_simple(pg_session *s, const char *what, const char *sql) {
        PGresult *r = PQexec(s->conn, sql);
        int ret = result_ok(r) ? 0 : pg_fail_result(s, what, r);
        PQclear(r);
        return ret;
}


typedef struct migration {
        int version;
        char *file;                     /* "001_initial.sql" */
        char *name;                     /* "initial" */
        char sha256[65];
        char *sql;
} migration;

static void migrations_free(migration *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].file);
                free(m[i].name);
                free(m[i].sql);
        }
        free(m);
}

/* NNN_name.sql: three digits, an underscore, a name of [a-z0-9_-]. */
static bool migration_file_name(const char *f, int *ret_version) {
        size_t n = strlen(f);
        if (n < 9 || strcmp(f + n - 4, ".sql") != 0 || f[3] != '_')
                return false;
        for (int i = 0; i < 3; i++)
                if (f[i] < '0' || f[i] > '9')
                        return false;
        for (size_t i = 4; i < n - 4; i++) {
                char c = f[i];
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
                        return false;
        }
        *ret_version = (f[0] - '0') * 100 + (f[1] - '0') * 10 + (f[2] - '0');
        return *ret_version > 0;
}

static int read_file(const char *path, char **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0 || st.st_size > 16 * 1024 * 1024) {
                int e = errno ? -errno : -EFBIG;
                close(fd);
                return e;
        }
        size_t size = (size_t)st.st_size;
        char *buf = malloc(size + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        size_t got = 0;
        while (got < size) {
                ssize_t k = read(fd, buf + got, size - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0) {
                        int e = k < 0 ? -errno : -EIO;
                        free(buf);
                        close(fd);
                        return e;
                }
                got += (size_t)k;
        }
        close(fd);
        buf[size] = 0;
        *ret = buf;
        *ret_len = size;
        return 0;
}

static int sha256_hex(const void *data, size_t len, char out[65]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        if (!EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
                return -EIO;
        for (unsigned i = 0; i < md_len; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
        return 0;
}

static int migration_compare(const void *a, const void *b) {
        const migration *x = a, *y = b;
        return (x->version > y->version) - (x->version < y->version);
}

static int migrations_list(pg_session *s, const char *dir, migration **ret, size_t *ret_n) {
        DIR *d = opendir(dir);
        if (!d)
                return pg_fail(s, -errno, "migrations: cannot open %s: %s", dir, strerror(errno));
        migration *m = NULL;
        size_t n = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                int version;
                if (!migration_file_name(de->d_name, &version))
                        continue;
                if (n >= MIGRATIONS_MAX) {
                        r = pg_fail(s, -E2BIG, "migrations: too many files in %s", dir);
                        break;
                }
                migration *grown = realloc(m, (n + 1) * sizeof *m);
                if (!grown) {
                        r = pg_fail(s, -ENOMEM, "migrations: out of memory");
                        break;
                }
                m = grown;
                migration *x = &m[n++];
                *x = (migration){ .version = version };
                x->file = strdup(de->d_name);
                x->name = strndup(de->d_name + 4, strlen(de->d_name) - 8);
                if (!x->file || !x->name) {
                        r = pg_fail(s, -ENOMEM, "migrations: out of memory");
                        break;
                }
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
                size_t len = 0;
                r = read_file(path, &x->sql, &len);
                if (r < 0) {
                        pg_fail(s, r, "migrations: cannot read %s: %s", path, strerror(-r));
                        break;
                }
                r = sha256_hex(x->sql, len, x->sha256);
                if (r < 0) {
                        pg_fail(s, r, "migrations: sha256 of %s failed", path);
                        break;
                }
        }
        closedir(d);
        if (r >= 0 && n == 0)
                r = pg_fail(s, -ENOENT, "migrations: no NNN_name.sql files in %s", dir);
        if (r >= 0) {
                qsort(m, n, sizeof *m, migration_compare);
                for (size_t i = 1; i < n; i++)
                        if (m[i].version == m[i - 1].version) {
                                r = pg_fail(s, -EINVAL, "migrations: %s and %s have the same number",
                                               m[i - 1].file, m[i].file);
                                break;
                        }
        }
        if (r < 0) {
                migrations_free(m, n);
                return r;
        }
        *ret = m;
        *ret_n = n;
        return 0;
}

/* BEGIN and wait for the migrator's lock: two migrators run one after the other. */
static int begin_locked(pg_session *s) {
        int r = exec_simple(s, "migrate: begin", "BEGIN ISOLATION LEVEL READ COMMITTED");
        if (r >= 0)
                r = exec_simple(s, "migrate: lock", "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")");
        return r;
}

static int apply_one(pg_session *s, const migration *m, bool *ret_applied) {
        *ret_applied = false;
        int r = begin_locked(s);
        if (r < 0)
                return r;
        char version[16];
        snprintf(version, sizeof version, "%d", m->version);
        const char *params[3] = { version, m->name, m->sha256 };
        PGresult *res = PQexecParams(s->conn, "SELECT sha256 FROM allvarsd.schema_migrations WHERE version = $1::int",
                                     1, NULL, params, NULL, NULL, 0);
        if (!result_ok(res)) {
                r = pg_fail_result(s, "migrate: read schema_migrations", res);
                PQclear(res);
                return r;
        }
        if (PQntuples(res) > 0) {
                bool same = strcmp(PQgetvalue(res, 0, 0), m->sha256) == 0;
                PQclear(res);
                if (!same)
                        return pg_fail(s, -EPROTO,
                                          "migrate: %s was changed after it was applied (sha256 differs from the recorded one)",
                                          m->file);
                return exec_simple(s, "migrate: end", "COMMIT");
        }
        PQclear(res);

        char what[300];
        snprintf(what, sizeof what, "migrate: %s", m->file);
        r = exec_simple(s, what, m->sql);
        if (r < 0)
                return r;
        if (PQtransactionStatus(s->conn) != PQTRANS_INTRANS)
                return pg_fail(s, -EINVAL, "migrate: %s must not end the transaction", m->file);
        res = PQexecParams(s->conn,
                           "INSERT INTO allvarsd.schema_migrations (version, name, sha256, applied_at)"
                           " VALUES ($1::int, $2, $3, now())",
                           3, NULL, params, NULL, NULL, 0);
        r = result_ok(res) ? 0 : pg_fail_result(s, "migrate: record", res);
        PQclear(res);
        if (r < 0)
                return r;
        r = exec_simple(s, what, "COMMIT");
        if (r >= 0)
                *ret_applied = true;
        return r;
}

int store_migrate(store *st, const char *dir, char *err, size_t err_size) {
        pg_session *s = store_session(st);
        migration *m = NULL;
        size_t n = 0;
        int applied = 0;
        int r = pg_need_conn(s);
        if (r >= 0)
                r = migrations_list(s, dir, &m, &n);
        if (r < 0)
                goto out;

        /* The record of migrations, before the first one (which makes the schema). */
        r = begin_locked(s);
        if (r >= 0)
                r = exec_simple(s, "migrate: schema", "CREATE SCHEMA IF NOT EXISTS allvarsd");
        if (r >= 0)
                r = exec_simple(s, "migrate: schema_migrations",
                                "CREATE TABLE IF NOT EXISTS allvarsd.schema_migrations ("
                                " version integer PRIMARY KEY,"
                                " name text NOT NULL,"
                                " sha256 text NOT NULL,"
                                " applied_at timestamptz NOT NULL DEFAULT now())");
        if (r >= 0)
                r = exec_simple(s, "migrate: begin", "COMMIT");
        if (r < 0)
                goto out;

        for (size_t i = 0; i < n; i++) {
                bool done;
                r = apply_one(s, &m[i], &done);
                if (r < 0)
                        goto out;
                applied += done;
        }

        /* A database migrated by a newer build: this one must not run on it. */
        PGresult *res = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM allvarsd.schema_migrations");
        if (!result_ok(res)) {
                r = pg_fail_result(s, "migrate: read schema_migrations", res);
                PQclear(res);
                goto out;
        }
        int newest = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
        if (newest > m[n - 1].version)
                r = pg_fail(s, -EPROTO, "migrate: the database has migration %d, newer than this build's %s",
                               newest, m[n - 1].file);

out:
        if (r < 0) {
                pg_rollback(s);
                if (err)
                        snprintf(err, err_size, "%s", s->error);
        }
        migrations_free(m, n);
        /* A migration may have changed what the prepared statements refer to. */
        if (r >= 0 && applied > 0 && s->n_prepared > 0 && pg_connected(s)) {
                PQclear(PQexec(s->conn, "DEALLOCATE ALL"));
                pg_prepared_forget(s);
        }
        return r < 0 ? r : applied;
}

