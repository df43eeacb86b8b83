/* The table of configuration keys: each key's name, type, place in struct
 * config, default, limits, flags and documentation. It drives parsing
 * (config.c), SIGHUP reload (config_reload.c), --check-config and the key list
 * of allvarsd.conf(5) (config_dump.c), so they cannot drift apart. */
#include <stddef.h>

#include "config_internal.h"

/* In the order of feedback_level. */
static const char *const feedback_levels[] = {"statutory", "conversation", NULL};
static const char *const log_targets[] = {"auto", "journal", "stderr", NULL};
static const char *const log_levels[] = {"debug", "info", "notice", "warning", "err", "error", NULL};
_Static_assert(FEEDBACK_STATUTORY == 0 && FEEDBACK_CONVERSATION == 1, "feedback_levels[] order");
_Static_assert(sizeof(feedback_level) == sizeof(int), "CT_ENUM stores an int");

#define OFF(f) offsetof(config, f)

const config_key config_keys[] = {
        {"kafka.embedded", CT_BOOL, OFF(kafka_embedded), 0, "false", 0, 0, 0, NULL,
         "Start librdkafka's in-process mock cluster instead of connecting to brokers. For trying allvarsd out "
         "and for tests only, never in production: the daemon says so loudly in its log."},
        {"kafka.group.id", CT_STRING, OFF(group_id), 0, "allvarsd", CF_NONEMPTY, 0, 0, NULL,
         "The Kafka consumer group. It is also the name under which the consumed offsets are stored in "
         "PostgreSQL, so every instance of one deployment must use the same group."},
        {"kafka.<property>", CT_PATTERN, 0, 0, NULL, 0, 0, 0, NULL,
         "Any other librdkafka property, passed through unchanged without the kafka. prefix (see librdkafka's "
         "CONFIGURATION.md): bootstrap.servers, security.protocol, ssl.*, sasl.* and so on. Secrets such as "
         "sasl.password can be given as @credential:NAME. Properties that effectively-once rests on "
         "(enable.auto.commit, enable.auto.offset.store, auto.offset.reset, partition.assignment.strategy, "
         "enable.partition.eof, enable.idempotence, acks, log.queue) are set by allvarsd and refused here."},
        {"topics.referrals", CT_STRING, OFF(topic_referrals), 0, "police.referrals.v1", CF_TOPIC, 0, 0, NULL,
         "Input: the police's referrals (allvarssamtal.v1.PoliceReferral)."},
        {"topics.outcomes", CT_STRING, OFF(topic_outcomes), 0, "allvarssamtal.outcomes.v1", CF_TOPIC, 0, 0, NULL,
         "Input: case outcome events from the booking service, social workers and the police "
         "(allvarssamtal.v1.CaseOutcome)."},
        {"topics.scheduling", CT_STRING, OFF(topic_scheduling), 0, "allvarssamtal.scheduling.v1", CF_TOPIC, 0, 0,
         NULL, "Output: scheduling requests to the booking service."},
        {"topics.feedback", CT_STRING, OFF(topic_feedback), 0, "police.feedback.v1", CF_TOPIC, 0, 0, NULL,
         "Output: feedback to the police (status codes only)."},
        {"topics.alerts", CT_STRING, OFF(topic_alerts), 0, "allvarssamtal.alerts.v1", CF_TOPIC, 0, 0, NULL,
         "Output: deadline alerts (AT_RISK, MISSED, PROTECTIVE_ASSESSMENT_OVERDUE)."},
        {"topics.dead_letter", CT_STRING, OFF(topic_dead_letter), 0, "allvarssamtal.deadletter.v1", CF_TOPIC, 0, 0,
         NULL, "Output: messages that could not be decoded or applied, with the reason and their origin."},
        {"database.conninfo", CT_STRING, OFF(db_conninfo), 0, NULL, CF_REQUIRED | CF_NONEMPTY, 0, 0, NULL,
         "The libpq connection string of the runtime role, as keyword=value pairs or a postgresql:// URI, e.g. "
         "host=db.example.org dbname=allvarsd user=allvarsd_runtime sslmode=verify-full. A password in it is "
         "masked by --check-config, but belongs in database.password."},
        {"insecure.allow_plaintext", CT_BOOL, OFF(insecure_allow_plaintext), 0, "false", 0, 0, 0, NULL,
         "Allow what is otherwise refused: a PostgreSQL server that is not on this machine without "
         "sslmode=verify-full, Kafka brokers that are not on this machine without security.protocol SSL or "
         "SASL_SSL, kafka.enable.ssl.certificate.verification = false and "
         "kafka.ssl.endpoint.identification.algorithm = none. For a test network only: allvarsd warns at every "
         "start and allvarsctl status shows it. Loopback addresses and unix sockets never need it."},
        {"database.password", CT_SECRET, OFF(db_password), 0, NULL, 0, 0, 0, NULL,
         "The database password, normally @credential:db-password (LoadCredential= in the unit); merged into "
         "the connection. Optional: peer, certificate or .pgpass authentication need none."},
        {"pepper", CT_SECRET, OFF(pepper), OFF(pepper_len), NULL,
         CF_REQUIRED | CF_REFERENCE_ONLY | CF_BYTES, 32, 0, NULL,
         "The secret key of the person hash (HMAC-SHA-256 of the identity number), at least 32 bytes, only as "
         "@file:PATH or @credential:NAME (e.g. openssl rand -hex 32 > pepper), in a file only the daemon's user can "
         "read (mode 0600 or 0400: --check-config refuses one that group or others can read). Never change it: "
         "persons would no longer match their history."},
        {"profile.name", CT_PROFILE, 0, 0, PROFILE_DEFAULT, CF_RELOADABLE, 0, 0, NULL,
         "The default policy profile: goteborg-motion-2024, stockholm-2019, ds-2024-30 or trollhattan-tuti."},
        {"profile.<parameter>", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "Override one parameter of the default profile: min_age, max_age, limit_hours, "
         "protective_assessment_hours, late_referral_days, first_time (true/false), adult_age, "
         "criminal_responsibility_age, at_risk_percent, version. Raise version with any override, so that "
         "decisions under the changed rules can be told apart."},
        {"district.<name>.profile", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "The profile of one district (a referral's district field, matched without regard to case). A district "
         "on the default profile's name starts from the default profile with its profile.* overrides; on another "
         "profile, from that built-in profile."},
        {"district.<name>.<parameter>", CT_PATTERN, 0, 0, NULL, CF_RELOADABLE, 0, 0, NULL,
         "Override one parameter (as profile.<parameter>) for that district only."},
        {"feedback.level", CT_ENUM, OFF(feedback_level), 0, "conversation", CF_RELOADABLE, 0, 0, feedback_levels,
         "What the police are told: statutory (RECEIVED and ASSESSED only, SoL 14 kap. 1 b \\(sc) or "
         "conversation (every status, so that they can take part in the meeting)."},
        {"feedback.always", CT_BOOL, OFF(feedback_always), 0, "false", CF_RELOADABLE, 0, 0, NULL,
         "Send feedback even when the referral did not ask for it."},
        {"batch.max_messages", CT_UINT, OFF(batch_max_messages), 0, "500", CF_RELOADABLE, 1, 100000, NULL,
         "The most messages decided and stored in one PostgreSQL transaction."},
        {"batch.max_wait_ms", CT_UINT, OFF(batch_max_wait_ms), 0, "5", CF_RELOADABLE, 0, 60000, NULL,
         "How long a batch waits for more messages before it is stored."},
        {"batch.connections", CT_UINT, OFF(batch_connections), 0, "2", 0, 1, 16, NULL,
         "PostgreSQL connections that store a batch in parallel, one transaction each, the batch split by "
         "partition (each partition whole in one transaction, the connections balanced by messages), so that the database can use more than one core. "
         "Each connection used takes 64 messages or more: a smaller batch is one transaction."},
        {"limits.max_message_bytes", CT_SIZE, OFF(max_message_bytes), 0, "1048576", CF_RELOADABLE, 1024,
         256 * 1024 * 1024, NULL, "Larger input messages are dead-lettered without being decoded (K, M, G suffixes "
         "allowed)."},
        {"relay.enabled", CT_BOOL, OFF(relay_enabled), 0, "true", 0, 0, 0, NULL,
         "Run the outbox relay in this instance. One relay is active at a time across instances (an advisory "
         "lock); the others stand by."},
        {"relay.batch", CT_UINT, OFF(relay_batch), 0, "1000", CF_RELOADABLE, 1, 100000, NULL,
         "The most outbox rows the relay reads at once."},
        {"relay.poll_ms", CT_UINT, OFF(relay_poll_ms), 0, "500", CF_RELOADABLE, 1, 3600000, NULL,
         "How often the relay looks for unsent rows when not woken by a notification. Every 20th look at the "
         "latest is a sweep from the oldest unsent row, which finds a row whose transaction committed long after "
         "later ones."},
        {"deadline_watch.interval_s", CT_UINT, OFF(deadline_watch_interval_s), 0, "30", CF_RELOADABLE, 1, 86400,
         NULL, "How often the deadline watch looks for cases at risk, missed deadlines and overdue protective "
         "assessments."},
        {"retention.interval_s", CT_UINT, OFF(retention_interval_s), 0, "3600", CF_RELOADABLE, 1, 604800, NULL,
         "How often the retention purge runs."},
        {"retention.closed_case_days", CT_UINT, OFF(retention_closed_days), 0, "1825", CF_RELOADABLE, 1, 36500,
         NULL, "Days after a case closed when its personal data are purged; five years by default (SoL 12 kap. "
         "1-2 \\(sc\\(sc, gallring of social services files)."},
        {"retention.not_eligible_days", CT_UINT, OFF(retention_not_eligible_days), 0, "180", CF_RELOADABLE, 1,
         36500, NULL, "Days after which the personal data of NOT_ELIGIBLE referrals are purged."},
        {"event.source", CT_STRING, OFF(event_source), 0, "urn:allvarsd", CF_RELOADABLE | CF_NONEMPTY, 0, 0, NULL,
         "The CloudEvents ce_source of every published event, e.g. urn:allvarsd:goteborg."},
        {"metrics.listen", CT_STRING, OFF(metrics_listen), 0, "", 0, 0, 0, NULL,
         "Serve Prometheus metrics at http://ADDRESS:PORT/metrics, e.g. 127.0.0.1:9187 or [::1]:9187 (numeric "
         "addresses only). Empty (the default): no endpoint. Only loopback addresses are accepted unless "
         "metrics.allow_remote is true; put a TLS-terminating proxy in front for remote scrapes."},
        {"metrics.allow_remote", CT_BOOL, OFF(metrics_allow_remote), 0, "false", 0, 0, 0, NULL,
         "Accept a metrics.listen address other than loopback. The figures hold no personal data, but they "
         "tell the volume of referrals."},
        {"log.target", CT_ENUM, OFF(log_target), 0, "auto", CF_RELOADABLE | CF_ENUM_STRING, 0, 0, log_targets,
         "auto (journald when stderr is connected to it, else stderr), journal or stderr."},
        {"log.level", CT_ENUM, OFF(log_level), 0, "info", CF_RELOADABLE | CF_ENUM_STRING, 0, 0, log_levels,
         "The least important messages logged: debug, info, notice, warning or err. At notice and above, "
         "single decisions are not logged."},
        {"clock.file", CT_STRING, OFF(clock_file), 0, "", 0, 0, 0, NULL,
         "Tests only: read the current time (RFC 3339) from this file instead of the system clock."},
};

const size_t config_n_keys = sizeof config_keys / sizeof config_keys[0];

/* librdkafka properties the daemon sets itself (consumer.c, relay.c): what
 * effectively-once rests on. Refused rather than silently overridden. */
const char *const config_kafka_fixed[] = {
        "enable.auto.commit", "auto.commit.enable", "enable.auto.offset.store", "auto.offset.reset",
        "partition.assignment.strategy", "enable.partition.eof", "enable.idempotence", "acks",
        "request.required.acks", "log.queue", NULL,
};
