/* allvarsctl migrate: the daemon's --migrate, for operators who run it apart
 * from the service (as the migration owner). */
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "sqlstate.h"
#include "store.h"

#ifndef SCHEMAS_DIR
#define SCHEMAS_DIR "/usr/share/allvarsd/schemas"
#endif

static const char migrate_usage[] =
        "Usage: allvarsctl migrate [--schemas DIR] [--config PATH | --database CONNINFO]\n"
        "Apply the database migrations that are not applied yet, like allvarsd --migrate (run it as the\n"
        "migration owner, e.g. with --database).\n\n"
        "  --schemas DIR          where the migrations are (default " SCHEMAS_DIR ")\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n";

/* ": what to do" for an error of the deployment in the store's text, else "". */
static const char *fix_of(const char *err) {
        char state[6];
        const char *fix = sqlstate_fix(sqlstate_in_text(err, state));
        static char buf[300];
        snprintf(buf, sizeof buf, "%s%s", fix ? ": " : "", fix ? fix : "");
        return buf;
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
        int r = ctl_only_connection_options(&c);
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
                        ctl_fail(&c, "cannot connect to PostgreSQL: %s%s", err, fix_of(err));
        }
        if (r >= 0) {
                PQsetNoticeProcessor((PGconn *)store_pg(s), ctl_drop_notice, NULL);
                r = store_migrate(s, schemas, err, sizeof err);
                if (r < 0)
                        ctl_fail(&c, "migration failed: %s%s", err[0] ? err : strerror(-r), fix_of(err));
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
