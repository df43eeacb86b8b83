/* The metrics registry and its text rendering. See metrics.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "events.h"
#include "metrics.h"
#include "rules.h"
#include "sqlstate.h"

#define SLOTS 16                        /* label values per metric */

typedef enum metric_type {
        T_COUNTER,
        T_GAUGE,
} metric_type;

/* The value of label i, or NULL when i is not one. */
typedef const char *(*label_fn)(unsigned i);

typedef struct metric_def {
        const char *name;
        metric_type type;
        const char *label;              /* NULL: no label */
        unsigned first, last;           /* label values, as enum values */
        label_fn value;
        const char *help;
        double scale;                   /* a counter's unit in the text (0: 1, an integer) */
} metric_def;

static char topic_names[_MT_MAX][METRICS_LABEL_MAX];

static const char *outcome_label(unsigned i) {
        return decision_outcome_code((decision_outcome)i);
}
static const char *reason_label(unsigned i) {
        return dead_letter_reason_code((dead_letter_reason)i);
}
static const char *alert_label(unsigned i) {
        return alert_kind_code((alert_kind)i);
}
static const char *class_label(unsigned i) {
        return sqlstate_class_name((sqlstate_class)i);
}
static const char *kind_label(unsigned i) {
        return i == MK_REFERRAL ? "referral" : "outcome";
}
static const char *step_label(unsigned i) {
        static const char *const names[_LS_MAX] = {
                [LS_PREPARE] = "prepare", [LS_DEDUP] = "dedup",       [LS_HISTORY] = "history",
                [LS_RULES] = "rules",     [LS_ROWS] = "rows",         [LS_WRITE] = "write",
                [LS_TURN] = "turn",       [LS_OUTCOMES] = "outcomes", [LS_RUN_WAIT] = "run_wait",
        };
        return i < _LS_MAX ? names[i] : NULL;
}
static const char *topic_label(unsigned i) {
        return topic_names[i][0] ? topic_names[i] : NULL;
}

