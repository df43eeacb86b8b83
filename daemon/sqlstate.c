/* PostgreSQL errors by what to do about them (sqlstate.h). */
#include "sqlstate.h"

#include <stdbool.h>
#include <string.h>

static bool class_is(const char *s, const char *cls) {
        return strncmp(s, cls, 2) == 0;
}

sqlstate_class sqlstate_classify(const char *s) {
        if (!s || strlen(s) != 5)
                return SQLSTATE_TRANSIENT;
        if (class_is(s, "08") ||                                /* connection exception */
            strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0 || /* serialization, deadlock */
            class_is(s, "53") ||                                /* insufficient resources: disk full, memory, connections */
            strcmp(s, "57014") == 0 ||                          /* statement_timeout, cancel */
            strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 || strcmp(s, "57P03") == 0 || /* shutdown */
            strcmp(s, "55P03") == 0)                            /* lock_timeout */
                return SQLSTATE_TRANSIENT;
        if (class_is(s, "22") || class_is(s, "23"))
                return SQLSTATE_DATA;
        if (class_is(s, "28") || class_is(s, "42") || strcmp(s, "3D000") == 0 || strcmp(s, "3F000") == 0)
                return SQLSTATE_DEPLOYMENT;
        return SQLSTATE_OTHER;
}

const char *sqlstate_class_name(sqlstate_class c) {
        switch (c) {
        case SQLSTATE_TRANSIENT:
                return "transient";
        case SQLSTATE_DATA:
                return "data";
        case SQLSTATE_DEPLOYMENT:
                return "deployment";
        case SQLSTATE_OTHER:
                break;
        }
        return "other";
}

const char *sqlstate_fix(const char *s) {
        if (sqlstate_classify(s) != SQLSTATE_DEPLOYMENT)
                return NULL;
        if (strcmp(s, "3D000") == 0)
                return "create the database (createdb) and run deploy/roles.sql in it as the DBA";
        if (strcmp(s, "28000") == 0)
                return "the role does not exist or may not log in here: run deploy/roles.sql as the DBA, and check "
                       "user= in the connection";
        if (class_is(s, "28"))
                return "check the user and password of the connection (database.conninfo and database.password, or "
                       "--database)";
        if (strcmp(s, "42501") == 0)
                return "the role lacks a grant: run deploy/roles.sql as the DBA, then allvarsd --migrate as "
                       "allvarsd_owner, and connect as the role meant for this program (see README \"Roles\")";
        if (strcmp(s, "3F000") == 0 || strcmp(s, "42P01") == 0 || strcmp(s, "42883") == 0)
                return "the schema is missing or older than this program: run allvarsd --migrate as allvarsd_owner";
        return "the schema does not match this program: run allvarsd --migrate as allvarsd_owner";
}

const char *sqlstate_in_text(const char *text, char out[static 6]) {
        out[0] = 0;
        const char *p = text ? strstr(text, "(SQLSTATE ") : NULL;
        for (; p; p = strstr(p + 1, "(SQLSTATE "))
                if (strlen(p) >= 16 && p[15] == ')') {
                        memcpy(out, p + 10, 5);
                        out[5] = 0;
                }
        return out;
}

const char *sqlstate_outage_hint(const char *s) {
        if (!s || strlen(s) != 5 || !class_is(s, "53"))
                return NULL;
        if (strcmp(s, "53100") == 0)
                return "PostgreSQL's disk is full: free space on the database server (its data directory, "
                       "tablespace or pg_wal); the daemon resumes by itself";
        if (strcmp(s, "53200") == 0)
                return "PostgreSQL is out of memory: check the database server's memory and work_mem";
        if (strcmp(s, "53300") == 0)
                return "PostgreSQL has no connection slot left: raise max_connections or lower batch.connections";
        return "PostgreSQL lacks a resource (SQLSTATE class 53): see the server's log";
}
