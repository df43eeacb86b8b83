/* The store against a real PostgreSQL server (PGHOST/PGPORT/PGUSER from
 * tests/lib/pg.sh; tests/run starts one): a fresh database per test, migrated
 * with store_migrate, referrals built as protobuf-c structs and stored with
 * referral_batch_store; the rows are counted with the test's own connection.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-store; pg_stop
 *
 * ALLVARS_STORE_BENCH_BATCHES (default 20) sets the size of the throughput run
 * (500 referrals per batch), whose figure is printed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "codec.h"
#include "config.h"
#include "deadline_watch.h"
#include "events.h"
#include "harness.h"
#include "identity.h"
#include "ids.h"
#include "lanes.h"
#include "rules.h"
#include "outcome_batch.h"
#include "referral_batch.h"
#include "store.h"
#include "batch.h"

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

static void stored_none(fixture *fx) {
        for (int p = 0; p < PARTS; p++)
                fx->stored[p] = -1;
}

static int fixture_setup(void **state, const char *extra_config) {
        if (harness_store_setup(state, sizeof(fixture), "test-store", extra_config) < 0)
                return -1;
        stored_none(*state);
        return 0;
}

static int setup(void **state) {
        return fixture_setup(state, "");
}

static int setup_stockholm(void **state) {
        return fixture_setup(state, "profile.name = stockholm-2019\n");
}

/* ---- referrals ---- */

/* A personnummer YYYYMMDD-NNNC with its Luhn digit over YYMMDDNNN. */
static void make_pnr(char out[14], int year, int month, int day, int serial) {
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

static ref *ref_new(const refspec *s) {
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

static void ref_free(ref *x) {
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

static batch *batch_new(void) {
        batch *b = calloc(1, sizeof *b);
        assert_non_null(b);
        return b;
}

static void batch_free(batch *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n; i++)
                ref_free(b->refs[i]);
        free(b);
}

/* Append a referral (or, with s == NULL, a poison message) at the next offset of partition. */
static store_message *batch_add(fixture *fx, batch *b, const refspec *s, int32_t partition) {
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
static void batch_offsets(fixture *fx, batch *b) {
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

static int run_on(fixture *fx, store *st, batch *b, usec_t now) {
        if (b->n_off == 0)
                batch_offsets(fx, b);
        int r = referral_batch_store(st, fx->h.cfg, GROUP, now, b->m, b->n, b->off, b->n_off, NULL, &b->res);
        if (r == 0)
                for (size_t j = 0; j < b->n_off; j++)
                        fx->stored[b->off[j].partition] = b->off[j].new_next;
        return r;
}

static void run_ok(fixture *fx, batch *b, usec_t now) {
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

static snapshot snap(fixture *fx) {
        snapshot s;
        for (int i = 0; i < 11; i++)
                s.n[i] = count(fx, "SELECT count(*) FROM allvarsd.%s", snapshot_tables[i]);
        return s;
}

static void assert_same(fixture *fx, const snapshot *a) {
        snapshot b = snap(fx);
        for (int i = 0; i < 11; i++)
                if (a->n[i] != b.n[i])
                        fail_msg("%s: %lld rows, expected %lld", snapshot_tables[i], b.n[i], a->n[i]);
}

static const char *outcome_of(fixture *fx, const char *referral_id, char buf[64]) {
        return value(fx, buf, 64, "SELECT outcome FROM allvarsd.decisions WHERE referral_id = '%s'", referral_id);
}

/* ---- tests ---- */

/* A batch of referrals of every outcome, decided once: every row counted, the
 * message outputs filled, personal text stored byte for byte, NOTIFY sent;
 * the same batch again (next offsets) is all duplicates and writes nothing
 * but the offsets. */
static void test_batch_decided_once(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "LISTEN allvarsd_outbox");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-ELIGIBLE", .person = 1, .feedback = true }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-ADULT", .pnr = "19900101-0017" }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-BAD-PNR", .pnr = "20120505-0000" }, 1);
        batch_add(fx, b, &(refspec){ .id = "R-ACUTE", .person = 4, .acute = true }, 1);
        batch_add(fx, b, &(refspec){ .id = "R-NO-PHONE", .person = 5, .no_phone = true, .feedback = true }, 0);
        run_ok(fx, b, T0 + H(1));

        assert_int_equal(b->res.decided, 5);
        assert_int_equal(b->res.duplicates, 0);
        assert_int_equal(b->res.dead_lettered, 0);
        assert_int_equal(b->res.cases_opened, 4);               /* all but the adult */
        assert_int_equal(b->res.alerts, 0);
        assert_int_equal(b->res.events, count(fx, "SELECT count(*) FROM allvarsd.outbox"));
        assert_true(b->res.events >= 5 + 1);                    /* feedback and a scheduling request at least */

        static const struct {
                const char *id;
                decision_outcome o;
        } want[] = {
                { "R-ELIGIBLE", OUTCOME_ELIGIBLE },      { "R-ADULT", OUTCOME_NOT_ELIGIBLE },
                { "R-BAD-PNR", OUTCOME_MANUAL_REVIEW },  { "R-ACUTE", OUTCOME_DEFERRED },
                { "R-NO-PHONE", OUTCOME_ELIGIBLE },
        };
        char buf[512], case_id[UUID_STR_LEN];
        for (size_t i = 0; i < b->n; i++) {
                store_message *m = &b->m[i];
                assert_string_equal(b->refs[i]->id, want[i].id);
                assert_int_equal(m->status, STORE_DECIDED);
                assert_int_equal(m->outcome, want[i].o);
                ids_case_id(want[i].id, case_id);
                assert_string_equal(m->case_id, case_id);
                assert_string_equal(outcome_of(fx, want[i].id, buf), decision_outcome_code(want[i].o));
                assert_string_equal(value(fx, buf, sizeof buf,
                                          "SELECT case_id FROM allvarsd.referrals WHERE referral_id = '%s'", want[i].id),
                                    case_id);
        }
        assert_true(b->m[4].flags & FLAG_CONTACT_MISSING);
        assert_true(b->m[3].reasons & REASON_PROTECTIVE_ASSESSMENT_FIRST);
        assert_true(b->m[2].reasons & REASON_IDENTITY_INVALID);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 5);
        /* Each referral's statistics row, in the same transaction (schemas/011_referral_stats.sql). */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats"), 5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats s JOIN allvarsd.referrals r"
                                   " USING (case_id) WHERE (r.referral_id = 'R-ADULT') = (s.outcome = 'NOT_ELIGIBLE'"
                                   " AND s.facts & 512 = 0 AND s.state IS NULL)"),   /* 512: a case */
                         5);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats s JOIN allvarsd.referrals r"
                                   " USING (case_id) WHERE r.referral_id = 'R-ACUTE' AND s.outcome = 'DEFERRED'"
                                   " AND s.facts & 32 <> 0 AND s.assessment_due IS NOT NULL AND s.state = 'DEFERRED'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_contacts"), 8);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'DECIDED' AND actor_kind = 'DAEMON'"),
                         5);
        /* Persons only for valid identity numbers: the adult, the children 1, 4, 5. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.persons"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE person_key IS NULL"), 1);

        /* The case rows as the lifecycle expects them. */
        ids_case_id("R-ACUTE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'DEFERRED'"
                                   " AND awaiting_assessment AND NOT awaiting_clearance AND deadline IS NULL"
                                   " AND protective_assessment_due = '2025-03-11T08:00:00Z'",
                               case_id),
                         1);
        ids_case_id("R-ELIGIBLE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND state = 'ELIGIBLE'"
                                   " AND outcome = 'ELIGIBLE' AND deadline = '2025-03-12T08:00:00Z'"
                                   " AND deadline_kind = 'CONVERSATION' AND limit_seconds = 172800"
                                   " AND profile_name = 'goteborg-motion-2024' AND feedback_requested"
                                   " AND NOT awaiting_contact AND created_at = '2025-03-10T09:00:00Z'",
                               case_id),
                         1);
        ids_case_id("R-NO-PHONE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.cases WHERE case_id = '%s' AND awaiting_contact",
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-ELIGIBLE'"
                                   " AND age = 12 AND reasons = '' AND prior_referrals = 0"
                                   " AND profile_params LIKE 'name=goteborg-motion-2024;version=%%'"
                                   " AND decided_at = '2025-03-10T09:00:00Z'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'R-BAD-PNR'"
                                   " AND reasons = 'IDENTITY_INVALID' AND age IS NULL AND deadline IS NULL"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE referral_id = 'R-ELIGIBLE'"
                                   " AND after = 'outcome=ELIGIBLE;reasons=;flags=UNDER_15;deadline=2025-03-12T08:00:00Z'"),
                         1);

        /* Personal data and the raw message, byte for byte. */
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT narrative FROM allvarsd.referral_personal WHERE referral_id = 'R-ADULT'"),
                            b->refs[1]->narrative);
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT family_name || '|' || identity_number FROM allvarsd.referral_personal"
                                  " WHERE referral_id = 'R-ADULT'"),
                            "Öberg-O'Neil|19900101-0017");
        assert_int_equal(count(fx, "SELECT length(payload) FROM allvarsd.referral_personal WHERE referral_id = 'R-ACUTE'"),
                         (long long)b->refs[3]->len);
        assert_string_equal(value(fx, buf, sizeof buf,
                                  "SELECT postal_address FROM allvarsd.case_contacts c JOIN allvarsd.cases USING (case_id)"
                                  " WHERE referral_id = 'R-ELIGIBLE' AND ordinal = 2"),
                            "Storgatan 1\n41101 Göteborg");
        /* Outbox rows carry the case id as key and a stable event id. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o WHERE NOT EXISTS"
                                   " (SELECT 1 FROM allvarsd.referrals r WHERE r.case_id::text = o.key)"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_SCHEDULING),
                         2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE consumer_group = '%s'"
                                   " AND topic = '%s' AND partition = 0",
                               GROUP, TOPIC),
                         3);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 1"), 2);

        /* The relay is woken once the batch committed. */
        PQconsumeInput(fx->h.pg);
        PGnotify *nt = PQnotifies(fx->h.pg);
        assert_non_null(nt);
        assert_string_equal(nt->relname, "allvarsd_outbox");
        PQfreemem(nt);

        /* The same referrals again at later offsets: duplicates, nothing written. */
        snapshot before = snap(fx);
        batch *again = batch_new();
        for (size_t i = 0; i < b->n; i++) {
                store_message *m = batch_add(fx, again, &(refspec){ .id = b->refs[i]->id, .person = 77 },
                                             b->m[i].partition);
                (void)m;
        }
        run_ok(fx, again, T0 + H(2));
        assert_int_equal(again->res.decided, 0);
        assert_int_equal(again->res.duplicates, 5);
        assert_int_equal(again->res.events, 0);
        for (size_t i = 0; i < again->n; i++) {
                assert_int_equal(again->m[i].status, STORE_DUPLICATE);
                assert_string_equal(again->m[i].case_id, b->m[i].case_id);
        }
        assert_same(fx, &before);       /* the offsets moved, their rows did not multiply */
        assert_int_equal(count(fx, "SELECT sum(next_offset) FROM allvarsd.consumer_offsets"), 10);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE received_at > '2025-03-10T09:00:00Z'"), 0);
        batch_free(again);
        batch_free(b);
}

