/* allvarsd: the service. Command line, wiring, signals and the event loop.
 *
 * Three threads of ours, each with its own PostgreSQL connection:
 *   main    the consumer's batches, signals (signalfd), STATUS= and the watchdog;
 *   relay   the outbox relay (relay_worker.c), woken by LISTEN and delivery reports;
 *   jobs    the deadline watch, the retention purge and the database figures (jobs.c).
 * so a batch never waits for the relay or a slow watch, and they never wait for
 * a batch. librdkafka fetches and produces in its own threads and wakes us
 * through file descriptors; every loop sleeps in poll() until something is due. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sysexits.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "clock.h"
#include "config.h"
#include "consumer.h"
#include "deadline_watch.h"
#include "identity.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "metrics_http.h"
#include "notify.h"
#include "relay.h"
#include "relay_worker.h"
#include "sqlstate.h"
#include "store.h"
#include "version.h"
#include "worker.h"

#ifndef SCHEMAS_DIR
#define SCHEMAS_DIR "/usr/share/allvarsd/schemas"
#endif

#define STATUS_INTERVAL  USEC_PER_SEC
/* In the unit's RuntimeDirectory=: the restart-only values the daemon started
 * with, which --check-reload (ExecReload=) compares the edited file with. */
#define RUNTIME_DIR_DEFAULT "/run/allvarsd"
#define RESTART_RECORD "restart-only.conf"
#define DRAIN_FLUSH_TIMEOUT (10 * USEC_PER_SEC)

typedef struct manager {
        const char *config_path;
        const char *schemas_dir;
        config *cfg;
        clock_source clk;
        store *st;
        consumer *cons;
        relay *rel;
        relay_worker *rel_worker;
        worker *rel_thread;
        jobs *jobs;
        worker *jobs_thread;
        metrics_http *metrics;

        rd_kafka_t *mock_host;          /* kafka.embedded: owns the mock cluster */
        rd_kafka_mock_cluster_t *mock;
        char *bootstrap;                /* the embedded cluster's, or NULL */

        int sigfd;
        bool ready;
        bool stop;
        usec_t watchdog_usec;
        usec_t next_watchdog;
        bool watchdog_withheld;         /* a thread is stuck: logged once */
        usec_t next_status;
        char state[160];
        char last_error[512];
} manager;

static void usage(FILE *f) {
        fprintf(f,
                "Usage: allvarsd [OPTIONS]\n"
                "Decide police referrals for allvarssamtal; see allvarsd(8).\n\n"
                "  -c, --config PATH    configuration file (default %s)\n"
                "      --check-config   validate the configuration, print the effective values, exit\n"
                "      --check-reload   check the file as a reload would take it (ExecReload=), exit\n"
                "      --migrate        apply the database migrations, then exit\n"
                "      --database CONNINFO  with --migrate: connect with this instead of database.conninfo\n"
                "                       (the migration owner, e.g. dbname=allvarsd user=allvarsd_owner)\n"
                "      --schemas DIR    where the migrations are (default %s)\n"
                "      --version        print the version and exit\n"
                "  -h, --help           this text\n",
                CONFIG_DEFAULT_PATH, SCHEMAS_DIR);
}

static int log_level_parse(const char *s) {
        static const struct {
                const char *name;
                int prio;
        } levels[] = {{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"notice", LOG_NOTICE},
                      {"warning", LOG_WARNING}, {"err", LOG_ERR}, {"error", LOG_ERR}};
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
                if (s && strcmp(s, levels[i].name) == 0)
                        return levels[i].prio;
        return LOG_INFO;
}

static log_target log_target_parse(const char *s) {
        if (s && strcmp(s, "journal") == 0)
                return LOG_TARGET_JOURNAL;
        if (s && strcmp(s, "stderr") == 0)
                return LOG_TARGET_STDERR;
        return LOG_TARGET_AUTO;
}

