/* Swedish identity numbers, civil dates and the Europe/Stockholm calendar.
 *
 * Personnummer (SKV 704, folkbokföringslagen 18 §): YYYYMMDD-NNNC or YYMMDD-NNNC,
 * '+' instead of '-' from the year the person turns 100; C is a Luhn check digit
 * over the ten digits YYMMDDNNN. Samordningsnummer (folkbokföringslagen 18 a §):
 * the same with 60 added to the day.
 *
 * Speed: glibc's localtime_r costs ~400 ns (it takes a lock and walks the zone),
 * more than the whole decision may cost. tz_init therefore records the zone's UTC
 * offsets for the years a referral can be reported in (codec: 2000-2100) once,
 * and stockholm_date looks the offset up by binary search. The table is written
 * only by tz_init, before any thread, and is read-only afterwards. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"

#define TZ_NAME ":Europe/Stockholm"
#define TZ_TABLE_FROM 946598400LL  /* 1999-12-31T00:00:00Z */
#define TZ_TABLE_TO 4102531200LL   /* 2100-01-02T00:00:00Z */
#define TZ_TABLE_MAX 512

typedef struct tz_span {
        int64_t from;                   /* first second (UTC) with this offset */
        int32_t gmtoff;                 /* seconds east of UTC */
} tz_span;

/* Written once by tz_init (see the header: before any thread), read-only afterwards. */
static tz_span tz_table[TZ_TABLE_MAX];
static size_t tz_table_len;

static int32_t gmtoff_at(int64_t t) {
        time_t tt = (time_t)t;
        struct tm tm;
        if (!localtime_r(&tt, &tm))
                return 0;
        return (int32_t)tm.tm_gmtoff;
}

/* The first second in (lo, hi] whose offset differs from lo's; offsets change once between them. */
static int64_t find_transition(int64_t lo, int64_t hi) {
        int32_t off = gmtoff_at(lo);
        while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (gmtoff_at(mid) == off)
                        lo = mid;
                else
                        hi = mid;
        }
        return hi;
}

int tz_init(void) {
        if (setenv("TZ", TZ_NAME, 1) < 0)
                return -errno;
        tzset();
        /* glibc falls back to UTC silently when the zone file is missing: check a
         * winter and a summer instant (CET +01:00, CEST +02:00). */
        if (gmtoff_at(1736942400 /* 2025-01-15T12:00Z */) != 3600 ||
            gmtoff_at(1752580800 /* 2025-07-15T12:00Z */) != 7200)
                return -ENOENT;

        /* Probe once a day: the zone never changed offset twice within a day. */
        size_t n = 0;
        int64_t prev = TZ_TABLE_FROM;
        int32_t off = gmtoff_at(prev);
        tz_table[n++] = (tz_span){prev, off};
        for (int64_t t = prev + 86400; t <= TZ_TABLE_TO; t += 86400) {
                int32_t o = gmtoff_at(t);
                if (o != off) {
                        if (n >= TZ_TABLE_MAX) {
                                tz_table_len = 0;
                                return -E2BIG;
                        }
                        int64_t at = find_transition(prev, t);
                        off = o;
                        tz_table[n++] = (tz_span){at, o};
                }
                prev = t;
        }
        tz_table_len = n;
        return 0;
}

civil_date stockholm_date(usec_t t) {
        int64_t secs = clock_floor_div(t, USEC_PER_SEC);
        int32_t off;
        if (tz_table_len > 0 && secs >= tz_table[0].from && secs < TZ_TABLE_TO) {
                size_t lo = 0, hi = tz_table_len;      /* last span with from <= secs */
                while (hi - lo > 1) {
                        size_t mid = lo + (hi - lo) / 2;
                        if (tz_table[mid].from <= secs)
                                lo = mid;
                        else
                                hi = mid;
                }
                off = tz_table[lo].gmtoff;
        } else
                off = gmtoff_at(secs);
        int64_t year;
        int month, day;
        clock_civil_from_days(clock_floor_div(secs + off, 86400), &year, &month, &day);
        return (civil_date){(int)year, month, day};
}

static bool leap_year(int y) {
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m) {
        static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        return m == 2 && leap_year(y) ? 29 : dim[m - 1];
}

