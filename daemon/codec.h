/* Decoding and validation of what comes in (police referrals, case outcomes),
 * packing of what goes out. Never logs: the caller decides what an error means.
 * A message that fails here goes to the dead-letter path with codec_error. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "allvarssamtal/v1/referral.pb-c.h"
#include "allvarssamtal/v1/outcome.pb-c.h"
#include "allvarssamtal/v1/dead_letter.pb-c.h"

typedef Allvarssamtal__V1__CaseOutcome CaseOutcome;

/* Numbers as allvarssamtal.v1.DeadLetterReason. */
typedef enum dead_letter_reason {
        DLR_EMPTY = 1,
        DLR_OVERSIZED = 2,
        DLR_UNDECODABLE = 3,
        DLR_MISSING_FIELD = 4,
        DLR_INVALID_FIELD = 5,
        DLR_UNKNOWN_ENUM = 6,
        DLR_INVALID_TEXT = 7,
        DLR_TIMESTAMP_OUT_OF_RANGE = 8,
        DLR_UNKNOWN_CASE = 9,
        DLR_ILLEGAL_TRANSITION = 10,
        DLR_WRONG_KEY = 11,
} dead_letter_reason;

#define CODEC_DETAIL_MAX 200

typedef struct codec_error {
        dead_letter_reason reason;
        char detail[CODEC_DETAIL_MAX];  /* one line naming the field; never a field's value */
} codec_error;

/* A decoded message and the memory it lives in (one arena per message). */
typedef struct codec_referral codec_referral;
typedef struct codec_outcome codec_outcome;

/* What decoding one message may allocate at most: 8 bytes per input byte
 * and 16 KiB, up to CODEC_DECODE_BUDGET. A message that needs more (many
 * unknown or repeated fields) is rejected as DLR_OVERSIZED. */
#define CODEC_DECODE_BUDGET (8u << 20)
size_t codec_decode_budget(size_t len);

/* Decode and validate a PoliceReferral. NULL on failure, with err filled in.
 * max_bytes: messages larger than this are DLR_OVERSIZED. */
codec_referral *codec_referral_decode(const void *buf, size_t len, size_t max_bytes, codec_error *err);
const Allvarssamtal__V1__PoliceReferral *codec_referral_msg(const codec_referral *r);
void codec_referral_free(codec_referral *r);
size_t codec_referral_mem(const codec_referral *r);     /* bytes its arena holds; 0 for NULL */

codec_outcome *codec_outcome_decode(const void *buf, size_t len, size_t max_bytes, codec_error *err);
const CaseOutcome *codec_outcome_msg(const codec_outcome *o);
void codec_outcome_free(codec_outcome *o);
size_t codec_outcome_mem(const codec_outcome *o);

const char *dead_letter_reason_code(dead_letter_reason r);     /* "UNDECODABLE", ... */

#define CODEC_ID_MAX 128
/* The message's own id, for the dead letter of a message that failed validation:
 * field 1 (PoliceReferral.referral_id, CaseOutcome.event_id) when buf decodes as
 * desc and that field is an id (1..CODEC_ID_MAX printable ASCII characters);
 * else "". Never validates anything else. */
void codec_message_id(const ProtobufCMessageDescriptor *desc, const void *buf, size_t len, size_t max_bytes,
                      char ret[static CODEC_ID_MAX + 1]);

/* google.protobuf.Timestamp <-> usec_t; a NULL timestamp is 0. */
usec_t codec_timestamp_usec(const Google__Protobuf__Timestamp *ts);
void codec_timestamp_set(Google__Protobuf__Timestamp *ts, usec_t t);

/* Pack any message into a malloc'd buffer. Returns the length, *ret owned by caller. */
size_t codec_pack(const ProtobufCMessage *m, uint8_t **ret);
