/* Decoding and validation of what comes in, packing of what goes out.
 *
 * Each decoded message lives in its own arena (a ProtobufCAllocator whose free
 * is a no-op), freed at once: one or two mallocs per message instead of one per
 * field. The arena also lets us see what protobuf-c hides: it NUL-terminates
 * strings and checks neither UTF-8 nor embedded NULs. protobuf-c allocates
 * wire length + 1 bytes for a string (parse_required_member, 1.4.x; a unit test
 * pins this), and every arena allocation records its size in a header, so for a
 * string s, size - 1 is its wire length, and strlen(s) shorter than that means
 * an embedded NUL.
 *
 * Error details name the field, never its value: they are logged and published. */
#include <errno.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "field_limits.h"

/* ---- the arena ---- */

#define ARENA_ALIGN alignof(max_align_t)
#define ARENA_HEADER ARENA_ALIGN        /* holds the size of the allocation */

typedef struct arena_chunk {
        struct arena_chunk *next;
        size_t size;                    /* bytes in data */
        size_t used;
        alignas(max_align_t) unsigned char data[];
} arena_chunk;

typedef struct arena {
        arena_chunk *head;              /* the chunk being filled; the first one is embedded in the owner */
        size_t total;                   /* bytes of all chunks */
        size_t limit;                   /* protobuf-c fails cleanly when allocation exceeds this */
        bool exhausted;                 /* an allocation was refused for the limit */
        ProtobufCAllocator allocator;
} arena;

