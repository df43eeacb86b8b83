#!/usr/bin/env bats
# The shipped unit (deploy/allvarsd.service, from `make install`) under Debian's
# systemd 252 as PID 1 of a private namespace: start, STATUS= at READY, reload of
# a changed profile, a broken file and a restart-only change refused by
# `systemctl reload` while the daemon keeps running. The database is set up as
# deployed and the secrets are the unit's credentials.

load ../lib/unit.bash

setup_file() {
        unit_skip_unless_possible
        : > "$S/env"
        unit_db
        unit_topics
        mkdir -p "$S/sd"
        sd_boot "$S/sd"
        export SD_PID SD_UNSHARE_PID SD_CGROUP SD_DIR
        make -C "$ROOT" -s install DESTDIR="$(sd_path '')" UNITDIR=/usr/lib/systemd/system >/dev/null
        sd_run systemd-sysusers allvarsd.conf
        unit_write_conf
        unit_credentials
        sd_run systemd-tmpfiles --create allvarsd.conf
        sd_systemctl daemon-reload
}

teardown_file() {
        unit_teardown_file
}

setup() {
        unit_load_env
}

journal_has() { unit_journal -o cat | grep -q -- "$1"; }

@test "systemctl start returns after READY, with a STATUS= that says what the daemon does" {
        sd_systemctl start allvarsd.service
        [[ $(show ActiveState SubState | paste -sd' ') == "active running" ]]
        # Read at once: READY=1 carries the state it announces.
        status=$(show StatusText)
        echo "StatusText: $status"
        [[ $status == running* ]]
        [[ $status == *"8 partitions"* ]]
        referral eligible-13-no-guardian-phone SD-START-1
        sd_wait 30 decided SD-START-1
}

@test "systemctl reload applies a changed profile" {
        pid=$(show MainPID)
        [[ $(sql "select profile_name from allvarsd.decisions where referral_id = 'SD-START-1'") == goteborg-motion-2024 ]]
        unit_write_conf "profile.name = stockholm-2019"
        sd_systemctl reload allvarsd.service
        sd_wait 10 journal_has 'default profile stockholm-2019'
        referral eligible-13-no-guardian-phone SD-RELOAD-1
        sd_wait 30 decided SD-RELOAD-1
        [[ $(sql "select profile_name from allvarsd.decisions where referral_id = 'SD-RELOAD-1'") == stockholm-2019 ]]
        [[ $(show MainPID) == "$pid" ]]
}

@test "systemctl reload of a broken file fails, and the daemon keeps running on the old one" {
        pid=$(show MainPID)
        unit_write_conf "profile.name = stockholm-2019" "profile.name = no-such-profile"
        run sd_systemctl reload allvarsd.service
        echo "$output"
        [[ $status -ne 0 ]]
        sd_wait 10 journal_has 'Reload refused: .*no-such-profile'
        [[ $(show ActiveState) == active && $(show MainPID) == "$pid" ]]
        referral eligible-13-no-guardian-phone SD-BROKEN-1
        sd_wait 30 decided SD-BROKEN-1
        [[ $(sql "select profile_name from allvarsd.decisions where referral_id = 'SD-BROKEN-1'") == stockholm-2019 ]]
}

@test "systemctl reload of a restart-only change fails and names the key" {
        pid=$(show MainPID)
        unit_write_conf "profile.name = stockholm-2019" "batch.connections = 1" "topics.alerts = ${PREFIX}other.alerts"
        run sd_systemctl reload allvarsd.service
        echo "$output"
        [[ $status -ne 0 ]]
        sd_wait 30 journal_has 'Reload refused: these keys need a restart .*topics.alerts'
        [[ $(show ActiveState) == active && $(show MainPID) == "$pid" ]]
        # Put back, the reload works again.
        unit_write_conf "profile.name = stockholm-2019"
        sd_systemctl reload allvarsd.service
}

@test "systemctl stop drains and exits cleanly" {
        sd_systemctl stop allvarsd.service
        [[ $(show ActiveState) == inactive ]]
        [[ $(show ExecMainStatus) == 0 ]]
        [[ $(show Result) == success ]]
}
