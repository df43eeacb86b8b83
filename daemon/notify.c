/* The systemd notification protocol (sd_notify(3)) on top of libsystemd.
 * Every call is a no-op when NOTIFY_SOCKET is unset, so the daemon runs the
 * same in a terminal, in tests and under systemd. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "notify.h"

void notify_ready(void) {
        (void)sd_notify(0, "READY=1");
}

/* Type=notify on systemd 252 has no notify-reload, but RELOADING=1 with
 * MONOTONIC_USEC= (required from 253 on) keeps "systemctl reload" waiting
 * until the READY=1 that follows the reload. */
void notify_reloading(void) {
        (void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIi64, (int64_t)clock_monotonic());
}

void notify_stopping(void) {
        (void)sd_notify(0, "STOPPING=1");
}

void notify_watchdog(void) {
        (void)sd_notify(0, "WATCHDOG=1");
}

usec_t notify_watchdog_usec(void) {
        uint64_t usec = 0;
        /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if any) is us. */
        if (sd_watchdog_enabled(0, &usec) <= 0 || usec > INT64_MAX)
                return 0;
        return (usec_t)usec;
}

/* Append to buf at *pos, keeping it NUL-terminated and never overflowing. */
static void status_append(char *buf, size_t size, size_t *pos, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void status_append(char *buf, size_t size, size_t *pos, const char *fmt, ...) {
        if (*pos + 1 >= size)
                return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(buf + *pos, size - *pos, fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        *pos = (size_t)n >= size - *pos ? size - 1 : *pos + (size_t)n;
}

/* A figure with its noun, singular for one ("1 partition", "2 partitions"). */
static void status_count(char *buf, size_t size, size_t *pos, const char *sep, uint64_t n, const char *one,
                         const char *many) {
        status_append(buf, size, pos, "%s%" PRIu64 " %s", sep, n, n == 1 ? one : many);
}

/* Free text (state, last error) goes into one line of the notify protocol: a
 * newline would start a new assignment ("...\nREADY=1"), so every control
 * character becomes a space. */
static void status_text(char *buf, size_t size, size_t *pos, const char *s) {
        for (; s && *s && *pos + 1 < size; s++)
                buf[(*pos)++] = (unsigned char)*s < 0x20 || *s == 0x7f ? ' ' : *s;
        buf[*pos] = 0;
}

char *notify_format_status(const notify_figures *f, char *buf, size_t size) {
        size_t pos = 0;
        if (size == 0)
                return buf;
        buf[0] = 0;
        /* This instance's counts since it started, then the database's
         * figures with their age: they come from the periodic jobs. */
        status_text(buf, size, &pos, f->state && *f->state ? f->state : "running");
        status_count(buf, size, &pos, "; since start: ", f->referrals_decided, "decided", "decided");
        status_count(buf, size, &pos, ", ", f->duplicates, "duplicate", "duplicates");
        status_count(buf, size, &pos, ", ", f->dead_letters, "dead letter", "dead letters");
        status_count(buf, size, &pos, ", ", f->alerts_raised, "alert", "alerts");
        status_count(buf, size, &pos, "; ", f->partitions_assigned, "partition", "partitions");
        if (f->db_known) {
                status_append(buf, size, &pos, "; database %" PRIu64 " s ago: ", f->db_age_s);
                status_count(buf, size, &pos, "", f->cases_open, "case open", "cases open");
                status_append(buf, size, &pos, ", outbox %" PRIu64, f->outbox_backlog);
        } else
                status_append(buf, size, &pos, "; database figures not read yet");
        if (f->last_error && *f->last_error) {
                status_append(buf, size, &pos, "; last error: ");
                status_text(buf, size, &pos, f->last_error);
        }
        return buf;
}

void notify_status(const notify_figures *f) {
        char line[1024];
        (void)sd_notifyf(0, "STATUS=%s", notify_format_status(f, line, sizeof line));
}
