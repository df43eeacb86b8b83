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

# check_error NAME EXIT EXPECTED_STDERR_LINE STDIN_FILE [ARGS...]: exit EXIT (allvarsctl(1): 1 a
# rejected or unreadable referral, 2 a wrong command line), one line on stderr, nothing on stdout.
check_error() {
        local name=$1 want_rc=$2 expected=$3 input=$4
        shift 4
        checks=$((checks + 1))
        local out rc
        out=$("$CTL" decide "$@" < "$input" 2> "$tmp/stderr")
        rc=$?
        [ $rc -eq "$want_rc" ] || fail "$name: exit $rc, expected $want_rc"
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

# ---- the text format: the same decision as the binary, for every example and profile ----

checks=$((checks + 1))
for f in examples/referrals/*.txtpb; do
        n=$(basename "$f" .txtpb)
        for p in goteborg-motion-2024 stockholm-2019 ds-2024-30 trollhattan-tuti; do
                want=$("$CTL" decide --profile "$p" --now 2025-03-10T11:00:00Z "$tmp/$n.bin" 2>&1)
                for how in "$f" "--format text $f" "--format text -"; do
                        # shellcheck disable=SC2086 # $how is the options and the operand
                        got=$("$CTL" decide --profile "$p" --now 2025-03-10T11:00:00Z $how < "$f" 2>&1)
                        [ "$got" = "$want" ] || fail "text $n under $p ($how): differs from the binary"
                done
        done
done
# Escapes, lists, angle brackets and separators, as protoc reads them.
checks=$((checks + 1))
cat > "$tmp/syntax.txtpb" <<'EOF'
referral_id: 'PM-\x41\101-1' # comment
reported_at < seconds: 1741600800 >, incident_at: { seconds: 1741537800 };
subject { identity_number: "2011" "0923-3849" given_name: "\303\205sa\t\"A\" \u00c5" }
concerns: [CONCERN_CRIMINAL_BEHAVIOUR, 3]
offences { code: "BRB 8:2" severity: 1 imprisonable: t }
guardians [{ name: "x" }, { name: "y" phone: "070" }]
EOF
encode < "$tmp/syntax.txtpb" > "$tmp/syntax.bin" || fail "protoc cannot encode the syntax example"
want=$("$CTL" decide --json --now 2025-03-10T11:00:00Z "$tmp/syntax.bin" 2>&1)
got=$("$CTL" decide --json --now 2025-03-10T11:00:00Z "$tmp/syntax.txtpb" 2>&1)
[ "$got" = "$want" ] || fail "text syntax: \"$got\" differs from \"$want\""
[ "$(echo "$got" | jq -r .outcome)" = ELIGIBLE ] || fail "text syntax: $got"

# ---- --json: one object, the same decision ----

checks=$((checks + 1))
out=$("$CTL" decide --json --explain --now 2025-03-10T11:00:00Z "$tmp/eligible-13-no-guardian-phone.bin")
[ "$(echo "$out" | wc -l)" -eq 1 ] || fail "json: not one line"
[ "$(echo "$out" | jq -c '[.outcome, .reasons, [.flags[].code], .age, .deadline, .deadline_kind,
        .protective_assessment_due, .profile]')" = \
  '["ELIGIBLE",[],["CONTACT_MISSING","UNDER_15"],13,"2025-03-12T10:00:00Z","CONVERSATION",null,"goteborg-motion-2024"]' ] ||
        fail "json: $out"
echo "$out" | jq -e '.flags[0].sv | test("telefonnummer")' >/dev/null || fail "json: no Swedish explanation"
out=$("$CTL" decide --json --profile ds-2024-30 --now 2025-02-20T20:00:00Z "$tmp/ds-not-imprisonable.bin")
[ "$(echo "$out" | jq -c '[.outcome, .reasons, .age, .deadline]')" = \
  '["NOT_ELIGIBLE",["NO_QUALIFYING_CONCERN","NOT_IMPRISONABLE"],13,null]' ] || fail "json not eligible: $out"

# ---- --config: the daemon's profile for the referral's district ----

checks=$((checks + 1))
# As deployed, with the secrets as files (decide reads the whole configuration, as
# check-config does: run it where the daemon's credentials can be read).
head -c 48 /dev/urandom > "$tmp/pepper"
sed -e "s|^pepper = .*|pepper = @file:$tmp/pepper|" -e '/^database.password = /d' \
    -e 's/^#district.hisingen.profile = .*/district.hisingen.profile = trollhattan-tuti/' \
    -e 's/^#district.nordost.limit_hours = .*/district.nordost.limit_hours = 72/' \
    deploy/allvarsd.conf.example > "$tmp/allvarsd.conf"
grep -q '^district.hisingen.profile = trollhattan-tuti' "$tmp/allvarsd.conf" || fail "config: no district line"
# eligible-13-no-guardian-phone is in hisingen: TUTI's 14 days, as the daemon would give.
out=$("$CTL" decide --config "$tmp/allvarsd.conf" --now 2025-03-10T11:00:00Z "$tmp/eligible-13-no-guardian-phone.bin" 2>&1)
echo "$out" | grep -qx 'profile=trollhattan-tuti' || fail "config hisingen: $out"
echo "$out" | grep -qx 'deadline=2025-03-24T10:00:00Z' || fail "config hisingen deadline: $out"
# Another district (case folded), and no district: the configured default.
sed 's/^district: .*/district: "NordOst"/' examples/referrals/eligible-13-no-guardian-phone.txtpb > "$tmp/nordost.txtpb"
out=$("$CTL" decide --config "$tmp/allvarsd.conf" --now 2025-03-10T11:00:00Z "$tmp/nordost.txtpb" 2>&1)
echo "$out" | grep -qx 'deadline=2025-03-13T10:00:00Z' || fail "config nordost (72 h): $out"
sed '/^district: /d' examples/referrals/eligible-13-no-guardian-phone.txtpb > "$tmp/nodistrict.txtpb"
out=$("$CTL" decide --config "$tmp/allvarsd.conf" --now 2025-03-10T11:00:00Z "$tmp/nodistrict.txtpb" 2>&1)
echo "$out" | grep -qx 'profile=goteborg-motion-2024' || fail "config default: $out"
echo "$out" | grep -qx 'deadline=2025-03-12T10:00:00Z' || fail "config default deadline: $out"

# ---- errors: exit 1 (the referral) or 2 (the command line), one line naming the problem ----

: > "$tmp/empty"
check_error "empty input" 1 "allvarsctl decide: referral rejected: EMPTY: the message is empty" "$tmp/empty"
printf 'this is not a protobuf\377\377\377' > "$tmp/garbage"
check_error "garbage" 1 "allvarsctl decide: referral rejected: UNDECODABLE: *" "$tmp/garbage"
encode > "$tmp/no-subject.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 1741600800 }
EOF
check_error "no subject" 1 "allvarsctl decide: referral rejected: MISSING_FIELD: subject is required" "$tmp/no-subject.bin"
encode > "$tmp/no-id.bin" <<'EOF'
reported_at { seconds: 1741600800 }
subject { birth_date: "2012-01-01" }
EOF
check_error "no referral_id" 1 "allvarsctl decide: referral rejected: MISSING_FIELD: referral_id is required" "$tmp/no-id.bin"
encode > "$tmp/no-time.bin" <<'EOF'
referral_id: "PM-1"
subject { birth_date: "2012-01-01" }
EOF
check_error "no reported_at" 1 "allvarsctl decide: referral rejected: MISSING_FIELD: reported_at is required" "$tmp/no-time.bin"
encode > "$tmp/old.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 900000000 }
subject { birth_date: "2012-01-01" }
EOF
check_error "reported before 2000" 1 "allvarsctl decide: referral rejected: TIMESTAMP_OUT_OF_RANGE: reported_at *" "$tmp/old.bin"
encode > "$tmp/enum.bin" <<'EOF'
referral_id: "PM-1"
reported_at { seconds: 1741600800 }
subject { birth_date: "2012-01-01" }
concerns: 9
EOF
check_error "unknown concern" 1 "allvarsctl decide: referral rejected: UNKNOWN_ENUM: concerns\[0\] *" "$tmp/enum.bin"
printf '\x0a\x04PM-1\x1a\x06\x08\xa0\xf0\xba\xbe\x06\x32\x04\x1a\x02\xff\xfe' > "$tmp/utf8.bin"
check_error "invalid UTF-8" 1 "allvarsctl decide: referral rejected: INVALID_TEXT: subject.given_name *" "$tmp/utf8.bin"
check_error "unknown profile" 2 "allvarsctl decide: unknown profile 'oslo-2030' (known: *)" \
        "$tmp/late-referral.bin" --profile oslo-2030
check_error "bad --now" 2 "allvarsctl decide: --now: *" "$tmp/late-referral.bin" --now yesterday
check_error "bad --prior-referrals" 2 "allvarsctl decide: --prior-referrals: *" "$tmp/late-referral.bin" --prior-referrals -1
check_error "unknown option" 2 "allvarsctl decide: unknown option *" "$tmp/late-referral.bin" --frobnicate
check_error "bad --set" 2 "allvarsctl decide: --set: unknown profile parameter 'colour' (see allvarsctl decide --help)" "$tmp/late-referral.bin" \
        --set colour=blue
check_error "a bad configuration" 1 "allvarsctl decide: configuration: *" "$tmp/late-referral.bin" \
        --config "$tmp/nope.conf"
check_error "--config and --profile" 2 "allvarsctl decide: --profile or --config, not both*" \
        "$tmp/late-referral.bin" --config "$tmp/allvarsd.conf" --profile ds-2024-30
check_error "bad --format" 2 "allvarsctl decide: --format: auto, text or binary, not json*" \
        "$tmp/late-referral.bin" --format json
printf 'referral_id: "PM-1"\nsubject { given_name: "Hemlig Person" nickname: "Hemlig" }\n' > "$tmp/bad.txtpb"
check_error "unknown field in text" 1 \
        "allvarsctl decide: referral rejected: not a PoliceReferral in text format: line 2: Person has no field nickname" \
        "$tmp/bad.txtpb" --format text
printf 'referral_id: "PM-1"\nreported_at { seconds: "Hemlig" }\n' > "$tmp/bad2.txtpb"
check_error "a string for a number" 1 \
        "allvarsctl decide: referral rejected: not a PoliceReferral in text format: line 2: seconds: expected a value" \
        "$tmp/bad2.txtpb"
check_error "text as binary" 1 "allvarsctl decide: referral rejected: UNDECODABLE: *" \
        "examples/referrals/too-old.txtpb" --format binary
check_error "missing file" 1 "allvarsctl decide: $tmp/nope.bin: No such file or directory" "$tmp/empty" "$tmp/nope.bin"

echo "decide.sh: $checks checks, $failures failed"
[ $failures -eq 0 ]
