/* Parallel batch transactions on several connections. See lanes.h. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lanes.h"

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

void lanes_run(lanes *l, lane_fn fn, void *const *args, int *rets) {
        pthread_mutex_lock(&l->lock);
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
        for (unsigned k = 1; k < l->n; k++) {
                while (l->v[k].busy)
                        pthread_cond_wait(&l->done, &l->lock);
                if (args[k])
                        rets[k] = l->v[k].ret;
        }
        pthread_mutex_unlock(&l->lock);
}

void lanes_error(const lanes *l, unsigned k, char *buf, size_t size) {
        /* Called after lanes_run returned: the lanes are idle, err is stable. */
        snprintf(buf, size, "%s", l && k < l->n ? l->v[k].err : "");
}
