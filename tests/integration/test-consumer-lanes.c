/* How a batch is split over the lanes (daemon/consumer_batch.c
 * consumer_lanes_for): batch.connections = 2, the referral topic in four
 * partitions, the consumer in this process against librdkafka's mock cluster
 * and a real PostgreSQL server. Which transaction stored a referral is its
 * row's xmin.
 *
 *  - a small batch (fewer than two lanes' worth, LANE_MIN_MESSAGES each) is one
 *    transaction, whatever its partitions: a lane's transaction costs a commit
 *    whatever its size;
 *  - a large one is split by partition, each partition whole in one lane and
 *    the lanes balanced by messages (the largest partition first to the lane
 *    with the fewest), one transaction each: also when the batch holds only
 *    odd partitions, which partition modulo the lanes put all in one;
 *  - a backlog on every partition fills each batch from all of them in turn
 *    (each partition's own queue, consumer.c take_round), so that the lanes
 *    get parts alike: the consumer's single queue handed over one
 *    partition's fetched messages before the next's, and a batch then held
 *    one partition, one lane's work.
 *
 *   source tests/lib/pg.sh; pg_start; build/tests/test-consumer-lanes; pg_stop */
#include <stdarg.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <setjmp.h>
#include <cmocka.h>

#include "consumer_fixture.h"
#include "consumer_state.h"

#define PARTITIONS 4

static int setup(void **state) {
        /* One batch for everything produced before the consumer starts: it
         * waits up to 2 s for more (the messages are all produced
         * before it starts, and fetched at once), and holds 2,000. */
        return consumer_fixture_setup(state, "test-consumer-lanes",
                                      "batch.connections = 2\nbatch.max_wait_ms = 2000\nbatch.max_messages = 2000\n",
                                      PARTITIONS);
}

/* Batches of 200: a backlog of 300 per partition takes six or more. */
#define SMALL_BATCHES "batch.connections = 2\nbatch.max_wait_ms = 2000\nbatch.max_messages = 200\n"
static int setup_small_batches(void **state) {
        return consumer_fixture_setup(state, "test-consumer-lanes", SMALL_BATCHES, PARTITIONS);
}

static int teardown(void **state) {
        return consumer_fixture_teardown(state);
}

/* A lane that waits on a row lock the test holds for as long as the other
 * lane needs for its backlog: with the daemon's reply timeout (12 s) a loaded
 * machine under the sanitizers took that wait for a silent link (a rehearsal
 * of CI's run, 2026-12-06). The wait is the test's own, so the reply timeout
 * is set above the test's own limits (60 s); what the reply timeout does is
 * tests/faults/06-pg-partition.sh's to test. */
static int setup_small_batches_patient(void **state) {
        pg_set_reply_timeout(90 * USEC_PER_SEC);
        return setup_small_batches(state);
}

static int teardown_patient(void **state) {
        pg_set_reply_timeout(0);
        return teardown(state);
}

/* n referrals R-0 .. R-(n-1), round robin over the partitions. */
static void produce_round_robin(fixture *fx, int n) {
        producer_start(fx, NULL);
        for (int i = 0; i < n; i++)
                produce_referral_to(fx, i % PARTITIONS, i, false);
        assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
}

/* n[p] referrals to partition p, one partition after the other, and the
 * consumer made. Returns how many. */
static int produce_then_start(fixture *fx, const int n[PARTITIONS]) {
        int k = 0;
        producer_start(fx, NULL);
        for (int p = 0; p < PARTITIONS; p++)
                for (int i = 0; i < n[p]; i++)
                        produce_referral_to(fx, p, k++, false);
        assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
        consumer_start(fx);
        return k;
}

/* The same, consumed until all are decided. */
static int produce_then_consume(fixture *fx, const int n[PARTITIONS]) {
        int k = produce_then_start(fx, n);
        assert_true(run_until(fx, decided_at_least, k, 60));
        return k;
}

static long long transactions(fixture *fx) {
        return harness_count(fx->h.pg, "SELECT count(DISTINCT xmin::text) FROM allvarsd.referrals");
}

static void test_small_batch_one_transaction(void **state) {
        fixture *fx = *state;
        produce_round_robin(fx, 8);
        consumer_start(fx);
        assert_true(run_until(fx, decided_at_least, 8, 60));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(DISTINCT source_partition) FROM allvarsd.referrals"),
                         PARTITIONS);
        assert_int_equal(transactions(fx), 1);
        assert_int_equal(figures(fx).decided, 8);
}

/* The lanes' steps so far (allvarsd_lane_seconds_total), in microseconds. */
static void lane_steps(uint64_t v[_LS_MAX]) {
        for (unsigned i = 0; i < _LS_MAX; i++)
                v[i] = metrics_counter_value(M_LANE_SECONDS, i);
}