static const metric_def defs[_M_MAX] = {
        [M_REFERRALS_CONSUMED] = {"allvarsd_referrals_consumed_total", T_COUNTER, NULL, 0, 0, NULL,
                                  "Referral messages stored by a committed batch: decided, duplicate or dead-lettered."},
        [M_REFERRALS_DECIDED] = {"allvarsd_referrals_decided_total", T_COUNTER, "outcome", OUTCOME_ELIGIBLE,
                                 OUTCOME_MANUAL_REVIEW, outcome_label, "Referrals decided, by outcome (committed)."},
        [M_DUPLICATES] = {"allvarsd_duplicates_total", T_COUNTER, "kind", MK_REFERRAL, MK_OUTCOME, kind_label,
                          "Referrals and outcome events seen before: nothing written, the position advanced."},
        [M_DEAD_LETTERS] = {"allvarsd_dead_letters_total", T_COUNTER, "reason", DLR_EMPTY, DLR_ILLEGAL_TRANSITION,
                            reason_label, "Messages dead-lettered (committed), by reason."},
        [M_OUTCOMES_APPLIED] = {"allvarsd_outcome_events_applied_total", T_COUNTER, NULL, 0, 0, NULL,
                                "Outcome events applied to their cases (committed)."},
        [M_OUTCOMES_REJECTED] = {"allvarsd_outcome_events_rejected_total", T_COUNTER, "reason", DLR_EMPTY,
                                 DLR_ILLEGAL_TRANSITION, reason_label,
                                 "Outcome events dead-lettered (committed), by reason."},
        [M_BATCHES_FENCED] = {"allvarsd_batches_fenced_total", T_COUNTER, NULL, 0, 0, NULL,
                              "Batches rolled back because a stored position had moved (another instance)."},
        [M_EVENTS_PUBLISHED] = {"allvarsd_events_published_total", T_COUNTER, "topic", MT_SCHEDULING, MT_DEAD_LETTER,
                                topic_label, "Outbox events delivered to Kafka (delivery report without error)."},
        [M_EVENT_DELIVERY_FAILURES] = {"allvarsd_event_delivery_failures_total", T_COUNTER, "topic", MT_SCHEDULING,
                                       MT_DEAD_LETTER, topic_label,
                                       "Outbox events whose delivery failed; they stay in the outbox and are retried."},
        [M_ALERTS_RAISED] = {"allvarsd_alerts_raised_total", T_COUNTER, "kind", ALERT_AT_RISK,
                             ALERT_PROTECTIVE_ASSESSMENT_OVERDUE, alert_label,
                             "Deadline alerts raised by this instance (the deadline watch and late referrals)."},
        [M_DATABASE_ERRORS] = {"allvarsd_database_errors_total", T_COUNTER, "class", SQLSTATE_TRANSIENT,
                               SQLSTATE_OTHER, class_label,
                               "PostgreSQL errors, by the class of their SQLSTATE (deployment: an operator must act)."},
        [M_PARTITION_GAPS] = {"allvarsd_partition_gaps_total", T_COUNTER, "topic", MT_REFERRALS, MT_OUTCOMES,
                              topic_label, "Offsets missing in an input partition (data lost before allvarsd)."},
        [M_LANE_SECONDS] = {"allvarsd_lane_seconds_total", T_COUNTER, "step", LS_PREPARE, LS_RUN_WAIT, step_label,
                            "Time the batch lanes spent, summed over the lanes, by step of their transactions"
                            " (run_wait: a lane's connection idle while the run's other lanes store).",
                            1e-6},
        [M_RELAY_LOCK_HELD] = {"allvarsd_relay_lock_held", T_GAUGE, NULL, 0, 0, NULL,
                               "1 when this instance's outbox relay holds the advisory lock (is the active relay)."},
        [M_RELAY_IN_FLIGHT] = {"allvarsd_relay_in_flight_events", T_GAUGE, NULL, 0, 0, NULL,
                               "Events produced by this instance's relay awaiting their delivery report."},
        [M_PARTITIONS_ASSIGNED] = {"allvarsd_partitions_assigned", T_GAUGE, NULL, 0, 0, NULL,
                                   "Input partitions assigned to this instance."},
        [M_DATABASE_AVAILABLE] = {"allvarsd_database_available", T_GAUGE, NULL, 0, 0, NULL,
                                  "0 while the batch connection to PostgreSQL is lost and the partitions are paused."},
        [M_DB_OUTBOX_DEPTH] = {"allvarsd_outbox_depth", T_GAUGE, NULL, 0, 0, NULL,
                               "Unsent outbox rows, an upper bound (the id span), from the database."},
        [M_DB_OUTBOX_OLDEST_AGE] = {"allvarsd_outbox_oldest_unsent_age_seconds", T_GAUGE, NULL, 0, 0, NULL,
                                    "Age of the oldest unsent outbox row (0 when none), from the database."},
        [M_DB_CASES_OPEN] = {"allvarsd_cases_open", T_GAUGE, NULL, 0, 0, NULL, "Open cases, from the database."},
        [M_DB_CASES_OVERDUE] = {"allvarsd_cases_overdue", T_GAUGE, NULL, 0, 0, NULL,
                                "Cases past their deadline with the conversation still owed (as the deadline watch), from the database."},
        [M_DB_PROTECTIVE_OVERDUE] = {"allvarsd_protective_assessments_overdue", T_GAUGE, NULL, 0, 0, NULL,
                                     "Open cases whose protective assessment is overdue, from the database."},
        [M_DB_DEAD_LETTERS] = {"allvarsd_dead_letters_stored", T_GAUGE, NULL, 0, 0, NULL,
                               "Dead letters in the database."},
        [M_DB_RELAY_HOLDERS] = {"allvarsd_relay_lock_holders", T_GAUGE, NULL, 0, 0, NULL,
                                "Sessions of any instance holding the relay's advisory lock, from the database."},
        [M_DB_FIGURES_TIME] = {"allvarsd_database_figures_timestamp_seconds", T_GAUGE, NULL, 0, 0, NULL,
                               "When the database figures were last read (Unix time)."},
        [M_DB_CASE_FIGURES_TIME] = {"allvarsd_case_figures_timestamp_seconds", T_GAUGE, NULL, 0, 0, NULL,
                                    "When the open cases were last counted (Unix time)."},
        [M_START_TIME] = {"allvarsd_start_time_seconds", T_GAUGE, NULL, 0, 0, NULL,
                          "When this instance started (Unix time)."},
};

