/* Which outbox rows a relay pass reads, and producing them
 * (docs/design.md "The outbox relay", "Reading the outbox").
 *
 * Two kinds of pass:
 *  - the fast pass (relay_read_new) reads the rows above the highest id this
 *    relay has handled (`hi`: every row it produced or dead-lettered has an id
 *    at or below it) and looks up by id the few ids below hi it has not seen
 *    (the gaps). An index range scan from hi and point lookups: it never walks
 *    the rows in flight, nor the index entries of delivered rows that
 *    autovacuum has not yet removed, which the head of the primary key holds.
 *  - the sweep (relay_read) reads the oldest unsent rows from the head,
 *    leaving out those in flight or delivered and not yet marked sent. It runs
 *    at activation, every relay.poll_ms, and at the next pass after a failure;
 *    it is what guarantees that no committed row is left behind, whatever
 *    became of the gap list.
 *
 * Why gaps: the ids come from one sequence but commit in any order. A batch
 * transaction can take ids below another's and commit after it; when a pass
 * has read past them, they are gaps until they appear (looked up in every
 * fast pass) or expire (gap_ttl: an id that a rolled-back transaction or an
 * ON CONFLICT skip consumed never appears); a row that commits after its gap
 * expired is the sweep's. A row the pass read but did not produce (its key
 * held back after a failure) and a row whose delivery failed become gaps too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cleanup.h"
#include "relay_state.h"

/* Ids below hi not yet seen, at most this many, and this many more per pass
 * (more than two lanes' interleaved ids: old ids of rows delivered long ago,
 * which the sweep covers). */
#define GAPS_MAX 4096
#define GAPS_PER_PASS 1024

static usec_t gap_ttl(const relay *r) {
        return 2 * relay_poll_interval(r);
}

