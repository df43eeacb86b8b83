/* The periodic jobs on their own thread and connection. See jobs.h. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "deadline_watch.h"
#include "events.h"
#include "instances.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "retention.h"
#include "sqlstate.h"
#include "version.h"

/* The outbox's figures, the relay's lock holders and the heartbeat: cheap
 * (index ends, a few rows), for STATUS= and the alerts on a stuck relay. */
#define FIGURES_INTERVAL (15 * USEC_PER_SEC)
/* The open cases' counts: one pass over the open cases (store.h), whose cost
 * grows with them; gauges of deadlines measured in hours need no fresher. */
#define CASE_FIGURES_INTERVAL (60 * USEC_PER_SEC)
#define RECONNECT_MIN    (100 * 1000)
#define RECONNECT_MAX    (30 * USEC_PER_SEC)

struct jobs {
        clock_source clk;
        instance_self self;
        store *st;
        usec_t next_watch, next_retention, next_figures, next_case_figures;
        usec_t next_connect, backoff;

        pthread_mutex_t lock;           /* guards fig */
        jobs_figures fig;
};

int jobs_new(const config *cfg, jobs **ret) {
        jobs *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        int r = clock_source_init(&j->clk, cfg->clock_file);
        if (r < 0) {
                free(j);
                return r;
        }
        pthread_mutex_init(&j->lock, NULL);
        instance_self_init(&j->self, ALLVARSD_VERSION);
        j->backoff = RECONNECT_MIN;
        *ret = j;
        return 0;
}

void jobs_free(jobs *j) {
        if (!j)
                return;
        if (j->st && store_connected(j->st))
                (void)instances_stopped(j->st, &j->self);
        store_free(j->st);
        clock_source_done(&j->clk);
        pthread_mutex_destroy(&j->lock);
        free(j);
}

void jobs_figures_read(jobs *j, jobs_figures *ret) {
        pthread_mutex_lock(&j->lock);
        *ret = j->fig;
        pthread_mutex_unlock(&j->lock);
}

