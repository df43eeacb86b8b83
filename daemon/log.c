/* The one logging call: structured fields to journald, or one readable line
 * to stderr. The sink and the maximum priority are process-wide (set by
 * log_setup at start and on reload, from the main thread). */
#include <errno.h>
#include <stdatomic.h>
#include <printf.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <wchar.h>

/* We pass CODE_FILE/LINE/FUNC of our caller ourselves. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "log.h"
#include "strbuf.h"

#define LOG_IDENTIFIER "allvarsd"
#define LOG_MAX_FIELDS 48               /* caller's fields per message; more are dropped */

/* The message catalog: fixed ids, generated once with `systemd-id128 new`.
 * They are an interface (journalctl MESSAGE_ID=..., alerting rules): never
 * change one, only add. Listed in allvarsd(8). */
static const struct {
        const char *id;
        const char *name;
} log_catalog[_MSGID_MAX] = {
        [MSGID_STARTED] = {"8d35574769b44a59ab1a44c996471184", "STARTED"},
        [MSGID_STOPPING] = {"82294c30151a467e95988fc9a9ee5d0b", "STOPPING"},
        [MSGID_RELOADED] = {"8a0e1da16dd34871963d76c2c680c565", "RELOADED"},
        [MSGID_CONFIG] = {"54ff8baa2a27472e8c514f93ef9489e8", "CONFIG"},
        [MSGID_EMBEDDED_KAFKA] = {"c7ebd7b0df2243aa81528440e7daaba7", "EMBEDDED_KAFKA"},
        [MSGID_DECIDED] = {"f61abd5465af4fbf93ea0e8901de3790", "DECIDED"},
        [MSGID_DUPLICATE] = {"ba884836dc9c412cb8f1bade31db6528", "DUPLICATE"},
        [MSGID_DEAD_LETTER] = {"c5f8995ccd8b4f128ccbfcb90059f6ab", "DEAD_LETTER"},
        [MSGID_OUTCOME] = {"ad97ac223a0e4d1daec150f30577afdc", "OUTCOME"},
        [MSGID_ASSIGNED] = {"03f80a223c4e4b4f8028a7cb260133d0", "ASSIGNED"},
        [MSGID_REVOKED] = {"f8e5236fd4dd442ba89a17f86e172e03", "REVOKED"},
        [MSGID_DB_UNAVAILABLE] = {"c8f215f97cee4d8e9721ab141238b858", "DB_UNAVAILABLE"},
        [MSGID_DB_RECOVERED] = {"79bdd144eb7543dfbab61b29bcb93959", "DB_RECOVERED"},
        [MSGID_KAFKA_ERROR] = {"de869a5700fa4c40b2379417cebc2f75", "KAFKA_ERROR"},
        [MSGID_RELAY] = {"e0ad0706c272446ca37dfe8f1ed93791", "RELAY"},
        [MSGID_ALERT] = {"b4c046e0b061468e8a6c659da3ae4617", "ALERT"},
        [MSGID_PURGE] = {"a0c485308246455493833699b8c7a1ce", "PURGE"},
        [MSGID_BATCH_FENCED] = {"3c1b000b4c954deb9eb1d7deb4a094a4", "BATCH_FENCED"},
        [MSGID_PARTITION_GAP] = {"7c4a980a9f3d400f9090bab80424976b", "PARTITION_GAP"},
};

/* Set by log_setup on the main thread (start, reload), read by every thread. */
static atomic_bool log_to_journal = false;
static atomic_int log_max_priority = LOG_INFO;

const char *log_msgid_string(log_msgid id) {
        if ((int)id <= MSGID_NONE || id >= _MSGID_MAX || !log_catalog[id].id)
                return "";
        return log_catalog[id].id;
}

const char *log_msgid_name(log_msgid id) {
        if ((int)id <= MSGID_NONE || id >= _MSGID_MAX || !log_catalog[id].name)
                return "";
        return log_catalog[id].name;
}

/* systemd.exec(5), "JOURNAL_STREAM": "device:inode" of the stream connected
 * to the journal; only when it is our stderr do we talk to journald directly
 * (stderr may have been redirected since the variable was set). */
static bool log_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        int n = 0;
        struct stat st;
        if (!e || sscanf(e, "%llu:%llu%n", &dev, &ino, &n) != 2 || e[n] != 0)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_setup(log_target target, int max_priority) {
        switch (target) {
        case LOG_TARGET_JOURNAL: log_to_journal = true; break;
        case LOG_TARGET_STDERR: log_to_journal = false; break;
        default: log_to_journal = log_stderr_is_journal(); break;
        }
        if (max_priority < LOG_EMERG)
                max_priority = LOG_EMERG;
        if (max_priority > LOG_DEBUG)
                max_priority = LOG_DEBUG;
        log_max_priority = max_priority;
}

int log_get_max_priority(void) {
        return log_max_priority;
}

