/* allvarsctl dead-letters: the messages allvarsd could not accept. List them,
 * show one (never its payload: it may hold personal data), or replay one to
 * its source topic after the cause was fixed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "header_blob.h"
#include "kafka.h"
#include "print.h"

static const char usage[] =
        "Usage: allvarsctl dead-letters [list] [--limit N] [--json] [--config PATH | --database CONNINFO]\n"
        "       allvarsctl dead-letters show ID [--json] [...]\n"
        "       allvarsctl dead-letters replay ID [--force] [--by NAME] [--json] [--bootstrap HOST:PORT] [...]\n"
        "The messages allvarsd could not accept, with where they came from and why.\n\n"
        "  list                   the latest dead letters, oldest first (the default)\n"
        "  show ID                one dead letter; its payload is never printed (it may hold personal\n"
        "                         data), only its size\n"
        "  replay ID              produce the stored payload again to its source topic, with its original\n"
        "                         key and headers, and mark it replayed: re-feed a message after a fix\n"
        "  --limit N              list at most N (default 50; 0: all)\n"
        "  --force                replay a dead letter that was replayed before\n"
        "  --by NAME              who replays it, for the audit trail (default: the database login);\n"
        "                         reading the payload and marking it replayed are both audited\n"
        "  --config PATH          configuration file (default " CONFIG_DEFAULT_PATH " when it exists)\n"
        "  --database CONNINFO    connect with this libpq conninfo or URI; without it or a configuration\n"
        "                         file, libpq's PG* environment (PGHOST, PGPORT, PGUSER, PGDATABASE)\n"
        "  --bootstrap HOST:PORT  the Kafka cluster for replay (default: kafka.bootstrap.servers)\n"
        "  --json                 JSON, for scripts\n";

/* $1 limit. */
static const ctl_section list_section = {
        NULL, NULL, CTL_TABLE,
        "SELECT * FROM (SELECT d.id, " CTL_SQL_TS("d.received_at") " AS received_at,"
        " d.source_topic || '/' || d.source_partition || '@' || d.source_offset AS source,"
        " d.source_topic AS topic, d.source_partition AS partition, d.source_offset AS \"offset\","
        " d.reason, d.detail, " CTL_SQL_TS("d.replayed_at") " AS replayed_at"
        " FROM allvarsd.dead_letter_summary d ORDER BY d.id DESC LIMIT $1::int8) q ORDER BY id",
        "No dead letters.", "topic,partition,offset",
};

/* $1 id. */
static const ctl_section show_section = {
        NULL, NULL, CTL_RECORD,
        "SELECT d.id, d.event_id, " CTL_SQL_TS("d.received_at") " AS received_at, d.source_topic AS topic,"
        " d.source_partition AS partition, d.source_offset AS \"offset\", d.reason, d.detail,"
        " d.payload_bytes, " CTL_SQL_TS("d.replayed_at") " AS replayed_at,"
        " encode(d.source_key, 'escape') AS source_key, d.source_ce_id, d.source_event_id"
        " FROM allvarsd.dead_letter_summary d WHERE d.id = $1::int8",
        NULL, NULL,
};

static int exists(ctl *c, const ctl_params *p) {
        PGresult *res = ctl_exec(c, "SELECT 1 FROM allvarsd.dead_letter_summary WHERE id = $1::int8", p);
        if (!res)
                return -EIO;
        int r = PQntuples(res) == 1 ? 0 : -ENOENT;
        PQclear(res);
        return r;
}

/* The payload is personal data (a referral as consumed): read through the
 * function that records the read in the audit trail (schemas/006_operator_role.sql),
 * and only for a replay. */
