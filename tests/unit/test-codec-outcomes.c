/* Decoding and validation of case outcomes (every dead-letter reason), and
 * the codec's helpers: timestamps, message ids, reason codes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec_fixture.h"

/* ---- case outcomes ---- */

typedef struct outcome_fixture {
        CaseOutcome o;
        Google__Protobuf__Timestamp occurred, scheduled;
        Allvarssamtal__V1__Actor actor;
        Allvarssamtal__V1__ConversationScheduled conv;
        Allvarssamtal__V1__ProtectiveAssessmentRecorded pa;
        Allvarssamtal__V1__CaseCancelled cancelled;
        Allvarssamtal__V1__ContactDetailsSupplied contact;
        Allvarssamtal__V1__Guardian g;
        Allvarssamtal__V1__Guardian *gp[1];
        Allvarssamtal__V1__DecisionOverride ov;
} outcome_fixture;

static void outcome_init(outcome_fixture *f) {
        memset(f, 0, sizeof *f);
        f->o = (CaseOutcome)ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        f->occurred = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->scheduled = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->actor = (Allvarssamtal__V1__Actor)ALLVARSSAMTAL__V1__ACTOR__INIT;
        f->conv = (Allvarssamtal__V1__ConversationScheduled)ALLVARSSAMTAL__V1__CONVERSATION_SCHEDULED__INIT;
        f->pa = (Allvarssamtal__V1__ProtectiveAssessmentRecorded)ALLVARSSAMTAL__V1__PROTECTIVE_ASSESSMENT_RECORDED__INIT;
        f->cancelled = (Allvarssamtal__V1__CaseCancelled)ALLVARSSAMTAL__V1__CASE_CANCELLED__INIT;
        f->contact = (Allvarssamtal__V1__ContactDetailsSupplied)ALLVARSSAMTAL__V1__CONTACT_DETAILS_SUPPLIED__INIT;
        f->g = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        f->ov = (Allvarssamtal__V1__DecisionOverride)ALLVARSSAMTAL__V1__DECISION_OVERRIDE__INIT;
        f->o.event_id = (char *)"ev-1";
        f->o.case_id = (char *)"6f1c7a52-0c1e-4e8e-9a43-1f2a3b4c5d6e";
        f->occurred.seconds = 1741600800;
        f->o.occurred_at = &f->occurred;
        f->actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        f->actor.name = (char *)"booking";
        f->o.actor = &f->actor;
        f->scheduled.seconds = 1741700000;
        f->conv.scheduled_at = &f->scheduled;
        f->o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
        f->o.conversation_scheduled = &f->conv;
        f->g.name = (char *)"Sara";
        f->g.phone = (char *)"070-1234567";
        f->gp[0] = &f->g;
        f->contact.guardians = f->gp;
        f->contact.n_guardians = 1;
        f->ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_ELIGIBLE;
        f->ov.reason = (char *)"Samtal behövs ändå";
}

