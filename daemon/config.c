/* Configuration: one table of keys drives parsing, defaults, validation,
 * config_dump (--check-config), SIGHUP reload (config_restart_needed) and the
 * key list of allvarsd.conf(5) (config_write_man), so they cannot drift
 * apart. Library code: errors go into the caller's buffer, never to a log. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "config.h"

#define CONFIG_FILE_MAX (1024 * 1024)   /* a configuration or secret file larger than this is a mistake */

typedef enum config_type {
        CT_STRING,
        CT_BOOL,
        CT_UINT,                        /* unsigned */
        CT_SIZE,                        /* size_t, with an optional K, M or G suffix */
        CT_ENUM,                        /* one word of a list; an int index, or the word (CF_ENUM_STRING) */
        CT_SECRET,                      /* a string (or bytes, CF_BYTES) never printed */
        CT_PROFILE,                     /* profile.name: a built-in profile */
        CT_PATTERN,                     /* documentation of a family of keys (kafka.<property>, ...) */
} config_type;

enum {
        CF_RELOADABLE = 1 << 0,         /* SIGHUP applies it; otherwise a change needs a restart */
        CF_REQUIRED = 1 << 1,
        CF_NONEMPTY = 1 << 2,
        CF_REFERENCE_ONLY = 1 << 3,     /* only @file: or @credential:, never in the file itself */
        CF_BYTES = 1 << 4,              /* uint8_t * at offset, its size_t length at offset_len */
        CF_ENUM_STRING = 1 << 5,
        CF_TOPIC = 1 << 6,
};

typedef struct config_key {
        const char *name;
        config_type type;
        size_t offset;
        size_t offset_len;
        const char *def;                /* the default as written in the file; NULL: none */
        unsigned flags;
        uint64_t min, max;              /* CT_UINT, CT_SIZE; CF_BYTES: min is the least length */
        const char *const *values;      /* CT_ENUM */
        const char *doc;
} config_key;

/* In the order of feedback_level. */
static const char *const feedback_levels[] = {"statutory", "conversation", NULL};
static const char *const log_targets[] = {"auto", "journal", "stderr", NULL};
static const char *const log_levels[] = {"debug", "info", "notice", "warning", "err", "error", NULL};
_Static_assert(FEEDBACK_STATUTORY == 0 && FEEDBACK_CONVERSATION == 1, "feedback_levels[] order");
_Static_assert(sizeof(feedback_level) == sizeof(int), "CT_ENUM stores an int");

#define OFF(f) offsetof(config, f)

