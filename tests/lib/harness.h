/* Test harness for integration tests: the private PostgreSQL server that
 * tests/run starts (tests/lib/pg.sh exports PGHOST, PGPORT, PGUSER, PGDATABASE),
 * a fresh database per test, and librdkafka's in-process mock cluster.
 * Errors are negative errno values; the reason is printed on stderr, since this
 * is test code and the test's output is where one looks. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* True when pg.sh's environment is present (PGHOST set). */
bool harness_pg_available(void);

/* A connection to dbname (NULL: $PGDATABASE, else "postgres") on the test
 * server. Returns 0 or -ECONNREFUSED. */
int harness_pg_connect(const char *dbname, PGconn **ret);

typedef struct harness_db {
        char name[64];                  /* allvars_t_<pid>_<random> */
        char conninfo[1024];            /* host, port, user and dbname: for store_connect() */
} harness_db;

/* A new, empty database copied from template_name (NULL: template0, which
 * never has other sessions, so CREATE DATABASE cannot fail on them). Make a
 * template with the schema once and copy it per test to save migrations. */
int harness_db_create(const char *template_name, harness_db *ret);
/* Drops it, closing any session still on it (WITH (FORCE)); NULL is fine. */
int harness_db_drop(const harness_db *db);
/* Runs sql (several statements allowed) on db; 0 or -EIO. */
int harness_db_exec(const harness_db *db, const char *sql);

/* The real broker's bootstrap servers when tests/run started one
 * ($ALLVARS_KAFKA_BOOTSTRAP), else NULL. */
const char *harness_kafka_bootstrap(void);

/* librdkafka's mock cluster (in this process, on loopback TCP ports). */
typedef struct harness_mock {
        rd_kafka_t *rk;                 /* the handle that owns the cluster */
        rd_kafka_mock_cluster_t *cluster;
        const char *bootstraps;         /* "127.0.0.1:port,..." for bootstrap.servers */
} harness_mock;

int harness_mock_new(int brokers, harness_mock **ret);
harness_mock *harness_mock_free(harness_mock *m);
/* Creates a topic with partitions partitions, replication factor 1. */
int harness_mock_topic(harness_mock *m, const char *topic, int partitions);
