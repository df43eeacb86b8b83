/* A batch stored by the module of its input, with its retries (batch.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "batch.h"
#include "outcome_batch.h"
#include "referral_batch.h"

#define EAGAIN_RETRIES 5

static int store_once(store *s, const config *cfg, const char *group, usec_t now, bool outcomes,
                      store_message *msgs, size_t n, const store_offset *offsets, size_t n_offsets,
                      const lane_turn *turn, store_batch_result *ret) {
        for (int attempt = 0;; attempt++) {
                int r = outcomes ? outcome_batch_store(s, cfg, group, now, msgs, n, offsets, n_offsets, ret)
                                 : referral_batch_store(s, cfg, group, now, msgs, n, offsets, n_offsets, turn, ret);
                if (r != -EAGAIN || attempt >= EAGAIN_RETRIES)
                        return r;
                for (size_t i = 0; i < n; i++)
                        msgs[i].status = STORE_PENDING;
        }
}

/* Each decoded message alone: those PostgreSQL refuses become dead letters.
 * The number found, or a negative errno when a trial failed otherwise. */
static int find_refused(store *s, const config *cfg, const char *group, usec_t now, bool outcomes,
                        store_message *msgs, size_t n) {
        int found = 0;
        for (size_t i = 0; i < n; i++) {
                store_message *m = &msgs[i];
                if (!(outcomes ? (const void *)m->case_outcome : (const void *)m->referral))
                        continue;
                int r = outcomes ? outcome_batch_try(s, cfg, group, now, m) : referral_batch_try(s, cfg, group, now, m);
                m->status = STORE_PENDING;
                if (r == 0)
                        continue;
                if (r != -EBADMSG)
                        return r;
                const pg_session *ps = store_session(s);
                m->rejection = (codec_error){ .reason = DLR_INVALID_FIELD };
                snprintf(m->rejection.detail, sizeof m->rejection.detail,
                         "refused by PostgreSQL: SQLSTATE %s in %s", ps->sqlstate, ps->failed);
                m->error = &m->rejection;
                m->referral = NULL;
                m->case_outcome = NULL;
                found++;
        }
        return found;
}

int batch_store(store *s, const config *cfg, const char *group, usec_t now, bool outcomes, store_message *msgs,
                size_t n, const store_offset *offsets, size_t n_offsets, const lane_turn *turn,
                store_batch_result *ret) {
        int r = store_once(s, cfg, group, now, outcomes, msgs, n, offsets, n_offsets, turn, ret);
        if (r != -EBADMSG)
                return r;
        char first[PG_ERROR_MAX];
        snprintf(first, sizeof first, "%s", store_last_error(s));
        int found = find_refused(s, cfg, group, now, outcomes, msgs, n);
        if (found < 0)
                return found;
        if (found == 0) {
                /* Refused together, not alone: no message to blame. Keep the first error. */
                pg_fail(store_session(s), -EIO, "%s", first);
                return -EIO;
        }
        return store_once(s, cfg, group, now, outcomes, msgs, n, offsets, n_offsets, turn, ret);
}
