/* The outbox relay on its own thread. See relay_worker.h. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "relay_worker.h"

#define ERROR_PAUSE (100 * 1000)

struct relay_worker {
        relay *rel;
        pthread_mutex_t lock;           /* guards fig */
        relay_figures fig;
};

int relay_worker_new(relay *rel, relay_worker **ret) {
        relay_worker *rw = calloc(1, sizeof *rw);
        if (!rw)
                return -ENOMEM;
        rw->rel = rel;
        pthread_mutex_init(&rw->lock, NULL);
        relay_figures_read(rel, &rw->fig);
        *ret = rw;
        return 0;
}

void relay_worker_free(relay_worker *rw) {
        if (!rw)
                return;
        pthread_mutex_destroy(&rw->lock);
        free(rw);
}

void relay_worker_figures(relay_worker *rw, relay_figures *ret) {
        pthread_mutex_lock(&rw->lock);
        *ret = rw->fig;
        pthread_mutex_unlock(&rw->lock);
}

static usec_t relay_worker_step(void *userdata, const config *cfg, struct pollfd *fds, size_t *ret_n) {
        relay_worker *rw = userdata;
        /* Errors are the relay's to report (figures, log); it retries on the next step. */
        int r = relay_step(rw->rel, 0);
        relay_figures f;
        relay_figures_read(rw->rel, &f);
        pthread_mutex_lock(&rw->lock);
        rw->fig = f;
        pthread_mutex_unlock(&rw->lock);

        size_t n = 0;
        int fd = relay_fd(rw->rel);
        if (fd >= 0)
                fds[n++] = (struct pollfd){.fd = fd, .events = relay_fd_events(rw->rel)};
        fd = relay_producer_fd(rw->rel);
        if (fd >= 0)
                fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
        *ret_n = n;
        /* The relay's own schedule (a full read means more rows wait: at once),
         * bounded by relay.poll_ms in case a wake-up is missed. */
        usec_t mono = clock_monotonic();
        usec_t due = relay_next_due(rw->rel);
        if (r < 0 && due < mono + ERROR_PAUSE)
                due = mono + ERROR_PAUSE;       /* no busy loop on a failing step */
        usec_t cap = mono + (usec_t)(cfg->relay_poll_ms ? cfg->relay_poll_ms : 500) * 1000;
        return due < cap ? due : cap;
}

static void relay_worker_reconfigure(void *userdata, const config *cfg) {
        relay_worker *rw = userdata;
        relay_reconfigure(rw->rel, cfg);
}

worker_job relay_worker_job(relay_worker *rw) {
        return (worker_job){.name = "allvarsd-relay",
                            .userdata = rw,
                            .step = relay_worker_step,
                            .reconfigure = relay_worker_reconfigure};
}
