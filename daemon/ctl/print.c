/* allvarsctl: tables, records and JSON (see print.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "print.h"

/* Columns of a character each, counted by UTF-8 lead bytes (Swedish text). */
static size_t text_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char)*s & 0xc0) != 0x80)
                        w++;
        return w;
}

/* Values come partly from outside (the police's referral ids): a control
 * character must not reach the terminal. */
static void put_text(FILE *f, const char *s) {
        for (; *s; s++)
                fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

static void put_padded(FILE *f, const char *s, size_t width, bool right, bool last) {
        size_t w = text_width(s);
        if (right)
                for (; w < width; w++)
                        fputc(' ', f);
        put_text(f, s);
        if (!right && !last)
                for (; w < width; w++)
                        fputc(' ', f);
}

static bool hidden(const char *hide, const char *name) {
        size_t n = strlen(name);
        for (const char *h = hide; h && *h;) {
                size_t len = strcspn(h, ",");
                if (len == n && strncmp(h, name, n) == 0)
                        return true;
                h += len;
                if (*h == ',')
                        h++;
        }
        return false;
}

static bool numeric_type(Oid t) {
        return t == 20 || t == 21 || t == 23 || t == 700 || t == 701 || t == 1700;
}

static void label_of(const char *name, bool upper, char *buf, size_t size) {
        size_t i = 0;
        for (; name[i] && i + 1 < size; i++)
                buf[i] = name[i] == '_' ? ' ' : upper ? (char)toupper((unsigned char)name[i]) : name[i];
        buf[i] = 0;
}

static const char *cell(const PGresult *res, int row, int col) {
        if (PQgetisnull(res, row, col))
                return "-";
        if (PQftype(res, col) == CTL_OID_BOOL)
                return PQgetvalue(res, row, col)[0] == 't' ? "yes" : "no";
        return PQgetvalue(res, row, col);
}

void ctl_print_table(FILE *f, const PGresult *res, const char *hide, const char *indent) {
        int rows = PQntuples(res), cols = PQnfields(res);
        size_t width[cols];
        char label[cols][64];
        int last = -1;
        for (int j = 0; j < cols; j++) {
                label_of(PQfname(res, j), true, label[j], sizeof label[j]);
                width[j] = text_width(label[j]);
                if (hidden(hide, PQfname(res, j)))
                        continue;
                last = j;
                for (int i = 0; i < rows; i++) {
                        size_t w = text_width(cell(res, i, j));
                        if (w > width[j])
                                width[j] = w;
                }
        }
        for (int i = -1; i < rows; i++) {
                fputs(indent, f);
                bool first = true;
                for (int j = 0; j < cols; j++) {
                        if (hidden(hide, PQfname(res, j)))
                                continue;
                        if (!first)
                                fputs("  ", f);
                        first = false;
                        bool right = numeric_type(PQftype(res, j));
                        put_padded(f, i < 0 ? label[j] : cell(res, i, j), width[j], right, j == last);
                }
                fputc('\n', f);
        }
}

void ctl_print_record(FILE *f, const PGresult *res, int row, const char *hide, const char *indent) {
        int cols = PQnfields(res);
        size_t width = 0;
        char label[64];
        for (int j = 0; j < cols; j++) {
                label_of(PQfname(res, j), false, label, sizeof label);
                if (!hidden(hide, PQfname(res, j)) && text_width(label) > width)
                        width = text_width(label);
        }
        for (int j = 0; j < cols; j++) {
                if (hidden(hide, PQfname(res, j)))
                        continue;
                label_of(PQfname(res, j), false, label, sizeof label);
                fputs(indent, f);
                put_padded(f, label, width, false, false);
                fputs("  ", f);
                put_text(f, cell(res, row, j));
                fputc('\n', f);
        }
}

static int append(char **buf, size_t *len, const char *s) {
        size_t n = strlen(s);
        char *b = realloc(*buf, *len + n + 1);
        if (!b)
                return -ENOMEM;
        memcpy(b + *len, s, n + 1);
        *buf = b;
        *len += n;
        return 0;
}

/* One SQL text: the JSON of a section. */
static int append_section_json(char **buf, size_t *len, const ctl_section *s) {
        int r = append(buf, len, s->shape == CTL_RECORD ? "(SELECT row_to_json(q) FROM (" :
                                                          "(SELECT coalesce(json_agg(q), '[]'::json) FROM (");
        if (r >= 0)
                r = append(buf, len, s->sql);
        if (r >= 0)
                r = append(buf, len, ") q)");
        return r;
}

static int show_json(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        char *sql = NULL;
        size_t len = 0;
        int r = append(&sql, &len, "SELECT ");
        if (n == 1 && !sections[0].key)
                r = r < 0 ? r : append_section_json(&sql, &len, &sections[0]);
        else {
                r = r < 0 ? r : append(&sql, &len, "json_build_object(");
                for (size_t i = 0; i < n && r >= 0; i++) {
                        /* Keys are fixed words of this program, never input. */
                        char key[80];
                        snprintf(key, sizeof key, "%s'%s', ", i ? ", " : "", sections[i].key);
                        r = append(&sql, &len, key);
                        r = r < 0 ? r : append_section_json(&sql, &len, &sections[i]);
                }
                r = r < 0 ? r : append(&sql, &len, ")");
        }
        if (r < 0) {
                free(sql);
                ctl_fail(c, "out of memory");
                return r;
        }
        PGresult *res = ctl_exec(c, sql, p);
        free(sql);
        if (!res)
                return -EIO;
        if (PQntuples(res) == 1)
                printf("%s\n", PQgetisnull(res, 0, 0) ? "null" : PQgetvalue(res, 0, 0));
        PQclear(res);
        return 0;
}

static int show_human(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        for (size_t i = 0; i < n; i++) {
                const ctl_section *s = &sections[i];
                PGresult *res = ctl_exec(c, s->sql, p);
                if (!res)
                        return -EIO;
                const char *indent = s->title ? "  " : "";
                if (i > 0)
                        putchar('\n');
                if (s->title)
                        printf("%s\n", s->title);
                int rows = PQntuples(res);
                if (rows == 0 && s->empty)
                        printf("%s%s\n", indent, s->empty);
                else if (s->shape == CTL_TABLE)
                        ctl_print_table(stdout, res, s->hide, indent);
                else
                        for (int j = 0; j < rows && (j == 0 || s->shape == CTL_RECORDS); j++) {
                                if (j > 0)
                                        putchar('\n');
                                ctl_print_record(stdout, res, j, s->hide, indent);
                        }
                PQclear(res);
        }
        return 0;
}

int ctl_show(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p) {
        if (c->json)
                return show_json(c, sections, n, p);
        /* The sections of one view come from one snapshot. */
        PGresult *res = ctl_exec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", NULL);
        if (!res)
                return -EIO;
        PQclear(res);
        int r = show_human(c, sections, n, p);
        res = ctl_exec(c, r < 0 ? "ROLLBACK" : "COMMIT", NULL);
        PQclear(res);
        return r;
}
