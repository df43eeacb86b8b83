/* The batch: messages decoded as they join it, grouped by lane (each partition
 * whole in one lane, the lanes balanced by messages; batch.connections lanes,
 * fewer for a small batch), each lane's part stored in one transaction
 * (batch.h), and what committed counted, logged and acknowledged to Kafka. */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "consumer_state.h"
#include "events.h"
#include "batch.h"
#include "log.h"
#include "metrics.h"
#include "reasons.h"
#include "referral_batch.h"

static void entries_free(batch_entry *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                codec_referral_free(v[i].referral);
                codec_outcome_free(v[i].outcome);
                rd_kafka_message_destroy(v[i].km);
        }
}

void consumer_batch_drop(consumer *c) {
        entries_free(c->batch, c->n_batch);
        c->n_batch = 0;
        c->batch_bytes = 0;
        for (size_t i = 0; i < c->n_parts; i++)
                c->parts[i].pending = 0;
}

/* Full at batch.max_messages or CONSUMER_BATCH_MAX_BYTES, and when the batch
 * and what the lanes store reach twice that: the messages alive are bounded
 * as when one batch was gathered while the last was stored. */
bool consumer_batch_full(const consumer *c) {
        return c->n_batch >= c->max_batch || c->batch_bytes >= CONSUMER_BATCH_MAX_BYTES ||
               c->n_batch + c->flight_msgs >= 2 * c->max_batch ||
               c->batch_bytes + c->flight_bytes >= 2 * (size_t)CONSUMER_BATCH_MAX_BYTES;
}

void consumer_batch_add(consumer *c, partition_state *p, rd_kafka_message_t *km) {
        if (p)
                p->pending++;
        batch_entry *e = &c->batch[c->n_batch++];
        *e = (batch_entry){.km = km};
        size_t decoded = 0;
        if (strcmp(rd_kafka_topic_name(km->rkt), c->cfg->topic_outcomes) == 0) {
                e->outcome = codec_outcome_decode(km->payload, km->len, c->cfg->max_message_bytes, &e->error);
                decoded = codec_outcome_mem(e->outcome);
        } else {
                e->referral = codec_referral_decode(km->payload, km->len, c->cfg->max_message_bytes, &e->error);
                decoded = codec_referral_mem(e->referral);
        }
        e->bytes = km->len + decoded;
        c->batch_bytes += e->bytes;
}

static void log_message_outcome(const store_message *m) {
        switch (m->status) {
        case STORE_DECIDED: {
                if (m->case_outcome) {
                        log_struct(LOG_INFO, MSGID_OUTCOME, "CASE_ID=%s", m->case_id, "EVENT_ID=%s",
                                   m->case_outcome->event_id, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition,
                                   "OFFSET=%lld", (long long)m->offset, "MESSAGE=Outcome %s applied to case %s",
                                   m->case_outcome->event_id, m->case_id, NULL);
                        break;
                }
                char reasons[256], flags[256];
                reasons_format(reason_texts, m->reasons, reasons, sizeof reasons);
                reasons_format(flag_texts, m->flags, flags, sizeof flags);
                log_struct(LOG_INFO, MSGID_DECIDED, "REFERRAL_ID=%s", m->referral->referral_id, "CASE_ID=%s",
                           m->case_id, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld",
                           (long long)m->offset, "OUTCOME=%s", decision_outcome_code(m->outcome), "REASONS=%s",
                           reasons, "FLAGS=%s", flags, "MESSAGE=Referral %s decided: %s%s%s%s%s",
                           m->referral->referral_id, decision_outcome_code(m->outcome), reasons[0] ? " " : "",
                           reasons, flags[0] ? " flags " : "", flags, NULL);
                break;
        }
        case STORE_DUPLICATE:
                if (m->case_outcome) {
                        log_struct(LOG_NOTICE, MSGID_DUPLICATE, "EVENT_ID=%s", m->case_outcome->event_id, "TOPIC=%s",
                                   m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld", (long long)m->offset,
                                   "MESSAGE=Outcome %s seen before; ignored", m->case_outcome->event_id, NULL);
                        break;
                }
                /* INFO, not NOTICE: duplicates are routine (bench/README.md: 100,000 per 1M
                 * replay); the figures count them. */
                log_struct(LOG_INFO, MSGID_DUPLICATE, "REFERRAL_ID=%s", m->referral->referral_id, "TOPIC=%s",
                           m->topic, "PARTITION=%d", (int)m->partition, "OFFSET=%lld", (long long)m->offset,
                           "MESSAGE=Referral %s seen before; ignored", m->referral->referral_id, NULL);
                break;
        case STORE_DEAD_LETTERED:
                log_struct(LOG_WARNING, MSGID_DEAD_LETTER, "TOPIC=%s", m->topic, "PARTITION=%d", (int)m->partition,
                           "OFFSET=%lld", (long long)m->offset, "REASON=%s", dead_letter_reason_code(m->error->reason),
                           "MESSAGE=Message at %s [%d] offset %lld dead-lettered: %s: %s", m->topic,
                           (int)m->partition, (long long)m->offset, dead_letter_reason_code(m->error->reason),
                           m->error->detail, NULL);
                break;
        case STORE_PENDING:
                break;
        }
}

