/* The one logging call. Structured fields to journald (with a MESSAGE_ID per
 * kind of message), or one readable line to stderr when not under journald.
 * Never pass personal data (identity numbers, names, phone numbers, addresses,
 * narratives) to these functions: ids, codes, counts and times only. */
#pragma once

#include <stdbool.h>
#include <syslog.h>

/* The message catalog. Each kind has a fixed 128-bit MESSAGE_ID (log.c, README). */
typedef enum log_msgid {
        MSGID_NONE = 0,
        MSGID_STARTED,                  /* the daemon is ready */
        MSGID_STOPPING,
        MSGID_RELOADED,                 /* configuration and profile reloaded */
        MSGID_CONFIG,                   /* effective configuration and profile values */
        MSGID_EMBEDDED_KAFKA,           /* the in-process mock cluster: not for production */
        MSGID_DECIDED,                  /* a referral was decided */
        MSGID_DUPLICATE,                /* a referral id seen before */
        MSGID_DEAD_LETTER,              /* a message was dead-lettered */
        MSGID_OUTCOME,                  /* an outcome event was applied to a case */
        MSGID_ASSIGNED,                 /* partitions assigned */
        MSGID_REVOKED,                  /* partitions revoked */
        MSGID_DB_UNAVAILABLE,           /* PostgreSQL unreachable; partitions paused */
        MSGID_DB_RECOVERED,
        MSGID_KAFKA_ERROR,
        MSGID_RELAY,                    /* outbox relay became active or standby */
        MSGID_ALERT,                    /* a deadline alert was raised */
        MSGID_PURGE,                    /* personal data purged under retention */
        MSGID_BATCH_FENCED,             /* a batch lost its offset compare-and-set */
        MSGID_PARTITION_GAP,            /* input gone from Kafka before it was read */
        _MSGID_MAX,
} log_msgid;

typedef enum log_target {
        LOG_TARGET_AUTO,                /* journald when stderr is connected to it, else stderr */
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
} log_target;

void log_setup(log_target target, int max_priority);
int log_get_max_priority(void);
const char *log_msgid_string(log_msgid id);   /* 32 hex digits */
const char *log_msgid_name(log_msgid id);     /* "DECIDED", ... */

/* Log a message with structured fields, sd_journal_send style: each argument
 * after `id` is a printf format of one "FIELD=value", with its arguments,
 * and the list ends with NULL. A "MESSAGE=..." field is required.
 *   log_struct(LOG_INFO, MSGID_DECIDED,
 *              "REFERRAL_ID=%s", rid, "CASE_ID=%s", cid,
 *              "MESSAGE=Referral %s decided: %s", rid, outcome, NULL);
 * Returns 0; errors of the log sink are ignored. */
int log_struct_internal(int priority, log_msgid id, const char *file, int line,
                        const char *func, const char *format, ...) __attribute__((sentinel));
#define log_struct(priority, id, ...) \
        log_struct_internal(priority, id, __FILE__, __LINE__, __func__, __VA_ARGS__)

/* A plain message. Returns -abs(error) when error != 0, so that
 * `return log_error_errno(r, "...: %m")` logs and returns in one step; %m
 * expands to strerror(abs(error)). */
int log_internal(int priority, int error, const char *file, int line, const char *func,
                 const char *format, ...) __attribute__((format(printf, 6, 7)));
#define log_debug(...)   log_internal(LOG_DEBUG, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_info(...)    log_internal(LOG_INFO, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_notice(...)  log_internal(LOG_NOTICE, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning(...) log_internal(LOG_WARNING, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error(...)   log_internal(LOG_ERR, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_error_errno(error, ...)   log_internal(LOG_ERR, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_warning_errno(error, ...) log_internal(LOG_WARNING, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