/* The position of id in the sorted gap list, or where it would go. */
static size_t gap_find(const relay *r, int64_t id) {
        size_t lo = 0, hi = r->n_gaps;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (r->gaps[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static void gap_add(relay *r, int64_t id, usec_t mono) {
        size_t at = gap_find(r, id);
        if (at < r->n_gaps && r->gaps[at].id == id) {
                r->gaps[at].since = mono;
                return;
        }
        if (r->n_gaps == GAPS_MAX)
                return; /* the sweep finds it */
        if (r->n_gaps == r->cap_gaps) {
                size_t cap = r->cap_gaps ? r->cap_gaps * 2 : 64;
                relay_gap *v = realloc(r->gaps, cap * sizeof *v);
                if (!v) {
                        r->sweep_due = true;
                        return;
                }
                r->gaps = v;
                r->cap_gaps = cap;
        }
        memmove(r->gaps + at + 1, r->gaps + at, (r->n_gaps - at) * sizeof *r->gaps);
        r->gaps[at] = (relay_gap){.id = id, .since = mono};
        r->n_gaps++;
}

static void gap_remove(relay *r, int64_t id) {
        size_t at = gap_find(r, id);
        if (at == r->n_gaps || r->gaps[at].id != id)
                return;
        memmove(r->gaps + at, r->gaps + at + 1, (r->n_gaps - at - 1) * sizeof *r->gaps);
        r->n_gaps--;
}

/* Drop the gaps past their time (the sweep takes over), and take in the rows
 * whose delivery failed since the last pass (relay_producer.c). */
static void gaps_update(relay *r, usec_t mono) {
        size_t kept = 0;
        for (size_t i = 0; i < r->n_gaps; i++)
                if (mono - r->gaps[i].since < gap_ttl(r))
                        r->gaps[kept++] = r->gaps[i];
        r->n_gaps = kept;
        for (size_t i = 0; i < r->n_retry; i++)
                gap_add(r, r->retry[i], mono);
        r->n_retry = 0;
}

/* The ids to leave out of a sweep (in flight, or delivered and not yet marked). */
static void excluded_ids(relay *r, pg_arr *ids) {
        for (flight_link *l = r->flights.next; l != &r->flights; l = l->next)
                pg_arr_int8(ids, ((flight *)l)->id);
        for (size_t i = 0; i < r->n_delivered; i++)
                pg_arr_int8(ids, r->delivered[i]);
        for (size_t i = 0; i < r->n_dead; i++)
                pg_arr_int8(ids, r->dead[i].id);
}

/* The keys held back: no row of theirs is read until the wait is over. */
static void held_keys(relay *r, usec_t mono, pg_arr *keys) {
        for (size_t i = 0; i < r->blocks.n; i++)
                if (r->blocks.v[i].until > mono)
                        pg_arr_text(keys, r->blocks.v[i].key);
}

/* Read a pass's rows: the sweep or the fast pass (see above). */
static PGresult *read_rows(relay *r, bool sweep, unsigned limit, usec_t mono) {
        _cleanup_(pg_arr_free) pg_arr ids = { 0 };
        _cleanup_(pg_arr_free) pg_arr keys = { 0 };
        pg_arr_reset(&ids, PG_OID_INT8);
        pg_arr_reset(&keys, PG_OID_TEXT);
        held_keys(r, mono, &keys);
        pg_params p = { 0 };
        if (sweep) {
                excluded_ids(r, &ids);
                if (pg_params_arr(&p, &ids) < 0 || pg_params_arr(&p, &keys) < 0)
                        return NULL;
                pg_params_int4(&p, (int32_t)limit);
                return exec_prepared(r, "relay_read", &p, 1);
        }
        for (size_t i = 0; i < r->n_gaps; i++)
                pg_arr_int8(&ids, r->gaps[i].id);
        pg_params_int8(&p, r->hi);
        if (pg_params_arr(&p, &ids) < 0 || pg_params_arr(&p, &keys) < 0)
                return NULL;
        pg_params_int4(&p, (int32_t)limit);
        return exec_prepared(r, "relay_read_new", &p, 1);
}

int relay_publish(relay *r, usec_t mono) {
        unsigned limit = relay_batch(r);
        uint64_t room = flights_max(r) - r->n_flights;
        if (room < limit)
                limit = (unsigned)room;
        gaps_update(r, mono);
        bool sweep = r->sweep_due || mono >= r->next_sweep;
        PGresult *res = read_rows(r, sweep, limit, mono);
        if (!res && r->pg_state == PG_READY)
                return -ENOMEM;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_failed(r, res, "reading the outbox");
        if (sweep) {
                r->sweep_due = false;
                r->next_sweep = mono + relay_poll_interval(r);
                r->fig.sweeps++;
        }

        /* Produce in id order; then every id in (hi, top] not produced is a gap. */
        int rows = PQntuples(res), ret = 0, fresh = 0;
        int64_t hi = r->hi, top = hi;
        _cleanup_free_ int64_t *done = rows > 0 ? malloc((size_t)rows * sizeof *done) : NULL;
        size_t n_done = 0;
        bool full = false;
        for (int i = 0; i < rows; i++) {
                int64_t id = be64(PQgetvalue(res, i, 0));
                if (id > hi)
                        fresh++;
                if (key_blocks_held(&r->blocks, PQgetvalue(res, i, 3), mono))
                        continue; /* an earlier row of this key failed in this pass */
                int k = produce_row(r, res, i);
                if (k == 1) {
                        full = true;
                        break;
                }
                if (k < 0) {
                        if (ret == 0)
                                ret = k;
                        continue;
                }
                if (id <= hi)
                        gap_remove(r, id);
                else {
                        if (done)
                                done[n_done++] = id;
                        top = id;
                }
        }
        PQclear(res);
        /* Ids passed over: not committed yet, never to be, or not produced. A
         * sweep's rows start at the oldest unsent one: nothing below it is
         * looked for (the next sweep is). */
        if (!done && top > hi)
                r->sweep_due = true; /* out of memory: no gaps noted, the sweep looks */
        else if (top > hi) {
                int64_t from = sweep && n_done > 0 && done[0] > hi ? done[0] : hi + 1;
                unsigned added = 0;
                size_t j = 0;
                for (int64_t id = from; id < top && added < GAPS_PER_PASS && r->n_gaps < GAPS_MAX; id++) {
                        while (j < n_done && done[j] < id)
                                j++;
                        if (j < n_done && done[j] == id)
                                continue;
                        gap_add(r, id, mono);
                        added++;
                }
        }
        r->hi = top;
        /* More may wait behind a full batch. */
        r->query_due = !full && (unsigned)(sweep ? rows : fresh) == limit && limit > 0;
        return ret;
}