static const config_key config_keys[] = {
        {"kafka.embedded", CT_BOOL, OFF(kafka_embedded), 0, "false", 0, 0, 0, NULL,
         "Start librdkafka's in-process mock cluster instead of connecting to brokers. For trying allvarsd out "
         "and for tests only, never in production: the daemon says so loudly in its log."},
        {"kafka.group.id", CT_STRING, OFF(group_id), 0, "allvarsd", CF_NONEMPTY, 0, 0, NULL,
         "The Kafka consumer group. It is also the name under which the consumed offsets are stored in "
         "PostgreSQL, so every instance of one deployment must use the same group."},
        {"kafka.<property>", CT_PATTERN, 0, 0, NULL, 0, 0, 0, NULL,
         "Any other librdkafka property, passed through unchanged without the kafka. prefix (see librdkafka's "
         "CONFIGURATION.md): bootstrap.servers, security.protocol, ssl.*, sasl.* and so on. Secrets such as "
         "sasl.password can be given as @credential:NAME. Properties that effectively-once rests on "
         "(enable.auto.commit, enable.auto.offset.store, auto.offset.reset, partition.assignment.strategy, "
         "enable.partition.eof, enable.idempotence, acks, log.queue) are set by allvarsd and refused here."},
        {"topics.referrals", CT_STRING, OFF(topic_referrals), 0, "police.referrals.v1", CF_TOPIC, 0, 0, NULL,
         "Input: the police's referrals (allvarssamtal.v1.PoliceReferral)."},
        {"topics.outcomes", CT_STRING, OFF(topic_outcomes), 0, "allvarssamtal.outcomes.v1", CF_TOPIC, 0, 0, NULL,
         "Input: case outcome events from the booking service, social workers and the police "
         "(allvarssamtal.v1.CaseOutcome)."},
        {"topics.scheduling", CT_STRING, OFF(topic_scheduling), 0, "allvarssamtal.scheduling.v1", CF_TOPIC, 0, 0,
         NULL, "Output: scheduling requests to the booking service."},
        {"topics.feedback", CT_STRING, OFF(topic_feedback), 0, "police.feedback.v1", CF_TOPIC, 0, 0, NULL,
         "Output: feedback to the police (status codes only)."},
        {"topics.alerts", CT_STRING, OFF(topic_alerts), 0, "allvarssamtal.alerts.v1", CF_TOPIC, 0, 0, NULL,
         "Output: deadline alerts (AT_RISK, MISSED, PROTECTIVE_ASSESSMENT_OVERDUE)."},
        {"topics.dead_letter", CT_STRING, OFF(topic_dead_letter), 0, "allvarssamtal.deadletter.v1", CF_TOPIC, 0, 0,
         NULL, "Output: messages that could not be decoded or applied, with the reason and their origin."},
        {"database.conninfo", CT_STRING, OFF(db_conninfo), 0, NULL, CF_REQUIRED | CF_NONEMPTY, 0, 0, NULL,
         "The libpq connection string of the runtime role, as keyword=value pairs or a postgresql:// URI, e.g. "
         "host=db.example.org dbname=allvarsd user=allvarsd sslmode=verify-full. A password in it is "
         "masked by --check-config, but belongs in database.password."},
        {"database.password", CT_SECRET, OFF(db_password), 0, NULL, 0, 0, 0, NULL,
         "The database password, normally @credential:db-password (LoadCredential= in the unit); merged into "
         "the connection. Optional: peer, certificate or .pgpass authentication need none."},
        {"pepper", CT_SECRET, OFF(pepper), OFF(pepper_len), NULL,
         CF_REQUIRED | CF_REFERENCE_ONLY | CF_BYTES, 32, 0, NULL,
         "The secret key of the person hash (HMAC-SHA-256 of the identity number), at least 32 bytes, only as "
         "@file:PATH or @credential:NAME (e.g. openssl rand -hex 32 > pepper). Never change it: "
         "persons would no longer match their history."},
        {"profile.name", CT_PROFILE, 0, 0, PROFILE_DEFAULT, CF_RELOADABLE, 0, 0, NULL,
         "The default policy profile: goteborg-motion-2024, stockholm-2019, ds-2024-30 or trollhattan-tuti."},
        {"profile.<parameter>", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "Override one parameter of the default profile: min_age, max_age, limit_hours, "
         "protective_assessment_hours, late_referral_days, first_time (true/false), adult_age, "
         "criminal_responsibility_age, at_risk_percent, version. Raise version with any override, so that "
         "decisions under the changed rules can be told apart."},
        {"district.<name>.profile", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "The profile of one district (a referral's district field, matched without regard to case). A district "
         "on the default profile's name starts from the default profile with its profile.* overrides; on another "
         "profile, from that built-in profile."},
        {"district.<name>.<parameter>", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "Override one parameter (as profile.<parameter>) for that district only."},
        {"feedback.level", CT_ENUM, OFF(feedback_level), 0, "conversation", CF_RELOADABLE, 0, 0, feedback_levels,
         "What the police are told: statutory (RECEIVED and ASSESSED only, SoL 14 kap. 1 b \\(sc) or "
         "conversation (every status, so that they can take part in the meeting)."},
        {"feedback.always", CT_BOOL, OFF(feedback_always), 0, "false", CF_RELOADABLE, 0, 0, NULL,
         "Send feedback even when the referral did not ask for it."},
        {"batch.max_messages", CT_UINT, OFF(batch_max_messages), 0, "500", CF_RELOADABLE, 1, 100000, NULL,
         "The most messages decided and stored in one PostgreSQL transaction."},
        {"batch.max_wait_ms", CT_UINT, OFF(batch_max_wait_ms), 0, "20", CF_RELOADABLE, 0, 60000, NULL,
         "How long a batch waits for more messages before it is stored."},
        {"batch.connections", CT_UINT, OFF(batch_connections), 0, "2", 0, 1, 16, NULL,
         "PostgreSQL connections that store a batch in parallel, one transaction each, the batch split by "
         "partition (partition modulo connections), so that the database can use more than one core."},
        {"limits.max_message_bytes", CT_SIZE, OFF(max_message_bytes), 0, "1048576", CF_RELOADABLE, 1024,
         256 * 1024 * 1024, NULL, "Larger input messages are dead-lettered without being decoded (K, M, G suffixes "
         "allowed)."},
        {"relay.enabled", CT_BOOL, OFF(relay_enabled), 0, "true", 0, 0, 0, NULL,
         "Run the outbox relay in this instance. One relay is active at a time across instances (an advisory "
         "lock); the others stand by."},
        {"relay.batch", CT_UINT, OFF(relay_batch), 0, "1000", CF_RELOADABLE, 1, 100000, NULL,
         "The most outbox rows the relay reads at once."},
        {"relay.poll_ms", CT_UINT, OFF(relay_poll_ms), 0, "500", CF_RELOADABLE, 1, 3600000, NULL,
         "How often the relay looks for unsent rows when not woken by a notification."},
        {"deadline_watch.interval_s", CT_UINT, OFF(deadline_watch_interval_s), 0, "30", CF_RELOADABLE, 1, 86400,
         NULL, "How often the deadline watch looks for cases at risk, missed deadlines and overdue protective "
         "assessments."},
        {"retention.interval_s", CT_UINT, OFF(retention_interval_s), 0, "3600", CF_RELOADABLE, 1, 604800, NULL,
         "How often the retention purge runs."},
        {"retention.closed_case_days", CT_UINT, OFF(retention_closed_days), 0, "1825", CF_RELOADABLE, 1, 36500,
         NULL, "Days after a case closed when its personal data are purged; five years by default (SoL 12 kap. "
         "1-2 \\(sc\\(sc, gallring of social services files)."},
        {"retention.not_eligible_days", CT_UINT, OFF(retention_not_eligible_days), 0, "180", CF_RELOADABLE, 1,
         36500, NULL, "Days after which the personal data of NOT_ELIGIBLE referrals are purged."},
        {"event.source", CT_STRING, OFF(event_source), 0, "urn:allvarsd", CF_RELOADABLE | CF_NONEMPTY, 0, 0, NULL,
         "The CloudEvents ce_source of every published event, e.g. urn:allvarsd:goteborg."},
        {"metrics.listen", CT_STRING, OFF(metrics_listen), 0, "", 0, 0, 0, NULL,
         "Serve Prometheus metrics at http://ADDRESS:PORT/metrics, e.g. 127.0.0.1:9187 or [::1]:9187 (numeric "
         "addresses only). Empty (the default): no endpoint. Only loopback addresses are accepted unless "
         "metrics.allow_remote is true; put a TLS-terminating proxy in front for remote scrapes."},
        {"metrics.allow_remote", CT_BOOL, OFF(metrics_allow_remote), 0, "false", 0, 0, 0, NULL,
         "Accept a metrics.listen address other than loopback. The figures hold no personal data, but they "
         "tell the volume of referrals."},
        {"log.target", CT_ENUM, OFF(log_target), 0, "auto", CF_RELOADABLE | CF_ENUM_STRING, 0, 0, log_targets,
         "auto (journald when stderr is connected to it, else stderr), journal or stderr."},
        {"log.level", CT_ENUM, OFF(log_level), 0, "info", CF_RELOADABLE | CF_ENUM_STRING, 0, 0, log_levels,
         "The least important messages logged: debug, info, notice, warning or err. At notice and above, "
         "single decisions are not logged."},
        {"clock.file", CT_STRING, OFF(clock_file), 0, "", 0, 0, 0, NULL,
         "Tests only: read the current time (RFC 3339) from this file instead of the system clock."},
};

#define N_KEYS (sizeof config_keys / sizeof config_keys[0])

