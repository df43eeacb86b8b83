/* Where each assigned partition is: positions read from PostgreSQL on every
 * assignment and after every doubt, seeks (retried with a backoff while a
 * partition stays paused), rebalances, and gaps in the offsets (docs/design.md
 * "The consumer", "Effectively once"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer_state.h"
#include "log.h"
#include "metrics.h"
#include "sqlstate.h"

void parts_clear(consumer *c) {
        for (size_t i = 0; i < c->n_parts; i++) {
                if (c->parts[i].queue) {
                        rd_kafka_queue_io_event_enable(c->parts[i].queue, -1, NULL, 0);
                        rd_kafka_queue_destroy(c->parts[i].queue);
                }
                free(c->parts[i].topic);
        }
        free(c->parts);
        c->parts = NULL;
        c->n_parts = 0;
        c->fig.partitions = 0;
}

/* Read the stored positions of every partition that lacks one. Returns 0 or
 * the store's error. Partitions are grouped by topic for store_load_offsets. */
static int parts_load(consumer *c, bool only_invalid) {
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                if (only_invalid && p->valid)
                        continue;
                int64_t next;
                int r = store_load_offsets(c->st, c->cfg->group_id, p->topic, &p->partition, 1, &next);
                if (r < 0)
                        return r;
                p->stored_next = next;
                p->pos = next < 0 ? 0 : next;
                p->valid = true;
        }
        return 0;
}

static rd_kafka_topic_partition_list_t *parts_list(consumer *c, bool only_with_offsets) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->n_parts);
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
                if (only_with_offsets)
                        tp->offset = p->stored_next < 0 ? RD_KAFKA_OFFSET_BEGINNING : p->stored_next;
        }
        return l;
}

static void pause_all(consumer *c) {
        if (c->n_parts == 0)
                return;
        rd_kafka_topic_partition_list_t *l = parts_list(c, false);
        rd_kafka_pause_partitions(c->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
}

/* Where a partition's next message is: its position, or the topic's start
 * when the database has none and nothing was read yet. */
static int64_t part_target(const partition_state *p) {
        return p->stored_next < 0 && p->pos == 0 ? RD_KAFKA_OFFSET_BEGINNING : p->pos;
}

bool part_has_position(const partition_state *p) {
        return p->stored_next >= 0 || p->pos > 0;
}

static void seek_failed(consumer *c, partition_state *p, const char *why) {
        set_error(c, "seek %s [%d]: %s", p->topic, (int)p->partition, why);
        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                   "OFFSET=%lld", (long long)p->pos,
                   "MESSAGE=Seek of %s [%d] to offset %lld failed: %s; partition paused, retrying", p->topic,
                   (int)p->partition, (long long)p->pos, why, NULL);
        rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(one, p->topic, p->partition);
        rd_kafka_pause_partitions(c->rk, one);
        rd_kafka_topic_partition_list_destroy(one);
        p->seek_pending = true;
}

/* Seek the partitions (all, those whose last seek failed, or only `only`) to
 * their positions and resume those that moved. A partition whose seek failed
 * stays paused and is retried with a backoff: resumed, it would go on from
 * wherever librdkafka had fetched to, past messages never stored. Returns how
 * many failed. */
