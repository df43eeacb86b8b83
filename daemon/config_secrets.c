/* Secrets and other values given by reference: "@file:PATH" and
 * "@credential:NAME" ($CREDENTIALS_DIRECTORY/NAME, systemd's LoadCredential=),
 * and the bounded read of a regular file that the configuration file itself
 * goes through too. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_internal.h"

/* O_NONBLOCK and the S_ISREG check keep a FIFO or device from blocking the daemon. */
int config_read_file(const char *path, char **ret, size_t *ret_len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return S_ISDIR(st.st_mode) ? -EISDIR : -EBADFD;
        }
        if (st.st_size > CONFIG_FILE_MAX) {
                close(fd);
                return -EFBIG;
        }
        size_t cap = (size_t)st.st_size + 1, len = 0;
        char *buf = malloc(cap + 1);
        if (!buf) {
                close(fd);
                return -ENOMEM;
        }
        for (;;) {
                if (len == cap) {
                        /* The file grew while we read it; bounded still. */
                        if (cap > CONFIG_FILE_MAX) {
                                free(buf);
                                close(fd);
                                return -EFBIG;
                        }
                        char *p = realloc(buf, cap * 2 + 1);
                        if (!p) {
                                free(buf);
                                close(fd);
                                return -ENOMEM;
                        }
                        buf = p;
                        cap *= 2;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        free(buf);
                        close(fd);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        close(fd);
        buf[len] = 0;
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int bad(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *err, size_t err_size, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (err && err_size > 0)
                vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

int config_reference_path(const char *key, const char *value, char *path, size_t size, char *err,
                          size_t err_size) {
        const char *what;
        if (strncmp(value, "@file:", 6) == 0) {
                what = value + 6;
                if (!*what)
                        return bad(err, err_size, "%s: @file: needs a path", key);
                if (strlen(what) >= size)
                        return bad(err, err_size, "%s: path too long", key);
                strcpy(path, what);
        } else if (strncmp(value, "@credential:", 12) == 0) {
                what = value + 12;
                /* systemd.exec(5) "Credentials": plain names inside $CREDENTIALS_DIRECTORY. */
                if (!*what || strchr(what, '/') || strcmp(what, ".") == 0 || strcmp(what, "..") == 0)
                        return bad(err, err_size, "%s: \"%s\" is not a credential name", key, what);
                const char *dir = getenv("CREDENTIALS_DIRECTORY");
                if (!dir || !*dir)
                        return bad(err, err_size,
                                    "%s: @credential:%s, but $CREDENTIALS_DIRECTORY is not set "
                                    "(LoadCredential=%s:... in the unit)",
                                    key, what, what);
                if ((size_t)snprintf(path, size, "%s/%s", dir, what) >= size)
                        return bad(err, err_size, "%s: path too long", key);
        } else
                return 0;
        return 1;
}

int config_resolve_value(const char *key, const char *value, char **ret, size_t *ret_len, char *err,
                         size_t err_size) {
        char path[PATH_MAX];
        int r = config_reference_path(key, value, path, sizeof path, err, err_size);
        if (r < 0)
                return r;
        if (r == 0) {
                *ret = strdup(value);
                if (!*ret)
                        return -ENOMEM;
                *ret_len = strlen(value);
                return 0;
        }
        char *buf = NULL;
        size_t len = 0;
        r = config_read_file(path, &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return bad(err, err_size, "%s: cannot read %s: %s", key, path,
                            r == -EBADFD ? "not a regular file" : strerror(-r));
        if (len > 0 && buf[len - 1] == '\n')
                buf[--len] = 0;
        if (len > 0 && buf[len - 1] == '\r')
                buf[--len] = 0;
        *ret = buf;
        *ret_len = len;
        return 0;
}
