#!/bin/bash
# End to end: `allvarsctl decide` on the example referrals (encoded here with
# protoc --encode from examples/referrals/*.txtpb), compared line by line with
# the exact expected output, and its error handling. Exits non-zero on failure.
#
#   tests/e2e/decide.sh            (BUILD=build-san tests/e2e/decide.sh for the sanitizer build)
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-${ALLVARS_BUILD:-build}}   # tests/run sets ALLVARS_BUILD
CTL=$BUILD/allvarsctl
[ -x "$CTL" ] || { echo "decide.sh: $CTL not built (make)" >&2; exit 1; }
command -v protoc >/dev/null || { echo "decide.sh: protoc not found (protobuf-compiler)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
checks=0

encode() { # NAME: examples/referrals/NAME.txtpb -> $tmp/NAME.bin (text on stdin when NAME is -)
        protoc --proto_path=proto --proto_path=/usr/include \
                --encode=allvarssamtal.v1.PoliceReferral allvarssamtal/v1/referral.proto
}
for f in examples/referrals/*.txtpb; do
        n=$(basename "$f" .txtpb)
        encode < "$f" > "$tmp/$n.bin" || { echo "FAIL: cannot encode $f" >&2; exit 1; }
done

fail() {
        echo "FAIL: $1" >&2
        failures=$((failures + 1))
}

# check NAME EXAMPLE [ARGS...] <<< EXPECTED: the exact standard output, exit 0, nothing on stderr.
check() {
        local name=$1 example=$2
        shift 2
        local expected
        expected=$(cat)
        checks=$((checks + 1))
        local out rc
        out=$("$CTL" decide "$@" "$tmp/$example.bin" 2> "$tmp/stderr")
        rc=$?
        if [ $rc -ne 0 ]; then
                fail "$name: exit $rc: $(cat "$tmp/stderr")"
                return
        fi
        [ -s "$tmp/stderr" ] && fail "$name: unexpected stderr: $(cat "$tmp/stderr")"
        if [ "$out" != "$expected" ]; then
                fail "$name: output differs"
                diff <(echo "$expected") <(echo "$out") | sed 's/^/    /' >&2
        fi
}

# check_error NAME EXPECTED_STDERR_LINE STDIN_FILE [ARGS...]: exit 2, one line on stderr, nothing on stdout.
check_error() {
        local name=$1 expected=$2 input=$3
        shift 3
        checks=$((checks + 1))
        local out rc
        out=$("$CTL" decide "$@" < "$input" 2> "$tmp/stderr")
        rc=$?
        [ $rc -eq 2 ] || fail "$name: exit $rc, expected 2"
        [ -z "$out" ] || fail "$name: printed a decision: $out"
        local lines
        lines=$(wc -l < "$tmp/stderr")
        [ "$lines" -eq 1 ] || fail "$name: $lines lines on stderr"
        case "$(cat "$tmp/stderr")" in
        $expected) ;;
        *) fail "$name: stderr \"$(cat "$tmp/stderr")\", expected \"$expected\"" ;;
        esac
}

# ---- the examples under the default profile (goteborg-motion-2024) ----

check "13-year-old without a guardian's phone" eligible-13-no-guardian-phone --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=CONTACT_MISSING,UNDER_15
age=13
deadline=2025-03-12T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "acute risk" acute-risk --now 2025-03-11T09:00:00Z <<'EOF'
outcome=DEFERRED
reasons=PROTECTIVE_ASSESSMENT_FIRST
flags=UNDER_15
age=14
deadline=
deadline_kind=
protective_assessment_due=2025-03-12T08:15:00Z
profile=goteborg-motion-2024
EOF

check "preliminary investigation" preliminary-investigation --now 2025-03-12T14:00:00Z <<'EOF'
outcome=DEFERRED
reasons=PRELIMINARY_INVESTIGATION
flags=
age=16
deadline=
deadline_kind=
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "too old for Göteborg" too-old --now 2025-03-10T11:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=ABOVE_MAX_AGE
flags=
age=19
deadline=
deadline_kind=
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "ten digits with +" ten-digit-plus --now 2025-03-14T10:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=ABOVE_MAX_AGE
flags=
age=100
deadline=
deadline_kind=
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "samordningsnummer" samordningsnummer --now 2025-03-06T22:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=UNDER_15
age=12
deadline=2025-03-08T21:40:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "bad check digit" bad-check-digit --now 2025-03-10T11:00:00Z <<'EOF'
outcome=MANUAL_REVIEW
reasons=IDENTITY_INVALID
flags=
age=
deadline=
deadline_kind=
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "late referral" late-referral --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=LATE_REFERRAL
age=15
deadline=2025-03-12T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "a non-imprisonable offence is a suspected crime in Göteborg" ds-not-imprisonable --now 2025-02-20T20:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=UNDER_15
age=13
deadline=2025-02-22T19:30:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "age on the Stockholm date" stockholm-midnight-birthday --now 2025-03-09T23:45:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=UNDER_15
age=10
deadline=2025-03-11T23:30:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

# ---- other profiles, history, options ----

check "stockholm-2019: 19 is within 0-20" too-old --profile stockholm-2019 --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=
age=19
deadline=2025-03-12T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=stockholm-2019
EOF

check "stockholm-2019: environment only" samordningsnummer --profile stockholm-2019 --now 2025-03-06T22:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=NO_QUALIFYING_CONCERN
flags=UNDER_15
age=12
deadline=
deadline_kind=
protective_assessment_due=
profile=stockholm-2019
EOF

check "stockholm-2019: not the first suspicion" eligible-13-no-guardian-phone --profile stockholm-2019 \
        --prior-referrals 2 --prior-qualifying 1 --now 2025-03-10T11:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=NOT_FIRST_SUSPICION
flags=CONTACT_MISSING,UNDER_15,REPEAT_REFERRAL
age=13
deadline=
deadline_kind=
protective_assessment_due=
profile=stockholm-2019
EOF

check "ds-2024-30: no imprisonable offence" ds-not-imprisonable --profile ds-2024-30 --now 2025-02-20T20:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=NO_QUALIFYING_CONCERN,NOT_IMPRISONABLE
flags=UNDER_15
age=13
deadline=
deadline_kind=
protective_assessment_due=
profile=ds-2024-30
EOF

check "ds-2024-30: summons within 24 h" late-referral --profile ds-2024-30 --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=LATE_REFERRAL
age=15
deadline=2025-03-11T10:00:00Z
deadline_kind=SUMMONS
protective_assessment_due=
profile=ds-2024-30
EOF

check "ds-2024-30: bad check digit" bad-check-digit --profile ds-2024-30 --now 2025-03-10T11:00:00Z <<'EOF'
outcome=MANUAL_REVIEW
reasons=IDENTITY_INVALID
flags=
age=
deadline=
deadline_kind=
protective_assessment_due=
profile=ds-2024-30
EOF

check "trollhattan-tuti: 14 days" eligible-13-no-guardian-phone --profile trollhattan-tuti --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=CONTACT_MISSING,UNDER_15
age=13
deadline=2025-03-24T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=trollhattan-tuti
EOF

check "trollhattan-tuti: environment only" acute-risk --profile trollhattan-tuti --now 2025-03-11T09:00:00Z <<'EOF'
outcome=NOT_ELIGIBLE
reasons=NO_QUALIFYING_CONCERN
flags=UNDER_15
age=14
deadline=
deadline_kind=
protective_assessment_due=2025-03-12T08:15:00Z
profile=trollhattan-tuti
EOF

check "deadline passed on arrival" eligible-13-no-guardian-phone --now 2025-03-12T10:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=CONTACT_MISSING,UNDER_15,DEADLINE_PASSED_ON_ARRIVAL
age=13
deadline=2025-03-12T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

check "an overridden parameter" eligible-13-no-guardian-phone --set limit_hours=72 --now 2025-03-10T11:00:00Z <<'EOF'
outcome=ELIGIBLE
reasons=
flags=CONTACT_MISSING,UNDER_15
age=13
deadline=2025-03-13T10:00:00Z
deadline_kind=CONVERSATION
protective_assessment_due=
profile=goteborg-motion-2024
EOF

# Standard input instead of a file.
checks=$((checks + 1))
out=$("$CTL" decide --now 2025-03-10T11:00:00Z < "$tmp/late-referral.bin")
[ "$(echo "$out" | head -1)" = "outcome=ELIGIBLE" ] || fail "stdin: $out"
out=$("$CTL" decide --now 2025-03-10T11:00:00Z - < "$tmp/late-referral.bin")
[ "$(echo "$out" | sed -n 3p)" = "flags=LATE_REFERRAL" ] || fail "stdin as -: $out"

# --explain: the eight lines, a blank line, one line per reason and flag.
checks=$((checks + 1))
out=$("$CTL" decide --explain --now 2025-03-10T11:00:00Z "$tmp/eligible-13-no-guardian-phone.bin")
[ "$(echo "$out" | wc -l)" -eq 11 ] || fail "explain: $(echo "$out" | wc -l) lines"
[ -z "$(echo "$out" | sed -n 9p)" ] || fail "explain: no blank line after the decision"
echo "$out" | sed -n 10p | grep -q '^CONTACT_MISSING: .*telefonnummer.* / .*phone number' || fail "explain: CONTACT_MISSING line"
echo "$out" | sed -n 11p | grep -q '^UNDER_15: .* / ' || fail "explain: UNDER_15 line"
out=$("$CTL" decide --explain --profile ds-2024-30 --now 2025-02-20T20:00:00Z "$tmp/ds-not-imprisonable.bin")
echo "$out" | grep -q '^NO_QUALIFYING_CONCERN: ' || fail "explain: NO_QUALIFYING_CONCERN"
echo "$out" | grep -q '^NOT_IMPRISONABLE: .*DS 2024:30' || fail "explain: NOT_IMPRISONABLE"

# The decision does not depend on the clock except for DEADLINE_PASSED_ON_ARRIVAL:
# without --now (today) the 2025 example's deadline has long passed.
checks=$((checks + 1))
out=$("$CTL" decide "$tmp/late-referral.bin")
echo "$out" | grep -qx 'flags=LATE_REFERRAL,DEADLINE_PASSED_ON_ARRIVAL' || fail "default now: $out"

# ---- errors: exit 2, one line naming the problem ----

: > "$tmp/empty"
check_error "empty input" "allvarsctl decide: referral rejected: EMPTY: the message is empty" "$tmp/empty"
printf 'this is not a protobuf\377\377\377' > "$tmp/garbage"
check_error "garbage" "allvarsctl decide: referral rejected: UNDECODABLE: *" "$tmp/garbage"
encode > "$tmp/no-subject.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 1741600800 }
EOF
check_error "no subject" "allvarsctl decide: referral rejected: MISSING_FIELD: subject is required" "$tmp/no-subject.bin"
encode > "$tmp/no-id.bin" <<'EOF'
reported_at { seconds: 1741600800 }
subject { birth_date: "2012-01-01" }
EOF
check_error "no referral_id" "allvarsctl decide: referral rejected: MISSING_FIELD: referral_id is required" "$tmp/no-id.bin"
encode > "$tmp/no-time.bin" <<'EOF'
referral_id: "PM-1"
subject { birth_date: "2012-01-01" }
EOF
check_error "no reported_at" "allvarsctl decide: referral rejected: MISSING_FIELD: reported_at is required" "$tmp/no-time.bin"
encode > "$tmp/old.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 900000000 }
subject { birth_date: "2012-01-01" }
EOF
check_error "reported before 2000" "allvarsctl decide: referral rejected: TIMESTAMP_OUT_OF_RANGE: reported_at *" "$tmp/old.bin"
encode > "$tmp/enum.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 1741600800 }
subject { birth_date: "2012-01-01" }
concerns: 9
EOF
check_error "unknown concern" "allvarsctl decide: referral rejected: UNKNOWN_ENUM: concerns\[0\] *" "$tmp/enum.bin"
printf '\x0a\x04PM-1\x1a\x06\x08\xa0\xf0\xba\xbe\x06\x32\x04\x1a\x02\xff\xfe' > "$tmp/utf8.bin"
check_error "invalid UTF-8" "allvarsctl decide: referral rejected: INVALID_TEXT: subject.given_name *" "$tmp/utf8.bin"
check_error "unknown profile" "allvarsctl decide: unknown profile 'oslo-2030' (known: *)" \
        "$tmp/late-referral.bin" --profile oslo-2030
check_error "bad --now" "allvarsctl decide: --now: *" "$tmp/late-referral.bin" --now yesterday
check_error "bad --prior-referrals" "allvarsctl decide: --prior-referrals: *" "$tmp/late-referral.bin" --prior-referrals -1
check_error "unknown option" "allvarsctl decide: unknown option *" "$tmp/late-referral.bin" --frobnicate
check_error "bad --set" "allvarsctl decide: --set: unknown profile parameter 'colour'" "$tmp/late-referral.bin" \
        --set colour=blue
check_error "missing file" "allvarsctl decide: $tmp/nope.bin: No such file or directory" "$tmp/empty" "$tmp/nope.bin"

echo "decide.sh: $checks checks, $failures failed"
[ $failures -eq 0 ]
