/* The validation limits of incoming messages: the table codec.c enforces and the
 * .proto comments state (field_limits.h). Sane bounds for a real referral or
 * outcome; anything beyond them is malformed and becomes a dead letter. */
#include <stdio.h>
#include <time.h>

#include "field_limits.h"
#include "allvarssamtal/v1/referral.pb-c.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "allvarssamtal/v1/decision.pb-c.h"

#define ID(f, req, max)          {f, LIMIT_ID, req, 1, max, NULL}
#define TEXT(f, req, max)        {f, LIMIT_TEXT, req, 0, max, NULL}
#define COUNT(f, req, min, max)  {f, LIMIT_COUNT, req, min, max, NULL}
#define TIME(f, req, from, to)   {f, LIMIT_TIME, req, from, to, NULL}
#define ENUM(f, req, desc)       {f, LIMIT_ENUM, req, 0, 0, &desc}
#define PRESENT(f)               {f, LIMIT_PRESENT, true, 0, 0, NULL}

#define MAX_ID 128
#define MAX_SHORT 128                   /* case number, district, identity number, birth date, offence code */
#define MAX_NAME 256
#define MAX_PHONE 64
#define MAX_EMAIL 320                   /* RFC 5321: 64 + @ + 255 */
#define MAX_ADDRESS 1024
#define MAX_UNIT 256
#define MAX_NARRATIVE (64 * 1024)
#define MAX_OVERRIDE_REASON (16 * 1024)

const field_limit field_limits[_LIM_MAX] = {
        [LIM_REFERRAL_ID] = ID("PoliceReferral.referral_id", true, MAX_ID),
        [LIM_REFERRAL_POLICE_CASE_NUMBER] = TEXT("PoliceReferral.police_case_number", false, MAX_SHORT),
        [LIM_REFERRAL_REPORTED_AT] = TIME("PoliceReferral.reported_at", true, LIMIT_T_2000, LIMIT_T_2100),
        [LIM_REFERRAL_INCIDENT_AT] = TIME("PoliceReferral.incident_at", false, LIMIT_T_1900, LIMIT_T_2100),
        [LIM_REFERRAL_DISTRICT] = TEXT("PoliceReferral.district", false, MAX_SHORT),
        [LIM_REFERRAL_SUBJECT] = PRESENT("PoliceReferral.subject"),
        [LIM_REFERRAL_GUARDIANS] = COUNT("PoliceReferral.guardians", false, 0, 32),
        [LIM_REFERRAL_CONCERNS] = {"PoliceReferral.concerns", LIMIT_COUNT, false, 0, 32,
                                   &allvarssamtal__v1__concern__descriptor},
        [LIM_REFERRAL_OFFENCES] = COUNT("PoliceReferral.offences", false, 0, 64),
        [LIM_REFERRAL_REPORTING_UNIT] = TEXT("PoliceReferral.reporting_unit", false, MAX_UNIT),
        [LIM_REFERRAL_NARRATIVE] = TEXT("PoliceReferral.narrative", false, MAX_NARRATIVE),
        [LIM_PERSON_IDENTITY_NUMBER] = TEXT("Person.identity_number", false, MAX_SHORT),
        [LIM_PERSON_BIRTH_DATE] = TEXT("Person.birth_date", false, MAX_SHORT),
        [LIM_PERSON_GIVEN_NAME] = TEXT("Person.given_name", false, MAX_NAME),
        [LIM_PERSON_FAMILY_NAME] = TEXT("Person.family_name", false, MAX_NAME),
        [LIM_GUARDIAN_NAME] = TEXT("Guardian.name", false, MAX_NAME),
        [LIM_GUARDIAN_PHONE] = TEXT("Guardian.phone", false, MAX_PHONE),
        [LIM_GUARDIAN_EMAIL] = TEXT("Guardian.email", false, MAX_EMAIL),
        [LIM_GUARDIAN_POSTAL_ADDRESS] = TEXT("Guardian.postal_address", false, MAX_ADDRESS),
        [LIM_OFFENCE_CODE] = TEXT("Offence.code", false, MAX_SHORT),
        [LIM_OFFENCE_SEVERITY] = ENUM("Offence.severity", false, allvarssamtal__v1__severity__descriptor),
        [LIM_OFFENCE_COMMITTED_AT] = TIME("Offence.committed_at", false, LIMIT_T_1900, LIMIT_T_2100),
        [LIM_OUTCOME_EVENT_ID] = ID("CaseOutcome.event_id", true, MAX_ID),
        [LIM_OUTCOME_CASE_ID] = ID("CaseOutcome.case_id", false, MAX_ID),
        [LIM_OUTCOME_REFERRAL_ID] = ID("CaseOutcome.referral_id", false, MAX_ID),
        [LIM_OUTCOME_OCCURRED_AT] = TIME("CaseOutcome.occurred_at", true, LIMIT_T_2000, LIMIT_T_2100),
        [LIM_OUTCOME_ACTOR] = PRESENT("CaseOutcome.actor"),
        [LIM_OUTCOME_CHANGE] = PRESENT("CaseOutcome.change"),
        [LIM_ACTOR_KIND] = ENUM("Actor.kind", true, allvarssamtal__v1__actor_kind__descriptor),
        [LIM_ACTOR_NAME] = TEXT("Actor.name", false, MAX_NAME),
        [LIM_SCHEDULED_AT] = TIME("ConversationScheduled.scheduled_at", true, LIMIT_T_2000, LIMIT_T_2100),
        [LIM_CANCELLED_REASON] = ENUM("CaseCancelled.reason", false, allvarssamtal__v1__cancel_reason__descriptor),
        /* Each code once is enough; a few repeats are tolerated (stored once). */
        [LIM_HELD_PARTICIPANTS] = {"ConversationHeld.participants", LIMIT_COUNT, false, 0, 8,
                                   &allvarssamtal__v1__participant__descriptor},
        [LIM_HELD_FOLLOW_UP] = {"ConversationHeld.follow_up", LIMIT_COUNT, false, 0, 8,
                                &allvarssamtal__v1__follow_up__descriptor},
        [LIM_CONTACT_GUARDIANS] = COUNT("ContactDetailsSupplied.guardians", true, 1, 32),
        [LIM_OVERRIDE_OUTCOME] = ENUM("DecisionOverride.outcome", true, allvarssamtal__v1__outcome__descriptor),
        [LIM_OVERRIDE_REASON] = TEXT("DecisionOverride.reason", true, MAX_OVERRIDE_REASON),
};

