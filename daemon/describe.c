/* See describe.h. Walks the message descriptor; prints set fields only. */
#include <inttypes.h>
#include <string.h>

#include "clock.h"
#include "describe.h"
#include "allvarssamtal/v1/alert.pb-c.h"
#include "allvarssamtal/v1/dead_letter.pb-c.h"
#include "allvarssamtal/v1/feedback.pb-c.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "allvarssamtal/v1/referral.pb-c.h"
#include "allvarssamtal/v1/scheduling.pb-c.h"

static const ProtobufCMessageDescriptor *const known[] = {
        &allvarssamtal__v1__police_referral__descriptor, &allvarssamtal__v1__scheduling_request__descriptor,
        &allvarssamtal__v1__police_feedback__descriptor, &allvarssamtal__v1__deadline_alert__descriptor,
        &allvarssamtal__v1__dead_letter__descriptor,     &allvarssamtal__v1__case_outcome__descriptor,
        &allvarssamtal__v1__scheduling_withdrawn__descriptor,
};

const ProtobufCMessageDescriptor *describe_descriptor_for_ce_type(const char *ce_type) {
        static const char prefix[] = "se.";
        if (!ce_type || strncmp(ce_type, prefix, sizeof prefix - 1) != 0)
                return NULL;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
                if (strcmp(known[i]->name, ce_type + sizeof prefix - 1) == 0)
                        return known[i];
        return NULL;
}

static void print_string(const char *s, FILE *f) {
        fputc('"', f);
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (ch == '"' || ch == '\\')
                        fprintf(f, "\\%c", ch);
                else if (ch < 0x20)
                        fprintf(f, "\\x%02x", ch);
                else
                        fputc(ch, f);
        }
        fputc('"', f);
}

/* The fields that hold personal data: names, contact details, identity
 * numbers, birth dates, the police's narrative and an override's free text. */
static bool is_personal(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *fd) {
        static const char *const fields[] = {
                "allvarssamtal.v1.PoliceReferral.narrative",
                "allvarssamtal.v1.SchedulingRequest.child_given_name",
                "allvarssamtal.v1.SchedulingRequest.child_family_name",
                "allvarssamtal.v1.DecisionOverride.reason",
        };
        if (fd->type != PROTOBUF_C_TYPE_STRING)
                return false;
        if (strcmp(d->name, "allvarssamtal.v1.Person") == 0 || strcmp(d->name, "allvarssamtal.v1.Guardian") == 0)
                return true;
        size_t n = strlen(d->name);
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
                if (strncmp(fields[i], d->name, n) == 0 && fields[i][n] == '.' && strcmp(fields[i] + n + 1, fd->name) == 0)
                        return true;
        return false;
}

static void describe(const ProtobufCMessage *m, bool show_personal, FILE *f);

static void print_value(const ProtobufCFieldDescriptor *fd, const void *p, bool show_personal, FILE *f) {
        switch (fd->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32: fprintf(f, "%" PRId32, *(const int32_t *)p); break;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32: fprintf(f, "%" PRIu32, *(const uint32_t *)p); break;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64: fprintf(f, "%" PRId64, *(const int64_t *)p); break;
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64: fprintf(f, "%" PRIu64, *(const uint64_t *)p); break;
        case PROTOBUF_C_TYPE_FLOAT: fprintf(f, "%g", (double)*(const float *)p); break;
        case PROTOBUF_C_TYPE_DOUBLE: fprintf(f, "%g", *(const double *)p); break;
        case PROTOBUF_C_TYPE_BOOL: fputs(*(const protobuf_c_boolean *)p ? "true" : "false", f); break;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumValue *v =
                        protobuf_c_enum_descriptor_get_value(fd->descriptor, *(const int *)p);
                if (v)
                        fputs(v->name, f);
                else
                        fprintf(f, "%d", *(const int *)p);
                break;
        }
        case PROTOBUF_C_TYPE_STRING: print_string(*(char *const *)p ? *(char *const *)p : "", f); break;
        case PROTOBUF_C_TYPE_BYTES: fprintf(f, "<%zu bytes>", ((const ProtobufCBinaryData *)p)->len); break;
        case PROTOBUF_C_TYPE_MESSAGE: {
                const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
                const ProtobufCMessageDescriptor *sd = fd->descriptor;
                if (sub && strcmp(sd->name, "google.protobuf.Timestamp") == 0) {
                        const Google__Protobuf__Timestamp *ts = (const Google__Protobuf__Timestamp *)sub;
                        char buf[RFC3339_MAX];
                        fputs(clock_format_rfc3339(ts->seconds * USEC_PER_SEC + ts->nanos / 1000, buf), f);
                } else if (sub)
                        describe(sub, show_personal, f);
                else
                        fputs("{}", f);
                break;
        }
        }
}

static size_t value_size(const ProtobufCFieldDescriptor *fd) {
        switch (fd->type) {
        case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: return 8;
        case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
        case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
        case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
        default: return 4;
        }
}

/* proto3 scalars without presence: shown when not the default value. */
static bool is_set(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd) {
        const char *base = (const char *)m;
        const void *p = base + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED)
                return *(const size_t *)(base + fd->quantifier_offset) > 0;
        if (fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                return *(const uint32_t *)(base + fd->quantifier_offset) == fd->id;
        switch (fd->type) {
        case PROTOBUF_C_TYPE_STRING: return *(char *const *)p && **(char *const *)p;
        case PROTOBUF_C_TYPE_MESSAGE: return *(void *const *)p != NULL;
        case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)p)->len > 0;
        default: {
                static const char zero[16];
                return memcmp(p, zero, value_size(fd)) != 0;
        }
        }
}

static void describe(const ProtobufCMessage *m, bool show_personal, FILE *f) {
        const ProtobufCMessageDescriptor *d = m->descriptor;
        bool first = true;
        fputc('{', f);
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *fd = &d->fields[i];
                if (!is_set(m, fd))
                        continue;
                fprintf(f, "%s%s: ", first ? "" : ", ", fd->name);
                first = false;
                const char *p = (const char *)m + fd->offset;
                if (!show_personal && is_personal(d, fd))
                        fputs(fd->label == PROTOBUF_C_LABEL_REPEATED ? "[(personal)]" : "(personal)", f);
                else if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
                        const char *arr = *(const char *const *)p;
                        fputc('[', f);
                        for (size_t k = 0; k < n; k++) {
                                if (k)
                                        fputs(", ", f);
                                print_value(fd, arr + k * value_size(fd), show_personal, f);
                        }
                        fputc(']', f);
                } else
                        print_value(fd, p, show_personal, f);
        }
        fputc('}', f);
}

void describe_message(const ProtobufCMessage *m, FILE *f) {
        describe(m, true, f);
}

void describe_message_masked(const ProtobufCMessage *m, FILE *f) {
        describe(m, false, f);
}
