/* What the configuration's files share (config.c, config_keys.c,
 * config_secrets.c, config_reload.c, config_dump.c): the table of keys and
 * the helpers around it. Not for use outside daemon/config*.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The one table of keys (config_keys.c), in the order of allvarsd.conf(5). */
extern const config_key config_keys[];
extern const size_t config_n_keys;
/* librdkafka properties the daemon sets itself; refused in the file. */
extern const char *const config_kafka_fixed[];

static inline void *config_field(config *c, size_t off) {
        return (char *)c + off;
}

static inline const void *config_cfield(const config *c, size_t off) {
        return (const char *)c + off;
}

static inline bool config_is_blank(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* Read a regular file, at most CONFIG_FILE_MAX bytes, NUL-terminated; the
 * content may hold NULs itself: *ret_len is the true length. -EBADFD: not a
 * regular file (config_secrets.c). */
int config_read_file(const char *path, char **ret, size_t *ret_len);
/* The file a "@file:PATH" or "@credential:NAME" value reads, into path:
 * 1; 0 for a value given as it is; -EINVAL with one line in err. */
int config_reference_path(const char *key, const char *value, char *path, size_t size, char *err,
                          size_t err_size);
/* A value as written, or for "@file:PATH" and "@credential:NAME" what they
 * point to, trailing newline stripped (config_secrets.c). -EINVAL with one
 * line beginning with the key in err, or -ENOMEM. */
int config_resolve_value(const char *key, const char *value, char **ret, size_t *ret_len, char *err,
                         size_t err_size);
/* The "@file:..." or "@credential:..." that key was given as, or NULL (config.c). */
const char *config_ref_get(const config *c, const char *key);