size_t parts_seek(consumer *c, bool only_pending, partition_state *only) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->n_parts + 1);
        for (size_t i = 0; i < c->n_parts; i++) {
                partition_state *p = &c->parts[i];
                if ((only_pending && !p->seek_pending) || (only && p != only))
                        continue;
                rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = part_target(p);
        }
        size_t failed = 0;
        if (l->cnt == 0) {
                rd_kafka_topic_partition_list_destroy(l);
                return 0;
        }
        /* Resumed first: librdkafka 2.0.2 does not finish a seek of a paused
         * partition (it times out). Nothing is taken meanwhile: this thread
         * is in the seek, and what was fetched before it is discarded. */
        rd_kafka_resume_partitions(c->rk, l);
        rd_kafka_error_t *e = c->seek_fault ? c->seek_fault(c->seek_fault_arg, l)
                                            : rd_kafka_seek_partitions(c->rk, l, SEEK_TIMEOUT_MS);
        for (int i = 0; i < l->cnt; i++) {
                partition_state *p = part_find(c, l->elems[i].topic, l->elems[i].partition);
                if (!p)
                        continue;
                if (e || l->elems[i].err) {
                        seek_failed(c, p, e ? rd_kafka_error_string(e) : rd_kafka_err2str(l->elems[i].err));
                        failed++;
                        continue;
                }
                p->seek_pending = false;
                p->fresh = true;
        }
        if (e)
                rd_kafka_error_destroy(e);
        rd_kafka_topic_partition_list_destroy(l);
        if (failed) {
                c->seek_backoff = c->seek_backoff ? c->seek_backoff * 2 : BACKOFF_MIN;
                if (c->seek_backoff > BACKOFF_MAX)
                        c->seek_backoff = BACKOFF_MAX;
                c->seek_retry_at = clock_monotonic() + c->seek_backoff;
        } else if (only_pending)
                c->seek_backoff = 0;
        return failed;
}

/* Move every partition back to the position the database holds and resume. */
int parts_reseek(consumer *c) {
        /* The positions are read on the consumer's own store, lane 0's: every
         * lane lands first (a fenced part needs nothing more: this is the re-read). */
        int r = consumer_batch_land(c);
        if (r < 0 && r != -ESTALE)
                return r;
        r = parts_load(c, false);
        if (r < 0)
                return r;
        if (c->n_parts == 0)
                return 0;
        parts_seek(c, false, NULL);
        c->reload_needed = false;
        return 0;
}

void consumer_database_lost(consumer *c, int r) {
        /* What is in flight first: its lanes' parts that committed are
         * acknowledged; one that failed adds nothing to this. */
        (void)consumer_batch_land(c);
        /* The failing connection's reason: a batch lane's, or the consumer's own. */
        const char *why = c->lane_error[0] ? c->lane_error : store_last_error(c->st);
        if (r == -EACCES) {
                /* Not an outage: the role, a grant or the schema is wrong (sqlstate.h
                 * "deployment"). Said every time it recurs, until an operator fixes it. */
                log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "ERRNO=%d", -r,
                           "MESSAGE=PostgreSQL refused the daemon's statement (%s): fix the deployment"
                           " (roles and grants: deploy/roles.sql, allvarsd --migrate); partitions paused, retrying",
                           why, NULL);
                set_error(c, "deployment: %s", why);
        } else {
                /* A full disk and its kin (class 53) are outages too, but with a
                 * fix: said with it, and said again when the cause changes. */
                char state[6];
                const char *hint = sqlstate_outage_hint(sqlstate_in_text(why, state));
                if (!c->database_down || (hint && !c->database_hinted))
                        log_struct(LOG_ERR, MSGID_DB_UNAVAILABLE, "ERRNO=%d", -r,
                                   "MESSAGE=PostgreSQL unavailable (%s)%s%s; partitions paused, retrying", why,
                                   hint ? ": " : "", hint ? hint : "", NULL);
                c->database_hinted = hint != NULL;
                if (hint)
                        set_error(c, "database: %s (%s)", hint, why);
                else
                        set_error(c, "database: %s", why);
        }
        c->lane_error[0] = 0;
        c->database_down = true;
        c->reload_needed = true;
        for (size_t i = 0; i < c->n_parts; i++)
                c->parts[i].valid = false;
        pause_all(c);
        consumer_batch_drop(c);
        c->backoff = c->backoff ? c->backoff * 2 : BACKOFF_MIN;
        if (c->backoff > BACKOFF_MAX)
                c->backoff = BACKOFF_MAX;
        c->retry_at = clock_monotonic() + c->backoff;
}

/* A position as people read it: librdkafka's logical offsets by name. */
static const char *offset_text(int64_t offset, char buf[static 24]) {
        switch (offset) {
        case RD_KAFKA_OFFSET_BEGINNING: return "beginning";
        case RD_KAFKA_OFFSET_END: return "end";
        case RD_KAFKA_OFFSET_STORED:
        case RD_KAFKA_OFFSET_INVALID: return "stored";
        }
        snprintf(buf, 24, "%lld", (long long)offset);
        return buf;
}

