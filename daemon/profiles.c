/* The four built-in policy profiles and their overridable parameters. Each
 * rule's line names its source document; docs/domain.md "Policy profiles" and
 * "Parameters and their defaults" explain them. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "profiles.h"

/* The same for every built-in profile (docs/domain.md "Parameters and their defaults"). */
#define PROFILE_DEFAULTS                                                                               \
        .version = 1,                                                                                  \
        /* SoL 11 kap. 1 a §: "genast"; 24 h in practice */                                            \
        .protective_assessment_within = 24 * USEC_PER_HOUR,                                            \
        /* the project's choice, for LATE_REFERRAL */                                                  \
        .late_referral_after = 14 * USEC_PER_DAY,                                                      \
        /* Ds 2024:30: guardians are summoned for a child under 18 */                                  \
        .adult_age = 18,                                                                               \
        /* BrB 1 kap. 6 §: the age of criminal responsibility */                                       \
        .criminal_responsibility_age = 15,                                                             \
        /* the project's choice, for AT_RISK */                                                        \
        .at_risk_fraction = PROFILE_AT_RISK_FRACTION

static const profile builtin[] = {
        {
                /* Göteborg, motion Handling 2024 nr 135 (docs/domain.md "Policy profiles"). */
                .name = "goteborg-motion-2024",
                .min_age = 10,                                  /* the motion: ages 10-17 */
                .max_age = 17,
                /* the motion: any of the three concerns */
                .qualifying_marks = MARK_INAPPROPRIATE_ENVIRONMENT | MARK_CRIMINAL_BEHAVIOUR | MARK_SUSPECTED_CRIME,
                .first_time_marks = 0,                          /* the motion: no first-time rule */
                .imprisonable_required = false,
                .limit = 48 * USEC_PER_HOUR,                    /* the motion: the conversation within 48 h */
                .deadline_kind = DEADLINE_CONVERSATION,
                PROFILE_DEFAULTS,
        },
        {
                /* Stockholm's budget assignment 2019-2022 "allvarssamtal inom 48 timmar"
                 * (docs/domain.md "Policy profiles"). */
                .name = "stockholm-2019",
                .min_age = 0,                                   /* the assignment: ages 0-20 */
                .max_age = 20,
                .qualifying_marks = MARK_SUSPECTED_CRIME,       /* the assignment: a suspected crime */
                .first_time_marks = MARK_SUSPECTED_CRIME,       /* the assignment: the first suspicion only */
                .imprisonable_required = false,
                .limit = 48 * USEC_PER_HOUR,                    /* the assignment: the conversation within 48 h */
                .deadline_kind = DEADLINE_CONVERSATION,
                PROFILE_DEFAULTS,
        },
        {
                /* The proposal Ds 2024:30 (docs/domain.md "Policy profiles"). */
                .name = "ds-2024-30",
                .min_age = 0,                                   /* Ds 2024:30: ages 0-20 */
                .max_age = 20,
                .qualifying_marks = MARK_IMPRISONABLE_OFFENCE,  /* Ds 2024:30: punishable by imprisonment */
                .first_time_marks = MARK_IMPRISONABLE_OFFENCE,  /* Ds 2024:30: the first suspicion only */
                .imprisonable_required = true,                  /* Ds 2024:30: say NOT_IMPRISONABLE */
                .limit = 24 * USEC_PER_HOUR,                    /* Ds 2024:30: the summons within 24 h */
                .deadline_kind = DEADLINE_SUMMONS,
                PROFILE_DEFAULTS,
        },
        {
                /* Trollhättan's TUTI, cited in Hisingen's answer to the Göteborg motion
                 * (docs/domain.md "Policy profiles"). */
                .name = "trollhattan-tuti",
                .min_age = 9,                                   /* TUTI: ages 9-17 */
                .max_age = 17,
                /* TUTI: a suspected crime or criminal behaviour, the first time only */
                .qualifying_marks = MARK_SUSPECTED_CRIME | MARK_CRIMINAL_BEHAVIOUR,
                .first_time_marks = MARK_SUSPECTED_CRIME | MARK_CRIMINAL_BEHAVIOUR,
                .imprisonable_required = false,
                .limit = 14 * USEC_PER_DAY,                     /* TUTI: the conversation within 14 days */
                .deadline_kind = DEADLINE_CONVERSATION,
                PROFILE_DEFAULTS,
        },
};

size_t profiles_builtin_count(void) {
        return sizeof builtin / sizeof builtin[0];
}

const profile *profiles_builtin(size_t i) {
        return i < profiles_builtin_count() ? &builtin[i] : NULL;
}

const profile *profiles_find(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < profiles_builtin_count(); i++)
                if (strcmp(builtin[i].name, name) == 0)
                        return &builtin[i];
        return NULL;
}

const char *const profile_param_names[] = {
        "min_age",   "max_age",   "limit_hours",
        "protective_assessment_hours", "late_referral_days", "first_time",
        "adult_age", "criminal_responsibility_age", "at_risk_percent",
        "version",   NULL,
};

