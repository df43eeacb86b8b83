/* The protobuf text format to the wire format, by descriptor (textpb.h).
 *
 * The grammar of protoc's text format that a message of allvarssamtal.v1 needs:
 *   field   := NAME ':' value | NAME [':'] ('{' fields '}' | '<' fields '>')
 *              | NAME ':' '[' value (',' value)* ']'          then an optional ',' or ';'
 *   value   := STRING+ (adjacent strings join) | NUMBER | IDENT (enum value, true, false)
 * '#' starts a comment to the end of the line. Strings take C escapes (\n \t
 * \" \\ \' \a \b \f \v \r \?, \NNN octal, \xHH, \uHHHH, \UHHHHHHHH). Errors name
 * the line and the field, never a value: the text may hold personal data. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "textpb.h"

typedef struct buf {
        uint8_t *p;
        size_t n, cap;
} buf;

typedef struct parser {
        const char *s, *end;
        unsigned line;
        char *err;
        size_t err_size;
        unsigned depth;
} parser;

#define MAX_DEPTH 16

__attribute__((format(printf, 2, 3))) static int fail(parser *p, const char *fmt, ...) {
        int k = snprintf(p->err, p->err_size, "line %u: ", p->line);
        va_list ap;
        va_start(ap, fmt);
        if (k >= 0 && (size_t)k < p->err_size)
                vsnprintf(p->err + k, p->err_size - (size_t)k, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int put(buf *b, const void *data, size_t n) {
        if (b->n + n > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->n + n)
                        cap *= 2;
                uint8_t *q = realloc(b->p, cap);
                if (!q)
                        return -ENOMEM;
                b->p = q;
                b->cap = cap;
        }
        memcpy(b->p + b->n, data, n);
        b->n += n;
        return 0;
}

static int put_varint(buf *b, uint64_t v) {
        uint8_t t[10];
        size_t n = 0;
        while (v >= 0x80) {
                t[n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        t[n++] = (uint8_t)v;
        return put(b, t, n);
}

static int put_tag(buf *b, uint32_t id, unsigned wire) {
        return put_varint(b, (uint64_t)id << 3 | wire);
}

/* Blanks and comments. */
static void skip(parser *p) {
        while (p->s < p->end) {
                char c = *p->s;
                if (c == '\n') {
                        p->line++;
                        p->s++;
                } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
                        p->s++;
                } else if (c == '#') {
                        while (p->s < p->end && *p->s != '\n')
                                p->s++;
                } else {
                        break;
                }
        }
}

static bool ident_char(char c, bool first) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!first && c >= '0' && c <= '9');
}

/* An identifier into out (NUL-terminated); false when none. */
static bool ident(parser *p, char *out, size_t size) {
        skip(p);
        size_t n = 0;
        while (p->s < p->end && ident_char(*p->s, n == 0)) {
                if (n + 1 < size)
                        out[n] = *p->s;
                n++;
                p->s++;
        }
        out[n < size ? n : size - 1] = '\0';
        return n > 0 && n < size;
}

