/* A readable one-line rendering of any protobuf-c message, in the spirit of
 * protobuf's text format ({field: value, ...}; Timestamps as RFC 3339), for
 * `allvarsctl events` and the demo. Not a codec: output only. */
#pragma once

#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

void describe_message(const ProtobufCMessage *m, FILE *f);
/* The same with personal data (names, contact details, identity numbers,
 * birth dates, the narrative, an override's free text) as "(personal)". */
void describe_message_masked(const ProtobufCMessage *m, FILE *f);
/* The descriptor of "allvarssamtal.v1.<Name>" for a CloudEvents ce_type
 * "se.allvarssamtal.v1.<Name>", or NULL. */
const ProtobufCMessageDescriptor *describe_descriptor_for_ce_type(const char *ce_type);
