/* The Prometheus endpoint: GET /metrics on metrics.listen, served by
 * libmicrohttpd's own thread from the registry of metrics.h (atomics only: a
 * scrape takes no lock the batches take and never queries PostgreSQL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct metrics_http metrics_http;

/* Parse "ADDRESS:PORT" ("127.0.0.1:9187", "[::1]:9187"; numeric only) and
 * check it: only loopback unless allow_remote. Returns 0 or -EINVAL with the
 * reason in err. Pure. */
struct sockaddr_storage;
int metrics_http_parse_listen(const char *listen, bool allow_remote, struct sockaddr_storage *ret, char *err,
                              size_t err_size);

/* Listen and serve. Returns 0 or a negative errno with the reason in err. */
int metrics_http_start(const char *listen, bool allow_remote, metrics_http **ret, char *err, size_t err_size);
/* The port listened on (useful when the configuration said 0). */
uint16_t metrics_http_port(const metrics_http *h);
/* Stop the thread and close the socket; NULL is fine. */
void metrics_http_stop(metrics_http *h);