static void log_effective_config(const config *cfg) {
        char buf[1024];
        profile_describe(&cfg->profile, buf, sizeof buf);
        log_struct(LOG_INFO, MSGID_CONFIG, "PROFILE=%s", cfg->profile.name, "PROFILE_PARAMS=%s", buf,
                   "MESSAGE=Default profile: %s", buf, NULL);
        for (size_t i = 0; i < cfg->n_districts; i++) {
                profile_describe(&cfg->districts[i].profile, buf, sizeof buf);
                log_struct(LOG_INFO, MSGID_CONFIG, "DISTRICT=%s", cfg->districts[i].district, "PROFILE=%s",
                           cfg->districts[i].profile.name, "PROFILE_PARAMS=%s", buf,
                           "MESSAGE=Profile for district %s: %s", cfg->districts[i].district, buf, NULL);
        }
        log_struct(LOG_INFO, MSGID_CONFIG, "FEEDBACK_LEVEL=%s",
                   cfg->feedback_level == FEEDBACK_STATUTORY ? "statutory" : "conversation",
                   "MESSAGE=Feedback to the police: level %s, %s",
                   cfg->feedback_level == FEEDBACK_STATUTORY ? "statutory" : "conversation",
                   cfg->feedback_always ? "always" : "when the referral asks for it", NULL);
        if (cfg->insecure_allow_plaintext)
                log_struct(LOG_WARNING, MSGID_CONFIG, "INSECURE=allow_plaintext",
                           "MESSAGE=insecure.allow_plaintext = true: TLS to PostgreSQL and Kafka is not enforced, and "
                           "certificate and host name checks may be off; for a test network only",
                           NULL);
}

static int signals_setup(manager *m) {
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
#ifdef ALLVARSD_TEST_HOOKS
        sigaddset(&mask, SIGUSR2);
#endif
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);
        m->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        return m->sigfd < 0 ? -errno : 0;
}

/* kafka.embedded: librdkafka's in-process mock cluster, for trying allvarsd out. */
static int embedded_kafka_start(manager *m) {
        char e[256];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_conf_set(conf, "client.id", "allvarsd-embedded", e, sizeof e);
        m->mock_host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
        if (!m->mock_host) {
                rd_kafka_conf_destroy(conf);
                return log_error_errno(-EIO, "Embedded Kafka: %s", e);
        }
        m->mock = rd_kafka_mock_cluster_new(m->mock_host, 1);
        if (!m->mock)
                return log_error_errno(-EIO, "Embedded Kafka: cannot create the mock cluster");
        const char *topics[] = {m->cfg->topic_referrals, m->cfg->topic_outcomes, m->cfg->topic_scheduling,
                                m->cfg->topic_feedback, m->cfg->topic_alerts, m->cfg->topic_dead_letter};
        for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
                rd_kafka_mock_topic_create(m->mock, topics[i], 4, 1);
        m->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(m->mock));
        if (!m->bootstrap)
                return -ENOMEM;
        log_struct(LOG_WARNING, MSGID_EMBEDDED_KAFKA, "BOOTSTRAP=%s", m->bootstrap,
                   "MESSAGE=EMBEDDED KAFKA at %s: librdkafka's in-process mock cluster. NOT FOR PRODUCTION: "
                   "everything in it is lost when allvarsd stops.",
                   m->bootstrap, NULL);
        return 0;
}

static void embedded_kafka_stop(manager *m) {
        if (m->mock)
                rd_kafka_mock_cluster_destroy(m->mock);
        if (m->mock_host)
                rd_kafka_destroy(m->mock_host);
        m->mock = NULL;
        m->mock_host = NULL;
        free(m->bootstrap);
        m->bootstrap = NULL;
}

