/* Configuration: one file (/etc/allvarsd/allvarsd.conf) of "key = value" lines.
 * One table of keys (config_keys.c) drives parsing, defaults, --check-config, SIGHUP
 * reload and the allvarsd.conf(5) man page, so they cannot drift apart.
 *
 * Any value may be "@file:/path" (the file's content, trailing newline
 * stripped) or "@credential:name" ($CREDENTIALS_DIRECTORY/name, from systemd's
 * LoadCredential=): that is how secrets are given. kafka.* keys other than
 * kafka.embedded pass straight to librdkafka. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "profiles.h"

#define CONFIG_DEFAULT_PATH "/etc/allvarsd/allvarsd.conf"

typedef enum feedback_level {
        FEEDBACK_STATUTORY,             /* RECEIVED and ASSESSED only */
        FEEDBACK_CONVERSATION,          /* every status (default) */
} feedback_level;

typedef struct config_kv {
        char *key;
        char *value;
} config_kv;

typedef struct district_profile {
        char *district;                 /* e.g. "hisingen", lower case */
        profile profile;                /* effective: built-in + profile.* + district.<d>.* */
} district_profile;

typedef struct config {
        char *path;
        atomic_uint n_ref;              /* config_ref/config_free: threads share one config */

        /* kafka */
        bool kafka_embedded;            /* kafka.embedded: librdkafka's in-process mock cluster */
        config_kv *kafka;               /* every other kafka.* key, without the prefix */
        size_t n_kafka;
        char *group_id;                 /* kafka's group.id, default "allvarsd" */

        /* topics */
        char *topic_referrals;
        char *topic_outcomes;
        char *topic_scheduling;
        char *topic_feedback;
        char *topic_alerts;
        char *topic_dead_letter;

        /* database */
        char *db_conninfo;              /* database.conninfo (may come from a credential) */
        char *db_password;              /* database.password, merged into the connection */

        /* the person key */
        uint8_t *pepper;                /* pepper (required, from a file or credential, >= 32 bytes) */
        size_t pepper_len;

        /* rules */
        profile profile;                /* profile.name + profile.* overrides */
        district_profile *districts;    /* district.<d>.profile + district.<d>.* overrides */
        size_t n_districts;

        /* feedback to the police */
        feedback_level feedback_level;
        bool feedback_always;           /* send even when the referral did not ask */

        /* pipeline */
        unsigned batch_max_messages;
        unsigned batch_max_wait_ms;
        unsigned batch_connections;     /* parallel transactions per batch, split by partition */
        size_t max_message_bytes;
        unsigned relay_batch;
        unsigned relay_poll_ms;
        bool relay_enabled;

        /* lifecycle */
        unsigned deadline_watch_interval_s;
        unsigned retention_interval_s;
        unsigned retention_closed_days;         /* personal data of closed cases */
        unsigned retention_not_eligible_days;   /* personal data of NOT_ELIGIBLE referrals */

        /* operations */
        char *event_source;             /* CloudEvents ce_source, default "urn:allvarsd" */
        char *log_target;               /* auto | journal | stderr */
        char *log_level;                /* debug | info | notice | warning | err */
        char *clock_file;               /* tests only: read "now" from this file */
        bool insecure_allow_plaintext;  /* insecure.allow_plaintext: TLS not enforced (config_transport.c) */
        char *metrics_listen;           /* "" (off) or ADDRESS:PORT of the Prometheus endpoint */
        bool metrics_allow_remote;      /* accept an address other than loopback */

        config_kv *refs;                /* keys given as "@file:..." or "@credential:...", as written */
        size_t n_refs;
} config;

/* Parse a configuration file. On failure returns a negative errno and writes
 * one line naming the file, line and key into err. Unlike config_parse_string
 * it also checks config_check_transport (-EPERM). */
int config_load(const char *path, config **ret, char *err, size_t err_size);
enum {
        /* "@credential:NAME" values are not read: the reference stands for the
         * value (--check-reload: systemd 252 hides the credentials from
         * ExecReload=; they are restart-only anyway). */
        CONFIG_NO_CREDENTIALS = 1 << 0,
        /* allvarsctl's file: the pepper is not required (config_load_client). */
        CONFIG_CLIENT = 1 << 1,
};
int config_load_flags(const char *path, unsigned flags, config **ret, char *err, size_t err_size);
/* Parse from a string (tests, fuzzing); name is used in error messages. */
int config_parse_string(const char *name, const char *text, config **ret, char *err, size_t err_size);
/* allvarsctl's configuration (CTL_CONFIG_DEFAULT_PATH): the same keys, of
 * which it uses database.*, kafka.*, topics.* and clock.file; the pepper is
 * not required (an operator has no business reading it). */
#define CTL_CONFIG_DEFAULT_PATH "/etc/allvarsd/allvarsctl.conf"
int config_load_client(const char *path, config **ret, char *err, size_t err_size);
int config_parse_string_client(const char *name, const char *text, config **ret, char *err, size_t err_size);

/* What --check-config adds to parsing, for a configuration about to be
 * deployed (config_check.c): a Kafka to connect to (kafka.bootstrap.servers,
 * or kafka.embedded = true), and a pepper file that only its owner can read
 * (mode 0600 or 0400, as ssh wants of a private key). 0, or -EINVAL with one
 * line naming the fix in err. */
int config_check_deployment(const config *c, char *err, size_t err_size);
/* A configuration is shared by the daemon's threads: config_ref takes one more
 * reference, config_free drops one and frees with the last. */
config *config_ref(config *c);
void config_free(config *c);

/* The effective profile for a referral's district ("" or unknown: the default). */
const profile *config_profile_for(const config *c, const char *district);

/* TLS enforced (config_transport.c): a PostgreSQL server or Kafka broker that
 * is not on a loopback address or a unix socket needs sslmode=verify-full and
 * security.protocol SSL or SASL_SSL; enable.ssl.certificate.verification=false
 * and ssl.endpoint.identification.algorithm=none are refused; all unless
 * insecure.allow_plaintext = true. -EPERM with the reason in err. */
int config_check_transport(const config *c, char *err, size_t err_size);

/* Keys whose change needs a restart, comma-separated, into buf; "" when the
 * new configuration can be applied by SIGHUP. */
void config_restart_needed(const config *old, const config *new, char *buf, size_t size);

/* The restart-only keys as "key = value" lines, a value given as @file: or
 * @credential: as that reference (never its content), other secrets masked:
 * what the running daemon writes to its runtime directory at start. */
void config_restart_write(const config *c, FILE *f);
/* Compare c's restart-only keys with such a text: the keys that differ,
 * comma-separated, into buf; returns 1 when some differ, 0 when none, or a
 * negative errno. */
int config_restart_compare(const config *c, const char *running, char *buf, size_t size);

/* Write the effective values (secrets masked) as "key = value" lines. */
void config_dump(const config *c, FILE *f);
/* Write the table of keys as a roff fragment, for allvarsd.conf(5). */
void config_write_man(FILE *f);
