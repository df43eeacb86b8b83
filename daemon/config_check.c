/* --check-config: what a configuration needs beyond parsing before it is
 * deployed (config.h config_check_deployment). Parsing alone accepts a file
 * without Kafka (tests give the daemon a bootstrap of their own) and any mode
 * of the pepper file (tests write them with the umask's); a configuration
 * about to run in production must have a Kafka to connect to, and a pepper
 * that only the daemon's user can read: whoever reads it can link the person
 * keys back to identity numbers. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config_internal.h"

static bool kafka_key(const config *c, const char *key) {
        for (size_t i = 0; i < c->n_kafka; i++)
                if (strcmp(c->kafka[i].key, key) == 0 && c->kafka[i].value && *c->kafka[i].value)
                        return true;
        return false;
}

int config_check_deployment(const config *c, char *err, size_t err_size) {
        if (!c->kafka_embedded && !kafka_key(c, "bootstrap.servers") && !kafka_key(c, "metadata.broker.list")) {
                snprintf(err, err_size,
                         "%s: no Kafka configured: set kafka.bootstrap.servers = HOST:PORT,... (or kafka.embedded = "
                         "true, to try allvarsd out without a cluster: never in production)",
                         c->path);
                return -EINVAL;
        }
        /* The file the pepper was read from (@file:PATH or @credential:NAME). */
        const char *ref = config_ref_get(c, "pepper");
        char path[PATH_MAX];
        if (ref && config_reference_path("pepper", ref, path, sizeof path, err, err_size) > 0) {
                struct stat st;
                if (stat(path, &st) < 0) {
                        snprintf(err, err_size, "pepper: cannot stat %s: %s", path, strerror(errno));
                        return -EINVAL;
                }
                if (st.st_mode & (S_IRWXG | S_IRWXO)) {
                        snprintf(err, err_size,
                                 "pepper: permissions %04o for %s are too open: it must not be accessible by group "
                                 "or others (chmod 600 or 400, owned by the daemon's user)",
                                 (unsigned)(st.st_mode & 07777), path);
                        return -EINVAL;
                }
        }
        return 0;
}