static void format_time(int64_t t, char buf[static 32]) {
        time_t tt = (time_t)t;
        struct tm tm;
        if (!gmtime_r(&tt, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                snprintf(buf, 32, "%lld", (long long)t);
}

int field_limit_describe(const field_limit *l, char *buf, size_t size) {
        const char *req = l->required ? "required; " : "";
        char from[32], to[32];
        switch (l->kind) {
        case LIMIT_ID:
                return snprintf(buf, size, "%s%lld to %lld printable ASCII characters (U+0021 to U+007E)",
                                l->required ? "required; " : "empty or ", (long long)l->min, (long long)l->max);
        case LIMIT_TEXT:
                return snprintf(buf, size, "%sat most %lld bytes of UTF-8, no NUL", req, (long long)l->max);
        case LIMIT_COUNT:
                if (l->enum_desc)
                        return snprintf(buf, size, "%s%lld to %lld entries, each a known %s", req, (long long)l->min,
                                        (long long)l->max, l->enum_desc->short_name);
                return snprintf(buf, size, "%s%lld to %lld entries", req, (long long)l->min, (long long)l->max);
        case LIMIT_TIME:
                format_time(l->min, from);
                format_time(l->max, to);
                return snprintf(buf, size, "%sfrom %s, before %s", req, from, to);
        case LIMIT_ENUM:
                if (l->required)
                        return snprintf(buf, size, "required; a known %s other than %s", l->enum_desc->short_name,
                                        l->enum_desc->values[0].name);
                return snprintf(buf, size, "a known %s", l->enum_desc->short_name);
        case LIMIT_PRESENT:
                return snprintf(buf, size, "required");
        }
        return snprintf(buf, size, "?");
}
