/* The Prometheus endpoint. See metrics_http.h.
 *
 * libmicrohttpd runs one internal thread that polls the listening socket and
 * its connections; every request is answered there from metrics_render().
 * Few connections and short timeouts: a stuck scraper cannot pile up work. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "metrics.h"
#include "metrics_http.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
        struct MHD_Daemon *d;
        uint16_t port;
};

int metrics_http_parse_listen(const char *listen, bool allow_remote, struct sockaddr_storage *ret, char *err,
                              size_t err_size) {
        char host[64];
        const char *port;
        memset(ret, 0, sizeof *ret);
        if (!listen || !*listen) {
                snprintf(err, err_size, "metrics.listen: empty");
                return -EINVAL;
        }
        if (listen[0] == '[') {
                const char *end = strchr(listen, ']');
                if (!end || end[1] != ':' || (size_t)(end - listen - 1) >= sizeof host) {
                        snprintf(err, err_size, "metrics.listen: expected [IPV6]:PORT");
                        return -EINVAL;
                }
                memcpy(host, listen + 1, (size_t)(end - listen - 1));
                host[end - listen - 1] = 0;
                port = end + 2;
        } else {
                const char *colon = strrchr(listen, ':');
                if (!colon || (size_t)(colon - listen) >= sizeof host || strchr(listen, ':') != colon) {
                        snprintf(err, err_size, "metrics.listen: expected ADDRESS:PORT, e.g. 127.0.0.1:9187");
                        return -EINVAL;
                }
                memcpy(host, listen, (size_t)(colon - listen));
                host[colon - listen] = 0;
                port = colon + 1;
        }
        char *e;
        errno = 0;
        unsigned long p = strtoul(port, &e, 10);
        if (!*port || *e || errno || p > 65535) {
                snprintf(err, err_size, "metrics.listen: invalid port \"%s\"", port);
                return -EINVAL;
        }
        bool loopback;
        struct sockaddr_in *in = (struct sockaddr_in *)ret;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ret;
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t)p);
                loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t)p);
                loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        } else {
                snprintf(err, err_size, "metrics.listen: \"%s\" is not a numeric IPv4 or IPv6 address", host);
                return -EINVAL;
        }
        if (!loopback && !allow_remote) {
                snprintf(err, err_size,
                         "metrics.listen: %s is not a loopback address; set metrics.allow_remote = true to allow it",
                         host);
                return -EINVAL;
        }
        return 0;
}

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                              const char *version, const char *upload_data, size_t *upload_data_size,
                              void **req_cls) {
        (void)cls;
        (void)version;
        (void)upload_data;
        (void)req_cls;
        unsigned status = MHD_HTTP_OK;
        char *body = NULL;
        size_t len = 0;
        static char not_found[] = "Not found: the metrics are at /metrics\n";
        static char not_allowed[] = "Method not allowed\n";
        static char no_memory[] = "Out of memory\n";
        const char *type = CONTENT_TYPE;
        if (*upload_data_size != 0 || (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
                status = MHD_HTTP_METHOD_NOT_ALLOWED;
                type = "text/plain";
        } else if (strcmp(url, "/metrics") != 0) {
                status = MHD_HTTP_NOT_FOUND;
                type = "text/plain";
        } else if (metrics_render(&body, &len) < 0) {
                status = MHD_HTTP_INTERNAL_SERVER_ERROR;
                type = "text/plain";
        }
        struct MHD_Response *resp;
        if (status == MHD_HTTP_OK)
                resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        else {
                const char *msg = status == MHD_HTTP_NOT_FOUND            ? not_found
                                  : status == MHD_HTTP_METHOD_NOT_ALLOWED ? not_allowed
                                                                          : no_memory;
                resp = MHD_create_response_from_buffer(strlen(msg), (void *)msg, MHD_RESPMEM_PERSISTENT);
        }
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        enum MHD_Result r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

int metrics_http_start(const char *listen, bool allow_remote, metrics_http **ret, char *err, size_t err_size) {
        struct sockaddr_storage sa;
        int r = metrics_http_parse_listen(listen, allow_remote, &sa, err, err_size);
        if (r < 0)
                return r;
        metrics_http *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
        if (sa.ss_family == AF_INET6)
                flags |= MHD_USE_IPv6;
        uint16_t port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                       : ((struct sockaddr_in *)&sa)->sin_port);
        h->d = MHD_start_daemon(flags, port, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)16, MHD_OPTION_CONNECTION_TIMEOUT,
                                (unsigned)10, MHD_OPTION_END);
        if (!h->d) {
                r = errno ? -errno : -EADDRNOTAVAIL;
                snprintf(err, err_size, "metrics.listen: cannot listen on %s: %s", listen, strerror(-r));
                free(h);
                return r;
        }
        const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
        h->port = info ? info->port : port;
        *ret = h;
        return 0;
}

uint16_t metrics_http_port(const metrics_http *h) {
        return h ? h->port : 0;
}

void metrics_http_stop(metrics_http *h) {
        if (!h)
                return;
        MHD_stop_daemon(h->d);
        free(h);
}