/* A later copy in the same batch is the duplicate (message order); across
 * batches the stored one wins. */
static void test_duplicates(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-2", .person = 2 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-1", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-2", .person = 3, .acute = true }, 1);   /* a changed resend */
        batch_add(fx, b, &(refspec){ .id = "R-1", .person = 1 }, 0);
        run_ok(fx, b, T0);
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.duplicates, 2);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[1].status, STORE_DECIDED);
        assert_int_equal(b->m[2].status, STORE_DUPLICATE);
        assert_int_equal(b->m[3].status, STORE_DUPLICATE);
        /* The first copy was decided: not acute, so ELIGIBLE, and its raw bytes kept. */
        char buf[64];
        assert_string_equal(outcome_of(fx, "R-2", buf), "ELIGIBLE");
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_personal WHERE referral_id = 'R-2'"
                                   " AND length(payload) = %zu",
                               b->refs[0]->len),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals WHERE referral_id = 'R-2' AND source_offset = 0"
                                   " AND source_partition = 0"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit"), 2);
        /* A duplicate does not count as history either. */
        assert_int_equal(count(fx, "SELECT max(prior_referrals) FROM allvarsd.decisions"), 0);

        long long outbox = count(fx, "SELECT count(*) FROM allvarsd.outbox");
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-1", .person = 1 }, 0);
        batch_add(fx, c, &(refspec){ .id = "R-3", .person = 3 }, 1);
        batch_add(fx, c, &(refspec){ .id = "R-3", .person = 3 }, 1);
        run_ok(fx, c, T0 + H(1));
        assert_int_equal(c->res.decided, 1);
        assert_int_equal(c->res.duplicates, 2);
        assert_int_equal(c->m[0].status, STORE_DUPLICATE);
        assert_int_equal(c->m[1].status, STORE_DECIDED);
        assert_int_equal(c->m[2].status, STORE_DUPLICATE);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 3);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), outbox + c->res.events);
        assert_int_equal(count(fx, "SELECT count(DISTINCT key) FROM allvarsd.outbox"), 3);
        batch_free(c);
        batch_free(b);
}

/* A position that moved (another consumer, a rebalance) fences the whole
 * batch: -ESTALE, nothing written, the messages left pending. */
