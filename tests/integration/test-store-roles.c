/* The store as deployed (a real PostgreSQL server, as test-store.c): the
 * runtime role of deploy/roles.sql is enough, a revoked grant is a clear
 * deployment error, a value PostgreSQL refuses makes its message a dead
 * letter, and a server restart is transient. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store_fixture.h"

/* deploy/roles.sql, migrations as allvarsd_owner, the daemon as
 * allvarsd_runtime: the runtime role decides a batch but can neither change
 * the schema nor read what is not its own. */
static int setup_roles(void **state) {
        fixture *fx = calloc(1, sizeof *fx);
        assert_non_null(fx);
        *state = fx;
        stored_none(fx);
        assert_true(harness_pg_available());
        assert_int_equal(harness_db_create(NULL, &fx->h.db), 0);
        assert_int_equal(harness_pg_connect(fx->h.db.name, &fx->h.pg), 0);
        return 0;
}

static void deploy_as_documented(fixture *fx);

static void test_runtime_role(void **state) {
        fixture *fx = *state;
        /* Something the runtime role must not read. */
        harness_exec_ok(fx->h.pg, "CREATE SCHEMA other; CREATE TABLE other.secrets (x text);"
                                  " INSERT INTO other.secrets VALUES ('s')");
        deploy_as_documented(fx);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'"
                                   " AND tableowner = 'allvarsd_owner'"),
                         count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'"));
        int version;
        assert_int_equal(store_check_schema(fx->h.st, &version), 0);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-RUNTIME", .person = 1, .feedback = true }, 0);
        batch_add(fx, b, NULL, 0);
        run_ok(fx, b, T0 + H(72));
        assert_int_equal(b->res.decided, 1);
        assert_int_equal(b->res.dead_lettered, 1);
        assert_int_equal(b->res.alerts, 1);
        store_figures f;
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);

        PGconn *rt = (PGconn *)store_pg(fx->h.st);
        static const char *const forbidden[] = {
                "DROP TABLE allvarsd.referrals",
                "ALTER TABLE allvarsd.decisions ADD COLUMN x int",
                "CREATE TABLE allvarsd.mine (x int)",
                "TRUNCATE allvarsd.audit",
                "DELETE FROM allvarsd.decisions",
                "DELETE FROM allvarsd.audit",
                "UPDATE allvarsd.audit SET after = ''",
                "UPDATE allvarsd.decisions SET outcome = 'ELIGIBLE'",
                /* Outbox rows are written once and deleted once; what was sent stays. */
                "UPDATE allvarsd.outbox SET payload = ''",
                "UPDATE allvarsd.outbox_sent SET sent_at = now()",
                "DELETE FROM allvarsd.outbox_sent",
                "SELECT * FROM other.secrets",
                "CREATE TEMP TABLE t (x int)",
                "CREATE SCHEMA mine",
        };
        for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++) {
                PGresult *res = PQexec(rt, forbidden[i]);
                const char *state_ = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (PQresultStatus(res) != PGRES_FATAL_ERROR || !state_ || strcmp(state_, "42501") != 0)
                        fail_msg("allvarsd_runtime was allowed: %s", forbidden[i]);
                PQclear(res);
        }
        /* What the purge does is allowed. */
        harness_exec_ok(rt, "UPDATE allvarsd.audit SET detail = '' WHERE referral_id = 'R-RUNTIME'");
        harness_exec_ok(rt, "DELETE FROM allvarsd.referral_personal WHERE referral_id = 'R-RUNTIME'");
        /* And what the relay does with delivered rows. */
        harness_exec_ok(rt, HARNESS_SQL_DELIVER_ALL);
        /* And what the outcome batch does with an event it rejects (version 4
         * lacked it: 42501, and the daemon retried the batch forever). */
        harness_exec_ok(rt, "DELETE FROM allvarsd.outcome_events WHERE event_id = 'E-REJECTED'");
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_true(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent") >= 2);
        batch_free(b);
}

/* ---- PostgreSQL's errors by class (pg.h, batch.h) ---- */

static int store_batch(fixture *fx, store *st, batch *b, usec_t now) {
        if (b->n_off == 0)
                batch_offsets(fx, b);
        int r = batch_store(st, fx->h.cfg, GROUP, now, false, b->m, b->n, b->off, b->n_off, NULL, &b->res);
        if (r == 0)
                for (size_t j = 0; j < b->n_off; j++)
                        fx->stored[b->off[j].partition] = b->off[j].new_next;
        return r;
}

/* A value PostgreSQL refuses (a constraint a DBA added; text that is not
 * UTF-8): that message is a dead letter naming the SQLSTATE and the statement,
 * never the value; the rest of the batch is stored and both partitions move on. */
