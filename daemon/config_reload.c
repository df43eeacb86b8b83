/* SIGHUP: which keys changed between two configurations in a way that only a
 * restart can apply (keys without CF_RELOADABLE, and every kafka.* key). */
#include <string.h>

#include "config_internal.h"

static bool str_eq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The value of type T of key k in configuration c. */
#define AT(T, c, off) (*(T const *)config_cfield(c, off))

static bool key_equal(const config_key *k, const config *a, const config *b) {
        switch (k->type) {
        case CT_STRING: return str_eq(AT(char *, a, k->offset), AT(char *, b, k->offset));
        case CT_BOOL: return AT(bool, a, k->offset) == AT(bool, b, k->offset);
        case CT_UINT: return AT(unsigned, a, k->offset) == AT(unsigned, b, k->offset);
        case CT_SIZE: return AT(size_t, a, k->offset) == AT(size_t, b, k->offset);
        case CT_ENUM:
                if (k->flags & CF_ENUM_STRING)
                        return str_eq(AT(char *, a, k->offset), AT(char *, b, k->offset));
                return AT(int, a, k->offset) == AT(int, b, k->offset);
        case CT_SECRET:
                if (k->flags & CF_BYTES) {
                        size_t la = AT(size_t, a, k->offset_len), lb = AT(size_t, b, k->offset_len);
                        const uint8_t *pa = AT(uint8_t *, a, k->offset), *pb = AT(uint8_t *, b, k->offset);
                        return la == lb && (la == 0 || (pa && pb && memcmp(pa, pb, la) == 0));
                }
                return str_eq(AT(char *, a, k->offset), AT(char *, b, k->offset));
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
        for (size_t i = 0; i < config_n_keys; i++) {
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
