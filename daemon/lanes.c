/* Parallel batch transactions on several connections. See lanes.h. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "lanes.h"
#include "metrics.h"

typedef struct lane {
        struct lanes *owner;
        pthread_t thread;
        bool started;
        store *st;                      /* lane 0: the caller's; else owned, NULL until connected */
        /* work, guarded by owner->lock */
        lane_fn fn;
        void *arg;
        bool busy;
        int ret;
        /* turns (lanes_publish), guarded by owner->lock; reset by lanes_run */
        bool in_run;                    /* given work in this run */
        bool published;                 /* its keys are in keys[] */
        bool finished;                  /* its work of this run has returned */
        usec_t finished_at;             /* when (monotonic), for the run's wait (lane_step LS_RUN_WAIT) */
        uint8_t (*keys)[LANE_KEY_LEN];  /* sorted, distinct */
        size_t n_keys, cap_keys;
        char err[256];                  /* why the last run failed */
} lane;

struct lanes {
        char *conninfo, *password;
        pthread_mutex_t lock;
        pthread_cond_t work;            /* a lane got work, or stop */
        pthread_cond_t done;            /* a lane finished its work */
        bool stop;
        unsigned n;
        lane *v;
        usec_t run_started;             /* lanes_start's time (monotonic), guarded by lock */
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
                int r = lane_connect(ln);
                if (r >= 0) {
                        r = fn(ln->st, a);
                        lane_note_error(ln, r);
                }

                pthread_mutex_lock(&l->lock);
                ln->ret = r;
                ln->fn = NULL;
                ln->busy = false;
                ln->finished = true;
                ln->finished_at = clock_monotonic();
                pthread_cond_broadcast(&l->done);
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
        for (unsigned k = 1; k < n; k++) {
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
        for (unsigned k = 1; l->v && k < l->n; k++) {
                if (l->v[k].started)
                        pthread_join(l->v[k].thread, NULL);
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

void lanes_start(lanes *l, lane_fn fn, void *const *args, int *rets) {
        pthread_mutex_lock(&l->lock);
        l->run_started = clock_monotonic();
        for (unsigned k = 0; k < l->n; k++) {
                lane *ln = &l->v[k];
                ln->in_run = args[k] != NULL;
                ln->published = false;
                ln->finished = !ln->in_run;
                ln->finished_at = 0;
                ln->n_keys = 0;
        }
        for (unsigned k = 1; k < l->n; k++) {
                rets[k] = 0;
                if (args[k]) {
                        l->v[k].fn = fn;
                        l->v[k].arg = args[k];
                        l->v[k].busy = true;
                }
        }
        pthread_cond_broadcast(&l->work);
        pthread_mutex_unlock(&l->lock);

        l->v[0].err[0] = 0;
        rets[0] = args[0] ? fn(l->v[0].st, args[0]) : 0;
        lane_note_error(&l->v[0], rets[0]);

        pthread_mutex_lock(&l->lock);
        l->v[0].finished = true;
        l->v[0].finished_at = clock_monotonic();
        pthread_cond_broadcast(&l->done);
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
        for (unsigned k = 1; k < l->n; k++) {
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

void lanes_error(const lanes *l, unsigned k, char *buf, size_t size) {
        /* Called after lanes_wait returned: the lanes are idle, err is stable. */
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

int lanes_publish(lanes *l, unsigned k, const uint8_t (*keys)[LANE_KEY_LEN], size_t n, usec_t timeout) {
        if (!l || l->n < 2)
                return 0;
        lane *ln = &l->v[k];
        pthread_mutex_lock(&l->lock);
        if (!ln->published) {
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
                pthread_cond_broadcast(&l->done);
        }
        struct timespec until = deadline_in(timeout);
        int r = 0;
        for (unsigned j = 0; j < l->n && r == 0; j++)
                while (r == 0 && l->v[j].in_run && !l->v[j].published && !l->v[j].finished)
                        r = wait_done(l, &until);
        pthread_mutex_unlock(&l->lock);
        return r;
}

bool lanes_taken_below(lanes *l, unsigned k, const uint8_t key[LANE_KEY_LEN]) {
        if (!l || l->n < 2)
                return false;
        bool taken = false;
        pthread_mutex_lock(&l->lock);
        for (unsigned j = 0; j < k && !taken; j++)
                taken = l->v[j].published && l->v[j].n_keys > 0 &&
                        bsearch(key, l->v[j].keys, l->v[j].n_keys, LANE_KEY_LEN, key_cmp) != NULL;
        pthread_mutex_unlock(&l->lock);
        return taken;
}

int lanes_wait_below(lanes *l, unsigned k, usec_t timeout) {
        if (!l || l->n < 2)
                return 0;
        struct timespec until = deadline_in(timeout);
        int r = 0;
        pthread_mutex_lock(&l->lock);
        for (unsigned j = 0; j < k && r == 0; j++)
                while (r == 0 && !l->v[j].finished)
                        r = wait_done(l, &until);
        pthread_mutex_unlock(&l->lock);
        return r;
}