static const char *log_priority_name(int priority) {
        static const char *const names[] = {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"};
        return names[priority & 7];
}

/* journal-fields(7): upper-case letters, digits and underscores, not starting
 * with an underscore (those are trusted fields journald sets itself). */
static bool log_field_name_valid(const char *s, size_t len) {
        if (len == 0 || len > 64 || s[0] == '_' || (s[0] >= '0' && s[0] <= '9'))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
                        return false;
        return true;
}

/* One physical line whatever the text holds: control characters are escaped,
 * so a value cannot forge a second log line. */
static void line_put_escaped(strbuf *l, const char *s, size_t n, bool quote) {
        if (quote)
                strbuf_add(l, "\"", 1);
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char)s[i];
                char esc[8];
                if (c == '\n')
                        strbuf_add(l, "\\n", 2);
                else if (c == '\t')
                        strbuf_add(l, "\\t", 2);
                else if (c == '\\' && quote)
                        strbuf_add(l, "\\\\", 2);
                else if (c == '"' && quote)
                        strbuf_add(l, "\\\"", 2);
                else if (c < 0x20 || c == 0x7f) {
                        snprintf(esc, sizeof esc, "\\x%02x", c);
                        strbuf_add(l, esc, 4);
                } else
                        strbuf_add(l, (const char *)&s[i], 1);
        }
        if (quote)
                strbuf_add(l, "\"", 1);
}

static bool value_needs_quotes(const char *s, size_t n) {
        if (n == 0)
                return true;
        for (size_t i = 0; i < n; i++)
                if (s[i] == ' ' || s[i] == '"' || s[i] == '\\' || (unsigned char)s[i] < 0x20)
                        return true;
        return false;
}

/* fields[] are "NAME=value" strings; fields[message] is MESSAGE=. */
static void log_write_stderr(int priority, char **fields, size_t n, int message) {
        strbuf l = {0};
        const char *p = log_priority_name(priority);
        strbuf_add(&l, p, strlen(p));
        strbuf_add(&l, " ", 1);
        if (message >= 0)
                line_put_escaped(&l, fields[message] + 8, strlen(fields[message] + 8), false);
        for (size_t i = 0; i < n; i++) {
                if ((int)i == message)
                        continue;
                const char *eq = strchr(fields[i], '=');
                strbuf_add(&l, " ", 1);
                strbuf_add(&l, fields[i], (size_t)(eq - fields[i]) + 1);
                line_put_escaped(&l, eq + 1, strlen(eq + 1), value_needs_quotes(eq + 1, strlen(eq + 1)));
        }
        strbuf_add(&l, "\n", 1);
        if (!l.oom) {
                /* One write(2) per line, so lines of several threads do not interleave. */
                size_t off = 0;
                while (off < l.len) {
                        ssize_t w = write(STDERR_FILENO, l.s + off, l.len - off);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                break;
                        off += (size_t)w;
                }
        }
        strbuf_free(&l);
}

static void log_dispatch(int priority, log_msgid id, const char *file, int line, const char *func, char **fields,
                         size_t n) {
        int message = -1;
        for (size_t i = 0; i < n; i++)
                if (strncmp(fields[i], "MESSAGE=", 8) == 0)
                        message = (int)i;

        if (log_to_journal) {
                char prio[16], code_line[32], msgid[48], code_file[512], code_func[256];
                struct iovec iov[LOG_MAX_FIELDS + 8];
                size_t k = 0;
                snprintf(prio, sizeof prio, "PRIORITY=%d", priority);
                iov[k++] = (struct iovec){prio, strlen(prio)};
                iov[k++] = (struct iovec){(char *)"SYSLOG_IDENTIFIER=" LOG_IDENTIFIER,
                                          strlen("SYSLOG_IDENTIFIER=" LOG_IDENTIFIER)};
                if (*log_msgid_string(id)) {
                        snprintf(msgid, sizeof msgid, "MESSAGE_ID=%s", log_msgid_string(id));
                        iov[k++] = (struct iovec){msgid, strlen(msgid)};
                }
                if (file) {
                        snprintf(code_file, sizeof code_file, "CODE_FILE=%s", file);
                        iov[k++] = (struct iovec){code_file, strlen(code_file)};
                        snprintf(code_line, sizeof code_line, "CODE_LINE=%d", line);
                        iov[k++] = (struct iovec){code_line, strlen(code_line)};
                }
                if (func) {
                        snprintf(code_func, sizeof code_func, "CODE_FUNC=%s", func);
                        iov[k++] = (struct iovec){code_func, strlen(code_func)};
                }
                for (size_t i = 0; i < n; i++)
                        iov[k++] = (struct iovec){fields[i], strlen(fields[i])};
                if (sd_journal_sendv(iov, (int)k) >= 0)
                        return;
                /* journald gone (or never there with log.target = journal): keep the line. */
        }
        log_write_stderr(priority, fields, n, message);
}