static _Atomic uint64_t values[_M_MAX][SLOTS];

/* ---- histograms ---- */

#define MAX_BUCKETS 20

typedef struct histogram_def {
        const char *name;
        const char *help;
        double bounds[MAX_BUCKETS];
        unsigned n;
} histogram_def;

#define SECONDS_BUCKETS                                                                                            \
        {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}, 16

static const histogram_def hdefs[_H_MAX] = {
        [H_BATCH_MESSAGES] = {"allvarsd_batch_messages", "Messages per committed batch transaction.",
                              {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}, 13},
        [H_BATCH_COMMIT] = {"allvarsd_batch_commit_duration_seconds",
                            "Time to store one batch transaction, BEGIN to COMMIT, retries included.",
                            SECONDS_BUCKETS},
        [H_DECISION_AGE] = {"allvarsd_referral_decision_age_seconds",
                            "Age of a referral when its decision committed: from its Kafka timestamp.",
                            SECONDS_BUCKETS},
        [H_PUBLISH_LATENCY] = {"allvarsd_event_publish_latency_seconds",
                               "From an event's outbox insert to its delivery report.", SECONDS_BUCKETS},
};

typedef struct histogram {
        _Atomic uint64_t buckets[MAX_BUCKETS + 1]; /* not cumulative; the last is +Inf */
        _Atomic uint64_t sum;                     /* a double's bits */
} histogram;

static histogram histograms[_H_MAX];

/* ---- partitions, brokers, build ---- */

typedef struct partition_slot {
        atomic_bool present;
        _Atomic int64_t stored_next, lag;
} partition_slot;

static partition_slot partitions[2][METRICS_MAX_PARTITIONS]; /* MT_REFERRALS, MT_OUTCOMES */

typedef struct broker_slot {
        _Atomic int32_t nodeid;         /* -1: empty */
        _Atomic uint64_t rtt_avg, rtt_p99; /* doubles' bits */
        _Atomic int64_t outbuf, waitresp;
        _Atomic int64_t tx, rx;
} broker_slot;

static broker_slot brokers[_MC_MAX][METRICS_MAX_BROKERS];
static atomic_bool brokers_init;
static _Atomic int64_t client_queue[_MC_MAX], client_fetchq[_MC_MAX], client_replyq[_MC_MAX];
static atomic_bool client_seen[_MC_MAX];

static char build_version[METRICS_LABEL_MAX] = "unknown";
static int build_schema;

static uint64_t dbits(double v) {
        uint64_t u;
        memcpy(&u, &v, sizeof u);
        return u;
}

static double bitsd(uint64_t u) {
        double v;
        memcpy(&v, &u, sizeof v);
        return v;
}

static bool slot_ok(metric m, unsigned label) {
        if ((unsigned)m >= _M_MAX)
                return false;
        if (!defs[m].label)
                return true;
        return label >= defs[m].first && label <= defs[m].last && label < SLOTS;
}

static unsigned slot_of(metric m, unsigned label) {
        return defs[m].label ? label : 0;
}

void metrics_add(metric m, unsigned label, uint64_t n) {
        if (!slot_ok(m, label) || defs[m].type != T_COUNTER)
                return;
        atomic_fetch_add_explicit(&values[m][slot_of(m, label)], n, memory_order_relaxed);
}

void metrics_set(metric m, unsigned label, double v) {
        if (!slot_ok(m, label) || defs[m].type != T_GAUGE)
                return;
        atomic_store_explicit(&values[m][slot_of(m, label)], dbits(v), memory_order_relaxed);
}

uint64_t metrics_counter_value(metric m, unsigned label) {
        if (!slot_ok(m, label) || defs[m].type != T_COUNTER)
                return 0;
        return atomic_load_explicit(&values[m][slot_of(m, label)], memory_order_relaxed);
}

