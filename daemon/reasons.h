/* The stable codes of reasons and flags and their plain explanations for social
 * workers, in Swedish and English. One table; the CLI, the database and the man
 * page all read it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct reason_text {
        uint32_t bit;
        const char *code;               /* stable: stored and published */
        const char *sv;                 /* plain Swedish */
        const char *en;                 /* plain English */
} reason_text;

extern const reason_text reason_texts[];   /* REASON_*, in bit order, terminated by code == NULL */
extern const reason_text flag_texts[];     /* FLAG_*, in bit order, terminated by code == NULL */

/* Comma-separated codes of the bits set, in bit order, no spaces; "" when none.
 * Returns the length that the full list needs (like snprintf). */
size_t reasons_format(const reason_text *table, uint32_t bits, char *buf, size_t size);
/* Parse a comma-separated list back to bits; -EINVAL on an unknown code. */
int reasons_parse(const reason_text *table, const char *list, uint32_t *ret);
const reason_text *reasons_lookup(const reason_text *table, const char *code);
