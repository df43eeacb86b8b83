# The referrals as stored, decoded, for the tests that look for their personal
# values elsewhere (the journal, the feedback topic, the logs). Since schema 17
# (schemas/017_personal_payload.sql) the child's identity number, names and the
# narrative are stored only inside the message as consumed
# (referral_personal.payload), so they are read from there.
#
# Needs: sql (tests/lib/daemon.bash or unit.bash: psql as the superuser), ROOT,
# protoc.

# The string fields that carry personal data in a PoliceReferral or CaseOutcome.
PERSONAL_FIELDS='identity_number|birth_date|given_name|family_name|name|phone|email|postal_address|narrative|reason'

# stored_referrals_text DIR: every stored PoliceReferral in protobuf text
# format, each as one "r { ... }" block. The messages are framed as the
# repeated field 1 of a wrapper message (DIR/stored.proto, written here), so
# each decodes on its own: concatenated bare messages would merge into one,
# the last subject's fields winning.
stored_referrals_text() {
        local dir=$1
        cat >"$dir/stored.proto" <<'EOF'
syntax = "proto3";
import "allvarssamtal/v1/referral.proto";
message Stored { repeated allvarssamtal.v1.PoliceReferral r = 1; }
EOF
        # Each payload as field 1, wire type 2: tag 0x0a, its length as a
        # varint (up to three bytes: 2 MiB), the bytes.
        sql "select encode(coalesce(string_agg('\\x0a'::bytea || (case
                    when n < 128 then set_byte('\\x00'::bytea, 0, n)
                    when n < 16384 then set_byte(set_byte('\\x0000'::bytea, 0, (n & 127) | 128), 1, n >> 7)
                    else set_byte(set_byte(set_byte('\\x000000'::bytea, 0, (n & 127) | 128), 1,
                                           ((n >> 7) & 127) | 128), 2, n >> 14) end) || payload,
                    ''::bytea order by referral_id), ''::bytea), 'base64')
               from (select referral_id, payload, length(payload) as n from allvarsd.referral_personal) p" |
                base64 -d >"$dir/stored.bin"
        protoc --proto_path="$dir" --proto_path="$ROOT/proto" --proto_path=/usr/include --decode=Stored \
                "$dir/stored.proto" <"$dir/stored.bin"
}

# stored_referral_text REFERRAL_ID: one stored PoliceReferral in protobuf text format.
stored_referral_text() {
        sql "select encode(payload, 'base64') from allvarsd.referral_personal where referral_id = '$1'" |
                base64 -d |
                protoc --proto_path="$ROOT/proto" --proto_path=/usr/include \
                        --decode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto
}

# text_values FILE...: from protobuf text format (the example files, or
# protoc --decode, which escapes non-ASCII bytes as octal), the personal
# string fields as "FIELD<TAB>VALUE" lines, unescaped.
text_values() {
        # One process for every line (a printf and a sed per value took half a
        # minute of no-personal-data.bats on a slow machine). The escapes of the
        # text format (C's): \ooo a byte in octal, \xHH in hex, \n \r \t, and \" \' \\.
        PERSONAL_FIELDS=$PERSONAL_FIELDS perl -ne '
                BEGIN { %c = (n => "\n", r => "\r", t => "\t", a => "\a", b => "\b", f => "\f", v => "\013") }
                next unless /^\s*($ENV{PERSONAL_FIELDS}): "((?:\\.|[^"\\])*)"/;
                my ($field, $value) = ($1, $2);
                $value =~ s{\\([0-7]{1,3}|x[0-9A-Fa-f]{1,2}|.)}{
                        my $e = $1;
                        $e =~ /^[0-7]/ ? chr(oct($e)) : $e =~ /^x(.+)/ ? chr(hex($1)) : exists $c{$e} ? $c{$e} : $e
                }ge;
                print "$field\t$value\n";
        ' "$@"
}
