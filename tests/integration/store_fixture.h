/* What the store's tests share (test-store.c, test-store-concurrency.c,
 * test-store-roles.c): a fresh database per test (tests/lib/harness.h),
 * referrals built as protobuf-c structs, batches of them at the fixture's
 * offsets stored with referral_batch_store, and row counts to compare.
 * Include after cmocka.h. */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "batch.h"
#include "codec.h"
#include "config.h"
#include "deadline_watch.h"
#include "events.h"
#include "harness.h"
#include "identity.h"
#include "ids.h"
#include "lanes.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "rules.h"
#include "store.h"

#define T0 ((usec_t)1741593600 * USEC_PER_SEC)       /* 2025-03-10T08:00:00Z */
#define H(n) ((usec_t)(n) * USEC_PER_HOUR)
#define TOPIC "police.referrals.v1"
#define GROUP "allvarsd-test"
#define PARTS 8
#define BATCH_MAX 600

/* ---- the database of one test (tests/lib/harness.h) ---- */

typedef struct fixture {
        harness_store_env h;            /* first: harness_store_setup and _teardown use it as the env */
        int64_t next_offset[PARTS];     /* the next offset to hand out per partition */
        int64_t stored[PARTS];          /* what the database holds (-1: nothing) */
} fixture;
_Static_assert(offsetof(fixture, h) == 0, "the env comes first");

#define count(fx, ...) harness_count((fx)->h.pg, __VA_ARGS__)
#define value(fx, ...) harness_value((fx)->h.pg, __VA_ARGS__)

static inline void stored_none(fixture *fx) {
        for (int p = 0; p < PARTS; p++)
                fx->stored[p] = -1;
}

static inline int fixture_setup(void **state, const char *extra_config) {
        if (harness_store_setup(state, sizeof(fixture), "test-store", extra_config) < 0)
                return -1;
        stored_none(*state);
        return 0;
}

static inline int setup(void **state) {
        return fixture_setup(state, "");
}

static inline int setup_stockholm(void **state) {
        return fixture_setup(state, "profile.name = stockholm-2019\n");
}

/* ---- referrals ---- */

/* A personnummer YYYYMMDD-NNNC with its Luhn digit over YYMMDDNNN. */
static inline void make_pnr(char out[14], int year, int month, int day, int serial) {
        char d9[32];
        snprintf(d9, sizeof d9, "%02u%02u%02u%03u", (unsigned)year % 100, (unsigned)month % 100, (unsigned)day % 100,
                 (unsigned)serial % 1000);
        snprintf(out, 14, "%04u%02u%02u-%03u%d", (unsigned)year % 10000, (unsigned)month % 100, (unsigned)day % 100,
                 (unsigned)serial % 1000, harness_luhn_digit(d9));
}

typedef struct refspec {
        const char *id;
        const char *pnr;                /* NULL: a child born 2012-05-05 with serial `person` */
        int person;
        const char *district;
        usec_t reported;                /* 0: T0 */
        bool environment_only;          /* only CONCERN_INAPPROPRIATE_ENVIRONMENT (no crime) */
        bool acute;
        bool no_phone;
        bool feedback;
} refspec;

typedef struct ref {
        PoliceReferral r;
        Allvarssamtal__V1__Person subject;
        Google__Protobuf__Timestamp reported;
        Allvarssamtal__V1__Guardian g[2];
        Allvarssamtal__V1__Guardian *gp[2];
        Allvarssamtal__V1__Concern concerns[1];
        char id[64], pnr[32], district[32], narrative[600];
        uint8_t *payload;
        size_t len;
} ref;

static inline ref *ref_new(const refspec *s) {
        ref *x = calloc(1, sizeof *x);
        assert_non_null(x);
        allvarssamtal__v1__police_referral__init(&x->r);
        allvarssamtal__v1__person__init(&x->subject);
        google__protobuf__timestamp__init(&x->reported);
        snprintf(x->id, sizeof x->id, "%s", s->id);
        if (s->pnr)
                snprintf(x->pnr, sizeof x->pnr, "%s", s->pnr);
        else
                make_pnr(x->pnr, 2012, 5, 5, s->person);
        snprintf(x->district, sizeof x->district, "%s", s->district ? s->district : "hisingen");
        /* Personal text with quotes, backslashes and non-ASCII: it must arrive unchanged. */
        snprintf(x->narrative, sizeof x->narrative, "Polisen träffade \"%s\" vid köpcentret; C:\\väg\n{a,b} 'x'",
                 s->id);
        x->r.referral_id = x->id;
        x->r.police_case_number = "5000-K123-25";
        codec_timestamp_set(&x->reported, s->reported ? s->reported : T0);
        x->r.reported_at = &x->reported;
        x->r.district = x->district;
        x->subject.identity_number = x->pnr;
        x->subject.given_name = "Saga";
        x->subject.family_name = "Öberg-O'Neil";
        x->r.subject = &x->subject;
        for (int i = 0; i < 2; i++) {
                allvarssamtal__v1__guardian__init(&x->g[i]);
                x->gp[i] = &x->g[i];
        }
        x->g[0].name = "Anna Öberg";
        x->g[0].phone = s->no_phone ? "" : "+46701234567";
        x->g[0].email = "anna@example.se";
        x->g[1].name = "Per Öberg";
        x->g[1].postal_address = "Storgatan 1\n41101 Göteborg";
        x->r.guardians = x->gp;
        x->r.n_guardians = 2;
        x->concerns[0] = s->environment_only ? ALLVARSSAMTAL__V1__CONCERN__CONCERN_INAPPROPRIATE_ENVIRONMENT
                                             : ALLVARSSAMTAL__V1__CONCERN__CONCERN_SUSPECTED_CRIME;
        x->r.concerns = x->concerns;
        x->r.n_concerns = 1;
        x->r.acute_risk = s->acute;
        x->r.feedback_requested = s->feedback;
        x->r.reporting_unit = "Polisregion Väst";
        x->r.narrative = x->narrative;
        x->len = codec_pack(&x->r.base, &x->payload);
        assert_non_null(x->payload);
        return x;
}

