/* The events allvarsd publishes, as outbox rows. See events.h.
 *
 * Every event id is a name-based UUID (ids.h) of the case and a name that says
 * which event of the case it is, so a replay or a retried batch writes the same
 * id and the outbox's UNIQUE (event_id) keeps it once; consumers drop the rare
 * duplicate after a relay crash by the same id (ce_id). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "allvarssamtal/v1/alert.pb-c.h"
#include "allvarssamtal/v1/dead_letter.pb-c.h"
#include "allvarssamtal/v1/feedback.pb-c.h"
#include "allvarssamtal/v1/scheduling.pb-c.h"

#define EVENT_NAME_MAX 160

void event_list_clear(event_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i].payload);
        l->n = 0;
}

void event_list_free(event_list *l) {
        if (!l)
                return;
        event_list_clear(l);
        free(l->v);
        l->v = NULL;
        l->cap = 0;
}

/* Pack m into a new entry of l. The entry's event id, key and topic are set by
 * the caller's arguments; on failure nothing is appended. */
static int event_append(event_list *l, const ProtobufCMessage *m, const char *event_id, const char *topic,
                        const char *key, const char *ce_type, usec_t now) {
        if (!topic || !key || strlen(key) >= EVENT_KEY_MAX)
                return -EINVAL;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 8;
                outbox_event *v = realloc(l->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                l->v = v;
                l->cap = cap;
        }
        uint8_t *buf = NULL;
        size_t len = codec_pack(m, &buf);
        if (!buf)
                return -ENOMEM;
        outbox_event *e = &l->v[l->n++];
        memset(e, 0, sizeof *e);
        snprintf(e->event_id, sizeof e->event_id, "%s", event_id);
        snprintf(e->key, sizeof e->key, "%s", key);
        e->topic = topic;
        e->ce_type = ce_type;
        e->ce_time = now;
        e->payload = buf;
        e->len = len;
        return 0;
}

/* protobuf-c wants char * for strings it only reads. */
static char *str(const char *s) {
        return (char *)(s ? s : "");
}

const char *feedback_status_code(feedback_status s) {
        switch (s) {
        case FEEDBACK_RECEIVED: return "RECEIVED";
        case FEEDBACK_ASSESSED: return "ASSESSED";
        case FEEDBACK_CONTACT_INFO_REQUESTED: return "CONTACT_INFO_REQUESTED";
        case FEEDBACK_CLEARANCE_REQUESTED: return "CLEARANCE_REQUESTED";
        case FEEDBACK_SCHEDULED: return "SCHEDULED";
        case FEEDBACK_HELD: return "HELD";
        case FEEDBACK_FAMILY_DECLINED: return "FAMILY_DECLINED";
        case FEEDBACK_NOT_HELD_IN_TIME: return "NOT_HELD_IN_TIME";
        case FEEDBACK_CANCELLED: return "CANCELLED";
        }
        return "UNSPECIFIED";
}

const char *alert_kind_code(alert_kind k) {
        switch (k) {
        case ALERT_AT_RISK: return "AT_RISK";
        case ALERT_MISSED: return "MISSED";
        case ALERT_PROTECTIVE_ASSESSMENT_OVERDUE: return "PROTECTIVE_ASSESSMENT_OVERDUE";
        case ALERT_PARTITION_GAP: return "PARTITION_GAP";
        case ALERT_EVENT_UNDELIVERABLE: return "EVENT_UNDELIVERABLE";
        }
        return "UNSPECIFIED";
}

static bool feedback_is_request(feedback_status s) {
        return s == FEEDBACK_CONTACT_INFO_REQUESTED || s == FEEDBACK_CLEARANCE_REQUESTED;
}

