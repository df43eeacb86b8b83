/* referral-gen: produce realistic generated police referrals to Kafka, for the
 * integration, fault and benchmark runs.
 *
 *   referral-gen --bootstrap B [--topic T] --count N [--seed S] [--first K]
 *                [--duplicates PCT] [--malformed PERMILLE] [--persons P]
 *                [--rate PER_SECOND] [--reported-at RFC3339] [--partitions-key]
 *                [--ids-out FILE] [--partition P] [--transactional ID [--tx-size N]]
 *                [--format protobuf|json]
 *
 * Referral i (i = first .. first+count-1) has id "gen-S-i". A duplicate re-sends
 * an earlier referral byte for byte; a malformed message is random bytes or a
 * truncated referral. With --ids-out, writes one line per message:
 * "valid ID", "dup ID" or "malformed KEY", so a test knows the expected set.
 * Prints "sent=N valid=V duplicates=D malformed=M" at the end. Exit 0 when
 * every message was delivered. With --embed-produce-time, each referral's
 * police_case_number carries the produce time in µs (for latency figures).
 * --partition P sends every message to partition P; --transactional ID sends
 * them in transactions of --tx-size messages (default 5), each commit marker
 * taking an offset of its own (gaps Kafka explains).
 * --format json sends the same referrals (same seed, same duplicates and malformed
 * messages) as Kafka Connect JSON records with their schema ({"schema", "payload"},
 * for JsonConverter with schemas.enable=true), flattened to one row per referral:
 * the benchmark's peer (bench/peer.sh) consumes them. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <librdkafka/rdkafka.h>

#include "clock.h"
#include "codec.h"
#include "tool_producer.h"
#include "allvarssamtal/v1/referral.pb-c.h"

static const char *given[] = {"Ali", "Elsa", "Noah", "Maja", "Hugo", "Alice", "Liam", "Wilma", "Omar", "Saga",
                              "Elias", "Ebba", "Adam", "Alva", "Yusuf", "Selma"};
static const char *family[] = {"Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson",
                               "Olsson", "Persson", "Svensson", "Gustafsson", "Hassan", "Mohammed", "Pettersson"};
static const char *districts[] = {"centrum", "hisingen", "nordost", "sydvast"};
static const char *words[] = {"polisen", "uppmärksammade", "ungdomen", "i", "samband", "med", "en", "anmälan",
                              "om", "misstänkt", "snatteri", "på", "köpcentret", "vårdnadshavare", "kontaktades",
                              "inte", "under", "kvällen", "pojken", "flickan", "uppgav", "att", "hen", "var",
                              "tillsammans", "med", "äldre", "kamrater", "vid", "tillfället", "oro", "finns", "för"};

static uint64_t rng_state;
static uint64_t rnd(void) {
        /* xorshift64*: reproducible per seed */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 2685821657736338717ULL;
}
static unsigned rnd_below(unsigned n) {
        return (unsigned)(rnd() % n);
}

static int luhn(const char *digits9) {
        int sum = 0;
        for (int i = 0; i < 9; i++) {
                int d = (digits9[i] - '0') * (i % 2 == 0 ? 2 : 1);
                sum += d > 9 ? d - 9 : d;
        }
        return (10 - sum % 10) % 10;
}

/* A valid personnummer for person p, born `age` years before 2025. */
static void person_identity(unsigned p, char out[14], char birth[11]) {
        uint64_t save = rng_state;
        rng_state = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)p * 0x100000001B3ULL) ^ 0xABCDEF;
        if (!rng_state)
                rng_state = 1;
        int age = 6 + (int)rnd_below(16);                  /* 6..21 */
        int year = 2025 - age, month = 1 + (int)rnd_below(12), day = 1 + (int)rnd_below(28);
        int serial = (int)rnd_below(1000);
        char d9[10];
        snprintf(d9, sizeof d9, "%02d%02d%02d%03d", year % 100, month, day, serial);
        snprintf(out, 14, "%04d%02d%02d-%03d%d", year, month, day, serial, luhn(d9));
        snprintf(birth, 11, "%04d-%02d-%02d", year, month, day);
        rng_state = save;
}

