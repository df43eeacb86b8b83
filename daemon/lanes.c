/* Parallel batch transactions on several connections. See lanes.h. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "lanes.h"
#include "metrics.h"

typedef struct lane {
        struct lanes *owner;
        pthread_t thread;
        bool started;                   /* has a thread (every lane when there are two or more) */
        store *st;                      /* lane 0: the caller's; else owned, NULL until connected */
        /* work, guarded by owner->lock */
        lane_fn fn;
        void *arg;
        bool busy;                      /* given work that has not returned yet */
        bool given;                     /* given work (lanes_give) whose result is not taken yet */
        int ret;
        /* turns (lanes_publish), guarded by owner->lock; reset with each piece of work */
        bool in_run;                    /* given work in this run */
        bool published;                 /* its keys are in keys[] */
        uint64_t seq;                   /* when it published: an older transaction's is lower */
        bool finished;                  /* its work has returned */
        usec_t finished_at;             /* when (monotonic), for the run's wait (lane_step LS_RUN_WAIT) */
        uint8_t (*keys)[LANE_KEY_LEN];  /* sorted, distinct */
        size_t n_keys, cap_keys;
        char err[256];                  /* why the last run failed */
} lane;

struct lanes {
        char *conninfo, *password;
        pthread_mutex_t lock;
        pthread_cond_t work;            /* a lane got work, or stop */
        pthread_cond_t done;            /* a lane finished its work, or published */
        bool stop;
        unsigned n;
        lane *v;
        usec_t run_started;             /* lanes_start's time (monotonic), guarded by lock */
        uint64_t last_seq;              /* the last publication's seq, guarded by lock */
        int notify_fd;                  /* written to when a lane finishes; -1: none */
};

static int lane_connect(lane *ln) {
        if (ln->st && store_connected(ln->st))
                return 0;
        if (ln->st)
                return store_reconnect(ln->st, ln->err, sizeof ln->err);
        return store_connect(ln->owner->conninfo, ln->owner->password, &ln->st, ln->err, sizeof ln->err);
}

/* On the lane's thread, after fn failed on a connected store. */
static void lane_note_error(lane *ln, int r) {
        if (r < 0 && ln->st)
                snprintf(ln->err, sizeof ln->err, "%s", store_last_error(ln->st));
}

/* A lane's work has returned r (l->lock held). */
static void lane_finish(lanes *l, lane *ln, int r) {
        ln->ret = r;
        ln->fn = NULL;
        ln->busy = false;
        ln->finished = true;
        ln->finished_at = clock_monotonic();
        pthread_cond_broadcast(&l->done);
        if (l->notify_fd >= 0) {
                /* A full pipe has a wake-up in it already. */
                ssize_t w = write(l->notify_fd, "L", 1);
                (void)w;
        }
}

static void *lane_main(void *arg) {
        lane *ln = arg;
        lanes *l = ln->owner;
        pthread_mutex_lock(&l->lock);
        for (;;) {
                while (!l->stop && !ln->fn)
                        pthread_cond_wait(&l->work, &l->lock);
                if (l->stop)
                        break;
                lane_fn fn = ln->fn;
                void *a = ln->arg;
                pthread_mutex_unlock(&l->lock);

                ln->err[0] = 0;
                /* Lane 0's store is the caller's, which connects it itself (with
                 * its backoff): a lost session fails the work instead. */
                int r = ln == &l->v[0] ? 0 : lane_connect(ln);
                if (r >= 0) {
                        r = fn(ln->st, a);
                        lane_note_error(ln, r);
                }

                pthread_mutex_lock(&l->lock);
                lane_finish(l, ln, r);
        }
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

int lanes_new(const config *cfg, store *first, unsigned n, lanes **ret) {
        if (n < 1)
                n = 1;
        lanes *l = calloc(1, sizeof *l);
        if (!l)
                return -ENOMEM;
        /* First, so that lanes_free may be called from here on. */
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->work, NULL);
        pthread_cond_init(&l->done, NULL);
        l->notify_fd = -1;
        l->v = calloc(n, sizeof *l->v);
        l->conninfo = strdup(cfg->db_conninfo ? cfg->db_conninfo : "");
        l->password = cfg->db_password ? strdup(cfg->db_password) : NULL;
        if (!l->v || !l->conninfo || (cfg->db_password && !l->password)) {
                lanes_free(l);
                return -ENOMEM;
        }
        l->n = n;
        for (unsigned k = 0; k < n; k++)
                l->v[k].owner = l;
        l->v[0].st = first;
        /* A thread for every lane when there are two or more, lane 0 too: the
         * caller hands out work and goes on gathering the next. One lane
         * alone runs on the caller's thread. */
        for (unsigned k = n > 1 ? 0 : 1; k < n; k++) {
                int r = pthread_create(&l->v[k].thread, NULL, lane_main, &l->v[k]);
                if (r != 0) {
                        lanes_free(l);
                        return -r;
                }
                l->v[k].started = true;
                char name[16];
                snprintf(name, sizeof name, "allvarsd-lane%u", k % 100);
                pthread_setname_np(l->v[k].thread, name);
        }
        *ret = l;
        return 0;
}

