#!/bin/bash
# Fault scenario 2: the PostgreSQL server restarted in the middle of a stream,
# once with a fast shutdown (sessions terminated, transactions rolled back, a
# checkpoint) and once immediate (a crash: no checkpoint, WAL recovery at start).
# Each is its own run: database, topics, daemon, stream, with two restarts
# (one in the small size; ALLVARS_FAULTS_PG_RESTARTS). The server stays down
# for PG_DOWN_S seconds (default 2) so that the daemon retries against a closed
# port, not only a restarted one. Both the consumer's and the relay's
# connections are cut; the daemon must reconnect, re-read its positions and go on.
source "$(dirname "$0")/lib.bash"

PG_DOWN_S=${ALLVARS_FAULTS_PG_DOWN_S:-2}
RESTARTS=${ALLVARS_FAULTS_PG_RESTARTS:-$(by_size 1 2)}

# pg_fault MODE: RESTARTS restarts of the given kind during one stream.
pg_fault() {
        local mode=$1 i t0 t_end
        faults_begin "pg-restart-$mode"
        faults_real_kafka
        faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 400
        for ((i = 1; i <= RESTARTS; i++)); do
                decisions_flowing "$(by_size 2 3)"
                say "restart $i: pg_ctl stop -m $mode, $PG_DOWN_S s down, start"
                t0=$(now_s)
                pg_stop_only "$mode" || check_fail "pg_stop_only $mode failed"
                fault_struck
                sleep "$PG_DOWN_S"
                pg_start_again || check_fail "PostgreSQL did not start again"
                t_end=$(now_s)
                recovery_after "restart $i ($mode)" "$t0" "$t_end" 60
        done
        sleep 2
        feed_stop
        faults_finish 120
        grep -q 'PostgreSQL unavailable\|DB_UNAVAILABLE\|connection' "$T/a.log" ||
                check_fail "the daemon never noticed the restart (nothing in its log)"
        faults_stop_all
}

pg_fault fast
pg_fault immediate
faults_exit