/* Each partition with its position: on ASSIGNED the one it starts from, on
 * REVOKED the one the database holds (librdkafka's list says -1001 there). */
static void log_partitions(consumer *c, log_msgid id, const rd_kafka_topic_partition_list_t *l) {
        char buf[512], num[24];
        size_t o = 0;
        buf[0] = 0;
        for (int i = 0; i < l->cnt && o < sizeof buf - 64; i++) {
                int64_t off = l->elems[i].offset;
                partition_state *p = part_find(c, l->elems[i].topic, l->elems[i].partition);
                if (id == MSGID_REVOKED && p && p->valid)
                        off = p->stored_next >= 0 ? p->stored_next : RD_KAFKA_OFFSET_BEGINNING;
                o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s[%d]@%s", i ? " " : "", l->elems[i].topic,
                                      (int)l->elems[i].partition, offset_text(off, num));
        }
        log_struct(LOG_INFO, id, "PARTITIONS=%s", buf, "MESSAGE=%s %d partition(s): %s",
                   id == MSGID_ASSIGNED ? "Assigned" : "Revoked", l->cnt, buf, NULL);
}

void consumer_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *l, void *opaque) {
        consumer *c = opaque;

        /* The batch in flight is stored before its partitions change hands.
         * Fenced, it needs no re-read here: the partitions are re-read below. */
        int lr = consumer_batch_land(c);
        if (lr < 0 && lr != -ESTALE)
                consumer_database_lost(c, lr);
        metrics_partitions_clear();
        /* What the partitions' next owner would tell late; on leaving the
         * group (consumer_drain's close) too. */
        consumer_tell_kafka(c, true);
        if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
                parts_clear(c);
                consumer_batch_drop(c);
                c->parts = calloc((size_t)l->cnt + 1, sizeof *c->parts);
                if (!c->parts)
                        abort();
                for (int i = 0; i < l->cnt; i++) {
                        c->parts[i].topic = strdup(l->elems[i].topic);
                        if (!c->parts[i].topic)
                                abort();
                        c->parts[i].partition = l->elems[i].partition;
                        c->parts[i].stored_next = -1;
                        c->parts[i].told_next = -1;
                        c->parts[i].fresh = true;
                }
                c->n_parts = (size_t)l->cnt;
                c->fig.partitions = (unsigned)l->cnt;
                /* Each partition's messages in a queue of its own, taken out of
                 * the consumer's before the assignment starts its fetch (which
                 * forwards a partition queue only where the application has not:
                 * RD_KAFKA_Q_F_FWD_APP). The same pipe wakes the loop. */
                for (int i = 0; i < l->cnt; i++) {
                        rd_kafka_queue_t *q = rd_kafka_queue_get_partition(rk, l->elems[i].topic,
                                                                           l->elems[i].partition);
                        if (!q)
                                continue;
                        rd_kafka_queue_forward(q, NULL);
                        rd_kafka_queue_io_event_enable(q, c->pipe[1], "1", 1);
                        c->parts[i].queue = q;
                }

                int r = c->database_down ? -ENOTCONN : parts_load(c, false);
                if (r >= 0) {
                        for (int i = 0; i < l->cnt; i++)
                                l->elems[i].offset = c->parts[i].stored_next < 0 ? RD_KAFKA_OFFSET_BEGINNING
                                                                                  : c->parts[i].stored_next;
                        rd_kafka_assign(rk, l);
                        log_partitions(c, MSGID_ASSIGNED, l);
                } else {
                        /* Without PostgreSQL we do not know where to start: take the
                         * partitions (so the group settles), pause them, and seek
                         * when the database is back. Messages before that are dropped. */
                        rd_kafka_assign(rk, l);
                        rd_kafka_pause_partitions(rk, l);
                        c->reload_needed = true;
                        if (!c->database_down)
                                consumer_database_lost(c, r);
                        log_partitions(c, MSGID_ASSIGNED, l);
                }
                c->fig.assigned_once = true;
        } else {
                if (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS)
                        log_struct(LOG_WARNING, MSGID_KAFKA_ERROR, "MESSAGE=Rebalance error: %s", rd_kafka_err2str(err),
                                   NULL);
                else
                        log_partitions(c, MSGID_REVOKED, l);
                /* What was not stored yet belongs to the partitions' next owner. */
                consumer_batch_drop(c);
                parts_clear(c);
                rd_kafka_assign(rk, NULL);
        }
}

