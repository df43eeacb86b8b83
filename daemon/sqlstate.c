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