/* Skip the arguments one printf format consumes (the technique of systemd's
 * VA_FORMAT_ADVANCE): glibc's parse_printf_format lists their types. Returns
 * false for a format we cannot skip safely. */
#define LOG_VA_ADVANCE(format, ap, ok)                                                                   \
        do {                                                                                             \
                int types_[64];                                                                          \
                size_t n_ = parse_printf_format((format), 64, types_);                                   \
                if (n_ > 64) {                                                                           \
                        (ok) = false;                                                                    \
                        break;                                                                           \
                }                                                                                        \
                for (size_t i_ = 0; i_ < n_ && (ok); i_++) {                                             \
                        if (types_[i_] & PA_FLAG_PTR) {                                                  \
                                (void)va_arg(ap, void *);                                                \
                                continue;                                                                \
                        }                                                                                \
                        switch (types_[i_]) {                                                            \
                        case PA_INT:                                                                     \
                        case PA_INT | PA_FLAG_SHORT:                                                     \
                        case PA_CHAR: (void)va_arg(ap, int); break;                                      \
                        case PA_INT | PA_FLAG_LONG: (void)va_arg(ap, long); break;                       \
                        case PA_INT | PA_FLAG_LONG_LONG: (void)va_arg(ap, long long); break;             \
                        case PA_WCHAR: (void)va_arg(ap, wint_t); break;                                  \
                        case PA_WSTRING:                                                                 \
                        case PA_STRING:                                                                  \
                        case PA_POINTER: (void)va_arg(ap, void *); break;                                \
                        case PA_FLOAT:                                                                   \
                        case PA_DOUBLE: (void)va_arg(ap, double); break;                                 \
                        case PA_DOUBLE | PA_FLAG_LONG_DOUBLE: (void)va_arg(ap, long double); break;      \
                        default: (ok) = false; break;                                                    \
                        }                                                                                \
                }                                                                                        \
        } while (0)

int log_struct_internal(int priority, log_msgid id, const char *file, int line, const char *func,
                        const char *format, ...) {
        if ((priority & 7) > log_max_priority)
                return 0;
        int saved_errno = errno;
        char *fields[LOG_MAX_FIELDS];
        size_t n = 0;
        bool ok = true;
        va_list ap;
        va_start(ap, format);
        for (const char *f = format; f; ) {
                char *s = NULL;
                va_list aq;
                va_copy(aq, ap);
                errno = saved_errno; /* a %m in a field means the caller's errno */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
                int r = vasprintf(&s, f, aq);
#pragma GCC diagnostic pop
                va_end(aq);
                LOG_VA_ADVANCE(f, ap, ok);
                if (r >= 0) {
                        const char *eq = strchr(s, '=');
                        /* A malformed field name would be dropped by journald; drop it on stderr too. */
                        if (eq && log_field_name_valid(s, (size_t)(eq - s)) && n < LOG_MAX_FIELDS)
                                fields[n++] = s;
                        else
                                free(s);
                }
                /* Past a format whose arguments we cannot skip, the next one is unknowable. */
                f = ok ? va_arg(ap, const char *) : NULL;
        }
        va_end(ap);

        bool has_message = false;
        for (size_t i = 0; i < n; i++)
                has_message = has_message || strncmp(fields[i], "MESSAGE=", 8) == 0;
        if (!has_message && n < LOG_MAX_FIELDS) {
                /* A programming error, but the event must not vanish: name it. */
                if (asprintf(&fields[n], "MESSAGE=%s", *log_msgid_name(id) ? log_msgid_name(id) : "(no message)") >= 0)
                        n++;
        }
        log_dispatch(priority & 7, id, file, line, func, fields, n);
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
        errno = saved_errno;
        return 0;
}

int log_internal(int priority, int error, const char *file, int line, const char *func, const char *format, ...) {
        int ret = error < 0 ? error : -error;
        if ((priority & 7) > log_max_priority)
                return ret;
        int saved_errno = errno;
        char *fields[2];
        size_t n = 0;
        char *msg = NULL;
        va_list ap;
        va_start(ap, format);
        /* glibc expands %m from errno: make it the error we were given. */
        if (error != 0)
                errno = error < 0 ? -error : error;
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        int r = vasprintf(&msg, format, ap);
#pragma GCC diagnostic pop
        va_end(ap);
        if (r >= 0) {
                char *m = NULL;
                if (asprintf(&m, "MESSAGE=%s", msg) >= 0)
                        fields[n++] = m;
                free(msg);
        }
        if (error != 0 && asprintf(&fields[n], "ERRNO=%d", error < 0 ? -error : error) >= 0)
                n++;
        log_dispatch(priority & 7, MSGID_NONE, file, line, func, fields, n);
        for (size_t i = 0; i < n; i++)
                free(fields[i]);
        errno = saved_errno;
        return ret;
}
