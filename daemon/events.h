/* The events allvarsd publishes, built as outbox rows: which events a decision,
 * an outcome or an alert causes, their stable ids, and their protobuf payloads.
 * Pure: no I/O. The store writes the rows in the deciding transaction; the
 * relay publishes them (CloudEvents Kafka binding, binary mode). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "ids.h"
#include "rules.h"

#define CE_TYPE_SCHEDULING  "se.allvarssamtal.v1.SchedulingRequest"
#define CE_TYPE_WITHDRAWN   "se.allvarssamtal.v1.SchedulingWithdrawn"
#define CE_TYPE_FEEDBACK    "se.allvarssamtal.v1.PoliceFeedback"
#define CE_TYPE_ALERT       "se.allvarssamtal.v1.DeadlineAlert"
#define CE_TYPE_DEAD_LETTER "se.allvarssamtal.v1.DeadLetter"

/* Numbers as allvarssamtal.v1.FeedbackStatus. */
typedef enum feedback_status {
        FEEDBACK_RECEIVED = 1,
        FEEDBACK_ASSESSED = 2,
        FEEDBACK_CONTACT_INFO_REQUESTED = 3,
        FEEDBACK_CLEARANCE_REQUESTED = 4,
        FEEDBACK_SCHEDULED = 5,
        FEEDBACK_HELD = 6,
        FEEDBACK_FAMILY_DECLINED = 7,
        FEEDBACK_NOT_HELD_IN_TIME = 8,
        FEEDBACK_CANCELLED = 9,
} feedback_status;

/* Numbers as allvarssamtal.v1.SchedulingRequestKind: why a request was made. */
typedef enum scheduling_kind {
        SCHEDULING_NEW = 1,
        SCHEDULING_CONTACT_DETAILS_UPDATED = 2,
        SCHEDULING_DEFERRAL_RESOLVED = 3,
        SCHEDULING_OVERRIDDEN = 4,
} scheduling_kind;

/* Numbers as allvarssamtal.v1.WithdrawalReason; 0: nothing withdrawn. */
typedef enum withdrawal_reason {
        WITHDRAWAL_NONE = 0,
        WITHDRAWAL_CANCELLED = 1,
        WITHDRAWAL_FAMILY_DECLINED = 2,
        WITHDRAWAL_NOT_ELIGIBLE = 3,
        WITHDRAWAL_ON_HOLD = 4,
        WITHDRAWAL_PROTECTIVE_ASSESSMENT = 5,
        WITHDRAWAL_HELD = 6,
} withdrawal_reason;

/* A new case's revision, that of its decision; every change of the case adds one. */
#define CASE_FIRST_REVISION 1

/* Numbers as allvarssamtal.v1.AlertKind. */
typedef enum alert_kind {
        ALERT_AT_RISK = 1,
        ALERT_MISSED = 2,
        ALERT_PROTECTIVE_ASSESSMENT_OVERDUE = 3,
        ALERT_PARTITION_GAP = 4,        /* for operators: input gone before it was read */
        ALERT_EVENT_UNDELIVERABLE = 5,  /* an event of the case the brokers refuse */
} alert_kind;

/* A Kafka key: the case id, or "<topic>/<partition>" for a dead letter
 * (topic names are up to 249 characters). */
#define EVENT_KEY_MAX 272

typedef struct outbox_event {
        char event_id[UUID_STR_LEN];    /* ce_id */
        const char *topic;              /* points into the config */
        char key[EVENT_KEY_MAX];        /* the case id; "<topic>/<partition>" for dead letters */
        const char *ce_type;
        usec_t ce_time;
        uint8_t *payload;               /* malloc'd protobuf bytes */
        size_t len;
        /* Another writer may make this very event too (an alert: on a
         * referral's arrival and by the deadline watch), so it is stored as
         * one that may exist already (store_rows_events). */
        bool again;
} outbox_event;

typedef struct event_list {
        outbox_event *v;
        size_t n, cap;
} event_list;

void event_list_clear(event_list *l);   /* frees payloads, keeps capacity */
void event_list_free(event_list *l);

/* What the police may see of a case: the referral's own ids. */
typedef struct feedback_ref {
        const char *case_id;
        const char *referral_id;
        const char *police_case_number;
        bool feedback_requested;
} feedback_ref;

