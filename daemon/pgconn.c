/* Opening a libpq connection with the server's SQLSTATE of a refusal (pgconn.h). */
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "pgconn.h"
#include "sqlstate.h"

void pgconn_keys(const char *conninfo, const char *password, const char *const *defaults, const char *const *fixed,
                 const char **keys, const char **values) {
        static const char *const base[] = {"connect_timeout", "10", "keepalives", "1", "keepalives_idle", "30",
                                           "keepalives_interval", "10", "keepalives_count", "3", NULL};
        size_t k = 0;
        for (size_t i = 0; base[i]; i += 2)
                keys[k] = base[i], values[k++] = base[i + 1];
        for (size_t i = 0; defaults && defaults[i] && k < PGCONN_KEYS_MAX - 4; i += 2)
                keys[k] = defaults[i], values[k++] = defaults[i + 1];
        if (conninfo && *conninfo)
                keys[k] = "dbname", values[k++] = conninfo;
        if (password && *password)
                keys[k] = "password", values[k++] = password;
        keys[k] = "client_encoding", values[k++] = "UTF8";
        for (size_t i = 0; fixed && fixed[i] && k < PGCONN_KEYS_MAX - 2; i += 2)
                keys[k] = fixed[i], values[k++] = fixed[i + 1];
        keys[k] = values[k] = NULL;
}

static long long monotonic_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "...failed: FATAL:  3D000: database ..." -> "3D000"; verbose messages put
 * the SQLSTATE right after the severity. */
static const char *find_sqlstate(const char *m, char out[static 6]) {
        static const char *const severities[] = {"FATAL:  ", "ERROR:  ", "PANIC:  "};
        out[0] = 0;
        for (size_t i = 0; i < sizeof severities / sizeof severities[0]; i++) {
                const char *p = strstr(m, severities[i]);
                if (!p)
                        continue;
                p += strlen(severities[i]);
                bool ok = true;
                for (int k = 0; k < 5 && ok; k++)
                        ok = isdigit((unsigned char)p[k]) || isupper((unsigned char)p[k]);
                if (ok && p[5] == ':') {
                        memcpy(out, p, 5);
                        out[5] = 0;
                        return p;
                }
        }
        return NULL;
}

void pgconn_message_line(const char *message, char *err, size_t err_size) {
        char state[6];
        const char *m = message && *message ? message : "connection failed";
        const char *at = find_sqlstate(m, state);
        size_t line = strcspn(m, "\n");
        if (at && (size_t)(at - m) < line)
                snprintf(err, err_size, "%.*s%.*s", (int)(at - m), m, (int)(line - (size_t)(at - m) - 7), at + 7);
        else
                snprintf(err, err_size, "%.*s", (int)line, m);
}

int pgconn_open(const char *const *keys, const char *const *values, int timeout_s, PGconn **ret,
                char ret_sqlstate[static 6], char *err, size_t err_size) {
        *ret = NULL;
        ret_sqlstate[0] = 0;
        PGconn *c = PQconnectStartParams(keys, values, 1);
        if (!c) {
                snprintf(err, err_size, "out of memory");
                return -ENOMEM;
        }
        PQsetErrorVerbosity(c, PQERRORS_VERBOSE);
        long long deadline = monotonic_ms() + (long long)timeout_s * 1000;
        PostgresPollingStatusType st = PQstatus(c) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
        while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
                long long left = deadline - monotonic_ms();
                if (left <= 0) {
                        snprintf(err, err_size, "no answer from PostgreSQL within %d s", timeout_s);
                        PQfinish(c);
                        return -ETIMEDOUT;
                }
                struct pollfd p = {.fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
                if (poll(&p, 1, (int)(left > 1000 ? 1000 : left)) < 0 && errno != EINTR)
                        break;
                st = PQconnectPoll(c);
        }
        if (PQstatus(c) == CONNECTION_OK) {
                PQsetErrorVerbosity(c, PQERRORS_DEFAULT);
                *ret = c;
                return 0;
        }
        const char *m = PQerrorMessage(c);
        find_sqlstate(m, ret_sqlstate);
        pgconn_message_line(m, err, err_size);
        PQfinish(c);
        return ret_sqlstate[0] && sqlstate_classify(ret_sqlstate) == SQLSTATE_DEPLOYMENT ? -EACCES : -ECONNREFUSED;
}
