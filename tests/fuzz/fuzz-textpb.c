/* libFuzzer: arbitrary bytes -> the text format reader of allvarsctl decide
 * (textpb.c) as a PoliceReferral and as a CaseOutcome, then, when it encodes, the
 * codec on what it made. Checks: an error is one line naming a line number, what
 * encodes is a protobuf of the type, and nothing crashes or leaks. Build: make
 * fuzz; run:
 *   build-fuzz/fuzz/fuzz-textpb -max_total_time=60 tests/fuzz/corpus/textpb */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "textpb.h"

#define CHECK(x)                                                                                  \
        do {                                                                                      \
                if (!(x)) {                                                                       \
                        fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #x); \
                        abort();                                                                  \
                }                                                                                 \
        } while (0)

static void one(const ProtobufCMessageDescriptor *d, const uint8_t *data, size_t size) {
        uint8_t *wire = NULL;
        size_t len = 0;
        char err[200];
        (void)textpb_sniff(d, data, size);
        int r = textpb_encode(d, (const char *)data, size, &wire, &len, err, sizeof err);
        if (r < 0) {
                CHECK(wire == NULL);
                CHECK(strncmp(err, "line ", 5) == 0);
                CHECK(strchr(err, '\n') == NULL);
                return;
        }
        CHECK(wire != NULL);
        /* What it made is a valid protobuf of that type, or at least never crashes the codec. */
        codec_error e;
        if (d == &allvarssamtal__v1__police_referral__descriptor)
                codec_referral_free(codec_referral_decode(wire, len, 1024 * 1024, &e));
        else
                codec_outcome_free(codec_outcome_decode(wire, len, 1024 * 1024, &e));
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, len, wire);
        CHECK(m != NULL || len == 0);
        if (m)
                protobuf_c_message_free_unpacked(m, NULL);
        free(wire);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        one(&allvarssamtal__v1__police_referral__descriptor, data, size);
        one(&allvarssamtal__v1__case_outcome__descriptor, data, size);
        return 0;
}
