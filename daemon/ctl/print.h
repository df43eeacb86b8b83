/* allvarsctl's output: aligned tables and records for people, JSON for
 * scripts. The JSON is made by PostgreSQL (json_agg, row_to_json) from the
 * same queries that feed the tables, so the two forms cannot drift apart and
 * no JSON encoder lives here. */
#pragma once

#include <stddef.h>
#include <stdio.h>

#include <libpq-fe.h>

#include "common.h"

/* One part of a view: a query with the view's parameters. */
typedef enum ctl_shape {
        CTL_TABLE,                      /* rows and columns; JSON: an array of objects */
        CTL_RECORD,                     /* one row as "label  value" lines; JSON: an object or null */
        CTL_RECORDS,                    /* each row as a record; JSON: an array of objects */
} ctl_shape;

typedef struct ctl_section {
        const char *key;                /* JSON key; NULL when the view is this one section */
        const char *title;              /* heading in the human form, or NULL */
        ctl_shape shape;
        const char *sql;
        const char *empty;              /* human form when there are no rows, e.g. "none" */
        const char *hide;               /* comma-separated columns left out of the human form */
} ctl_section;

/* Print a view: with --json one JSON value made by PostgreSQL (an object keyed
 * by the sections, or the single section's value), else each section as a
 * titled table or record. Returns 0 or a negative errno after printing why. */
int ctl_show(ctl *c, const ctl_section *sections, size_t n, const ctl_params *p);

/* The human forms, for the few places that print a result of their own. */
void ctl_print_table(FILE *f, const PGresult *res, const char *hide, const char *indent);
void ctl_print_record(FILE *f, const PGresult *res, int row, const char *hide, const char *indent);