static void outcome_expect(const outcome_fixture *f, dead_letter_reason reason, const char *detail_part) {
        uint8_t *buf;
        size_t n = codec_pack(&f->o.base, &buf);
        assert_non_null(buf);
        codec_error err;
        codec_outcome *o = codec_outcome_decode(buf, n, MAX_BYTES, &err);
        free(buf);
        if (reason == 0) {
                if (!o)
                        fail_msg("rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);
                codec_outcome_free(o);
                return;
        }
        if (o) {
                codec_outcome_free(o);
                fail_msg("accepted, expected %s", dead_letter_reason_code(reason));
        }
        if (err.reason != reason)
                fail_msg("%s (%s), expected %s", dead_letter_reason_code(err.reason), err.detail,
                         dead_letter_reason_code(reason));
        if (detail_part && !strstr(err.detail, detail_part))
                fail_msg("detail \"%s\" does not name %s", err.detail, detail_part);
}

static void test_outcome_valid(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        outcome_expect(&f, 0, NULL);
        uint8_t *buf;
        size_t n = codec_pack(&f.o.base, &buf);
        codec_outcome *o = codec_outcome_decode(buf, n, MAX_BYTES, NULL);
        free(buf);
        assert_non_null(o);
        assert_string_equal(codec_outcome_msg(o)->event_id, "ev-1");
        assert_int_equal(codec_outcome_msg(o)->conversation_scheduled->scheduled_at->seconds, 1741700000);
        codec_outcome_free(o);
        codec_outcome_free(NULL);
        /* The police know only their own referral id. */
        f.o.case_id = (char *)"";
        f.o.referral_id = (char *)"PM-2025-000123";
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_POLICE;
        f.actor.name = (char *)"";
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_INVESTIGATION_CLEARED;
        Allvarssamtal__V1__InvestigationCleared ic = ALLVARSSAMTAL__V1__INVESTIGATION_CLEARED__INIT;
        f.o.investigation_cleared = &ic;
        outcome_expect(&f, 0, NULL);
}

static void test_outcome_rejects(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        f.o.event_id = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "event_id");
        f.o.event_id = (char *)"ev 1";
        outcome_expect(&f, DLR_INVALID_FIELD, "event_id");

        outcome_init(&f);
        f.o.case_id = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "case_id or referral_id");
        f.o.referral_id = (char *)"bad id";
        outcome_expect(&f, DLR_INVALID_FIELD, "referral_id");

        outcome_init(&f);
        f.o.occurred_at = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "occurred_at");
        outcome_init(&f);
        f.occurred.seconds = 100;
        outcome_expect(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "occurred_at");

        outcome_init(&f);
        f.o.actor = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "actor");
        outcome_init(&f);
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_UNSPECIFIED;
        outcome_expect(&f, DLR_MISSING_FIELD, "actor.kind");
        f.actor.kind = (Allvarssamtal__V1__ActorKind)9;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "actor.kind");
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        f.actor.name = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "actor.name");
        f.actor.name = (char *)"handl\xc3";
        outcome_expect(&f, DLR_INVALID_TEXT, "actor.name");
        f.actor.name = (char *)"anna.handlaggare";
        outcome_expect(&f, 0, NULL);

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE__NOT_SET;
        outcome_expect(&f, DLR_MISSING_FIELD, "change");

        outcome_init(&f);
        f.conv.scheduled_at = NULL;
        outcome_expect(&f, DLR_MISSING_FIELD, "scheduled_at");
        f.conv.scheduled_at = &f.scheduled;
        f.scheduled.seconds = 5000000000LL;
        outcome_expect(&f, DLR_TIMESTAMP_OUT_OF_RANGE, "scheduled_at");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONTACT_DETAILS_SUPPLIED;
        f.o.contact_details_supplied = &f.contact;
        outcome_expect(&f, 0, NULL);
        f.g.phone = (char *)"07\xff";
        outcome_expect(&f, DLR_INVALID_TEXT, "contact_details_supplied.guardians[0].phone");
        f.contact.n_guardians = 0;
        outcome_expect(&f, DLR_MISSING_FIELD, "contact_details_supplied.guardians");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_OVERRIDE;
        f.o.override = &f.ov;
        f.actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_SOCIAL_WORKER;
        outcome_expect(&f, 0, NULL);
        f.ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_UNSPECIFIED;
        outcome_expect(&f, DLR_MISSING_FIELD, "override.outcome");
        f.ov.outcome = (Allvarssamtal__V1__Outcome)17;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "override.outcome");
        f.ov.outcome = ALLVARSSAMTAL__V1__OUTCOME__OUTCOME_NOT_ELIGIBLE;
        f.ov.reason = (char *)"";
        outcome_expect(&f, DLR_MISSING_FIELD, "override.reason");
        f.ov.reason = (char *)"  \n";
        outcome_expect(&f, DLR_MISSING_FIELD, "override.reason");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
        f.o.cancelled = &f.cancelled;
        f.cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_MOVED;
        outcome_expect(&f, 0, NULL);
        f.cancelled.reason = (Allvarssamtal__V1__CancelReason)42;
        outcome_expect(&f, DLR_UNKNOWN_ENUM, "cancelled.reason");

        outcome_init(&f);
        f.o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_PROTECTIVE_ASSESSMENT_RECORDED;
        f.o.protective_assessment_recorded = &f.pa;
        outcome_expect(&f, 0, NULL);
}