static void test_large_batch_split(void **state) {
        fixture *fx = *state;
        int n = 4 * LANE_MIN_MESSAGES;
        produce_round_robin(fx, n);
        uint64_t before[_LS_MAX], after[_LS_MAX];
        lane_steps(before);
        usec_t started = clock_monotonic();
        consumer_start(fx);
        assert_true(run_until(fx, decided_at_least, n, 60));
        usec_t elapsed = clock_monotonic() - started;
        /* Where the two lanes' time went: every step of a referral transaction
         * took some, no outcome batch ran, and the steps add up to no more
         * than the two lanes' time since the consumer started. */
        lane_steps(after);
        uint64_t sum = 0;
        for (unsigned i = 0; i < _LS_MAX; i++)
                sum += after[i] - before[i];
        for (unsigned i = LS_PREPARE; i <= LS_WRITE; i++)
                assert_true(after[i] > before[i]);
        assert_int_equal(after[LS_OUTCOMES], before[LS_OUTCOMES]);
        assert_true(sum <= 2 * (uint64_t)elapsed);
        /* Two transactions, each with the partitions of its lane only. */
        assert_int_equal(transactions(fx), 2);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT xmin::text FROM allvarsd.referrals"
                                                 " GROUP BY 1 HAVING count(DISTINCT source_partition %% 2) > 1) t"),
                         0);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), n);
}

/* Which partitions each transaction stored, one line per transaction in
 * partition order ("1,3"), the transactions ordered by their first partition. */
static char *partitions_by_transaction(fixture *fx, char buf[static 64]) {
        return harness_value(fx->h.pg, buf, 64, "SELECT string_agg(p, ' ' ORDER BY p) FROM"
                                            " (SELECT string_agg(DISTINCT source_partition::text, ',') AS p"
                                            "    FROM allvarsd.referrals GROUP BY xmin::text) t");
}

static void test_odd_partitions_two_lanes(void **state) {
        fixture *fx = *state;
        int n = 4 * LANE_MIN_MESSAGES;
        producer_start(fx, NULL);
        for (int i = 0; i < n; i++)
                produce_referral_to(fx, i % 2 ? 3 : 1, i, false);
        assert_int_equal(rd_kafka_flush(fx->producer, 10000), 0);
        consumer_start(fx);
        assert_true(run_until(fx, decided_at_least, n, 60));
        char buf[64];
        assert_string_equal(partitions_by_transaction(fx, buf), "1 3");
}

/* Partition 0 holds as many as the three others together, and more: it
 * is a lane of its own, the three share the other (modulo: 0 and 2 together). */
static void test_skewed_partitions_balanced(void **state) {
        fixture *fx = *state;
        int small = LANE_MIN_MESSAGES / 2;
        int k = produce_then_consume(fx, (const int[PARTITIONS]){ 3 * LANE_MIN_MESSAGES, small, small, small });
        char buf[64];
        assert_string_equal(partitions_by_transaction(fx, buf), "0 1,2,3");
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), k);
}

static bool partitions_assigned(fixture *fx, long n) {
        long valid = 0;
        for (size_t i = 0; i < fx->c->n_parts; i++)
                valid += fx->c->parts[i].valid && strcmp(fx->c->parts[i].topic, TOPIC) == 0;
        return valid >= n;
}

/* Every message of the backlog fetched: waiting in librdkafka's queues (the
 * consumer's and the partitions' own), in the batch, or decided. */
static bool backlog_fetched(fixture *fx, long n) {
        long have = (long)rd_kafka_queue_length(fx->c->queue) + (long)fx->c->n_batch;
        for (size_t i = 0; i < fx->c->n_parts; i++)
                if (fx->c->parts[i].queue)
                        have += (long)rd_kafka_queue_length(fx->c->parts[i].queue);
        return have + harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.referrals") >= n;
}

/* 300 referrals on each partition, produced one partition after the other,
 * consumed in batches of 200 once librdkafka has fetched them all. Each batch
 * takes from the four partitions in turn, so a batch has two lanes of two
 * partitions each; only one the consumer formed while it was being assigned
 * may have fewer. From the consumer's single queue every transaction held
 * one partition. */
static void test_backlog_batches_take_every_partition(void **state) {
        fixture *fx = *state;
        int k = produce_then_start(fx, (const int[PARTITIONS]){ 300, 300, 300, 300 });
        /* Assigned, then (without taking anything) until librdkafka has fetched
         * the whole backlog: how the fetches of the partitions interleave at
         * the start is librdkafka's and the machine's, not the consumer's. */
        assert_true(run_until(fx, partitions_assigned, PARTITIONS, 60));
        usec_t end = clock_monotonic() + 60 * USEC_PER_SEC;
        while (!backlog_fetched(fx, k) && clock_monotonic() < end)
                usleep(10000);
        assert_true(backlog_fetched(fx, k));
        assert_true(run_until(fx, decided_at_least, k, 60));
        long long all = transactions(fx);
        long long mixed = harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT xmin::text FROM allvarsd.referrals"
                                                  " GROUP BY 1 HAVING count(DISTINCT source_partition) > 1) t");
        assert_true(all >= 6);
        assert_true(2 * mixed >= all);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), k);
}