/* The first message of a partition is above its position: were the offsets
 * between never handed to us, or are they gone from Kafka? Returns true to
 * take the message, false to drop it (the partition is read again from its
 * position, or paused). */
bool consumer_gap_seen(consumer *c, partition_state *p, int64_t offset) {
        if (!p->fresh) {
                /* Within a run of messages: ours to explain (a batch dropped
                 * after librdkafka had fetched past it) or Kafka's (a
                 * transaction marker). Read again from the position; what
                 * comes first after the seek tells. */
                log_struct(LOG_DEBUG, MSGID_KAFKA_ERROR, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                           "MESSAGE=%s [%d]: offset %lld after %lld; seeking back", p->topic, (int)p->partition,
                           (long long)offset, (long long)p->pos - 1, NULL);
                parts_seek(c, false, p);
                return false;
        }
        int64_t lo = -1, hi = -1;
        rd_kafka_resp_err_t err =
                rd_kafka_query_watermark_offsets(c->rk, p->topic, p->partition, &lo, &hi, WATERMARK_TIMEOUT_MS);
        if (err) {
                /* Cannot tell now: take nothing past the position, try again later. */
                seek_failed(c, p, rd_kafka_err2str(err));
                c->seek_backoff = c->seek_backoff ? c->seek_backoff : BACKOFF_MIN;
                c->seek_retry_at = clock_monotonic() + c->seek_backoff;
                return false;
        }
        if (lo <= p->pos) {
                /* Kafka still has the offsets in between: compacted away, or
                 * transaction markers. Allowed, counted. */
                c->fig.gaps_explained++;
                log_struct(LOG_DEBUG, MSGID_PARTITION_GAP, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                           "MESSAGE=%s [%d]: offsets %lld-%lld skipped by Kafka (compaction or transaction markers)",
                           p->topic, (int)p->partition, (long long)p->pos, (long long)offset - 1, NULL);
                return true;
        }
        /* Gone: retention, deleted records or an offset reset moved the log
         * start past our position. The messages there were never decided. */
        int64_t to = lo < offset ? lo : offset;
        bool is_new = false;
        int r = store_partition_gap(c->st, c->cfg, c->cfg->group_id, p->topic, p->partition, p->pos, to, lo,
                                    clock_now(c->clk), &is_new);
        if (r < 0) {
                consumer_database_lost(c, r);
                return false;
        }
        c->fig.gaps_lost++;
        c->fig.offsets_lost += (uint64_t)(to - p->pos);
        set_error(c, "%s [%d]: offsets %lld-%lld gone from Kafka before they were read", p->topic, (int)p->partition,
                  (long long)p->pos, (long long)to - 1);
        log_struct(LOG_ERR, MSGID_PARTITION_GAP, "TOPIC=%s", p->topic, "PARTITION=%d", (int)p->partition,
                   "OFFSET=%lld", (long long)p->pos, "GAP_FROM=%lld", (long long)p->pos, "GAP_TO=%lld",
                   (long long)to, "MESSAGE=%s [%d]: offsets %lld-%lld were gone from Kafka (log start %lld) before "
                   "they were read; never decided%s",
                   p->topic, (int)p->partition, (long long)p->pos, (long long)to - 1, (long long)lo,
                   is_new ? "; alert raised" : " (recorded before)", NULL);
        int t = metrics_topic_of(p->topic);
        if (t >= 0)
                metrics_inc(M_PARTITION_GAPS, (unsigned)t);     /* allvarsd_partition_gaps_total */
        return true;
}
