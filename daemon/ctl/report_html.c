/* allvarsctl report --format html: one self-contained file (no script, no
 * font, no image or style sheet fetched: nothing leaves the machine that
 * opens it), the tables of every district and three charts drawn here as
 * inline SVG, one bar per district and period:
 *   held within the limit (share of held), hours from the police report to
 *   the conversation (median, with the 90th percentile marked), police present
 *   (share of held).
 * A cell that is not shown (suppressed, or no data) is a bar of no length
 * labelled "..", so every chart has as many bars and labels as rows. Black
 * on white with patterns that survive a monochrome printer. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report.h"

static void html_text(FILE *f, const char *s) {
        for (; *s; s++) {
                switch (*s) {
                case '&': fputs("&amp;", f); break;
                case '<': fputs("&lt;", f); break;
                case '>': fputs("&gt;", f); break;
                case '"': fputs("&quot;", f); break;
                case '\'': fputs("&#39;", f); break;
                default: fputc(*s, f);
                }
        }
}

static const char style[] =
        "body{font:14px/1.4 sans-serif;color:#000;background:#fff;margin:2em;max-width:64em}"
        "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #000}"
        "h3{font-size:1em;margin:1.2em 0 .3em}"
        "table{border-collapse:collapse;margin:.5em 0 1em}th,td{border:1px solid #999;padding:2px 8px}"
        "td.v{text-align:right;font-variant-numeric:tabular-nums}th.s{text-align:left;background:#eee}"
        ".note{font-style:italic}"
        "svg{display:block;margin:.5em 0 1.5em}svg text{font:12px sans-serif;fill:#000}"
        "svg .bar{fill:#3b6ea5;stroke:#000;stroke-width:.5}svg .mark{stroke:#000;stroke-width:2}"
        "svg .grid{stroke:#bbb;stroke-width:.5}"
        "@media print{body{margin:0;font-size:10pt}h2{break-before:page}table,svg{break-inside:avoid}"
        "svg .bar{fill:#888;-webkit-print-color-adjust:exact;print-color-adjust:exact}}";

typedef struct chart {
        const char *id, *title, *unit;
        const char *value_key;          /* the figure drawn */
        const char *mark_key;           /* a second figure marked on the bar (p90), or NULL */
        bool share;
} chart;

#define ROW_H 22
#define LABEL_W 230
#define BAR_W 360
#define VALUE_W 120

static void draw_chart(FILE *f, const report *r, const chart *c) {
        struct {
                const char *id, *title, *unit;
                int value, mark;
                bool share;
        } chv = {c->id, c->title, c->unit, report_figure_index(c->value_key),
                 c->mark_key ? report_figure_index(c->mark_key) : -1, c->share};
        typeof(chv) *ch = &chv;
        if (ch->value < 0)
                return;
        double max = ch->share ? 1.0 : 0.0;
        for (size_t i = 0; !ch->share && i < r->n_rows; i++) {
                const report_cell *v = &r->rows[i].cells[ch->value];
                if (v->available && !report_cell_hidden(v))
                        max = fmax(max, v->value);
                if (ch->mark >= 0) {
                        const report_cell *m = &r->rows[i].cells[ch->mark];
                        if (m->available && !report_cell_hidden(m))
                                max = fmax(max, m->value);
                }
        }
        if (max <= 0)
                max = 1;
        int height = (int)r->n_rows * ROW_H + 30;
        int width = LABEL_W + BAR_W + VALUE_W;
        fprintf(f, "<h3>%s</h3>\n", ch->title);
        fprintf(f, "<svg class=\"chart\" id=\"%s\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\""
                   " viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
                ch->id, width, height, width, height, ch->title);
        for (int g = 0; g <= 4; g++) {
                double x = LABEL_W + BAR_W * g / 4.0;
                fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"0\" x2=\"%.1f\" y2=\"%d\"/>", x, x, height - 20);
                if (ch->share)
                        fprintf(f, "<text class=\"axis\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d%%</text>\n", x,
                                height - 5, g * 25);
                else
                        fprintf(f, "<text class=\"axis\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.0f %s</text>\n",
                                x, height - 5, max * g / 4.0, ch->unit);
        }
        for (size_t i = 0; i < r->n_rows; i++) {
                const report_row *row = &r->rows[i];
                const report_cell *v = &row->cells[ch->value];
                bool shown = v->available && !report_cell_hidden(v);
                double w = shown ? BAR_W * fmin(v->value / max, 1.0) : 0;
                int y = (int)i * ROW_H;
                char val[32];
                report_cell_format(&report_figures[ch->value], v, val, sizeof val);
                fprintf(f, "<text class=\"label\" x=\"%d\" y=\"%d\" text-anchor=\"end\">", LABEL_W - 6, y + 15);
                html_text(f, row->district);
                fprintf(f, " %s</text>", row->period);
                fprintf(f, "<rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\"><title>", LABEL_W, y + 3,
                        w, ROW_H - 6);
                html_text(f, row->district);
                fprintf(f, " %s: %s</title></rect>", row->period, val);
                if (ch->mark >= 0) {
                        const report_cell *m = &row->cells[ch->mark];
                        if (m->available && !report_cell_hidden(m)) {
                                double mx = LABEL_W + BAR_W * fmin(m->value / max, 1.0);
                                fprintf(f, "<line class=\"mark\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>", mx,
                                        y + 1, mx, y + ROW_H - 1);
                        }
                }
                fprintf(f, "<text class=\"value\" x=\"%.1f\" y=\"%d\">%s%s</text>\n", LABEL_W + w + 6, y + 15, val,
                        shown && !ch->share ? " h" : "");
        }
        fputs("</svg>\n", f);
}