double metrics_gauge_value(metric m, unsigned label) {
        if (!slot_ok(m, label) || defs[m].type != T_GAUGE)
                return 0;
        return bitsd(atomic_load_explicit(&values[m][slot_of(m, label)], memory_order_relaxed));
}

void metrics_lane_time(lane_step step, usec_t *since) {
        usec_t now = clock_monotonic();
        metrics_add(M_LANE_SECONDS, step, now > *since ? (uint64_t)(now - *since) : 0);
        *since = now;
}

void metrics_observe(metric_histogram h, double v) {
        if ((unsigned)h >= _H_MAX || isnan(v))
                return;
        const histogram_def *d = &hdefs[h];
        unsigned b = 0;
        while (b < d->n && v > d->bounds[b])
                b++;
        histogram *hs = &histograms[h];
        atomic_fetch_add_explicit(&hs->buckets[b], 1, memory_order_relaxed);
        uint64_t old = atomic_load_explicit(&hs->sum, memory_order_relaxed);
        while (!atomic_compare_exchange_weak_explicit(&hs->sum, &old, dbits(bitsd(old) + v), memory_order_relaxed,
                                                      memory_order_relaxed))
                ;
}

void metrics_histogram_read(metric_histogram h, uint64_t *ret_count, double *ret_sum) {
        uint64_t n = 0;
        for (unsigned b = 0; b <= hdefs[h].n; b++)
                n += atomic_load_explicit(&histograms[h].buckets[b], memory_order_relaxed);
        *ret_count = n;
        *ret_sum = bitsd(atomic_load_explicit(&histograms[h].sum, memory_order_relaxed));
}

void metrics_set_topic(metrics_topic t, const char *name) {
        if ((unsigned)t < _MT_MAX)
                snprintf(topic_names[t], sizeof topic_names[t], "%s", name ? name : "");
}

int metrics_topic_of(const char *name) {
        for (int t = 0; t < _MT_MAX && name; t++)
                if (topic_names[t][0] && strcmp(topic_names[t], name) == 0)
                        return t;
        return -1;
}

void metrics_set_build(const char *version, int schema_version) {
        snprintf(build_version, sizeof build_version, "%s", version ? version : "unknown");
        build_schema = schema_version;
}

void metrics_partition_set(metrics_topic t, int32_t partition, int64_t stored_next, int64_t lag) {
        if ((t != MT_REFERRALS && t != MT_OUTCOMES) || partition < 0 || partition >= METRICS_MAX_PARTITIONS)
                return;
        partition_slot *p = &partitions[t][partition];
        atomic_store_explicit(&p->stored_next, stored_next, memory_order_relaxed);
        atomic_store_explicit(&p->lag, lag, memory_order_relaxed);
        atomic_store_explicit(&p->present, true, memory_order_release);
}

void metrics_partitions_clear(void) {
        for (int t = 0; t < 2; t++)
                for (int i = 0; i < METRICS_MAX_PARTITIONS; i++)
                        atomic_store_explicit(&partitions[t][i].present, false, memory_order_relaxed);
}

static void brokers_setup(void) {
        bool expected = false;
        if (!atomic_compare_exchange_strong(&brokers_init, &expected, true))
                return;
        for (int c = 0; c < _MC_MAX; c++)
                for (int s = 0; s < METRICS_MAX_BROKERS; s++)
                        atomic_store(&brokers[c][s].nodeid, -1);
}

void metrics_broker_set(metrics_client c, unsigned slot, const metrics_broker *b) {
        if ((unsigned)c >= _MC_MAX || slot >= METRICS_MAX_BROKERS)
                return;
        brokers_setup();
        broker_slot *s = &brokers[c][slot];
        if (!b || b->nodeid < 0) {
                atomic_store_explicit(&s->nodeid, -1, memory_order_relaxed);
                return;
        }
        atomic_store_explicit(&s->rtt_avg, dbits(b->rtt_avg), memory_order_relaxed);
        atomic_store_explicit(&s->rtt_p99, dbits(b->rtt_p99), memory_order_relaxed);
        atomic_store_explicit(&s->outbuf, b->outbuf_requests, memory_order_relaxed);
        atomic_store_explicit(&s->waitresp, b->waitresp_requests, memory_order_relaxed);
        atomic_store_explicit(&s->tx, b->requests_sent, memory_order_relaxed);
        atomic_store_explicit(&s->rx, b->responses_received, memory_order_relaxed);
        atomic_store_explicit(&s->nodeid, b->nodeid, memory_order_release);
}