static char *narrative(char *buf, size_t size) {
        size_t target = 200 + rnd_below(600), o = 0;
        buf[0] = 0;
        while (o < target && o + 40 < size)
                o += (size_t)snprintf(buf + o, size - o, "%s%s", o ? " " : "", words[rnd_below(sizeof words / sizeof *words)]);
        return buf;
}

/* The Kafka Connect schema of --format json: one flat struct per referral. */
#define F(name, type, optional) "{\"field\":\"" name "\",\"type\":\"" type "\",\"optional\":" optional "}"
#define TS(name, optional)                                                                                             \
        "{\"field\":\"" name "\",\"type\":\"int64\",\"optional\":" optional                                            \
        ",\"name\":\"org.apache.kafka.connect.data.Timestamp\",\"version\":1}"
/* clang-format off */
static const char connect_schema[] =
        "{\"type\":\"struct\",\"name\":\"allvarssamtal.v1.PoliceReferral\",\"optional\":false,\"fields\":["
        F("referral_id", "string", "false") ","
        F("police_case_number", "string", "false") ","
        TS("reported_at", "false") ","
        TS("incident_at", "true") ","
        F("district", "string", "false") ","
        F("identity_number", "string", "true") ","
        F("birth_date", "string", "true") ","
        F("given_name", "string", "false") ","
        F("family_name", "string", "false") ","
        F("guardians", "string", "true") ","
        F("concerns", "string", "true") ","
        F("offence_code", "string", "true") ","
        F("offence_severity", "int32", "true") ","
        F("offence_imprisonable", "boolean", "true") ","
        F("acute_risk", "boolean", "false") ","
        F("preliminary_investigation", "boolean", "false") ","
        F("feedback_requested", "boolean", "false") ","
        F("reporting_unit", "string", "false") ","
        F("narrative", "string", "false")
        "]}";
/* clang-format on */
#undef F
#undef TS

static int64_t timestamp_ms(const Google__Protobuf__Timestamp *t) {
        return t->seconds * 1000 + t->nanos / 1000000;
}

static json_object *json_string_or_null(const char *s) {
        return s && *s ? json_object_new_string(s) : NULL;
}

/* Referral r as a Connect JSON record with its schema, malloc'ed into *ret. */
static size_t referral_json(const Allvarssamtal__V1__PoliceReferral *r, uint8_t **ret) {
        json_object *o = json_object_new_object(), *guardians = json_object_new_array();
        char concerns[32] = "";
        json_object_object_add(o, "referral_id", json_object_new_string(r->referral_id));
        json_object_object_add(o, "police_case_number", json_object_new_string(r->police_case_number));
        json_object_object_add(o, "reported_at", json_object_new_int64(timestamp_ms(r->reported_at)));
        json_object_object_add(o, "incident_at",
                               r->incident_at ? json_object_new_int64(timestamp_ms(r->incident_at)) : NULL);
        json_object_object_add(o, "district", json_object_new_string(r->district));
        json_object_object_add(o, "identity_number", json_string_or_null(r->subject->identity_number));
        json_object_object_add(o, "birth_date", json_string_or_null(r->subject->birth_date));
        json_object_object_add(o, "given_name", json_object_new_string(r->subject->given_name));
        json_object_object_add(o, "family_name", json_object_new_string(r->subject->family_name));
        for (size_t k = 0; k < r->n_guardians; k++) {
                json_object *g = json_object_new_object();
                json_object_object_add(g, "name", json_object_new_string(r->guardians[k]->name));
                json_object_object_add(g, "phone", json_string_or_null(r->guardians[k]->phone));
                json_object_object_add(g, "postal_address", json_string_or_null(r->guardians[k]->postal_address));
                json_object_array_add(guardians, g);
        }
        /* A nested list is not a column: the guardians as JSON text, the concerns as "1,3". */
        json_object_object_add(
                o, "guardians",
                json_object_new_string(json_object_to_json_string_ext(guardians, JSON_C_TO_STRING_PLAIN)));
        json_object_put(guardians);
        for (size_t k = 0, n = 0; k < r->n_concerns; k++)
                n += (size_t)snprintf(concerns + n, sizeof concerns - n, "%s%d", k ? "," : "", (int)r->concerns[k]);
        json_object_object_add(o, "concerns", json_object_new_string(concerns));
        json_object_object_add(o, "offence_code", r->n_offences ? json_object_new_string(r->offences[0]->code) : NULL);
        json_object_object_add(o, "offence_severity",
                               r->n_offences ? json_object_new_int((int)r->offences[0]->severity) : NULL);
        json_object_object_add(o, "offence_imprisonable",
                               r->n_offences ? json_object_new_boolean(r->offences[0]->imprisonable) : NULL);
        json_object_object_add(o, "acute_risk", json_object_new_boolean(r->acute_risk));
        json_object_object_add(o, "preliminary_investigation", json_object_new_boolean(r->preliminary_investigation));
        json_object_object_add(o, "feedback_requested", json_object_new_boolean(r->feedback_requested));
        json_object_object_add(o, "reporting_unit", json_object_new_string(r->reporting_unit));
        json_object_object_add(o, "narrative", json_object_new_string(r->narrative));
        size_t plen;
        const char *payload = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &plen);
        size_t len = sizeof "{\"schema\":" - 1 + sizeof connect_schema - 1 + sizeof ",\"payload\":" - 1 + plen + 1;
        char *buf = malloc(len + 1);
        if (!buf) {
                json_object_put(o);
                return 0;
        }
        snprintf(buf, len + 1, "{\"schema\":%s,\"payload\":%s}", connect_schema, payload);
        json_object_put(o);
        *ret = (uint8_t *)buf;
        return len;
}

