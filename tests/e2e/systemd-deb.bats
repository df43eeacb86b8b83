#!/usr/bin/env bats
# The Debian package as operators get it: `make deb` (lintian clean), then
# `apt install ./allvarsd_<version>_amd64.deb` under Debian's systemd 252 as PID 1
# of a private namespace (tests/lib/systemd.bash), the database set up as
# README "Install" says, the secrets as systemd credentials, and the daemon run
# with systemctl and read with journalctl. The tests are the steps of an
# operator's day, in order; each needs the ones before it.

load ../lib/unit.bash
load ../lib/stored.bash

VERSION=$(dpkg-parsechangelog -l "$ROOT/deploy/debian/changelog" -S Version)
DEB=$ROOT/build/deb/allvarsd_${VERSION}_$(dpkg --print-architecture).deb

setup_file() {
        unit_skip_unless_possible
        command -v dpkg-buildpackage >/dev/null || skip "dpkg-dev not installed"
        : > "$S/env"
        unit_topics
        # Booted here, so that teardown_file (same process) can power it off and reap it.
        mkdir -p "$S/sd"
        sd_boot "$S/sd"
        export SD_PID SD_UNSHARE_PID SD_CGROUP SD_DIR
}

teardown_file() {
        unit_teardown_file
}

setup() {
        unit_load_env
}

# As a person reads it, in the test's output.
show_to_log() { sed 's/^/# /' >&3; }

@test "make deb: the package builds and lintian finds nothing (overrides say why)" {
        SECONDS=0
        make -C "$ROOT" -s deb > "$S/deb.log" 2>&1 || { tail -30 "$S/deb.log"; false; }
        [[ -f $DEB ]]
        echo "make deb took ${SECONDS}s" | show_to_log
        dpkg-deb -c "$DEB" | grep -q ' ./usr/lib/systemd/catalog/allvarsd.catalog$'
}

@test "1. apt install: user from sysusers, permissions from tmpfiles, unit neither enabled nor started" {
        SECONDS=0
        # man-db's trigger (rebuilding every manual page index) is most of apt's
        # time and none of the package's business: off in this throwaway root.
        sd_run rm -f /var/lib/man-db/auto-update
        cp "$DEB" "$(sd_path /tmp)/"
        sd_run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "/tmp/${DEB##*/}" > "$S/apt.log" 2>&1 ||
                { cat "$S/apt.log"; false; }
        [[ $(sd_run getent passwd allvarsd | cut -d: -f7) == */nologin ]]
        [[ $(sd_run stat -c '%a %U %G' /etc/allvarsd/allvarsd.conf) == "640 root allvarsd" ]]
        [[ $(sd_run stat -c '%a %U %G' /etc/allvarsd/credentials) == "700 root root" ]]
        [[ $(sd_run dpkg-query -W -f '${Conffiles}' allvarsd) == *" /etc/allvarsd/allvarsd.conf "* ]]
        [[ $(sd_systemctl is-enabled allvarsd.service || true) == disabled ]]
        [[ $(show ActiveState) == inactive ]]
        [[ $(sd_run allvarsd --version) == "allvarsd $VERSION" ]]
        sd_run test -f /usr/share/allvarsd/roles.sql
        sd_run journalctl --list-catalog | grep -q '^8d35574769b44a59ab1a44c996471184 allvarsd'
        echo "apt install took ${SECONDS}s" | show_to_log
}

