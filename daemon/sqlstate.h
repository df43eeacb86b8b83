/* PostgreSQL errors by what the daemon should do about them, from the
 * SQLSTATE alone (PostgreSQL's manual, appendix A "Error Codes"). Pure. */
#pragma once

typedef enum sqlstate_class {
        /* Wait and retry: the connection, serialization failures and
         * deadlocks, insufficient resources (a full disk is 53100), a server
         * shutting down, a lock or statement timeout. */
        SQLSTATE_TRANSIENT,
        /* One message's data: a data exception (22) or an integrity
         * violation (23). Dead-letter that message, store the rest. */
        SQLSTATE_DATA,
        /* The deployment: authentication (28), a missing database (3D000) or
         * schema (3F000), a missing privilege or object (42). An operator must
         * fix it; retrying without a change cannot help. */
        SQLSTATE_DEPLOYMENT,
        /* Anything else (a bug, an unknown code): retried like a transient
         * error, but logged as an error every time. */
        SQLSTATE_OTHER,
} sqlstate_class;

/* The class of a five-character SQLSTATE; NULL or "" (no server answer, e.g.
 * a lost connection) is SQLSTATE_TRANSIENT. */
sqlstate_class sqlstate_classify(const char *sqlstate);

/* "transient", "data", "deployment", "other": for logs and figures. */
const char *sqlstate_class_name(sqlstate_class c);

/* The SQLSTATE of a one-line error that ends in "(SQLSTATE XXXXX)", as the
 * store writes them (store_last_error, store_connect), into out; "" when none. */
const char *sqlstate_in_text(const char *text, char out[static 6]);

/* For a deployment error, what an operator does about it, in a few words
 * ("create the database and run deploy/roles.sql in it"); NULL for the other
 * classes, which are not fixed by hand. */
const char *sqlstate_fix(const char *sqlstate);

/* For an outage an operator can end (insufficient resources, class 53), what
 * it is and what to do, in a few words ("PostgreSQL's disk is full: ..."); NULL
 * for every other code. The daemon keeps retrying meanwhile. */
const char *sqlstate_outage_hint(const char *sqlstate);