static bool json_format;

/* Build and pack referral i (or render it as JSON, with --format json). */
static size_t make_referral(uint64_t seed, long i, unsigned persons, usec_t reported, bool embed_time, uint8_t **ret,
                            char *id, size_t id_size) {
        Allvarssamtal__V1__PoliceReferral r = ALLVARSSAMTAL__V1__POLICE_REFERRAL__INIT;
        Allvarssamtal__V1__Person subj = ALLVARSSAMTAL__V1__PERSON__INIT;
        Google__Protobuf__Timestamp rep = GOOGLE__PROTOBUF__TIMESTAMP__INIT, inc = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        Allvarssamtal__V1__Guardian g[2] = {ALLVARSSAMTAL__V1__GUARDIAN__INIT, ALLVARSSAMTAL__V1__GUARDIAN__INIT};
        Allvarssamtal__V1__Guardian *gp[2] = {&g[0], &g[1]};
        Allvarssamtal__V1__Offence off = ALLVARSSAMTAL__V1__OFFENCE__INIT;
        Allvarssamtal__V1__Offence *offp[1] = {&off};
        Allvarssamtal__V1__Concern concerns[2];
        char ident[14], birth[11], case_no[40], gname[2][64], phone[2][20], text[1024];

        snprintf(id, id_size, "gen-%llu-%ld", (unsigned long long)seed, i);
        r.referral_id = id;
        if (embed_time)
                snprintf(case_no, sizeof case_no, "T%lld", (long long)clock_realtime());
        else
                snprintf(case_no, sizeof case_no, "5000-K%ld-25", 100000 + i);
        r.police_case_number = case_no;
        codec_timestamp_set(&rep, reported);
        r.reported_at = &rep;
        if (rnd_below(10) < 8) {
                /* usually days, sometimes weeks after the incident */
                codec_timestamp_set(&inc, reported - (usec_t)rnd_below(30 * 24) * USEC_PER_HOUR);
                r.incident_at = &inc;
        }
        r.district = (char *)districts[rnd_below(4)];
        unsigned p = rnd_below(persons ? persons : 1);
        person_identity(p, ident, birth);
        subj.identity_number = ident;
        subj.given_name = (char *)given[p % (sizeof given / sizeof *given)];
        subj.family_name = (char *)family[p % (sizeof family / sizeof *family)];
        if (rnd_below(10) == 0) {
                subj.identity_number = (char *)"";
                subj.birth_date = birth;
        }
        r.subject = &subj;
        size_t ng = rnd_below(3);
        for (size_t k = 0; k < ng; k++) {
                snprintf(gname[k], sizeof gname[k], "%s %s", given[rnd_below(16)], subj.family_name);
                g[k].name = gname[k];
                if (rnd_below(10) < 7) {
                        snprintf(phone[k], sizeof phone[k], "070-%03u %02u %02u", rnd_below(1000), rnd_below(100),
                                 rnd_below(100));
                        g[k].phone = phone[k];
                }
                g[k].postal_address = (char *)"Storgatan 1, 411 01 Göteborg";
        }
        r.n_guardians = ng;
        r.guardians = gp;
        size_t nc = rnd_below(3);
        for (size_t k = 0; k < nc; k++)
                concerns[k] = (Allvarssamtal__V1__Concern)(1 + rnd_below(3));
        r.n_concerns = nc;
        r.concerns = concerns;
        if (rnd_below(2)) {
                off.code = (char *)"BRB 8:1";
                off.severity = (Allvarssamtal__V1__Severity)(1 + rnd_below(3));
                off.imprisonable = rnd_below(3) != 0;
                r.n_offences = 1;
                r.offences = offp;
        }
        r.acute_risk = rnd_below(20) == 0;
        r.preliminary_investigation = rnd_below(10) == 0;
        r.feedback_requested = rnd_below(10) < 7;
        r.reporting_unit = (char *)"LPO Hisingen";
        r.narrative = narrative(text, sizeof text);
        return json_format ? referral_json(&r, ret) : codec_pack(&r.base, ret);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                {"bootstrap", required_argument, NULL, 'b'}, {"topic", required_argument, NULL, 't'},
                {"count", required_argument, NULL, 'n'},     {"seed", required_argument, NULL, 's'},
                {"first", required_argument, NULL, 'f'},     {"duplicates", required_argument, NULL, 'd'},
                {"malformed", required_argument, NULL, 'm'}, {"persons", required_argument, NULL, 'p'},
                {"rate", required_argument, NULL, 'r'},      {"reported-at", required_argument, NULL, 'R'},
                {"ids-out", required_argument, NULL, 'o'},   {"embed-produce-time", no_argument, NULL, 'E'},
                {"partition", required_argument, NULL, 'P'}, {"transactional", required_argument, NULL, 'T'},
                {"tx-size", required_argument, NULL, 'X'},   {"format", required_argument, NULL, 'F'},
                {NULL, 0, NULL, 0},
        };
        const char *bootstrap = NULL, *topic = "police.referrals.v1", *ids_out = NULL;
        long count = 100, first = 0, rate = 0;
        unsigned dup_pct = 0, malformed_permille = 0, persons = 0;
        uint64_t seed = 1;
        usec_t reported = 0;
        bool embed = false;
        int32_t partition = RD_KAFKA_PARTITION_UA;
        const char *txid = NULL;
        long tx_size = 5;
        int c;
        while ((c = getopt_long(argc, argv, "b:t:n:s:f:d:m:p:r:R:o:EP:T:X:F:", options, NULL)) >= 0) {
                switch (c) {
                case 'b': bootstrap = optarg; break;
                case 't': topic = optarg; break;
                case 'n': count = atol(optarg); break;
                case 's': seed = strtoull(optarg, NULL, 10); break;
                case 'f': first = atol(optarg); break;
                case 'd': dup_pct = (unsigned)atoi(optarg); break;
                case 'm': malformed_permille = (unsigned)atoi(optarg); break;
                case 'p': persons = (unsigned)atoi(optarg); break;
                case 'r': rate = atol(optarg); break;
                case 'R':
                        if (clock_parse_rfc3339(optarg, &reported) < 0) {
                                fprintf(stderr, "referral-gen: bad --reported-at\n");
                                return 64;
                        }
                        break;
                case 'o': ids_out = optarg; break;
                case 'E': embed = true; break;
                case 'P': partition = (int32_t)atoi(optarg); break;
                case 'T': txid = optarg; break;
                case 'X': tx_size = atol(optarg) > 0 ? atol(optarg) : 1; break;
                case 'F':
                        if (strcmp(optarg, "json") != 0 && strcmp(optarg, "protobuf") != 0) {
                                fprintf(stderr, "referral-gen: --format protobuf or json\n");
                                return 64;
                        }
                        json_format = strcmp(optarg, "json") == 0;
                        break;
                default: return 64;
                }
        }
        if (!bootstrap) {
                fprintf(stderr, "referral-gen: --bootstrap is required\n");
                return 64;
        }
        if (!persons)
                persons = (unsigned)(count / 3 + 1);
        if (!reported)
                reported = clock_realtime() - USEC_PER_HOUR;
        rng_state = seed * 0x9E3779B97F4A7C15ULL + 1;
        FILE *ids = ids_out ? fopen(ids_out, "w") : NULL;

        tool_producer p;
        if (tool_producer_new(&p, "referral-gen", bootstrap, "linger.ms", rate ? "0" : "20", "batch.num.messages",
                              "10000", "queue.buffering.max.messages", "1000000", "transactional.id", txid,
                              NULL) < 0)
                return 1;
        rd_kafka_t *rk = p.rk;
        rd_kafka_error_t *txe = txid ? rd_kafka_init_transactions(rk, 30000) : NULL;
        if (txe) {
                fprintf(stderr, "referral-gen: init_transactions: %s\n", rd_kafka_error_string(txe));
                return 1;
        }

        long sent = 0, valid = 0, dups = 0, bad = 0;
        usec_t start = clock_monotonic();
        for (long i = first; i < first + count; i++) {
                char id[64];
                uint8_t *buf = NULL;
                size_t len;
                const char *kind = "valid";
                if (malformed_permille && rnd_below(1000) < malformed_permille) {
                        len = 1 + rnd_below(200);
                        buf = malloc(len);
                        for (size_t k = 0; k < len; k++)
                                buf[k] = (uint8_t)rnd();
                        snprintf(id, sizeof id, "malformed-%llu-%ld", (unsigned long long)seed, i);
                        kind = "malformed";
                        bad++;
                } else if (dup_pct && i > first && rnd_below(100) < dup_pct) {
                        long j = first + (long)rnd_below((unsigned)(i - first));
                        uint64_t save = rng_state;
                        /* regenerate j exactly: same seed stream position is not kept, so
                         * re-derive from a per-referral stream */
                        rng_state = (seed << 32) ^ (uint64_t)j ^ 0x5DEECE66DULL;
                        len = make_referral(seed, j, persons, reported + j * USEC_PER_SEC / 10, embed, &buf, id,
                                            sizeof id);
                        rng_state = save;
                        kind = "dup";
                        dups++;
                } else {
                        uint64_t save = rng_state;
                        rng_state = (seed << 32) ^ (uint64_t)i ^ 0x5DEECE66DULL;
                        len = make_referral(seed, i, persons, reported + i * USEC_PER_SEC / 10, embed, &buf, id,
                                            sizeof id);
                        rng_state = save;
                        rnd();
                        valid++;
                }
                if (ids)
                        fprintf(ids, "%s %s\n", kind, id);
                if (txid && (i - first) % tx_size == 0 && (txe = rd_kafka_begin_transaction(rk))) {
                        fprintf(stderr, "referral-gen: begin_transaction: %s\n", rd_kafka_error_string(txe));
                        return 1;
                }
                tool_produce(&p, topic, partition, id, buf, len, RD_KAFKA_MSG_F_FREE);
                sent++;
                if (txid && ((i - first) % tx_size == tx_size - 1 || i == first + count - 1) &&
                    (txe = rd_kafka_commit_transaction(rk, 30000))) {
                        fprintf(stderr, "referral-gen: commit_transaction: %s\n", rd_kafka_error_string(txe));
                        return 1;
                }
                if (rate > 0) {
                        usec_t due = start + (usec_t)((double)(sent) * 1e6 / (double)rate);
                        usec_t now = clock_monotonic();
                        if (due > now) {
                                struct timespec ts = {.tv_sec = (due - now) / USEC_PER_SEC,
                                                      .tv_nsec = ((due - now) % USEC_PER_SEC) * 1000};
                                nanosleep(&ts, NULL);
                        }
                }
        }
        int done = tool_producer_finish(&p);
        if (ids)
                fclose(ids);
        printf("sent=%ld valid=%ld duplicates=%ld malformed=%ld delivered=%ld failed=%ld\n", sent, valid, dups, bad,
               p.delivered, p.failed);
        return done;
}