/* Would this status be sent under the configuration (level, always) for a
 * referral that did or did not ask for feedback? Requests to the police
 * (CONTACT_INFO_REQUESTED, CLEARANCE_REQUESTED) are sent at the conversation
 * level whether or not feedback was asked for; statuses only when asked or
 * feedback.always. The statutory level sends RECEIVED and ASSESSED only. */
bool events_feedback_wanted(const config *cfg, feedback_status status, bool feedback_requested);

/* The events of a fresh decision: feedback RECEIVED and ASSESSED, the requests
 * for contact details (CONTACT_MISSING) and clearance (PRELIMINARY_INVESTIGATION),
 * and a SchedulingRequest for an ELIGIBLE case. Alerts are not included: the
 * store raises DEADLINE_PASSED_ON_ARRIVAL's alert with events_alert(). */
int events_for_decision(const config *cfg, const PoliceReferral *r, const decision *d,
                        const char *case_id, usec_t now, event_list *out);

/* One feedback status. `name` makes the event id unique within the case
 * (e.g. "feedback/SCHEDULED/<outcome event id>"). meeting_at only for SCHEDULED,
 * assessment only for ASSESSED. Appends nothing when not wanted. */
int events_feedback(const config *cfg, const feedback_ref *ref, feedback_status status,
                    decision_outcome assessment, usec_t meeting_at, const char *name,
                    usec_t now, event_list *out);

/* A scheduling request for a case that became ELIGIBLE (at decision time or
 * when its last deferral was resolved). guardians: the contact details known. */
typedef struct scheduling_info {
        const char *case_id;
        const char *district;
        usec_t deadline;
        deadline_kind deadline_kind;
        const char *child_given_name;
        const char *child_family_name;
        bool summon_guardians;
        Allvarssamtal__V1__Guardian *const *guardians;
        size_t n_guardians;
        const char *police_reporting_unit;
        const profile *profile;
        const char *name;               /* event id name, e.g. "scheduling/1" */
        uint64_t revision;              /* the case's, after the change that made the request */
        scheduling_kind kind;
} scheduling_info;
int events_scheduling(const config *cfg, const scheduling_info *info, usec_t now, event_list *out);

/* A withdrawal of the case's scheduling request (docs/contract.md "Requests and withdrawals"),
 * at the case's revision after the change that caused it, which happened at `at`.
 * Event id from (case, "scheduling/withdrawn/<revision>"). */
int events_scheduling_withdrawn(const config *cfg, const char *case_id, const char *district, uint64_t revision,
                                withdrawal_reason reason, usec_t at, usec_t now, event_list *out);
const char *withdrawal_reason_code(withdrawal_reason r); /* "CANCELLED", ... */

/* A deadline alert; event id from (case, kind, due_at): once per case and due time. */
int events_alert(const config *cfg, const char *case_id, alert_kind kind, usec_t due_at,
                 deadline_kind dk, const char *district, const char *case_state,
                 usec_t now, event_list *out);

/* Input messages gone from Kafka before they were read: the offsets [from, to)
 * of topic's partition. Keyed "<topic>/<partition>"; event id from (topic,
 * partition, from): once per gap. */
int events_partition_gap(const config *cfg, const char *topic, int32_t partition, int64_t from, int64_t to,
                         usec_t now, event_list *out);

/* An event of the case (key) that the brokers refuse for good (too large):
 * dead-lettered; event id from (key, the refused event's id). */
int events_undeliverable(const config *cfg, const char *key, const char *event_id, const char *topic, usec_t now,
                         event_list *out);

/* A dead letter; event id from (topic, partition, offset). case_id may be NULL. */
int events_dead_letter(const config *cfg, const char *topic, int32_t partition, int64_t offset,
                       const codec_error *err, const char *case_id, usec_t now, event_list *out);

/* Where a rejected message was and what its producer can match it by. */
typedef struct dead_letter_source {
        const char *topic;
        int32_t partition;
        int64_t offset;
        const void *key;                /* its Kafka key; NULL when it had none */
        size_t key_len;
        const char *ce_id;              /* its ce_id header; NULL when none */
        const char *event_id;           /* its own id when decodable (event_id, referral_id); NULL */
} dead_letter_source;
/* events_dead_letter with the source's key and ids in the DeadLetter. */
int events_dead_letter_of(const config *cfg, const dead_letter_source *src, const codec_error *err,
                          const char *case_id, usec_t now, event_list *out);

const char *alert_kind_code(alert_kind k);           /* "AT_RISK", ... */
const char *feedback_status_code(feedback_status s); /* "RECEIVED", ... */
