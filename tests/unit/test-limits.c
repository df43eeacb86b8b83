/* The validation limits: the table of daemon/field_limits.c is what the .proto
 * files document (each field's "Limits:" comment, word for word), it covers every
 * field of the messages allvarsd reads, and codec.c enforces each limit exactly:
 * at the limit accepted, one past it rejected with the documented reason. The
 * messages are changed through protobuf-c's descriptors, so a limit added to the
 * table is tested without a new test. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "field_limits.h"

#define MAX_BYTES (1024 * 1024)

/* ---- the .proto files ---- */

static const char *const proto_files[] = {"referral.proto", "outcome.proto", "decision.proto"};

static char *read_proto(const char *name) {
        const char *root = getenv("ALLVARS_ROOT");
        char path[4096];
        snprintf(path, sizeof path, "%s/proto/allvarssamtal/v1/%s", root ? root : ".", name);
        FILE *f = fopen(path, "re");
        if (!f)
                fail_msg("cannot open %s (run from the repository, or set ALLVARS_ROOT)", path);
        static char buf[256 * 1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        return strdup(buf);
}

/* The documentation of field `field` of message `msg` in text: the comment lines
 * right above its definition and the comment on its line, joined with blanks. */
static bool field_doc(const char *text, const char *msg, const char *field, char *doc, size_t size) {
        char head[128];
        snprintf(head, sizeof head, "\nmessage %s {", msg);
        const char *m = strstr(text, head);
        if (!m)
                return false;
        const char *end = strstr(m, "\n}");
        const char *line = strchr(m + 1, '\n') + 1;
        const char *comment_start = NULL;
        for (; line && line < end; line = strchr(line, '\n') + 1) {
                const char *p = line + strspn(line, " ");
                size_t len = strcspn(line, "\n");
                if (strncmp(p, "//", 2) == 0) {
                        if (!comment_start)
                                comment_start = line;
                        continue;
                }
                char def[160], oneof[160];
                snprintf(def, sizeof def, " %s = ", field);
                snprintf(oneof, sizeof oneof, "oneof %s {", field);
                const char *d = strstr(line, def), *o = strstr(line, oneof);
                if ((d && d < line + len) || (o && o < line + len)) {
                        doc[0] = 0;
                        for (const char *c = comment_start; c && c < line; c = strchr(c, '\n') + 1) {
                                const char *t = strstr(c, "// ") + 3;
                                strncat(doc, t, strcspn(t, "\n"));
                                strncat(doc, " ", size - strlen(doc) - 1);
                        }
                        const char *t = strstr(line, "// ");
                        if (t && t < line + len)
                                strncat(doc, t + 3, strcspn(t + 3, "\n"));
                        return true;
                }
                comment_start = NULL;
        }
        return false;
}

static void test_documented(void **state) {
        (void)state;
        char *texts[3];
        size_t documented = 0;
        for (size_t i = 0; i < 3; i++) {
                texts[i] = read_proto(proto_files[i]);
                for (const char *p = texts[i]; (p = strstr(p, "// Limits: ")); p++)
                        documented++;
        }
        for (size_t i = 0; i < _LIM_MAX; i++) {
                const field_limit *l = &field_limits[i];
                char msg[64], want[512], doc[4096];
                size_t dot = strcspn(l->field, ".");
                snprintf(msg, sizeof msg, "%.*s", (int)dot, l->field);
                char said[400];
                field_limit_describe(l, said, sizeof said);
                snprintf(want, sizeof want, "Limits: %s.", said);
                bool found = false;
                for (size_t f = 0; f < 3 && !found; f++)
                        if (field_doc(texts[f], msg, l->field + dot + 1, doc, sizeof doc)) {
                                found = true;
                                if (!strstr(doc, want))
                                        fail_msg("%s is documented as \"%s\", enforced as \"%s\"", l->field, doc,
                                                 want);
                        }
                if (!found)
                        fail_msg("%s is not in the .proto files", l->field);
        }
        /* No limit documented that the table does not have. */
        assert_int_equal(documented, _LIM_MAX);
        for (size_t i = 0; i < 3; i++)
                free(texts[i]);
}

static const field_limit *limit_of(const char *msg, const char *field) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", msg, field);
        for (size_t i = 0; i < _LIM_MAX; i++)
                if (strcmp(field_limits[i].field, name) == 0)
                        return &field_limits[i];
        return NULL;
}

/* Every field of what allvarsd reads that can be out of bounds has a limit: text,
 * timestamps, enums, repeated fields, the oneof; bools and numbers are any value. */
