/* The database roles as deployed (deploy/roles.sql, the migrations run as
 * allvarsd_owner), checked against the code that uses them.
 *
 * The statements are not listed here: they are taken out of the built
 * programs themselves, every string constant of build/allvarsd and
 * build/allvarsctl that begins like an SQL statement (SELECT, INSERT, UPDATE,
 * DELETE, WITH). So a statement added anywhere, in any file, is checked
 * without anyone registering it. Those of allvarsd run as allvarsd_runtime,
 * those only allvarsctl has as allvarsd_operator, and the migrator's record of
 * a migration as allvarsd_owner. Each is prepared as its role (parameters
 * typed by casts in the text, as the daemon writes them) and EXPLAINed with
 * NULL parameters: PostgreSQL checks the table, column and function
 * privileges of a plan when the executor starts, EXPLAIN included.
 *
 *   - every statement is allowed to its role;
 *   - every grant the roles hold is needed: revoked (in a transaction that is
 *     rolled back), some statement of that role fails with 42501;
 *   - the sequences behind the inserts (EXPLAIN does not call nextval);
 *   - a table of what each role can and cannot do;
 *   - reading personal data as the operator goes through the audited
 *     functions and leaves who, what and when in the audit trail.
 *
 *   source tests/lib/pg.sh; pg_start; make; build/tests/test-privileges */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "harness.h"
#include "store.h"

typedef enum role {
        ROLE_RUNTIME,
        ROLE_OPERATOR,
        ROLE_OWNER,
        N_ROLES,
} role;

static const char *const role_names[N_ROLES] = {"allvarsd_runtime", "allvarsd_operator", "allvarsd_owner"};

/* Statements the migrator runs (store_migrate), as the owner. Everything
 * else allvarsd has runs as the runtime role. */
static const char *const owner_prefixes[] = {
        "INSERT INTO allvarsd.schema_migrations",
};

typedef struct stmt {
        char *sql;
        role role;
} stmt;

typedef struct fixture {
        harness_db db;
        PGconn *su;                     /* the superuser: setup, checks, the revocations */
        PGconn *as[N_ROLES];
        stmt *stmts;
        size_t n;
} fixture;

/* ---- the statements of the built programs ---- */

static bool sql_start(const char *s) {
        static const char *const verbs[] = {"SELECT ", "INSERT ", "UPDATE ", "DELETE ", "WITH "};
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
                if (strncmp(s, verbs[i], strlen(verbs[i])) == 0)
                        /* One word alone is a piece of a statement made at run time. */
                        return strchr(s + strlen(verbs[i]), ' ') || strlen(s) > strlen(verbs[i]) + 8;
        return false;
}

/* Every NUL-terminated run of text in the file that starts like a statement. */
static char **strings_of(const char *path, size_t *ret_n) {
        FILE *f = fopen(path, "rb");
        if (!f) {
                fprintf(stderr, "cannot open %s: %m (build it first: make)\n", path);
                return NULL;
        }
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *buf = malloc((size_t)size + 1);
        if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
                fclose(f);
                free(buf);
                return NULL;
        }
        fclose(f);
        buf[size] = 0;
        char **out = NULL;
        size_t n = 0;
        size_t start = 0;
        for (size_t i = 0; i <= (size_t)size; i++) {
                unsigned char ch = buf[i];
                bool text = (ch >= 0x20 && ch != 0x7f) || ch == '\t' || ch == '\n';
                if (text)
                        continue;
                if (ch == 0 && i > start && sql_start((const char *)buf + start)) {
                        bool seen = false;
                        for (size_t k = 0; k < n && !seen; k++)
                                seen = strcmp(out[k], (const char *)buf + start) == 0;
                        if (!seen) {
                                out = realloc(out, (n + 1) * sizeof *out);
                                out[n++] = strdup((const char *)buf + start);
                        }
                }
                start = i + 1;
        }
        free(buf);
        *ret_n = n;
        return out;
}

static void free_strings(char **s, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(s[i]);
        free(s);
}

/* The build directory of this test binary (build/tests/test-privileges). */
static void build_path(const char *name, char *buf, size_t size) {
        char self[PATH_MAX];
        ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
        assert_true(k > 0);
        self[k] = 0;
        char *slash = strrchr(self, '/');
        *slash = 0;
        slash = strrchr(self, '/');
        *slash = 0;
        int n = snprintf(buf, size, "%s/%s", self, name);
        assert_true(n > 0 && (size_t)n < size);
}