@test "2. database as README says, secrets as credentials: roles.sql, allvarsctl migrate as allvarsd_owner" {
        DB=sd_$$_$RANDOM
        echo "DB=$DB" >> "$S/env"
        # The DBA: the database and the roles.
        createdb "$DB"
        sd_run psql -XAtq -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres -d "$DB" \
                -f /usr/share/allvarsd/roles.sql -v owner_password=owner-secret -v runtime_password=runtime-secret
        # The schema, by the migration owner, from the installed schemas.
        PGPASSWORD=owner-secret sd_run allvarsctl migrate \
                --database "host=127.0.0.1 port=$PGPORT dbname=$DB user=allvarsd_owner"
        # The secrets, root-only, where the unit's LoadCredential= reads them.
        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$S/pepper"
        printf '%s\n' runtime-secret > "$S/db-password"
        sd_run sh -c 'umask 077; cat > /etc/allvarsd/credentials/pepper' < "$S/pepper"
        sd_run sh -c 'umask 077; cat > /etc/allvarsd/credentials/db-password' < "$S/db-password"
        # Endpoints and topics in the installed configuration; no secret in it.
        unit_conf > "$S/allvarsd.conf"
        sd_run sh -c 'cat > /etc/allvarsd/allvarsd.conf' < "$S/allvarsd.conf"
        ! sd_run grep -q -e runtime-secret -e "$(cat "$S/pepper")" /etc/allvarsd/allvarsd.conf
        # What the operator checks before starting: root reads the credentials in place.
        sd_run env CREDENTIALS_DIRECTORY=/etc/allvarsd/credentials allvarsd --check-config > "$S/check.log"
        tail -1 "$S/check.log" | grep -q ': OK$'
}

@test "3. systemctl start returns at READY; STATUS says what runs; referrals flow and are decided" {
        sd_systemctl start allvarsd.service
        [[ $(show ActiveState SubState | paste -sd' ') == "active running" ]]
        status=$(show StatusText)
        echo "StatusText right after start: $status" | show_to_log
        [[ $status == running* && $status == *"8 partitions"* ]]
        [[ $(show MainPID) -gt 1 ]]
        local f
        for f in "$ROOT"/examples/referrals/*.txtpb; do
                f=${f##*/}
                referral "${f%.txtpb}" "SD-EX-${f%.txtpb}"
        done
        "$BUILD/tests/referral-gen" --bootstrap "$ALLVARS_KAFKA_BOOTSTRAP" --topic "${PREFIX}police.referrals.v1" \
                --count 200 --seed 1 --duplicates 5 --ids-out "$S/ids1" > /dev/null
        sd_wait 60 all_decided "$S/ids1"
        # Every example is decided or, when it is invalid, dead-lettered.
        sd_wait 30 examples_done "$(ls "$ROOT"/examples/referrals/*.txtpb | wc -l)"
        sd_wait 10 status_decided
        show StatusText | show_to_log
}

