/* Policy profiles: named, versioned rule sets (docs/domain.md "Policy profiles").
 * The four built-in profiles and their overridable parameters. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/* Marks: what a referral is about, as the profiles see it. Stored with every
 * referral so that "first time" can be judged on the person's history under
 * any profile, including one switched to later. */
enum {
        MARK_INAPPROPRIATE_ENVIRONMENT = 1u << 0,  /* CONCERN_INAPPROPRIATE_ENVIRONMENT */
        MARK_CRIMINAL_BEHAVIOUR        = 1u << 1,  /* CONCERN_CRIMINAL_BEHAVIOUR */
        MARK_SUSPECTED_CRIME           = 1u << 2,  /* CONCERN_SUSPECTED_CRIME or any offence */
        MARK_IMPRISONABLE_OFFENCE      = 1u << 3,  /* an offence punishable by imprisonment */
        MARK_OFFENCE_LISTED            = 1u << 4,  /* at least one offence */
};

typedef enum deadline_kind {
        DEADLINE_NONE = 0,
        DEADLINE_CONVERSATION = 1,      /* numbers as allvarssamtal.v1.DeadlineKind */
        DEADLINE_SUMMONS = 2,
} deadline_kind;

#define PROFILE_NAME_MAX 64

typedef struct profile {
        char name[PROFILE_NAME_MAX];
        unsigned version;
        int min_age;                    /* inclusive, at the report date */
        int max_age;                    /* inclusive */
        uint32_t qualifying_marks;      /* a referral qualifies when it has any of these */
        uint32_t first_time_marks;      /* 0: no first-time rule; else earlier referrals with any of these disqualify */
        bool imprisonable_required;     /* DS 2024:30: explain NOT_IMPRISONABLE */
        usec_t limit;                   /* from reported_at (or from the last deferral resolved) */
        deadline_kind deadline_kind;
        usec_t protective_assessment_within;  /* "genast"; practice 24 h */
        usec_t late_referral_after;     /* incident older than this at report: LATE_REFERRAL */
        int adult_age;                  /* guardians are contacted/summoned below this age (18) */
        int criminal_responsibility_age;/* UNDER_15 below this age (15) */
        double at_risk_fraction;        /* AT_RISK alert after this share of the limit (0.75) */
} profile;

#define PROFILE_DEFAULT "goteborg-motion-2024"

/* AT_RISK after 75 % of the limit, unless a profile says otherwise (the project's
 * choice, docs/domain.md "Deadline watch"). */
#define PROFILE_AT_RISK_FRACTION 0.75

/* Built-in profiles, in a fixed order. */
size_t profiles_builtin_count(void);
const profile *profiles_builtin(size_t i);
const profile *profiles_find(const char *name);

/* Override one parameter by its configuration name (min_age, max_age,
 * limit_hours, protective_assessment_hours, late_referral_days, first_time,
 * adult_age, criminal_responsibility_age, at_risk_percent, version).
 * Returns 0, -ENOENT for an unknown key, -EINVAL for a bad value. */
int profile_set(profile *p, const char *key, const char *value);

/* The names of the parameters profile_set accepts, NULL-terminated. */
extern const char *const profile_param_names[];

/* "name=...;version=...;min_age=...;..." : every effective parameter, stable
 * order, for the log at start and reload and for the decision record. */
int profile_describe(const profile *p, char *buf, size_t size);