static void collect(fixture *fx) {
        char daemon[PATH_MAX], ctl[PATH_MAX];
        build_path("allvarsd", daemon, sizeof daemon);
        build_path("allvarsctl", ctl, sizeof ctl);
        size_t nd = 0, nc = 0;
        char **d = strings_of(daemon, &nd);
        char **c = strings_of(ctl, &nc);
        assert_non_null(d);
        assert_non_null(c);
        fx->stmts = calloc(nd + nc, sizeof *fx->stmts);
        for (size_t i = 0; i < nd; i++) {
                role r = ROLE_RUNTIME;
                for (size_t k = 0; k < sizeof owner_prefixes / sizeof owner_prefixes[0]; k++)
                        if (strncmp(d[i], owner_prefixes[k], strlen(owner_prefixes[k])) == 0)
                                r = ROLE_OWNER;
                fx->stmts[fx->n++] = (stmt){.sql = strdup(d[i]), .role = r};
        }
        for (size_t i = 0; i < nc; i++) {
                bool in_daemon = false;
                for (size_t k = 0; k < nd && !in_daemon; k++)
                        in_daemon = strcmp(d[k], c[i]) == 0;
                if (!in_daemon)
                        fx->stmts[fx->n++] = (stmt){.sql = strdup(c[i]), .role = ROLE_OPERATOR};
        }
        free_strings(d, nd);
        free_strings(c, nc);
}

/* ---- setup: the database as deployed ---- */

/* deploy/roles.sql in db, through tests/lib/roles-sql (one run at a time per server). */
static void run_roles_sql(const harness_db *db) {
        char path[PATH_MAX], cmd[2 * PATH_MAX + 1200];
        harness_repo_path("tests/lib/roles-sql", path, sizeof path);
        snprintf(cmd, sizeof cmd, "'%s' '%s' >/dev/null", path, db->conninfo);
        assert_int_equal(system(cmd), 0);
}

static PGconn *connect_as(const harness_db *db, const char *user) {
        char conninfo[1200];
        snprintf(conninfo, sizeof conninfo, "%s user=%s", db->conninfo, user);
        PGconn *c = PQconnectdb(conninfo);
        if (PQstatus(c) != CONNECTION_OK)
                fail_msg("cannot connect as %s: %s", user, PQerrorMessage(c));
        PQclear(PQexec(c, "SET client_min_messages = warning"));
        return c;
}

static int group_setup(void **state) {
        if (!harness_pg_available()) {
                fprintf(stderr, "no PostgreSQL (tests/lib/pg.sh)\n");
                return -1;
        }
        fixture *fx = calloc(1, sizeof *fx);
        *state = fx;
        if (harness_db_create(NULL, &fx->db) < 0)
                return -1;
        /* The DBA: the roles and the database's rights. */
        run_roles_sql(&fx->db);
        /* The owner: the migrations, as allvarsd --migrate does them. */
        char conninfo[1200], err[512], schemas[PATH_MAX];
        snprintf(conninfo, sizeof conninfo, "%s user=allvarsd_owner", fx->db.conninfo);
        store *st = NULL;
        if (store_connect(conninfo, NULL, &st, err, sizeof err) < 0 ||
            store_migrate(st, harness_schemas_dir(schemas, sizeof schemas), err, sizeof err) < 0) {
                fprintf(stderr, "migrate as allvarsd_owner: %s\n", err);
                store_free(st);
                return -1;
        }
        store_free(st);
        if (harness_pg_connect(fx->db.name, &fx->su) < 0)
                return -1;
        for (int r = 0; r < N_ROLES; r++)
                fx->as[r] = connect_as(&fx->db, role_names[r]);
        collect(fx);
        return 0;
}

static int group_teardown(void **state) {
        fixture *fx = *state;
        if (!fx)
                return 0;
        for (size_t i = 0; i < fx->n; i++)
                free(fx->stmts[i].sql);
        free(fx->stmts);
        for (int r = 0; r < N_ROLES; r++)
                PQfinish(fx->as[r]);
        PQfinish(fx->su);
        harness_db_drop(&fx->db);
        free(fx);
        return 0;
}

/* ---- checking one statement ---- */

static void first_line(const char *s, char *buf, size_t size) {
        snprintf(buf, size, "%.*s", (int)strcspn(s, "\n"), s);
}

/* Whether the text uses $k (not as a prefix of $k0...). */
static bool unused_check(const char *sql, int k) {
        char tag[8];
        snprintf(tag, sizeof tag, "$%d", k);
        for (const char *p = strstr(sql, tag); p; p = strstr(p + 1, tag))
                if (p[strlen(tag)] < '0' || p[strlen(tag)] > '9')
                        return true;
        return false;
}

