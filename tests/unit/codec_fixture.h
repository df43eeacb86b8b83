/* The messages the codec tests build (test-codec.c, test-codec-outcomes.c):
 * raw protobuf for what protobuf-c will not encode, a valid referral to
 * change one field of, and the assertions on the codec's verdict. Include
 * after cmocka.h. */
#pragma once

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define MAX_BYTES (1024 * 1024)

/* ---- raw protobuf, for what protobuf-c will not encode (NUL in strings) ---- */

typedef struct wire {
        uint8_t b[96 * 1024];
        size_t n;
} wire;

static inline void put_varint(wire *w, uint64_t v) {
        while (v >= 0x80) {
                w->b[w->n++] = (uint8_t)(v | 0x80);
                v >>= 7;
        }
        w->b[w->n++] = (uint8_t)v;
}

static inline void put_bytes(wire *w, unsigned field, const void *data, size_t len) {
        put_varint(w, field << 3 | 2);
        put_varint(w, len);
        memcpy(w->b + w->n, data, len);
        w->n += len;
}

static inline void put_int(wire *w, unsigned field, uint64_t v) {
        put_varint(w, field << 3 | 0);
        put_varint(w, v);
}

/* ---- a valid referral ---- */

typedef struct fixture {
        Allvarssamtal__V1__PoliceReferral r;
        Allvarssamtal__V1__Person subject;
        Google__Protobuf__Timestamp reported, incident, committed;
        Allvarssamtal__V1__Guardian g[40];
        Allvarssamtal__V1__Guardian *gp[40];
        Allvarssamtal__V1__Concern concerns[40];
        Allvarssamtal__V1__Offence o[70];
        Allvarssamtal__V1__Offence *op[70];
} fixture;

static inline void init(fixture *f) {
        memset(f, 0, sizeof *f);
        f->r = (Allvarssamtal__V1__PoliceReferral)ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        f->subject = (Allvarssamtal__V1__Person)ALLVARSSAMTAL__V1__PERSON__INIT;
        f->reported = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->incident = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->committed = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->r.referral_id = (char *)"PM-2025-000123";
        f->r.police_case_number = (char *)"5000-K123456-25";
        f->reported.seconds = 1741600800;
        f->r.reported_at = &f->reported;
        f->incident.seconds = 1741500000;
        f->r.incident_at = &f->incident;
        f->r.district = (char *)"hisingen";
        f->subject.identity_number = (char *)"20120314-0122";
        f->subject.given_name = (char *)"Åsa";
        f->subject.family_name = (char *)"Exempel";
        f->r.subject = &f->subject;
        for (size_t i = 0; i < 40; i++) {
                f->g[i] = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
                f->g[i].name = (char *)"Sara Exempel";
                f->g[i].phone = (char *)"070-123 45 67";
                f->gp[i] = &f->g[i];
                f->concerns[i] = ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        }
        for (size_t i = 0; i < 70; i++) {
                f->o[i] = (Allvarssamtal__V1__Offence)ALLVARSSAMTAL__V1__OFFENCE__INIT;
                f->o[i].code = (char *)"BRB 8:1";
                f->o[i].severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY;
                f->o[i].imprisonable = true;
                f->op[i] = &f->o[i];
        }
        f->r.guardians = f->gp;
        f->r.n_guardians = 1;
        f->r.concerns = f->concerns;
        f->r.n_concerns = 1;
        f->r.offences = f->op;
        f->r.n_offences = 1;
        f->committed.seconds = 1741400000;
        f->o[0].committed_at = &f->committed;
        f->r.reporting_unit = (char *)"LPO Hisingen";
        f->r.narrative = (char *)"Pojken greps efter en stöld i butik.";
}

static inline void pack(const fixture *f, wire *w) {
        uint8_t *buf;
        size_t n = codec_pack(&f->r.base, &buf);
        assert_non_null(buf);
        assert_true(n <= sizeof w->b);
        memcpy(w->b, buf, n);
        w->n = n;
        free(buf);
}

static inline void expect_ok(const wire *w) {
        codec_error err;
        codec_referral *r = codec_referral_decode(w->b, w->n, MAX_BYTES, &err);
        if (!r)
                fail_msg("rejected: %s: %s", dead_letter_reason_code(err.reason), err.detail);
        codec_referral_free(r);
}

static inline void expect_reject(const wire *w, dead_letter_reason reason, const char *detail_part) {
        codec_error err;
        codec_referral *r = codec_referral_decode(w->b, w->n, MAX_BYTES, &err);
        if (r) {
                codec_referral_free(r);
                fail_msg("accepted, expected %s about %s", dead_letter_reason_code(reason),
                         detail_part ? detail_part : "?");
        }
        if (err.reason != reason)
                fail_msg("%s (%s), expected %s", dead_letter_reason_code(err.reason), err.detail,
                         dead_letter_reason_code(reason));
        if (detail_part && !strstr(err.detail, detail_part))
                fail_msg("detail \"%s\" does not name %s", err.detail, detail_part);
        assert_null(strchr(err.detail, '\n'));
}

static inline void expect_fixture_reject(const fixture *f, dead_letter_reason reason, const char *detail_part) {
        wire w;
        pack(f, &w);
        expect_reject(&w, reason, detail_part);
}