static void test_stale_offset(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-A", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-B", .person = 2 }, 0);
        run_ok(fx, b, T0);
        assert_int_equal(fx->stored[0], 2);

        snapshot before = snap(fx);
        /* A consumer that believes offset 1 is next (it read the table before). */
        batch *late = batch_new();
        batch_add(fx, late, &(refspec){ .id = "R-C", .person = 3 }, 0);
        batch_add(fx, late, &(refspec){ .id = "R-D", .person = 4 }, 5);
        batch_offsets(fx, late);
        late->off[0].expected_next = 1;
        assert_int_equal(run_on(fx, fx->h.st, late, T0), -ESTALE);
        assert_same(fx, &before);
        for (size_t i = 0; i < late->n; i++)
                assert_int_equal(late->m[i].status, STORE_PENDING);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 0"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.consumer_offsets WHERE partition = 5"), 0);

        /* "No row yet" when there is one is just as stale. */
        late->off[0].expected_next = -1;
        assert_int_equal(run_on(fx, fx->h.st, late, T0), -ESTALE);
        assert_same(fx, &before);

        /* With the right positions the same batch goes through, and the store is usable. */
        late->off[0].expected_next = 2;
        run_ok(fx, late, T0);
        assert_int_equal(late->res.decided, 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 5"), 1);

        int64_t next[3];
        int32_t parts[3] = { 0, 5, 6 };
        assert_int_equal(store_load_offsets(fx->h.st, GROUP, TOPIC, parts, 3, next), 0);
        assert_int_equal(next[0], 3);
        assert_int_equal(next[1], 1);
        assert_int_equal(next[2], -1);
        assert_int_equal(store_load_offsets(fx->h.st, "another-group", TOPIC, parts, 1, next), 0);
        assert_int_equal(next[0], -1);
        batch_free(late);
        batch_free(b);
}

/* A poison message becomes a dead letter (row + event) while the rest of the
 * batch is decided; the same offset again does not dead-letter twice. */
static void test_poison_message(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-BEFORE", .person = 1 }, 2);
        batch_add(fx, b, NULL, 2);
        batch_add(fx, b, &(refspec){ .id = "R-AFTER", .person = 2 }, 2);
        run_ok(fx, b, T0 + H(1));
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.dead_lettered, 1);
        assert_int_equal(b->m[1].status, STORE_DEAD_LETTERED);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[2].status, STORE_DECIDED);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE source_topic = '%s'"
                                   " AND source_partition = 2 AND source_offset = 1 AND reason = 'UNDECODABLE'"
                                   " AND detail = 'truncated varint in field 6' AND length(payload) = 5"
                                   " AND received_at = '2025-03-10T09:00:00Z'",
                               TOPIC),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o JOIN allvarsd.dead_letters d USING (event_id)"
                                   " WHERE o.ce_type = '%s' AND o.topic = '%s' AND o.key = '%s/2'",
                               CE_TYPE_DEAD_LETTER, fx->h.cfg->topic_dead_letter, TOPIC),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 2"), 3);

        /* A batch of nothing but poison still moves the partition on. */
        batch *c = batch_new();
        batch_add(fx, c, NULL, 2);
        run_ok(fx, c, T0 + H(2));
        assert_int_equal(c->res.dead_lettered, 1);
        assert_int_equal(c->res.events, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 2);
        assert_int_equal(count(fx, "SELECT next_offset FROM allvarsd.consumer_offsets WHERE partition = 2"), 4);

        /* Offsets reset by hand: the same poison offset again is the same
         * dead letter (its row and event exist), and the batch still commits. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.consumer_offsets WHERE partition = 2");
        fx->stored[2] = -1;
        fx->next_offset[2] = 3;
        batch *replay = batch_new();
        batch_add(fx, replay, NULL, 2);
        run_ok(fx, replay, T0 + H(3));
        assert_int_equal(replay->m[0].status, STORE_DEAD_LETTERED);
        assert_int_equal(replay->res.events, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE ce_type = '%s'", CE_TYPE_DEAD_LETTER), 2);
        batch_free(replay);

        store_figures f;
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);
        assert_int_equal(f.dead_letters, 2);
        assert_int_equal(f.cases_open, 2);
        assert_int_equal(f.outbox_backlog, count(fx, "SELECT count(*) FROM allvarsd.outbox"));
        assert_true(f.outbox_oldest > 0);
        harness_exec_ok(fx->h.pg, HARNESS_SQL_DELIVER_ALL);
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);
        assert_int_equal(f.outbox_backlog, 0);
        assert_int_equal(f.outbox_oldest, 0);

        /* Reset again once the events were delivered (their rows are in
         * outbox_sent now): still not written, so not published again. */
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.consumer_offsets WHERE partition = 2");
        fx->stored[2] = -1;
        fx->next_offset[2] = 3;
        replay = batch_new();
        batch_add(fx, replay, NULL, 2);
        run_ok(fx, replay, T0 + H(4));
        assert_int_equal(replay->m[0].status, STORE_DEAD_LETTERED);
        assert_int_equal(replay->res.events, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent WHERE ce_type = '%s'",
                               CE_TYPE_DEAD_LETTER),
                         2);
        batch_free(replay);
        batch_free(c);
        batch_free(b);
}

/* stockholm-2019: only the first referral of a person with a suspected crime
 * qualifies; history is read across batches and, in message order, within one.
 * The same person written with a ten-digit number is the same person. */
