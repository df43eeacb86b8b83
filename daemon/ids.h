/* Stable identifiers. Case and event ids are name-based UUIDs (RFC 4122 v5), so
 * the same referral always yields the same case id and the same event always
 * the same event id, across crashes and replays. The person key is an
 * HMAC-SHA-256 of the normalised identity number under a secret pepper. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define UUID_STR_LEN 37                 /* 36 characters and NUL */
#define PERSON_KEY_LEN 32

/* The case id of a referral: uuid5(NS_CASE, referral_id). */
void ids_case_id(const char *referral_id, char ret[static UUID_STR_LEN]);
/* The key rule (docs/contract.md "Keys and ids"): every event about a case, in and out,
 * has the case id as its Kafka key. An outcome names its case by case_id or by the
 * police's referral_id (empty strings when absent; one of them is set). Returns 0
 * when key (key_len bytes, NULL when the message had none) is that case's id;
 * -EBADMSG when it is not (a dead letter WRONG_KEY); -EINVAL when case_id and
 * referral_id are both set and name different cases. */
int ids_outcome_key_check(const char *case_id, const char *referral_id, const void *key, size_t key_len);
/* An event id: uuid5(NS_EVENT, case_id "/" name), name e.g. "feedback/RECEIVED". */
void ids_event_id(const char *case_id, const char *name, char ret[static UUID_STR_LEN]);
/* uuid5 over arbitrary bytes, in the given namespace (16 bytes). */
void ids_uuid5(const uint8_t ns[static 16], const void *name, size_t len, char ret[static UUID_STR_LEN]);
/* The order of person keys (memcmp), for qsort and bsearch over arrays of
 * PERSON_KEY_LEN-byte keys; PostgreSQL orders bytea the same way. */
int ids_person_key_cmp(const void *a, const void *b);
/* HMAC-SHA-256(pepper, normalised identity number). Returns 0 or -EIO. */
int ids_person_key(const uint8_t *pepper, size_t pepper_len, const char *normalised,
                   uint8_t ret[static PERSON_KEY_LEN]);