static bool flying(fixture *fx, long unused) {
        (void)unused;
        return consumer_batch_flying(fx->c);
}

static bool fenced_and_quiet(fixture *fx, long others) {
        return figures(fx).fenced >= 1 && !consumer_batch_flying(fx->c) && fx->c->n_batch == 0 &&
               harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.referrals WHERE source_partition > 0") >= others;
}

/* The next messages are gathered while the lanes store the last
 * (consumer_batch_send gives them their parts and returns). When a part turns
 * out fenced (another instance stored its partition meanwhile), what was
 * gathered meanwhile is dropped, not stored from the positions read again: a
 * position another instance stored never goes back. A session of the test's
 * holds partition 0's offset row, already moved to the partition's end but not
 * committed, so the compare-and-set of the lane given partition 0 waits for
 * it, and fails once it commits. Batches of 200: partition 0's first 140 in
 * flight, then more of it gathered. */
/* Partition 0's offset row, set to `next` in a transaction of another
 * session that is left open (returned): the compare-and-set of the lane that
 * stores partition 0 waits on it until that session commits. */
static PGconn *hold_partition_0(fixture *fx, int next) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO allvarsd.consumer_offsets (consumer_group, topic, partition, next_offset)"
                 " VALUES ('%s', '%s', 0, 0)",
                 fx->h.cfg->group_id, TOPIC);
        assert_int_equal(harness_exec(fx->h.pg, sql), 0);
        PGconn *other = NULL;
        assert_int_equal(harness_pg_connect(fx->h.db.name, &other), 0);
        snprintf(sql, sizeof sql,
                 "BEGIN; UPDATE allvarsd.consumer_offsets SET next_offset = %d"
                 " WHERE consumer_group = '%s' AND topic = '%s' AND partition = 0",
                 next, fx->h.cfg->group_id, TOPIC);
        assert_int_equal(harness_exec(other, sql), 0);
        return other;
}

/* hold_partition_0, then 600, 20, 20 and 20 referrals, and the consumer run
 * until a batch is in flight. */
static PGconn *flight_held_on_partition_0(fixture *fx, int next) {
        PGconn *other = hold_partition_0(fx, next);
        produce_then_start(fx, (const int[PARTITIONS]){ 600, 20, 20, 20 });
        assert_true(run_until(fx, flying, 0, 60));
        return other;
}

static void test_fenced_flight_drops_gathered(void **state) {
        fixture *fx = *state;
        PGconn *other = flight_held_on_partition_0(fx, 600);
        assert_int_equal(figures(fx).fenced, 0);
        assert_int_equal(harness_exec(other, "COMMIT"), 0);
        PQfinish(other);

        assert_true(run_until(fx, fenced_and_quiet, 60, 60));
        /* Time for whatever else would be stored. */
        usec_t end = clock_monotonic() + USEC_PER_SEC;
        while (clock_monotonic() < end) {
                consumer_step(fx->c);
                usleep(5000);
        }
        assert_int_equal(harness_count(fx->h.pg,
                                       "SELECT next_offset FROM allvarsd.consumer_offsets"
                                       " WHERE consumer_group = '%s' AND topic = '%s' AND partition = 0",
                                       fx->h.cfg->group_id, TOPIC),
                         600);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.referrals WHERE source_partition = 0"),
                         0);
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.referrals"), 60);
}

/* A reload (SIGHUP) while a batch is in flight: consumer_reconfigure lands it
 * before it returns, since its lanes read the configuration the caller frees
 * once the new one is in place (main.c). Under the sanitizers a lane still
 * deciding with the freed one is a use after free. */
static void test_reconfigure_lands_flight(void **state) {
        fixture *fx = *state;
        PGconn *other = flight_held_on_partition_0(fx, 0);
        config *n = NULL;
        assert_int_equal(harness_config_new("test-consumer-lanes", fx->h.db.conninfo, fx->h.pepper_path,
                                            SMALL_BATCHES, &n),
                         0);
        assert_int_equal(harness_exec(other, "COMMIT"), 0);
        PQfinish(other);
        assert_int_equal(consumer_reconfigure(fx->c, n), 0);
        assert_false(consumer_batch_flying(fx->c));
        config_free(fx->h.cfg);
        fx->h.cfg = n;
        assert_true(run_until(fx, decided_at_least, 660, 60));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), 660);
}

