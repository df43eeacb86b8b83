/* A growable string: appends never fail on the spot; an allocation failure
 * is remembered in oom and the text stays what it was before it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct strbuf {
        char *s;                        /* NUL-terminated once anything was added; NULL before */
        size_t len, cap;
        bool oom;
} strbuf;

void strbuf_add(strbuf *b, const char *s, size_t n);
void strbuf_adds(strbuf *b, const char *s);
void strbuf_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Room for n more bytes at the end, counted as added: the caller writes them.
 * NULL after an allocation failure. */
char *strbuf_extend(strbuf *b, size_t n);
/* The text, "" when nothing was added; NULL after an allocation failure. */
const char *strbuf_str(strbuf *b);
void strbuf_free(strbuf *b);
