/* TLS enforced, not hoped for: a PostgreSQL server or Kafka broker that is
 * not on this machine (a loopback address or a unix socket) is reached only
 * over TLS that verifies the server, unless the configuration says
 * insecure.allow_plaintext = true (one explicit key, warned about at every
 * start and shown by allvarsctl status). See config.h (config_check_transport). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "config.h"

/* A host name or address on this machine: localhost, 127.0.0.0/8, ::1, or a
 * unix socket (a path, or an abstract socket "@name"). */
static bool host_is_local(const char *h, size_t n) {
        while (n > 0 && isspace((unsigned char)*h))
                h++, n--;
        while (n > 0 && isspace((unsigned char)h[n - 1]))
                n--;
        if (n == 0 || h[0] == '/' || h[0] == '@')
                return true;    /* libpq: an empty host is the default unix socket */
        if (h[0] == '[' && n >= 2 && h[n - 1] == ']')
                h++, n -= 2;
        if ((n == 9 && strncasecmp(h, "localhost", 9) == 0) || (n == 3 && strncmp(h, "::1", 3) == 0))
                return true;
        return n >= 4 && strncmp(h, "127.", 4) == 0 && strspn(h, "0123456789.") == n;
}

/* Every host of a comma-separated list is local. */
static bool hosts_local(const char *list) {
        for (const char *s = list;; s++) {
                const char *e = strchr(s, ',');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (!host_is_local(s, n))
                        return false;
                if (!e)
                        return true;
                s = e;
        }
}

/* The host of "host:port", "[v6]:port" or "proto://host:port". */
static bool broker_is_local(const char *b, size_t n) {
        const char *scheme = memchr(b, ':', n);
        if (scheme && (size_t)(scheme - b) + 2 < n && scheme[1] == '/' && scheme[2] == '/') {
                n -= (size_t)(scheme + 3 - b);
                b = scheme + 3;
        }
        while (n > 0 && isspace((unsigned char)*b))
                b++, n--;
        size_t host = n;
        if (n > 0 && b[0] == '[') {
                const char *close = memchr(b, ']', n);
                host = close ? (size_t)(close - b) + 1 : n;
        } else {
                const char *colon = memchr(b, ':', n);
                if (colon)
                        host = (size_t)(colon - b);
        }
        return host > 0 && host_is_local(b, host);
}

static bool brokers_local(const char *list) {
        for (const char *s = list;; s++) {
                const char *e = strchr(s, ',');
                size_t n = e ? (size_t)(e - s) : strlen(s);
                if (n > 0 && !broker_is_local(s, n))
                        return false;
                if (!e)
                        return true;
                s = e;
        }
}

static const char *kafka_value(const config *c, const char *key) {
        for (size_t i = 0; i < c->n_kafka; i++)
                if (strcmp(c->kafka[i].key, key) == 0)
                        return c->kafka[i].value;
        return NULL;
}

static bool is_false(const char *v) {
        return v && (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0);
}

#define INSECURE "; insecure.allow_plaintext = true allows it"

static int check_database(const config *c, char *err, size_t err_size) {
        char *errmsg = NULL;
        PQconninfoOption *opts = PQconninfoParse(c->db_conninfo, &errmsg);
        if (!opts) {
                snprintf(err, err_size, "database.conninfo: %s", errmsg ? strtok(errmsg, "\n") : "cannot be parsed");
                PQfreemem(errmsg);
                return -EINVAL;
        }
        const char *host = NULL, *hostaddr = NULL, *sslmode = NULL;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val || !*o->val)
                        continue;
                if (strcmp(o->keyword, "host") == 0)
                        host = o->val;
                else if (strcmp(o->keyword, "hostaddr") == 0)
                        hostaddr = o->val;
                else if (strcmp(o->keyword, "sslmode") == 0)
                        sslmode = o->val;
        }
        /* What libpq would use: the conninfo, else its environment. */
        if (!host && !hostaddr)
                host = getenv("PGHOST");
        if (!hostaddr && !getenv("PGHOST") && getenv("PGHOSTADDR") && !host)
                hostaddr = getenv("PGHOSTADDR");
        if (!sslmode)
                sslmode = getenv("PGSSLMODE");
        bool local = hostaddr ? hosts_local(hostaddr) : hosts_local(host ? host : "");
        int r = 0;
        if (!local && (!sslmode || strcmp(sslmode, "verify-full") != 0))
                snprintf(err, err_size,
                         "database.conninfo: a server that is not on this machine needs sslmode=verify-full "
                         "(TLS with the server's certificate and name checked), not %s" INSECURE,
                         sslmode ? sslmode : "the default (prefer)"),
                        r = -EPERM;
        PQconninfoFree(opts);
        return r;
}

static int check_kafka(const config *c, char *err, size_t err_size) {
        const char *v = kafka_value(c, "enable.ssl.certificate.verification");
        if (is_false(v)) {
                snprintf(err, err_size, "kafka.enable.ssl.certificate.verification = %s turns off the check of the "
                         "brokers' certificates" INSECURE, v);
                return -EPERM;
        }
        v = kafka_value(c, "ssl.endpoint.identification.algorithm");
        if (v && strcasecmp(v, "none") == 0) {
                snprintf(err, err_size, "kafka.ssl.endpoint.identification.algorithm = %s turns off the check of the "
                         "brokers' host names" INSECURE, v);
                return -EPERM;
        }
        if (c->kafka_embedded)
                return 0;
        const char *servers = kafka_value(c, "bootstrap.servers");
        if (!servers)
                servers = kafka_value(c, "metadata.broker.list");
        if (!servers || brokers_local(servers))
                return 0;
        const char *proto = kafka_value(c, "security.protocol");
        if (!proto || (strcasecmp(proto, "ssl") != 0 && strcasecmp(proto, "sasl_ssl") != 0)) {
                snprintf(err, err_size, "kafka.security.protocol: brokers that are not on this machine need SSL or "
                         "SASL_SSL, not %s" INSECURE, proto ? proto : "the default (plaintext)");
                return -EPERM;
        }
        return 0;
}

int config_check_transport(const config *c, char *err, size_t err_size) {
        if (c->insecure_allow_plaintext)
                return 0;
        int r = check_database(c, err, err_size);
        return r < 0 ? r : check_kafka(c, err, err_size);
}