/* The partitions (bit p for partition p) of the lane whose part holds
 * partition 0's messages: they wait with it. 0 when no lane holds it. */
static unsigned waiting_lane_partitions(fixture *fx) {
        for (unsigned k = 0; k < lanes_count(fx->c->lanes); k++) {
                const lane_flight *f = &fx->c->flights[k];
                unsigned held = 0;
                for (size_t j = 0; f->run && j < f->n; j++)
                        held |= 1u << f->entries[j].km->partition;
                if (held & 1u)
                        return held;
        }
        return 0;
}

/* Every one of partitions 1-3 that the waiting lane does not hold has all
 * its referrals stored. The lanes are given partitions by size, the largest
 * first to the emptiest lane (consumer_batch.c assign_lanes), so the lane
 * that waits on partition 0 may hold one or two of the others: with uneven
 * first fetches it held two, and only the third could fill (one run in six
 * under the sanitizers, 2026-12-07). */
static bool partitions_full(fixture *fx, long per_partition) {
        unsigned waiting = waiting_lane_partitions(fx);
        int free_parts = 0;
        char held[32] = "-1";
        for (int p = 1; p < PARTITIONS; p++) {
                if (waiting & (1u << p))
                        snprintf(held + strlen(held), sizeof held - strlen(held), ",%d", p);
                else
                        free_parts++;
        }
        long full = harness_count(fx->h.pg, "SELECT count(*) FROM (SELECT source_partition FROM allvarsd.referrals"
                                            " WHERE source_partition > 0 AND source_partition NOT IN (%s)"
                                            " GROUP BY 1 HAVING count(*) >= %ld) t",
                                  held, per_partition);
        return free_parts >= 1 && full >= free_parts;
}

/* A lane takes its next part as soon as it is done with the last, while the
 * other still stores (consumer_batch.c send_free): partition 0's offset row is
 * held by a session of the test's, so the lane given partition 0 waits on its
 * compare-and-set; the other lane goes on through the backlog of the
 * partitions it holds, batch after batch (200 a batch, 300 on each of
 * partitions 1-3), and no lane takes a partition the waiting lane holds. The
 * batch takes no more of a lane's held partitions than that lane's share of
 * it (consumer.c take_round), or it would fill with the waiting lane's and
 * leave the other lane nothing once it is done.
 * When every lane had to finish before the next batch, the other lane
 * stopped after the first batch (at most 60 of each partition). */
static void test_lane_goes_on_while_other_waits(void **state) {
        fixture *fx = *state;
        PGconn *other = hold_partition_0(fx, 0);
        int k = produce_then_start(fx, (const int[PARTITIONS]){ 20, 300, 300, 300 });
        /* Meanwhile the messages alive (gathered, and stored by the lanes)
         * stay within two batches (consumer_batch_full). */
        size_t most = 0;
        usec_t end = clock_monotonic() + 60 * USEC_PER_SEC;
        while (!partitions_full(fx, 300) && clock_monotonic() < end) {
                consumer_step(fx->c);
                if (fx->c->n_batch + fx->c->flight_msgs > most)
                        most = fx->c->n_batch + fx->c->flight_msgs;
                usleep(1000);
        }
        assert_true(partitions_full(fx, 300));
        assert_true(most <= 2 * 200);
        assert_true(consumer_batch_flying(fx->c));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.referrals WHERE source_partition = 0"),
                         0);
        /* Never taken for an outage: the waiting lane was not given up while
         * the batch was full of the partitions it holds. */
        assert_false(figures(fx).database_down);
        assert_int_not_equal(strncmp(figures(fx).last_error, "database", 8), 0);
        assert_int_equal(harness_exec(other, "COMMIT"), 0);
        PQfinish(other);
        assert_true(run_until(fx, decided_at_least, k, 60));
        assert_int_equal(harness_count(fx->h.pg, "SELECT count(*) FROM allvarsd.decisions"), k);
        assert_int_equal(figures(fx).fenced, 0);
}

int main(void) {
        log_setup(LOG_TARGET_STDERR, LOG_NOTICE);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_small_batch_one_transaction, setup, teardown),
                cmocka_unit_test_setup_teardown(test_large_batch_split, setup, teardown),
                cmocka_unit_test_setup_teardown(test_odd_partitions_two_lanes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_skewed_partitions_balanced, setup, teardown),
                cmocka_unit_test_setup_teardown(test_backlog_batches_take_every_partition, setup_small_batches,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_fenced_flight_drops_gathered, setup_small_batches, teardown),
                cmocka_unit_test_setup_teardown(test_reconfigure_lands_flight, setup_small_batches, teardown),
                cmocka_unit_test_setup_teardown(test_lane_goes_on_while_other_waits, setup_small_batches_patient,
                                                teardown_patient),
        };
        return cmocka_run_group_tests(tests, harness_tz_setup, NULL);
}
