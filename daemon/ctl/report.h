/* allvarsctl report: the follow-up figures per district and period
 * (docs/domain.md "Follow-up report"), computed by PostgreSQL from the
 * pseudonymous tables only, with small counts suppressed here before any
 * output. report.c runs the query and suppresses; report_out.c writes text,
 * CSV and JSON; report_html.c the self-contained HTML with its SVG charts. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* The figures, in output order. A count may be part of a partition (its
 * group's parts add up to the total exactly) or a subset of its total; a
 * share is num / den; hours are a median or 90th percentile over n values. */
typedef enum report_kind {
        RK_COUNT,
        RK_SHARE,
        RK_HOURS,
} report_kind;

typedef struct report_figure {
        const char *key;                /* the SQL column and the CSV/JSON name */
        const char *label;              /* English, with the Swedish term where there is one */
        const char *section;            /* heading of the group of figures */
        report_kind kind;
        int total;                      /* RK_COUNT: index of the figure it is part of, or -1 */
        char partition;                 /* RK_COUNT: a partition group's letter, 0: a subset */
        int num, den;                   /* RK_SHARE: the counts */
        const char *n_column;           /* RK_HOURS: the SQL column with the number of values */
} report_figure;

extern const report_figure report_figures[];
extern const size_t report_n_figures;
int report_figure_index(const char *key);       /* or -1 */

/* Suppression: counts 1-4 are never shown (REPORT_MIN_COUNT). */
#define REPORT_MIN_COUNT 5

typedef struct report_cell {
        double value;                   /* count, share (0-1) or hours */
        bool available;                 /* false: no value (no data, or a share of 0) */
        bool primary;                   /* suppressed: a count of 1-4 */
        bool secondary;                 /* suppressed so that no suppressed count can be derived */
} report_cell;

static inline bool report_cell_hidden(const report_cell *c) {
        return c->primary || c->secondary;
}

typedef struct report_row {
        char *district;
        char *period;                   /* "2025-03", "2025-W11", "2025-Q1" */
        report_cell *cells;             /* report_n_figures */
} report_row;

typedef struct report {
        const char *from, *to, *by, *district;  /* as given; district NULL: all */
        char generated_at[64];
        report_row *rows;
        size_t n_rows;
} report;

/* Primary and secondary suppression of one row, and the shares and hours
 * that may then be shown (report.c). Exposed for the tests' sake. */
void report_suppress(report_row *row);

/* The formats (report_out.c, report_html.c); 0 or -errno. */
int report_write_text(FILE *f, const report *r);
int report_write_csv(FILE *f, const report *r);
int report_write_json(FILE *f, const report *r);
int report_write_html(FILE *f, const report *r);

/* A cell as shown: "12", "<5", "67%", "31.5", or ".." when not shown. */
void report_cell_format(const report_figure *fig, const report_cell *c, char *buf, size_t size);

/* The note every format carries on the new-referral figures. */
#define REPORT_RECIDIVISM_NOTE                                                                            \
        "Descriptive, not causal: children whose conversation was held are not comparable to those whose " \
        "conversation was not held; a difference says nothing about the effect of the conversation."
#define REPORT_SUPPRESSION_NOTE                                                                           \
        "Counts between 1 and 4 are shown as <5, and further cells are hidden (..) so that no hidden count " \
        "can be worked out from the totals shown."