/* Prepare sql as name on c; the number of parameters, or -1 with why in err.
 * The types come from the text (casts); a parameter that a statement does not
 * use at all (views share one parameter list among their sections, see
 * ctl_show) is prepared as text. */
static int prepare(PGconn *c, const char *name, const char *sql, char *err, size_t size) {
        Oid types[32] = {0};
        int n_types = 0;
        for (;;) {
                PGresult *r = PQprepare(c, name, sql, n_types, types);
                if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                        PQclear(r);
                        break;
                }
                const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                int k = 0;
                /* 42P18 "could not determine data type of parameter $k": unused? */
                if (st && strcmp(st, "42P18") == 0 &&
                    sscanf(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), "could not determine data type of parameter $%d",
                           &k) == 1 && k > 0 && k <= 32 && types[k - 1] == 0 && !unused_check(sql, k)) {
                        types[k - 1] = 25;      /* text */
                        if (k > n_types)
                                n_types = k;
                        PQclear(r);
                        continue;
                }
                first_line(PQresultErrorMessage(r), err, size);
                PQclear(r);
                return -1;
        }
        PGresult *r = PQdescribePrepared(c, name);
        int n = PQresultStatus(r) == PGRES_COMMAND_OK ? PQnparams(r) : -1;
        PQclear(r);
        return n;
}

/* EXPLAIN EXECUTE name(NULL, ...): the SQLSTATE of the failure ("" when it
 * passed), its message in err. */
static const char *explain(PGconn *c, const char *name, int nparams, char *state, char *err, size_t size) {
        char sql[512];
        int k = snprintf(sql, sizeof sql, "EXPLAIN (COSTS OFF) EXECUTE %s", name);
        for (int i = 0; i < nparams; i++)
                k += snprintf(sql + k, sizeof sql - (size_t)k, "%sNULL", i ? ", " : "(");
        snprintf(sql + k, sizeof sql - (size_t)k, "%s", nparams ? ")" : "");
        PGresult *r = PQexec(c, sql);
        state[0] = 0;
        err[0] = 0;
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
                const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                snprintf(state, 6, "%s", s ? s : "?????");
                first_line(PQresultErrorMessage(r), err, size);
        }
        PQclear(r);
        return state;
}

static void excerpt(const char *sql, char *buf, size_t size) {
        snprintf(buf, size, "%.100s%s", sql, strlen(sql) > 100 ? "..." : "");
}

static void statements_were_found(void **state) {
        fixture *fx = *state;
        size_t per[N_ROLES] = {0};
        for (size_t i = 0; i < fx->n; i++)
                per[fx->stmts[i].role]++;
        printf("statements: %zu of allvarsd (runtime), %zu of allvarsctl only (operator), %zu of the migrator "
               "(owner)\n", per[ROLE_RUNTIME], per[ROLE_OPERATOR], per[ROLE_OWNER]);
        /* Far fewer would mean the extraction broke, not that the code shrank. */
        assert_true(per[ROLE_RUNTIME] >= 35);
        assert_true(per[ROLE_OPERATOR] >= 15);
        assert_int_equal(per[ROLE_OWNER], 1);
}

static void every_statement_is_allowed_to_its_role(void **state) {
        fixture *fx = *state;
        int failures = 0;
        for (size_t i = 0; i < fx->n; i++) {
                stmt *s = &fx->stmts[i];
                PGconn *c = fx->as[s->role];
                char err[512], st[6], what[128];
                excerpt(s->sql, what, sizeof what);
                int n = prepare(c, "p", s->sql, err, sizeof err);
                if (n < 0) {
                        /* Parameters must carry their types ($1::text): the test cannot guess them. */
                        fprintf(stderr, "as %s, cannot prepare [%s]: %s\n", role_names[s->role], what, err);
                        failures++;
                        continue;
                }
                explain(c, "p", n, st, err, sizeof err);
                if (st[0]) {
                        fprintf(stderr, "as %s, [%s] fails: %s (SQLSTATE %s)\n", role_names[s->role], what, err, st);
                        failures++;
                }
                PQclear(PQexec(c, "DEALLOCATE p"));
        }
        assert_int_equal(failures, 0);
}

/* ---- every grant is needed ---- */