void lanes_free(lanes *l) {
        if (!l)
                return;
        pthread_mutex_lock(&l->lock);
        l->stop = true;
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->lock);
        for (unsigned k = 0; l->v && k < l->n; k++) {
                if (l->v[k].started)
                        pthread_join(l->v[k].thread, NULL);
                if (k > 0)
                        store_free(l->v[k].st);
        }
        for (unsigned k = 0; l->v && k < l->n; k++)
                free(l->v[k].keys);
        pthread_cond_destroy(&l->work);
        pthread_cond_destroy(&l->done);
        pthread_mutex_destroy(&l->lock);
        if (l->password)
                explicit_bzero(l->password, strlen(l->password));
        free(l->password);
        free(l->conninfo);
        free(l->v);
        free(l);
}

unsigned lanes_count(const lanes *l) {
        return l ? l->n : 1;
}

void lanes_notify(lanes *l, int fd) {
        pthread_mutex_lock(&l->lock);
        l->notify_fd = fd;
        pthread_mutex_unlock(&l->lock);
}

/* A new piece of work for lane k (l->lock held): its turn state reset. */
static void lane_reset(lane *ln, bool in_run) {
        ln->in_run = in_run;
        ln->published = false;
        ln->seq = 0;
        ln->finished = !in_run;
        ln->finished_at = 0;
        ln->n_keys = 0;
}

void lanes_start(lanes *l, lane_fn fn, void *const *args, int *rets) {
        pthread_mutex_lock(&l->lock);
        l->run_started = clock_monotonic();
        for (unsigned k = 0; k < l->n; k++) {
                lane *ln = &l->v[k];
                lane_reset(ln, args[k] != NULL);
                rets[k] = 0;
                if (args[k] && ln->started) {
                        ln->fn = fn;
                        ln->arg = args[k];
                        ln->busy = true;
                }
        }
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->lock);
        if (l->v[0].started || !args[0])
                return;

        /* One lane alone: here, now. */
        l->v[0].err[0] = 0;
        rets[0] = fn(l->v[0].st, args[0]);
        lane_note_error(&l->v[0], rets[0]);
        pthread_mutex_lock(&l->lock);
        lane_finish(l, &l->v[0], rets[0]);
        pthread_mutex_unlock(&l->lock);
}

/* The time each lane's connection waited in the run for the run's last lane
 * to finish: from its own finish, or for a lane without work from the run's
 * start (metrics.h LS_RUN_WAIT). Called with l->lock held, every lane done. */
static void count_run_wait(lanes *l) {
        usec_t last = l->run_started;
        for (unsigned k = 0; k < l->n; k++)
                if (l->v[k].in_run && l->v[k].finished_at > last)
                        last = l->v[k].finished_at;
        for (unsigned k = 0; k < l->n; k++) {
                usec_t since = l->v[k].in_run ? l->v[k].finished_at : l->run_started;
                if (since > 0 && since < last)
                        metrics_add(M_LANE_SECONDS, LS_RUN_WAIT, (uint64_t)(last - since));
        }
}

void lanes_wait(lanes *l, void *const *args, int *rets) {
        pthread_mutex_lock(&l->lock);
        for (unsigned k = 0; k < l->n; k++) {
                if (!l->v[k].started)
                        continue;
                while (l->v[k].busy)
                        pthread_cond_wait(&l->done, &l->lock);
                if (args[k])
                        rets[k] = l->v[k].ret;
        }
        if (l->n > 1)
                count_run_wait(l);
        pthread_mutex_unlock(&l->lock);
}

void lanes_run(lanes *l, lane_fn fn, void *const *args, int *rets) {
        lanes_start(l, fn, args, rets);
        lanes_wait(l, args, rets);
}

void lanes_give(lanes *l, unsigned k, lane_fn fn, void *arg) {
        lane *ln = &l->v[k];
        pthread_mutex_lock(&l->lock);
        lane_reset(ln, true);
        ln->given = true;
        if (ln->started) {
                ln->fn = fn;
                ln->arg = arg;
                ln->busy = true;
                pthread_cond_broadcast(&l->work);
                pthread_mutex_unlock(&l->lock);
                return;
        }
        pthread_mutex_unlock(&l->lock);
        /* One lane alone: here, now. */
        ln->err[0] = 0;
        int r = fn(ln->st, arg);
        lane_note_error(ln, r);
        pthread_mutex_lock(&l->lock);
        lane_finish(l, ln, r);
        pthread_mutex_unlock(&l->lock);
}

