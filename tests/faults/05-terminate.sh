#!/bin/bash
# Fault scenario 5: the database connection dropped mid-transaction. During the
# stream the daemon's backends are terminated with pg_terminate_backend, 15
# rounds (6 in the small size; ALLVARS_FAULTS_TERMINATE_ROUNDS): the backend that
# decides (waiting until it is inside a transaction, state 'active' or 'idle in
# transaction' with xact_start set, so that a batch, a deadline watch pass or a
# COMMIT is cut), and every other round the relay's backend as well
# (application_name allvarsd-relay: the lock holder's session ends, so the relay
# loses its lock mid-publication).
# The daemon must roll back, reconnect, re-read its positions and go on.
# A full disk (a small tmpfs tablespace) is not simulated: see README.md.
source "$(dirname "$0")/lib.bash"

ROUNDS=${ALLVARS_FAULTS_TERMINATE_ROUNDS:-$(by_size 6 15)}

# terminate_in_transaction: terminate the daemon's non-relay backends once one
# of them is inside a transaction (polled for up to 2 s); prints the server's
# clock at the termination (epoch seconds), how many and in which states.
terminate_in_transaction() {
        local i out
        for ((i = 0; i < 100; i++)); do
                out=$(sql "select extract(epoch from clock_timestamp()) || ' ' || count(*) || ' '
                                  || coalesce(string_agg(state, ','), '')
                             from (select state, pg_terminate_backend(pid) from pg_stat_activity
                                   where datname = current_database() and pid <> pg_backend_pid()
                                     and application_name <> 'allvarsd-relay' and backend_type = 'client backend'
                                     and application_name not in ('psql', 'allvarsctl')
                                     and xact_start is not null
                                     and state in ('active', 'idle in transaction')) t" 2>/dev/null)
                if [[ $(cut -d' ' -f2 <<<"$out") =~ ^[1-9] ]]; then
                        echo "$out"
                        return 0
                fi
                sleep 0.02
        done
        # Never caught in a transaction: cut the idle session instead.
        out=$(sql "select extract(epoch from clock_timestamp()) || ' ' || count(*) || ' idle'
                     from (select pg_terminate_backend(pid) from pg_stat_activity
                     where datname = current_database() and pid <> pg_backend_pid()
                       and application_name <> 'allvarsd-relay' and backend_type = 'client backend'
                       and application_name not in ('psql', 'allvarsctl')) t")
        echo "$out"
}

terminate_relay() {
        sql "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
               where datname = current_database() and application_name = 'allvarsd-relay') t"
}

faults_begin terminate
faults_real_kafka
faults_conf a
daemon_migrate a >/dev/null || check_fail "migration failed"
daemon_start a
daemon_ready a 60 || check_fail "the daemon did not become ready"
feed_start 400
sleep 2
say "backends: $(sql "select string_agg(application_name || ':' || state, ' ') from pg_stat_activity
                      where datname = current_database() and pid <> pg_backend_pid()")"
in_xact=0
for ((k = 1; k <= ROUNDS; k++)); do
        out=$(terminate_in_transaction)
        t0=${out%% *}
        got=${out#* }
        fault_struck
        [[ $got == *active* || $got == *transaction* ]] && in_xact=$((in_xact + 1))
        what="round $k: terminated $got"
        if ((k % 2 == 0)); then
                what+=", relay backends $(terminate_relay)"
        fi
        say "$what"
        recovery_after "round $k" "$t0" "$t0" 60
        sleep "0.$((3 + RANDOM % 7))"
done
say "$in_xact of $ROUNDS terminations cut a transaction"
((in_xact > 0)) || check_fail "no termination caught the daemon inside a transaction"
sleep 2
feed_stop
faults_finish 120
lost_conn=$(grep -c 'PostgreSQL unavailable\|DB_UNAVAILABLE' "$T/a.log")
say "the daemon logged the loss of its connection $lost_conn times"
((lost_conn > 0)) || check_fail "the daemon never logged a lost connection"
faults_stop_all
faults_exit