static void test_refused_value_dead_lettered(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "ALTER TABLE allvarsd.referrals ADD CONSTRAINT no_test_district"
                                  " CHECK (district <> 'Forbidden-district')");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-FIRST", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-CONSTRAINT", .person = 2, .district = "Forbidden-district" }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-NOT-UTF8", .person = 3 }, 1);
        b->refs[2]->g[0].name = (char *)"Secret\xff\xfe name"; /* a guardian: case_contacts */
        batch_add(fx, b, &(refspec){ .id = "R-LAST", .person = 4 }, 1);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.dead_lettered, 2);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[3].status, STORE_DECIDED);
        assert_int_equal(b->m[1].status, STORE_DEAD_LETTERED);
        assert_int_equal(b->m[2].status, STORE_DEAD_LETTERED);
        assert_non_null(strstr(b->m[1].error->detail, "SQLSTATE 23514 in ref_referrals_insert"));
        assert_non_null(strstr(b->m[2].error->detail, "SQLSTATE 22021 in ref_contacts_insert"));
        assert_null(strstr(b->m[1].error->detail, "Forbidden"));
        assert_null(strstr(b->m[2].error->detail, "Secret"));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE reason = 'INVALID_FIELD'"
                                   " AND detail LIKE 'refused by PostgreSQL: SQLSTATE 2____ in ref\\_%%'"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE detail LIKE '%%Forbidden%%'"
                                   " OR detail LIKE '%%Secret%%'"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.consumer_offsets"
                                   " WHERE (partition = 0 AND next_offset = 2) OR (partition = 1 AND next_offset = 2)"),
                         2);
        /* The partition moves on: the next batch stores from where this one ended. */
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-NEXT", .person = 5 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, c, T0), 0);
        assert_int_equal(c->res.decided, 1);
        batch_free(c);
        batch_free(b);
}

/* The database, roles.sql and the migrations as deployed; fx->h.st the
 * runtime role's session and fx->h.cfg its configuration. */
static void deploy_as_documented(fixture *fx) {
        const char *root = getenv("ALLVARS_ROOT");
        char cmd[1536];
        snprintf(cmd, sizeof cmd, "'%s/tests/lib/roles-sql' '%s' >/dev/null", root && *root ? root : ".",
                 fx->h.db.name);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(system(cmd), 0);       /* idempotent */
        char ci[1200], err[512];
        store *owner;
        snprintf(ci, sizeof ci, "%s user=allvarsd_owner", fx->h.db.conninfo);
        if (store_connect(ci, NULL, &owner, err, sizeof err) < 0)
                fail_msg("store_connect as owner: %s", err);
        char dir[1024];
        int applied = store_migrate(owner, harness_schemas_dir(dir, sizeof dir), err, sizeof err);
        if (applied < 0)
                fail_msg("store_migrate as owner: %s", err);
        assert_int_equal(applied, STORE_SCHEMA_VERSION);
        store_free(owner);
        snprintf(ci, sizeof ci, "%s user=allvarsd_runtime", fx->h.db.conninfo);
        if (store_connect(ci, NULL, &fx->h.st, err, sizeof err) < 0)
                fail_msg("store_connect as runtime: %s", err);
        assert_int_equal(harness_pepper_file_new(fx->h.pepper_path, sizeof fx->h.pepper_path), 0);
        assert_int_equal(harness_config_new("test-store", ci, fx->h.pepper_path, NULL, &fx->h.cfg), 0);
}

/* A grant taken away while running: a deployment error (the operator must act),
 * told apart from an outage; nothing written; stored again once it is back. */
static void test_revoked_grant(void **state) {
        fixture *fx = *state;
        deploy_as_documented(fx);
        harness_exec_ok(fx->h.pg, "REVOKE INSERT ON allvarsd.decisions FROM allvarsd_runtime");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-GRANT", .person = 1 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), -EACCES);
        assert_int_equal(pg_last_class(store_session(fx->h.st)), SQLSTATE_DEPLOYMENT);
        assert_non_null(strstr(store_last_error(fx->h.st), "SQLSTATE 42501"));
        assert_true(store_connected(fx->h.st));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 0);
        harness_exec_ok(fx->h.pg, "GRANT INSERT ON allvarsd.decisions TO allvarsd_runtime");
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 1);
        batch_free(b);
}

/* The server restarted under a session (its backend terminated): transient,
 * the batch is stored once the session is back. */
static void test_server_restart_transient(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
        usleep(100 * 1000);
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-RESTART", .person = 1 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), -ECONNRESET);
        assert_int_equal(pg_last_class(store_session(fx->h.st)), SQLSTATE_TRANSIENT);
        char err[512];
        assert_int_equal(store_reconnect(fx->h.st, err, sizeof err), 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 1);
        batch_free(b);
}

int main(void) {
        if (tz_init() < 0) {
                fprintf(stderr, "tz_init failed\n");
                return 1;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_runtime_role, setup_roles, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_refused_value_dead_lettered, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_revoked_grant, setup_roles, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_server_restart_transient, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