bool civil_date_valid(civil_date d) {
        return d.year >= 1 && d.year <= 9999 && d.month >= 1 && d.month <= 12 && d.day >= 1 &&
               d.day <= days_in_month(d.year, d.month);
}

static bool digits(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

static int number(const char *s, size_t n) {
        int v = 0;
        for (size_t i = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
        return v;
}

bool civil_date_parse(const char *s, civil_date *ret) {
        if (!s || strlen(s) != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
            !digits(s + 8, 2))
                return false;
        civil_date d = {number(s, 4), number(s + 5, 2), number(s + 8, 2)};
        if (!civil_date_valid(d))
                return false;
        *ret = d;
        return true;
}

int civil_date_compare(civil_date a, civil_date b) {
        if (a.year != b.year)
                return a.year < b.year ? -1 : 1;
        if (a.month != b.month)
                return a.month < b.month ? -1 : 1;
        if (a.day != b.day)
                return a.day < b.day ? -1 : 1;
        return 0;
}

int civil_date_age(civil_date birth, civil_date on) {
        int age = on.year - birth.year;
        /* Born 29 February: (2,28) < (2,29), so the birthday counts from 1 March in common years. */
        if (on.month < birth.month || (on.month == birth.month && on.day < birth.day))
                age--;
        return age;
}

/* Luhn over the ten digits YYMMDDNNNC: weights 2,1,2,1,... from the left. */
static bool luhn_ok(const char d[10]) {
        int sum = 0;
        for (int i = 0; i < 10; i++) {
                int v = (d[i] - '0') * (i % 2 == 0 ? 2 : 1);
                sum += v > 9 ? v - 9 : v;
        }
        return sum % 10 == 0;
}

identity_status identity_parse(const char *s, civil_date report_date, identity *ret) {
        *ret = (identity){.status = IDENTITY_INVALID};
        if (!s || !*s) {
                ret->status = IDENTITY_ABSENT;
                return IDENTITY_ABSENT;
        }
        size_t len = strlen(s);
        char ten[10];                   /* YYMMDDNNNC */
        int century = -1;               /* known for 12 digits */
        bool plus = false;
        if (len == 12 && digits(s, 12)) {
                century = number(s, 2);
                memcpy(ten, s + 2, 10);
        } else if (len == 13 && digits(s, 8) && s[8] == '-' && digits(s + 9, 4)) {
                century = number(s, 2);
                memcpy(ten, s + 2, 6);
                memcpy(ten + 6, s + 9, 4);
        } else if (len == 10 && digits(s, 10)) {
                memcpy(ten, s, 10);
        } else if (len == 11 && digits(s, 6) && (s[6] == '-' || s[6] == '+') && digits(s + 7, 4)) {
                plus = s[6] == '+';
                memcpy(ten, s, 6);
                memcpy(ten + 6, s + 7, 4);
        } else
                return IDENTITY_INVALID;

        int yy = number(ten, 2), month = number(ten + 2, 2), day = number(ten + 4, 2);
        bool coordination = day > 60;
        if (coordination)
                day -= 60;

        int year;
        if (century >= 0)
                year = century * 100 + yy;
        else {
                /* Without '+': the most recent year ending in yy such that the birth date
                 * is not after the report date (the person is under 100). With '+': a
                 * century earlier, so the person is 100 or older on the report date. */
                year = report_date.year - ((report_date.year - yy) % 100 + 100) % 100;
                if (month > report_date.month || (month == report_date.month && day > report_date.day)) {
                        if (year == report_date.year)
                                year -= 100;
                }
                if (plus)
                        year -= 100;
        }
        civil_date birth = {year, month, day};
        if (!civil_date_valid(birth) || !luhn_ok(ten) || civil_date_compare(birth, report_date) > 0)
                return IDENTITY_INVALID;

        ret->status = IDENTITY_VALID;
        ret->birth = birth;
        ret->coordination_number = coordination;
        ret->normalised[0] = (char)('0' + year / 1000 % 10);
        ret->normalised[1] = (char)('0' + year / 100 % 10);
        memcpy(ret->normalised + 2, ten, 10);
        ret->normalised[12] = '\0';
        return IDENTITY_VALID;
}