static void test_first_time_history(void **state) {
        fixture *fx = *state;
        char pnr_a[14], short_a[14];
        make_pnr(pnr_a, 2010, 7, 14, 321);
        /* YYMMDD-NNNC: the same number, ten digits. */
        snprintf(short_a, sizeof short_a, "%s", pnr_a + 2);

        batch *b1 = batch_new();
        batch_add(fx, b1, &(refspec){ .id = "A-1", .pnr = pnr_a }, 0);
        batch_add(fx, b1, &(refspec){ .id = "C-1", .person = 30, .environment_only = true }, 0);
        batch_add(fx, b1, &(refspec){ .id = "B-1", .person = 20 }, 1);
        batch_add(fx, b1, &(refspec){ .id = "B-2", .person = 20 }, 1);
        run_ok(fx, b1, T0);
        assert_int_equal(b1->m[0].outcome, OUTCOME_ELIGIBLE);
        assert_int_equal(b1->m[1].outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(b1->m[1].reasons & REASON_NO_QUALIFYING_CONCERN);
        assert_int_equal(b1->m[2].outcome, OUTCOME_ELIGIBLE);
        assert_false(b1->m[2].flags & FLAG_REPEAT_REFERRAL);
        assert_int_equal(b1->m[3].outcome, OUTCOME_NOT_ELIGIBLE);       /* B-2 after B-1 in the same batch */
        assert_true(b1->m[3].reasons & REASON_NOT_FIRST_SUSPICION);
        assert_true(b1->m[3].flags & FLAG_REPEAT_REFERRAL);

        batch *b2 = batch_new();
        batch_add(fx, b2, &(refspec){ .id = "A-2", .pnr = short_a }, 1);
        batch_add(fx, b2, &(refspec){ .id = "C-2", .person = 30 }, 0);
        batch_add(fx, b2, &(refspec){ .id = "D-1", .person = 40 }, 0);
        run_ok(fx, b2, T0 + H(1));
        assert_int_equal(b2->m[0].outcome, OUTCOME_NOT_ELIGIBLE);
        assert_true(b2->m[0].reasons & REASON_NOT_FIRST_SUSPICION);
        assert_true(b2->m[0].flags & FLAG_REPEAT_REFERRAL);
        /* C's earlier referral did not qualify: this one is the first suspicion. */
        assert_int_equal(b2->m[1].outcome, OUTCOME_ELIGIBLE);
        assert_true(b2->m[1].flags & FLAG_REPEAT_REFERRAL);
        assert_int_equal(b2->m[2].outcome, OUTCOME_ELIGIBLE);

        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'A-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 1 AND profile_name = 'stockholm-2019'"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'C-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 0"),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id = 'B-2'"
                                   " AND prior_referrals = 1 AND prior_qualifying = 1"),
                         1);
        assert_int_equal(count(fx, "SELECT count(DISTINCT person_key) FROM allvarsd.referrals"
                                   " WHERE referral_id IN ('A-1', 'A-2')"),
                         1);
        /* The person key is the keyed hash, never the number itself. */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.persons WHERE length(person_key) = 32"), 4);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals r JOIN allvarsd.referral_personal p"
                                   " USING (referral_id) WHERE position(convert_to(replace(p.identity_number, '-', ''),"
                                   " 'UTF8') IN r.person_key) > 0"),
                         0);
        batch_free(b2);
        batch_free(b1);
}

/* ---- two instances deciding one person at once ---- */

typedef struct racer {
        fixture *fx;
        store *st;
        pthread_barrier_t *barrier;
        batch *b;
        int r;
} racer;

static void *race(void *arg) {
        racer *rc = arg;
        if (rc->barrier)
                pthread_barrier_wait(rc->barrier);
        for (int attempt = 0; attempt < 5; attempt++) {
                rc->r = referral_batch_store(rc->st, rc->fx->h.cfg, GROUP, T0 + H(1), rc->b->m, rc->b->n, rc->b->off,
                                             rc->b->n_off, NULL, &rc->b->res);
                if (rc->r != -EAGAIN)
                        break;
        }
        return NULL;
}

static void race_two(fixture *fx, store *st[2], batch *b[2], pthread_barrier_t *barrier, void (*while_running)(fixture *)) {
        racer rc[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
                batch_offsets(fx, b[i]);
                rc[i] = (racer){ .fx = fx, .st = st[i], .barrier = barrier, .b = b[i] };
                assert_int_equal(pthread_create(&th[i], NULL, race, &rc[i]), 0);
        }
        if (while_running)
                while_running(fx);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < 2; i++) {
                if (rc[i].r < 0)
                        fail_msg("racer %d: %s: %s", i, strerror(-rc[i].r), store_last_error(st[i]));
                for (size_t j = 0; j < b[i]->n_off; j++)
                        fx->stored[b[i]->off[j].partition] = b[i]->off[j].new_next;
        }
}

/* Exactly one of the two referrals of the person is the first suspicion. */
static void check_one_first(batch *b[2]) {
        assert_int_equal(b[0]->res.decided + b[1]->res.decided, 2);
        int eligible = 0, not_first = 0;
        for (int i = 0; i < 2; i++) {
                if (b[i]->m[0].outcome == OUTCOME_ELIGIBLE)
                        eligible++;
                if (b[i]->m[0].outcome == OUTCOME_NOT_ELIGIBLE && (b[i]->m[0].reasons & REASON_NOT_FIRST_SUSPICION))
                        not_first++;
        }
        assert_int_equal(eligible, 1);
        assert_int_equal(not_first, 1);
}

/* Wait until both racers wait for a lock, then let them go. */
static void release_when_both_wait(fixture *fx) {
        for (int i = 0; i < 200; i++) {
                if (count(fx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                              " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()") == 2)
                        break;
                usleep(50 * 1000);
        }
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                   " AND wait_event_type = 'Lock'"),
                         2);
        harness_exec_ok(fx->h.pg, "COMMIT");
}

static void test_concurrent_same_person(void **state) {
        fixture *fx = *state;
        store *st[2];
        for (int i = 0; i < 2; i++)
                assert_int_equal(harness_store_connect(&fx->h.db, &st[i]), 0);

        /* Deterministic: the person is locked by the test while both batches
         * reach the lock, so both have inserted their referral when the first
         * one reads the history. */
        char pnr[14];
        make_pnr(pnr, 2011, 2, 3, 500);
        identity id;
        assert_int_equal(identity_parse(pnr, stockholm_date(T0), &id), IDENTITY_VALID);
        uint8_t key[PERSON_KEY_LEN];
        assert_int_equal(ids_person_key(fx->h.cfg->pepper, fx->h.cfg->pepper_len, id.normalised, key), 0);
        const char *kv[1] = { (const char *)key };
        int kl[1] = { PERSON_KEY_LEN }, kf[1] = { 1 };
        PGresult *res = PQexecParams(fx->h.pg, "INSERT INTO allvarsd.persons (person_key) VALUES ($1)", 1, NULL, kv, kl,
                                     kf, 0);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
        harness_exec_ok(fx->h.pg, "BEGIN");
        res = PQexecParams(fx->h.pg, "SELECT 1 FROM allvarsd.persons WHERE person_key = $1 FOR UPDATE", 1, NULL, kv, kl,
                           kf, 0);
        assert_int_equal(PQntuples(res), 1);
        PQclear(res);
        batch *b[2] = { batch_new(), batch_new() };
        batch_add(fx, b[0], &(refspec){ .id = "X-1", .pnr = pnr }, 0);
        batch_add(fx, b[1], &(refspec){ .id = "X-2", .pnr = pnr }, 1);
        race_two(fx, st, b, NULL, release_when_both_wait);
        check_one_first(b);
        batch_free(b[0]);
        batch_free(b[1]);

        /* Free-running: the two start together, person by person. */
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        for (int round = 0; round < 15; round++) {
                char rid[2][32];
                batch *c[2] = { batch_new(), batch_new() };
                for (int i = 0; i < 2; i++) {
                        snprintf(rid[i], sizeof rid[i], "Y-%d-%d", round, i);
                        batch_add(fx, c[i], &(refspec){ .id = rid[i], .person = 600 + round }, i);
                }
                race_two(fx, st, c, &barrier, NULL);
                check_one_first(c);
                batch_free(c[0]);
                batch_free(c[1]);
        }
        pthread_barrier_destroy(&barrier);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE outcome = 'ELIGIBLE'"), 16);
        for (int i = 0; i < 2; i++)
                store_free(st[i]);
}

