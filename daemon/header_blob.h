/* A Kafka message's headers as one byte string: what the dead_letters row keeps
 * (source_headers) so that `allvarsctl dead-letters replay` sends the message
 * again with the headers it came with. For each header, in order:
 *   the name's length (2 bytes, big-endian), the name,
 *   the value's length (4 bytes, big-endian; 0xffffffff for a NULL value), the value.
 * Also the ce_id of a message, as a dead letter names it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#define HEADER_ID_MAX 128

/* The blob of h (NULL or none: *ret NULL, length 0). Returns 0 or -ENOMEM;
 * -E2BIG for a name longer than 65535 bytes. *ret is malloc'd. */
int header_blob_encode(const rd_kafka_headers_t *h, uint8_t **ret, size_t *ret_len);
/* The headers of a blob, appended to h. -EBADMSG when it is not one. */
int header_blob_decode(const uint8_t *blob, size_t len, rd_kafka_headers_t *h);
/* The last header `name` of h when it is an id (1 to HEADER_ID_MAX printable
 * ASCII characters), copied into ret; else "" (absent, or anything else: a dead
 * letter carries no unchecked bytes). */
void header_id(const rd_kafka_headers_t *h, const char *name, char ret[static HEADER_ID_MAX + 1]);