typedef struct grant {
        char kind[16];                  /* TABLE, COLUMN, FUNCTION */
        char object[200];               /* "cases", "cases (state)", "read_personal_data(text,text)" */
        char privilege[16];
} grant;

static size_t grants_of(PGconn *su, const char *role_name, grant **ret) {
        const char *params[1] = {role_name};
        PGresult *r = PQexecParams(
                su,
                "SELECT 'TABLE', c.relname::text, a.privilege_type FROM pg_class c, aclexplode(c.relacl) a"
                " WHERE c.relnamespace = 'allvarsd'::regnamespace AND c.relkind IN ('r', 'v', 'p')"
                "   AND a.grantee = $1::regrole"
                " UNION ALL "
                "SELECT 'COLUMN', c.relname || ' (' || att.attname || ')', a.privilege_type"
                "  FROM pg_attribute att JOIN pg_class c ON c.oid = att.attrelid, aclexplode(att.attacl) a"
                " WHERE c.relnamespace = 'allvarsd'::regnamespace AND a.grantee = $1::regrole"
                " UNION ALL "
                "SELECT 'FUNCTION', p.oid::regprocedure::text, a.privilege_type FROM pg_proc p, aclexplode(p.proacl) a"
                " WHERE p.pronamespace = 'allvarsd'::regnamespace AND a.grantee = $1::regrole"
                " ORDER BY 1, 2, 3",
                1, NULL, params, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        size_t n = (size_t)PQntuples(r);
        grant *g = calloc(n + 1, sizeof *g);
        for (size_t i = 0; i < n; i++) {
                snprintf(g[i].kind, sizeof g[i].kind, "%s", PQgetvalue(r, (int)i, 0));
                snprintf(g[i].object, sizeof g[i].object, "%s", PQgetvalue(r, (int)i, 1));
                snprintf(g[i].privilege, sizeof g[i].privilege, "%s", PQgetvalue(r, (int)i, 2));
        }
        PQclear(r);
        *ret = g;
        return n;
}

static void revoke_sql(const grant *g, const char *role_name, char *buf, size_t size) {
        if (strcmp(g->kind, "COLUMN") == 0) {
                /* "cases (state)" -> REVOKE UPDATE (state) ON cases */
                const char *paren = strchr(g->object, '(');
                snprintf(buf, size, "REVOKE %s %s ON allvarsd.%.*s FROM %s", g->privilege, paren,
                         (int)(paren - g->object - 1), g->object, role_name);
        } else
                snprintf(buf, size, "REVOKE %s ON %s allvarsd.%s FROM %s", g->privilege, g->kind, g->object,
                         role_name);
}

static void must(PGconn *c, const char *sql) {
        PGresult *r = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
}

static void every_grant_is_needed(void **state) {
        fixture *fx = *state;
        PGconn *su = fx->su;
        must(su, "SET search_path = allvarsd");
        int *nparams = calloc(fx->n, sizeof *nparams);
        for (size_t i = 0; i < fx->n; i++) {
                char name[32], err[512];
                snprintf(name, sizeof name, "s%zu", i);
                nparams[i] = prepare(su, name, fx->stmts[i].sql, err, sizeof err);
                if (nparams[i] < 0)
                        fail_msg("cannot prepare %s: %s", fx->stmts[i].sql, err);
        }
        /* Only a statement that passes with every grant tells whether a grant
         * is needed (one that fails anyway is the other test's finding). */
        bool *passes = calloc(fx->n, sizeof *passes);
        for (size_t i = 0; i < fx->n; i++) {
                char name[32], st[6], err[512], set_role[80];
                snprintf(name, sizeof name, "s%zu", i);
                snprintf(set_role, sizeof set_role, "SET LOCAL ROLE %s", role_names[fx->stmts[i].role]);
                must(su, "BEGIN");
                must(su, set_role);
                passes[i] = !explain(su, name, nparams[i], st, err, sizeof err)[0];
                must(su, "ROLLBACK");
        }
        int unneeded = 0;
        for (role ro = ROLE_RUNTIME; ro <= ROLE_OPERATOR; ro++) {
                grant *g = NULL;
                size_t n = grants_of(su, role_names[ro], &g);
                assert_true(n > 0);
                for (size_t k = 0; k < n; k++) {
                        char sql[600], set_role[80];
                        revoke_sql(&g[k], role_names[ro], sql, sizeof sql);
                        must(su, "BEGIN");
                        must(su, sql);
                        snprintf(set_role, sizeof set_role, "SET LOCAL ROLE %s", role_names[ro]);
                        must(su, set_role);
                        bool needed = false;
                        for (size_t i = 0; i < fx->n && !needed; i++) {
                                if (fx->stmts[i].role != ro || !passes[i])
                                        continue;
                                char name[32], st[6], err[512];
                                snprintf(name, sizeof name, "s%zu", i);
                                must(su, "SAVEPOINT one");
                                explain(su, name, nparams[i], st, err, sizeof err);
                                needed = strcmp(st, "42501") == 0;
                                must(su, st[0] ? "ROLLBACK TO SAVEPOINT one" : "RELEASE SAVEPOINT one");
                        }
                        must(su, "ROLLBACK");
                        if (!needed) {
                                fprintf(stderr, "%s: no statement needs %s %s of %s\n", role_names[ro],
                                        g[k].privilege, g[k].kind, g[k].object);
                                unneeded++;
                        }
                }
                free(g);
        }
        free(nparams);
        free(passes);
        must(su, "DEALLOCATE ALL");
        assert_int_equal(unneeded, 0);
}

/* EXPLAIN does not call nextval: the sequences behind the inserts are
 * checked here. A role may use a sequence exactly when it may insert into the
 * table whose column owns it. */
static void sequences_follow_the_inserts(void **state) {
        fixture *fx = *state;
        for (role ro = ROLE_RUNTIME; ro <= ROLE_OPERATOR; ro++) {
                const char *params[1] = {role_names[ro]};
                PGresult *r = PQexecParams(
                        fx->su,
                        "SELECT s.relname, t.relname, has_sequence_privilege($1, s.oid, 'USAGE'),"
                        "       has_table_privilege($1, t.oid, 'INSERT'),"
                        "       has_sequence_privilege($1, s.oid, 'SELECT') OR has_sequence_privilege($1, s.oid, 'UPDATE')"
                        "  FROM pg_class s JOIN pg_depend d ON d.objid = s.oid AND d.deptype IN ('a', 'i')"
                        "  JOIN pg_class t ON t.oid = d.refobjid"
                        " WHERE s.relkind = 'S' AND s.relnamespace = 'allvarsd'::regnamespace ORDER BY 1",
                        1, NULL, params, NULL, NULL, 0);
                assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
                assert_true(PQntuples(r) >= 4);
                for (int i = 0; i < PQntuples(r); i++) {
                        bool usage = PQgetvalue(r, i, 2)[0] == 't', insert = PQgetvalue(r, i, 3)[0] == 't';
                        if (usage != insert || PQgetvalue(r, i, 4)[0] == 't')
                                fail_msg("%s: sequence %s (of %s): USAGE %s, INSERT on the table %s, SELECT or "
                                         "UPDATE %s", role_names[ro], PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
                                         PQgetvalue(r, i, 2), PQgetvalue(r, i, 3), PQgetvalue(r, i, 4));
                }
                PQclear(r);
        }
}

/* ---- what each role can and cannot do ---- */

static bool su_bool(fixture *fx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool su_bool(fixture *fx, const char *fmt, ...) {
        char sql[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sql, sizeof sql, fmt, ap);
        va_end(ap);
        PGresult *r = PQexec(fx->su, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
                fail_msg("%s: %s", sql, PQresultErrorMessage(r));
        bool v = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        return v;
}

typedef struct expectation {
        role role;
        const char *object;             /* table, "table.column", function(args) or "schema" */
        const char *privilege;
        bool allowed;
} expectation;

static const expectation expectations[] = {
        /* The owner: the schema and its DDL. */
        {ROLE_OWNER, "schema", "CREATE", true},
        {ROLE_OWNER, "cases", "TRUNCATE", true},
        /* The runtime role: rows, never DDL or TRUNCATE. */
        {ROLE_RUNTIME, "schema", "CREATE", false},
        {ROLE_RUNTIME, "schema", "USAGE", true},
        {ROLE_RUNTIME, "referrals", "INSERT", true},
        {ROLE_RUNTIME, "referral_personal", "SELECT", true},
        {ROLE_RUNTIME, "referral_personal", "DELETE", true},  /* the retention purge */
        {ROLE_RUNTIME, "outcome_events", "DELETE", true},     /* a rejected outcome is taken back */
        {ROLE_RUNTIME, "outbox", "DELETE", true},             /* the relay */
        {ROLE_RUNTIME, "referrals.purged_at", "UPDATE", true},
        {ROLE_RUNTIME, "referrals.district", "UPDATE", false},
        {ROLE_RUNTIME, "decisions", "UPDATE", false},         /* a decision is never changed after the fact */
        {ROLE_RUNTIME, "profile_params", "INSERT", true},     /* a decision's parameters, once per text */
        {ROLE_RUNTIME, "profile_params", "SELECT", true},     /* ON CONFLICT (params_key) reads the key */
        {ROLE_RUNTIME, "profile_params", "UPDATE", false},    /* nor are the parameters it names */
        {ROLE_RUNTIME, "profile_params", "DELETE", false},
        {ROLE_RUNTIME, "audit", "DELETE", false},             /* append only */
        {ROLE_RUNTIME, "audit.action", "UPDATE", false},
        {ROLE_RUNTIME, "cases", "DELETE", false},
        {ROLE_RUNTIME, "outbox", "UPDATE", false},
        {ROLE_RUNTIME, "outbox_sent", "DELETE", false},
        {ROLE_RUNTIME, "schema_migrations", "INSERT", false},
        {ROLE_RUNTIME, "cases", "TRUNCATE", false},
        {ROLE_RUNTIME, "read_personal_data(text,text)", "EXECUTE", false},
        {ROLE_RUNTIME, "mark_dead_letter_replayed(bigint,timestamptz,text)", "EXECUTE", false},
        /* The operator: the pseudonymous tables, read only. */
        {ROLE_OPERATOR, "schema", "CREATE", false},
        {ROLE_OPERATOR, "cases", "SELECT", true},
        {ROLE_OPERATOR, "decisions", "SELECT", true},
        {ROLE_OPERATOR, "profile_params", "SELECT", true},
        {ROLE_OPERATOR, "referrals", "SELECT", true},
        {ROLE_OPERATOR, "audit_trail", "SELECT", true},
        {ROLE_OPERATOR, "dead_letter_summary", "SELECT", true},
        {ROLE_OPERATOR, "referral_personal", "SELECT", false},
        {ROLE_OPERATOR, "case_contacts", "SELECT", false},
        {ROLE_OPERATOR, "persons", "SELECT", false},
        {ROLE_OPERATOR, "outbox_sent", "SELECT", false},
        {ROLE_OPERATOR, "outbox.payload", "SELECT", false},   /* a scheduling request's names and contacts */
        {ROLE_OPERATOR, "dead_letters.payload", "SELECT", false},
        {ROLE_OPERATOR, "audit.detail", "SELECT", false},     /* an override's free text */
        {ROLE_OPERATOR, "audit", "SELECT", false},
        {ROLE_OPERATOR, "read_personal_data(text,text)", "EXECUTE", true},
        {ROLE_OPERATOR, "read_dead_letter_payload(bigint,text)", "EXECUTE", true},
        {ROLE_OPERATOR, "mark_dead_letter_replayed(bigint,timestamptz,text)", "EXECUTE", true},
        {ROLE_OPERATOR, "grant_runtime()", "EXECUTE", false},
        {ROLE_OPERATOR, "audit_read(uuid,text,text,text,text)", "EXECUTE", false},
};

static void each_role_can_and_cannot(void **state) {
        fixture *fx = *state;
        int wrong = 0;
        for (size_t i = 0; i < sizeof expectations / sizeof expectations[0]; i++) {
                const expectation *e = &expectations[i];
                const char *who = role_names[e->role];
                const char *dot = strchr(e->object, '.');
                bool got;
                if (strcmp(e->object, "schema") == 0)
                        got = su_bool(fx, "SELECT has_schema_privilege('%s', 'allvarsd', '%s')", who, e->privilege);
                else if (strchr(e->object, '('))
                        got = su_bool(fx, "SELECT has_function_privilege('%s', 'allvarsd.%s', '%s')", who, e->object,
                                      e->privilege);
                else if (dot)
                        got = su_bool(fx, "SELECT has_column_privilege('%s', 'allvarsd.%.*s', '%s', '%s')", who,
                                      (int)(dot - e->object), e->object, dot + 1, e->privilege);
                else
                        got = su_bool(fx, "SELECT has_table_privilege('%s', 'allvarsd.%s', '%s')", who, e->object,
                                      e->privilege);
                printf("%-18s %-9s %-52s %s\n", who, e->privilege, e->object, got ? "yes" : "no");
                if (got != e->allowed) {
                        fprintf(stderr, "%s: %s on %s is %s, expected %s\n", who, e->privilege, e->object,
                                got ? "allowed" : "denied", e->allowed ? "allowed" : "denied");
                        wrong++;
                }
        }
        /* Nowhere may the operator write, nor anyone truncate but the owner. */
        PGresult *r = PQexec(fx->su,
                             "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'allvarsd'::regnamespace"
                             "   AND c.relkind IN ('r', 'v', 'p')"
                             "   AND (has_table_privilege('allvarsd_operator', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE, "
                             "REFERENCES, TRIGGER')"
                             "        OR has_any_column_privilege('allvarsd_operator', c.oid, 'INSERT, UPDATE, REFERENCES')"
                             "        OR has_table_privilege('allvarsd_runtime', c.oid, 'TRUNCATE, REFERENCES, TRIGGER')"
                             "        OR has_table_privilege('public', c.oid, 'SELECT, INSERT, UPDATE, DELETE'))");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        for (int i = 0; i < PQntuples(r); i++) {
                fprintf(stderr, "a role writes, truncates or references %s\n", PQgetvalue(r, i, 0));
                wrong++;
        }
        PQclear(r);
        /* Nobody else gets in: not the schema, not the database. */
        assert_false(su_bool(fx, "SELECT has_schema_privilege('public', 'allvarsd', 'USAGE')"));
        assert_false(su_bool(fx, "SELECT has_database_privilege('public', current_database(), 'CONNECT')"));
        assert_false(su_bool(fx, "SELECT has_database_privilege('public', current_database(), 'TEMPORARY')"));
        assert_int_equal(wrong, 0);
}

/* The same denials as PostgreSQL gives them to a session of the role. */
static void denied_in_a_session(void **state) {
        fixture *fx = *state;
        static const struct {
                role role;
                const char *sql;
        } denied[] = {
                {ROLE_OPERATOR, "SELECT payload FROM allvarsd.referral_personal"},
                {ROLE_OPERATOR, "SELECT payload FROM allvarsd.dead_letters"},
                {ROLE_OPERATOR, "SELECT detail FROM allvarsd.audit"},
                {ROLE_OPERATOR, "DELETE FROM allvarsd.cases"},
                {ROLE_OPERATOR, "UPDATE allvarsd.dead_letters SET replayed_at = now()"},
                {ROLE_OPERATOR, "INSERT INTO allvarsd.audit (at, actor_kind, action) VALUES (now(), 'x', 'y')"},
                {ROLE_RUNTIME, "UPDATE allvarsd.decisions SET outcome = 'ELIGIBLE'"},
                {ROLE_RUNTIME, "DELETE FROM allvarsd.audit"},
                {ROLE_RUNTIME, "TRUNCATE allvarsd.outbox"},
                {ROLE_RUNTIME, "CREATE TABLE allvarsd.x (i int)"},
                {ROLE_RUNTIME, "SELECT * FROM allvarsd.read_personal_data('R-1', NULL)"},
        };
        for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++) {
                PGresult *r = PQexec(fx->as[denied[i].role], denied[i].sql);
                const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
                if (!st || strcmp(st, "42501") != 0)
                        fail_msg("as %s, %s: expected 42501, got %s (%s)", role_names[denied[i].role], denied[i].sql,
                                 st ? st : "success", PQresultErrorMessage(r));
                PQclear(r);
        }
}

/* ---- reading personal data: audited ---- */

static void personal_data_reads_are_audited(void **state) {
        fixture *fx = *state;
        must(fx->su,
             "INSERT INTO allvarsd.referrals (referral_id, case_id, marks, district, reported_at, feedback_requested,"
             " source_topic, source_partition, source_offset, received_at) VALUES"
             " ('PRIV-1', '11111111-2222-4333-8444-555555555555', 1, 'x', now(), true, 't', 0, 1, now());"
             "INSERT INTO allvarsd.referral_personal (referral_id, payload) VALUES ('PRIV-1', '\\x0a06505249562d31');"
             "INSERT INTO allvarsd.cases (case_id, referral_id, district, state, outcome, profile_name,"
             " limit_seconds, feedback_requested, created_at, updated_at) VALUES"
             " ('11111111-2222-4333-8444-555555555555', 'PRIV-1', 'x', 'ELIGIBLE', 'ELIGIBLE', 'p', 1, true,"
             " now(), now());"
             "INSERT INTO allvarsd.case_contacts (case_id, ordinal, name, phone, supplied_at) VALUES"
             " ('11111111-2222-4333-8444-555555555555', 1, 'Förälder', '0701234567', now());"
             "INSERT INTO allvarsd.dead_letters (event_id, source_topic, source_partition, source_offset, reason,"
             " detail, payload, received_at) VALUES"
             " ('11111111-2222-4333-8444-666666666666', 't', 0, 2, 'UNDECODABLE', 'd', '\\x0102', now())");
        PGconn *op = fx->as[ROLE_OPERATOR];
        /* By the case id, as a named person. */
        /* The child: the referral as consumed (schemas/017_personal_payload.sql). */
        PGresult *r = PQexec(op, "SELECT person, encode(referral, 'hex'), name, phone"
                                 " FROM allvarsd.read_personal_data('11111111-2222-4333-8444-555555555555', 'anna.s')"
                                 " ORDER BY ordinal");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(r), 2);
        assert_string_equal(PQgetvalue(r, 0, 0), "child");
        assert_string_equal(PQgetvalue(r, 0, 1), "0a06505249562d31");
        assert_string_equal(PQgetvalue(r, 1, 0), "guardian");
        assert_string_equal(PQgetvalue(r, 1, 2), "Förälder");
        assert_string_equal(PQgetvalue(r, 1, 3), "0701234567");
        PQclear(r);
        /* By the referral id, without a name: the login is the reader. */
        r = PQexec(op, "SELECT count(*) FROM allvarsd.read_personal_data('PRIV-1', NULL)");
        assert_string_equal(PQgetvalue(r, 0, 0), "2");
        PQclear(r);
        /* No such case: nothing, and nothing audited. */
        r = PQexec(op, "SELECT count(*) FROM allvarsd.read_personal_data('NO-SUCH', 'anna.s')");
        assert_string_equal(PQgetvalue(r, 0, 0), "0");
        PQclear(r);
        char buf[256];
        assert_string_equal(
                harness_value(fx->su, buf, sizeof buf,
                              "SELECT string_agg(actor_kind || ':' || actor_name || ' ' || action || ' ' || after"
                              " || ' ' || (case_id = '11111111-2222-4333-8444-555555555555' AND referral_id = 'PRIV-1'"
                              " AND at > now() - interval '1 minute'), ', ' ORDER BY id) FROM allvarsd.audit"),
                "OPERATOR:anna.s PERSONAL_DATA_READ db_user=allvarsd_operator true, "
                "OPERATOR:allvarsd_operator PERSONAL_DATA_READ db_user=allvarsd_operator true");
        /* A dead letter's payload, and its replay mark. */
        r = PQexec(op, "SELECT encode(payload, 'hex') FROM allvarsd.read_dead_letter_payload("
                       "(SELECT id FROM allvarsd.dead_letter_summary WHERE source_offset = 2), 'anna.s')");
        assert_int_equal(PQntuples(r), 1);
        assert_string_equal(PQgetvalue(r, 0, 0), "0102");
        PQclear(r);
        r = PQexec(op, "SELECT count(*) FROM allvarsd.mark_dead_letter_replayed("
                       "(SELECT id FROM allvarsd.dead_letter_summary WHERE source_offset = 2), now(), 'anna.s')");
        assert_string_equal(PQgetvalue(r, 0, 0), "1");
        PQclear(r);
        assert_string_equal(harness_value(fx->su, buf, sizeof buf,
                                          "SELECT string_agg(action || ' ' || after, ', ' ORDER BY id)"
                                          " FROM allvarsd.audit WHERE action LIKE 'DEAD_LETTER%%'"),
                            "DEAD_LETTER_READ db_user=allvarsd_operator;dead_letter=1, "
                            "DEAD_LETTER_REPLAYED db_user=allvarsd_operator;dead_letter=1");
        assert_string_equal(harness_value(fx->su, buf, sizeof buf,
                                          "SELECT replayed_at IS NOT NULL FROM allvarsd.dead_letters"),
                            "t");
        must(fx->su, "DELETE FROM allvarsd.audit; DELETE FROM allvarsd.dead_letters; DELETE FROM allvarsd.case_contacts;"
                     "DELETE FROM allvarsd.cases; DELETE FROM allvarsd.referral_personal;"
                     "DELETE FROM allvarsd.referrals");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(statements_were_found),
                cmocka_unit_test(every_statement_is_allowed_to_its_role),
                cmocka_unit_test(every_grant_is_needed),
                cmocka_unit_test(sequences_follow_the_inserts),
                cmocka_unit_test(each_role_can_and_cannot),
                cmocka_unit_test(denied_in_a_session),
                cmocka_unit_test(personal_data_reads_are_audited),
        };
        return cmocka_run_group_tests_name("privileges", tests, group_setup, group_teardown);
}
