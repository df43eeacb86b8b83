#!/bin/bash
# The deploy/ files against systemd's own tools:
#  - "systemd-analyze security --offline=true" rates allvarsd.service at 2.0 or lower;
#  - "systemd-analyze verify" has nothing to say about it;
#  - the sysusers.d and tmpfiles.d files apply in an empty root and give the
#    user, the group and the permissions the unit expects;
#  - every @credential: of the example configuration is loaded by the unit;
#  - the man pages format without warnings.
# Prints "SKIP: ..." and exits 0 where a tool is missing; exits 1 on a failure.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
UNIT=$ROOT/deploy/allvarsd.service
MAX_EXPOSURE=2.0
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

if ! command -v systemd-analyze >/dev/null 2>&1; then
        echo "SKIP: systemd-analyze is not installed (Debian package systemd)"
        exit 0
fi

# --- exposure -------------------------------------------------------------
# The threshold is in tenths: 20 means 2.0.
if out=$(systemd-analyze security --offline=true --threshold=20 --no-pager "$UNIT" 2>&1); then rc=0; else rc=$?; fi
exposure=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$out")
if [[ -z $exposure ]]; then
        echo "$out"
        fail "systemd-analyze security printed no exposure level"
elif [[ $rc -ne 0 ]] || awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e > m) }'; then
        grep '✗' <<<"$out" || true
        fail "exposure $exposure is above $MAX_EXPOSURE"
else
        pass "exposure $exposure (at most $MAX_EXPOSURE)"
fi

# --- verify ---------------------------------------------------------------
# Offline, the binary is not installed: point the Exec lines at one that is,
# so that verify checks everything else. Any line about the unit is a finding.
sed -e 's|/usr/sbin/allvarsd|/bin/true|g' "$UNIT" > "$T/allvarsd.service"
verify=$(systemd-analyze verify --man=no "$T/allvarsd.service" 2>&1 || true)
if grep -q 'allvarsd' <<<"$verify"; then
        echo "$verify"
        fail "systemd-analyze verify has findings"
else
        pass "systemd-analyze verify"
fi

# --- credentials ----------------------------------------------------------
for cred in $(grep -v '^[[:space:]]*#' "$ROOT/deploy/allvarsd.conf.example" | grep -o '@credential:[A-Za-z0-9_.-]*' |
              sed 's/@credential://' | sort -u); do
        if grep -q "^LoadCredential=$cred:" "$UNIT"; then
                pass "credential $cred is loaded by the unit"
        else
                fail "the example configuration uses @credential:$cred, but the unit has no LoadCredential=$cred:"
        fi
done

# --- sysusers and tmpfiles in an empty root -------------------------------
if ! command -v systemd-sysusers >/dev/null 2>&1 || ! command -v systemd-tmpfiles >/dev/null 2>&1; then
        echo "SKIP: systemd-sysusers or systemd-tmpfiles not installed"
elif [[ $(id -u) -ne 0 ]]; then
        echo "SKIP: sysusers/tmpfiles check needs root (ownership in a --root tree)"
else
        R=$T/root
        mkdir -p "$R/usr/lib/sysusers.d" "$R/usr/lib/tmpfiles.d" "$R/etc/allvarsd"
        cp "$ROOT/deploy/allvarsd.sysusers" "$R/usr/lib/sysusers.d/allvarsd.conf"
        cp "$ROOT/deploy/allvarsd.tmpfiles" "$R/usr/lib/tmpfiles.d/allvarsd.conf"
        cp "$ROOT/deploy/allvarsd.conf.example" "$R/etc/allvarsd/allvarsd.conf"
        if systemd-sysusers --root="$R" allvarsd.conf >"$T/sysusers.log" 2>&1 &&
           systemd-tmpfiles --root="$R" --create allvarsd.conf >"$T/tmpfiles.log" 2>&1; then
                gid=$(awk -F: '$1 == "allvarsd" { print $3 }' "$R/etc/group")
                shell=$(awk -F: '$1 == "allvarsd" { print $7 }' "$R/etc/passwd")
                conf=$(stat -c '%a %u %g' "$R/etc/allvarsd/allvarsd.conf")
                creds=$(stat -c '%a %u %g' "$R/etc/allvarsd/credentials")
                if [[ -n $gid && $shell == */nologin && $conf == "640 0 $gid" && $creds == "700 0 0" ]]; then
                        pass "sysusers and tmpfiles: user allvarsd, config 0640 root:allvarsd, credentials 0700 root"
                else
                        fail "sysusers/tmpfiles gave gid=$gid shell=$shell config=($conf) credentials=($creds)"
                fi
        else
                cat "$T/sysusers.log" "$T/tmpfiles.log"
                fail "systemd-sysusers or systemd-tmpfiles refused the files"
        fi
fi

# --- man pages --------------------------------------------------------------
if command -v groff >/dev/null 2>&1; then
        for page in allvarsd.8 allvarsd.conf.5 allvarsctl.1; do
                warnings=$(groff -t -man -ww -z "$ROOT/deploy/$page" 2>&1 || true)
                if [[ -n $warnings ]]; then
                        echo "$warnings"
                        fail "man page $page has warnings"
                else
                        pass "man page $page"
                fi
        done
else
        echo "SKIP: groff not installed, man pages not checked"
fi

if [[ $failures -gt 0 ]]; then
        echo "systemd-security: $failures failure(s)"
        exit 1
fi
echo "systemd-security: all passed"