static void set_error(jobs *j, bool down, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_error(jobs *j, bool down, const char *fmt, ...) {
        va_list ap;
        pthread_mutex_lock(&j->lock);
        j->fig.database_down = down;
        va_start(ap, fmt);
        vsnprintf(j->fig.last_error, sizeof j->fig.last_error, fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&j->lock);
}

/* Connected, or connecting with backoff: false while there is no connection. */
static bool ensure_connected(jobs *j, const config *cfg, usec_t mono) {
        if (j->st && store_connected(j->st))
                return true;
        if (mono < j->next_connect)
                return false;
        char err[512];
        int r = j->st ? store_reconnect(j->st, err, sizeof err)
                      : store_connect(cfg->db_conninfo, cfg->db_password, &j->st, err, sizeof err);
        if (r < 0) {
                log_struct(LOG_WARNING, MSGID_DB_UNAVAILABLE,
                           "MESSAGE=Periodic jobs: PostgreSQL unavailable: %s; retrying in %lld ms", err,
                           (long long)(j->backoff / 1000), NULL);
                set_error(j, true, "periodic jobs: %s", err);
                j->next_connect = mono + j->backoff;
                j->backoff = j->backoff * 2 > RECONNECT_MAX ? RECONNECT_MAX : j->backoff * 2;
                return false;
        }
        j->backoff = RECONNECT_MIN;
        /* Told apart from the batches' sessions in pg_stat_activity. A scan of
         * the jobs (the figures over every open case) runs in this session
         * alone: parallel workers would take every core of a small server
         * from the batches for its duration (bench/README.md). */
        PQclear(PQexec((PGconn *)store_pg(j->st),
                       "SET application_name = 'allvarsd-jobs'; SET max_parallel_workers_per_gather = 0"));
        pthread_mutex_lock(&j->lock);
        j->fig.database_down = false;
        pthread_mutex_unlock(&j->lock);
        return true;
}

static void run_watch(jobs *j, const config *cfg) {
        deadline_watch_result w = {0};
        int r = deadline_watch_run(j->st, cfg, clock_now(&j->clk), &w);
        if (r < 0) {
                log_warning_errno(r, "Deadline watch: %s", store_last_error(j->st));
                set_error(j, !store_connected(j->st), "deadline watch: %s", store_last_error(j->st));
                return;
        }
        metrics_add(M_ALERTS_RAISED, ALERT_AT_RISK, w.at_risk);
        metrics_add(M_ALERTS_RAISED, ALERT_MISSED, w.missed);
        metrics_add(M_ALERTS_RAISED, ALERT_PROTECTIVE_ASSESSMENT_OVERDUE, w.assessment_overdue);
        unsigned n = w.at_risk + w.missed + w.assessment_overdue;
        if (n == 0)
                return;
        pthread_mutex_lock(&j->lock);
        j->fig.alerts += n;
        pthread_mutex_unlock(&j->lock);
        log_struct(LOG_NOTICE, MSGID_ALERT, "AT_RISK=%u", w.at_risk, "MISSED=%u", w.missed, "ASSESSMENT_OVERDUE=%u",
                   w.assessment_overdue,
                   "MESSAGE=Deadline watch raised %u AT_RISK, %u MISSED, %u PROTECTIVE_ASSESSMENT_OVERDUE", w.at_risk,
                   w.missed, w.assessment_overdue, NULL);
}

static void run_retention(jobs *j, const config *cfg) {
        retention_result rr = {0};
        int r = retention_run(j->st, cfg, clock_now(&j->clk), &rr);
        if (r < 0) {
                log_warning_errno(r, "Retention: %s", store_last_error(j->st));
                set_error(j, !store_connected(j->st), "retention: %s", store_last_error(j->st));
                return;
        }
        if (rr.referrals + rr.cases + rr.dead_letters > 0)
                log_struct(LOG_NOTICE, MSGID_PURGE, "REFERRALS=%u", rr.referrals, "CASES=%u", rr.cases,
                           "MESSAGE=Retention purged the personal data of %u referral(s), %u case(s), "
                           "%u dead letter(s)",
                           rr.referrals, rr.cases, rr.dead_letters, NULL);
}

/* This instance's row in allvarsd.instances, from the metrics registry. */
static int heartbeat(jobs *j) {
        char errors[SQLSTATE_OTHER + 1][200];
        instance_beat b = {
                .relay_active = metrics_gauge_value(M_RELAY_LOCK_HELD, 0) > 0,
                .partitions = (unsigned)metrics_gauge_value(M_PARTITIONS_ASSIGNED, 0),
        };
        for (unsigned o = OUTCOME_ELIGIBLE; o <= OUTCOME_MANUAL_REVIEW; o++)
                b.decided += metrics_counter_value(M_REFERRALS_DECIDED, o);
        for (unsigned r = DLR_EMPTY; r <= DLR_ILLEGAL_TRANSITION; r++)
                b.dead_lettered += metrics_counter_value(M_DEAD_LETTERS, r);
        for (unsigned c = 0; c <= SQLSTATE_OTHER; c++) {
                metrics_last_database_error(c, errors[c], sizeof errors[c]);
                b.last_error[c] = errors[c];
        }
        return instances_heartbeat(j->st, &j->self, &b);
}

/* The database figures: for STATUS= and for the metrics, which serve them
 * from memory (a scrape never queries PostgreSQL). */
static void run_figures(jobs *j) {
        store_figures f;
        instances_figures inf;
        if (store_figures_read(j->st, &f) < 0 || instances_figures_read(j->st, &inf) < 0 || heartbeat(j) < 0) {
                set_error(j, !store_connected(j->st), "figures: %s", store_last_error(j->st));
                return;
        }
        metrics_set(M_DB_OUTBOX_DEPTH, 0, (double)f.outbox_backlog);
        usec_t real = clock_realtime(); /* created_at is the server's real time, not clock.file's */
        metrics_set(M_DB_OUTBOX_OLDEST_AGE, 0,
                    f.outbox_oldest && real > f.outbox_oldest ? (double)(real - f.outbox_oldest) / USEC_PER_SEC : 0);
        metrics_set(M_DB_DEAD_LETTERS, 0, (double)f.dead_letters);
        metrics_set(M_DB_RELAY_HOLDERS, 0, (double)inf.relay_holders);
        metrics_set(M_DB_FIGURES_TIME, 0, (double)real / USEC_PER_SEC);
        pthread_mutex_lock(&j->lock);
        j->fig.db = f;
        j->fig.have_db = true;
        j->fig.db_read_at = clock_monotonic();
        pthread_mutex_unlock(&j->lock);
}

static void run_case_figures(jobs *j) {
        store_case_figures c;
        if (store_case_figures_read(j->st, clock_now(&j->clk), &c) < 0) {
                set_error(j, !store_connected(j->st), "case figures: %s", store_last_error(j->st));
                return;
        }
        metrics_set(M_DB_CASES_OPEN, 0, (double)c.open);
        metrics_set(M_DB_CASES_OVERDUE, 0, (double)c.overdue);
        metrics_set(M_DB_PROTECTIVE_OVERDUE, 0, (double)c.protective_overdue);
        metrics_set(M_DB_CASE_FIGURES_TIME, 0, (double)clock_realtime() / USEC_PER_SEC);
        pthread_mutex_lock(&j->lock);
        j->fig.cases = c;
        j->fig.have_cases = true;
        j->fig.cases_read_at = clock_monotonic();
        pthread_mutex_unlock(&j->lock);
}

static usec_t min_usec(usec_t a, usec_t b) {
        return a < b ? a : b;
}

static usec_t jobs_step(void *userdata, const config *cfg, struct pollfd *fds, size_t *ret_n) {
        jobs *j = userdata;
        (void)fds;
        *ret_n = 0;
        usec_t mono = clock_monotonic();
        if (!ensure_connected(j, cfg, mono))
                return j->next_connect;
        if (mono >= j->next_watch) {
                run_watch(j, cfg);
                j->next_watch = mono + (usec_t)cfg->deadline_watch_interval_s * USEC_PER_SEC;
        }
        if (store_connected(j->st) && mono >= j->next_retention) {
                run_retention(j, cfg);
                j->next_retention = mono + (usec_t)cfg->retention_interval_s * USEC_PER_SEC;
        }
        if (store_connected(j->st) && mono >= j->next_figures) {
                run_figures(j);
                j->next_figures = mono + FIGURES_INTERVAL;
        }
        if (store_connected(j->st) && mono >= j->next_case_figures) {
                run_case_figures(j);
                j->next_case_figures = mono + CASE_FIGURES_INTERVAL;
        }
        if (!store_connected(j->st)) {
                /* A job lost the connection: reconnect soon, then run what is due. */
                j->next_connect = mono + j->backoff;
                return j->next_connect;
        }
        return min_usec(min_usec(j->next_watch, j->next_retention), min_usec(j->next_figures, j->next_case_figures));
}

/* A reload that shortens an interval takes effect now, not after the run
 * already scheduled on the old one. */
static void jobs_reconfigure(void *userdata, const config *cfg) {
        jobs *j = userdata;
        usec_t mono = clock_monotonic();
        usec_t watch = mono + (usec_t)cfg->deadline_watch_interval_s * USEC_PER_SEC;
        usec_t retention = mono + (usec_t)cfg->retention_interval_s * USEC_PER_SEC;
        if (watch < j->next_watch)
                j->next_watch = watch;
        if (retention < j->next_retention)
                j->next_retention = retention;
}

worker_job jobs_job(jobs *j) {
        return (worker_job){
                .name = "allvarsd-jobs", .userdata = j, .step = jobs_step, .reconfigure = jobs_reconfigure};
}