/* ---- two lanes of one run: turns on the persons they share ---- */

typedef struct lane_batch {
        fixture *fx;
        batch *b;
        lane_turn turn;
} lane_batch;

static int lane_decide(store *st, void *arg) {
        lane_batch *lb = arg;
        return batch_store(st, lb->fx->h.cfg, GROUP, T0 + H(1), false, lb->b->m, lb->b->n, lb->b->off, lb->b->n_off,
                           &lb->turn, &lb->b->res);
}

/* The consumer's batch split over two lanes whose referrals share persons
 * (lanes.h "turns"): the lower lane's referral of a shared person is always
 * the first suspicion and the higher lane's, decided after the lower lane
 * committed, sees it (NOT_FIRST_SUSPICION, one prior); each lane's own
 * persons are first. Without turns the two would meet on the persons' locks
 * and the order would be whichever lane locked first. */
static void test_lanes_take_turns(void **state) {
        fixture *fx = *state;
        lanes *l;
        assert_int_equal(lanes_new(fx->h.cfg, fx->h.st, 2, &l), 0);
        for (int round = 0; round < 8; round++) {
                batch *b[2] = { batch_new(), batch_new() };
                lane_batch lb[2];
                for (int k = 0; k < 2; k++) {
                        char id[64];
                        for (int p = 0; p < 5; p++) {
                                snprintf(id, sizeof id, "TURN-%d-%d-%d", round, k, p);
                                batch_add(fx, b[k], &(refspec){ .id = id, .person = 700 + round * 10 + p }, k);
                        }
                        snprintf(id, sizeof id, "TURN-%d-%d-own", round, k);
                        batch_add(fx, b[k], &(refspec){ .id = id, .person = 705 + round * 10 + k }, k);
                        batch_offsets(fx, b[k]);
                        lb[k] = (lane_batch){ .fx = fx, .b = b[k], .turn = { .l = l, .k = (unsigned)k } };
                }
                void *args[2] = { &lb[0], &lb[1] };
                int rets[2];
                lanes_run(l, lane_decide, args, rets);
                for (int k = 0; k < 2; k++) {
                        if (rets[k] < 0) {
                                char why[256];
                                lanes_error(l, (unsigned)k, why, sizeof why);
                                fail_msg("lane %d: %s: %s", k, strerror(-rets[k]), why);
                        }
                        assert_int_equal(b[k]->res.decided, 6);
                        for (size_t j = 0; j < b[k]->n_off; j++)
                                fx->stored[b[k]->off[j].partition] = b[k]->off[j].new_next;
                        assert_int_equal(b[k]->m[5].outcome, OUTCOME_ELIGIBLE);
                }
                for (int p = 0; p < 5; p++) {
                        assert_int_equal(b[0]->m[p].outcome, OUTCOME_ELIGIBLE);
                        assert_int_equal(b[1]->m[p].outcome, OUTCOME_NOT_ELIGIBLE);
                        assert_true(b[1]->m[p].reasons & REASON_NOT_FIRST_SUSPICION);
                }
                batch_free(b[0]);
                batch_free(b[1]);
        }
        lanes_free(l);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id LIKE 'TURN-%%-1-_'"
                                   " AND prior_referrals = 1"),
                         40);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions WHERE referral_id LIKE 'TURN-%%-0-_'"
                                   " AND prior_referrals = 0"),
                         40);
}

/* The deadline had passed when the referral arrived: MISSED at once, with its
 * alert event, the police's NOT_HELD_IN_TIME and an audit row, and the
 * deadline watch finds it already raised. */
static void test_deadline_passed_on_arrival(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-LATE", .person = 1, .feedback = true }, 0);
        run_ok(fx, b, T0 + H(72));
        assert_int_equal(b->m[0].outcome, OUTCOME_ELIGIBLE);
        assert_true(b->m[0].flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL);
        assert_int_equal(b->res.alerts, 1);
        char case_id[UUID_STR_LEN];
        ids_case_id("R-LATE", case_id);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referral_stats WHERE case_id = '%s'"
                                   " AND facts & 2048 <> 0",            /* MISSED */
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.case_alerts WHERE case_id = '%s' AND kind = 'MISSED'"
                                   " AND due_at = '2025-03-12T08:00:00Z' AND raised_at = '2025-03-13T08:00:00Z'",
                               case_id),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox WHERE key = '%s' AND ce_type = '%s'", case_id,
                               CE_TYPE_ALERT),
                         1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE case_id = '%s' AND action = 'ALERT_MISSED'"
                                   " AND after LIKE '%%feedback=NOT_HELD_IN_TIME'",
                               case_id),
                         1);
        long long outbox = count(fx, "SELECT count(*) FROM allvarsd.outbox");
        deadline_watch_result w = { 0 };
        assert_int_equal(deadline_watch_run(fx->h.st, fx->h.cfg, T0 + H(73), &w), 0);
        assert_int_equal(w.missed, 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), outbox);

        /* The same alert raised by the watch instead (its case_alerts row and
         * marks gone, as after a restore): the same event ids and audit text,
         * so exactly-once delivery holds whichever raises it. */
        harness_exec_ok(fx->h.pg, "CREATE TABLE arrival AS SELECT o.event_id, o.ce_type FROM allvarsd.outbox o"
                                  " WHERE o.ce_type = '" CE_TYPE_ALERT "' OR o.event_id IN (SELECT event_id"
                                  " FROM allvarsd.outbox WHERE ce_type = '" CE_TYPE_FEEDBACK "'"
                                  " ORDER BY id DESC LIMIT 1)");
        harness_exec_ok(fx->h.pg, "CREATE TABLE arrival_audit AS SELECT before, after FROM allvarsd.audit"
                                  " WHERE action = 'ALERT_MISSED'");
        harness_exec_ok(fx->h.pg, "DELETE FROM allvarsd.outbox; DELETE FROM allvarsd.case_alerts;"
                                  " DELETE FROM allvarsd.audit WHERE action = 'ALERT_MISSED';"
                                  " UPDATE allvarsd.cases SET missed_alerted_due = NULL");
        assert_int_equal(deadline_watch_run(fx->h.st, fx->h.cfg, T0 + H(74), &w), 0);
        assert_int_equal(w.missed, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 2);    /* the alert, NOT_HELD_IN_TIME */
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox o JOIN arrival a"
                                   " ON a.event_id = o.event_id AND a.ce_type = o.ce_type"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit u JOIN arrival_audit a"
                                   " ON a.before = u.before AND a.after = u.after WHERE u.action = 'ALERT_MISSED'"),
                         1);
        batch_free(b);
}

