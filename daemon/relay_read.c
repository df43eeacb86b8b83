/* Which outbox rows a relay pass reads, and producing them
 * (docs/design.md "Reading the outbox").
 *
 * Two kinds of pass:
 *  - the fast pass (relay_read_new) reads the rows above the highest id this
 *    relay has handled (`hi`: every row it produced or dead-lettered has an id
 *    at or below it) and looks up by id the few ids below hi it has not seen
 *    (the gaps; once every relay.poll_ms also the late ids, below). An index
 *    range scan from hi and point lookups: it never walks the rows in flight,
 *    nor the index entries of delivered rows that autovacuum has not yet
 *    removed, which the head of the primary key holds.
 *  - the sweep (relay_read) reads the oldest unsent rows from the head,
 *    leaving out those in flight or delivered and not yet marked sent. It runs
 *    at activation, every SWEEP_POLLS relay.poll_ms, at the next pass after a
 *    failure, and within one relay.poll_ms of a pass that could not note all
 *    its gaps; it is what guarantees that no committed row is left behind,
 *    whatever became of the gap lists. It costs what the fast pass avoids: over
 *    a replay the head holds up to a million dead entries, and a sweep took
 *    7-35 ms of the server's time (bench/README.md "The relay's sweep").
 *
 * Why gaps: the ids come from one sequence but commit in any order. A batch
 * transaction can take ids below another's and commit after it; when a pass
 * has read past them, they are gaps until they appear (looked up in every
 * fast pass) or expire (gap_ttl: an id that a rolled-back transaction or an
 * ON CONFLICT skip consumed never appears). An expired gap is a late id for
 * late_ttl more, looked up once every relay.poll_ms; a row that commits after
 * that is the sweep's, which runs at least once every late_ttl. A row the pass
 * read but did not produce (its key held back after a failure) and a row
 * whose delivery failed become gaps too.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cleanup.h"
#include "relay_state.h"

/* Ids below hi not yet seen, at most this many, and this many more per pass
 * (more than two lanes' interleaved ids, a transaction's outbox rows each:
 * 1,134 in a replay's; not the old ids of rows delivered long ago below a
 * sweep's first row, which the sweep covers). A pass that cannot note all the
 * ids it passed over brings the sweep forward (sweep_soon). Late ids: as many. */
#define GAPS_MAX 4096
#define GAPS_PER_PASS 4096
#define LATE_MAX 4096
/* The sweep runs at least once every this many relay.poll_ms. */
#define SWEEP_POLLS 20

static usec_t gap_ttl(const relay *r) {
        return 2 * relay_poll_interval(r);
}

static usec_t late_ttl(const relay *r) {
        return SWEEP_POLLS * relay_poll_interval(r);
}

/* Ids may have been passed over without a note: the sweep within one
 * relay.poll_ms, as when every poll was one. */
static void sweep_soon(relay *r, usec_t mono) {
        usec_t at = mono + relay_poll_interval(r);
        if (r->next_sweep > at)
                r->next_sweep = at;
}

/* The position of id in a sorted gap list, or where it would go. */
static size_t gap_find(const relay_gaps *g, int64_t id) {
        size_t lo = 0, hi = g->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (g->v[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Note id (since mono); false when it could not be noted (the list is full,
 * or out of memory). */
static bool gap_add(relay_gaps *g, int64_t id, usec_t mono, size_t max) {
        size_t at = gap_find(g, id);
        if (at < g->n && g->v[at].id == id) {
                g->v[at].since = mono;
                return true;
        }
        if (g->n == max)
                return false;
        if (g->n == g->cap) {
                size_t cap = g->cap ? g->cap * 2 : 64;
                relay_gap *v = realloc(g->v, cap * sizeof *v);
                if (!v)
                        return false;
                g->v = v;
                g->cap = cap;
        }
        memmove(g->v + at + 1, g->v + at, (g->n - at) * sizeof *g->v);
        g->v[at] = (relay_gap){.id = id, .since = mono};
        g->n++;
        return true;
}

static void gap_remove(relay_gaps *g, int64_t id) {
        size_t at = gap_find(g, id);
        if (at == g->n || g->v[at].id != id)
                return;
        memmove(g->v + at, g->v + at + 1, (g->n - at - 1) * sizeof *g->v);
        g->n--;
}

/* Gaps past their time become late ids, late ids past theirs are dropped (the
 * sweep takes over), and the rows whose delivery failed since the last pass
 * (relay_producer.c) become gaps. */
static void gaps_update(relay *r, usec_t mono) {
        size_t kept = 0;
        for (size_t i = 0; i < r->late.n; i++)
                if (mono - r->late.v[i].since < late_ttl(r))
                        r->late.v[kept++] = r->late.v[i];
        r->late.n = kept;
        kept = 0;
        for (size_t i = 0; i < r->gaps.n; i++) {
                if (mono - r->gaps.v[i].since < gap_ttl(r))
                        r->gaps.v[kept++] = r->gaps.v[i];
                else if (!gap_add(&r->late, r->gaps.v[i].id, mono, LATE_MAX))
                        sweep_soon(r, mono);
        }
        r->gaps.n = kept;
        for (size_t i = 0; i < r->n_retry; i++)
                if (!gap_add(&r->gaps, r->retry[i], mono, GAPS_MAX))
                        sweep_soon(r, mono);
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
static PGresult *read_rows(relay *r, bool sweep, bool late, unsigned limit, usec_t mono) {
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
        for (size_t i = 0; i < r->gaps.n; i++)
                pg_arr_int8(&ids, r->gaps.v[i].id);
        for (size_t i = 0; late && i < r->late.n; i++)
                pg_arr_int8(&ids, r->late.v[i].id);
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
        bool late = !sweep && r->late.n > 0 && mono >= r->next_late;
        PGresult *res = read_rows(r, sweep, late, limit, mono);
        if (!res && r->pg_state == PG_READY)
                return -ENOMEM;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
                return pg_failed(r, res, "reading the outbox");
        if (sweep) {
                r->sweep_due = false;
                r->next_sweep = mono + late_ttl(r);
                r->fig.sweeps++;
        }
        if (sweep || late)
                r->next_late = mono + relay_poll_interval(r);

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
                if (id <= hi) {
                        gap_remove(&r->gaps, id);
                        gap_remove(&r->late, id);
                }
                else {
                        if (done)
                                done[n_done++] = id;
                        top = id;
                }
        }
        PQclear(res);
        /* Ids passed over: not committed yet, never to be, or not produced;
         * below a sweep's first row too (a transaction still open may hold
         * it). */
        if (!done && top > hi)
                r->sweep_due = true; /* out of memory: no gaps noted, the sweep looks */
        else if (top > hi) {
                int64_t from = hi + 1;
                /* The ids nearest below top when there are more (the first
                 * pass after activation starts at 0): a transaction still open
                 * took them lately; older ones are the sweep's. */
                if (top - from > GAPS_PER_PASS) {
                        from = top - GAPS_PER_PASS;
                        sweep_soon(r, mono);
                }
                size_t j = 0;
                for (int64_t id = from; id < top; id++) {
                        while (j < n_done && done[j] < id)
                                j++;
                        if (j < n_done && done[j] == id)
                                continue;
                        if (!gap_add(&r->gaps, id, mono, GAPS_MAX)) {
                                sweep_soon(r, mono);
                                break;
                        }
                }
        }
        r->hi = top;
        /* More may wait behind a full batch. */
        r->query_due = !full && (unsigned)(sweep ? rows : fresh) == limit && limit > 0;
        return ret;
}
