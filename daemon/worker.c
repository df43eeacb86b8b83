/* A thread that runs one job of the daemon. See worker.h. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "worker.h"

struct worker {
        worker_job job;
        pthread_t thread;
        int wake_fd;                    /* eventfd: stop or a new configuration */

        pthread_mutex_t lock;           /* guards stop and next_cfg */
        bool stop;
        config *next_cfg;               /* handed over, not yet applied (a reference) */

        config *cfg;                    /* the thread's own reference */
        _Atomic usec_t step_started;    /* monotonic, while a step runs; 0 between steps */
};

static void worker_wake(worker *w) {
        uint64_t one = 1;
        /* EAGAIN means the counter is already non-zero: the thread wakes anyway. */
        (void)!write(w->wake_fd, &one, sizeof one);
}

static void *worker_main(void *arg) {
        worker *w = arg;
        for (;;) {
                pthread_mutex_lock(&w->lock);
                bool stop = w->stop;
                config *n = w->next_cfg;
                w->next_cfg = NULL;
                pthread_mutex_unlock(&w->lock);
                if (n) {
                        if (w->job.reconfigure)
                                w->job.reconfigure(w->job.userdata, n);
                        config_free(w->cfg);
                        w->cfg = n;
                }
                if (stop)
                        break;

                struct pollfd fds[WORKER_MAX_FDS + 1];
                size_t n_fds = 0;
                w->step_started = clock_monotonic();
                usec_t next = w->job.step(w->job.userdata, w->cfg, fds + 1, &n_fds);
                w->step_started = 0;
                if (n_fds > WORKER_MAX_FDS)
                        n_fds = WORKER_MAX_FDS;
                fds[0] = (struct pollfd){.fd = w->wake_fd, .events = POLLIN};
                usec_t now = clock_monotonic();
                int timeout = next <= now ? 0 : (int)((next - now + 999) / 1000);
                if (poll(fds, n_fds + 1, timeout) > 0 && fds[0].revents) {
                        uint64_t v;
                        (void)!read(w->wake_fd, &v, sizeof v);
                }
        }
        return NULL;
}

usec_t worker_step_started(const worker *w) {
        return w ? w->step_started : 0;
}

int worker_start(const worker_job *job, config *cfg, worker **ret) {
        worker *w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->job = *job;
        w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->wake_fd < 0) {
                int r = -errno;
                free(w);
                return r;
        }
        pthread_mutex_init(&w->lock, NULL);
        w->cfg = config_ref(cfg);
        int r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r != 0) {
                config_free(w->cfg);
                pthread_mutex_destroy(&w->lock);
                close(w->wake_fd);
                free(w);
                return -r;
        }
        if (job->name)
                pthread_setname_np(w->thread, job->name);
        *ret = w;
        return 0;
}

void worker_reconfigure(worker *w, config *cfg) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        config *old = w->next_cfg;      /* two reloads before the thread woke: skip the first */
        w->next_cfg = config_ref(cfg);
        pthread_mutex_unlock(&w->lock);
        config_free(old);
        worker_wake(w);
}

void worker_request_stop(worker *w) {
        if (!w)
                return;
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_mutex_unlock(&w->lock);
        worker_wake(w);
}

void worker_stop(worker *w) {
        if (!w)
                return;
        worker_request_stop(w);
        pthread_join(w->thread, NULL);
        config_free(w->next_cfg);
        config_free(w->cfg);
        pthread_mutex_destroy(&w->lock);
        close(w->wake_fd);
        free(w);
}