/* A whole decimal number in [min, max], nothing else (no sign, no blanks). */
static int parse_long(const char *s, long min, long max, long *ret) {
        if (!s || *s < '0' || *s > '9')
                return -EINVAL;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno != 0 || *end != '\0' || v < min || v > max)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int parse_bool(const char *s, bool *ret) {
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < 4; i++) {
                if (strcmp(s, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcmp(s, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

int profile_set(profile *p, const char *key, const char *value) {
        long v;
        if (!p || !key)
                return -EINVAL;
        if (strcmp(key, "min_age") == 0 || strcmp(key, "max_age") == 0 || strcmp(key, "adult_age") == 0 ||
            strcmp(key, "criminal_responsibility_age") == 0) {
                if (parse_long(value, 0, 150, &v) < 0)
                        return -EINVAL;
                if (strcmp(key, "min_age") == 0)
                        p->min_age = (int)v;
                else if (strcmp(key, "max_age") == 0)
                        p->max_age = (int)v;
                else if (strcmp(key, "adult_age") == 0)
                        p->adult_age = (int)v;
                else
                        p->criminal_responsibility_age = (int)v;
                return 0;
        }
        if (strcmp(key, "limit_hours") == 0) {
                if (parse_long(value, 1, 24 * 366, &v) < 0)
                        return -EINVAL;
                p->limit = v * USEC_PER_HOUR;
                return 0;
        }
        if (strcmp(key, "protective_assessment_hours") == 0) {
                if (parse_long(value, 1, 24 * 366, &v) < 0)
                        return -EINVAL;
                p->protective_assessment_within = v * USEC_PER_HOUR;
                return 0;
        }
        if (strcmp(key, "late_referral_days") == 0) {
                if (parse_long(value, 0, 3660, &v) < 0)
                        return -EINVAL;
                p->late_referral_after = v * USEC_PER_DAY;
                return 0;
        }
        if (strcmp(key, "first_time") == 0) {
                bool b;
                if (parse_bool(value, &b) < 0)
                        return -EINVAL;
                /* First time: no earlier referral that qualified under this profile
                 * (docs/domain.md "Policy profiles"). */
                p->first_time_marks = b ? p->qualifying_marks : 0;
                return 0;
        }
        if (strcmp(key, "at_risk_percent") == 0) {
                if (parse_long(value, 1, 99, &v) < 0)
                        return -EINVAL;
                p->at_risk_fraction = (double)v / 100.0;
                return 0;
        }
        if (strcmp(key, "version") == 0) {
                if (parse_long(value, 1, INT_MAX, &v) < 0)
                        return -EINVAL;
                p->version = (unsigned)v;
                return 0;
        }
        return -ENOENT;
}

static const char *const mark_names[] = {
        "INAPPROPRIATE_ENVIRONMENT", "CRIMINAL_BEHAVIOUR", "SUSPECTED_CRIME", "IMPRISONABLE_OFFENCE", "OFFENCE_LISTED",
};

static size_t append_marks(char *buf, size_t size, size_t at, uint32_t marks) {
        bool first = true;
        if (marks == 0)
                return at + (size_t)snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0, "NONE");
        for (size_t i = 0; i < sizeof mark_names / sizeof mark_names[0]; i++) {
                if (!(marks & (1u << i)))
                        continue;
                at += (size_t)snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0, "%s%s",
                                       first ? "" : "|", mark_names[i]);
                first = false;
        }
        return at;
}

/* Hours or days as a whole number when whole, else with decimals. */
static double in_units(usec_t v, usec_t unit) {
        return (double)v / (double)unit;
}

int profile_describe(const profile *p, char *buf, size_t size) {
        size_t at = 0;
#define APPEND(...) at += (size_t)snprintf(at < size ? buf + at : NULL, at < size ? size - at : 0, __VA_ARGS__)
        APPEND("name=%s;version=%u;min_age=%d;max_age=%d;qualifying=", p->name, p->version, p->min_age,
               p->max_age);
        at = append_marks(buf, size, at, p->qualifying_marks);
        APPEND(";first_time=");
        at = append_marks(buf, size, at, p->first_time_marks);
        APPEND(";imprisonable_required=%s;limit_hours=%g;deadline_kind=%s;protective_assessment_hours=%g;"
               "late_referral_days=%g;adult_age=%d;criminal_responsibility_age=%d;at_risk_percent=%g",
               p->imprisonable_required ? "yes" : "no", in_units(p->limit, USEC_PER_HOUR),
               p->deadline_kind == DEADLINE_SUMMONS ? "SUMMONS" : "CONVERSATION",
               in_units(p->protective_assessment_within, USEC_PER_HOUR),
               in_units(p->late_referral_after, USEC_PER_DAY), p->adult_age, p->criminal_responsibility_age,
               p->at_risk_fraction * 100.0);
#undef APPEND
        if (size > 0 && at >= size) {
                buf[size - 1] = '\0';
                return -ENOBUFS;
        }
        return 0;
}
