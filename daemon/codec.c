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

/* Limits of one referral (sane bounds for a real one; anything beyond is malformed). */
#define MAX_ID 128
#define MAX_GUARDIANS 32
#define MAX_CONCERNS 32
#define MAX_OFFENCES 64
#define MAX_NAME 256
#define MAX_SHORT 128                   /* case number, district, identity number, birth date, offence code */
#define MAX_PHONE 64
#define MAX_EMAIL 320                   /* RFC 5321: 64 + @ + 255 */
#define MAX_ADDRESS 1024
#define MAX_UNIT 256
#define MAX_NARRATIVE (64 * 1024)
#define MAX_OVERRIDE_REASON (16 * 1024)

/* Seconds since the epoch. */
#define T_1900 (-2208988800LL)
#define T_2000 946684800LL
#define T_2100 4102444800LL

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

/* An id that is logged: 1..128 printable ASCII characters, no blanks. */
static int check_id(check *c, const char *s, bool required, const char *name) {
        int r = check_text(c, s, SIZE_MAX, name);
        if (r < 0)
                return r;
        if (!s || !*s)
                return required ? fail(c, DLR_MISSING_FIELD, "%s is required", name) : 0;
        if (strlen(s) > MAX_ID || !printable_ascii(s))
                return fail(c, DLR_INVALID_FIELD, "%s must be 1 to %d printable ASCII characters", name, MAX_ID);
        return 0;
}

static int check_time(check *c, const Google__Protobuf__Timestamp *ts, bool required, int64_t from, int64_t to,
                      const char *name) {
        if (!ts)
                return required ? fail(c, DLR_MISSING_FIELD, "%s is required", name) : 0;
        if (ts->nanos < 0 || ts->nanos > 999999999)
                return fail(c, DLR_TIMESTAMP_OUT_OF_RANGE, "%s has nanos out of range", name);
        if (ts->seconds < from || ts->seconds >= to)
                return fail(c, DLR_TIMESTAMP_OUT_OF_RANGE, "%s is outside %s", name,
                            from == T_2000 ? "2000-01-01..2100-01-01" : "1900-01-01..2100-01-01");
        return 0;
}

#define TRY(x)                          \
        do {                            \
                int r_ = (x);           \
                if (r_ < 0)             \
                        return r_;      \
        } while (0)

static int check_guardian(check *c, const Allvarssamtal__V1__Guardian *g, const char *prefix, size_t i) {
        char name[64];
        if (!g)
                return fail(c, DLR_UNDECODABLE, "%s[%zu] is missing", prefix, i);
        snprintf(name, sizeof name, "%s[%zu].name", prefix, i);
        TRY(check_text(c, g->name, MAX_NAME, name));
        snprintf(name, sizeof name, "%s[%zu].phone", prefix, i);
        TRY(check_text(c, g->phone, MAX_PHONE, name));
        snprintf(name, sizeof name, "%s[%zu].email", prefix, i);
        TRY(check_text(c, g->email, MAX_EMAIL, name));
        snprintf(name, sizeof name, "%s[%zu].postal_address", prefix, i);
        TRY(check_text(c, g->postal_address, MAX_ADDRESS, name));
        return 0;
}