static inline void ref_free(ref *x) {
        if (!x)
                return;
        free(x->payload);
        free(x);
}

typedef struct batch {
        store_message m[BATCH_MAX];
        ref *refs[BATCH_MAX];
        codec_error errs[BATCH_MAX];
        size_t n;
        store_offset off[PARTS];
        size_t n_off;
        store_batch_result res;
} batch;

static inline batch *batch_new(void) {
        batch *b = calloc(1, sizeof *b);
        assert_non_null(b);
        return b;
}

static inline void batch_free(batch *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                ref_free(b->refs[i]);
        free(b);
}

/* Append a referral (or, with s == NULL, a poison message) at the next offset of partition. */
static inline store_message *batch_add(fixture *fx, batch *b, const refspec *s, int32_t partition) {
        assert_true(b->n < BATCH_MAX);
        store_message *m = &b->m[b->n];
        m->topic = TOPIC;
        m->partition = partition;
        m->offset = fx->next_offset[partition]++;
        if (s) {
                ref *x = b->refs[b->n] = ref_new(s);
                m->payload = x->payload;
                m->len = x->len;
                m->referral = &x->r;
        } else {
                static const uint8_t junk[] = { 0xff, 0x13, 0x37, 0x00, 0x42 };
                m->payload = junk;
                m->len = sizeof junk;
                b->errs[b->n] = (codec_error){ .reason = DLR_UNDECODABLE, .detail = "truncated varint in field 6" };
                m->error = &b->errs[b->n];
        }
        b->n++;
        return m;
}

/* The offsets of the batch from what the fixture believes is stored. */
static inline void batch_offsets(fixture *fx, batch *b) {
        b->n_off = 0;
        for (size_t i = 0; i < b->n; i++) {
                store_offset *o = NULL;
                for (size_t j = 0; j < b->n_off; j++)
                        if (b->off[j].partition == b->m[i].partition)
                                o = &b->off[j];
                if (!o) {
                        o = &b->off[b->n_off++];
                        o->topic = TOPIC;
                        o->partition = b->m[i].partition;
                        o->expected_next = fx->stored[o->partition];
                }
                o->new_next = b->m[i].offset + 1;
        }
}

static inline int run_on(fixture *fx, store *st, batch *b, usec_t now) {
        if (b->n_off == 0)
                batch_offsets(fx, b);
        int r = referral_batch_store(st, fx->h.cfg, GROUP, now, b->m, b->n, b->off, b->n_off, NULL, &b->res);
        if (r == 0)
                for (size_t j = 0; j < b->n_off; j++)
                        fx->stored[b->off[j].partition] = b->off[j].new_next;
        return r;
}

static inline void run_ok(fixture *fx, batch *b, usec_t now) {
        int r = run_on(fx, fx->h.st, b, now);
        if (r < 0)
                fail_msg("referral_batch_store: %s: %s", strerror(-r), store_last_error(fx->h.st));
}

/* Rows of every table the batch writes, to show that something wrote nothing. */
typedef struct snapshot {
        long long n[11];
} snapshot;

static const char *const snapshot_tables[11] = {
        "persons", "referrals", "referral_personal", "decisions", "cases", "case_contacts",
        "case_alerts", "audit", "outbox", "dead_letters", "consumer_offsets",
};

static inline snapshot snap(fixture *fx) {
        snapshot s;
        for (int i = 0; i < 11; i++)
                s.n[i] = count(fx, "SELECT count(*) FROM allvarsd.%s", snapshot_tables[i]);
        return s;
}

static inline void assert_same(fixture *fx, const snapshot *a) {
        snapshot b = snap(fx);
        for (int i = 0; i < 11; i++)
                if (a->n[i] != b.n[i])
                        fail_msg("%s: %lld rows, expected %lld", snapshot_tables[i], b.n[i], a->n[i]);
}

static inline const char *outcome_of(fixture *fx, const char *referral_id, char buf[64]) {
        return value(fx, buf, 64, "SELECT outcome FROM allvarsd.decisions WHERE referral_id = '%s'", referral_id);
}