static void district_table(FILE *f, const report *r, size_t first, size_t end) {
        fputs("<table>\n<thead><tr><th>Figure</th>", f);
        for (size_t i = first; i < end; i++)
                fprintf(f, "<th>%s</th>", r->rows[i].period);
        fputs("</tr></thead>\n<tbody>\n", f);
        const char *section = NULL;
        for (size_t k = 0; k < report_n_figures; k++) {
                const report_figure *fig = &report_figures[k];
                if (!section || strcmp(section, fig->section) != 0) {
                        section = fig->section;
                        fprintf(f, "<tr><th class=\"s\" colspan=\"%zu\">", end - first + 1);
                        html_text(f, section);
                        fputs("</th></tr>\n", f);
                }
                fputs("<tr><td>", f);
                html_text(f, fig->label);
                fputs("</td>", f);
                for (size_t i = first; i < end; i++) {
                        char v[32];
                        report_cell_format(fig, &r->rows[i].cells[k], v, sizeof v);
                        fputs("<td class=\"v\">", f);
                        html_text(f, v);
                        fputs("</td>", f);
                }
                fputs("</tr>\n", f);
        }
        fputs("</tbody>\n</table>\n", f);
}

int report_write_html(FILE *f, const report *r) {
        fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n", f);
        /* Nothing may be fetched: no script, style, font or image from anywhere. */
        fputs("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
              f);
        fprintf(f, "<title>Follow-up of police referrals %s to %s</title>\n<style>%s</style>\n</head>\n<body>\n", r->from,
                r->to, style);
        fprintf(f, "<h1>Follow-up of police referrals (allvarsd), %s to %s</h1>\n", r->from, r->to);
        fprintf(f, "<p>By %s", r->by);
        if (r->district) {
                fputs(", district ", f);
                html_text(f, r->district);
        }
        fprintf(f, ". As of %s. Pseudonymous data only.</p>\n<p class=\"note\">%s</p>\n", r->generated_at,
                REPORT_SUPPRESSION_NOTE);
        if (r->n_rows == 0)
                fputs("<p>No referrals in the period.</p>\n", f);
        else {
                static const chart charts[] = {
                        {"chart-held-in-time", "Conversations held within the profile's limit (share of held)", "",
                         "held_in_time_share", NULL, true},
                        {"chart-hours", "Hours from the police report to the conversation (median; line: 90th percentile)",
                         "h", "hours_to_conversation_median", "hours_to_conversation_p90", false},
                        {"chart-police", "Police present at held conversations (share of held)", "",
                         "police_present_share", NULL, true},
                };
                fputs("<h2>Charts</h2>\n", f);
                for (size_t i = 0; i < sizeof charts / sizeof charts[0]; i++)
                        draw_chart(f, r, &charts[i]);
        }
        for (size_t first = 0; first < r->n_rows;) {
                size_t end = first;
                while (end < r->n_rows && strcmp(r->rows[end].district, r->rows[first].district) == 0)
                        end++;
                fputs("<h2>District ", f);
                html_text(f, r->rows[first].district);
                fputs("</h2>\n", f);
                district_table(f, r, first, end);
                first = end;
        }
        fprintf(f, "<p class=\"note\">New referrals: %s</p>\n</body>\n</html>\n", REPORT_RECIDIVISM_NOTE);
        return ferror(f) ? -EIO : 0;
}