static void walk_complete(const ProtobufCMessageDescriptor *d, int depth) {
        assert_true(depth < 8);
        if (strcmp(d->name, "google.protobuf.Timestamp") == 0)
                return;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                        if (!limit_of(d->short_name, "change"))
                                fail_msg("%s: its oneof has no limit", d->short_name);
                } else if (f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_ENUM ||
                           f->type == PROTOBUF_C_TYPE_MESSAGE || f->label == PROTOBUF_C_LABEL_REPEATED) {
                        if (!limit_of(d->short_name, f->name))
                                fail_msg("%s.%s has no limit in daemon/field_limits.c", d->short_name, f->name);
                }
                if (f->type == PROTOBUF_C_TYPE_MESSAGE)
                        walk_complete(f->descriptor, depth + 1);
        }
}

static void test_complete(void **state) {
        (void)state;
        walk_complete(&allvarssamtal__v1__police_referral__descriptor, 0);
        walk_complete(&allvarssamtal__v1__case_outcome__descriptor, 0);
}

/* ---- the limits enforced ---- */

/* Valid messages that together hold every message type allvarsd reads. */
typedef struct bases {
        uint8_t *packed[6];
        size_t len[6];
        const ProtobufCMessageDescriptor *desc[6];
        size_t n;
} bases;

static void add_base(bases *b, const ProtobufCMessage *m) {
        b->len[b->n] = codec_pack(m, &b->packed[b->n]);
        b->desc[b->n] = m->descriptor;
        b->n++;
}

static void make_bases(bases *b) {
        memset(b, 0, sizeof *b);
        Google__Protobuf__Timestamp t1 = GOOGLE__PROTOBUF__TIMESTAMP__INIT, t2 = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        t1.seconds = 1741600800;
        t2.seconds = 1741500000;
        Allvarssamtal__V1__Person subject = ALLVARSSAMTAL__V1__PERSON__INIT;
        subject.identity_number = (char *)"20120314-0122";
        subject.given_name = (char *)"Åsa";
        Allvarssamtal__V1__Guardian g = ALLVARSSAMTAL__V1__GUARDIAN__INIT, *gp[1] = {&g};
        g.name = (char *)"Sara";
        g.phone = (char *)"070-1234567";
        Allvarssamtal__V1__Offence o = ALLVARSSAMTAL__V1__OFFENCE__INIT, *op[1] = {&o};
        o.code = (char *)"BRB 8:1";
        o.severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY;
        o.committed_at = &t2;
        Allvarssamtal__V1__Concern concerns[1] = {ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME};
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        r.referral_id = (char *)"PM-2025-000123";
        r.reported_at = &t1;
        r.incident_at = &t2;
        r.subject = &subject;
        r.guardians = gp;
        r.n_guardians = 1;
        r.concerns = concerns;
        r.n_concerns = 1;
        r.offences = op;
        r.n_offences = 1;
        add_base(b, &r.base);

        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        CaseOutcome out = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        out.event_id = (char *)"ev-1";
        out.case_id = (char *)"fa25b861-078e-5c4d-bba2-88a8810ffb3c";
        out.referral_id = (char *)"PM-2025-000123";
        out.occurred_at = &t1;
        out.actor = &actor;
        Allvarssamtal__V1__ConversationScheduled conv = ALLVARSSAMTAL__V1__CONVERSATION_SCHEDULED__INIT;
        conv.scheduled_at = &t1;
        out.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
        out.conversation_scheduled = &conv;
        add_base(b, &out.base);

        Allvarssamtal__V1__CaseCancelled cancelled = ALLVARSSAMTAL__V1__CASE_CANCELLED__INIT;
        cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_MOVED;
        out.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
        out.cancelled = &cancelled;
        add_base(b, &out.base);

        Allvarssamtal__V1__ContactDetailsSupplied contact = ALLVARSSAMTAL__V1__CONTACT_DETAILS_SUPPLIED__INIT;
        contact.guardians = gp;
        contact.n_guardians = 1;
        out.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED;
        out.contact_details_supplied = &contact;
        add_base(b, &out.base);

        Allvarssamtal__V1__ConversationHeld held = ALLVARSSAMTAL__V1__CONVERSATION_HELD__INIT;
        Allvarssamtal__V1__Participant who[1] = {ALLVARSSAMTAL__V1__PARTICIPANT__PARTICIPANT_CHILD};
        Allvarssamtal__V1__FollowUp what[1] = {ALLVARSSAMTAL__V1__FOLLOW_UP__FOLLOW_UP_OPEN_CARE};
        held.participants = who;
        held.n_participants = 1;
        held.follow_up = what;
        held.n_follow_up = 1;
        out.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
        out.conversation_held = &held;
        add_base(b, &out.base);

        Allvarssamtal__V1__DecisionOverride ov = ALLVARSSAMTAL__V1__DECISION_OVERRIDE__INIT;
        ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        ov.reason = (char *)"Familjen har redan kontakt";
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        actor.name = (char *)"handlaggare1";
        out.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
        out.override = &ov;
        add_base(b, &out.base);
}

