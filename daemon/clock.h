/* The one clock of allvarsd. Every "now" in the daemon comes from here, so that
 * tests can set the time (clock.file) and see deadlines pass without waiting. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int64_t usec_t;                 /* microseconds since the Unix epoch, UTC */

#define USEC_PER_SEC  ((usec_t)1000000)
#define USEC_PER_HOUR (3600 * USEC_PER_SEC)
#define USEC_PER_DAY  (24 * USEC_PER_HOUR)
#define RFC3339_MAX   40                /* "2025-03-12T10:00:00.123456Z" and NUL */

typedef struct clock_source {
        char *file;                     /* NULL: system clock; else a file holding an RFC 3339 time */
        usec_t file_value;              /* cached content of file */
        int64_t file_mtime_ns;          /* mtime of the cached content */
        usec_t offset;                  /* added to the file's time as real time passes (0: frozen) */
} clock_source;

/* Use the system clock (file == NULL) or the time written in file, re-read when it changes. */
int clock_source_init(clock_source *c, const char *file);
void clock_source_done(clock_source *c);
usec_t clock_now(clock_source *c);

/* The system's realtime and monotonic clocks, for the few places that need the real time. */
usec_t clock_realtime(void);
usec_t clock_monotonic(void);

/* Calendar arithmetic, also for identity.c: the proleptic Gregorian date of a
 * day number (days since 1970-01-01), and a / b rounded towards minus infinity. */
void clock_civil_from_days(int64_t days, int64_t *ret_year, int *ret_month, int *ret_day);
int64_t clock_floor_div(int64_t a, int64_t b);

/* RFC 3339 in UTC with 'Z'; fractions only when not whole seconds. Returns buf. */
char *clock_format_rfc3339(usec_t t, char buf[static RFC3339_MAX]);
/* Accepts "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)". Returns 0 or -EINVAL. */
int clock_parse_rfc3339(const char *s, usec_t *ret);