/* librdkafka properties the daemon sets itself (consumer.c, relay.c): what
 * effectively-once rests on. Refused rather than silently overridden. */
static const char *const kafka_fixed[] = {
        "enable.auto.commit", "auto.commit.enable", "enable.auto.offset.store", "auto.offset.reset",
        "partition.assignment.strategy", "enable.partition.eof", "enable.idempotence", "acks",
        "request.required.acks", "log.queue", NULL,
};

/* ---- small helpers ---- */

static void *field(config *c, size_t off) {
        return (char *)c + off;
}

static const void *cfield(const config *c, size_t off) {
        return (const char *)c + off;
}

static const config_key *config_key_find(const char *name) {
        for (size_t i = 0; i < N_KEYS; i++)
                if (config_keys[i].type != CT_PATTERN && strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
}

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

static bool key_char_valid(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
               ch == '_' || ch == '-' || ch >= 0x80;
}

/* Case folding for district names: ASCII, and the Latin-1 letters in UTF-8
 * (C3 80-9E but not C3 97, the multiplication sign), which covers Å, Ä, Ö. */
static void fold_case(char *s) {
        for (unsigned char *p = (unsigned char *)s; *p; p++) {
                if (*p >= 'A' && *p <= 'Z')
                        *p = (unsigned char)(*p + 32);
                else if (*p == 0xc3 && p[1] >= 0x80 && p[1] <= 0x9e && p[1] != 0x97) {
                        p[1] = (unsigned char)(p[1] + 0x20);
                        p++;
                }
        }
}

static bool strv_contains(const char *const *v, const char *s) {
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

/* Read a regular file, at most CONFIG_FILE_MAX bytes; NUL-terminated (the
 * content may hold NULs itself: *ret_len is the true length). O_NONBLOCK and
 * the S_ISREG check keep a FIFO or device from blocking the daemon. */
static int read_regular_file(const char *path, char **ret, size_t *ret_len) {
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

/* ---- the parser's state ---- */

typedef struct pending {
        char *district;                 /* NULL: profile.* */
        char *key;                      /* "profile" for district.<d>.profile, else the parameter */
        char *value;
        unsigned line;
} pending;

typedef struct parser {
        config *c;
        const char *name;
        char *err;
        size_t err_size;
        unsigned line;
        char *profile_name;
        pending *pend;
        size_t n_pend;
        rd_kafka_conf_t *kconf;         /* to check kafka.* keys and values as the daemon will */
} parser;

static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *p, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (p->err && p->err_size > 0) {
                if (p->line > 0)
                        snprintf(p->err, p->err_size, "%s:%u: %s", p->name, p->line, msg);
                else
                        snprintf(p->err, p->err_size, "%s: %s", p->name, msg);
        }
        return -EINVAL;
}

/* "@file:PATH" and "@credential:NAME" are replaced by what they point to,
 * trailing newline stripped. Anything else is taken as written. */
static int resolve_value(parser *p, const char *key, const char *value, char **ret, size_t *ret_len) {
        char path[PATH_MAX];
        const char *what;
        if (strncmp(value, "@file:", 6) == 0) {
                what = value + 6;
                if (!*what)
                        return fail(p, "%s: @file: needs a path", key);
                if (strlen(what) >= sizeof path)
                        return fail(p, "%s: path too long", key);
                strcpy(path, what);
        } else if (strncmp(value, "@credential:", 12) == 0) {
                what = value + 12;
                /* systemd.exec(5) "Credentials": plain names inside $CREDENTIALS_DIRECTORY. */
                if (!*what || strchr(what, '/') || strcmp(what, ".") == 0 || strcmp(what, "..") == 0)
                        return fail(p, "%s: \"%s\" is not a credential name", key, what);
                const char *dir = getenv("CREDENTIALS_DIRECTORY");
                if (!dir || !*dir)
                        return fail(p,
                                    "%s: @credential:%s, but $CREDENTIALS_DIRECTORY is not set "
                                    "(LoadCredential=%s:... in the unit)",
                                    key, what, what);
                if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, what) >= sizeof path)
                        return fail(p, "%s: path too long", key);
        } else {
                *ret = strdup(value);
                if (!*ret)
                        return -ENOMEM;
                *ret_len = strlen(value);
                return 0;
        }
        char *buf = NULL;
        size_t len = 0;
        int r = read_regular_file(path, &buf, &len);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail(p, "%s: cannot read %s: %s", key, path,
                            r == -EBADFD ? "not a regular file" : strerror(-r));
        if (len > 0 && buf[len - 1] == '\n')
                buf[--len] = 0;
        if (len > 0 && buf[len - 1] == '\r')
                buf[--len] = 0;
        *ret = buf;
        *ret_len = len;
        return 0;
}