bool lanes_done(lanes *l, unsigned k) {
        pthread_mutex_lock(&l->lock);
        bool done = !l->v[k].busy;
        pthread_mutex_unlock(&l->lock);
        return done;
}

int lanes_take(lanes *l, unsigned k) {
        lane *ln = &l->v[k];
        pthread_mutex_lock(&l->lock);
        while (ln->busy)
                pthread_cond_wait(&l->done, &l->lock);
        int r = ln->given ? ln->ret : 0;
        ln->given = false;
        pthread_mutex_unlock(&l->lock);
        return r;
}

void lanes_error(const lanes *l, unsigned k, char *buf, size_t size) {
        /* Called once the lane's result was taken: the lane is idle, err is stable. */
        snprintf(buf, size, "%s", l && k < l->n ? l->v[k].err : "");
}

/* ---- turns ---- */

static int key_cmp(const void *a, const void *b) {
        return memcmp(a, b, LANE_KEY_LEN);
}

static struct timespec deadline_in(usec_t timeout) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += (time_t)(timeout / USEC_PER_SEC);
        ts.tv_nsec += (long)(timeout % USEC_PER_SEC) * 1000;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

/* Wait on l->done (locked) until the deadline: -EAGAIN once it has passed.
 * Turns are bounded on the monotonic clock, named at the wait (glibc 2.30):
 * a step of the wall clock does not move the bound. Not a condition variable
 * set to CLOCK_MONOTONIC with pthread_condattr_setclock and waited on with
 * pthread_cond_timedwait: libfaketime, which the clock-step fault scenario
 * preloads, rewrites that call and turns every such wait into an immediate
 * timeout (docs/design.md "Effectively once"). */
static int wait_done(lanes *l, const struct timespec *deadline) {
        return pthread_cond_clockwait(&l->done, &l->lock, CLOCK_MONOTONIC, deadline) == ETIMEDOUT ? -EAGAIN : 0;
}

int lanes_publish(lanes *l, unsigned k, const uint8_t (*keys)[LANE_KEY_LEN], size_t n) {
        if (!l || l->n < 2)
                return 0;
        lane *ln = &l->v[k];
        pthread_mutex_lock(&l->lock);
        if (ln->published) {
                /* A retry of the same transaction keeps its place. */
                pthread_mutex_unlock(&l->lock);
                return 0;
        }
        if (n > ln->cap_keys) {
                void *v = realloc(ln->keys, n * LANE_KEY_LEN);
                if (!v) {
                        pthread_mutex_unlock(&l->lock);
                        return -ENOMEM;
                }
                ln->keys = v;
                ln->cap_keys = n;
        }
        if (n > 0) {
                memcpy(ln->keys, keys, n * LANE_KEY_LEN);
                qsort(ln->keys, n, LANE_KEY_LEN, key_cmp);
        }
        size_t u = 0;
        for (size_t i = 0; i < n; i++)
                if (u == 0 || memcmp(ln->keys[u - 1], ln->keys[i], LANE_KEY_LEN) != 0)
                        memmove(ln->keys[u++], ln->keys[i], LANE_KEY_LEN);
        ln->n_keys = u;
        ln->published = true;
        ln->seq = ++l->last_seq;
        pthread_mutex_unlock(&l->lock);
        return 0;
}

/* Whether lane j holds a transaction older than lane k's that is still
 * running (l->lock held). */
static bool older_running(const lanes *l, unsigned j, unsigned k) {
        const lane *a = &l->v[j], *b = &l->v[k];
        return j != k && a->published && !a->finished && b->published && a->seq < b->seq;
}

bool lanes_taken_before(lanes *l, unsigned k, const uint8_t key[LANE_KEY_LEN]) {
        if (!l || l->n < 2)
                return false;
        bool taken = false;
        pthread_mutex_lock(&l->lock);
        for (unsigned j = 0; j < l->n && !taken; j++)
                taken = older_running(l, j, k) && l->v[j].n_keys > 0 &&
                        bsearch(key, l->v[j].keys, l->v[j].n_keys, LANE_KEY_LEN, key_cmp) != NULL;
        pthread_mutex_unlock(&l->lock);
        return taken;
}

int lanes_wait_before(lanes *l, unsigned k, usec_t timeout) {
        if (!l || l->n < 2)
                return 0;
        struct timespec until = deadline_in(timeout);
        int r = 0;
        pthread_mutex_lock(&l->lock);
        for (unsigned j = 0; j < l->n && r == 0; j++)
                while (r == 0 && older_running(l, j, k))
                        r = wait_done(l, &until);
        pthread_mutex_unlock(&l->lock);
        return r;
}
