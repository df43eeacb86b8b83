/* The validation limits of the messages allvarsd reads (PoliceReferral, CaseOutcome
 * and what they contain), in one table: codec.c enforces them from it, and the
 * .proto files state each one in the comment of its field, as "Limits: TEXT."
 * with TEXT as field_limit_describe() writes it (tests/unit/test-limits.c reads both and
 * checks each limit against the codec). Rules between fields (case_id or
 * referral_id; actor.name for a social worker; a reason that is not blank) are
 * prose in the same comments and tested in tests/unit/test-codec.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

typedef enum limit_kind {
        LIMIT_ID,       /* 1..max printable ASCII characters (U+0021..U+007E) */
        LIMIT_TEXT,     /* UTF-8 without NUL bytes, at most max bytes */
        LIMIT_COUNT,    /* min..max entries (each a known value of enum_desc, if set) */
        LIMIT_TIME,     /* seconds since the epoch in [min, max), nanos 0..999999999 */
        LIMIT_ENUM,     /* a value of enum_desc; 0 (unspecified) only when not required */
        LIMIT_PRESENT,  /* a message field, or a oneof, that is set */
} limit_kind;

typedef struct field_limit {
        const char *field;      /* "Message.field" as in the .proto; a oneof by its name */
        limit_kind kind;
        bool required;
        int64_t min, max;
        const ProtobufCEnumDescriptor *enum_desc;
} field_limit;

/* One per limited field; the order of the table. */
typedef enum limit_id {
        LIM_REFERRAL_ID,
        LIM_REFERRAL_POLICE_CASE_NUMBER,
        LIM_REFERRAL_REPORTED_AT,
        LIM_REFERRAL_INCIDENT_AT,
        LIM_REFERRAL_DISTRICT,
        LIM_REFERRAL_SUBJECT,
        LIM_REFERRAL_GUARDIANS,
        LIM_REFERRAL_CONCERNS,
        LIM_REFERRAL_OFFENCES,
        LIM_REFERRAL_REPORTING_UNIT,
        LIM_REFERRAL_NARRATIVE,
        LIM_PERSON_IDENTITY_NUMBER,
        LIM_PERSON_BIRTH_DATE,
        LIM_PERSON_GIVEN_NAME,
        LIM_PERSON_FAMILY_NAME,
        LIM_GUARDIAN_NAME,
        LIM_GUARDIAN_PHONE,
        LIM_GUARDIAN_EMAIL,
        LIM_GUARDIAN_POSTAL_ADDRESS,
        LIM_OFFENCE_CODE,
        LIM_OFFENCE_SEVERITY,
        LIM_OFFENCE_COMMITTED_AT,
        LIM_OUTCOME_EVENT_ID,
        LIM_OUTCOME_CASE_ID,
        LIM_OUTCOME_REFERRAL_ID,
        LIM_OUTCOME_OCCURRED_AT,
        LIM_OUTCOME_ACTOR,
        LIM_OUTCOME_CHANGE,
        LIM_ACTOR_KIND,
        LIM_ACTOR_NAME,
        LIM_SCHEDULED_AT,
        LIM_CANCELLED_REASON,
        LIM_HELD_PARTICIPANTS,
        LIM_HELD_FOLLOW_UP,
        LIM_CONTACT_GUARDIANS,
        LIM_OVERRIDE_OUTCOME,
        LIM_OVERRIDE_REASON,
        _LIM_MAX,
} limit_id;

extern const field_limit field_limits[_LIM_MAX];

/* Seconds since the epoch of the time ranges. */
#define LIMIT_T_1900 (-2208988800LL)
#define LIMIT_T_2000 946684800LL
#define LIMIT_T_2100 4102444800LL

/* The limit in the words of the .proto comments, e.g. "required; 1 to 128 printable
 * ASCII characters". Returns the length snprintf would write. */
int field_limit_describe(const field_limit *l, char *buf, size_t size);