static int parse_uint64(const char *s, uint64_t *ret) {
        uint64_t v = 0;
        if (!*s)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = {"true", "yes", "on", "1", NULL}, *const no[] = {"false", "no", "off", "0", NULL};
        for (size_t i = 0; yes[i]; i++) {
                if (strcasecmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static bool topic_name_valid(const char *s) {
        size_t n = strlen(s);
        /* Kafka's Topic.validate: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
        if (n == 0 || n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '.' || *s == '_' || *s == '-'))
                        return false;
        return true;
}

static int replace_string(char **slot, const char *value) {
        char *s = NULL;
        if (value && *value) {
                s = strdup(value);
                if (!s)
                        return -ENOMEM;
        }
        free(*slot);
        *slot = s;
        return 0;
}

/* Set one table key from its (resolved) value. */
static int key_set(parser *p, const config_key *k, const char *value, size_t len) {
        config *c = p->c;
        uint64_t v;
        int r;
        if (k->type != CT_SECRET || !(k->flags & CF_BYTES)) {
                if (memchr(value, 0, len))
                        return fail(p, "%s: the value contains a NUL byte", k->name);
        }
        switch (k->type) {
        case CT_STRING:
                if ((k->flags & CF_NONEMPTY) && !*value)
                        return fail(p, "%s: must not be empty", k->name);
                if ((k->flags & CF_TOPIC) && !topic_name_valid(value))
                        return fail(p, "%s: \"%s\" is not a Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)",
                                    k->name, value);
                return replace_string(field(c, k->offset), value);
        case CT_SECRET:
                if (k->flags & CF_BYTES) {
                        uint8_t *b = malloc(len + 1);
                        if (!b)
                                return -ENOMEM;
                        memcpy(b, value, len);
                        b[len] = 0;
                        uint8_t **slot = field(c, k->offset);
                        if (*slot)
                                explicit_bzero(*slot, *(size_t *)field(c, k->offset_len));
                        free(*slot);
                        *slot = b;
                        *(size_t *)field(c, k->offset_len) = len;
                        return 0;
                }
                char **slot = field(c, k->offset);
                if (*slot)
                        explicit_bzero(*slot, strlen(*slot));
                return replace_string(slot, value);
        case CT_BOOL:
                if (parse_bool(value, field(c, k->offset)) < 0)
                        return fail(p, "%s: \"%s\" is not a boolean (true or false)", k->name, value);
                return 0;
        case CT_UINT:
                r = parse_uint64(value, &v);
                if (r < 0 || v < k->min || v > k->max)
                        return fail(p, "%s: \"%s\" is not a whole number from %llu to %llu", k->name, value,
                                    (unsigned long long)k->min, (unsigned long long)k->max);
                *(unsigned *)field(c, k->offset) = (unsigned)v;
                return 0;
        case CT_SIZE: {
                char digits[32];
                size_t n = strlen(value);
                uint64_t mult = 1;
                if (n > 0 && strchr("KMG", value[n - 1])) {
                        mult = value[n - 1] == 'K' ? 1024u : value[n - 1] == 'M' ? 1024u * 1024 : 1024u * 1024 * 1024;
                        n--;
                }
                if (n >= sizeof digits)
                        r = -ERANGE;
                else {
                        memcpy(digits, value, n);
                        digits[n] = 0;
                        r = parse_uint64(digits, &v);
                }
                if (r < 0 || v > k->max / mult || v * mult < k->min)
                        return fail(p, "%s: \"%s\" is not a size from %llu to %llu bytes", k->name, value,
                                    (unsigned long long)k->min, (unsigned long long)k->max);
                *(size_t *)field(c, k->offset) = (size_t)(v * mult);
                return 0;
        }
        case CT_ENUM:
                for (size_t i = 0; k->values[i]; i++) {
                        if (strcmp(k->values[i], value) != 0)
                                continue;
                        if (k->flags & CF_ENUM_STRING)
                                return replace_string(field(c, k->offset), value);
                        *(int *)field(c, k->offset) = (int)i;
                        return 0;
                }
                {
                        char list[256] = "";
                        for (size_t i = 0; k->values[i]; i++)
                                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                                         k->values[i]);
                        return fail(p, "%s: \"%s\" is not one of: %s", k->name, value, list);
                }
        case CT_PROFILE:
                if (!profiles_find(value)) {
                        char list[256] = "";
                        for (size_t i = 0; i < profiles_builtin_count(); i++)
                                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                                         profiles_builtin(i)->name);
                        return fail(p, "%s: unknown profile \"%s\" (known: %s)", k->name, value, list);
                }
                return replace_string(&p->profile_name, value);
        case CT_PATTERN: break;
        }
        return fail(p, "%s: cannot be set", k->name);
}

static int kafka_set(parser *p, const char *key, const char *value, size_t len) {
        config *c = p->c;
        char e[256];
        if (!*key)
                return fail(p, "kafka.: a librdkafka property name must follow");
        if (memchr(value, 0, len))
                return fail(p, "kafka.%s: the value contains a NUL byte", key);
        if (strv_contains(kafka_fixed, key))
                return fail(p, "kafka.%s: set by allvarsd itself (effectively-once rests on it); remove this line", key);
        if (!p->kconf) {
                p->kconf = rd_kafka_conf_new();
                if (!p->kconf)
                        return -ENOMEM;
        }
        /* The daemon applies these to its own consumer and producer: refuse
         * here what librdkafka would refuse there, with file and line. */
        if (rd_kafka_conf_set(p->kconf, key, value, e, sizeof e) != RD_KAFKA_CONF_OK)
                return fail(p, "kafka.%s: %s", key, e);
        for (size_t i = 0; i < c->n_kafka; i++)
                if (strcmp(c->kafka[i].key, key) == 0) {
                        char *v = strdup(value);
                        if (!v)
                                return -ENOMEM;
                        explicit_bzero(c->kafka[i].value, strlen(c->kafka[i].value));
                        free(c->kafka[i].value);
                        c->kafka[i].value = v;
                        return 0;
                }
        config_kv *kv = realloc(c->kafka, (c->n_kafka + 1) * sizeof *kv);
        if (!kv)
                return -ENOMEM;
        c->kafka = kv;
        kv[c->n_kafka].key = strdup(key);
        kv[c->n_kafka].value = strdup(value);
        if (!kv[c->n_kafka].key || !kv[c->n_kafka].value) {
                free(kv[c->n_kafka].key);
                free(kv[c->n_kafka].value);
                return -ENOMEM;
        }
        c->n_kafka++;
        return 0;
}

/* profile.<param>, district.<d>.profile and district.<d>.<param> are applied
 * after the whole file is read, so that their order in it does not matter
 * (profile.name after profile.min_age still means what it says). */
static int pending_add(parser *p, const char *district, const char *key, const char *value, size_t len) {
        if (memchr(value, 0, len))
                return fail(p, "%s: the value contains a NUL byte", key);
        pending *n = realloc(p->pend, (p->n_pend + 1) * sizeof *n);
        if (!n)
                return -ENOMEM;
        p->pend = n;
        pending *e = &n[p->n_pend];
        *e = (pending){.line = p->line};
        e->district = district ? strdup(district) : NULL;
        e->key = strdup(key);
        e->value = strdup(value);
        if ((district && !e->district) || !e->key || !e->value) {
                free(e->district);
                free(e->key);
                free(e->value);
                return -ENOMEM;
        }
        p->n_pend++;
        return 0;
}

static int assign(parser *p, const char *key, const char *raw) {
        const config_key *k = config_key_find(key);
        if (k && (k->flags & CF_REFERENCE_ONLY) && strncmp(raw, "@file:", 6) != 0 &&
            strncmp(raw, "@credential:", 12) != 0)
                return fail(p, "%s: give it as @file:PATH or @credential:NAME, not in the configuration file", key);

        char *value = NULL;
        size_t len = 0;
        int r = resolve_value(p, key, raw, &value, &len);
        if (r < 0)
                return r;

        if (k)
                r = key_set(p, k, value, len);
        else if (strncmp(key, "kafka.", 6) == 0)
                r = kafka_set(p, key + 6, value, len);
        else if (strncmp(key, "profile.", 8) == 0)
                r = pending_add(p, NULL, key + 8, value, len);
        else if (strncmp(key, "district.", 9) == 0) {
                const char *d = key + 9, *dot = strchr(d, '.');
                if (!dot || dot == d || !dot[1] || strchr(dot + 1, '.'))
                        r = fail(p, "%s: expected district.<name>.profile or district.<name>.<parameter>", key);
                else {
                        char *name = strndup(d, (size_t)(dot - d));
                        if (!name)
                                r = -ENOMEM;
                        else {
                                fold_case(name);
                                r = pending_add(p, name, dot + 1, value, len);
                                free(name);
                        }
                }
        } else
                r = fail(p, "unknown key \"%s\"", key);
        explicit_bzero(value, len);
        free(value);
        return r;
}

/* One line: blank, "# comment", or "key = value" (value trimmed, or in double
 * quotes with \" \\ \n \t escapes). */
static int parse_line(parser *p, char *s) {
        while (is_blank(*s))
                s++;
        if (!*s || *s == '#')
                return 0;
        char *eq = strchr(s, '=');
        if (!eq)
                return fail(p, "expected \"key = value\"");
        char *kend = eq;
        while (kend > s && is_blank(kend[-1]))
                kend--;
        *kend = 0;
        if (!*s)
                return fail(p, "a key must come before \"=\"");
        for (char *q = s; *q; q++)
                if (!key_char_valid((unsigned char)*q))
                        return fail(p, "\"%s\" is not a key (letters, digits, '.', '_', '-')", s);

        char *v = eq + 1;
        while (is_blank(*v))
                v++;
        char *vend = v + strlen(v);
        while (vend > v && is_blank(vend[-1]))
                vend--;
        *vend = 0;
        if (*v == '"') {
                char *out = v, *in = v + 1;
                for (;; in++) {
                        if (!*in)
                                return fail(p, "%s: the closing quote is missing", s);
                        if (*in == '"')
                                break;
                        if (*in == '\\') {
                                in++;
                                switch (*in) {
                                case '"': *out++ = '"'; break;
                                case '\\': *out++ = '\\'; break;
                                case 'n': *out++ = '\n'; break;
                                case 't': *out++ = '\t'; break;
                                default: return fail(p, "%s: unknown escape in quotes (\\\" \\\\ \\n \\t)", s);
                                }
                                continue;
                        }
                        *out++ = *in;
                }
                if (in[1])
                        return fail(p, "%s: text after the closing quote", s);
                *out = 0;
        }
        return assign(p, s, v);
}

static int apply_params(parser *p, profile *prof, const char *district, const char *what) {
        for (size_t i = 0; i < p->n_pend; i++) {
                pending *e = &p->pend[i];
                if ((district == NULL) != (e->district == NULL) || (district && strcmp(district, e->district) != 0))
                        continue;
                if (district && strcmp(e->key, "profile") == 0)
                        continue;
                p->line = e->line;
                int r = profile_set(prof, e->key, e->value);
                if (r == -ENOENT) {
                        char list[512] = "";
                        for (size_t j = 0; profile_param_names[j]; j++)
                                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "",
                                         profile_param_names[j]);
                        return fail(p, "%s: unknown profile parameter \"%s\" (known: %s)", what, e->key, list);
                }
                if (r < 0)
                        return fail(p, "%s.%s: \"%s\" is not a valid value", what, e->key, e->value);
        }
        p->line = 0;
        if (prof->min_age > prof->max_age)
                return fail(p, "%s: min_age %d is above max_age %d", what, prof->min_age, prof->max_age);
        return 0;
}

static int build_profiles(parser *p) {
        config *c = p->c;
        const profile *base = profiles_find(p->profile_name ? p->profile_name : PROFILE_DEFAULT);
        if (!base)
                return fail(p, "profile.name: unknown profile");
        c->profile = *base;
        int r = apply_params(p, &c->profile, NULL, "profile");
        if (r < 0)
                return r;

        for (size_t i = 0; i < p->n_pend; i++) {
                const char *d = p->pend[i].district;
                bool seen = false;
                if (!d)
                        continue;
                for (size_t j = 0; j < c->n_districts && !seen; j++)
                        seen = strcmp(c->districts[j].district, d) == 0;
                if (seen)
                        continue;

                /* The last district.<d>.profile wins, as for every other key. */
                const char *name = NULL;
                unsigned line = 0;
                for (size_t j = 0; j < p->n_pend; j++)
                        if (p->pend[j].district && strcmp(p->pend[j].district, d) == 0 &&
                            strcmp(p->pend[j].key, "profile") == 0) {
                                name = p->pend[j].value;
                                line = p->pend[j].line;
                        }
                district_profile *n = realloc(c->districts, (c->n_districts + 1) * sizeof *n);
                if (!n)
                        return -ENOMEM;
                c->districts = n;
                district_profile *dp = &n[c->n_districts];
                *dp = (district_profile){.district = strdup(d)};
                if (!dp->district)
                        return -ENOMEM;
                c->n_districts++;
                if (!name || strcmp(name, c->profile.name) == 0)
                        dp->profile = c->profile;
                else if ((base = profiles_find(name)))
                        dp->profile = *base;
                else {
                        p->line = line;
                        return fail(p, "district.%s.profile: unknown profile \"%s\"", d, name);
                }
                char what[PROFILE_NAME_MAX + 128];
                snprintf(what, sizeof what, "district.%s", d);
                r = apply_params(p, &dp->profile, d, what);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void parser_done(parser *p) {
        for (size_t i = 0; i < p->n_pend; i++) {
                free(p->pend[i].district);
                free(p->pend[i].key);
                free(p->pend[i].value);
        }
        free(p->pend);
        free(p->profile_name);
        if (p->kconf)
                rd_kafka_conf_destroy(p->kconf);
}

int config_parse_string(const char *name, const char *text, config **ret, char *err, size_t err_size) {
        if (err && err_size > 0)
                err[0] = 0;
        config *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        atomic_init(&c->n_ref, 1);
        parser p = {.c = c, .name = name ? name : "(string)", .err = err, .err_size = err_size};
        int r = 0;
        c->path = strdup(p.name);
        char *copy = strdup(text ? text : "");
        if (!c->path || !copy) {
                r = -ENOMEM;
                goto out;
        }

        for (size_t i = 0; i < N_KEYS && r >= 0; i++)
                if (config_keys[i].def)
                        r = key_set(&p, &config_keys[i], config_keys[i].def, strlen(config_keys[i].def));

        for (char *s = copy, *next; s && r >= 0; s = next) {
                next = strchr(s, '\n');
                if (next)
                        *next++ = 0;
                p.line++;
                r = parse_line(&p, s);
        }
        if (r < 0)
                goto out;
        p.line = 0;

        for (size_t i = 0; i < N_KEYS && r >= 0; i++) {
                const config_key *k = &config_keys[i];
                if (!(k->flags & CF_REQUIRED))
                        continue;
                bool set = k->flags & CF_BYTES ? *(uint8_t *const *)cfield(c, k->offset) != NULL
                                               : *(char *const *)cfield(c, k->offset) != NULL;
                if (!set)
                        r = fail(&p, "%s is required", k->name);
        }
        if (r >= 0 && c->pepper_len < 32)
                r = fail(&p, "pepper: %zu bytes; at least 32 are needed (e.g. openssl rand -hex 32)", c->pepper_len);
        if (r >= 0)
                r = build_profiles(&p);
out:
        if (r == -ENOMEM && err && err_size > 0 && !err[0])
                snprintf(err, err_size, "%s: out of memory", p.name);
        free(copy);
        parser_done(&p);
        if (r < 0) {
                config_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

int config_load(const char *path, config **ret, char *err, size_t err_size) {
        char *text = NULL;
        size_t len = 0;
        if (!path)
                path = CONFIG_DEFAULT_PATH;
        int r = read_regular_file(path, &text, &len);
        if (r < 0) {
                snprintf(err, err_size, "%s: cannot read: %s", path,
                         r == -EBADFD ? "not a regular file" : strerror(-r));
                return r;
        }
        if (memchr(text, 0, len)) {
                free(text);
                snprintf(err, err_size, "%s: contains a NUL byte: not a configuration file", path);
                return -EINVAL;
        }
        r = config_parse_string(path, text, ret, err, err_size);
        free(text);
        return r;
}

config *config_ref(config *c) {
        if (c)
                atomic_fetch_add_explicit(&c->n_ref, 1, memory_order_relaxed);
        return c;
}

void config_free(config *c) {
        if (!c)
                return;
        /* acq_rel: the last one out sees every other thread's reads as done. */
        if (atomic_fetch_sub_explicit(&c->n_ref, 1, memory_order_acq_rel) > 1)
                return;
        for (size_t i = 0; i < N_KEYS; i++) {
                const config_key *k = &config_keys[i];
                bool owns_string = k->type == CT_STRING || (k->type == CT_ENUM && (k->flags & CF_ENUM_STRING)) ||
                                   (k->type == CT_SECRET && !(k->flags & CF_BYTES));
                if (owns_string) {
                        char **s = field(c, k->offset);
                        if (*s && k->type == CT_SECRET)
                                explicit_bzero(*s, strlen(*s));
                        free(*s);
                } else if (k->type == CT_SECRET) {
                        uint8_t **b = field(c, k->offset);
                        if (*b)
                                explicit_bzero(*b, *(size_t *)field(c, k->offset_len));
                        free(*b);
                }
        }
        for (size_t i = 0; i < c->n_kafka; i++) {
                if (c->kafka[i].value)
                        explicit_bzero(c->kafka[i].value, strlen(c->kafka[i].value));
                free(c->kafka[i].key);
                free(c->kafka[i].value);
        }
        free(c->kafka);
        for (size_t i = 0; i < c->n_districts; i++)
                free(c->districts[i].district);
        free(c->districts);
        free(c->path);
        free(c);
}

const profile *config_profile_for(const config *c, const char *district) {
        if (!district || !*district)
                return &c->profile;
        char folded[256];
        if (strlen(district) >= sizeof folded)
                return &c->profile;
        strcpy(folded, district);
        fold_case(folded);
        for (size_t i = 0; i < c->n_districts; i++)
                if (strcmp(c->districts[i].district, folded) == 0)
                        return &c->districts[i].profile;
        return &c->profile;
}

/* ---- comparison (SIGHUP) ---- */

static bool str_eq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool key_equal(const config_key *k, const config *a, const config *b) {
        switch (k->type) {
        case CT_STRING: return str_eq(*(char *const *)cfield(a, k->offset), *(char *const *)cfield(b, k->offset));
        case CT_BOOL: return *(const bool *)cfield(a, k->offset) == *(const bool *)cfield(b, k->offset);
        case CT_UINT: return *(const unsigned *)cfield(a, k->offset) == *(const unsigned *)cfield(b, k->offset);
        case CT_SIZE: return *(const size_t *)cfield(a, k->offset) == *(const size_t *)cfield(b, k->offset);
        case CT_ENUM:
                if (k->flags & CF_ENUM_STRING)
                        return str_eq(*(char *const *)cfield(a, k->offset), *(char *const *)cfield(b, k->offset));
                return *(const int *)cfield(a, k->offset) == *(const int *)cfield(b, k->offset);
        case CT_SECRET:
                if (k->flags & CF_BYTES) {
                        size_t la = *(const size_t *)cfield(a, k->offset_len), lb = *(const size_t *)cfield(b, k->offset_len);
                        const uint8_t *pa = *(uint8_t *const *)cfield(a, k->offset), *pb = *(uint8_t *const *)cfield(b, k->offset);
                        return la == lb && (la == 0 || (pa && pb && memcmp(pa, pb, la) == 0));
                }
                return str_eq(*(char *const *)cfield(a, k->offset), *(char *const *)cfield(b, k->offset));
        case CT_PROFILE:
        case CT_PATTERN: return true;
        }
        return true;
}

static const char *kafka_get(const config *c, const char *key) {
        for (size_t i = 0; i < c->n_kafka; i++)
                if (strcmp(c->kafka[i].key, key) == 0)
                        return c->kafka[i].value;
        return NULL;
}

static void list_add(char *buf, size_t size, const char *prefix, const char *name) {
        size_t n = strlen(buf);
        if (n + 1 >= size)
                return;
        snprintf(buf + n, size - n, "%s%s%s", n ? ", " : "", prefix, name);
}

void config_restart_needed(const config *old, const config *new, char *buf, size_t size) {
        if (!buf || size == 0)
                return;
        buf[0] = 0;
        for (size_t i = 0; i < N_KEYS; i++) {
                const config_key *k = &config_keys[i];
                if (!(k->flags & CF_RELOADABLE) && k->type != CT_PATTERN && !key_equal(k, old, new))
                        list_add(buf, size, "", k->name);
        }
        /* kafka.*: the consumer and producer are built once; any change is a restart. */
        for (size_t i = 0; i < old->n_kafka; i++)
                if (!str_eq(old->kafka[i].value, kafka_get(new, old->kafka[i].key)))
                        list_add(buf, size, "kafka.", old->kafka[i].key);
        for (size_t i = 0; i < new->n_kafka; i++)
                if (!kafka_get(old, new->kafka[i].key))
                        list_add(buf, size, "kafka.", new->kafka[i].key);
}

/* ---- output ---- */

/* The conninfo with its password masked, as libpq would read it (libpq's
 * conninfo_parse and conninfo_uri_parse_options): "password = 'a\\'b'" in
 * keyword/value form, "postgresql://user:secret@host/db?password=..." as a
 * URI. What cannot be read cleanly is masked as a whole. Returns a string to
 * free, or NULL. */
/* libpq percent-decodes the keywords of URI parameters too. */
static bool uri_param_is_password(const char *s, size_t n) {
        char kw[16];
        size_t j = 0;
        for (size_t i = 0; i < n && s[i] != '=' && j < sizeof kw - 1; i++) {
                if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) && isxdigit((unsigned char)s[i + 2])) {
                        char hex[3] = {s[i + 1], s[i + 2], 0};
                        kw[j++] = (char)strtol(hex, NULL, 16);
                        i += 2;
                } else
                        kw[j++] = s[i];
        }
        kw[j] = 0;
        return strcmp(kw, "password") == 0;
}

static char *conninfo_mask_once(const char *s) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        bool ok = true;
        if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0) {
                const char *auth = strstr(s, "://") + 3;
                /* libpq: user info runs to an '@' met before any '/'. */
                const char *at = strpbrk(auth, "@/");
                const char *colon = at && *at == '@' ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
                if (colon) {
                        fwrite(s, 1, (size_t)(colon - s) + 1, f);
                        fputs("(secret)", f);
                        s = at;
                }
                const char *q = strchr(s, '?');
                if (q) {
                        fwrite(s, 1, (size_t)(q - s), f);
                        s = q;
                        while (*s) {
                                /* s is at '?' or '&': one parameter up to the next '&' */
                                size_t n = strcspn(s + 1, "&");
                                fputc(*s, f);
                                if (uri_param_is_password(s + 1, n))
                                        fputs("password=(secret)", f);
                                else
                                        fwrite(s + 1, 1, n, f);
                                s += 1 + n;
                        }
                } else
                        fputs(s, f);
        } else {
                while (*s && ok) {
                        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
                                fputc(*s++, f);
                        if (!*s)
                                break;
                        const char *kw = s;
                        while (*s && *s != '=' && !strchr(" \t\n\r\f\v", *s))
                                s++;
                        size_t kwlen = (size_t)(s - kw);
                        const char *e = s;
                        while (*e && strchr(" \t\n\r\f\v", *e))
                                e++;
                        if (*e != '=' || kwlen == 0) {
                                ok = false;
                                break;
                        }
                        for (e++; *e && strchr(" \t\n\r\f\v", *e);)
                                e++;
                        const char *v = e;
                        if (*v == '\'') {
                                for (v++; *v && *v != '\''; v++)
                                        if (*v == '\\' && v[1])
                                                v++;
                                if (!*v) {
                                        ok = false;
                                        break;
                                }
                                v++;
                        } else
                                for (; *v && !strchr(" \t\n\r\f\v", *v); v++)
                                        if (*v == '\\' && v[1])
                                                v++;
                        fwrite(kw, 1, (size_t)(e - kw), f);
                        if (kwlen == 8 && strncmp(kw, "password", 8) == 0)
                                fputs("(secret)", f);
                        else
                                fwrite(e, 1, (size_t)(v - e), f);
                        /* libpq starts the next keyword right after a closing quote: say so with a blank. */
                        if (*v && !strchr(" \t\n\r\f\v", *v))
                                fputc(' ', f);
                        s = v;
                }
        }
        if (fclose(f) != 0 || !ok) {
                free(out);
                return ok ? NULL : strdup("(secret: not a connection string libpq can read)");
        }
        return out;
}

/* Masked once more, the result must not change; when it does, the string is
 * one where our reading and libpq's might differ: mask it as a whole. */
static char *conninfo_masked(const char *s) {
        static const char whole[] = "(secret: not a connection string libpq can read)";
        char *a = conninfo_mask_once(s);
        char *b = a ? conninfo_mask_once(a) : NULL;
        if (a && b && strcmp(a, b) != 0) {
                free(a);
                a = strdup(whole);
        }
        free(b);
        return a;
}

static void dump_value(FILE *f, const char *s) {
        bool quote = !s || !*s || is_blank(*s) || is_blank(s[strlen(s) - 1]) || strpbrk(s, "\"\\\n\t") != NULL;
        if (!quote) {
                fputs(s, f);
                return;
        }
        fputc('"', f);
        for (; s && *s; s++) {
                if (*s == '"' || *s == '\\')
                        fprintf(f, "\\%c", *s);
                else if (*s == '\n')
                        fputs("\\n", f);
                else if (*s == '\t')
                        fputs("\\t", f);
                else
                        fputc(*s, f);
        }
        fputc('"', f);
}

/* librdkafka properties that hold secrets (CONFIGURATION.md). */
static bool kafka_key_secret(const char *key) {
        return strstr(key, "password") || strstr(key, "secret") || strstr(key, "key.pem") ||
               strstr(key, "oauthbearer.config") || strstr(key, "jaas");
}

void config_dump(const config *c, FILE *f) {
        char buf[1024];
        for (size_t i = 0; i < N_KEYS; i++) {
                const config_key *k = &config_keys[i];
                const void *v = cfield(c, k->offset);
                if (k->type == CT_PATTERN) {
                        if (strcmp(k->name, "kafka.<property>") == 0)
                                for (size_t j = 0; j < c->n_kafka; j++) {
                                        fprintf(f, "kafka.%s = ", c->kafka[j].key);
                                        if (kafka_key_secret(c->kafka[j].key))
                                                fputs("(secret)", f);
                                        else
                                                dump_value(f, c->kafka[j].value);
                                        fputc('\n', f);
                                }
                        else if (strcmp(k->name, "profile.<parameter>") == 0) {
                                profile_describe(&c->profile, buf, sizeof buf);
                                fprintf(f, "# effective default profile: %s\n", buf);
                        } else if (strcmp(k->name, "district.<name>.profile") == 0)
                                for (size_t j = 0; j < c->n_districts; j++) {
                                        fprintf(f, "district.%s.profile = %s\n", c->districts[j].district,
                                                c->districts[j].profile.name);
                                        profile_describe(&c->districts[j].profile, buf, sizeof buf);
                                        fprintf(f, "# effective profile of district %s: %s\n",
                                                c->districts[j].district, buf);
                                }
                        continue;
                }
                fprintf(f, "%s = ", k->name);
                switch (k->type) {
                case CT_STRING:
                        if (strcmp(k->name, "database.conninfo") == 0 && *(char *const *)v) {
                                char *m = conninfo_masked(*(char *const *)v);
                                dump_value(f, m ? m : "(secret)");
                                free(m);
                        } else
                                dump_value(f, *(char *const *)v);
                        break;
                case CT_SECRET: {
                        bool set = *(const void *const *)v != NULL;
                        fputs(set ? "(secret)" : "\"\"", f);
                        break;
                }
                case CT_BOOL: fputs(*(const bool *)v ? "true" : "false", f); break;
                case CT_UINT: fprintf(f, "%u", *(const unsigned *)v); break;
                case CT_SIZE: fprintf(f, "%zu", *(const size_t *)v); break;
                case CT_ENUM:
                        if (k->flags & CF_ENUM_STRING)
                                dump_value(f, *(char *const *)v);
                        else
                                fputs(k->values[*(const int *)v], f);
                        break;
                case CT_PROFILE: fputs(c->profile.name, f); break;
                case CT_PATTERN: break;
                }
                fputc('\n', f);
        }
}

/* roff: a backslash is \e, a hyphen-minus \-, and a line may not start with
 * a control character; <placeholders> are set in italics. */
static void man_text(FILE *f, const char *s, bool at_line_start) {
        if (at_line_start && (*s == '.' || *s == '\''))
                fputs("\\&", f);
        for (; *s; s++) {
                if (*s == '\\' && s[1] == '(') {
                        /* a roff special character written in the doc string, e.g. \(sc */
                        fputc('\\', f);
                        continue;
                }
                if (*s == '\\')
                        fputs("\\e", f);
                else if (*s == '-')
                        fputs("\\-", f);
                else if (*s == '<') {
                        const char *end = strchr(s, '>');
                        if (!end) {
                                fputc('<', f);
                                continue;
                        }
                        fputs("\\fI", f);
                        fwrite(s + 1, 1, (size_t)(end - s - 1), f);
                        fputs("\\fR", f);
                        s = end;
                } else
                        fputc(*s, f);
        }
}

void config_write_man(FILE *f) {
        for (size_t i = 0; i < N_KEYS; i++) {
                const config_key *k = &config_keys[i];
                fputs(".TP\n.B ", f);
                man_text(f, k->name, false);
                fputc('\n', f);
                switch (k->type) {
                case CT_STRING: fputs(k->flags & CF_TOPIC ? "A Kafka topic name" : "A string", f); break;
                case CT_BOOL: fputs("A boolean (true, false, yes, no, on, off, 1, 0)", f); break;
                case CT_UINT:
                        fprintf(f, "A whole number from %llu to %llu", (unsigned long long)k->min,
                                (unsigned long long)k->max);
                        break;
                case CT_SIZE:
                        fprintf(f, "A size in bytes from %llu to %llu", (unsigned long long)k->min,
                                (unsigned long long)k->max);
                        break;
                case CT_ENUM:
                        fputs("One of", f);
                        for (size_t j = 0; k->values[j]; j++)
                                fprintf(f, "%s \\fB%s\\fR", j ? "," : "", k->values[j]);
                        break;
                case CT_SECRET: fputs("A secret, never printed", f); break;
                case CT_PROFILE: fputs("A profile name", f); break;
                case CT_PATTERN: fputs("A family of keys", f); break;
                }
                if (k->flags & CF_REQUIRED)
                        fputs("; required", f);
                if (k->def && *k->def) {
                        fputs("; default \\fB", f);
                        man_text(f, k->def, false);
                        fputs("\\fR", f);
                } else if (k->def)
                        fputs("; empty by default", f);
                fputs((k->flags & CF_RELOADABLE) ? "; reloadable (SIGHUP).\n.br\n" : "; a change needs a restart.\n.br\n",
                      f);
                man_text(f, k->doc, true);
                fputc('\n', f);
        }
}
