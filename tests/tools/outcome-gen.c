/* outcome-gen: produce CaseOutcome events to Kafka, for the fault suite.
 *
 *   outcome-gen --bootstrap B [--topic T] [--at RFC3339] < LINES
 *
 * Each input line is "CHANGE EVENT_ID CASE_ID", CHANGE one of scheduled, held,
 * declined, cancelled. The message has the event id, the case id, occurred_at
 * --at (default now; the same line gives the same bytes), the booking service
 * as its actor, and the change (a scheduled conversation a day after --at). The
 * key is the case id, as the booking service sends it (README "Topics and
 * messages"), so a case's events keep their order on one partition.
 * Idempotent producer; prints "sent=N delivered=D failed=F" and exits 0 when
 * every message was delivered, 1 otherwise, 64 on a usage error or a bad line. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "allvarssamtal/v1/outcome.pb-c.h"
#include "clock.h"
#include "codec.h"
#include "tool_producer.h"

/* Pack one outcome; NULL for an unknown change. */
static uint8_t *make_outcome(const char *change, char *event_id, char *case_id, usec_t at, size_t *ret_len) {
        Allvarssamtal__V1__CaseOutcome o = ALLVARSSAMTAL__V1__CASE_OUTCOME__INIT;
        Allvarssamtal__V1__Actor actor = ALLVARSSAMTAL__V1__ACTOR__INIT;
        Google__Protobuf__Timestamp occurred = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Google__Protobuf__Timestamp meeting = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__ConversationScheduled scheduled = ALLVARSSAMTAL__V1__CONVERSATION_SCHEDULED__INIT;
        Allvarssamtal__V1__ConversationHeld held = ALLVARSSAMTAL__V1__CONVERSATION_HELD__INIT;
        Allvarssamtal__V1__FamilyDeclined declined = ALLVARSSAMTAL__V1__FAMILY_DECLINED__INIT;
        Allvarssamtal__V1__CaseCancelled cancelled = ALLVARSSAMTAL__V1__CASE_CANCELLED__INIT;

        o.event_id = event_id;
        o.case_id = case_id;
        codec_timestamp_set(&occurred, at);
        o.occurred_at = &occurred;
        actor.kind = ALLVARSSAMTAL__V1__ACTOR_KIND__ACTOR_KIND_BOOKING_SERVICE;
        actor.name = (char *)"outcome-gen";
        o.actor = &actor;
        if (strcmp(change, "scheduled") == 0) {
                codec_timestamp_set(&meeting, at + 24 * USEC_PER_HOUR);
                scheduled.scheduled_at = &meeting;
                o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_SCHEDULED;
                o.conversation_scheduled = &scheduled;
        } else if (strcmp(change, "held") == 0) {
                o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CONVERSATION_HELD;
                o.conversation_held = &held;
        } else if (strcmp(change, "declined") == 0) {
                o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_FAMILY_DECLINED;
                o.family_declined = &declined;
        } else if (strcmp(change, "cancelled") == 0) {
                cancelled.reason = ALLVARSSAMTAL__V1__CANCEL_REASON__CANCEL_REASON_OTHER;
                o.change_case = ALLVARSSAMTAL__V1__CASE_OUTCOME__CHANGE_CANCELLED;
                o.cancelled = &cancelled;
        } else
                return NULL;
        size_t len = allvarssamtal__v1__case_outcome__get_packed_size(&o);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return NULL;
        allvarssamtal__v1__case_outcome__pack(&o, buf);
        *ret_len = len;
        return buf;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"bootstrap", required_argument, NULL, 'b'},
                {"topic", required_argument, NULL, 't'},
                {"at", required_argument, NULL, 'a'},
                {NULL, 0, NULL, 0},
        };
        const char *bootstrap = NULL, *topic = "allvarssamtal.outcomes.v1";
        usec_t at = clock_realtime();
        int c;
        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                switch (c) {
                case 'b': bootstrap = optarg; break;
                case 't': topic = optarg; break;
                case 'a':
                        if (clock_parse_rfc3339(optarg, &at) < 0) {
                                fprintf(stderr, "outcome-gen: bad --at\n");
                                return 64;
                        }
                        break;
                default: return 64;
                }
        }
        if (!bootstrap) {
                fprintf(stderr, "outcome-gen: --bootstrap is required\n");
                return 64;
        }

        tool_producer p;
        if (tool_producer_new(&p, "outcome-gen", bootstrap, NULL) < 0)
                return 1;

        int rc = 0;
        char line[512];
        while (fgets(line, sizeof line, stdin)) {
                char change[32], event_id[160], case_id[160];
                if (sscanf(line, "%31s %159s %159s", change, event_id, case_id) != 3) {
                        fprintf(stderr, "outcome-gen: expected \"CHANGE EVENT_ID CASE_ID\": %s", line);
                        rc = 64;
                        break;
                }
                size_t len;
                uint8_t *buf = make_outcome(change, event_id, case_id, at, &len);
                if (!buf) {
                        fprintf(stderr, "outcome-gen: unknown change \"%s\"\n", change);
                        rc = 64;
                        break;
                }
                tool_produce(&p, topic, RD_KAFKA_PARTITION_UA, case_id, buf, len, RD_KAFKA_MSG_F_FREE);
        }
        int done = tool_producer_finish(&p);
        printf("sent=%ld delivered=%ld failed=%ld\n", p.sent, p.delivered, p.failed);
        if (rc)
                return rc;
        return done;
}