static bool accept(parser *p, char c) {
        skip(p);
        if (p->s < p->end && *p->s == c) {
                p->s++;
                return true;
        }
        return false;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

static int put_utf8(buf *b, uint32_t cp) {
        uint8_t t[4];
        size_t n;
        if (cp < 0x80) {
                t[0] = (uint8_t)cp;
                n = 1;
        } else if (cp < 0x800) {
                t[0] = (uint8_t)(0xc0 | cp >> 6);
                t[1] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                t[0] = (uint8_t)(0xe0 | cp >> 12);
                t[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                t[2] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 3;
        } else {
                t[0] = (uint8_t)(0xf0 | cp >> 18);
                t[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
                t[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                t[3] = (uint8_t)(0x80 | (cp & 0x3f));
                n = 4;
        }
        return put(b, t, n);
}

/* The byte of a one-letter escape (\n, ...), 0 for another letter. */
static char simple_escape(char e) {
        switch (e) {
        case 'n': return '\n';
        case 't': return '\t';
        case 'r': return '\r';
        case 'a': return '\a';
        case 'b': return '\b';
        case 'f': return '\f';
        case 'v': return '\v';
        case '\\': return '\\';
        case '\'': return '\'';
        case '"': return '"';
        case '?': return '?';
        default: return 0;
        }
}

/* One or more adjacent quoted strings, unescaped, into out. */
static int string_value(parser *p, const char *field, buf *out) {
        bool any = false;
        for (;;) {
                skip(p);
                if (p->s >= p->end || (*p->s != '"' && *p->s != '\''))
                        break;
                char q = *p->s++;
                any = true;
                for (;;) {
                        if (p->s >= p->end || *p->s == '\n')
                                return fail(p, "%s: unterminated string", field);
                        char c = *p->s++;
                        if (c == q)
                                break;
                        int r;
                        if (c != '\\') {
                                r = put(out, &c, 1);
                        } else {
                                if (p->s >= p->end)
                                        return fail(p, "%s: unterminated string", field);
                                char e = *p->s++, simple = simple_escape(e);
                                if (simple) {
                                        r = put(out, &simple, 1);
                                } else if (e >= '0' && e <= '7') {
                                        unsigned v = (unsigned)(e - '0');
                                        for (int i = 0; i < 2 && p->s < p->end && *p->s >= '0' && *p->s <= '7'; i++)
                                                v = v * 8 + (unsigned)(*p->s++ - '0');
                                        if (v > 0xff)
                                                return fail(p, "%s: octal escape out of range", field);
                                        uint8_t byte = (uint8_t)v;
                                        r = put(out, &byte, 1);
                                } else if (e == 'x' || e == 'u' || e == 'U') {
                                        int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8, n = 0;
                                        uint32_t v = 0;
                                        while (n < digits && p->s < p->end && hexval(*p->s) >= 0) {
                                                v = v * 16 + (uint32_t)hexval(*p->s++);
                                                n++;
                                        }
                                        if (n == 0 || (e != 'x' && n != digits))
                                                return fail(p, "%s: bad \\%c escape", field, e);
                                        if (e != 'x' && (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)))
                                                return fail(p, "%s: bad code point", field);
                                        uint8_t byte = (uint8_t)v;
                                        r = e == 'x' ? put(out, &byte, 1) : put_utf8(out, v);
                                } else {
                                        return fail(p, "%s: unknown escape", field);
                                }
                        }
                        if (r < 0)
                                return r;
                }
        }
        return any ? 0 : fail(p, "%s: expected a quoted string", field);
}

/* A number or identifier token (no quotes), into out. */
static bool scalar_token(parser *p, char *out, size_t size) {
        skip(p);
        size_t n = 0;
        while (p->s < p->end && (ident_char(*p->s, false) || *p->s == '-' || *p->s == '+' || *p->s == '.')) {
                if (n + 1 >= size)
                        return false;
                out[n++] = *p->s++;
        }
        out[n] = '\0';
        return n > 0;
}

static int scalar_value(parser *p, const ProtobufCFieldDescriptor *f, buf *out) {
        char tok[64];
        if (!scalar_token(p, tok, sizeof tok))
                return fail(p, "%s: expected a value", f->name);
        char *end;
        errno = 0;
        switch (f->type) {
        case PROTOBUF_C_TYPE_BOOL: {
                bool v;
                if (strcmp(tok, "true") == 0 || strcmp(tok, "True") == 0 || strcmp(tok, "t") == 0 ||
                    strcmp(tok, "1") == 0)
                        v = true;
                else if (strcmp(tok, "false") == 0 || strcmp(tok, "False") == 0 || strcmp(tok, "f") == 0 ||
                         strcmp(tok, "0") == 0)
                        v = false;
                else
                        return fail(p, "%s: expected true or false", f->name);
                int r = put_tag(out, f->id, 0);
                return r < 0 ? r : put_varint(out, v);
        }
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *e = f->descriptor;
                const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(e, tok);
                int64_t n;
                if (v) {
                        n = v->value;
                } else {
                        n = strtoll(tok, &end, 0);
                        if (errno || *end || n < INT32_MIN || n > INT32_MAX)
                                return fail(p, "%s: not a value of %s", f->name, e->short_name);
                }
                int r = put_tag(out, f->id, 0);
                return r < 0 ? r : put_varint(out, (uint64_t)n);
        }
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_INT64: {
                long long v = strtoll(tok, &end, 0);
                if (errno || *end || (f->type == PROTOBUF_C_TYPE_INT32 && (v < INT32_MIN || v > INT32_MAX)))
                        return fail(p, "%s: not an integer in range", f->name);
                int r = put_tag(out, f->id, 0);
                return r < 0 ? r : put_varint(out, (uint64_t)v);
        }
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_UINT64: {
                if (tok[0] == '-')
                        return fail(p, "%s: not an unsigned integer", f->name);
                unsigned long long v = strtoull(tok, &end, 0);
                if (errno || *end || (f->type == PROTOBUF_C_TYPE_UINT32 && v > UINT32_MAX))
                        return fail(p, "%s: not an unsigned integer in range", f->name);
                int r = put_tag(out, f->id, 0);
                return r < 0 ? r : put_varint(out, v);
        }
        default:
                return fail(p, "%s: a field of this type is not supported in text input", f->name);
        }
}

static int message_body(parser *p, const ProtobufCMessageDescriptor *desc, char close, buf *out);

static int field_value(parser *p, const ProtobufCFieldDescriptor *f, buf *out) {
        if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
                char close;
                if (accept(p, '{'))
                        close = '}';
                else if (accept(p, '<'))
                        close = '>';
                else
                        return fail(p, "%s: expected '{'", f->name);
                if (++p->depth > MAX_DEPTH)
                        return fail(p, "%s: nested too deep", f->name);
                buf sub = {0};
                int r = message_body(p, f->descriptor, close, &sub);
                p->depth--;
                if (r >= 0)
                        r = put_tag(out, f->id, 2);
                if (r >= 0)
                        r = put_varint(out, sub.n);
                if (r >= 0 && sub.n)
                        r = put(out, sub.p, sub.n);
                free(sub.p);
                return r;
        }
        if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_BYTES) {
                buf s = {0};
                int r = string_value(p, f->name, &s);
                if (r >= 0)
                        r = put_tag(out, f->id, 2);
                if (r >= 0)
                        r = put_varint(out, s.n);
                if (r >= 0 && s.n)
                        r = put(out, s.p, s.n);
                free(s.p);
                return r;
        }
        return scalar_value(p, f, out);
}

