/* Opening a libpq connection so that the caller can tell a deployment error
 * from an outage: PQconnectdbParams answers a refused connection with text
 * only, while the server's answer carries a SQLSTATE (28P01 a wrong password,
 * 28000 an unknown role, 3D000 an unknown database, 57P03 a server starting
 * up, ...). Here the connection is made step by step with the error verbosity
 * that keeps the SQLSTATE, within a bounded time. Library code: no logging. */
#pragma once

#include <stddef.h>

#include <libpq-fe.h>

/* Connect with keys/values (expand_dbname, as PQconnectdbParams with
 * expand_dbname = 1), waiting at most timeout_s seconds. On success 0 and the
 * connection in *ret. Otherwise *ret is NULL, ret_sqlstate holds the server's
 * SQLSTATE ("" when none answered: unreachable, timed out, TLS) and err one
 * line without it; returns -EACCES when the SQLSTATE is of the deployment
 * class (sqlstate.h: authentication, an unknown database or role), -ETIMEDOUT,
 * -ENOMEM, or -ECONNREFUSED for anything else. */
int pgconn_open(const char *const *keys, const char *const *values, int timeout_s, PGconn **ret,
                char ret_sqlstate[static 6], char *err, size_t err_size);

/* The parameters of every connection the daemon makes, for
 * PQconnectdbParams or PQconnectStartParams with expand_dbname = 1, in
 * keys/values (PGCONN_KEYS_MAX entries, NULL-terminated here). First the
 * defaults the conninfo may override: a dead server or a half-open socket is
 * noticed in bounded time (connect_timeout 10 s; TCP keepalives after 30 s
 * idle, every 10 s, 3 probes: about a minute), so no thread waits on it for
 * minutes; then `defaults` (NULL-terminated key, value pairs, or NULL); then
 * the conninfo (expanded: a conninfo string or URI), the password when there
 * is one, and what holds whatever the conninfo says (UTF-8: the referrals
 * are, whatever the server's default) followed by `fixed` (pairs, or NULL). */
#define PGCONN_KEYS_MAX 20
void pgconn_keys(const char *conninfo, const char *password, const char *const *defaults, const char *const *fixed,
                 const char **keys, const char **values);

/* One line of a libpq error message in err: the first line, without the
 * SQLSTATE that verbose messages put after the severity. */
void pgconn_message_line(const char *message, char *err, size_t err_size);