static void free_bases(bases *b) {
        for (size_t i = 0; i < b->n; i++)
                free(b->packed[i]);
}

/* The first message of type `name` in m's tree (m itself included). */
static ProtobufCMessage *find(ProtobufCMessage *m, const char *name) {
        if (!m)
                return NULL;
        if (strcmp(m->descriptor->short_name, name) == 0)
                return m;
        for (unsigned i = 0; i < m->descriptor->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &m->descriptor->fields[i];
                if (f->type != PROTOBUF_C_TYPE_MESSAGE)
                        continue;
                char *at = (char *)m + f->offset;
                ProtobufCMessage *found = NULL;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(size_t *)(void *)((char *)m + f->quantifier_offset);
                        ProtobufCMessage **arr = *(ProtobufCMessage ***)(void *)at;
                        for (size_t j = 0; j < n && !found; j++)
                                found = find(arr[j], name);
                } else {
                        found = find(*(ProtobufCMessage **)(void *)at, name);
                }
                if (found)
                        return found;
        }
        return NULL;
}

/* One change of the field a limit is about, in the first base message holding its
 * message type; the changed message is packed and decoded, then the change undone. */
typedef struct change {
        const field_limit *l;
        const char *what;               /* for the failure message */
        void (*apply)(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const struct change *c);
        const char *text;
        int64_t number;
        int32_t nanos;
        bool null;
} change;

static void set_text(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        *(const char **)(void *)((char *)m + f->offset) = c->text;
}

static void set_enum(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        *(int *)(void *)((char *)m + f->offset) = (int)c->number;
}

static Google__Protobuf__Timestamp change_time;
static void set_time(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        change_time = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        change_time.seconds = c->number;
        change_time.nanos = c->nanos;
        *(void **)(void *)((char *)m + f->offset) = c->null ? NULL : &change_time;
}

static void set_null(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        (void)c;
        *(void **)(void *)((char *)m + f->offset) = NULL;
}

/* The oneof unset (every member shares the case field). */
static void set_no_oneof(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        (void)c;
        *(uint32_t *)(void *)((char *)m + f->quantifier_offset) = 0;
}

static int change_enum_value;
static void *change_array[128];
static int change_enums[128];
/* c->number entries, copies of the first (an unknown enum value in the first when c->nanos). */
static void set_count(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const change *c) {
        size_t *n = (size_t *)(void *)((char *)m + f->quantifier_offset);
        void **arr = (void **)(void *)((char *)m + f->offset);
        assert_true(*n >= 1 && c->number < 128);
        if (f->type == PROTOBUF_C_TYPE_ENUM) {
                int first = c->nanos ? change_enum_value : ((int *)*arr)[0];
                for (int64_t i = 0; i < c->number; i++)
                        change_enums[i] = first;
                *arr = change_enums;
        } else {
                for (int64_t i = 0; i < c->number; i++)
                        change_array[i] = ((void **)*arr)[0];
                *arr = change_array;
        }
        *n = (size_t)c->number;
}

static void expect(const bases *b, const change *c, dead_letter_reason want) {
        const field_limit *l = c->l;
        char msg[64];
        size_t dot = strcspn(l->field, ".");
        snprintf(msg, sizeof msg, "%.*s", (int)dot, l->field);
        const char *fname = l->field + dot + 1;
        for (size_t i = 0; i < b->n; i++) {
                ProtobufCMessage *root = protobuf_c_message_unpack(b->desc[i], NULL, b->len[i], b->packed[i]);
                assert_non_null(root);
                ProtobufCMessage *m = find(root, msg);
                if (!m) {
                        protobuf_c_message_free_unpacked(root, NULL);
                        continue;
                }
                const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
                                                                                                   fname);
                if (!f && l->kind == LIMIT_PRESENT) /* a oneof: the member that is set */
                        for (unsigned k = 0; k < m->descriptor->n_fields && !f; k++)
                                if (m->descriptor->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
                                        f = &m->descriptor->fields[k];
                assert_non_null(f);
                /* Save the bytes the change overwrites, and restore them before the free. */
                unsigned char saved_value[sizeof(void *)], saved_q[sizeof(size_t)] = {0};
                memcpy(saved_value, (char *)m + f->offset, sizeof saved_value);
                if (f->quantifier_offset)
                        memcpy(saved_q, (char *)m + f->quantifier_offset, sizeof saved_q);
                c->apply(m, f, c);
                uint8_t *buf;
                size_t n = codec_pack(root, &buf);
                memcpy((char *)m + f->offset, saved_value, sizeof saved_value);
                if (f->quantifier_offset)
                        memcpy((char *)m + f->quantifier_offset, saved_q, sizeof saved_q);
                protobuf_c_message_free_unpacked(root, NULL);

                codec_error err = {0};
                bool ok;
                if (b->desc[i] == &allvarssamtal__v1__police_referral__descriptor) {
                        codec_referral *r = codec_referral_decode(buf, n, MAX_BYTES, &err);
                        ok = r != NULL;
                        codec_referral_free(r);
                } else {
                        codec_outcome *o = codec_outcome_decode(buf, n, MAX_BYTES, &err);
                        ok = o != NULL;
                        codec_outcome_free(o);
                }
                free(buf);
                if (want == 0 && !ok)
                        fail_msg("%s %s: rejected (%s: %s), the limit allows it", l->field, c->what,
                                 dead_letter_reason_code(err.reason), err.detail);
                if (want != 0 && ok)
                        fail_msg("%s %s: accepted, expected %s", l->field, c->what, dead_letter_reason_code(want));
                if (want != 0 && err.reason != want)
                        fail_msg("%s %s: %s (%s), expected %s", l->field, c->what, dead_letter_reason_code(err.reason),
                                 err.detail, dead_letter_reason_code(want));
                if (want != 0 && !strstr(err.detail, fname))
                        fail_msg("%s %s: the detail \"%s\" does not name the field", l->field, c->what, err.detail);
                return;
        }
        fail_msg("%s: no test message holds a %s", l->field, msg);
}

