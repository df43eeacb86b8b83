/* The referral the rules tests build and decide (test-rules.c,
 * test-rules-flags.c): a child, a guardian's phone, a suspected imprisonable
 * crime, reported on a Monday; setters for what a test changes, and the
 * assertions on a decision. Include after cmocka.h. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "profiles.h"
#include "rules.h"
#include "allvarssamtal/v1/decision.pb-c.h"

/* ---- a referral under construction ---- */

typedef struct fixture {
        PoliceReferral r;
        Allvarssamtal__V1__Person subject;
        Google__Protobuf__Timestamp reported, incident;
        Allvarssamtal__V1__Guardian g[4];
        Allvarssamtal__V1__Guardian *gp[4];
        Allvarssamtal__V1__Concern concerns[4];
        Allvarssamtal__V1__Offence o[4];
        Allvarssamtal__V1__Offence *op[4];
        char ident[32], birth[16];
        rules_history h;
        usec_t now;
} fixture;

static inline usec_t at(const char *s) {
        usec_t t;
        assert_int_equal(clock_parse_rfc3339(s, &t), 0);
        return t;
}

static inline void set_time(Google__Protobuf__Timestamp *ts, usec_t t) {
        ts->seconds = t / USEC_PER_SEC;
        ts->nanos = (int32_t)(t % USEC_PER_SEC * 1000);
}


/* The subject's personnummer, YYYYMMDD-NNNC with a right check digit. */
static inline void set_pnr(fixture *f, int y, int m, int d) {
        char nine[40];
        snprintf(nine, sizeof nine, "%02d%02d%02d%03d", y % 100, m, d, 238);
        snprintf(f->ident, sizeof f->ident, "%04d%02d%02d-%03d%d", y, m, d, 238, harness_luhn_digit(nine));
        f->subject.identity_number = f->ident;
}

static inline void set_birth_date(fixture *f, const char *s) {
        snprintf(f->birth, sizeof f->birth, "%s", s);
        f->subject.birth_date = f->birth;
}

static inline void add_concern(fixture *f, Allvarssamtal__V1__Concern c) {
        f->concerns[f->r.n_concerns++] = c;
        f->r.concerns = f->concerns;
}

static inline void add_offence(fixture *f, bool imprisonable) {
        size_t i = f->r.n_offences++;
        f->o[i] = (Allvarssamtal__V1__Offence)ALLVARSSAMTAL__V1__OFFENCE__INIT;
        f->o[i].code = (char *)(imprisonable ? "BRB 8:1" : "LOV 1");
        f->o[i].severity = ALLVARSSAMTAL__V1__SEVERITY__SEVERITY_PETTY;
        f->o[i].imprisonable = imprisonable;
        f->op[i] = &f->o[i];
        f->r.offences = f->op;
}

static inline void add_guardian(fixture *f, const char *phone) {
        size_t i = f->r.n_guardians++;
        f->g[i] = (Allvarssamtal__V1__Guardian)ALLVARSSAMTAL__V1__GUARDIAN__INIT;
        f->g[i].name = (char *)"Förälder";
        f->g[i].phone = (char *)phone;
        f->gp[i] = &f->g[i];
        f->r.guardians = f->gp;
}

static inline void set_incident(fixture *f, usec_t t) {
        set_time(&f->incident, t);
        f->r.incident_at = &f->incident;
}

/* A referral reported 2025-03-10T10:00:00Z (a Monday, CET) about a child born
 * on `birth`, with a guardian's phone, a suspected imprisonable crime, nothing
 * else. Every profile finds it eligible for ages it covers. */
static inline void init(fixture *f, int by, int bm, int bd) {
        memset(f, 0, sizeof *f);
        f->r = (PoliceReferral)ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        f->subject = (Allvarssamtal__V1__Person)ALLVARSSAMTAL__V1__PERSON__INIT;
        f->reported = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->incident = (Google__Protobuf__Timestamp)GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        f->r.referral_id = (char *)"PM-1";
        set_time(&f->reported, at("2025-03-10T10:00:00Z"));
        f->r.reported_at = &f->reported;
        f->r.subject = &f->subject;
        set_pnr(f, by, bm, bd);
        add_guardian(f, "070-123 45 67");
        add_concern(f, ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME);
        add_offence(f, true);
        f->now = at("2025-03-10T10:05:00Z");
}

static inline void reported(fixture *f, const char *s) {
        set_time(&f->reported, at(s));
}

static inline void clear_concerns(fixture *f) {
        f->r.n_concerns = 0;
        f->r.n_offences = 0;
}

static inline decision decide(const fixture *f, const profile *p) {
        decision d;
        memset(&d, 0xa5, sizeof d);     /* rules_decide must set every field */
        rules_decide(p, &f->r, &f->h, f->now, &d);
        return d;
}

static inline const profile *P(const char *name) {
        const profile *p = profiles_find(name);
        assert_non_null(p);
        return p;
}

#define GBG P("goteborg-motion-2024")
#define STHLM P("stockholm-2019")
#define DS P("ds-2024-30")
#define TUTI P("trollhattan-tuti")

static inline void assert_decision(decision d, decision_outcome o, uint32_t reasons) {
        if (d.outcome != o || d.reasons != reasons)
                fail_msg("outcome %s reasons 0x%x, expected %s 0x%x", decision_outcome_code(d.outcome), d.reasons,
                         decision_outcome_code(o), reasons);
}

static inline void assert_eligible(decision d, const profile *p, usec_t reported_at) {
        assert_decision(d, OUTCOME_ELIGIBLE, 0);
        assert_int_equal(d.deadline, reported_at + p->limit);
        assert_int_equal(d.deadline_kind, p->deadline_kind);
        assert_ptr_equal(d.profile, p);
}

static inline void assert_no_deadline(decision d) {
        assert_int_equal(d.deadline, 0);
        assert_int_equal(d.deadline_kind, DEADLINE_NONE);
}