void metrics_client_set(metrics_client c, int64_t queue_messages, int64_t fetchq_messages, int64_t replyq) {
        if ((unsigned)c >= _MC_MAX)
                return;
        atomic_store_explicit(&client_queue[c], queue_messages, memory_order_relaxed);
        atomic_store_explicit(&client_fetchq[c], fetchq_messages, memory_order_relaxed);
        atomic_store_explicit(&client_replyq[c], replyq, memory_order_relaxed);
        atomic_store_explicit(&client_seen[c], true, memory_order_release);
}

static pthread_mutex_t errors_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_errors[SQLSTATE_OTHER + 1][200];

void metrics_database_error(unsigned c, const char *message) {
        if (c > SQLSTATE_OTHER)
                c = SQLSTATE_OTHER;
        metrics_inc(M_DATABASE_ERRORS, c);
        pthread_mutex_lock(&errors_lock);
        snprintf(last_errors[c], sizeof last_errors[c], "%s", message ? message : "");
        pthread_mutex_unlock(&errors_lock);
}

void metrics_last_database_error(unsigned c, char *buf, size_t size) {
        if (size == 0)
                return;
        buf[0] = 0;
        if (c > SQLSTATE_OTHER)
                return;
        pthread_mutex_lock(&errors_lock);
        snprintf(buf, size, "%s", last_errors[c]);
        pthread_mutex_unlock(&errors_lock);
}

void metrics_reset(void) {
        for (int m = 0; m < _M_MAX; m++)
                for (int s = 0; s < SLOTS; s++)
                        atomic_store(&values[m][s], defs[m].type == T_GAUGE ? dbits(0) : 0);
        memset(histograms, 0, sizeof histograms);
        metrics_partitions_clear();
        atomic_store(&brokers_init, false);
        brokers_setup();
        for (int c = 0; c < _MC_MAX; c++)
                atomic_store(&client_seen[c], false);
        pthread_mutex_lock(&errors_lock);
        memset(last_errors, 0, sizeof last_errors);
        pthread_mutex_unlock(&errors_lock);
}

/* ---- rendering ---- */

typedef struct out {
        char *s;
        size_t n, cap;
        bool oom;
} out;