examples_done() {
        [[ $(sql "select (select count(*) from allvarsd.decisions where referral_id like 'SD-EX-%')
                       + (select count(*) from allvarsd.dead_letters where source_topic = '${PREFIX}police.referrals.v1')") -eq $1 ]]
}
status_decided() { show StatusText | grep -q '^running.*since start: [1-9][0-9]* decided'; }

all_decided() {
        awk '$1 == "valid" || $1 == "dup" { print $2 }' "$@" | sort -u > "$S/expected"
        sql "select referral_id from allvarsd.decisions where referral_id like 'gen-%' order by 1" | sort > "$S/decided"
        cmp -s "$S/expected" "$S/decided"
}

@test "4. systemctl reload: a changed profile is applied, RELOADING and READY reach systemd; a restart-only change fails" {
        pid=$(show MainPID)
        sd_systemctl log-level debug
        unit_conf "profile.name = stockholm-2019" > "$S/allvarsd.conf"
        sd_run sh -c 'cat > /etc/allvarsd/allvarsd.conf' < "$S/allvarsd.conf"
        sd_systemctl reload allvarsd.service
        sd_wait 15 journal_has 'default profile stockholm-2019'
        sd_wait 15 pid1_saw "RELOADING=1"
        sd_wait 15 pid1_saw_ready_after_reloading
        sd_systemctl log-level info
        referral eligible-13-no-guardian-phone SD-RELOAD-1
        sd_wait 30 decided SD-RELOAD-1
        [[ $(sql "select profile_name from allvarsd.decisions where referral_id = 'SD-RELOAD-1'") == stockholm-2019 ]]

        unit_conf "profile.name = stockholm-2019" "kafka.client.id = changed" > "$S/allvarsd.conf"
        sd_run sh -c 'cat > /etc/allvarsd/allvarsd.conf' < "$S/allvarsd.conf"
        run sd_systemctl reload allvarsd.service
        [[ $status -ne 0 ]]
        # (journald writes the check's line when it gets to it: waited for.)
        sd_wait 10 journal_has 'Reload refused: these keys need a restart .*kafka.client.id'
        [[ $(show ActiveState) == active && $(show MainPID) == "$pid" ]]
        unit_conf "profile.name = stockholm-2019" > "$S/allvarsd.conf"
        sd_run sh -c 'cat > /etc/allvarsd/allvarsd.conf' < "$S/allvarsd.conf"
        sd_systemctl reload allvarsd.service
}

journal_has() { sd_journal -u allvarsd.service -o cat | grep -q -- "$1"; }
# PID 1's debug line for a notification of the daemon.
pid1_saw() { sd_journal _PID=1 -o cat | grep 'allvarsd.service: Got notification message' | grep -q -- "$1"; }
pid1_saw_ready_after_reloading() {
        sd_journal _PID=1 -o cat | grep 'allvarsd.service: Got notification message' |
                sed -n '/RELOADING=1/,$p' | grep -q 'READY=1'
}

@test "7. journalctl -o json: stable fields present; journalctl -x explains; no personal data anywhere" {
        sd_journal -u allvarsd.service -o json > "$S/journal.json"
        # Every message of the daemon (not systemd's about it) has these.
        jq -e -s '[.[] | select(._COMM == "allvarsd" and .SYSLOG_IDENTIFIER == "allvarsd")] | length > 10' "$S/journal.json"
        jq -e -s '[.[] | select(._COMM == "allvarsd" and .MESSAGE_ID != null)] |
                  all(.PRIORITY != null and .SYSLOG_IDENTIFIER == "allvarsd")' "$S/journal.json"
        local f
        for f in REFERRAL_ID CASE_ID TOPIC PARTITION OFFSET; do
                jq -e -s --arg f "$f" '[.[] | select(.MESSAGE_ID == "f61abd5465af4fbf93ea0e8901de3790" and has($f))] | length > 0' \
                        "$S/journal.json" > /dev/null || { echo "no DECIDED message with $f"; false; }
        done
        # The catalog: journalctl -x explains a STARTED message.
        sd_run journalctl -x -u allvarsd.service MESSAGE_ID=8d35574769b44a59ab1a44c996471184 --no-pager |
                grep -q 'decides referrals. Nothing to do'
        # No identity number, name, contact detail or address of the inputs in the whole journal.
        personal_values > "$S/personal"
        [[ $(wc -l < "$S/personal") -gt 100 ]]
        sd_journal -o export > "$S/all.export"
        if grep -a -F -f "$S/personal" "$S/all.export" > "$S/leaks"; then
                head -5 "$S/leaks"
                false
        fi
}

# Personal values of every input: read back from the database (as the superuser)
# and from the example files.
personal_values() {
        # The children's, from the stored messages (tests/lib/stored.bash): the identity
        # numbers, "given family", and family names of 6 or more characters.
        stored_referrals_text "$S" > "$S/stored.txt"
        text_values "$S/stored.txt" | awk -F '\t' '
                $1 == "identity_number" && $2 != "" { print $2 }
                $1 == "given_name" { given = $2 }
                $1 == "family_name" && $2 != "" { print given " " $2; if (length($2) >= 6) print $2; given = "" }'
        sql "select phone from allvarsd.case_contacts where phone <> ''
             union select email from allvarsd.case_contacts where email <> ''
             union select postal_address from allvarsd.case_contacts where postal_address <> ''"
        sed -nE 's/^[[:space:]]*(identity_number|phone|email|postal_address|family_name): "([^"\\]{5,})".*/\2/p' \
                "$ROOT"/examples/referrals/*.txtpb | grep -v '^[[:space:]]*$'
}

@test "8. systemd-analyze security on the installed, running unit: 2.0 or lower; the daemon works under it" {
        [[ $(show ActiveState) == active ]]
        sd_run systemd-analyze security --no-pager allvarsd.service > "$S/security.log" 2>&1 || true
        exposure=$(sed -n 's/.*Overall exposure level for allvarsd.service: \([0-9.]*\).*/\1/p' "$S/security.log")
        echo "exposure $exposure" | show_to_log
        [[ -n $exposure ]]
        awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }'
        [[ $(show LimitCORE) == 0 && $(show MemoryMax) == $((1024 * 1024 * 1024)) ]]
        # Working under it: decided since the start (step 3), a new one now.
        referral too-old SD-SEC-1
        sd_wait 30 decided SD-SEC-1
}

@test "9. systemctl status, for a person to read" {
        sd_systemctl status allvarsd.service > "$S/status.log" 2>&1 || true
        show_to_log < "$S/status.log"
        grep -q 'Active: active (running)' "$S/status.log"
        grep -q 'Status: "running' "$S/status.log"
}

@test "5. the watchdog: a stalled main loop is killed and restarted; no referral lost or decided twice" {
        # A test build of the same sources (make's allvarsd-test-hooks: SIGUSR2
        # stalls the main loop) in place of the shipped binary, and a short
        # watchdog for the test's sake; both undone below.
        # (Renamed into place: the running binary cannot be written.)
        cp "$(sd_path /usr/sbin/allvarsd)" "$S/allvarsd.shipped"
        cp "$BUILD/allvarsd-test-hooks" "$(sd_path /usr/sbin/allvarsd.test)"
        mv "$(sd_path /usr/sbin/allvarsd.test)" "$(sd_path /usr/sbin/allvarsd)"
        mkdir -p "$(sd_path /etc/systemd/system/allvarsd.service.d)"
        printf '[Service]\nWatchdogSec=3\nRestartSec=1\n' > "$(sd_path /etc/systemd/system/allvarsd.service.d/test-watchdog.conf)"
        sd_systemctl daemon-reload
        sd_systemctl restart allvarsd.service
        pid=$(show MainPID)
        "$BUILD/tests/referral-gen" --bootstrap "$ALLVARS_KAFKA_BOOTSTRAP" --topic "${PREFIX}police.referrals.v1" \
                --count 300 --seed 2 --duplicates 5 --rate 100 --ids-out "$S/ids2" > /dev/null &
        gen=$!
        # Stalled in the middle of the stream: once the first of these is decided.
        sd_wait 20 some_decided 'gen-2-%'
        sd_run kill -USR2 "$pid"
        wait "$gen"
        sd_wait 30 restarted_after "$pid"
        sd_wait 10 journal_has 'Watchdog timeout'
        [[ $(show NRestarts) -ge 1 ]]
        sd_wait 60 all_decided "$S/ids1" "$S/ids2"
        # Decided once: one decision row each (the primary key) and one DECIDED entry each in the audit trail.
        [[ $(sql "select count(*) from (select referral_id from allvarsd.audit_trail where action = 'DECIDED'
                  group by 1 having count(*) > 1) d") -eq 0 ]]
        cp "$S/allvarsd.shipped" "$(sd_path /usr/sbin/allvarsd.shipped)"
        mv "$(sd_path /usr/sbin/allvarsd.shipped)" "$(sd_path /usr/sbin/allvarsd)"
        rm "$(sd_path /etc/systemd/system/allvarsd.service.d/test-watchdog.conf)"
        sd_systemctl daemon-reload
        sd_systemctl restart allvarsd.service
}

some_decided() { [[ $(sql "select count(*) from allvarsd.decisions where referral_id like '$1'") -gt 0 ]]; }

restarted_after() {
        local now
        now=$(show MainPID)
        [[ $now -gt 1 && $now != "$1" && $(show ActiveState SubState | paste -sd' ') == "active running" ]]
}

@test "6. systemctl stop: drains, exits 0 within TimeoutStopSec; nothing left unpublished" {
        referral late-referral SD-STOP-1
        sd_wait 30 decided SD-STOP-1
        SECONDS=0
        sd_systemctl stop allvarsd.service
        took=$SECONDS
        [[ $took -lt 60 ]]
        [[ $(show ActiveState) == inactive && $(show ExecMainStatus) == 0 && $(show Result) == success ]]
        [[ $(sql "select count(*) from allvarsd.outbox") -eq 0 ]]
        echo "stop took ${took}s" | show_to_log
}
