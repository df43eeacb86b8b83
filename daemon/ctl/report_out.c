/* allvarsctl report: text, CSV and JSON (report.h). Every cell goes through
 * report_cell_format, so a suppressed count is "<5" and a hidden cell ".."
 * in every format; JSON gives shown numbers as numbers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

void report_cell_format(const report_figure *fig, const report_cell *c, char *buf, size_t size) {
        if (fig->kind == RK_COUNT && c->primary)
                snprintf(buf, size, "<%d", REPORT_MIN_COUNT);
        else if (!c->available || report_cell_hidden(c))
                snprintf(buf, size, "..");
        else if (fig->kind == RK_COUNT)
                snprintf(buf, size, "%.0f", c->value);
        else if (fig->kind == RK_SHARE)
                snprintf(buf, size, "%.0f%%", c->value * 100.0);
        else
                snprintf(buf, size, "%.1f", c->value);
}

/* s left-aligned in a field of width characters (UTF-8: continuation bytes
 * take no column). */
static void put_padded(FILE *f, const char *s, int width) {
        int cols = 0;
        for (const unsigned char *p = (const unsigned char *)s; *p; p++)
                cols += (*p & 0xc0) != 0x80;
        fputs(s, f);
        for (; cols < width; cols++)
                fputc(' ', f);
}

/* The rows of one district: [first, end). */
static size_t district_end(const report *r, size_t first) {
        size_t end = first;
        while (end < r->n_rows && strcmp(r->rows[end].district, r->rows[first].district) == 0)
                end++;
        return end;
}

static void header(FILE *f, const report *r) {
        fprintf(f, "Follow-up of police referrals (allvarsd), reported %s to %s, by %s%s%s\n", r->from, r->to, r->by,
                r->district ? ", district " : "", r->district ? r->district : "");
        fprintf(f, "As of %s. %s\n", r->generated_at, REPORT_SUPPRESSION_NOTE);
}

int report_write_text(FILE *f, const report *r) {
        header(f, r);
        if (r->n_rows == 0)
                fprintf(f, "\nNo referrals in the period.\n");
        for (size_t first = 0; first < r->n_rows;) {
                size_t end = district_end(r, first);
                fprintf(f, "\nDistrict %s\n", r->rows[first].district);
                const char *section = NULL;
                for (size_t k = 0; k < report_n_figures; k++) {
                        const report_figure *fig = &report_figures[k];
                        if (!section || strcmp(section, fig->section) != 0) {
                                section = fig->section;
                                fputs("\n  ", f);
                                put_padded(f, section, 64);
                                for (size_t i = first; i < end; i++)
                                        fprintf(f, " %9s", r->rows[i].period);
                                fputc('\n', f);
                        }
                        fputs("    ", f);
                        put_padded(f, fig->label, 62);
                        for (size_t i = first; i < end; i++) {
                                char v[32];
                                report_cell_format(fig, &r->rows[i].cells[k], v, sizeof v);
                                fprintf(f, " %9s", v);
                        }
                        fputc('\n', f);
                }
                first = end;
        }
        fprintf(f, "\nNew referrals: %s\n", REPORT_RECIDIVISM_NOTE);
        return ferror(f) ? -EIO : 0;
}

/* CSV: one line per district, period and figure (RFC 4180 quoting). */
static void csv_field(FILE *f, const char *s) {
        if (!strpbrk(s, ",\"\r\n")) {
                fputs(s, f);
                return;
        }
        fputc('"', f);
        for (; *s; s++) {
                if (*s == '"')
                        fputc('"', f);
                fputc(*s, f);
        }
        fputc('"', f);
}

int report_write_csv(FILE *f, const report *r) {
        fputs("district,period,figure,value\r\n", f);
        for (size_t i = 0; i < r->n_rows; i++)
                for (size_t k = 0; k < report_n_figures; k++) {
                        char v[32];
                        report_cell_format(&report_figures[k], &r->rows[i].cells[k], v, sizeof v);
                        csv_field(f, r->rows[i].district);
                        fputc(',', f);
                        csv_field(f, r->rows[i].period);
                        fprintf(f, ",%s,%s\r\n", report_figures[k].key, v);
                }
        return ferror(f) ? -EIO : 0;
}

static void json_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        fprintf(f, "\\%c", *p);
                else if (*p < 0x20)
                        fprintf(f, "\\u%04x", *p);
                else
                        fputc(*p, f);
        }
        fputc('"', f);
}

/* JSON: shown values as numbers (shares 0-1, hours), "<5" for a suppressed
 * count, null for a hidden or unavailable cell. */
int report_write_json(FILE *f, const report *r) {
        fputs("{\"from\":", f);
        json_string(f, r->from);
        fputs(",\"to\":", f);
        json_string(f, r->to);
        fputs(",\"by\":", f);
        json_string(f, r->by);
        fputs(",\"district\":", f);
        if (r->district)
                json_string(f, r->district);
        else
                fputs("null", f);
        fputs(",\"as_of\":", f);
        json_string(f, r->generated_at);
        fputs(",\"suppression\":", f);
        json_string(f, REPORT_SUPPRESSION_NOTE);
        fputs(",\"new_referrals_note\":", f);
        json_string(f, REPORT_RECIDIVISM_NOTE);
        fputs(",\"figures\":[", f);
        for (size_t k = 0; k < report_n_figures; k++) {
                const report_figure *fig = &report_figures[k];
                static const char *const kinds[] = {"count", "share", "hours"};
                fprintf(f, "%s{\"key\":\"%s\",\"kind\":\"%s\",\"label\":", k ? "," : "", fig->key, kinds[fig->kind]);
                json_string(f, fig->label);
                fputs(",\"section\":", f);
                json_string(f, fig->section);
                if (fig->kind == RK_COUNT && fig->total >= 0 && fig->partition)
                        fprintf(f, ",\"part_of\":\"%s\",\"partition\":\"%c\"", report_figures[fig->total].key,
                                fig->partition);
                else if (fig->kind == RK_COUNT && fig->total >= 0)
                        fprintf(f, ",\"subset_of\":\"%s\"", report_figures[fig->total].key);
                if (fig->kind == RK_SHARE)
                        fprintf(f, ",\"numerator\":\"%s\",\"denominator\":\"%s\"", report_figures[fig->num].key,
                                report_figures[fig->den].key);
                fputc('}', f);
        }
        fputs("],\"rows\":[", f);
        for (size_t i = 0; i < r->n_rows; i++) {
                fputs(i ? ",{\"district\":" : "{\"district\":", f);
                json_string(f, r->rows[i].district);
                fputs(",\"period\":", f);
                json_string(f, r->rows[i].period);
                fputs(",\"values\":{", f);
                for (size_t k = 0; k < report_n_figures; k++) {
                        const report_figure *fig = &report_figures[k];
                        const report_cell *c = &r->rows[i].cells[k];
                        fprintf(f, "%s\"%s\":", k ? "," : "", fig->key);
                        if (fig->kind == RK_COUNT && c->primary)
                                fprintf(f, "\"<%d\"", REPORT_MIN_COUNT);
                        else if (!c->available || report_cell_hidden(c))
                                fputs("null", f);
                        else if (fig->kind == RK_COUNT)
                                fprintf(f, "%.0f", c->value);
                        else
                                fprintf(f, "%.4g", isfinite(c->value) ? c->value : 0.0);
                }
                fputs("}}", f);
        }
        fputs("]}\n", f);
        return ferror(f) ? -EIO : 0;
}