static void test_outcome_embedded_nul(void **state) {
        (void)state;
        outcome_fixture f;
        outcome_init(&f);
        uint8_t *buf;
        size_t n = codec_pack(&f.o.base, &buf);
        wire w = {.n = n};
        memcpy(w.b, buf, n);
        free(buf);
        put_bytes(&w, 2, "case\0id", 7);
        codec_error err;
        assert_null(codec_outcome_decode(w.b, w.n, MAX_BYTES, &err));
        assert_int_equal(err.reason, DLR_INVALID_TEXT);
        assert_non_null(strstr(err.detail, "case_id"));
}

/* ---- helpers ---- */

static void test_timestamps_convert(void **state) {
        (void)state;
        Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        assert_int_equal(codec_timestamp_usec(NULL), 0);
        codec_timestamp_set(&ts, 1741773600 * USEC_PER_SEC + 123456);
        assert_int_equal(ts.seconds, 1741773600);
        assert_int_equal(ts.nanos, 123456000);
        assert_int_equal(codec_timestamp_usec(&ts), 1741773600 * USEC_PER_SEC + 123456);
        codec_timestamp_set(&ts, -1);
        assert_int_equal(ts.seconds, -1);
        assert_int_equal(ts.nanos, 999999000);
        assert_int_equal(codec_timestamp_usec(&ts), -1);
        ts.nanos = 999;                 /* below a microsecond */
        ts.seconds = 10;
        assert_int_equal(codec_timestamp_usec(&ts), 10 * USEC_PER_SEC);
}

/* The own id of a message that failed validation, for its dead letter. */
static void test_message_id(void **state) {
        (void)state;
        char id[CODEC_ID_MAX + 1];
        fixture f;
        init(&f);
        f.r.subject = NULL;                     /* invalid: MISSING_FIELD */
        wire w;
        pack(&f, &w);
        expect_reject(&w, DLR_MISSING_FIELD, "subject");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, MAX_BYTES, id);
        assert_string_equal(id, "PM-2025-000123");
        /* Not an id (a blank), too large, undecodable, empty: none. */
        f.r.referral_id = (char *)"PM 1";
        pack(&f, &w);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, MAX_BYTES, id);
        assert_string_equal(id, "");
        f.r.referral_id = (char *)"PM-2025-000123";
        pack(&f, &w);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, w.b, w.n, w.n - 1, id);
        assert_string_equal(id, "");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, "\xff\xff", 2, MAX_BYTES, id);
        assert_string_equal(id, "");
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, "", 0, MAX_BYTES, id);
        assert_string_equal(id, "");
        /* An id with a NUL inside is not taken. */
        wire raw = {.n = 0};
        put_bytes(&raw, 1, "PM\0x", 4);
        codec_message_id(&allvarssamtal__v1__police_referral__descriptor, raw.b, raw.n, MAX_BYTES, id);
        assert_string_equal(id, "");
        /* A CaseOutcome's event_id, also field 1. */
        outcome_fixture o;
        outcome_init(&o);
        o.o.actor = NULL;
        uint8_t *buf;
        size_t n = codec_pack(&o.o.base, &buf);
        codec_message_id(&allvarssamtal__v1__case_outcome__descriptor, buf, n, MAX_BYTES, id);
        assert_string_equal(id, "ev-1");
        free(buf);
}

static void test_reason_codes(void **state) {
        (void)state;
        static const char *const codes[] = {
                NULL,          "EMPTY",        "OVERSIZED",    "UNDECODABLE",           "MISSING_FIELD",
                "INVALID_FIELD", "UNKNOWN_ENUM", "INVALID_TEXT", "TIMESTAMP_OUT_OF_RANGE", "UNKNOWN_CASE",
                "ILLEGAL_TRANSITION", "WRONG_KEY",
        };
        for (int r = DLR_EMPTY; r <= DLR_WRONG_KEY; r++) {
                assert_string_equal(dead_letter_reason_code((dead_letter_reason)r), codes[r]);
                /* Numbers as in the proto. */
                const ProtobufCEnumValue *v =
                        protobuf_c_enum_descriptor_get_value(&allvarssamtal__v1__dead_letter_reason__descriptor, r);
                assert_non_null(v);
                assert_string_equal(v->name + strlen("DEAD_LETTER_REASON_"), codes[r]);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_outcome_valid),
                cmocka_unit_test(test_outcome_rejects),
                cmocka_unit_test(test_outcome_embedded_nul),
                cmocka_unit_test(test_timestamps_convert),
                cmocka_unit_test(test_message_id),
                cmocka_unit_test(test_reason_codes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