/* One lane's part of a batch (lanes.h): its messages and its partitions' offsets. */
typedef struct lane_work {
        const config *cfg;
        usec_t now;
        bool outcomes;
        store_message *msgs;
        size_t n;
        store_offset *offs;
        size_t n_offs;
        const int64_t *ts_ms;           /* each message's Kafka timestamp (ms), -1 when none */
        lane_turn turn;                 /* its lane among the run's (lanes.h "turns") */
        usec_t duration;                /* the transaction, retries included */
        store_batch_result res;
} lane_work;

/* On the lane's thread: one transaction (batch.h: retried on a deadlock or a
 * serialization failure, a message PostgreSQL refuses dead-lettered). */
static int lane_store(store *st, void *arg) {
        lane_work *w = arg;
        usec_t start = clock_monotonic();
        int r = batch_store(st, w->cfg, w->cfg->group_id, w->now, w->outcomes, w->msgs, w->n, w->offs, w->n_offs,
                            &w->turn, &w->res);
        w->duration = clock_monotonic() - start;
        if (w->outcomes)
                metrics_add(M_LANE_SECONDS, LS_OUTCOMES, (uint64_t)w->duration);
        return r;
}

/* The metrics of a committed transaction (metrics.h): what it decided,
 * applied and rejected, its size and time, and each decision's age. */
static void count_committed(const lane_work *w) {
        usec_t committed = clock_realtime();
        metrics_observe(H_BATCH_MESSAGES, (double)w->n);
        metrics_observe(H_BATCH_COMMIT, (double)w->duration / USEC_PER_SEC);
        metrics_add(M_DUPLICATES, w->outcomes ? MK_OUTCOME : MK_REFERRAL, w->res.duplicates);
        metrics_add(M_ALERTS_RAISED, ALERT_MISSED, w->res.alerts);
        if (!w->outcomes)
                metrics_add(M_REFERRALS_CONSUMED, 0, w->n);
        for (size_t i = 0; i < w->n; i++) {
                const store_message *m = &w->msgs[i];
                if (m->status == STORE_DEAD_LETTERED && m->error) {
                        metrics_inc(M_DEAD_LETTERS, m->error->reason);
                        if (w->outcomes)
                                metrics_inc(M_OUTCOMES_REJECTED, m->error->reason);
                } else if (m->status == STORE_DECIDED && w->outcomes) {
                        metrics_inc(M_OUTCOMES_APPLIED, 0);
                } else if (m->status == STORE_DECIDED) {
                        metrics_inc(M_REFERRALS_DECIDED, m->outcome);
                        if (w->ts_ms[i] > 0)
                                metrics_observe(H_DECISION_AGE,
                                                (double)(committed - w->ts_ms[i] * 1000) / USEC_PER_SEC);
                }
        }
}

