/* The referral batch (referral_batch.h): decode -> identity (once) ->
 * history -> rules -> events -> lifecycle, and the rows that record it. */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts.h"
#include "events.h"
#include "identity.h"
#include "lanes.h"
#include "lifecycle.h"
#include "metrics.h"
#include "reasons.h"
#include "referral_batch.h"
#include "referral_stats.h"
#include "store_referrals.h"
#include "store_rows.h"

#define PARAMS_TEXT_MAX 1024
/* How long a lane waits for its turn on the persons an older transaction has
 * (lanes.h "turns"): past it, the batch is rolled back and tried again. As
 * long as the lock_timeout the daemon gives its sessions under the unit's
 * watchdog (main.c session_timeouts: 5 s of WatchdogSec=30), so that a turn
 * never outwaits a lock. */
#define LANE_TURN_TIMEOUT (5 * USEC_PER_SEC)

/* One referral message of the batch. */
typedef struct item {
        store_message *m;
        const PoliceReferral *r;
        size_t idx;                     /* message order */
        bool first;                     /* the first copy of its referral id in the batch */
        bool is_new;                    /* inserted by this batch */
        bool has_key;
        bool deferred;                  /* an older lane transaction has its person: decided last */
        int key;                        /* index into the batch's person keys, -1 */
        int next_same_person;           /* the next new item of the same person (message order), -1 */
        uint32_t marks;
        identity id;                    /* parsed once, here; rules_decide gets it */
        uint8_t person_key[PERSON_KEY_LEN];
        char case_id[UUID_STR_LEN];
        rules_history h;
        decision d;
        const profile *p;
} item;

typedef struct history_row {
        int key;
        uint32_t marks;
        uint32_t count;
} history_row;

/* A profile of the batch's decisions, and the position of its parameters'
 * text among the rows' distinct texts (referral_rows_params). */
typedef struct profile_text {
        const profile *p;
        int32_t index;
} profile_text;

/* One batch's work: freed at its end. */
typedef struct batch {
        const config *cfg;
        usec_t now;
        item *items;
        size_t n_items;
        item **sorted;                  /* the first copies, by referral_id */
        size_t n_sorted;
        uint8_t (*keys)[PERSON_KEY_LEN];    /* the batch's own persons, sorted, then the deferred ones, sorted */
        size_t n_keys, n_own_keys;
        size_t hist_base;               /* key index of the first key of the history read under way */
        int *last_of_key;
        int32_t *new_key;               /* the history's new referrals: key index (from hist_base), marks */
        uint32_t *new_marks;
        history_row *hist;
        size_t n_hist, cap_hist;
        size_t *hist_start;             /* rows of key k: hist[hist_start[k] .. hist_start[k + 1]) */
        profile_text *profiles;
        size_t n_profiles, cap_profiles;
        event_list events;
        referral_rows rows;
        store_rows shared;
        store_batch_result res;
        usec_t mark;                    /* the end of the last step timed (metrics_lane_time) */
} batch;

static void batch_free(batch *b) {
        free(b->items);
        free(b->sorted);
        free(b->keys);
        free(b->last_of_key);
        free(b->new_key);
        free(b->new_marks);
        free(b->hist);
        free(b->hist_start);
        free(b->profiles);
        event_list_free(&b->events);
        referral_rows_free(&b->rows);
        store_rows_free(&b->shared);
}

static int batch_init(batch *b, const config *cfg, usec_t now, size_t n) {
        *b = (batch){ .cfg = cfg, .now = now };
        size_t cap = n ? n : 1;
        b->items = calloc(cap, sizeof *b->items);
        b->sorted = calloc(cap, sizeof *b->sorted);
        b->keys = calloc(cap, sizeof *b->keys);
        b->last_of_key = calloc(cap, sizeof *b->last_of_key);
        b->new_key = calloc(cap, sizeof *b->new_key);
        b->new_marks = calloc(cap, sizeof *b->new_marks);
        b->hist_start = calloc(cap + 1, sizeof *b->hist_start);
        referral_rows_reset(&b->rows);
        store_rows_reset(&b->shared);
        if (!b->items || !b->sorted || !b->keys || !b->last_of_key || !b->new_key || !b->new_marks ||
            !b->hist_start)
                return -ENOMEM;
        return 0;
}

