/* Swedish identity numbers (personnummer, samordningsnummer), civil dates and
 * ages on the Europe/Stockholm calendar. Pure functions: no I/O after tz_init. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"

typedef struct civil_date {
        int year;
        int month;                      /* 1..12 */
        int day;                        /* 1..31 */
} civil_date;

typedef enum identity_status {
        IDENTITY_ABSENT,                /* empty string */
        IDENTITY_VALID,
        IDENTITY_INVALID,               /* malformed, impossible date, bad Luhn digit, born after the report */
} identity_status;

typedef struct identity {
        identity_status status;
        civil_date birth;               /* valid when status == IDENTITY_VALID */
        bool coordination_number;       /* samordningsnummer: day + 60 */
        char normalised[13];            /* 12 digits YYYYMMDDNNNN (day as written, +60 kept), NUL */
} identity;

/* Make Europe/Stockholm the local zone of this process (the system tz database).
 * Call once at start, before any thread; returns 0 or a negative errno. */
int tz_init(void);

/* The calendar date in Europe/Stockholm at instant t. */
civil_date stockholm_date(usec_t t);

bool civil_date_valid(civil_date d);
/* "YYYY-MM-DD", a real date. */
bool civil_date_parse(const char *s, civil_date *ret);
int civil_date_compare(civil_date a, civil_date b);
/* Whole years on date `on`; a person reaches an age on the birthday itself
 * (born 29 February: on 1 March in common years). Negative if born after `on`. */
int civil_date_age(civil_date birth, civil_date on);

/* Parse 12 digits (YYYYMMDDNNNN, YYYYMMDD-NNNN) or 10 digits (YYMMDDNNNN,
 * YYMMDD-NNNN, YYMMDD+NNNN, '+' for age 100 or more; the century is the one
 * that fits the separator on report_date). Checks date and Luhn digit. */
identity_status identity_parse(const char *s, civil_date report_date, identity *ret);