/* A lane's transaction committed: count, advance its partitions, log. */
static void lane_committed(consumer *c, const lane_work *w) {
        count_committed(w);
        c->fig.batches++;
        if (w->outcomes)
                c->fig.outcomes += w->res.decided;
        else
                c->fig.decided += w->res.decided;
        c->fig.duplicates += w->res.duplicates;
        c->fig.dead_lettered += w->res.dead_lettered;
        c->fig.events += w->res.events;
        c->fig.alerts += w->res.alerts;
        for (size_t j = 0; j < w->n_offs; j++) {
                partition_state *p = part_find(c, w->offs[j].topic, w->offs[j].partition);
                if (p)
                        p->stored_next = w->offs[j].new_next;
        }
        for (size_t i = 0; i < w->n; i++)
                if (log_get_max_priority() >= LOG_INFO || w->msgs[i].status != STORE_DECIDED)
                        log_message_outcome(&w->msgs[i]);
}

/* The key rule (docs/contract.md "Keys and ids"): an outcome's Kafka key is its
 * case's id, so that all of a case's events are on one partition, in order.
 * Another key is a dead letter on the first message of a misconfigured producer,
 * not a reordering weeks later. */
static bool outcome_key_ok(const CaseOutcome *o, const rd_kafka_message_t *km, codec_error *err) {
        int r = ids_outcome_key_check(o->case_id, o->referral_id, km->key, km->key_len);
        if (r == 0)
                return true;
        if (r == -EBADMSG) {
                err->reason = DLR_WRONG_KEY;
                snprintf(err->detail, sizeof err->detail, "the key is not the case id %s",
                         *o->case_id ? "of case_id" : "computed from referral_id");
        } else {
                err->reason = DLR_INVALID_FIELD;
                snprintf(err->detail, sizeof err->detail, "case_id and referral_id name different cases");
        }
        return false;
}

/* What the producer knows message km by, for its dead letter (DeadLetter's
 * source_* fields) and a replay: its key, its headers, and its own id, also when
 * it failed validation (then read into id). */
static void source_of(const consumer *c, rd_kafka_message_t *km, bool outcomes, const codec_outcome *out,
                      const codec_referral *ref, store_message *m, char id[static CODEC_ID_MAX + 1]) {
        m->key = km->key;
        m->key_len = km->key ? km->key_len : 0;
        rd_kafka_headers_t *h = NULL;
        m->headers = rd_kafka_message_headers(km, &h) == RD_KAFKA_RESP_ERR_NO_ERROR ? h : NULL;
        if (out)
                m->source_event_id = codec_outcome_msg(out)->event_id;
        else if (ref)
                m->source_event_id = codec_referral_msg(ref)->referral_id;
        else {
                codec_message_id(outcomes ? &allvarssamtal__v1__case_outcome__descriptor
                                          : &allvarssamtal__v1__police_referral__descriptor,
                                 km->payload, km->len, c->cfg->max_message_bytes, id);
                m->source_event_id = id[0] ? id : NULL;
        }
}

/* How many lanes a part of n messages is split over: each lane's transaction
 * costs a commit (a WAL flush) and a turn on the shared persons whatever its
 * size, worth it only for a part of some size; a small batch, the usual one at
 * a low rate, is one transaction. The lanes of one batch run together and the
 * next batch waits for them all, so a partition may change lanes between
 * batches: its positions are still compare-and-set by one transaction at a time. */
unsigned consumer_lanes_for(unsigned n_lanes, size_t n) {
        size_t used = n / LANE_MIN_MESSAGES;
        if (used < 1)
                used = 1;
        return used < n_lanes ? (unsigned)used : n_lanes;
}

/* A partition's messages in the batch, and the lane they go to. */
typedef struct part_load {
        const char *topic;
        int32_t partition;
        size_t n;
        unsigned lane;
} part_load;

