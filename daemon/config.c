/* Configuration: the parser of allvarsd.conf ("key = value" lines) and the
 * district profiles it builds, over the table of keys in config_keys.c.
 * Library code: errors go into the caller's buffer, never to a log. */
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <librdkafka/rdkafka.h>

#include "config_internal.h"

/* ---- small helpers ---- */

static const config_key *config_key_find(const char *name) {
        for (size_t i = 0; i < config_n_keys; i++)
                if (config_keys[i].type != CT_PATTERN && strcmp(config_keys[i].name, name) == 0)
                        return &config_keys[i];
        return NULL;
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
        unsigned flags;                 /* CONFIG_* of config_load_flags() */
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
                return replace_string(config_field(c, k->offset), value);
        case CT_SECRET:
                if (k->flags & CF_BYTES) {
                        uint8_t *b = malloc(len + 1);
                        if (!b)
                                return -ENOMEM;
                        memcpy(b, value, len);
                        b[len] = 0;
                        uint8_t **slot = config_field(c, k->offset);
                        if (*slot)
                                explicit_bzero(*slot, *(size_t *)config_field(c, k->offset_len));
                        free(*slot);
                        *slot = b;
                        *(size_t *)config_field(c, k->offset_len) = len;
                        return 0;
                }
                char **slot = config_field(c, k->offset);
                if (*slot)
                        explicit_bzero(*slot, strlen(*slot));
                return replace_string(slot, value);
        case CT_BOOL:
                if (parse_bool(value, config_field(c, k->offset)) < 0)
                        return fail(p, "%s: \"%s\" is not a boolean (true or false)", k->name, value);
                return 0;
        case CT_UINT:
                r = parse_uint64(value, &v);
                if (r < 0 || v < k->min || v > k->max)
                        return fail(p, "%s: \"%s\" is not a whole number from %llu to %llu", k->name, value,
                                    (unsigned long long)k->min, (unsigned long long)k->max);
                *(unsigned *)config_field(c, k->offset) = (unsigned)v;
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
                *(size_t *)config_field(c, k->offset) = (size_t)(v * mult);
                return 0;
        }
        case CT_ENUM:
                for (size_t i = 0; k->values[i]; i++) {
                        if (strcmp(k->values[i], value) != 0)
                                continue;
                        if (k->flags & CF_ENUM_STRING)
                                return replace_string(config_field(c, k->offset), value);
                        *(int *)config_field(c, k->offset) = (int)i;
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
        if (strv_contains(config_kafka_fixed, key))
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

const char *config_ref_get(const config *c, const char *key) {
        for (size_t i = 0; i < c->n_refs; i++)
                if (strcmp(c->refs[i].key, key) == 0)
                        return c->refs[i].value;
        return NULL;
}

/* Remember that key was given as raw ("@file:..." or "@credential:..."). */
static int ref_set(config *c, const char *key, const char *raw) {
        char *v = strdup(raw);
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_refs; i++)
                if (strcmp(c->refs[i].key, key) == 0) {
                        free(c->refs[i].value);
                        c->refs[i].value = v;
                        return 0;
                }
        config_kv *kv = realloc(c->refs, (c->n_refs + 1) * sizeof *kv);
        if (!kv) {
                free(v);
                return -ENOMEM;
        }
        c->refs = kv;
        kv[c->n_refs].key = strdup(key);
        if (!kv[c->n_refs].key) {
                free(v);
                return -ENOMEM;
        }
        kv[c->n_refs++].value = v;
        return 0;
}

/* A key set again by a plain value is no longer a reference. */
static void ref_drop(config *c, const char *key) {
        for (size_t i = 0; i < c->n_refs; i++)
                if (strcmp(c->refs[i].key, key) == 0) {
                        free(c->refs[i].key);
                        free(c->refs[i].value);
                        c->refs[i] = c->refs[--c->n_refs];
                        return;
                }
}

