/* A growable string (strbuf.h). */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static bool reserve(strbuf *b, size_t more) {
        if (b->oom)
                return false;
        if (b->len + more + 1 <= b->cap)
                return true;
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + more + 1)
                cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) {
                b->oom = true;
                return false;
        }
        b->s = p;
        b->cap = cap;
        return true;
}

char *strbuf_extend(strbuf *b, size_t n) {
        if (!reserve(b, n))
                return NULL;
        char *p = b->s + b->len;
        b->len += n;
        b->s[b->len] = '\0';
        return p;
}

void strbuf_add(strbuf *b, const char *s, size_t n) {
        char *p = strbuf_extend(b, n);
        if (p && n)
                memcpy(p, s, n);
}

void strbuf_adds(strbuf *b, const char *s) {
        strbuf_add(b, s, strlen(s));
}

void strbuf_addf(strbuf *b, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0 || !reserve(b, (size_t)n))
                return;
        va_start(ap, fmt);
        int k = vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        assert(k == n);
        b->len += (size_t)k;
}

const char *strbuf_str(strbuf *b) {
        if (b->oom)
                return NULL;
        if (!b->s && !reserve(b, 0))
                return NULL;
        b->s[b->len] = '\0';
        return b->s;
}

void strbuf_free(strbuf *b) {
        free(b->s);
        *b = (strbuf){ 0 };
}