static void status_update(manager *m) {
        consumer_figures cf = {0};
        relay_figures rf = {0};
        jobs_figures jf = {0};
        char relay_state[160];
        if (m->cons)
                consumer_figures_read(m->cons, &cf);
        if (m->rel_worker)
                relay_worker_figures(m->rel_worker, &rf);
        if (m->jobs)
                jobs_figures_read(m->jobs, &jf);
        if (m->cons)
                consumer_metrics_publish(m->cons);
        metrics_set(M_RELAY_LOCK_HELD, 0, rf.active ? 1 : 0);
        metrics_set(M_RELAY_IN_FLIGHT, 0, (double)rf.in_flight);
        const char *state = m->state;
        if (cf.database_down)
                state = "PostgreSQL unavailable, partitions paused";
        else if (m->ready && rf.refusing[0]) {
                snprintf(relay_state, sizeof relay_state, "running, relay active, %s", rf.refusing);
                state = relay_state;
        } else if (m->ready)
                state = rf.active ? "running, relay active" : "running, relay standby";
        const char *last = cf.last_error[0]   ? cf.last_error
                           : rf.last_error[0] ? rf.last_error
                           : jf.last_error[0] ? jf.last_error
                                              : NULL;
        /* The database figures are as old as the older of their two reads (jobs.c). */
        bool db_known = jf.have_db && jf.have_cases;
        usec_t db_read_at = jf.db_read_at < jf.cases_read_at ? jf.db_read_at : jf.cases_read_at;
        notify_figures nf = {
                .referrals_decided = cf.decided,
                .duplicates = cf.duplicates,
                .dead_letters = cf.dead_lettered,
                .db_known = db_known,
                .db_age_s = db_known ? (uint64_t)((clock_monotonic() - db_read_at) / USEC_PER_SEC) : 0,
                .cases_open = jf.cases.open,
                .outbox_backlog = jf.db.outbox_backlog,
                .alerts_raised = cf.alerts + jf.alerts,
                .partitions_assigned = cf.partitions,
                .state = state,
                .last_error = last,
        };
        notify_status(&nf);
}

static int reload(manager *m) {
        notify_reloading();
        config *n = NULL;
        char err[512];
        int r = config_load(m->config_path, &n, err, sizeof err);
        if (r < 0) {
                log_struct(LOG_ERR, MSGID_RELOADED, "MESSAGE=Reload refused, keeping the running configuration: %s", err,
                           NULL);
                notify_ready();
                return r;
        }
        char keys[512];
        config_restart_needed(m->cfg, n, keys, sizeof keys);
        if (keys[0]) {
                log_struct(LOG_ERR, MSGID_RELOADED, "KEYS=%s", keys,
                           "MESSAGE=Reload refused, keeping the running configuration: these keys need a restart: %s",
                           keys, NULL);
                config_free(n);
                notify_ready();
                return -EINVAL;
        }
        config *old = m->cfg;
        m->cfg = n;
        if (consumer_reconfigure(m->cons, n) < 0)
                log_warning("Reload: out of memory for batches of batch.max_messages = %u; the batches keep their "
                            "old size", n->batch_max_messages);
        worker_reconfigure(m->rel_thread, n);
        worker_reconfigure(m->jobs_thread, n);
        log_setup(log_target_parse(n->log_target), log_level_parse(n->log_level));
        config_free(old);
        log_struct(LOG_NOTICE, MSGID_RELOADED, "PROFILE=%s", n->profile.name,
                   "MESSAGE=Configuration reloaded; default profile %s version %u", n->profile.name,
                   n->profile.version, NULL);
        log_effective_config(n);
        notify_ready();
        return 0;
}