bool events_feedback_wanted(const config *cfg, feedback_status status, bool feedback_requested) {
        /* SoL 14 kap. 1 b § (SFS 2025:400) covers RECEIVED and ASSESSED; the rest
         * only at the conversation level (docs/domain.md "Feedback to the police"). */
        if (cfg->feedback_level == FEEDBACK_STATUTORY && status != FEEDBACK_RECEIVED && status != FEEDBACK_ASSESSED)
                return false;
        /* A request is something social services need from the police, not feedback. */
        if (feedback_is_request(status))
                return true;
        return feedback_requested || cfg->feedback_always;
}

int events_feedback(const config *cfg, const feedback_ref *ref, feedback_status status,
                    decision_outcome assessment, usec_t meeting_at, const char *name,
                    usec_t now, event_list *out) {
        if (!ref || !ref->case_id || !name)
                return -EINVAL;
        if (status < FEEDBACK_RECEIVED || status > FEEDBACK_CANCELLED)
                return -EINVAL;
        if (!events_feedback_wanted(cfg, status, ref->feedback_requested))
                return 0;

        char event_id[UUID_STR_LEN];
        ids_event_id(ref->case_id, name, event_id);

        /* Ids, the status code, times and (ASSESSED) the outcome code: nothing of
         * the assessment and no personal data (SoL 14 kap. 1 b §; docs/domain.md "Feedback to the police"). */
        Allvarssamtal__V1__PoliceFeedback fb = ALLVARSSAMTAL__V1__POLICE_FEEDBACK__INIT;
        Google__Protobuf__Timestamp status_at = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Google__Protobuf__Timestamp meeting = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        fb.event_id = event_id;
        fb.case_id = str(ref->case_id);
        fb.referral_id = str(ref->referral_id);
        fb.police_case_number = str(ref->police_case_number);
        fb.status = (Allvarssamtal__V1__FeedbackStatus)status;
        codec_timestamp_set(&status_at, now);
        fb.status_at = &status_at;
        if (status == FEEDBACK_ASSESSED)
                fb.assessment = (Allvarssamtal__V1__Outcome)assessment;
        if (status == FEEDBACK_SCHEDULED && meeting_at != 0) {
                codec_timestamp_set(&meeting, meeting_at);
                fb.meeting_at = &meeting;
        }
        return event_append(out, &fb.base, event_id, cfg->topic_feedback, ref->case_id, CE_TYPE_FEEDBACK, now);
}

/* Whether any guardian can be phoned; without one the summons goes by letter. */
static bool guardians_have_phone(Allvarssamtal__V1__Guardian *const *g, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (g[i] && g[i]->phone && g[i]->phone[0])
                        return true;
        return false;
}

int events_scheduling(const config *cfg, const scheduling_info *info, usec_t now, event_list *out) {
        if (!info || !info->case_id || !info->name)
                return -EINVAL;
        char event_id[UUID_STR_LEN];
        ids_event_id(info->case_id, info->name, event_id);

        Allvarssamtal__V1__SchedulingRequest sr = ALLVARSSAMTAL__V1__SCHEDULING_REQUEST__INIT;
        Google__Protobuf__Timestamp created = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Google__Protobuf__Timestamp deadline = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        sr.event_id = event_id;
        sr.case_id = str(info->case_id);
        codec_timestamp_set(&created, now);
        sr.created_at = &created;
        sr.district = str(info->district);
        sr.deadline_kind = (Allvarssamtal__V1__DeadlineKind)info->deadline_kind;
        if (info->deadline != 0) {
                codec_timestamp_set(&deadline, info->deadline);
                sr.deadline = &deadline;
        }
        sr.child_given_name = str(info->child_given_name);
        sr.child_family_name = str(info->child_family_name);
        sr.summon_guardians = info->summon_guardians;
        sr.n_guardians = info->n_guardians;
        sr.guardians = (Allvarssamtal__V1__Guardian **)info->guardians;
        /* CONTACT_MISSING: a child's guardians without a phone are summoned by letter (docs/domain.md "Flags"). */
        sr.letter_fallback = info->summon_guardians && !guardians_have_phone(info->guardians, info->n_guardians);
        /* The model: the police take part in the conversation where they can. */
        sr.invite_police = true;
        sr.police_reporting_unit = str(info->police_reporting_unit);
        if (info->profile) {
                sr.profile = (char *)info->profile->name;
                sr.profile_version = info->profile->version;
        }
        sr.revision = info->revision;
        sr.kind = (Allvarssamtal__V1__SchedulingRequestKind)info->kind;
        return event_append(out, &sr.base, event_id, cfg->topic_scheduling, info->case_id, CE_TYPE_SCHEDULING, now);
}