static int replay(ctl *c, const char *id, bool force, const char *by) {
        ctl_params p = {0};
        ctl_param(&p, CTL_OID_INT8, id);
        ctl_param(&p, CTL_OID_TEXT, by);
        PGresult *res = ctl_exec(c,
                                 "SELECT payload_bytes, " CTL_SQL_TS("replayed_at") ", source_key, source_headers"
                                 " FROM allvarsd.dead_letter_summary WHERE id = $1::int8",
                                 &p);
        if (!res)
                return -EIO;
        int r = 0;
        if (PQntuples(res) != 1) {
                ctl_fail(c, "no dead letter %s", id);
                r = -ENOENT;
        } else if (PQgetisnull(res, 0, 0)) {
                ctl_fail(c, "dead letter %s has no payload any more (purged)", id);
                r = -ENODATA;
        } else if (!PQgetisnull(res, 0, 1) && !force) {
                ctl_fail(c, "dead letter %s was replayed at %s; --force replays it again", id, PQgetvalue(res, 0, 1));
                r = -EALREADY;
        }
        /* The original key and headers (docs/contract.md "Dead letters"): the message
         * lands on its case's partition again, behind the case's earlier events. A
         * dead letter from before schema 8 has neither: its id is the key. */
        size_t key_len = 0, headers_len = 0;
        unsigned char *key = NULL, *headers = NULL;
        if (r == 0 && !PQgetisnull(res, 0, 2) &&
            !(key = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 2), &key_len)))
                r = -ENOMEM;
        if (r == 0 && !PQgetisnull(res, 0, 3) &&
            !(headers = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 3), &headers_len)))
                r = -ENOMEM;
        PQclear(res);
        if (r == -ENOMEM)
                ctl_fail(c, "out of memory");
        char *topic = NULL, *event_id = NULL;
        unsigned char *payload = NULL;
        rd_kafka_headers_t *h = NULL;
        if (r < 0)
                goto out;
        res = ctl_exec(c,
                       "SELECT source_topic, payload, event_id::text"
                       " FROM allvarsd.read_dead_letter_payload($1::int8, $2::text) WHERE payload IS NOT NULL",
                       &p);
        if (!res) {
                r = -EIO;
                goto out;
        }
        if (PQntuples(res) != 1) {
                PQclear(res);
                ctl_fail(c, "dead letter %s has no payload any more (purged)", id);
                r = -ENODATA;
                goto out;
        }
        topic = strdup(PQgetvalue(res, 0, 0));
        event_id = strdup(PQgetvalue(res, 0, 2));
        size_t len = 0;
        payload = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &len);
        PQclear(res);
        h = rd_kafka_headers_new(4);
        if (!topic || !event_id || !payload || !h) {
                ctl_fail(c, "out of memory");
                r = -ENOMEM;
                goto out;
        }
        if (headers && header_blob_decode(headers, headers_len, h) < 0) {
                ctl_fail(c, "dead letter %s: its stored headers are damaged; not replayed", id);
                r = -EBADMSG;
                goto out;
        }
        /* Marks the message as a replay for whoever reads the topic. */
        rd_kafka_header_add(h, "allvarsd_replay_of", -1, event_id, -1);
        ctl_delivery d;
        r = key ? ctl_produce(c, topic, key, key_len, payload, len, h, &d)
                : ctl_produce(c, topic, id, strlen(id), payload, len, h, &d);
        h = NULL;
        if (r < 0)
                goto out;

        char partition[16], offset[24];
        snprintf(partition, sizeof partition, "%d", (int)d.partition);
        snprintf(offset, sizeof offset, "%lld", (long long)d.offset);
        ctl_param(&p, CTL_OID_TIMESTAMPTZ, c->now);
        ctl_param(&p, CTL_OID_INT4, partition);
        ctl_param(&p, CTL_OID_INT8, offset);
        res = ctl_exec(c,
                       "SELECT row_to_json(q) FROM (SELECT u.id, u.source_topic AS topic, $4::int4 AS partition,"
                       " $5::int8 AS \"offset\", " CTL_SQL_TS("u.replayed_at") " AS replayed_at"
                       " FROM allvarsd.mark_dead_letter_replayed($1::int8, $3::timestamptz, $2::text) u) q",
                       &p);
        if (!res) {
                fprintf(stderr, "allvarsctl dead-letters: dead letter %s was replayed to %s [%s] at offset %s, "
                                "but not marked replayed\n", id, topic, partition, offset);
                r = -EIO;
                goto out;
        }
        if (c->json)
                printf("%s\n", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "null");
        else
                printf("replayed dead letter %s to %s [%s] at offset %s\n", id, topic, partition, offset);
        PQclear(res);
out:
        if (h)
                rd_kafka_headers_destroy(h);
        PQfreemem(payload);
        PQfreemem(key);
        PQfreemem(headers);
        free(topic);
        free(event_id);
        return r;
}

int ctl_dead_letters_main(int argc, char **argv) {
        enum { OPT_LIMIT = 1, OPT_FORCE, OPT_BY };
        static const struct option options[] = {
                {"limit", required_argument, NULL, OPT_LIMIT},
                {"force", no_argument, NULL, OPT_FORCE},
                {"by", required_argument, NULL, OPT_BY},
                {NULL, 0, NULL, 0},
        };
        ctl c;
        ctl_init(&c, "dead-letters", usage);
        long long limit = 50;
        bool limit_given = false, force = false;
        const char *by = NULL;
        int o;
        while ((o = ctl_getopt(&c, argc, argv, options)) != -1) {
                switch (o) {
                case OPT_LIMIT:
                        if (ctl_parse_count(optarg, &limit) < 0)
                                return ctl_usage_error(&c, "--limit: not a number: %s", optarg);
                        limit_given = true;
                        break;
                case OPT_FORCE: force = true; break;
                case OPT_BY: by = optarg; break;
                case CTL_OPT_HELP: return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        }
        const char *action = optind < argc ? argv[optind++] : "list";
        const char *id = NULL;
        long long n;
        if ((force || by) && strcmp(action, "replay") != 0)
                return ctl_usage_error(&c, "%s is for replay", force ? "--force" : "--by");
        if (strcmp(action, "list") == 0) {
        } else if (strcmp(action, "show") == 0 || strcmp(action, "replay") == 0) {
                if (optind >= argc)
                        return ctl_usage_error(&c, "%s needs the id of a dead letter", action);
                id = argv[optind++];
                if (ctl_parse_count(id, &n) < 0)
                        return ctl_usage_error(&c, "not a dead letter id: %s", id);
                if (limit_given)
                        return ctl_usage_error(&c, "--limit is for list");
        } else
                return ctl_usage_error(&c, "unknown action %s: list, show or replay", action);
        if (optind < argc)
                return ctl_usage_error(&c, "unexpected argument: %s", argv[optind]);

        int r = ctl_connect(&c, action[0] != 'r');
        if (r >= 0) {
                ctl_params p = {0};
                char limit_text[24];
                snprintf(limit_text, sizeof limit_text, "%lld", limit);
                if (action[0] == 'l') {
                        ctl_param(&p, CTL_OID_INT8, limit > 0 ? limit_text : NULL);
                        r = ctl_show(&c, &list_section, 1, &p);
                } else if (action[0] == 's') {
                        ctl_param(&p, CTL_OID_INT8, id);
                        r = exists(&c, &p);
                        if (r == -ENOENT)
                                ctl_fail(&c, "no dead letter %s", id);
                        if (r >= 0)
                                r = ctl_show(&c, &show_section, 1, &p);
                } else
                        r = replay(&c, id, force, by);
        }
        ctl_done(&c);
        return r < 0 ? CTL_EXIT_FAILURE : CTL_EXIT_OK;
}