static void handle_signals(manager *m) {
        struct signalfd_siginfo si;
        while (read(m->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
                if (si.ssi_signo == SIGHUP)
                        reload(m);
#ifdef ALLVARSD_TEST_HOOKS
                /* Test builds only (make's allvarsd-test-hooks, never installed):
                 * the main loop hangs, for the watchdog test; the other threads
                 * go on. */
                else if (si.ssi_signo == SIGUSR2) {
                        log_warning("TEST HOOK: SIGUSR2, stalling the main loop");
                        for (;;)
                                pause();
                }
#endif
                else
                        m->stop = true;
        }
}

/* Connect to PostgreSQL, waiting with backoff (and answering signals) until it answers. */
static int connect_store(manager *m) {
        usec_t backoff = 100 * 1000;
        for (;;) {
                char err[512];
                int r = store_connect(m->cfg->db_conninfo, m->cfg->db_password, &m->st, err, sizeof err);
                if (r >= 0)
                        return 0;
                if (r == -EACCES) {     /* refused, not unreachable: waiting cannot help */
                        log_error("PostgreSQL refused the connection: %s. Fix db.conninfo, the password or the"
                                  " roles (deploy/roles.sql) and start again.", err);
                        return r;
                }
                snprintf(m->state, sizeof m->state, "waiting for PostgreSQL");
                snprintf(m->last_error, sizeof m->last_error, "%s", err);
                log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "MESSAGE=PostgreSQL unavailable: %s; retrying in %lld ms",
                           err, (long long)(backoff / 1000), NULL);
                notify_figures nf = {.state = m->state, .last_error = m->last_error};
                notify_status(&nf);
                struct pollfd p = {.fd = m->sigfd, .events = POLLIN};
                poll(&p, 1, (int)(backoff / 1000));
                handle_signals(m);
                if (m->stop)
                        return -ECANCELED;
                notify_watchdog();
                backoff = backoff * 2 > 30 * USEC_PER_SEC ? 30 * USEC_PER_SEC : backoff * 2;
        }
}

/* The periodic jobs start once the consumer has joined its group, as before
 * they would only find work the batches left. */
static int jobs_start(manager *m) {
        int r = jobs_new(m->cfg, &m->jobs);
        if (r < 0)
                return log_error_errno(r, "Periodic jobs: %m");
        worker_job job = jobs_job(m->jobs);
        r = worker_start(&job, m->cfg, &m->jobs_thread);
        if (r < 0)
                return log_error_errno(r, "Periodic jobs: cannot start the thread: %m");
        return 0;
}

static int relay_start(manager *m) {
        char err[512];
        int r = relay_new(m->cfg, m->bootstrap, &m->rel, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "Outbox relay: %s", err);
        r = relay_worker_new(m->rel, &m->rel_worker);
        if (r < 0)
                return log_error_errno(r, "Outbox relay: %m");
        worker_job job = relay_worker_job(m->rel_worker);
        r = worker_start(&job, m->cfg, &m->rel_thread);
        if (r < 0)
                return log_error_errno(r, "Outbox relay: cannot start the thread: %m");
        return 0;
}

/* Stop the threads before what they use goes away; safe to call twice. */
static void threads_stop(manager *m) {
        worker_stop(m->jobs_thread);
        m->jobs_thread = NULL;
        worker_stop(m->rel_thread);
        m->rel_thread = NULL;
}

/* Every PostgreSQL session of the daemon (the batches, the relay, the jobs)
 * gets a statement_timeout of a third of the watchdog interval (below the
 * half at which it is pinged) and a lock_timeout of half that: a stuck statement or a lock held
 * elsewhere becomes an error the daemon handles (the batch is retried), not
 * the watchdog's SIGABRT in the middle of a transaction. Through PGOPTIONS,
 * which libpq sends at every connect and reconnect; the conninfo's own
 * `options` still win. Before any thread starts (setenv). */
static int session_timeouts(void) {
        usec_t wd = notify_watchdog_usec();
        if (!wd)
                return 0;
        unsigned long long ms = wd / 3 / 1000;
        if (ms < 100)
                ms = 100;
        const char *old = getenv("PGOPTIONS");
        char *v;
        if (asprintf(&v, "%s%s-c statement_timeout=%llu -c lock_timeout=%llu", old ? old : "", old ? " " : "", ms,
                     ms / 2) < 0)
                return -ENOMEM;
        int r = setenv("PGOPTIONS", v, 1) < 0 ? -errno : 0;
        free(v);
        if (r >= 0)
                log_info("PostgreSQL statement_timeout %llu ms (a third of the watchdog interval), lock_timeout %llu ms",
                         ms, ms / 2);
        return r;
}

/* The main loop pings the watchdog only while the threads it depends on make
 * progress too: a relay or job step that has not returned within half the
 * interval is stuck (its statements time out sooner), and systemd should
 * restart the daemon rather than be told all is well. */