const char *withdrawal_reason_code(withdrawal_reason r) {
        switch (r) {
        case WITHDRAWAL_CANCELLED: return "CANCELLED";
        case WITHDRAWAL_FAMILY_DECLINED: return "FAMILY_DECLINED";
        case WITHDRAWAL_NOT_ELIGIBLE: return "NOT_ELIGIBLE";
        case WITHDRAWAL_ON_HOLD: return "ON_HOLD";
        case WITHDRAWAL_PROTECTIVE_ASSESSMENT: return "PROTECTIVE_ASSESSMENT";
        case WITHDRAWAL_HELD: return "HELD";
        case WITHDRAWAL_NONE:
        default:
                return "NONE";
        }
}

int events_scheduling_withdrawn(const config *cfg, const char *case_id, const char *district, uint64_t revision,
                                withdrawal_reason reason, usec_t at, usec_t now, event_list *out) {
        if (!case_id || reason == WITHDRAWAL_NONE)
                return -EINVAL;
        /* One withdrawal per revision: a replay of the change makes the same id. */
        char name[EVENT_NAME_MAX], event_id[UUID_STR_LEN];
        snprintf(name, sizeof name, "scheduling/withdrawn/%" PRIu64, revision);
        ids_event_id(case_id, name, event_id);

        Allvarssamtal__V1__SchedulingWithdrawn w = ALLVARSSAMTAL__V1__SCHEDULING_WITHDRAWN__INIT;
        Google__Protobuf__Timestamp when = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        w.event_id = event_id;
        w.case_id = str(case_id);
        w.revision = revision;
        codec_timestamp_set(&when, at);
        w.withdrawn_at = &when;
        w.reason = (Allvarssamtal__V1__WithdrawalReason)reason;
        w.district = str(district);
        return event_append(out, &w.base, event_id, cfg->topic_scheduling, case_id, CE_TYPE_WITHDRAWN, now);
}

int events_for_decision(const config *cfg, const PoliceReferral *r, const decision *d,
                        const char *case_id, usec_t now, event_list *out) {
        if (!r || !d || !case_id)
                return -EINVAL;
        size_t start = out->n;
        const feedback_ref ref = {
                .case_id = case_id,
                .referral_id = r->referral_id,
                .police_case_number = r->police_case_number,
                .feedback_requested = r->feedback_requested,
        };
        int ret = events_feedback(cfg, &ref, FEEDBACK_RECEIVED, 0, 0, "feedback/RECEIVED", now, out);
        if (ret >= 0)
                ret = events_feedback(cfg, &ref, FEEDBACK_ASSESSED, d->outcome, 0, "feedback/ASSESSED", now, out);
        /* Requests only for a case that was opened: NOT_ELIGIBLE opens none
         * (docs/domain.md "After the decision: the case"). */
        if (ret >= 0 && d->outcome != OUTCOME_NOT_ELIGIBLE && (d->flags & FLAG_CONTACT_MISSING))
                ret = events_feedback(cfg, &ref, FEEDBACK_CONTACT_INFO_REQUESTED, 0, 0,
                                      "feedback/CONTACT_INFO_REQUESTED", now, out);
        /* During a preliminary investigation the police are asked for clearance (LUL 31 §;
         * docs/domain.md "Decision", step 4). */
        if (ret >= 0 && d->outcome == OUTCOME_DEFERRED && (d->reasons & REASON_PRELIMINARY_INVESTIGATION))
                ret = events_feedback(cfg, &ref, FEEDBACK_CLEARANCE_REQUESTED, 0, 0, "feedback/CLEARANCE_REQUESTED",
                                      now, out);
        if (ret >= 0 && d->outcome == OUTCOME_ELIGIBLE) {
                const scheduling_info info = {
                        .case_id = case_id,
                        .district = r->district,
                        .deadline = d->deadline,
                        .deadline_kind = d->deadline_kind,
                        .child_given_name = r->subject ? r->subject->given_name : "",
                        .child_family_name = r->subject ? r->subject->family_name : "",
                        .summon_guardians = d->summon_guardians,
                        .guardians = r->guardians,
                        .n_guardians = r->n_guardians,
                        .police_reporting_unit = r->reporting_unit,
                        .profile = d->profile,
                        .name = "scheduling/1",
                        .revision = CASE_FIRST_REVISION,
                        .kind = SCHEDULING_NEW,
                };
                ret = events_scheduling(cfg, &info, now, out);
        }
        if (ret < 0) {
                /* All of a decision's events or none. */
                for (size_t i = start; i < out->n; i++)
                        free(out->v[i].payload);
                out->n = start;
        }
        return ret;
}

