/* The configuration's output: config_dump (--check-config; secrets and the
 * password of the conninfo masked), config_restart_write and _compare (the
 * restart-only values for --check-reload) and config_write_man (the key list
 * of allvarsd.conf(5)). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"

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
        bool quote = !s || !*s || config_is_blank(*s) || config_is_blank(s[strlen(s) - 1]) ||
                     strpbrk(s, "\"\\\n\t") != NULL;
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

/* One key's effective value (not a pattern), secrets masked. */
static void dump_one(const config *c, const config_key *k, FILE *f) {
        const void *v = config_cfield(c, k->offset);
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
}

void config_dump(const config *c, FILE *f) {
        char buf[1024];
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
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
                const char *ref = config_ref_get(c, k->name);
                if (ref && strncmp(ref, "@credential:", 12) == 0 && !*(const void *const *)config_cfield(c, k->offset) &&
                    (k->type == CT_SECRET || k->type == CT_STRING))
                        /* CONFIG_NO_CREDENTIALS: not read. */
                        fprintf(f, "(%s, not read)", ref);
                else
                        dump_one(c, k, f);
                fputc('\n', f);
        }
}

/* ---- what --check-reload compares (restart-only keys) ---- */

/* ---- helpers of the restart record ---- */

static const char *kafka_get(const config *c, const char *key) {
        for (size_t i = 0; i < c->n_kafka; i++)
                if (strcmp(c->kafka[i].key, key) == 0)
                        return c->kafka[i].value;
        return NULL;
}

static void list_add(char *buf, size_t size, const char *name) {
        size_t n = strlen(buf);
        if (n + 1 >= size)
                return;
        snprintf(buf + n, size - n, "%s%s", n ? ", " : "", name);
}


static void restart_line(FILE *f, const char *prefix, const char *key, const char *value) {
        fprintf(f, "%s%s = ", prefix, key);
        dump_value(f, value);
        fputc('\n', f);
}

void config_restart_write(const config *c, FILE *f) {
        for (size_t i = 0; i < config_n_keys; i++) {
                const config_key *k = &config_keys[i];
                if ((k->flags & CF_RELOADABLE) || k->type == CT_PATTERN)
                        continue;
                const char *ref = config_ref_get(c, k->name);
                if (ref)
                        restart_line(f, "", k->name, ref);
                else {
                        fprintf(f, "%s = ", k->name);
                        dump_one(c, k, f);
                        fputc('\n', f);
                }
        }
        for (size_t i = 0; i < c->n_kafka; i++) {
                char name[256];
                snprintf(name, sizeof name, "kafka.%s", c->kafka[i].key);
                const char *ref = config_ref_get(c, name);
                restart_line(f, "kafka.", c->kafka[i].key,
                             ref ? ref : kafka_key_secret(c->kafka[i].key) ? "(secret)" : c->kafka[i].value);
        }
        /* kafka.* credentials not read (CONFIG_NO_CREDENTIALS) are only references. */
        for (size_t i = 0; i < c->n_refs; i++)
                if (strncmp(c->refs[i].key, "kafka.", 6) == 0 && !kafka_get(c, c->refs[i].key + 6))
                        restart_line(f, "", c->refs[i].key, c->refs[i].value);
}

/* The line of key in text ("key = value\n" lines), or NULL. */
static const char *line_of(const char *text, const char *key, size_t key_len) {
        for (const char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
                if (strncmp(l, key, key_len) == 0 && strncmp(l + key_len, " = ", 3) == 0)
                        return l;
        return NULL;
}

static size_t line_len(const char *l) {
        const char *e = strchr(l, '\n');
        return e ? (size_t)(e - l) : strlen(l);
}

/* Whether the ", "-separated list in buf names key. */
static bool list_has(const char *buf, const char *key) {
        size_t n = strlen(key);
        for (const char *l = buf; l && *l; l = strstr(l, ", "), l = l ? l + 2 : NULL)
                if (strncmp(l, key, n) == 0 && (l[n] == 0 || l[n] == ','))
                        return true;
        return false;
}

/* Every key of a whose line is missing from b or differs there. */
static void lines_differ(const char *a, const char *b, char *buf, size_t size) {
        for (const char *l = a; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
                const char *eq = strstr(l, " = ");
                size_t n = line_len(l);
                if (!eq || (size_t)(eq - l) >= n)
                        continue;
                const char *o = line_of(b, l, (size_t)(eq - l));
                if (o && line_len(o) == n && memcmp(o, l, n) == 0)
                        continue;
                char key[256];
                snprintf(key, sizeof key, "%.*s", (int)(eq - l), l);
                if (!list_has(buf, key))
                        list_add(buf, size, key);
        }
}

int config_restart_compare(const config *c, const char *running, char *buf, size_t size) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (!f)
                return -ENOMEM;
        config_restart_write(c, f);
        if (fclose(f) != 0) {
                free(text);
                return -ENOMEM;
        }
        buf[0] = 0;
        lines_differ(running, text, buf, size);
        lines_differ(text, running, buf, size);
        free(text);
        return buf[0] ? 1 : 0;
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
        for (size_t i = 0; i < config_n_keys; i++) {
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