/* The connection is killed between batches: -ECONNRESET, then reconnect
 * (statements prepared again) and the batch goes through once. */
static void test_connection_lost(void **state) {
        fixture *fx = *state;
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-FIRST", .person = 1 }, 0);
        run_ok(fx, b, T0);
        harness_exec_ok(fx->h.pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()");
        usleep(100 * 1000);
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-SECOND", .person = 2 }, 0);
        batch_offsets(fx, c);
        assert_int_equal(run_on(fx, fx->h.st, c, T0), -ECONNRESET);
        assert_false(store_connected(fx->h.st));
        assert_non_null(strstr(store_last_error(fx->h.st), "connection"));
        char err[512];
        assert_int_equal(store_reconnect(fx->h.st, err, sizeof err), 0);
        assert_true(store_connected(fx->h.st));
        run_ok(fx, c, T0);
        assert_int_equal(c->res.decided, 1);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        int version;
        assert_int_equal(store_check_schema(fx->h.st, &version), 0);
        assert_int_equal(version, STORE_SCHEMA_VERSION);
        batch_free(c);
        batch_free(b);
}

/* A statement that fails in the last round trip (here: text that is not
 * UTF-8, which the codec would have refused) rolls the whole batch back,
 * offsets included; the error names no value; the next batch goes through. */
static void test_failure_rolls_back(void **state) {
        fixture *fx = *state;
        batch *ok = batch_new();
        batch_add(fx, ok, &(refspec){ .id = "R-OK", .person = 1 }, 0);
        run_ok(fx, ok, T0);
        snapshot before = snap(fx);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-GOOD", .person = 2 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-BAD-TEXT", .person = 3 }, 0);
        snprintf(b->refs[1]->narrative, sizeof b->refs[1]->narrative, "Secret\xff\xfe name");
        batch_offsets(fx, b);
        int r = run_on(fx, fx->h.st, b, T0);
        assert_int_equal(r, -EBADMSG);      /* batch_store finds the message (test_refused_value_dead_lettered) */
        assert_null(strstr(store_last_error(fx->h.st), "Secret"));
        assert_null(strstr(store_last_error(fx->h.st), "0xff"));
        assert_non_null(strstr(store_last_error(fx->h.st), "22021"));
        assert_same(fx, &before);
        assert_int_equal(b->m[0].status, STORE_PENDING);
        assert_true(store_connected(fx->h.st));

        snprintf(b->refs[1]->narrative, sizeof b->refs[1]->narrative, "fixed");
        run_ok(fx, b, T0);
        assert_int_equal(b->res.decided, 2);
        batch_free(b);
        batch_free(ok);
}

/* deploy/roles.sql, migrations as allvarsd_owner, the daemon as
 * allvarsd_runtime: the runtime role decides a batch but can neither change
 * the schema nor read what is not its own. */
static int setup_roles(void **state) {
        fixture *fx = calloc(1, sizeof *fx);
        assert_non_null(fx);
        *state = fx;
        stored_none(fx);
        assert_true(harness_pg_available());
        assert_int_equal(harness_db_create(NULL, &fx->h.db), 0);
        assert_int_equal(harness_pg_connect(fx->h.db.name, &fx->h.pg), 0);
        return 0;
}

static void deploy_as_documented(fixture *fx);

static void test_runtime_role(void **state) {
        fixture *fx = *state;
        /* Something the runtime role must not read. */
        harness_exec_ok(fx->h.pg, "CREATE SCHEMA other; CREATE TABLE other.secrets (x text);"
                                  " INSERT INTO other.secrets VALUES ('s')");
        deploy_as_documented(fx);
        assert_int_equal(count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'"
                                   " AND tableowner = 'allvarsd_owner'"),
                         count(fx, "SELECT count(*) FROM pg_tables WHERE schemaname = 'allvarsd'"));
        int version;
        assert_int_equal(store_check_schema(fx->h.st, &version), 0);

        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-RUNTIME", .person = 1, .feedback = true }, 0);
        batch_add(fx, b, NULL, 0);
        run_ok(fx, b, T0 + H(72));
        assert_int_equal(b->res.decided, 1);
        assert_int_equal(b->res.dead_lettered, 1);
        assert_int_equal(b->res.alerts, 1);
        store_figures f;
        assert_int_equal(store_figures_read(fx->h.st, &f), 0);

        PGconn *rt = (PGconn *)store_pg(fx->h.st);
        static const char *const forbidden[] = {
                "DROP TABLE allvarsd.referrals",
                "ALTER TABLE allvarsd.decisions ADD COLUMN x int",
                "CREATE TABLE allvarsd.mine (x int)",
                "TRUNCATE allvarsd.audit",
                "DELETE FROM allvarsd.decisions",
                "DELETE FROM allvarsd.audit",
                "UPDATE allvarsd.audit SET after = ''",
                "UPDATE allvarsd.decisions SET outcome = 'ELIGIBLE'",
                /* Outbox rows are written once and deleted once; what was sent stays. */
                "UPDATE allvarsd.outbox SET payload = ''",
                "UPDATE allvarsd.outbox_sent SET sent_at = now()",
                "DELETE FROM allvarsd.outbox_sent",
                "SELECT * FROM other.secrets",
                "CREATE TEMP TABLE t (x int)",
                "CREATE SCHEMA mine",
        };
        for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++) {
                PGresult *res = PQexec(rt, forbidden[i]);
                const char *state_ = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                if (PQresultStatus(res) != PGRES_FATAL_ERROR || !state_ || strcmp(state_, "42501") != 0)
                        fail_msg("allvarsd_runtime was allowed: %s", forbidden[i]);
                PQclear(res);
        }
        /* What the purge does is allowed. */
        harness_exec_ok(rt, "UPDATE allvarsd.audit SET detail = '' WHERE referral_id = 'R-RUNTIME'");
        harness_exec_ok(rt, "DELETE FROM allvarsd.referral_personal WHERE referral_id = 'R-RUNTIME'");
        /* And what the relay does with delivered rows. */
        harness_exec_ok(rt, HARNESS_SQL_DELIVER_ALL);
        /* And what the outcome batch does with an event it rejects (version 4
         * lacked it: 42501, and the daemon retried the batch forever). */
        harness_exec_ok(rt, "DELETE FROM allvarsd.outcome_events WHERE event_id = 'E-REJECTED'");
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.outbox"), 0);
        assert_true(count(fx, "SELECT count(*) FROM allvarsd.outbox_sent") >= 2);
        batch_free(b);
}

/* ---- throughput ---- */