int events_alert(const config *cfg, const char *case_id, alert_kind kind, usec_t due_at,
                 deadline_kind dk, const char *district, const char *case_state,
                 usec_t now, event_list *out) {
        if (!case_id || kind < ALERT_AT_RISK || kind > ALERT_PROTECTIVE_ASSESSMENT_OVERDUE)
                return -EINVAL;
        /* Once per case, kind and due time: a moved deadline is a new alert. */
        char name[EVENT_NAME_MAX], event_id[UUID_STR_LEN];
        snprintf(name, sizeof name, "alert/%s/%" PRId64, alert_kind_code(kind), (int64_t)due_at);
        ids_event_id(case_id, name, event_id);

        Allvarssamtal__V1__DeadlineAlert a = ALLVARSSAMTAL__V1__DEADLINE_ALERT__INIT;
        Google__Protobuf__Timestamp raised = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Google__Protobuf__Timestamp due = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        a.event_id = event_id;
        a.case_id = str(case_id);
        a.kind = (Allvarssamtal__V1__AlertKind)kind;
        codec_timestamp_set(&raised, now);
        a.raised_at = &raised;
        codec_timestamp_set(&due, due_at);
        a.due_at = &due;
        a.deadline_kind = (Allvarssamtal__V1__DeadlineKind)dk;
        a.district = str(district);
        a.case_state = str(case_state);
        return event_append(out, &a.base, event_id, cfg->topic_alerts, case_id, CE_TYPE_ALERT, now);
}

int events_partition_gap(const config *cfg, const char *topic, int32_t partition, int64_t from, int64_t to,
                         usec_t now, event_list *out) {
        if (!topic || from < 0 || to <= from)
                return -EINVAL;
        /* As a dead letter's: "gap" stands in the case's place of the id's name. */
        char name[EVENT_NAME_MAX + 256], event_id[UUID_STR_LEN], key[EVENT_KEY_MAX];
        int k = snprintf(name, sizeof name, "%s/%" PRId32 "/%" PRId64, topic, partition, from);
        if (k < 0 || (size_t)k >= sizeof name)
                return -EINVAL;
        ids_event_id("gap", name, event_id);
        k = snprintf(key, sizeof key, "%s/%" PRId32, topic, partition);
        if (k < 0 || (size_t)k >= sizeof key)
                return -EINVAL;

        Allvarssamtal__V1__DeadlineAlert a = ALLVARSSAMTAL__V1__DEADLINE_ALERT__INIT;
        Google__Protobuf__Timestamp raised = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        a.event_id = event_id;
        a.kind = ALLVARSSAMTAL__V1__ALERT_KIND__ALERT_KIND_PARTITION_GAP;
        codec_timestamp_set(&raised, now);
        a.raised_at = &raised;
        a.source_topic = str(topic);
        a.source_partition = partition;
        a.gap_from_offset = from;
        a.gap_to_offset = to;
        return event_append(out, &a.base, event_id, cfg->topic_alerts, key, CE_TYPE_ALERT, now);
}

