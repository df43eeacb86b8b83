/* The protobuf text format (as `protoc --encode` reads it: the files examples/referrals/NAME.txtpb
 * files), turned into the binary wire format by the message's protobuf-c
 * descriptor, so that a text referral takes the same decoding and validation
 * path (codec.c) as a binary one. No protoc needed at run time. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

/* Encode text (len bytes) as a message of type desc. Returns 0 with *ret (malloc'd)
 * and *ret_len; or -EINVAL with one line in err naming the line and the field,
 * never a value; -ENOMEM. */
int textpb_encode(const ProtobufCMessageDescriptor *desc, const char *text, size_t len, uint8_t **ret,
                  size_t *ret_len, char *err, size_t err_size);

/* Whether buf looks like text format rather than binary: printable UTF-8 text
 * whose first token is a field name of desc or a comment. A binary message starts
 * with a tag byte (field 1..15: 0x08..0x7f only when it is a printable letter, and
 * then what follows is not a name and a ':' or '{'). */
bool textpb_sniff(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len);