/* CPU seconds of a process (user + system), from /proc; -1 when unreadable. */
static double proc_cpu_s(int pid) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *p = strrchr(buf, ')');
        unsigned long ut, st;
        if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Batches of 500 realistic referrals (some persons repeat, some duplicates,
 * a poison message now and then) for partitions part0 .. part0 + 1; built
 * before the clock starts. */
#define BENCH_PER 500

static batch **bench_build(fixture *fx, int tag, int batches, int part0) {
        static const char *districts[] = { "centrum", "hisingen", "nordost", "sydvast" };
        batch **v = calloc((size_t)batches, sizeof *v);
        assert_non_null(v);
        for (int k = 0; k < batches; k++) {
                batch *b = v[k] = batch_new();
                for (int i = 0; i < BENCH_PER; i++) {
                        int n = k * BENCH_PER + i;
                        int32_t part = part0 + n % 2;
                        if (n % 97 == 13) {
                                batch_add(fx, b, NULL, part);
                                continue;
                        }
                        /* 1 % resends of a referral of the previous batch */
                        char id[32];
                        snprintf(id, sizeof id, "BENCH-%d-%07d", tag, n % 101 == 7 && n >= BENCH_PER ? n - BENCH_PER : n);
                        batch_add(fx, b,
                                  &(refspec){ .id = id, .person = n % 3000, .district = districts[n % 4],
                                              .acute = n % 11 == 0, .no_phone = n % 7 == 0, .feedback = n % 2 },
                                  part);
                }
        }
        return v;
}

typedef struct bench_run {
        fixture *fx;
        store *st;
        batch **v;
        int batches;
        pthread_barrier_t *barrier;
        double wall, client, server;    /* seconds */
        unsigned decided, dups, dead;
        int error;
} bench_run;

static void *bench_thread(void *arg) {
        bench_run *br = arg;
        int backend = PQbackendPID((PGconn *)store_pg(br->st));
        double server = proc_cpu_s(backend);
        if (br->barrier)
                pthread_barrier_wait(br->barrier);
        struct timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        double client = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, t = now_s();
        for (int k = 0; k < br->batches && !br->error; k++) {
                batch *b = br->v[k];
                batch_offsets(br->fx, b);
                int r;
                do
                        r = run_on(br->fx, br->st, b, T0 + H(1));
                while (r == -EAGAIN);
                if (r < 0) {
                        br->error = r;
                        fprintf(stderr, "bench: %s\n", store_last_error(br->st));
                }
                br->decided += b->res.decided;
                br->dups += b->res.duplicates;
                br->dead += b->res.dead_lettered;
        }
        br->wall = now_s() - t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        br->client = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - client;
        br->server = server >= 0 ? proc_cpu_s(backend) - server : -1;
        return NULL;
}

static void bench_free(batch **v, int batches) {
        for (int k = 0; k < batches; k++)
                batch_free(v[k]);
        free(v);
}

static int bench_batches(void) {
        const char *e = getenv("ALLVARS_STORE_BENCH_BATCHES");
        int n = e && *e ? atoi(e) : 20;
        return n > 0 ? n : 1;
}

/* One connection, fsync on. Prints the rate and the CPU per message of each
 * side; asserts that every referral was decided exactly once. */
static void test_throughput(void **state) {
        fixture *fx = *state;
        int batches = bench_batches();
        bench_run br = { .fx = fx, .st = fx->h.st, .batches = batches, .v = bench_build(fx, 0, batches, 0) };
        char lsn[64];
        value(fx, lsn, sizeof lsn, "SELECT pg_current_wal_insert_lsn()");
        bench_thread(&br);
        assert_int_equal(br.error, 0);
        unsigned total = (unsigned)(batches * BENCH_PER);
        /* The cluster's WAL (this test's server is not shared with other tests
         * while it runs, but checkpoints add full-page images): an estimate. */
        long long wal = count(fx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '%s')::bigint", lsn);
        printf("store WAL per message: %.0f bytes\n", (double)wal / total);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), br.decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), br.decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), br.dead);
        assert_int_equal(br.decided + br.dups + br.dead, total);
        assert_true(br.dups > 0);
        long long rows = 0;
        snapshot s = snap(fx);
        for (int i = 0; i < 11; i++)
                rows += s.n[i];
        printf("store throughput, 1 connection: %d batches of %d in %.2f s: %.0f messages/s (%u decided, "
               "%u duplicates, %u dead letters, %lld rows)\n",
               batches, BENCH_PER, br.wall, total / br.wall, br.decided, br.dups, br.dead, rows);
        /* CPU per message, whatever else the machine runs: the daemon's side
         * (decide, encode) and the backend's (the SQL). */
        printf("store cpu per message: client %.1f us, server backend %.1f us\n", br.client * 1e6 / total,
               br.server * 1e6 / total);
        bench_free(br.v, batches);
}

/* Two connections at once on their own partitions (two instances, or two
 * consumers of one), persons shared: what two cores can do. */
static void test_throughput_two_connections(void **state) {
        fixture *fx = *state;
        int batches = bench_batches();
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, 2);
        bench_run br[2];
        pthread_t th[2];
        for (int i = 0; i < 2; i++) {
                br[i] = (bench_run){ .fx = fx, .batches = batches, .barrier = &barrier,
                                     .v = bench_build(fx, i, batches, 2 * i) };
                assert_int_equal(harness_store_connect(&fx->h.db, &br[i].st), 0);
        }
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&th[i], NULL, bench_thread, &br[i]), 0);
        for (int i = 0; i < 2; i++)
                pthread_join(th[i], NULL);
        pthread_barrier_destroy(&barrier);
        unsigned decided = 0, total = (unsigned)(2 * batches * BENCH_PER);
        double wall = 0, client = 0, server = 0;
        for (int i = 0; i < 2; i++) {
                assert_int_equal(br[i].error, 0);
                decided += br[i].decided;
                wall = br[i].wall > wall ? br[i].wall : wall;
                client += br[i].client;
                server += br[i].server;
                store_free(br[i].st);
                bench_free(br[i].v, batches);
        }
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), decided);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.audit WHERE action = 'DECIDED'"), decided);
        printf("store throughput, 2 connections: %d batches of %d in %.2f s: %.0f messages/s; cpu per message: "
               "client %.1f us, server %.1f us\n",
               2 * batches, BENCH_PER, wall, total / wall, client * 1e6 / total, server * 1e6 / total);
}

/* ---- PostgreSQL's errors by class (pg.h, batch.h) ---- */

static int store_batch(fixture *fx, store *st, batch *b, usec_t now) {
        if (b->n_off == 0)
                batch_offsets(fx, b);
        int r = batch_store(st, fx->h.cfg, GROUP, now, false, b->m, b->n, b->off, b->n_off, NULL, &b->res);
        if (r == 0)
                for (size_t j = 0; j < b->n_off; j++)
                        fx->stored[b->off[j].partition] = b->off[j].new_next;
        return r;
}

