#!/bin/bash
# Fault scenario 10: PostgreSQL's disk fills during a stream. The scenario's
# database lives in a tablespace of its own on a size-limited tmpfs (mounted
# by the script: it runs as root, as tests/run does here), so that the runner's
# server and every other database keep their disk; the server's pg_wal stays
# on its data directory. During the stream the script fills the tmpfs to the
# last byte with a file of its own, holds it full, then deletes the file:
#   disk-full   full for 6 s (the small size) or 30 s (ALLVARS_FAULTS_DISK_FULL_S)
# What PostgreSQL does then: every statement that must extend a table or index
# file fails with ERROR 53100 (disk_full, "could not extend file ...: No space
# left on device"); the server itself runs on. (A full pg_wal is another fault:
# the server PANICs and stops, which 02-pg-restart.sh covers as a crash.)
# The daemon must treat it as an outage: no dead letter for a good referral
# (class 53 is "wait and retry", daemon/sqlstate.c), a log line and STATUS=
# naming the full disk and its fix, within NOTICE_BOUND_S, nothing lost, and
# decisions again by themselves once the space is freed.
source "$(dirname "$0")/lib.bash"

FULL_S=${ALLVARS_FAULTS_DISK_FULL_S:-$(by_size 6 30)}
NOTICE_BOUND_S=${ALLVARS_FAULTS_NOTICE_BOUND_S:-15}
DISK_MB=${ALLVARS_FAULTS_DISK_MB:-256}
NOTICED="PostgreSQL's disk is full"

((EUID == 0)) || {
        echo "SKIP: [machine] mounting the scenario's tmpfs needs root"
        exit 77
}

faults_begin disk-full
faults_real_kafka

# The tablespace: a tmpfs owned by the server's user, the database moved onto
# it before anything is in it.
# Not under $FAULTS_BASE: the server's user must reach it (mktemp -d is 0700).
DISK=$(mktemp -d /tmp/allvars-disk.XXXXXX) && chmod 0711 "$DISK" || exit 2
TABLESPACE=flt_disk_$$
PG_OWNER=$(stat -c %u:%g "$ALLVARS_PG_DIR/data")
disk_cleanup() {
        if [[ -z ${ALLVARS_FAULTS_KEEP:-} ]]; then
                dropdb --if-exists --force "$DB" 2>/dev/null
                psql -XAtq -d postgres -c "drop tablespace if exists $TABLESPACE" 2>/dev/null
                umount "$DISK" 2>/dev/null && rmdir "$DISK"
        fi
        return 0
}
allvars_cleanup_add disk_cleanup
mount -t tmpfs -o "size=${DISK_MB}m,mode=0700,uid=${PG_OWNER%:*},gid=${PG_OWNER#*:}" tmpfs "$DISK" || {
        echo "SKIP: [machine] cannot mount a tmpfs here"
        exit 77
}
install -d -o "${PG_OWNER%:*}" -g "${PG_OWNER#*:}" -m 0700 "$DISK/ts"
psql -XAtq -v ON_ERROR_STOP=1 -d postgres -c "create tablespace $TABLESPACE location '$DISK/ts'" \
        -c "alter database \"$DB\" set tablespace $TABLESPACE" || check_fail "cannot move the database onto the tmpfs"

allvars_free_port MPORT || exit 2
faults_conf a "metrics.listen = 127.0.0.1:$MPORT"
daemon_migrate a >/dev/null || check_fail "migration failed"
# Its sd_notify messages (STATUS=) to a socket of the scenario's own.
"$BUILD/tests/notify-listen" "$T/notify.sock" >"$T/notify.out" 2>&1 &
NOTIFY_PID=$!
NOTIFY_SOCKET=$T/notify.sock daemon_start a
daemon_ready a 60 || check_fail "the daemon did not become ready"

feed_start 300
decisions_flowing "$(by_size 4 8)"
notice_watch "$NOTICED"
say "filling PostgreSQL's disk ($(df -m --output=avail "$DISK" | tail -n 1 | tr -d ' ') MB free of $DISK_MB)"
t0=$(now_s)
dd if=/dev/zero of="$DISK/filler" bs=1M status=none 2>/dev/null
fault_struck
say "full: $(df -k --output=avail "$DISK" | tail -n 1 | tr -d ' ') kB free"
noticed=
if wait_for "$NOTICE_BOUND_S" test -s "$T/noticed"; then
        noticed=$(notice_s "$t0")
        say "the daemon said so $noticed s after the disk filled: $(grep -m1 -o "PostgreSQL unavailable.*" "$T/a.log" |
                cut -c1-200)"
else
        check_fail "the daemon did not say within $NOTICE_BOUND_S s that PostgreSQL's disk is full ('$NOTICED')"
fi
sleep "$FULL_S"
# Still up, and says why: STATUS= names the full disk while it lasts.
kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone while the disk is full"
grep -q "STATUS=.*$NOTICED" "$T/notify.out" || check_fail "STATUS= never named the full disk"
dead_during=$(sql "select count(*) from allvarsd.dead_letters where reason = 'INVALID_FIELD'" 2>/dev/null || echo 0)
# The errors by class (allvarsd_database_errors_total): the full disk's are
# transient, none is taken for a message's bad data (which could be dead-lettered
# as soon as a page of dead_letters had room).
curl -fsS "http://127.0.0.1:$MPORT/metrics" >"$T/metrics" || check_fail "cannot scrape the daemon's metrics"
db_errors() { awk -v c="$1" -F'[ ]' '$1 == "allvarsd_database_errors_total{class=\""c"\"}" { print $2 }' "$T/metrics"; }
say "database errors by class: transient $(db_errors transient), data $(db_errors data), other $(db_errors other)"
[[ $(db_errors transient) -gt 0 ]] || check_fail "no transient database error counted while the disk was full"
[[ $(db_errors data) -eq 0 ]] || check_fail "$(db_errors data) errors of the full disk taken for bad data"
rm -f "$DISK/filler"
t_end=$(now_s)
say "space freed after $(elapsed "$t0" "$t_end") s"
kill "$NOTICE_PID" 2>/dev/null
recovery_after "disk full $FULL_S s" "$t0" "$t_end" 90
grep -q 'PostgreSQL is back' <(tail -n +1 "$T/a.log") || check_fail "the daemon never said that PostgreSQL is back"
sleep 2
feed_stop
faults_finish 120
[[ -n $noticed ]] && faults_record_extra notice_s "$noticed"
((dead_during == 0)) || check_fail "$dead_during INVALID_FIELD dead letters: the full disk taken for bad data"
say "log lines about the outage: $(grep -c 'PostgreSQL unavailable' "$T/a.log") 'unavailable'," \
        "$(grep -c 'PostgreSQL is back' "$T/a.log") 'back', $(grep -c 'Periodic jobs\|Deadline watch' "$T/a.log") from the jobs," \
        "$(grep -c 'Outbox relay standby' "$T/a.log") relay standby"
kill -0 "$(daemon_pid a)" 2>/dev/null || check_fail "the daemon is gone"
kill "$NOTIFY_PID" 2>/dev/null
((SCENARIO_FAILED > 0)) && faults_keep_logs
faults_stop_all
faults_exit