static bool threads_alive(manager *m, usec_t mono) {
        const struct {
                const char *name;
                usec_t since;
        } t[] = {{"relay", worker_step_started(m->rel_thread)}, {"jobs", worker_step_started(m->jobs_thread)}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
                if (t[i].since && mono > t[i].since && mono - t[i].since > m->watchdog_usec / 2) {
                        if (!m->watchdog_withheld)
                                log_error("The %s thread has been in one step for %llu s; not pinging the watchdog",
                                          t[i].name, (unsigned long long)((mono - t[i].since) / USEC_PER_SEC));
                        m->watchdog_withheld = true;
                        return false;
                }
        m->watchdog_withheld = false;
        return true;
}

/* The topics' names and the build for the metrics; the endpoint when
 * metrics.listen is set (a restart-only key). */
static int metrics_start(manager *m) {
        const config *c = m->cfg;
        metrics_set_topic(MT_REFERRALS, c->topic_referrals);
        metrics_set_topic(MT_OUTCOMES, c->topic_outcomes);
        metrics_set_topic(MT_SCHEDULING, c->topic_scheduling);
        metrics_set_topic(MT_FEEDBACK, c->topic_feedback);
        metrics_set_topic(MT_ALERTS, c->topic_alerts);
        metrics_set_topic(MT_DEAD_LETTER, c->topic_dead_letter);
        metrics_set_build(ALLVARSD_VERSION, STORE_SCHEMA_VERSION);
        metrics_set(M_START_TIME, 0, (double)clock_realtime() / USEC_PER_SEC);
        if (!c->metrics_listen || !c->metrics_listen[0])
                return 0;
        char err[300];
        int r = metrics_http_start(c->metrics_listen, c->metrics_allow_remote, &m->metrics, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "%s", err);
        log_info("Metrics at http://%s/metrics", c->metrics_listen);
        return 0;
}

static int run(manager *m) {
        int r;
        char err[512];

        r = session_timeouts();
        if (r < 0)
                return log_error_errno(r, "PGOPTIONS: %m");
        r = metrics_start(m);
        if (r < 0)
                return r;

        r = connect_store(m);
        if (r < 0)
                return r == -ECANCELED ? 0 : r;
        int version = 0;
        r = store_check_schema(m->st, &version);
        if (r == -EACCES || r == -ENOENT || r == -EPROTO) {
                log_error("%s. Fix the deployment (allvarsd --migrate as the migration owner; grants:"
                          " deploy/roles.sql) and start again.", store_last_error(m->st));
                return -EACCES;
        }
        if (r < 0)
                return log_error_errno(r, "Schema check: %s", store_last_error(m->st));

        if (m->cfg->kafka_embedded) {
                r = embedded_kafka_start(m);
                if (r < 0)
                        return r;
        }
        if (m->cfg->relay_enabled) {
                r = relay_start(m);
                if (r < 0)
                        return r;
        }
        r = consumer_new(m->cfg, m->bootstrap, m->st, &m->clk, &m->cons, err, sizeof err);
        if (r < 0)
                return log_error_errno(r, "Kafka consumer: %s", err);
        snprintf(m->state, sizeof m->state, "joining the consumer group");

        m->watchdog_usec = notify_watchdog_usec();
        while (!m->stop) {
                usec_t next = consumer_step(m->cons);
                usec_t mono = clock_monotonic();
                if (!m->ready) {
                        consumer_figures cf;
                        consumer_figures_read(m->cons, &cf);
                        if (cf.assigned_once) {
                                /* STATUS= first, so that READY=1 is never seen with a stale one. */
                                m->ready = true;
                                status_update(m);
                                m->next_status = mono + STATUS_INTERVAL;
                                notify_ready();
                                log_struct(LOG_NOTICE, MSGID_STARTED, "GROUP=%s", m->cfg->group_id,
                                           "MESSAGE=allvarsd %s ready: group %s, %u partition(s), profile %s",
                                           ALLVARSD_VERSION, m->cfg->group_id, cf.partitions, m->cfg->profile.name,
                                           NULL);
                                r = jobs_start(m);
                                if (r < 0)
                                        return r;
                        }
                }
                if (m->watchdog_usec && mono >= m->next_watchdog && threads_alive(m, mono)) {
                        notify_watchdog();
                        m->next_watchdog = mono + m->watchdog_usec / 2;
                }
                if (m->watchdog_usec && m->next_watchdog < next)
                        next = m->next_watchdog;
                if (mono >= m->next_status) {
                        status_update(m);
                        m->next_status = mono + STATUS_INTERVAL;
                }
                if (m->next_status < next)
                        next = m->next_status;

                struct pollfd fds[2] = {
                        {.fd = m->sigfd, .events = POLLIN},
                        {.fd = consumer_fd(m->cons), .events = POLLIN},
                };
                usec_t now = clock_monotonic();
                int timeout = next <= now ? 0 : (int)((next - now + 999) / 1000);
                if (poll(fds, 2, timeout) < 0 && errno != EINTR)
                        return log_error_errno(-errno, "poll: %m");
                if (fds[0].revents)
                        handle_signals(m);
        }

        /* SIGTERM: finish the batch in hand, flush the producer, leave the group. */
        notify_stopping();
        log_struct(LOG_NOTICE, MSGID_STOPPING, "MESSAGE=Stopping: draining the current batch", NULL);
        /* The periodic jobs finish what they are doing meanwhile (joined below). */
        worker_request_stop(m->jobs_thread);
        consumer_drain(m->cons);
        if (m->rel) {
                /* Let the relay's thread publish what the last batch wrote, within the flush timeout. */
                usec_t until = clock_monotonic() + DRAIN_FLUSH_TIMEOUT / 2;
                store_figures f;
                while (clock_monotonic() < until && store_figures_read(m->st, &f) == 0 && f.outbox_backlog > 0) {
                        relay_figures rf;
                        relay_worker_figures(m->rel_worker, &rf);
                        if (!rf.active)
                                break;
                        poll(NULL, 0, 50);
                }
        }
        threads_stop(m);
        return 0;
}

/* One line for a failed step of --migrate, with what to do about it when the
 * cause is the deployment's (a wrong password, a missing database, role or
 * grant: sqlstate_fix); the exit status systemd shows: EX_CONFIG for those,
 * EX_TEMPFAIL for an unreachable or failing server. */
static int migrate_failed(const char *what, const char *err) {
        char state[6];
        const char *fix = sqlstate_fix(sqlstate_in_text(err, state));
        log_error("%s: %s%s%s", what, err, fix ? ": " : "", fix ? fix : "");
        return fix ? EX_CONFIG : EX_TEMPFAIL;
}

/* allvarsd --migrate: one attempt, no waiting for the server: an operator
 * runs it by hand or from a deployment script, which must fail at once on a
 * permanent error rather than retry it. */
static int run_migrate(manager *m, const char *database) {
        char err[512];
        int r = database ? store_connect(database, NULL, &m->st, err, sizeof err)
                         : store_connect(m->cfg->db_conninfo, m->cfg->db_password, &m->st, err, sizeof err);
        if (r < 0)
                return migrate_failed("Cannot connect to PostgreSQL", err);
        r = store_migrate(m->st, m->schemas_dir, err, sizeof err);
        int status = 0;
        if (r < 0)
                status = migrate_failed("Migration failed", err);
        else
                log_notice("Database schema is current: %d migration(s) applied", r);
        store_free(m->st);
        m->st = NULL;
        clock_source_done(&m->clk);
        return status;
}

/* $RUNTIME_DIRECTORY (its first path), or where the unit puts it. */
static const char *runtime_dir(char *buf, size_t size) {
        const char *d = getenv("RUNTIME_DIRECTORY");
        if (!d || !*d)
                return RUNTIME_DIR_DEFAULT;
        snprintf(buf, size, "%.*s", (int)strcspn(d, ":"), d);
        return buf;
}

/* Under systemd (RUNTIME_DIRECTORY set): write the restart-only values for
 * --check-reload. Without it, a reload check refuses, the safe way round. */
static void restart_record_write(const config *cfg) {
        char dbuf[PATH_MAX], path[PATH_MAX + 64], tmp[PATH_MAX + 128];
        if (!getenv("RUNTIME_DIRECTORY"))
                return;
        const char *dir = runtime_dir(dbuf, sizeof dbuf);
        snprintf(path, sizeof path, "%s/" RESTART_RECORD, dir);
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = fopen(tmp, "we");
        if (!f) {
                log_warning_errno(-errno, "Cannot write %s (systemctl reload will refuse): %m", tmp);
                return;
        }
        fprintf(f, "# The restart-only values allvarsd (PID %d) started with; --check-reload compares.\n",
                (int)getpid());
        config_restart_write(cfg, f);
        if (fclose(f) != 0 || rename(tmp, path) < 0) {
                log_warning_errno(-errno, "Cannot write %s (systemctl reload will refuse): %m", path);
                unlink(tmp);
        }
}

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        if (!f)
                return NULL;
        char *text = NULL;
        size_t size = 0;
        ssize_t n = getdelim(&text, &size, 0, f);
        int e = errno;
        fclose(f);
        if (n < 0) {
                free(text);
                errno = n < 0 && e ? e : EIO;
                return NULL;
        }
        return text;
}