static size_t round_up(size_t n) {
        return (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
}

static void *arena_alloc(void *data, size_t size) {
        arena *a = data;
        if (size > a->limit) {
                a->exhausted = true;
                return NULL;
        }
        size_t need = round_up(ARENA_HEADER + size);
        arena_chunk *c = a->head;
        if (!c || c->size - c->used < need) {
                size_t chunk = c ? c->size * 2 : 4096;
                if (chunk < need)
                        chunk = need;
                if (a->total + chunk > a->limit) {
                        if (a->total + need > a->limit) {
                                a->exhausted = true;
                                return NULL;
                        }
                        chunk = a->limit - a->total;    /* the last chunk: what the budget leaves */
                }
                arena_chunk *n = malloc(sizeof *n + chunk);
                if (!n)
                        return NULL;
                n->next = c;
                n->size = chunk;
                n->used = 0;
                a->head = n;
                a->total += chunk;
                c = n;
        }
        unsigned char *p = c->data + c->used;
        c->used += need;
        *(size_t *)p = size;
        return p + ARENA_HEADER;
}

static void arena_free_one(void *data, void *ptr) {
        /* Everything goes when the message does. */
        (void)data;
        (void)ptr;
}

/* first: an embedded chunk that is not freed (NULL if none). */
static void arena_release(arena *a, arena_chunk *first) {
        arena_chunk *c = a->head;
        while (c) {
                arena_chunk *next = c->next;
                if (c != first)
                        free(c);
                c = next;
        }
        a->head = NULL;
}

static bool arena_owns(const arena *a, const void *p) {
        const unsigned char *q = p;
        for (const arena_chunk *c = a->head; c; c = c->next)
                if (q >= c->data && q < c->data + c->used)
                        return true;
        return false;
}

/* The wire length of a string protobuf-c decoded into the arena; strlen for a default. */
static size_t wire_length(const arena *a, const char *s) {
        if (!arena_owns(a, s))
                return strlen(s);
        return *(const size_t *)(const void *)(s - ARENA_HEADER) - 1;
}

/* The owner struct, then the first chunk in the same malloc. */
typedef struct codec_message {
        arena a;
        ProtobufCMessage *msg;
        arena_chunk *first;
} codec_message;

struct codec_referral {
        codec_message m;
};
struct codec_outcome {
        codec_message m;
};

size_t codec_decode_budget(size_t len) {
        /* protobuf-c keeps a record per field while it scans and every unknown
         * field with a copy of its bytes: tens of bytes per input byte for a
         * message of tiny fields. A valid message needs about twice its size. */
        size_t budget = 8 * len + 16 * 1024;
        return budget < CODEC_DECODE_BUDGET ? budget : CODEC_DECODE_BUDGET;
}

static ProtobufCMessage *message_decode(codec_message **ret, const ProtobufCMessageDescriptor *desc,
                                        const void *buf, size_t len) {
        /* Room for a typical message in the first chunk; the limit bounds what a
         * hostile message (many empty submessages) can make us allocate. */
        size_t first_size = round_up(2 * len + 2048);
        codec_message *m = malloc(round_up(sizeof *m) + sizeof(arena_chunk) + first_size);
        if (!m)
                return NULL;
        *m = (codec_message){0};
        m->first = (arena_chunk *)(void *)((unsigned char *)m + round_up(sizeof *m));
        m->first->next = NULL;
        m->first->size = first_size;
        m->first->used = 0;
        m->a.head = m->first;
        m->a.total = first_size;
        m->a.limit = codec_decode_budget(len);
        m->a.allocator = (ProtobufCAllocator){arena_alloc, arena_free_one, &m->a};
        m->msg = protobuf_c_message_unpack(desc, &m->a.allocator, len, buf);
        *ret = m;
        return m->msg;
}

static void message_free(codec_message *m) {
        if (!m)
                return;
        arena_release(&m->a, m->first);
        free(m);
}

/* ---- validation ---- */

typedef struct check {
        const arena *a;
        codec_error *err;
} check;

__attribute__((format(printf, 3, 4))) static int fail(check *c, dead_letter_reason reason, const char *fmt, ...) {
        c->err->reason = reason;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err->detail, sizeof c->err->detail, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n) {
        size_t i = 0;
        while (i < n) {
                /* Eight ASCII bytes at a time: most text is. */
                uint64_t w;
                while (n - i >= sizeof w && (memcpy(&w, s + i, sizeof w), (w & 0x8080808080808080u) == 0))
                        i += sizeof w;
                if (i == n)
                        break;
                unsigned char c = s[i];
                if (c < 0x80) {
                        i++;
                        continue;
                }
                size_t k;
                uint32_t cp, min;
                if (c >= 0xc2 && c <= 0xdf) {
                        k = 1;
                        cp = c & 0x1f;
                        min = 0x80;
                } else if (c >= 0xe0 && c <= 0xef) {
                        k = 2;
                        cp = c & 0x0f;
                        min = 0x800;
                } else if (c >= 0xf0 && c <= 0xf4) {
                        k = 3;
                        cp = c & 0x07;
                        min = 0x10000;
                } else
                        return false;
                if (n - i <= k)
                        return false;
                for (size_t j = 1; j <= k; j++) {
                        if ((s[i + j] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (s[i + j] & 0x3f);
                }
                if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                i += k + 1;
        }
        return true;
}

#define TRY(x)                          \
        do {                            \
                int r_ = (x);           \
                if (r_ < 0)             \
                        return r_;      \
        } while (0)

/* Text: no NUL inside, valid UTF-8, at most max bytes. `name` is the field's path. */
static int check_text(check *c, const char *s, size_t max, const char *name) {
        if (!s)
                return 0;
        size_t wire = wire_length(c->a, s);
        size_t len = strlen(s);
        if (len != wire)
                return fail(c, DLR_INVALID_TEXT, "%s contains a NUL byte", name);
        if (!utf8_valid((const unsigned char *)s, len))
                return fail(c, DLR_INVALID_TEXT, "%s is not valid UTF-8", name);
        if (len > max)
                return fail(c, DLR_INVALID_FIELD, "%s is longer than %zu bytes", name, max);
        return 0;
}

static bool printable_ascii(const char *s) {
        for (; *s; s++)
                if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
                        return false;
        return true;
}

/* Text of a field of field_limits.h: as check_text, and present when required. */
static int check_text_limit(check *c, const char *s, limit_id id, const char *name) {
        const field_limit *l = &field_limits[id];
        TRY(check_text(c, s, (size_t)l->max, name));
        if (l->required && (!s || !*s))
                return fail(c, DLR_MISSING_FIELD, "%s is required", name);
        return 0;
}

/* An id that is logged: printable ASCII characters, no blanks (field_limits.h). */
static int check_id(check *c, const char *s, limit_id id, const char *name) {
        const field_limit *l = &field_limits[id];
        TRY(check_text(c, s, SIZE_MAX, name));
        if (!s || !*s)
                return l->required ? fail(c, DLR_MISSING_FIELD, "%s is required", name) : 0;
        if ((int64_t)strlen(s) > l->max || !printable_ascii(s))
                return fail(c, DLR_INVALID_FIELD, "%s must be %lld to %lld printable ASCII characters", name,
                            (long long)l->min, (long long)l->max);
        return 0;
}

static int check_time(check *c, const Google__Protobuf__Timestamp *ts, limit_id id, const char *name) {
        const field_limit *l = &field_limits[id];
        if (!ts)
                return l->required ? fail(c, DLR_MISSING_FIELD, "%s is required", name) : 0;
        if (ts->nanos < 0 || ts->nanos > 999999999)
                return fail(c, DLR_TIMESTAMP_OUT_OF_RANGE, "%s has nanos out of range", name);
        if (ts->seconds < l->min || ts->seconds >= l->max)
                return fail(c, DLR_TIMESTAMP_OUT_OF_RANGE, "%s is outside %s", name,
                            l->min == LIMIT_T_2000 ? "2000-01-01..2100-01-01" : "1900-01-01..2100-01-01");
        return 0;
}

/* The number of entries of a repeated field. */
static int check_count(check *c, size_t n, limit_id id, const char *name) {
        const field_limit *l = &field_limits[id];
        if (n == 0 && l->required)
                return fail(c, DLR_MISSING_FIELD, "%s is required", name);
        if ((int64_t)n < l->min || (int64_t)n > l->max)
                return fail(c, DLR_INVALID_FIELD, "%s has more than %lld entries", name, (long long)l->max);
        return 0;
}

/* An enum value this version knows; unspecified (0) only when not required. */
static int check_enum(check *c, int v, limit_id id, const char *name) {
        const field_limit *l = &field_limits[id];
        if (v == 0 && l->required)
                return fail(c, DLR_MISSING_FIELD, "%s is required", name);
        if (!protobuf_c_enum_descriptor_get_value(l->enum_desc, v))
                return fail(c, DLR_UNKNOWN_ENUM, "%s is not a known %s", name, l->enum_desc->short_name);
        return 0;
}

static int check_guardian(check *c, const Allvarssamtal__V1__Guardian *g, const char *prefix, size_t i) {
        if (!g)
                return fail(c, DLR_UNDECODABLE, "%s[%zu] is missing", prefix, i);
        /* "guardians[0]." once, each field's name after it: one snprintf per
         * guardian, not four (a guardian or two in every referral). */
        char name[80];
        int n = snprintf(name, sizeof name, "%s[%zu].", prefix, i);
        if (n < 0 || (size_t)n + sizeof "postal_address" > sizeof name)
                n = 0;
        memcpy(name + n, "name", sizeof "name");
        TRY(check_text_limit(c, g->name, LIM_GUARDIAN_NAME, name));
        memcpy(name + n, "phone", sizeof "phone");
        TRY(check_text_limit(c, g->phone, LIM_GUARDIAN_PHONE, name));
        memcpy(name + n, "email", sizeof "email");
        TRY(check_text_limit(c, g->email, LIM_GUARDIAN_EMAIL, name));
        memcpy(name + n, "postal_address", sizeof "postal_address");
        TRY(check_text_limit(c, g->postal_address, LIM_GUARDIAN_POSTAL_ADDRESS, name));
        return 0;
}

static int referral_validate(check *c, const ProtobufCMessage *msg) {
        const Allvarssamtal__V1__PoliceReferral *r = (const Allvarssamtal__V1__PoliceReferral *)msg;
        TRY(check_id(c, r->referral_id, LIM_REFERRAL_ID, "referral_id"));
        TRY(check_text_limit(c, r->police_case_number, LIM_REFERRAL_POLICE_CASE_NUMBER, "police_case_number"));
        TRY(check_time(c, r->reported_at, LIM_REFERRAL_REPORTED_AT, "reported_at"));
        TRY(check_time(c, r->incident_at, LIM_REFERRAL_INCIDENT_AT, "incident_at"));
        TRY(check_text_limit(c, r->district, LIM_REFERRAL_DISTRICT, "district"));

        const Allvarssamtal__V1__Person *s = r->subject;
        if (!s)
                return fail(c, DLR_MISSING_FIELD, "subject is required");
        TRY(check_text_limit(c, s->identity_number, LIM_PERSON_IDENTITY_NUMBER, "subject.identity_number"));
        TRY(check_text_limit(c, s->birth_date, LIM_PERSON_BIRTH_DATE, "subject.birth_date"));
        TRY(check_text_limit(c, s->given_name, LIM_PERSON_GIVEN_NAME, "subject.given_name"));
        TRY(check_text_limit(c, s->family_name, LIM_PERSON_FAMILY_NAME, "subject.family_name"));

        TRY(check_count(c, r->n_guardians, LIM_REFERRAL_GUARDIANS, "guardians"));
        for (size_t i = 0; i < r->n_guardians; i++)
                TRY(check_guardian(c, r->guardians[i], "guardians", i));

        TRY(check_count(c, r->n_concerns, LIM_REFERRAL_CONCERNS, "concerns"));
        for (size_t i = 0; i < r->n_concerns; i++)
                if (!protobuf_c_enum_descriptor_get_value(field_limits[LIM_REFERRAL_CONCERNS].enum_desc,
                                                          (int)r->concerns[i]))
                        return fail(c, DLR_UNKNOWN_ENUM, "concerns[%zu] is not a known Concern", i);

        TRY(check_count(c, r->n_offences, LIM_REFERRAL_OFFENCES, "offences"));
        for (size_t i = 0; i < r->n_offences; i++) {
                const Allvarssamtal__V1__Offence *o = r->offences[i];
                char name[64];
                if (!o)
                        return fail(c, DLR_UNDECODABLE, "offences[%zu] is missing", i);
                snprintf(name, sizeof name, "offences[%zu].code", i);
                TRY(check_text_limit(c, o->code, LIM_OFFENCE_CODE, name));
                snprintf(name, sizeof name, "offences[%zu].severity", i);
                TRY(check_enum(c, (int)o->severity, LIM_OFFENCE_SEVERITY, name));
                snprintf(name, sizeof name, "offences[%zu].committed_at", i);
                TRY(check_time(c, o->committed_at, LIM_OFFENCE_COMMITTED_AT, name));
        }
        TRY(check_text_limit(c, r->reporting_unit, LIM_REFERRAL_REPORTING_UNIT, "reporting_unit"));
        TRY(check_text_limit(c, r->narrative, LIM_REFERRAL_NARRATIVE, "narrative"));
        return 0;
}

static int check_size(const void *buf, size_t len, size_t max_bytes, codec_error *err) {
        if (!buf || len == 0) {
                err->reason = DLR_EMPTY;
                snprintf(err->detail, sizeof err->detail, "the message is empty");
                return -EINVAL;
        }
        if (len > max_bytes) {
                err->reason = DLR_OVERSIZED;
                snprintf(err->detail, sizeof err->detail, "the message is %zu bytes, more than the limit of %zu",
                         len, max_bytes);
                return -EINVAL;
        }
        return 0;
}

/* The one path of every incoming message: size, decoding into an arena
 * (message_decode), validation. NULL with err filled on any failure. */
static codec_message *decode_checked(const ProtobufCMessageDescriptor *desc,
                                     int (*validate)(check *c, const ProtobufCMessage *msg), const void *buf,
                                     size_t len, size_t max_bytes, codec_error *err) {
        codec_error dummy;
        if (!err)
                err = &dummy;
        *err = (codec_error){0};
        if (check_size(buf, len, max_bytes, err) < 0)
                return NULL;
        codec_message *m = NULL;
        if (!message_decode(&m, desc, buf, len)) {
                if (m && m->a.exhausted) {
                        /* Many (unknown or repeated) fields: more than we decode. */
                        err->reason = DLR_OVERSIZED;
                        snprintf(err->detail, sizeof err->detail,
                                 "decoding the %s needs more than its memory budget of %zu bytes (too many fields)",
                                 desc->short_name, m->a.limit);
                } else {
                        err->reason = DLR_UNDECODABLE;
                        snprintf(err->detail, sizeof err->detail, "not a valid %s protobuf", desc->short_name);
                }
                message_free(m);
                return NULL;
        }
        check c = {&m->a, err};
        if (validate(&c, m->msg) < 0) {
                message_free(m);
                return NULL;
        }
        return m;
}

size_t codec_referral_mem(const codec_referral *r) {
        return r ? r->m.a.total : 0;
}

size_t codec_outcome_mem(const codec_outcome *o) {
        return o ? o->m.a.total : 0;
}

codec_referral *codec_referral_decode(const void *buf, size_t len, size_t max_bytes, codec_error *err) {
        return (codec_referral *)decode_checked(&allvarssamtal__v1__police_referral__descriptor, referral_validate,
                                                buf, len, max_bytes, err);
}

const Allvarssamtal__V1__PoliceReferral *codec_referral_msg(const codec_referral *r) {
        return r ? (const Allvarssamtal__V1__PoliceReferral *)r->m.msg : NULL;
}

void codec_referral_free(codec_referral *r) {
        message_free(r ? &r->m : NULL);
}

static int outcome_validate(check *c, const ProtobufCMessage *msg) {
        const CaseOutcome *o = (const CaseOutcome *)msg;
        TRY(check_id(c, o->event_id, LIM_OUTCOME_EVENT_ID, "event_id"));
        TRY(check_id(c, o->case_id, LIM_OUTCOME_CASE_ID, "case_id"));
        TRY(check_id(c, o->referral_id, LIM_OUTCOME_REFERRAL_ID, "referral_id"));
        if (!*o->case_id && !*o->referral_id)
                return fail(c, DLR_MISSING_FIELD, "case_id or referral_id is required");
        TRY(check_time(c, o->occurred_at, LIM_OUTCOME_OCCURRED_AT, "occurred_at"));
        if (!o->actor)
                return fail(c, DLR_MISSING_FIELD, "actor is required");
        TRY(check_text_limit(c, o->actor->name, LIM_ACTOR_NAME, "actor.name"));
        TRY(check_enum(c, (int)o->actor->kind, LIM_ACTOR_KIND, "actor.kind"));
        if (o->actor->kind == ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER && !*o->actor->name)
                return fail(c, DLR_MISSING_FIELD, "actor.name is required for a social worker");

        switch (o->change_case) {
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED:
                if (!o->conversation_scheduled)
                        return fail(c, DLR_MISSING_FIELD, "conversation_scheduled is required");
                TRY(check_time(c, o->conversation_scheduled->scheduled_at, LIM_SCHEDULED_AT,
                               "conversation_scheduled.scheduled_at"));
                break;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD: {
                const Allvarssamtal__V1__ConversationHeld *h = o->conversation_held;
                if (h) {
                        TRY(check_count(c, h->n_participants, LIM_HELD_PARTICIPANTS, "conversation_held.participants"));
                        TRY(check_count(c, h->n_follow_up, LIM_HELD_FOLLOW_UP, "conversation_held.follow_up"));
                }
                for (size_t i = 0; h && i < h->n_participants; i++)
                        if (h->participants[i] == ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_UNSPECIFIED ||
                            !protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__participant__descriptor,
                                                                  (int)h->participants[i]))
                                return fail(c, DLR_UNKNOWN_ENUM,
                                            "conversation_held.participants[%zu] is not a known Participant", i);
                for (size_t i = 0; h && i < h->n_follow_up; i++)
                        if (h->follow_up[i] == ALLVARSSAMTAL__V1__FOLLOW_UP__FOLLOW_UP_UNSPECIFIED ||
                            !protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__follow_up__descriptor,
                                                                  (int)h->follow_up[i]))
                                return fail(c, DLR_UNKNOWN_ENUM,
                                            "conversation_held.follow_up[%zu] is not a known FollowUp", i);
                break;
        }
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED:
                if (o->cancelled)
                        TRY(check_enum(c, (int)o->cancelled->reason, LIM_CANCELLED_REASON, "cancelled.reason"));
                break;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED: {
                const Allvarssamtal__V1__ContactDetailsSupplied *s = o->contact_details_supplied;
                TRY(check_count(c, s ? s->n_guardians : 0, LIM_CONTACT_GUARDIANS,
                                "contact_details_supplied.guardians"));
                for (size_t i = 0; i < s->n_guardians; i++)
                        TRY(check_guardian(c, s->guardians[i], "contact_details_supplied.guardians", i));
                break;
        }
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE: {
                const Allvarssamtal__V1__DecisionOverride *ov = o->override;
                if (!ov)
                        return fail(c, DLR_MISSING_FIELD, "override is required");
                TRY(check_enum(c, (int)ov->outcome, LIM_OVERRIDE_OUTCOME, "override.outcome"));
                TRY(check_text_limit(c, ov->reason, LIM_OVERRIDE_REASON, "override.reason"));
                bool blank = true;
                for (const char *p = ov->reason; *p; p++)
                        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                                blank = false;
                if (blank)
                        return fail(c, DLR_MISSING_FIELD, "override.reason is required");
                break;
        }
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED:
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED:
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_FAMILY_DECLINED:
                break;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE__NOT_SET:
        default:
                return fail(c, DLR_MISSING_FIELD, "change is required");
        }
        return 0;
}

codec_outcome *codec_outcome_decode(const void *buf, size_t len, size_t max_bytes, codec_error *err) {
        return (codec_outcome *)decode_checked(&allvarssamtal__v1__case_outcome__descriptor, outcome_validate, buf,
                                               len, max_bytes, err);
}

const CaseOutcome *codec_outcome_msg(const codec_outcome *o) {
        return o ? (const CaseOutcome *)o->m.msg : NULL;
}

void codec_outcome_free(codec_outcome *o) {
        message_free(o ? &o->m : NULL);
}

void codec_message_id(const ProtobufCMessageDescriptor *desc, const void *buf, size_t len, size_t max_bytes,
                      char ret[static CODEC_ID_MAX + 1]) {
        ret[0] = '\0';
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(desc, 1);
        if (!buf || len == 0 || len > max_bytes || !f || f->type != PROTOBUF_C_TYPE_STRING ||
            f->label == PROTOBUF_C_LABEL_REPEATED)
                return;
        codec_message *m = NULL;
        if (message_decode(&m, desc, buf, len)) {
                const char *id = *(const char *const *)(const void *)((const char *)m->msg + f->offset);
                size_t n = id ? strlen(id) : 0;
                if (n > 0 && n <= CODEC_ID_MAX && n == wire_length(&m->a, id) && printable_ascii(id))
                        memcpy(ret, id, n + 1);
        }
        message_free(m);
}

const char *dead_letter_reason_code(dead_letter_reason r) {
        switch (r) {
        case DLR_EMPTY: return "EMPTY";
        case DLR_OVERSIZED: return "OVERSIZED";
        case DLR_UNDECODABLE: return "UNDECODABLE";
        case DLR_MISSING_FIELD: return "MISSING_FIELD";
        case DLR_INVALID_FIELD: return "INVALID_FIELD";
        case DLR_UNKNOWN_ENUM: return "UNKNOWN_ENUM";
        case DLR_INVALID_TEXT: return "INVALID_TEXT";
        case DLR_TIMESTAMP_OUT_OF_RANGE: return "TIMESTAMP_OUT_OF_RANGE";
        case DLR_UNKNOWN_CASE: return "UNKNOWN_CASE";
        case DLR_ILLEGAL_TRANSITION: return "ILLEGAL_TRANSITION";
        case DLR_WRONG_KEY: return "WRONG_KEY";
        }
        return "UNSPECIFIED";
}

usec_t codec_timestamp_usec(const Google__Protobuf__Timestamp *ts) {
        if (!ts)
                return 0;
        return (usec_t)ts->seconds * USEC_PER_SEC + ts->nanos / 1000;
}

void codec_timestamp_set(Google__Protobuf__Timestamp *ts, usec_t t) {
        int64_t s = t / USEC_PER_SEC, us = t % USEC_PER_SEC;
        if (us < 0) {                   /* Timestamp: nanos are never negative */
                s--;
                us += USEC_PER_SEC;
        }
        ts->seconds = s;
        ts->nanos = (int32_t)(us * 1000);
}

size_t codec_pack(const ProtobufCMessage *m, uint8_t **ret) {
        size_t n = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(n > 0 ? n : 1);
        if (!buf) {
                *ret = NULL;
                return 0;
        }
        *ret = buf;
        return protobuf_c_message_pack(m, buf);
}