static const char *str(const char *s) {
        return s ? s : "";
}

/* The profile's parameters as stored with each decision: described once per
 * rows written, and named by their position there; -ENOMEM. */
static int32_t profile_params(batch *b, const profile *p) {
        for (size_t i = 0; i < b->n_profiles; i++)
                if (b->profiles[i].p == p)
                        return b->profiles[i].index;
        if (b->n_profiles == b->cap_profiles) {
                size_t cap = b->cap_profiles ? b->cap_profiles * 2 : 8;
                profile_text *v = realloc(b->profiles, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                b->profiles = v;
                b->cap_profiles = cap;
        }
        char text[PARAMS_TEXT_MAX];
        profile_describe(p, text, sizeof text);     /* truncated at worst */
        int32_t k = referral_rows_params(&b->rows, text);
        if (k >= 0)
                b->profiles[b->n_profiles++] = (profile_text){ .p = p, .index = k };
        return k;
}

static int item_by_id(const void *a, const void *b) {
        const item *x = *(item *const *)a, *y = *(item *const *)b;
        int c = strcmp(x->r->referral_id, y->r->referral_id);
        if (c)
                return c;
        return (x->idx > y->idx) - (x->idx < y->idx);
}

static int id_to_item(const void *key, const void *elem) {
        return strcmp(key, (*(item *const *)elem)->r->referral_id);
}

static int hist_cmp(const void *a, const void *b) {
        const history_row *x = a, *y = b;
        return (x->key > y->key) - (x->key < y->key);
}

/* The referral as far as the batch needs it before the decision: case id,
 * marks, the identity parsed on the Stockholm date of reported_at (the one
 * parse: rules_decide gets it), and the person key. */
static int item_prepare(const config *cfg, item *it) {
        const PoliceReferral *r = it->r;
        ids_case_id(r->referral_id, it->case_id);
        it->marks = rules_marks(r);
        it->key = -1;
        it->next_same_person = -1;
        rules_identity(r, &it->id);
        if (it->id.status == IDENTITY_VALID) {
                int k = ids_person_key(cfg->pepper, cfg->pepper_len, it->id.normalised, it->person_key);
                if (k < 0)
                        return k;
                it->has_key = true;
        }
        return 0;
}

static int mark_new(void *ctx, const char *referral_id) {
        batch *b = ctx;
        item **hit = bsearch(referral_id, b->sorted, b->n_sorted, sizeof *b->sorted, id_to_item);
        if (!hit)
                return -EIO;
        (*hit)->is_new = true;
        return 0;
}

static int add_history(void *ctx, size_t key, uint32_t marks, uint32_t count) {
        batch *b = ctx;
        if (b->n_hist == b->cap_hist) {
                size_t cap = b->cap_hist ? b->cap_hist * 2 : 64;
                history_row *h = realloc(b->hist, cap * sizeof *h);
                if (!h)
                        return -ENOMEM;
                b->hist = h;
                b->cap_hist = cap;
        }
        b->hist[b->n_hist++] = (history_row){ .key = (int)(b->hist_base + key), .marks = marks, .count = count };
        return 0;
}

/* The referrals of round trip 1: the first copy of each id, in id order. */
static void claim_rows(batch *b) {
        for (size_t i = 0; i < b->n_sorted; i++) {
                const item *it = b->sorted[i];
                const PoliceReferral *ref = it->r;
                referral_rows_referral(&b->rows, &(referral_row){
                                                         .referral_id = ref->referral_id,
                                                         .case_id = it->case_id,
                                                         .person_key = it->has_key ? it->person_key : NULL,
                                                         .marks = it->marks,
                                                         .district = str(ref->district),
                                                         .reported_at = codec_timestamp_usec(ref->reported_at),
                                                         .incident_at = codec_timestamp_usec(ref->incident_at),
                                                         .feedback_requested = ref->feedback_requested,
                                                         .police_case_number = str(ref->police_case_number),
                                                         .reporting_unit = str(ref->reporting_unit),
                                                         .topic = it->m->topic,
                                                         .partition = it->m->partition,
                                                         .offset = it->m->offset,
                                                 });
        }
}

/* The distinct keys of the new referrals with deferred == deferred, sorted,
 * from b->keys[from]; each such item's index. Returns how many. */
static size_t collect_keys_of(batch *b, size_t from, bool deferred) {
        uint8_t(*keys)[PERSON_KEY_LEN] = b->keys + from;
        size_t n = 0;
        for (size_t i = 0; i < b->n_items; i++) {
                item *it = &b->items[i];
                if (it->is_new && it->has_key && it->deferred == deferred)
                        memcpy(keys[n++], it->person_key, PERSON_KEY_LEN);
        }
        if (n > 1)
                qsort(keys, n, PERSON_KEY_LEN, ids_person_key_cmp);
        size_t u = 0;
        for (size_t i = 0; i < n; i++)
                if (u == 0 || memcmp(keys[u - 1], keys[i], PERSON_KEY_LEN) != 0)
                        memmove(keys[u++], keys[i], PERSON_KEY_LEN);
        for (size_t i = 0; i < b->n_items; i++) {
                item *it = &b->items[i];
                if (!it->is_new || !it->has_key || it->deferred != deferred)
                        continue;
                uint8_t(*k)[PERSON_KEY_LEN] = bsearch(it->person_key, keys, u, PERSON_KEY_LEN, ids_person_key_cmp);
                assert(k);
                it->key = (int)(from + (size_t)(k - keys));
        }
        return u;
}

/* The distinct person keys of the new referrals: the batch's own, then those
 * deferred to the end of the lane's turn. */
static void collect_keys(batch *b) {
        b->n_own_keys = collect_keys_of(b, 0, false);
        b->n_keys = b->n_own_keys + collect_keys_of(b, b->n_own_keys, true);
}

/* Tell the other lanes which persons this batch has, and mark the referrals
 * whose person an older transaction of another lane also has: they wait for
 * its commit (lanes.h "turns"). */
static int take_turn(batch *b, const lane_turn *turn) {
        size_t n = 0;
        for (size_t i = 0; i < b->n_items; i++)
                if (b->items[i].has_key)
                        memcpy(b->keys[n++], b->items[i].person_key, PERSON_KEY_LEN);
        int r = lanes_publish(turn->l, turn->k, (const uint8_t(*)[LANE_KEY_LEN])b->keys, n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < b->n_items; i++) {
                item *it = &b->items[i];
                it->deferred = it->has_key && lanes_taken_before(turn->l, turn->k, it->person_key);
        }
        return 0;
}

/* The history of each new referral: the person's referrals that the history
 * read saw, less this one and the batch's later ones (message order); so the
 * stored referrals and the batch's earlier ones count. */
static int decide_all(batch *b, bool deferred) {
        if (b->n_hist > 0)      /* hist is NULL until the first history row (qsort needs a pointer) */
                qsort(b->hist, b->n_hist, sizeof *b->hist, hist_cmp);
        for (size_t k = 0, h = 0; k <= b->n_keys; k++) {
                while (h < b->n_hist && b->hist[h].key < (int)k)
                        h++;
                b->hist_start[k] = h;
        }
        for (size_t k = 0; k < b->n_keys; k++)
                b->last_of_key[k] = -1;
        for (size_t i = 0; i < b->n_items; i++) {
                item *it = &b->items[i];
                if (!it->is_new || it->key < 0)
                        continue;
                if (b->last_of_key[it->key] >= 0)
                        b->items[b->last_of_key[it->key]].next_same_person = (int)i;
                b->last_of_key[it->key] = (int)i;
        }

        for (size_t i = 0; i < b->n_items; i++) {
                item *it = &b->items[i];
                if (!it->is_new || it->deferred != deferred)
                        continue;
                it->p = config_profile_for(b->cfg, it->r->district);
                it->h = (rules_history){ 0 };
                if (it->key >= 0) {
                        uint32_t ftm = it->p->first_time_marks;
                        uint64_t all = 0, qualifying = 0;
                        for (size_t h = b->hist_start[it->key]; h < b->hist_start[it->key + 1]; h++) {
                                all += b->hist[h].count;
                                if (b->hist[h].marks & ftm)
                                        qualifying += b->hist[h].count;
                        }
                        for (int j = (int)i; j >= 0; j = b->items[j].next_same_person) {
                                if (all == 0 || ((b->items[j].marks & ftm) && qualifying == 0))
                                        return -EPROTO; /* the history read missed this batch's referrals */
                                all--;
                                if (b->items[j].marks & ftm)
                                        qualifying--;
                        }
                        it->h.prior_referrals = (uint32_t)all;
                        it->h.prior_qualifying = (uint32_t)qualifying;
                }
                rules_decide_parsed(it->p, it->r, &it->id, &it->h, b->now, &it->d);
        }
        return 0;
}

/* The rows of one decided referral, and its events. */
static int write_decided(batch *b, const item *it) {
        const config *cfg = b->cfg;
        const PoliceReferral *r = it->r;
        const decision *d = &it->d;
        const char *rid = r->referral_id;
        char reasons[512], flags[512];
        reasons_format(reason_texts, d->reasons, reasons, sizeof reasons);
        reasons_format(flag_texts, d->flags, flags, sizeof flags);
        int32_t params = profile_params(b, it->p);
        if (params < 0)
                return params;
        const char *dk = d->deadline_kind != DEADLINE_NONE ? deadline_kind_code(d->deadline_kind) : NULL;

        referral_rows_personal(&b->rows, &(personal_row){
                                                 .referral_id = rid,
                                                 .payload = it->m->payload,
                                                 .len = it->m->len,
                                         });
        referral_rows_decision(&b->rows, &(decision_row){
                                                 .referral_id = rid,
                                                 .outcome = decision_outcome_code(d->outcome),
                                                 .reasons = reasons,
                                                 .flags = flags,
                                                 .age = d->age,
                                                 .deadline = d->deadline,
                                                 .deadline_kind = dk,
                                                 .protective_assessment_due = d->protective_assessment_due,
                                                 .profile_name = it->p->name,
                                                 .profile_version = it->p->version,
                                                 .params_index = params,
                                                 .prior_referrals = it->h.prior_referrals,
                                                 .prior_qualifying = it->h.prior_qualifying,
                                         });

        /* Its audit entry is the decisions row (audit_trail, schemas/015_decided_from_decisions.sql). */
        int k = events_for_decision(cfg, r, d, it->case_id, b->now, &b->events);
        if (k < 0)
                return k;

        /* The case as the state machine opens it, so the two never disagree. */
        case_state cs;
        lifecycle_open(d, &cs);
        const bool opened = cs.state != CASE_NONE;
        /* The deadline passed before the referral reached us: MISSED now (below). */
        const bool missed = opened && (d->flags & FLAG_DEADLINE_PASSED_ON_ARRIVAL) && d->deadline;

        /* Its row for the follow-up report, from the rows written here
         * (referral_stats.h: what the view would select for it). */
        referral_rows_stats(&b->rows, &(stats_row){
                                              .case_id = it->case_id,
                                              .referral_id = r->referral_id,
                                              .district = str(r->district),
                                              .reported_at = codec_timestamp_usec(r->reported_at),
                                              .person_key = it->has_key ? it->person_key : NULL,
                                              .outcome = decision_outcome_code(d->outcome),
                                              .profile_name = it->p->name,
                                              .profile_version = it->p->version,
                                              .state = opened ? case_state_code_name(cs.state) : NULL,
                                              .facts = referral_stats_facts_new(&(referral_stats_new){
                                                      .reasons = reasons,
                                                      .flags = flags,
                                                      .has_case = opened,
                                                      .missed = missed,
                                                      .assessment_due = d->protective_assessment_due != 0,
                                              }),
                                              .assessment_due = d->protective_assessment_due,
                                              .deadline = opened ? d->deadline : 0,
                                      });

        if (!opened) {
                /* SoL 11 kap. 1 a §: a child's assessment is owed without a case too
                 * (docs/domain.md "Protective assessment"). */
                if (d->protective_assessment_due)
                        referral_rows_duty(&b->rows, it->case_id, rid, str(r->district), d->protective_assessment_due);
                return 0;
        }
        const char *state = case_state_code_name(cs.state);
        b->res.cases_opened++;
        referral_rows_case(&b->rows, &(case_row){
                                             .case_id = it->case_id,
                                             .referral_id = rid,
                                             .district = str(r->district),
                                             .state = state,
                                             .outcome = decision_outcome_code(d->outcome),
                                             .profile_name = it->p->name,
                                             .limit_seconds = it->p->limit / USEC_PER_SEC,
                                             .deadline = d->deadline,
                                             .deadline_kind = dk,
                                             .protective_assessment_due = cs.protective_assessment_due,
                                             .awaiting_assessment = cs.awaiting_assessment,
                                             .awaiting_clearance = cs.awaiting_clearance,
                                             .awaiting_contact = cs.awaiting_contact,
                                             .feedback_requested = r->feedback_requested,
                                     });
        for (size_t g = 0; g < r->n_guardians; g++) {
                const Allvarssamtal__V1__Guardian *gd = r->guardians[g];
                if (gd)
                        referral_rows_contact(&b->rows, it->case_id, (int32_t)g + 1, str(gd->name), str(gd->phone),
                                              str(gd->email), str(gd->postal_address));
        }

        /* The deadline passed before the referral reached us: MISSED now, as
         * the deadline watch would raise it (alerts.h), so that it finds it raised. */
        if (missed) {
                referral_rows_alert(&b->rows, it->case_id, alert_kind_code(ALERT_MISSED), d->deadline);
                const alert_case ac = {
                        .case_id = it->case_id,
                        .referral_id = rid,
                        .police_case_number = str(r->police_case_number),
                        .district = str(r->district),
                        .state = state,
                        .deadline_kind = d->deadline_kind,
                        .feedback_requested = r->feedback_requested,
                };
                return alert_raise(cfg, &ac, ALERT_MISSED, d->deadline, b->now, &b->events, &b->shared);
        }
        return 0;
}

/* The rows of the new referrals of one part (deferred or not) in one round
 * trip; the last part adds the dead letters and commits. */
static int write_part(pg_session *s, batch *b, store_message *msgs, size_t n, bool deferred, bool last,
                      bool commit) {
        int r = 0;
        size_t first_event = b->events.n;
        for (size_t i = 0; i < b->n_items && r >= 0; i++)
                if (b->items[i].is_new && b->items[i].deferred == deferred)
                        r = write_decided(b, &b->items[i]);
        if (r >= 0)
                store_rows_events(&b->shared, &b->events, first_event, false);
        size_t first_dead = b->events.n;
        for (size_t i = 0; i < n && r >= 0 && last; i++) {
                if (msgs[i].referral)
                        continue;
                static const codec_error unknown = { .reason = DLR_UNDECODABLE, .detail = "no reason given" };
                r = store_rows_dead_letter(&b->shared, b->cfg, b->now, &msgs[i], msgs[i].error ? msgs[i].error : &unknown,
                                           NULL, &b->events);
        }
        if (r < 0)
                return pg_fail(s, r, "batch: building the events failed: %s", strerror(-r));
        if (last)
                store_rows_events(&b->shared, &b->events, first_dead, true);
        unsigned events, alerts;
        metrics_lane_time(LS_ROWS, &b->mark);
        r = store_referrals_write(s, &b->rows, &b->shared, b->now, last && commit, &events, &alerts);
        metrics_lane_time(LS_WRITE, &b->mark);
        b->res.events += events;
        b->res.alerts += alerts;
        referral_rows_reset(&b->rows);
        b->n_profiles = 0;              /* their texts went with the rows */
        store_rows_reset(&b->shared);
        return r;
}

/* Round trip 2 for the persons of keys [from, from + n): the new referrals of
 * one part (deferred or not) added to their persons' histories, and the
 * histories read back. */
static int read_history(pg_session *s, batch *b, size_t from, size_t n, bool deferred) {
        size_t n_new = 0;
        for (size_t i = 0; i < b->n_items; i++) {
                const item *it = &b->items[i];
                if (!it->is_new || it->key < 0 || it->deferred != deferred)
                        continue;
                b->new_key[n_new] = it->key - (int)from;
                b->new_marks[n_new++] = it->marks;
        }
        b->hist_base = from;
        return store_referrals_history(s, &b->rows, (const uint8_t(*)[PERSON_KEY_LEN])b->keys + from, n, b->new_key,
                                       b->new_marks, n_new, add_history, b);
}

/* Round trips 2 and 3 for the batch's own persons; when an older transaction
 * of another lane has some of them, 4 and 5 for those once it has finished. */
static int decide_and_write(pg_session *s, batch *b, const lane_turn *turn, store_message *msgs, size_t n,
                            bool commit) {
        collect_keys(b);
        int r = 0;
        if (b->n_own_keys > 0)
                r = read_history(s, b, 0, b->n_own_keys, false);
        metrics_lane_time(LS_HISTORY, &b->mark);
        if (r >= 0 && (r = decide_all(b, false)) < 0)
                r = pg_fail(s, r, "batch: the history read missed this batch's referrals");
        metrics_lane_time(LS_RULES, &b->mark);
        bool deferred = b->n_keys > b->n_own_keys;
        if (r >= 0)
                r = write_part(s, b, msgs, n, false, !deferred, commit);
        if (r < 0 || !deferred)
                return r;
        r = lanes_wait_before(turn->l, turn->k, LANE_TURN_TIMEOUT);
        metrics_lane_time(LS_TURN, &b->mark);
        if (r < 0)
                return pg_fail(s, r, "batch: an older lane transaction did not finish in time; retrying");
        r = read_history(s, b, b->n_own_keys, b->n_keys - b->n_own_keys, true);
        metrics_lane_time(LS_HISTORY, &b->mark);
        if (r >= 0 && (r = decide_all(b, true)) < 0)
                r = pg_fail(s, r, "batch: the history read missed this batch's referrals");
        metrics_lane_time(LS_RULES, &b->mark);
        if (r >= 0)
                r = write_part(s, b, msgs, n, true, true, commit);
        return r;
}

static int run(store *st, const config *cfg, const char *group, usec_t now, store_message *msgs, size_t n,
               const store_offset *offsets, size_t n_offsets, const lane_turn *turn, bool commit,
               store_batch_result *ret) {
        if (ret)
                *ret = (store_batch_result){ 0 };
        for (size_t i = 0; i < n; i++) {
                msgs[i].status = STORE_PENDING;
                msgs[i].case_id[0] = 0;
                msgs[i].outcome = 0;
                msgs[i].reasons = msgs[i].flags = 0;
        }
        usec_t started = clock_monotonic();
        int r = store_rows_ready(st, store_referral_statements, false);
        if (r < 0)
                return r == -ENOTCONN ? pg_fail(store_session(st), -ECONNRESET, "not connected to PostgreSQL") : r;
        pg_session *s = store_session(st);
        batch b;
        if ((r = batch_init(&b, cfg, now, n)) < 0) {
                batch_free(&b);
                return pg_fail(s, r, "batch: out of memory");
        }
        b.mark = started;
        for (size_t i = 0; i < n && r >= 0; i++) {
                if (!msgs[i].referral)
                        continue;
                item *it = &b.items[b.n_items++];
                *it = (item){ .m = &msgs[i], .r = msgs[i].referral, .idx = i };
                if ((r = item_prepare(cfg, it)) < 0)
                        r = pg_fail(s, r, "batch: person key failed");
        }
        /* A later copy of a referral id in the same batch is a duplicate. */
        for (size_t i = 0; i < b.n_items; i++)
                b.sorted[i] = &b.items[i];
        qsort(b.sorted, b.n_items, sizeof *b.sorted, item_by_id);
        for (size_t i = 0; i < b.n_items; i++) {
                item *it = b.sorted[i];
                it->first = i == 0 || strcmp(b.sorted[i - 1]->r->referral_id, it->r->referral_id) != 0;
                if (it->first)
                        b.sorted[b.n_sorted++] = it;
        }
        metrics_lane_time(LS_PREPARE, &b.mark);
        if (r >= 0 && turn && lanes_count(turn->l) > 1) {
                r = take_turn(&b, turn);
                metrics_lane_time(LS_TURN, &b.mark);
                if (r < 0)
                        r = pg_fail(s, r, "batch: out of memory for the turns");
        }
        if (r >= 0) {
                claim_rows(&b);
                r = store_referrals_claim(s, &b.rows, &b.shared, group, now, offsets, n_offsets, mark_new, &b);
                metrics_lane_time(LS_DEDUP, &b.mark);
        }
        if (r >= 0)
                r = decide_and_write(s, &b, turn, msgs, n, commit);
        if (r < 0 || !commit) {
                if (r != -ECONNRESET)
                        store_rollback(st);
                batch_free(&b);
                return r;
        }

        for (size_t i = 0; i < b.n_items; i++) {
                const item *it = &b.items[i];
                store_message *m = it->m;
                memcpy(m->case_id, it->case_id, UUID_STR_LEN);
                if (it->is_new) {
                        m->status = STORE_DECIDED;
                        m->outcome = it->d.outcome;
                        m->reasons = it->d.reasons;
                        m->flags = it->d.flags;
                        b.res.decided++;
                } else {
                        m->status = STORE_DUPLICATE;
                        b.res.duplicates++;
                }
        }
        for (size_t i = 0; i < n; i++)
                if (!msgs[i].referral) {
                        msgs[i].status = STORE_DEAD_LETTERED;
                        b.res.dead_lettered++;
                }
        if (ret)
                *ret = b.res;
        batch_free(&b);
        return 0;
}

int referral_batch_store(store *s, const config *cfg, const char *group, usec_t now, store_message *msgs, size_t n,
                         const store_offset *offsets, size_t n_offsets, const lane_turn *turn,
                         store_batch_result *ret) {
        return run(s, cfg, group, now, msgs, n, offsets, n_offsets, turn, true, ret);
}

int referral_batch_try(store *s, const config *cfg, const char *group, usec_t now, store_message *m) {
        return run(s, cfg, group, now, m, 1, NULL, 0, NULL, false, NULL);
}

int referral_batch_register_profiles(store *st, const config *cfg) {
        size_t n = 1 + cfg->n_districts;
        char(*texts)[PARAMS_TEXT_MAX] = calloc(n, sizeof *texts);
        const char **v = calloc(n, sizeof *v);
        referral_rows w = { 0 };
        referral_rows_reset(&w);
        int r = texts && v ? 0 : -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++) {
                /* as profile_params() above describes them for the decisions */
                profile_describe(i == 0 ? &cfg->profile : &cfg->districts[i - 1].profile, texts[i], sizeof texts[i]);
                v[i] = texts[i];
        }
        if (r >= 0)
                r = store_rows_ready(st, store_referral_statements, false);
        if (r >= 0)
                r = store_referrals_register_params(store_session(st), &w, v, n);
        referral_rows_free(&w);
        free(v);
        free(texts);
        return r;
}