static int message_body(parser *p, const ProtobufCMessageDescriptor *desc, char close, buf *out) {
        for (;;) {
                skip(p);
                if (close ? accept(p, close) : p->s >= p->end)
                        return 0;
                if (p->s >= p->end)
                        return fail(p, "%s: missing '%c'", desc->short_name, close);
                char name[128];
                if (!ident(p, name, sizeof name))
                        return fail(p, "expected a field name of %s", desc->short_name);
                const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
                if (!f)
                        return fail(p, "%s has no field %s", desc->short_name, name);
                bool colon = accept(p, ':');
                if (!colon && f->type != PROTOBUF_C_TYPE_MESSAGE)
                        return fail(p, "%s: expected ':'", f->name);
                int r;
                if ((colon || f->type == PROTOBUF_C_TYPE_MESSAGE) && accept(p, '[')) {
                        if (f->label != PROTOBUF_C_LABEL_REPEATED)
                                return fail(p, "%s: a list for a field that is not repeated", f->name);
                        r = 0;
                        if (!accept(p, ']'))
                                do
                                        r = field_value(p, f, out);
                                while (r >= 0 && accept(p, ','));
                        if (r >= 0 && !accept(p, ']'))
                                return fail(p, "%s: expected ']'", f->name);
                } else {
                        r = field_value(p, f, out);
                }
                if (r < 0)
                        return r;
                if (!accept(p, ','))
                        accept(p, ';');
        }
}

int textpb_encode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, uint8_t **ret,
                  size_t *ret_len, char *err, size_t err_size) {
        parser p = {.s = text, .end = text + len, .line = 1, .err = err, .err_size = err_size};
        buf out = {0};
        int r = message_body(&p, desc, '\0', &out);
        if (r < 0) {
                free(out.p);
                return r;
        }
        if (!out.p && !(out.p = malloc(1)))
                return -ENOMEM;
        *ret = out.p;
        *ret_len = out.n;
        return 0;
}

bool textpb_sniff(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (data[i] < 0x20 && data[i] != '\n' && data[i] != '\t' && data[i] != '\r')
                        return false;
        parser p = {.s = (const char *)data, .end = (const char *)data + len, .line = 1};
        skip(&p);
        if (p.s >= p.end)
                return len > 0; /* only comments and blanks: an empty message in text */
        char name[128];
        if (!ident(&p, name, sizeof name) || !protobuf_c_message_descriptor_get_field_by_name(desc, name))
                return false;
        skip(&p);
        return p.s < p.end && (*p.s == ':' || *p.s == '{' || *p.s == '<');
}
