/* The relay's held-back keys (key_blocks.h). */
#include <stdlib.h>
#include <string.h>

#include "key_blocks.h"

static key_block *find(const key_blocks *k, const char *key) {
        for (size_t i = 0; i < k->n; i++)
                if (strcmp(k->v[i].key, key) == 0)
                        return &k->v[i];
        return NULL;
}

static void drop(key_blocks *k, key_block *b) {
        free(b->key);
        *b = k->v[--k->n];
}

bool key_blocks_held(const key_blocks *k, const char *key, usec_t mono) {
        const key_block *b = find(k, key);
        return b && b->until > mono;
}

void key_blocks_hold(key_blocks *k, const char *key, usec_t mono) {
        key_block *b = find(k, key);
        if (b) {
                b->backoff = b->backoff * 2 > KEY_BACKOFF_MAX ? KEY_BACKOFF_MAX : b->backoff * 2;
                b->until = mono + b->backoff;
                return;
        }
        if (k->n == k->cap) {
                size_t cap = k->cap ? k->cap * 2 : 16;
                key_block *v = realloc(k->v, cap * sizeof *v);
                if (!v)
                        return;
                k->v = v;
                k->cap = cap;
        }
        char *copy = strdup(key);
        if (!copy)
                return;
        k->v[k->n++] = (key_block){ .key = copy, .until = mono + KEY_BACKOFF_MIN, .backoff = KEY_BACKOFF_MIN };
}

void key_blocks_delivered(key_blocks *k, const char *key, usec_t mono) {
        key_block *b = find(k, key);
        if (b && b->until <= mono)
                drop(k, b);     /* the retry went through */
}

void key_blocks_prune(key_blocks *k, usec_t mono) {
        for (size_t i = 0; i < k->n;)
                if (k->v[i].until + 2 * KEY_BACKOFF_MAX < mono)
                        drop(k, &k->v[i]);
                else
                        i++;
}

void key_blocks_free(key_blocks *k) {
        for (size_t i = 0; i < k->n; i++)
                free(k->v[i].key);
        free(k->v);
        *k = (key_blocks){ 0 };
}