int events_undeliverable(const config *cfg, const char *key, const char *event_id, const char *topic, usec_t now,
                         event_list *out) {
        if (!key || !event_id || !topic)
                return -EINVAL;
        char name[EVENT_NAME_MAX], id[UUID_STR_LEN];
        int k = snprintf(name, sizeof name, "undeliverable/%s", event_id);
        if (k < 0 || (size_t)k >= sizeof name)
                return -EINVAL;
        ids_event_id(key, name, id);
        Allvarssamtal__V1__DeadlineAlert a = ALLVARSSAMTAL__V1__DEADLINE_ALERT__INIT;
        Google__Protobuf__Timestamp raised = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        a.event_id = id;
        a.case_id = str(key);
        a.kind = ALLVARSSAMTAL__V1__ALERT_KIND__ALERT_KIND_EVENT_UNDELIVERABLE;
        codec_timestamp_set(&raised, now);
        a.raised_at = &raised;
        a.source_topic = str(topic);
        a.undeliverable_event_id = str(event_id);
        return event_append(out, &a.base, id, cfg->topic_alerts, key, CE_TYPE_ALERT, now);
}

int events_dead_letter(const config *cfg, const char *topic, int32_t partition, int64_t offset,
                       const codec_error *err, const char *case_id, usec_t now, event_list *out) {
        const dead_letter_source src = {.topic = topic, .partition = partition, .offset = offset};
        return events_dead_letter_of(cfg, &src, err, case_id, now, out);
}

int events_dead_letter_of(const config *cfg, const dead_letter_source *src, const codec_error *err,
                          const char *case_id, usec_t now, event_list *out) {
        if (!src || !src->topic || !err)
                return -EINVAL;
        /* uuid5(NS_EVENT, "deadletter/<topic>/<partition>/<offset>"): ids_event_id
         * names "<case_id>/<name>", so "deadletter" stands in the case's place. */
        char name[EVENT_NAME_MAX + 256], event_id[UUID_STR_LEN], key[EVENT_KEY_MAX];
        int k = snprintf(name, sizeof name, "%s/%" PRId32 "/%" PRId64, src->topic, src->partition, src->offset);
        if (k < 0 || (size_t)k >= sizeof name)
                return -EINVAL;
        ids_event_id("deadletter", name, event_id);
        k = snprintf(key, sizeof key, "%s/%" PRId32, src->topic, src->partition);
        if (k < 0 || (size_t)k >= sizeof key)
                return -EINVAL;

        Allvarssamtal__V1__DeadLetter dl = ALLVARSSAMTAL__V1__DEAD_LETTER__INIT;
        Google__Protobuf__Timestamp received = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        dl.event_id = event_id;
        dl.case_id = str(case_id);
        dl.reason = (Allvarssamtal__V1__DeadLetterReason)err->reason;
        dl.detail = str(err->detail);
        dl.source_topic = str(src->topic);
        dl.source_partition = src->partition;
        dl.source_offset = src->offset;
        codec_timestamp_set(&received, now);
        dl.received_at = &received;
        if (src->key) {
                dl.source_key.data = (uint8_t *)src->key;
                dl.source_key.len = src->key_len;
        }
        dl.source_ce_id = str(src->ce_id);
        dl.source_event_id = str(src->event_id);
        return event_append(out, &dl.base, event_id, cfg->topic_dead_letter, key, CE_TYPE_DEAD_LETTER, now);
}