static int referral_validate(check *c, const ProtobufCMessage *msg) {
        const Allvarssamtal__V1__PoliceReferral *r = (const Allvarssamtal__V1__PoliceReferral *)msg;
        TRY(check_id(c, r->referral_id, true, "referral_id"));
        TRY(check_text(c, r->police_case_number, MAX_SHORT, "police_case_number"));
        TRY(check_time(c, r->reported_at, true, T_2000, T_2100, "reported_at"));
        TRY(check_time(c, r->incident_at, false, T_1900, T_2100, "incident_at"));
        TRY(check_text(c, r->district, MAX_SHORT, "district"));

        const Allvarssamtal__V1__Person *s = r->subject;
        if (!s)
                return fail(c, DLR_MISSING_FIELD, "subject is required");
        TRY(check_text(c, s->identity_number, MAX_SHORT, "subject.identity_number"));
        TRY(check_text(c, s->birth_date, MAX_SHORT, "subject.birth_date"));
        TRY(check_text(c, s->given_name, MAX_NAME, "subject.given_name"));
        TRY(check_text(c, s->family_name, MAX_NAME, "subject.family_name"));

        if (r->n_guardians > MAX_GUARDIANS)
                return fail(c, DLR_INVALID_FIELD, "guardians has more than %d entries", MAX_GUARDIANS);
        for (size_t i = 0; i < r->n_guardians; i++)
                TRY(check_guardian(c, r->guardians[i], "guardians", i));

        if (r->n_concerns > MAX_CONCERNS)
                return fail(c, DLR_INVALID_FIELD, "concerns has more than %d entries", MAX_CONCERNS);
        for (size_t i = 0; i < r->n_concerns; i++)
                if (!protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__concern__descriptor,
                                                          (int)r->concerns[i]))
                        return fail(c, DLR_UNKNOWN_ENUM, "concerns[%zu] is not a known Concern", i);

        if (r->n_offences > MAX_OFFENCES)
                return fail(c, DLR_INVALID_FIELD, "offences has more than %d entries", MAX_OFFENCES);
        for (size_t i = 0; i < r->n_offences; i++) {
                const Allvarssamtal__V1__Offence *o = r->offences[i];
                char name[64];
                if (!o)
                        return fail(c, DLR_UNDECODABLE, "offences[%zu] is missing", i);
                snprintf(name, sizeof name, "offences[%zu].code", i);
                TRY(check_text(c, o->code, MAX_SHORT, name));
                if (!protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__severity__descriptor, (int)o->severity))
                        return fail(c, DLR_UNKNOWN_ENUM, "offences[%zu].severity is not a known Severity", i);
                snprintf(name, sizeof name, "offences[%zu].committed_at", i);
                TRY(check_time(c, o->committed_at, false, T_1900, T_2100, name));
        }
        TRY(check_text(c, r->reporting_unit, MAX_UNIT, "reporting_unit"));
        TRY(check_text(c, r->narrative, MAX_NARRATIVE, "narrative"));
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
        TRY(check_id(c, o->event_id, true, "event_id"));
        TRY(check_id(c, o->case_id, false, "case_id"));
        TRY(check_id(c, o->referral_id, false, "referral_id"));
        if (!*o->case_id && !*o->referral_id)
                return fail(c, DLR_MISSING_FIELD, "case_id or referral_id is required");
        TRY(check_time(c, o->occurred_at, true, T_2000, T_2100, "occurred_at"));
        if (!o->actor)
                return fail(c, DLR_MISSING_FIELD, "actor is required");
        TRY(check_text(c, o->actor->name, MAX_NAME, "actor.name"));
        if (o->actor->kind == ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_UNSPECIFIED)
                return fail(c, DLR_MISSING_FIELD, "actor.kind is required");
        if (!protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__actor_kind__descriptor, (int)o->actor->kind))
                return fail(c, DLR_UNKNOWN_ENUM, "actor.kind is not a known ActorKind");
        if (o->actor->kind == ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER && !*o->actor->name)
                return fail(c, DLR_MISSING_FIELD, "actor.name is required for a social worker");

        switch (o->change_case) {
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED:
                if (!o->conversation_scheduled)
                        return fail(c, DLR_MISSING_FIELD, "conversation_scheduled is required");
                TRY(check_time(c, o->conversation_scheduled->scheduled_at, true, T_2000, T_2100,
                               "conversation_scheduled.scheduled_at"));
                break;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED:
                if (o->cancelled &&
                    !protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__cancel_reason__descriptor,
                                                          (int)o->cancelled->reason))
                        return fail(c, DLR_UNKNOWN_ENUM, "cancelled.reason is not a known CancelReason");
                break;
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED: {
                const Allvarssamtal__V1__ContactDetailsSupplied *s = o->contact_details_supplied;
                if (!s || s->n_guardians == 0)
                        return fail(c, DLR_MISSING_FIELD, "contact_details_supplied.guardians is required");
                if (s->n_guardians > MAX_GUARDIANS)
                        return fail(c, DLR_INVALID_FIELD,
                                    "contact_details_supplied.guardians has more than %d entries", MAX_GUARDIANS);
                for (size_t i = 0; i < s->n_guardians; i++)
                        TRY(check_guardian(c, s->guardians[i], "contact_details_supplied.guardians", i));
                break;
        }
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE: {
                const Allvarssamtal__V1__DecisionOverride *ov = o->override;
                if (!ov)
                        return fail(c, DLR_MISSING_FIELD, "override is required");
                if (ov->outcome == ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_UNSPECIFIED)
                        return fail(c, DLR_MISSING_FIELD, "override.outcome is required");
                if (!protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__outcome__descriptor, (int)ov->outcome))
                        return fail(c, DLR_UNKNOWN_ENUM, "override.outcome is not a known Outcome");
                TRY(check_text(c, ov->reason, MAX_OVERRIDE_REASON, "override.reason"));
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
        case ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD:
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