static int assign(parser *p, const char *key, const char *raw) {
        const config_key *k = config_key_find(key);
        if (k && (k->flags & CF_REFERENCE_ONLY) && strncmp(raw, "@file:", 6) != 0 &&
            strncmp(raw, "@credential:", 12) != 0)
                return fail(p, "%s: give it as @file:PATH or @credential:NAME, not in the configuration file", key);

        bool is_credential = strncmp(raw, "@credential:", 12) == 0;
        if (is_credential || strncmp(raw, "@file:", 6) == 0) {
                int r = ref_set(p->c, key, raw);
                if (r < 0)
                        return r;
                /* CONFIG_NO_CREDENTIALS: the reference stands for the value. */
                if (is_credential && (p->flags & CONFIG_NO_CREDENTIALS))
                        return 0;
        } else
                ref_drop(p->c, key);

        char *value = NULL, msg[512];
        size_t len = 0;
        int r = config_resolve_value(key, raw, &value, &len, msg, sizeof msg);
        if (r == -EINVAL)
                return fail(p, "%s", msg);
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
        while (config_is_blank(*s))
                s++;
        if (!*s || *s == '#')
                return 0;
        char *eq = strchr(s, '=');
        if (!eq)
                return fail(p, "expected \"key = value\"");
        char *kend = eq;
        while (kend > s && config_is_blank(kend[-1]))
                kend--;
        *kend = 0;
        if (!*s)
                return fail(p, "a key must come before \"=\"");
        for (char *q = s; *q; q++)
                if (!key_char_valid((unsigned char)*q))
                        return fail(p, "\"%s\" is not a key (letters, digits, '.', '_', '-')", s);

        char *v = eq + 1;
        while (config_is_blank(*v))
                v++;
        char *vend = v + strlen(v);
        while (vend > v && config_is_blank(vend[-1]))
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

static int parse_string(const char *name, const char *text, unsigned flags, config **ret, char *err,
                        size_t err_size) {
        if (err && err_size > 0)
                err[0] = 0;
        config *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        atomic_init(&c->n_ref, 1);
        parser p = {.c = c, .name = name ? name : "(string)", .err = err, .err_size = err_size, .flags = flags};
        int r = 0;
        c->path = strdup(p.name);
        char *copy = strdup(text ? text : "");
        if (!c->path || !copy) {
                r = -ENOMEM;
                goto out;
        }

        for (size_t i = 0; i < config_n_keys && r >= 0; i++)
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

        for (size_t i = 0; i < config_n_keys && r >= 0; i++) {
                const config_key *k = &config_keys[i];
                if (!(k->flags & CF_REQUIRED) || ((flags & CONFIG_CLIENT) && k->offset == offsetof(config, pepper)))
                        continue;
                bool set = k->flags & CF_BYTES ? *(uint8_t *const *)config_cfield(c, k->offset) != NULL
                                               : *(char *const *)config_cfield(c, k->offset) != NULL;
                if (!set && !config_ref_get(c, k->name))
                        r = fail(&p, "%s is required", k->name);
        }
        if (r >= 0 && c->pepper_len < 32 && c->pepper)
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

int config_parse_string(const char *name, const char *text, config **ret, char *err, size_t err_size) {
        return parse_string(name, text, 0, ret, err, err_size);
}

int config_load(const char *path, config **ret, char *err, size_t err_size) {
        return config_load_flags(path, 0, ret, err, err_size);
}

int config_parse_string_client(const char *name, const char *text, config **ret, char *err, size_t err_size) {
        return parse_string(name, text, CONFIG_CLIENT, ret, err, err_size);
}

int config_load_client(const char *path, config **ret, char *err, size_t err_size) {
        return config_load_flags(path ? path : CTL_CONFIG_DEFAULT_PATH, CONFIG_CLIENT, ret, err, err_size);
}

int config_load_flags(const char *path, unsigned flags, config **ret, char *err, size_t err_size) {
        char *text = NULL;
        size_t len = 0;
        if (!path)
                path = CONFIG_DEFAULT_PATH;
        int r = config_read_file(path, &text, &len);
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
        r = parse_string(path, text, flags, ret, err, err_size);
        free(text);
        if (r < 0)
                return r;
        /* The file a daemon or allvarsctl runs with: TLS enforced. */
        char why[512];
        r = config_check_transport(*ret, why, sizeof why);
        if (r < 0) {
                snprintf(err, err_size, "%s: %s", path, why);
                config_free(*ret);
                *ret = NULL;
        }
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
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                bool owns_string = k->type == CT_STRING || (k->type == CT_ENUM && (k->flags & CF_ENUM_STRING)) ||
                                   (k->type == CT_SECRET && !(k->flags & CF_BYTES));
                if (owns_string) {
                        char **s = config_field(c, k->offset);
                        if (*s && k->type == CT_SECRET)
                                explicit_bzero(*s, strlen(*s));
                        free(*s);
                } else if (k->type == CT_SECRET) {
                        uint8_t **b = config_field(c, k->offset);
                        if (*b)
                                explicit_bzero(*b, *(size_t *)config_field(c, k->offset_len));
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
        for (size_t i = 0; i < c->n_refs; i++) {
                free(c->refs[i].key);
                free(c->refs[i].value);
        }
        free(c->refs);
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
