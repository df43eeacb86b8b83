/* The one clock of allvarsd, and RFC 3339 in UTC.
 *
 * clock.file (tests only) holds an RFC 3339 time; clock_now() returns it plus
 * c->offset and re-reads the file whenever its mtime changes, so a test moves
 * time forward by rewriting the file. With offset 0 the clock is frozen at the
 * file's time. Civil date arithmetic is done here by hand (days from civil,
 * Howard Hinnant's algorithm) so that formatting never depends on the local zone. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int64_t y, int m, int d) {
        y -= m <= 2;
        int64_t era = (y >= 0 ? y : y - 399) / 400;
        int64_t yoe = y - era * 400;
        int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
}

void clock_civil_from_days(int64_t z, int64_t *ret_y, int *ret_m, int *ret_d) {
        z += 719468;
        int64_t era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153;
        int d = (int)(doy - (153 * mp + 2) / 5 + 1);
        int m = (int)(mp < 10 ? mp + 3 : mp - 9);
        *ret_y = yoe + era * 400 + (m <= 2);
        *ret_m = m;
        *ret_d = d;
}

int64_t clock_floor_div(int64_t a, int64_t b) {
        int64_t q = a / b;
        if ((a % b != 0) && ((a < 0) != (b < 0)))
                q--;
        return q;
}

static char *put_digits(char *p, int64_t v, int n) {
        for (int i = n - 1; i >= 0; i--) {
                p[i] = (char)('0' + v % 10);
                v /= 10;
        }
        return p + n;
}

char *clock_format_rfc3339(usec_t t, char buf[static RFC3339_MAX]) {
        /* Four-digit years only: clamp to 0000-01-01 .. 9999-12-31T23:59:59.999999. */
        static const usec_t min = -62167219200LL * USEC_PER_SEC, max = 253402300800LL * USEC_PER_SEC - 1;
        if (t < min)
                t = min;
        if (t > max)
                t = max;
        int64_t days = clock_floor_div(t, USEC_PER_DAY);
        int64_t rem = t - days * USEC_PER_DAY;       /* 0 .. USEC_PER_DAY-1 */
        int64_t y;
        int m, d;
        clock_civil_from_days(days, &y, &m, &d);
        int64_t secs = rem / USEC_PER_SEC, frac = rem % USEC_PER_SEC;
        char *p = buf;
        p = put_digits(p, y, 4);
        *p++ = '-';
        p = put_digits(p, m, 2);
        *p++ = '-';
        p = put_digits(p, d, 2);
        *p++ = 'T';
        p = put_digits(p, secs / 3600, 2);
        *p++ = ':';
        p = put_digits(p, secs / 60 % 60, 2);
        *p++ = ':';
        p = put_digits(p, secs % 60, 2);
        if (frac != 0) {
                *p++ = '.';
                p = put_digits(p, frac, 6);
        }
        *p++ = 'Z';
        *p = '\0';
        return buf;
}

static int parse_digits(const char **p, int n, int *ret) {
        int v = 0;
        for (int i = 0; i < n; i++) {
                char c = (*p)[i];
                if (c < '0' || c > '9')
                        return -EINVAL;
                v = v * 10 + (c - '0');
        }
        *p += n;
        *ret = v;
        return 0;
}

static int days_in_month(int y, int m) {
        static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
                return 29;
        return dim[m - 1];
}

int clock_parse_rfc3339(const char *s, usec_t *ret) {
        int y, mo, d, h, mi, sec;
        const char *p = s;
        if (!s)
                return -EINVAL;
        if (parse_digits(&p, 4, &y) < 0 || *p++ != '-' || parse_digits(&p, 2, &mo) < 0 || *p++ != '-' ||
            parse_digits(&p, 2, &d) < 0)
                return -EINVAL;
        /* RFC 3339 5.6 allows 't', and a space "for the sake of readability". */
        if (*p != 'T' && *p != 't' && *p != ' ')
                return -EINVAL;
        p++;
        if (parse_digits(&p, 2, &h) < 0 || *p++ != ':' || parse_digits(&p, 2, &mi) < 0 || *p++ != ':' ||
            parse_digits(&p, 2, &sec) < 0)
                return -EINVAL;
        if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
                return -EINVAL;
        int64_t frac = 0;
        if (*p == '.') {
                p++;
                int n = 0;
                while (*p >= '0' && *p <= '9') {
                        if (n < 6)
                                frac = frac * 10 + (*p - '0');
                        n++;
                        p++;
                }
                if (n == 0)
                        return -EINVAL;
                for (; n < 6; n++)
                        frac *= 10;
        }
        int64_t offset = 0;
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                int sign = *p++ == '-' ? -1 : 1, oh, om;
                if (parse_digits(&p, 2, &oh) < 0 || *p++ != ':' || parse_digits(&p, 2, &om) < 0 || oh > 23 ||
                    om > 59)
                        return -EINVAL;
                offset = sign * (int64_t)(oh * 3600 + om * 60);
        } else
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;
        int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
        *ret = secs * USEC_PER_SEC + frac;
        return 0;
}

static usec_t timespec_usec(const struct timespec *ts) {
        return (usec_t)ts->tv_sec * USEC_PER_SEC + ts->tv_nsec / 1000;
}

usec_t clock_realtime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return timespec_usec(&ts);
}

usec_t clock_monotonic(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return timespec_usec(&ts);
}

/* Read the file's time; 0 or a negative errno (-EINVAL for content that is not a time). */
static int read_file_time(const char *path, usec_t *ret, int64_t *ret_mtime_ns) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        char buf[128];
        ssize_t n = -1;
        if (fstat(fd, &st) == 0)
                n = read(fd, buf, sizeof buf - 1);
        int saved = errno;
        close(fd);
        if (n < 0)
                return -saved;
        buf[n] = '\0';
        /* Tolerate the newline that echo adds, and surrounding blanks. */
        char *b = buf;
        while (*b == ' ' || *b == '\t' || *b == '\n' || *b == '\r')
                b++;
        size_t len = strlen(b);
        while (len > 0 && (b[len - 1] == ' ' || b[len - 1] == '\t' || b[len - 1] == '\n' || b[len - 1] == '\r'))
                b[--len] = '\0';
        usec_t t;
        int r = clock_parse_rfc3339(b, &t);
        if (r < 0)
                return r;
        *ret = t;
        *ret_mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        return 0;
}

int clock_source_init(clock_source *c, const char *file) {
        *c = (clock_source){0};
        if (!file || !*file)
                return 0;
        c->file = strdup(file);
        if (!c->file)
                return -ENOMEM;
        int r = read_file_time(c->file, &c->file_value, &c->file_mtime_ns);
        if (r < 0) {
                free(c->file);
                c->file = NULL;
                return r;
        }
        return 0;
}

void clock_source_done(clock_source *c) {
        if (!c)
                return;
        free(c->file);
        c->file = NULL;
}

usec_t clock_now(clock_source *c) {
        if (!c || !c->file)
                return clock_realtime();
        struct stat st;
        if (stat(c->file, &st) == 0) {
                int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
                /* A file being rewritten may be empty for a moment: keep the old time then. */
                if (mtime != c->file_mtime_ns) {
                        usec_t t;
                        int64_t m;
                        if (read_file_time(c->file, &t, &m) == 0) {
                                c->file_value = t;
                                c->file_mtime_ns = m;
                        }
                }
        }
        return c->file_value + c->offset;
}