/* A value PostgreSQL refuses (a constraint a DBA added; text that is not
 * UTF-8): that message is a dead letter naming the SQLSTATE and the statement,
 * never the value; the rest of the batch is stored and both partitions move on. */
static void test_refused_value_dead_lettered(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "ALTER TABLE allvarsd.referrals ADD CONSTRAINT no_test_district"
                                  " CHECK (district <> 'Forbidden-district')");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-FIRST", .person = 1 }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-CONSTRAINT", .person = 2, .district = "Forbidden-district" }, 0);
        batch_add(fx, b, &(refspec){ .id = "R-NOT-UTF8", .person = 3 }, 1);
        snprintf(b->refs[2]->narrative, sizeof b->refs[2]->narrative, "Secret\xff\xfe name");
        batch_add(fx, b, &(refspec){ .id = "R-LAST", .person = 4 }, 1);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 2);
        assert_int_equal(b->res.dead_lettered, 2);
        assert_int_equal(b->m[0].status, STORE_DECIDED);
        assert_int_equal(b->m[3].status, STORE_DECIDED);
        assert_int_equal(b->m[1].status, STORE_DEAD_LETTERED);
        assert_int_equal(b->m[2].status, STORE_DEAD_LETTERED);
        assert_non_null(strstr(b->m[1].error->detail, "SQLSTATE 23514 in ref_referrals_insert"));
        assert_non_null(strstr(b->m[2].error->detail, "SQLSTATE 22021 in ref_personal_insert"));
        assert_null(strstr(b->m[1].error->detail, "Forbidden"));
        assert_null(strstr(b->m[2].error->detail, "Secret"));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE reason = 'INVALID_FIELD'"
                                   " AND detail LIKE 'refused by PostgreSQL: SQLSTATE 2____ in ref\\_%%'"),
                         2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters WHERE detail LIKE '%%Forbidden%%'"
                                   " OR detail LIKE '%%Secret%%'"),
                         0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.decisions"), 2);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.consumer_offsets"
                                   " WHERE (partition = 0 AND next_offset = 2) OR (partition = 1 AND next_offset = 2)"),
                         2);
        /* The partition moves on: the next batch stores from where this one ended. */
        batch *c = batch_new();
        batch_add(fx, c, &(refspec){ .id = "R-NEXT", .person = 5 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, c, T0), 0);
        assert_int_equal(c->res.decided, 1);
        batch_free(c);
        batch_free(b);
}

/* The database, roles.sql and the migrations as deployed; fx->h.st the
 * runtime role's session and fx->h.cfg its configuration. */
static void deploy_as_documented(fixture *fx) {
        const char *root = getenv("ALLVARS_ROOT");
        char cmd[1536];
        snprintf(cmd, sizeof cmd, "psql -X -q -v ON_ERROR_STOP=1 -d '%s' -f '%s/deploy/roles.sql' >/dev/null",
                 fx->h.db.name, root && *root ? root : ".");
        assert_int_equal(system(cmd), 0);
        assert_int_equal(system(cmd), 0);       /* idempotent */
        char ci[1200], err[512];
        store *owner;
        snprintf(ci, sizeof ci, "%s user=allvarsd_owner", fx->h.db.conninfo);
        if (store_connect(ci, NULL, &owner, err, sizeof err) < 0)
                fail_msg("store_connect as owner: %s", err);
        char dir[1024];
        int applied = store_migrate(owner, harness_schemas_dir(dir, sizeof dir), err, sizeof err);
        if (applied < 0)
                fail_msg("store_migrate as owner: %s", err);
        assert_int_equal(applied, STORE_SCHEMA_VERSION);
        store_free(owner);
        snprintf(ci, sizeof ci, "%s user=allvarsd_runtime", fx->h.db.conninfo);
        if (store_connect(ci, NULL, &fx->h.st, err, sizeof err) < 0)
                fail_msg("store_connect as runtime: %s", err);
        assert_int_equal(harness_pepper_file_new(fx->h.pepper_path, sizeof fx->h.pepper_path), 0);
        assert_int_equal(harness_config_new("test-store", ci, fx->h.pepper_path, NULL, &fx->h.cfg), 0);
}

/* A grant taken away while running: a deployment error (the operator must act),
 * told apart from an outage; nothing written; stored again once it is back. */
static void test_revoked_grant(void **state) {
        fixture *fx = *state;
        deploy_as_documented(fx);
        harness_exec_ok(fx->h.pg, "REVOKE INSERT ON allvarsd.audit FROM allvarsd_runtime");
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-GRANT", .person = 1 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), -EACCES);
        assert_int_equal(pg_last_class(store_session(fx->h.st)), SQLSTATE_DEPLOYMENT);
        assert_non_null(strstr(store_last_error(fx->h.st), "SQLSTATE 42501"));
        assert_true(store_connected(fx->h.st));
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.referrals"), 0);
        assert_int_equal(count(fx, "SELECT count(*) FROM allvarsd.dead_letters"), 0);
        harness_exec_ok(fx->h.pg, "GRANT INSERT ON allvarsd.audit TO allvarsd_runtime");
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 1);
        batch_free(b);
}

/* The server restarted under a session (its backend terminated): transient,
 * the batch is stored once the session is back. */
static void test_server_restart_transient(void **state) {
        fixture *fx = *state;
        harness_exec_ok(fx->h.pg, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()");
        usleep(100 * 1000);
        batch *b = batch_new();
        batch_add(fx, b, &(refspec){ .id = "R-RESTART", .person = 1 }, 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), -ECONNRESET);
        assert_int_equal(pg_last_class(store_session(fx->h.st)), SQLSTATE_TRANSIENT);
        char err[512];
        assert_int_equal(store_reconnect(fx->h.st, err, sizeof err), 0);
        assert_int_equal(store_batch(fx, fx->h.st, b, T0), 0);
        assert_int_equal(b->res.decided, 1);
        batch_free(b);
}

int main(void) {
        if (tz_init() < 0) {
                fprintf(stderr, "tz_init failed\n");
                return 1;
        }
        /* ALLVARS_TEST_FILTER=test_throughput: run only the tests matching a pattern. */
        const char *filter = getenv("ALLVARS_TEST_FILTER");
        if (filter && *filter)
                cmocka_set_test_filter(filter);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_batch_decided_once, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_duplicates, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_stale_offset, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_poison_message, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_first_time_history, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_concurrent_same_person, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_lanes_take_turns, setup_stockholm, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_deadline_passed_on_arrival, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_connection_lost, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_failure_rolls_back, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_runtime_role, setup_roles, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_refused_value_dead_lettered, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_revoked_grant, setup_roles, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_server_restart_transient, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_throughput, setup, harness_store_teardown),
                cmocka_unit_test_setup_teardown(test_throughput_two_connections, setup, harness_store_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