/* --check-reload, the unit's ExecReload= before the SIGHUP: the file parses,
 * and its restart-only values are those the running daemon started with.
 * "@credential:" values are not read: systemd 252 mounts an inaccessible
 * directory over /run/credentials for ExecReload= processes, and every secret
 * is restart-only anyway: the daemon reads them again itself on SIGHUP.
 * docs/design.md "systemd 252". */
static int check_reload(const char *config_path) {
        config *cfg = NULL;
        char err[512], dbuf[PATH_MAX], path[PATH_MAX + 64], keys[1024];
        int r = config_load_flags(config_path, CONFIG_NO_CREDENTIALS, &cfg, err, sizeof err);
        if (r < 0) {
                log_struct(LOG_ERR, MSGID_RELOADED, "MESSAGE=Reload refused: %s", err, NULL);
                return EX_CONFIG;
        }
        snprintf(path, sizeof path, "%s/" RESTART_RECORD, runtime_dir(dbuf, sizeof dbuf));
        char *running = read_text(path);
        if (!running) {
                log_struct(LOG_ERR, MSGID_RELOADED,
                           "MESSAGE=Reload refused: cannot read what the running daemon started with, %s: %s", path,
                           strerror(errno), NULL);
                config_free(cfg);
                return EX_NOINPUT;
        }
        r = config_restart_compare(cfg, running, keys, sizeof keys);
        free(running);
        if (r != 0) {
                if (r > 0)
                        log_struct(LOG_ERR, MSGID_RELOADED, "KEYS=%s", keys,
                                   "MESSAGE=Reload refused: these keys need a restart (systemctl restart allvarsd): %s",
                                   keys, NULL);
                config_free(cfg);
                return r > 0 ? EX_CONFIG : EX_OSERR;
        }
        printf("%s: OK for a reload; restart-only keys as the running daemon's; @credential: values not read "
               "(the daemon reads them on SIGHUP)\n",
               config_path);
        config_free(cfg);
        return 0;
}