static int load_by_size(const void *a, const void *b, void *arg) {
        const part_load *parts = arg;
        const part_load *x = &parts[*(const size_t *)a], *y = &parts[*(const size_t *)b];
        if (x->n != y->n)
                return x->n < y->n ? 1 : -1;
        int c = strcmp(x->topic, y->topic);
        return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Each partition of the batch to one of n_lanes lanes, the largest first to
 * the lane with the fewest messages so far: the lanes of a run end together
 * (lanes_run waits for all), so the run lasts as long as its largest part.
 * Partition modulo the lanes left a lane empty whenever the batch held only
 * odd or only even partitions (one run in six of a replay: 2026-12-04). Ties
 * go to the highest lane, so that the lower lanes, whose persons go first
 * (lanes.h "turns"), have the smaller parts: a higher lane decides its shared
 * persons' referrals only once every lower lane has committed, and waited
 * 34-38 ms for it in 23 of 40 runs when lane 0 had the largest part. Sets
 * lane[i], the lane of batch[i]; 0 or -ENOMEM. */
static int assign_lanes(batch_entry **batch, size_t n, unsigned n_lanes, unsigned *lane) {
        _cleanup_free_ part_load *parts = calloc(n, sizeof *parts);
        _cleanup_free_ size_t *part_of = calloc(n, sizeof *part_of);
        _cleanup_free_ size_t *order = calloc(n, sizeof *order);
        _cleanup_free_ size_t *load = calloc(n_lanes, sizeof *load);
        if (!parts || !part_of || !order || !load)
                return -ENOMEM;
        size_t n_parts = 0;
        for (size_t i = 0; i < n; i++) {
                const rd_kafka_message_t *km = batch[i]->km;
                const char *topic = rd_kafka_topic_name(km->rkt);
                size_t j = 0;
                while (j < n_parts && !(parts[j].partition == km->partition && strcmp(parts[j].topic, topic) == 0))
                        j++;
                if (j == n_parts) {
                        order[n_parts] = n_parts;
                        parts[n_parts++] = (part_load){ .topic = topic, .partition = km->partition };
                }
                parts[j].n++;
                part_of[i] = j;
        }
        qsort_r(order, n_parts, sizeof *order, load_by_size, parts);
        for (size_t o = 0; o < n_parts; o++) {
                part_load *pl = &parts[order[o]];
                unsigned best = n_lanes - 1;
                for (unsigned k = n_lanes - 1; k-- > 0;)
                        if (load[k] < load[best])
                                best = k;
                pl->lane = best;
                load[best] += pl->n;
        }
        for (size_t i = 0; i < n; i++)
                lane[i] = parts[part_of[i]].lane;
        return 0;
}

/* Messages of one topic on their way through the lanes: what lanes_start or
 * lanes_give was given, kept until the lanes return (batch_run_finish). */
struct batch_run {
        unsigned n_lanes;               /* lanes used: work[0..n_lanes) */
        int given;                      /* the one lane given the run (lanes_give), or -1: lanes_start */
        batch_entry **part;             /* the topic's messages, in consumed order */
        batch_entry **ordered;          /* the same grouped by lane */
        store_message *msgs;
        char (*ids)[CODEC_ID_MAX + 1];
        store_offset *offs;
        int64_t *ts;
        lane_work *work;
        void **args;                    /* lanes_count() of them; NULL: no work */
        int *rets;
        unsigned *lane;
};

static void batch_run_free(batch_run *run) {
        if (!run)
                return;
        free(run->part);
        free(run->ordered);
        free(run->msgs);
        free(run->ids);
        free(run->offs);
        free(run->ts);
        free(run->work);
        free(run->args);
        free(run->rets);
        free(run->lane);
        free(run);
}

/* The lane that stores work[k]. */
static unsigned run_lane(const batch_run *run, unsigned k) {
        return run->given >= 0 ? (unsigned)run->given : k;
}

/* Start storing the messages of one topic (part, n of them, taken over):
 * referrals are decided, outcomes applied to their cases. With only_lane
 * -1, the messages are grouped by lane (each partition whole in one lane,
 * the lanes balanced by messages: assign_lanes; as many lanes as
 * consumer_lanes_for gives), each lane's part is one transaction, all lanes
 * at once (lanes_start); else they are one transaction on lane only_lane
 * (lanes_give). Returns at once (a single lane without a thread has stored
 * them already); *ret the run for batch_run_finish. */
static int batch_run_start(consumer *c, batch_entry **part, size_t n, bool outcomes, usec_t now, int only_lane,
                           batch_run **ret) {
        /* lanes_start reads args[] and lanes_wait writes rets[] for every lane
         * there is; the lanes not used this time get no work (args[k] NULL). */
        unsigned all_lanes = lanes_count(c->lanes);
        unsigned n_lanes = only_lane >= 0 ? 1 : consumer_lanes_for(all_lanes, n);
        batch_run *run = calloc(1, sizeof *run);
        if (!run) {
                free(part);
                return -ENOMEM;
        }
        *run = (batch_run){.n_lanes = n_lanes, .given = only_lane, .part = part};
        run->ordered = calloc(n, sizeof *run->ordered);
        run->msgs = calloc(n, sizeof *run->msgs);
        run->ids = calloc(n, sizeof *run->ids);
        run->offs = calloc(n, sizeof *run->offs);
        run->ts = calloc(n, sizeof *run->ts);
        run->work = calloc(n_lanes, sizeof *run->work);
        run->args = calloc(all_lanes, sizeof *run->args);
        run->rets = calloc(all_lanes, sizeof *run->rets);
        run->lane = calloc(n, sizeof *run->lane);
        if (!run->ordered || !run->msgs || !run->ids || !run->offs || !run->ts || !run->work || !run->args ||
            !run->rets || !run->lane || assign_lanes(part, n, n_lanes, run->lane) < 0) {
                batch_run_free(run);
                return -ENOMEM;
        }
        batch_entry **ordered = run->ordered;
        store_message *msgs = run->msgs;
        char(*ids)[CODEC_ID_MAX + 1] = run->ids;
        store_offset *offs = run->offs;
        int64_t *ts = run->ts;
        lane_work *work = run->work;

        /* Each lane's messages contiguous, in consumed order; a partition is in
         * one lane only, so each lane's offsets come out contiguous too. */
        size_t g = 0, n_offs = 0;
        for (unsigned k = 0; k < n_lanes; k++) {
                size_t first = g, first_off = n_offs;
                for (size_t i = 0; i < n; i++)
                        if (run->lane[i] == k)
                                ordered[g++] = part[i];
                for (size_t i = first; i < g; i++) {
                        rd_kafka_message_t *km = ordered[i]->km;
                        store_message *m = &msgs[i];
                        m->topic = rd_kafka_topic_name(km->rkt);
                        m->partition = km->partition;
                        m->offset = km->offset;
                        m->payload = km->payload;
                        m->len = km->len;
                        ts[i] = rd_kafka_message_timestamp(km, NULL);
                        batch_entry *e = ordered[i];
                        if (e->outcome && outcome_key_ok(codec_outcome_msg(e->outcome), km, &e->error))
                                m->case_outcome = codec_outcome_msg(e->outcome);
                        else if (e->referral)
                                m->referral = codec_referral_msg(e->referral);
                        if (!m->referral && !m->case_outcome)
                                m->error = &e->error;
                        source_of(c, km, outcomes, e->outcome, e->referral, m, ids[i]);

                        store_offset *o = NULL;
                        for (size_t j = first_off; j < n_offs; j++)
                                if (offs[j].partition == m->partition && strcmp(offs[j].topic, m->topic) == 0)
                                        o = &offs[j];
                        if (!o) {
                                partition_state *p = part_find(c, m->topic, m->partition);
                                o = &offs[n_offs++];
                                o->topic = m->topic;
                                o->partition = m->partition;
                                o->expected_next = p ? p->stored_next : -1;
                        }
                        o->new_next = m->offset + 1;
                }
                unsigned lane = run_lane(run, k);
                work[k] = (lane_work){.cfg = c->cfg, .now = now, .outcomes = outcomes, .msgs = msgs + first,
                                      .n = g - first, .offs = offs + first_off, .n_offs = n_offs - first_off,
                                      .ts_ms = ts + first, .turn = {.l = c->lanes, .k = lane}};
                run->args[lane] = g > first ? &work[k] : NULL;
        }

        if (only_lane >= 0)
                lanes_give(c->lanes, (unsigned)only_lane, lane_store, &work[0]);
        else
                lanes_start(c->lanes, lane_store, run->args, run->rets);
        *ret = run;
        return 0;
}

/* The worse of two results: a lost connection outweighs a fenced part. */
static int worse(int r, int rk) {
        if (rk == 0)
                return r;
        if (r == 0)
                return rk;
        return rk != -ESTALE ? rk : r;
}

/* Wait for the run's lanes and take what they did: a part that committed
 * advances its positions even when another failed (the caller then re-reads
 * every position from the database). Frees the run. */
static int batch_run_finish(consumer *c, batch_run *run) {
        if (run->given >= 0)
                run->rets[run->given] = lanes_take(c->lanes, (unsigned)run->given);
        else
                lanes_wait(c->lanes, run->args, run->rets);
        int r = 0;
        for (unsigned k = 0; k < run->n_lanes; k++) {
                unsigned lane = run_lane(run, k);
                if (!run->args[lane])
                        continue;
                int rk = run->rets[lane];
                if (rk == 0) {
                        lane_committed(c, &run->work[k]);
                        continue;
                }
                if (rk == -ESTALE)
                        c->fenced_messages += run->work[k].n;
                if (r == 0 || rk != -ESTALE) {
                        r = rk;         /* a lost connection outweighs a fenced part (worse) */
                        lanes_error(c->lanes, lane, c->lane_error, sizeof c->lane_error);
                }
        }
        if (r == 0)
                c->backoff = 0;
        batch_run_free(run);
        return r;
}

int consumer_flights_alloc(consumer *c) {
        unsigned n = lanes_count(c->lanes);
        if (!c->flights) {
                c->flights = calloc(n, sizeof *c->flights);
                if (!c->flights)
                        return -ENOMEM;
        }
        for (unsigned k = 0; k < n; k++) {
                batch_entry *v = realloc(c->flights[k].entries, c->cap_batch * sizeof *v);
                if (!v)
                        return -ENOMEM;
                c->flights[k].entries = v;
        }
        return 0;
}

void consumer_flights_free(consumer *c) {
        for (unsigned k = 0; c->flights && k < lanes_count(c->lanes); k++)
                free(c->flights[k].entries);
        free(c->flights);
        c->flights = NULL;
}

bool consumer_batch_flying(const consumer *c) {
        for (unsigned k = 0; c->flights && k < lanes_count(c->lanes); k++)
                if (c->flights[k].run)
                        return true;
        return false;
}

size_t consumer_batch_in_flight(const consumer *c) {
        return c->flight_msgs;
}

/* Take what lane k's part did (waiting for it), and free its messages. */
static int flight_land(consumer *c, unsigned k) {
        lane_flight *f = &c->flights[k];
        int r = batch_run_finish(c, f->run);
        f->run = NULL;
        for (size_t i = 0; i < f->n; i++) {
                c->flight_msgs--;
                c->flight_bytes -= f->entries[i].bytes;
        }
        entries_free(f->entries, f->n);
        f->n = 0;
        return r;
}

/* Take what every lane that is done did, without waiting for the others. */
int consumer_batch_reap(consumer *c) {
        int r = 0;
        for (unsigned k = 0; c->flights && k < lanes_count(c->lanes); k++)
                if (c->flights[k].run && lanes_done(c->lanes, k))
                        r = worse(r, flight_land(c, k));
        return r;
}

int consumer_batch_land(consumer *c) {
        int r = 0;
        for (unsigned k = 0; c->flights && k < lanes_count(c->lanes); k++)
                if (c->flights[k].run)
                        r = worse(r, flight_land(c, k));
        return r;
}

/* The lane that holds partition p of topic (a part of it in flight), or -1. */
static int partition_holder(const consumer *c, const char *topic, int32_t partition) {
        for (unsigned k = 0; c->flights && k < lanes_count(c->lanes); k++) {
                const batch_run *run = c->flights[k].run;
                if (!run)
                        continue;
                for (size_t j = 0; j < run->work[0].n_offs; j++)
                        if (run->work[0].offs[j].partition == partition &&
                            strcmp(run->work[0].offs[j].topic, topic) == 0)
                                return (int)k;
        }
        return -1;
}

int consumer_batch_holder(const consumer *c, const partition_state *p) {
        return partition_holder(c, p->topic, p->partition);
}

void consumer_batch_held_room(const consumer *c, size_t *room) {
        unsigned all = lanes_count(c->lanes);
        size_t share = c->max_batch / all > 0 ? c->max_batch / all : 1;
        for (unsigned k = 0; k < all; k++)
                room[k] = share;
        for (size_t i = 0; i < c->n_parts; i++) {
                if (c->parts[i].pending == 0)
                        continue;
                int k = consumer_batch_holder(c, &c->parts[i]);
                if (k >= 0)
                        room[k] = room[k] > c->parts[i].pending ? room[k] - c->parts[i].pending : 0;
        }
}

/* The whole batch (n_outcomes of it outcomes), referrals before outcomes, on
 * as many lanes as it needs, waited for (every lane landed before). */
static int send_all(consumer *c, usec_t now, size_t n_outcomes) {
        size_t n = c->n_batch;
        batch_entry *b = c->batch;
        int r = 0;
        for (int pass = 0; pass < 2 && r == 0; pass++) {
                size_t k = pass == 0 ? n - n_outcomes : n_outcomes;
                if (k == 0)
                        continue;
                batch_entry **part = calloc(k, sizeof *part);
                if (!part) {
                        r = -ENOMEM;
                        break;
                }
                k = 0;
                for (size_t i = 0; i < n; i++) {
                        bool is_outcome = strcmp(rd_kafka_topic_name(b[i].km->rkt), c->cfg->topic_outcomes) == 0;
                        if (is_outcome == (pass == 1))
                                part[k++] = &b[i];
                }
                batch_run *run;
                r = batch_run_start(c, part, k, pass == 1, now, -1, &run);
                if (r < 0)
                        break;
                r = batch_run_finish(c, run);
        }
        consumer_batch_drop(c);
        return r;
}

/* Each lane without a part takes the batch's messages of the partitions no
 * other lane holds (all referrals), the largest partitions first to the
 * emptiest lane (assign_lanes over the free lanes, as many as
 * consumer_lanes_for gives). The messages given leave the batch for the
 * lanes' flights; the others stay, in order. A part on one lane while no
 * other lane stores is waited for. */
static int send_free(consumer *c, usec_t now) {
        unsigned all = lanes_count(c->lanes);
        unsigned free_lanes[all];
        unsigned n_free = 0;
        for (unsigned k = 0; k < all; k++)
                if (!c->flights[k].run)
                        free_lanes[n_free++] = k;
        if (n_free == 0)
                return 0;
        size_t n = c->n_batch;
        _cleanup_free_ batch_entry **cand = calloc(n, sizeof *cand);
        _cleanup_free_ unsigned *lane = calloc(n, sizeof *lane);
        _cleanup_free_ bool *given = calloc(n, sizeof *given);
        if (!cand || !lane || !given)
                return -ENOMEM;
        size_t n_cand = 0;
        for (size_t i = 0; i < n; i++) {
                const rd_kafka_message_t *km = c->batch[i].km;
                if (partition_holder(c, rd_kafka_topic_name(km->rkt), km->partition) < 0) {
                        cand[n_cand++] = &c->batch[i];
                        given[i] = true;
                }
        }
        if (n_cand == 0)
                return 0;
        unsigned use = consumer_lanes_for(n_free, n_cand);
        if (assign_lanes(cand, n_cand, use, lane) < 0)
                return -ENOMEM;
        bool alone = use == 1 && n_free == all;
        int r = 0;
        for (unsigned u = 0; u < use; u++) {
                unsigned k = free_lanes[u];
                lane_flight *f = &c->flights[k];
                f->n = 0;
                for (size_t j = 0; j < n_cand; j++)
                        if (lane[j] == u)
                                f->entries[f->n++] = *cand[j];
                if (f->n == 0)
                        continue;
                batch_entry **part = calloc(f->n, sizeof *part);
                if (part)
                        for (size_t j = 0; j < f->n; j++)
                                part[j] = &f->entries[j];
                int rk = part ? batch_run_start(c, part, f->n, false, now, (int)k, &f->run) : -ENOMEM;
                if (rk < 0) {
                        /* Not stored, not acknowledged: read again after the caller re-reads positions. */
                        entries_free(f->entries, f->n);
                        f->n = 0;
                        r = worse(r, rk);
                        continue;
                }
                for (size_t j = 0; j < f->n; j++) {
                        c->flight_msgs++;
                        c->flight_bytes += f->entries[j].bytes;
                }
        }
        /* The batch keeps what no lane took, in order. */
        size_t kept = 0;
        c->batch_bytes = 0;
        for (size_t i = 0; i < n; i++)
                if (!given[i]) {
                        c->batch[kept] = c->batch[i];
                        c->batch_bytes += c->batch[kept++].bytes;
                }
        c->n_batch = kept;
        for (size_t i = 0; i < c->n_parts; i++)
                c->parts[i].pending = 0;
        for (size_t i = 0; i < kept; i++) {
                partition_state *p = part_find(c, rd_kafka_topic_name(c->batch[i].km->rkt), c->batch[i].km->partition);
                if (p)
                        p->pending++;
        }
        if (r == 0 && alone)
                r = flight_land(c, free_lanes[0]);
        return r;
}

int consumer_batch_send(consumer *c) {
        int r = consumer_batch_reap(c);
        if (r < 0 || c->n_batch == 0)
                return r;
        usec_t now = clock_now(c->clk);
        size_t n_outcomes = 0;
        for (size_t i = 0; i < c->n_batch; i++)
                n_outcomes += strcmp(rd_kafka_topic_name(c->batch[i].km->rkt), c->cfg->topic_outcomes) == 0;
        /* The configuration's profile texts, once per configuration, in
         * autocommit on lane 0 while every lane is idle (landed here): then
         * no lane's transaction is the first to insert one, which the other
         * lanes' would wait for (schemas/016_profile_params.sql). When it
         * fails, the batch goes on (its decisions insert stores a missing
         * text itself) and the next batch tries again. */
        if (n_outcomes < c->n_batch && !c->params_registered) {
                if ((r = consumer_batch_land(c)) < 0)
                        return r;
                int k = referral_batch_register_profiles(c->st, c->cfg);
                if (k >= 0)
                        c->params_registered = true;
                else if (k != -ENOTCONN)        /* without a session the batch reports the outage */
                        log_warning("Cannot store the profiles' parameters ahead of the batch (tried again with the "
                                    "next): %s", store_last_error(c->st));
        }
        if (lanes_count(c->lanes) < 2 || n_outcomes > 0) {
                if ((r = consumer_batch_land(c)) < 0)
                        return r;
                return send_all(c, now, n_outcomes);
        }
        return send_free(c, now);
}