static void outf(out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void outf(out *o, const char *fmt, ...) {
        if (o->oom)
                return;
        for (;;) {
                va_list ap;
                va_start(ap, fmt);
                int k = vsnprintf(o->s + o->n, o->cap - o->n, fmt, ap);
                va_end(ap);
                if (k < 0) {
                        o->oom = true;
                        return;
                }
                if ((size_t)k < o->cap - o->n) {
                        o->n += (size_t)k;
                        return;
                }
                size_t cap = o->cap * 2 + (size_t)k + 1;
                char *s = realloc(o->s, cap);
                if (!s) {
                        o->oom = true;
                        return;
                }
                o->s = s;
                o->cap = cap;
        }
}

/* A sample value: integers as integers, the rest in Go's float syntax. */
static const char *fmt_value(double v, char buf[static 40]) {
        if (isnan(v))
                return "NaN";
        if (isinf(v))
                return v > 0 ? "+Inf" : "-Inf";
        if (v == floor(v) && fabs(v) < 1e15)
                snprintf(buf, 40, "%.0f", v);
        else
                snprintf(buf, 40, "%.15g", v);
        return buf;
}

/* Label values are codes and topic names; escaped all the same (\, ", newline). */
static const char *escape(const char *s, char buf[static 2 * METRICS_LABEL_MAX]) {
        size_t o = 0;
        for (; *s && o + 3 < 2 * METRICS_LABEL_MAX; s++) {
                if (*s == '\\' || *s == '"') {
                        buf[o++] = '\\';
                        buf[o++] = *s;
                } else if (*s == '\n') {
                        buf[o++] = '\\';
                        buf[o++] = 'n';
                } else
                        buf[o++] = *s;
        }
        buf[o] = 0;
        return buf;
}

static void header(out *o, const char *name, const char *type, const char *help) {
        outf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_metric(out *o, metric m) {
        const metric_def *d = &defs[m];
        char v[40], e[2 * METRICS_LABEL_MAX];
        header(o, d->name, d->type == T_COUNTER ? "counter" : "gauge", d->help);
        if (!d->label) {
                if (d->type == T_COUNTER)
                        outf(o, "%s %" PRIu64 "\n", d->name, metrics_counter_value(m, 0));
                else
                        outf(o, "%s %s\n", d->name, fmt_value(metrics_gauge_value(m, 0), v));
                return;
        }
        for (unsigned i = d->first; i <= d->last; i++) {
                const char *lv = d->value(i);
                if (!lv)
                        continue;
                escape(lv, e);
                if (d->type == T_COUNTER && d->scale > 0)
                        outf(o, "%s{%s=\"%s\"} %s\n", d->name, d->label, e,
                             fmt_value((double)metrics_counter_value(m, i) * d->scale, v));
                else if (d->type == T_COUNTER)
                        outf(o, "%s{%s=\"%s\"} %" PRIu64 "\n", d->name, d->label, e, metrics_counter_value(m, i));
                else
                        outf(o, "%s{%s=\"%s\"} %s\n", d->name, d->label, e, fmt_value(metrics_gauge_value(m, i), v));
        }
}

static void render_histogram(out *o, metric_histogram h) {
        const histogram_def *d = &hdefs[h];
        char v[40];
        header(o, d->name, "histogram", d->help);
        uint64_t cum = 0;
        for (unsigned b = 0; b <= d->n; b++) {
                cum += atomic_load_explicit(&histograms[h].buckets[b], memory_order_relaxed);
                if (b < d->n)
                        outf(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", d->name, fmt_value(d->bounds[b], v), cum);
                else
                        outf(o, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", d->name, cum);
        }
        outf(o, "%s_sum %s\n", d->name,
             fmt_value(bitsd(atomic_load_explicit(&histograms[h].sum, memory_order_relaxed)), v));
        outf(o, "%s_count %" PRIu64 "\n", d->name, cum);
}

static void render_partitions(out *o) {
        static const struct {
                const char *name, *help;
                bool lag;
        } fams[] = {
                {"allvarsd_consumer_lag_messages", "Messages behind the partition's high watermark (assigned only).",
                 true},
                {"allvarsd_consumer_stored_offset", "The next offset to read, as stored in PostgreSQL (-1: none stored yet).", false},
        };
        char e[2 * METRICS_LABEL_MAX];
        for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
                header(o, fams[f].name, "gauge", fams[f].help);
                for (int t = 0; t < 2; t++)
                        for (int p = 0; p < METRICS_MAX_PARTITIONS; p++) {
                                partition_slot *s = &partitions[t][p];
                                if (!atomic_load_explicit(&s->present, memory_order_acquire) || !topic_names[t][0])
                                        continue;
                                int64_t val = atomic_load_explicit(fams[f].lag ? &s->lag : &s->stored_next,
                                                                   memory_order_relaxed);
                                outf(o, "%s{topic=\"%s\",partition=\"%d\"} %" PRId64 "\n", fams[f].name,
                                     escape(topic_names[t], e), p, val);
                        }
        }
}

static const char *client_name(int c) {
        return c == MC_CONSUMER ? "consumer" : "producer";
}

static void render_kafka(out *o) {
        static const struct {
                const char *name, *type, *help;
                int field;
        } fams[] = {
                {"allvarsd_kafka_broker_rtt_avg_seconds", "gauge", "librdkafka: average broker round trip time.", 0},
                {"allvarsd_kafka_broker_rtt_p99_seconds", "gauge", "librdkafka: 99th percentile broker round trip time.",
                 1},
                {"allvarsd_kafka_broker_outbuf_requests", "gauge",
                 "librdkafka: requests waiting to be sent to the broker.", 2},
                {"allvarsd_kafka_broker_waitresp_requests", "gauge",
                 "librdkafka: requests sent, awaiting the broker's answer.", 3},
                /* How many requests a client makes of each broker (a fetch or
                 * produce request per few messages costs the broker CPU). */
                {"allvarsd_kafka_broker_requests_sent_total", "counter",
                 "librdkafka: requests sent to the broker (tx).", 4},
                {"allvarsd_kafka_broker_responses_received_total", "counter",
                 "librdkafka: responses received from the broker (rx).", 5},
        };
        char v[40];
        brokers_setup();
        for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
                header(o, fams[f].name, fams[f].type, fams[f].help);
                for (int c = 0; c < _MC_MAX; c++)
                        for (int s = 0; s < METRICS_MAX_BROKERS; s++) {
                                broker_slot *b = &brokers[c][s];
                                int32_t id = atomic_load_explicit(&b->nodeid, memory_order_acquire);
                                if (id < 0)
                                        continue;
                                double val;
                                switch (fams[f].field) {
                                case 0: val = bitsd(atomic_load_explicit(&b->rtt_avg, memory_order_relaxed)); break;
                                case 1: val = bitsd(atomic_load_explicit(&b->rtt_p99, memory_order_relaxed)); break;
                                case 2: val = (double)atomic_load_explicit(&b->outbuf, memory_order_relaxed); break;
                                case 3: val = (double)atomic_load_explicit(&b->waitresp, memory_order_relaxed); break;
                                case 4: val = (double)atomic_load_explicit(&b->tx, memory_order_relaxed); break;
                                default: val = (double)atomic_load_explicit(&b->rx, memory_order_relaxed);
                                }
                                outf(o, "%s{client=\"%s\",broker=\"%d\"} %s\n", fams[f].name, client_name(c), (int)id,
                                     fmt_value(val, v));
                        }
        }
        static const struct {
                const char *name, *help;
                _Atomic int64_t *v;
        } cfams[] = {
                {"allvarsd_kafka_queue_messages", "librdkafka: messages in the client's produce queues (msg_cnt).",
                 client_queue},
                {"allvarsd_kafka_fetchq_messages", "librdkafka: messages prefetched, waiting to be consumed.",
                 client_fetchq},
                {"allvarsd_kafka_replyq_ops", "librdkafka: operations waiting for the application (replyq).",
                 client_replyq},
        };
        for (size_t f = 0; f < sizeof cfams / sizeof cfams[0]; f++) {
                header(o, cfams[f].name, "gauge", cfams[f].help);
                for (int c = 0; c < _MC_MAX; c++)
                        if (atomic_load_explicit(&client_seen[c], memory_order_acquire))
                                outf(o, "%s{client=\"%s\"} %" PRId64 "\n", cfams[f].name, client_name(c),
                                     atomic_load_explicit(&cfams[f].v[c], memory_order_relaxed));
        }
}

int metrics_render(char **ret, size_t *ret_len) {
        out o = {.cap = 16384};
        o.s = malloc(o.cap);
        if (!o.s)
                return -ENOMEM;
        o.s[0] = 0;
        char e[2 * METRICS_LABEL_MAX];
        header(&o, "allvarsd_build_info", "gauge", "The version of allvarsd and the database schema it needs.");
        outf(&o, "allvarsd_build_info{version=\"%s\",schema_version=\"%d\"} 1\n", escape(build_version, e),
             build_schema);
        for (int m = 0; m < _M_MAX; m++)
                render_metric(&o, (metric)m);
        for (int h = 0; h < _H_MAX; h++)
                render_histogram(&o, (metric_histogram)h);
        render_partitions(&o);
        render_kafka(&o);
        if (o.oom) {
                free(o.s);
                return -ENOMEM;
        }
        *ret = o.s;
        *ret_len = o.n;
        return 0;
}