int main(int argc, char **argv) {
        enum { OPT_CHECK = 256, OPT_CHECK_RELOAD, OPT_MIGRATE, OPT_SCHEMAS, OPT_VERSION, OPT_DATABASE };
        static const struct option options[] = {
                {"config", required_argument, NULL, 'c'},   {"check-config", no_argument, NULL, OPT_CHECK},
                {"check-reload", no_argument, NULL, OPT_CHECK_RELOAD},
                {"migrate", no_argument, NULL, OPT_MIGRATE}, {"schemas", required_argument, NULL, OPT_SCHEMAS},
                {"version", no_argument, NULL, OPT_VERSION}, {"help", no_argument, NULL, 'h'},
                {"database", required_argument, NULL, OPT_DATABASE}, {NULL, 0, NULL, 0},
        };
        manager m = {.config_path = CONFIG_DEFAULT_PATH, .schemas_dir = SCHEMAS_DIR, .sigfd = -1};
        bool check = false, check_reload_only = false, migrate = false;
        const char *database = NULL;
        int c;
        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c': m.config_path = optarg; break;
                case OPT_CHECK: check = true; break;
                case OPT_CHECK_RELOAD: check_reload_only = true; break;
                case OPT_MIGRATE: migrate = true; break;
                case OPT_SCHEMAS: m.schemas_dir = optarg; break;
                case OPT_DATABASE: database = optarg; break;
                case OPT_VERSION: printf("allvarsd %s\n", ALLVARSD_VERSION); return 0;
                case 'h': usage(stdout); return 0;
                default: usage(stderr); return EX_USAGE;
                }
        }
        if (optind < argc || (database && !migrate)) {
                usage(stderr);
                return EX_USAGE;
        }

        /* One malloc arena for all our threads: each batch lane, the relay and
         * the jobs would otherwise keep freed batch buffers in arenas of their
         * own (glibc makes up to 8 per core), which the benchmark saw as 15 MiB
         * more peak RSS; the threads allocate little besides. */
        mallopt(M_ARENA_MAX, 1);
        /* Referrals, the database password and the pepper live in this
         * process: no core dump, and no ptrace or /proc/PID/mem by another
         * process of the same user, whatever the unit sets. */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
                fprintf(stderr, "allvarsd: prctl(PR_SET_DUMPABLE): %m\n");
                return 1;
        }
        log_setup(LOG_TARGET_AUTO, LOG_INFO);
        int r = tz_init();
        if (r < 0) {
                log_error_errno(r, "Cannot load the Europe/Stockholm time zone (is tzdata installed?): %m");
                return EX_OSFILE;
        }
        if (check_reload_only)
                return check_reload(m.config_path);
        char err[512];
        r = config_load(m.config_path, &m.cfg, err, sizeof err);
        if (r < 0) {
                log_error("Configuration: %s", err);
                return EX_CONFIG;
        }
        log_setup(log_target_parse(m.cfg->log_target), log_level_parse(m.cfg->log_level));
        if (check) {
                r = config_check_deployment(m.cfg, err, sizeof err);
                if (r < 0) {
                        log_error("Configuration: %s", err);
                        config_free(m.cfg);
                        return EX_CONFIG;
                }
                config_dump(m.cfg, stdout);
                printf("# %s: OK\n", m.config_path);
                config_free(m.cfg);
                return 0;
        }
        r = clock_source_init(&m.clk, m.cfg->clock_file);
        if (r < 0) {
                log_error_errno(r, "clock.file: %m");
                config_free(m.cfg);
                return EX_CONFIG;
        }
        r = signals_setup(&m);
        if (r < 0) {
                log_error_errno(r, "signals: %m");
                return 1;
        }

        if (migrate) {
                int status = run_migrate(&m, database);
                config_free(m.cfg);
                if (m.sigfd >= 0)
                        close(m.sigfd);
                return status;
        } else {
                log_effective_config(m.cfg);
                restart_record_write(m.cfg);
                r = run(&m);
        }

        threads_stop(&m);
        metrics_http_stop(m.metrics);
        consumer_free(m.cons);
        relay_worker_free(m.rel_worker);
        relay_free(m.rel, DRAIN_FLUSH_TIMEOUT / 2);
        jobs_free(m.jobs);
        embedded_kafka_stop(&m);
        store_free(m.st);
        clock_source_done(&m.clk);
        config_free(m.cfg);
        if (m.sigfd >= 0)
                close(m.sigfd);
        /* A deployment error (a refused connection, grants, the schema): EX_CONFIG,
         * which systemd shows; waiting or restarting cannot fix it. */
        return r == -EACCES ? EX_CONFIG : r < 0 ? 1 : 0;
}