static char *repeat(char ch, size_t n) {
        char *s = malloc(n + 1);
        assert_non_null(s);
        memset(s, ch, n);
        s[n] = 0;
        return s;
}

static void test_enforced(void **state) {
        (void)state;
        bases b;
        make_bases(&b);
        for (size_t i = 0; i < _LIM_MAX; i++) {
                const field_limit *l = &field_limits[i];
                dead_letter_reason empty = l->required ? DLR_MISSING_FIELD : 0;
                switch (l->kind) {
                case LIMIT_ID:
                case LIMIT_TEXT: {
                        char *at = repeat(l->kind == LIMIT_ID ? 'A' : 'x', (size_t)l->max);
                        char *past = repeat(l->kind == LIMIT_ID ? 'A' : 'x', (size_t)l->max + 1);
                        expect(&b, &(change){l, "at the limit", set_text, .text = at}, 0);
                        expect(&b, &(change){l, "one byte past the limit", set_text, .text = past}, DLR_INVALID_FIELD);
                        expect(&b, &(change){l, "empty", set_text, .text = ""}, empty);
                        if (l->kind == LIMIT_ID)
                                expect(&b, &(change){l, "with a blank", set_text, .text = "PM 1"}, DLR_INVALID_FIELD);
                        free(at);
                        free(past);
                        break;
                }
                case LIMIT_COUNT:
                        expect(&b, &(change){l, "at the limit", set_count, .number = l->max}, 0);
                        expect(&b, &(change){l, "one entry past the limit", set_count, .number = l->max + 1},
                               DLR_INVALID_FIELD);
                        if (l->min > 0)
                                expect(&b, &(change){l, "below the minimum", set_count, .number = l->min - 1},
                                       DLR_MISSING_FIELD);
                        if (l->enum_desc) {
                                change_enum_value = 9999;
                                expect(&b, &(change){l, "with an unknown value", set_count, .number = 1, .nanos = 1},
                                       DLR_UNKNOWN_ENUM);
                        }
                        break;
                case LIMIT_TIME:
                        expect(&b, &(change){l, "at the start", set_time, .number = l->min}, 0);
                        expect(&b, &(change){l, "before the start", set_time, .number = l->min - 1},
                               DLR_TIMESTAMP_OUT_OF_RANGE);
                        expect(&b, &(change){l, "at the last second", set_time, .number = l->max - 1, .nanos = 999999999},
                               0);
                        expect(&b, &(change){l, "at the end", set_time, .number = l->max}, DLR_TIMESTAMP_OUT_OF_RANGE);
                        expect(&b, &(change){l, "with nanos past 999999999", set_time, .number = l->min, .nanos = 1000000000},
                               DLR_TIMESTAMP_OUT_OF_RANGE);
                        expect(&b, &(change){l, "absent", set_time, .null = true}, empty);
                        break;
                case LIMIT_ENUM:
                        expect(&b, &(change){l, "unknown", set_enum, .number = 9999}, DLR_UNKNOWN_ENUM);
                        expect(&b, &(change){l, "unspecified", set_enum, .number = 0}, empty);
                        expect(&b, &(change){l, "known", set_enum, .number = 1}, 0);
                        break;
                case LIMIT_PRESENT:
                        expect(&b, &(change){l, "absent", strcmp(l->field, "CaseOutcome.change") == 0 ? set_no_oneof : set_null},
                               DLR_MISSING_FIELD);
                        break;
                }
        }
        free_bases(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_documented),
                cmocka_unit_test(test_complete),
                cmocka_unit_test(test_enforced),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
