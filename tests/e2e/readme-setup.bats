#!/usr/bin/env bats
# README "Running it with systemd", by the letter: the lines between the README's
# "<!-- setup: begin" and "<!-- setup: end -->" markers run as they are, in
# order, in one bash with `set -e`. What the test changes is where they act,
# never what they do:
#   - `make install` installs into a scratch root ($R, DESTDIR), and every path
#     under /etc/allvarsd and /usr/share/allvarsd in the lines means that root's;
#     allvarsd and allvarsctl are the installed binaries (PATH);
#   - the DBA is the test server's superuser (PGHOST, PGPORT, PGUSER from
#     tests/lib/pg.sh); db.example.org is that server on 127.0.0.1, without TLS
#     (sslmode; tests/e2e/tls.bats covers verify-full);
#   - `editor` is the newcomer: it sets the brokers and the database server's
#     host and port in the configuration (the endpoints, nothing else);
#   - `systemctl enable --now allvarsd` runs the installed unit's ExecStart=
#     with its LoadCredential= files as $CREDENTIALS_DIRECTORY, as systemd would;
#     `systemctl status allvarsd` waits for READY.
# Then the daemon must run as allvarsd_runtime and decide referrals.

load ../lib/daemon.bash

setup() {
        [[ -n ${ALLVARS_KAFKA_BOOTSTRAP:-} ]] || skip "no real Kafka broker (tests/run e2e starts one)"
        R=$T/root
        real_kafka_topics
        # The README's database name, on the test server: ours alone for this test.
        DB=allvarsd
        dropdb --if-exists --force "$DB"
}

# The daemon systemctl started (not a child of this shell): SIGTERM, bounded.
teardown() {
        local pid
        if [[ -s $T/a.pid ]]; then
                pid=$(cat "$T/a.pid")
                kill -TERM "$pid" 2>/dev/null || true
                wait_for 30 bash -c "! kill -0 $pid" || kill -KILL "$pid" 2>/dev/null || true
        fi
        teardown_daemons
}

# The setup block of the README, as text.
readme_setup_lines() {
        sed -n '/^<!-- setup: begin/,/^<!-- setup: end -->/p' "$ROOT/README.md" | sed '1,2d; $d' | sed '$d'
}

@test "README: the setup block is there, fenced, and names every step in order" {
        # The commands, without their comments.
        output=$(readme_setup_lines | sed 's/^#.*//; s/ # .*//')
        [[ -n $output ]]
        local order=() want=(createdb roles.sql make\ install migrate credentials/pepper credentials/db-password
                editor --check-config enable\ --now status) i=0 w
        for w in "${want[@]}"; do
                grep -n -F -- "$w" <<<"$output" | head -n 1 | cut -d: -f1 | grep -q . ||
                        { echo "the setup block lacks: $w" >&2; false; }
                order+=("$(grep -n -F -- "$w" <<<"$output" | head -n 1 | cut -d: -f1)")
        done
        # In this order.
        for ((i = 1; i < ${#order[@]}; i++)); do
                ((order[i] >= order[i - 1])) || { echo "${want[i]} comes before ${want[i - 1]}" >&2; false; }
        done
}

@test "README: a newcomer following the setup block by the letter ends with a running daemon" {
        readme_setup_lines | sed -e "s#/etc/allvarsd#$R/etc/allvarsd#g" -e "s#/usr/share/allvarsd#$R/usr/share/allvarsd#g" \
                -e "s#host=db.example.org#host=127.0.0.1 port=$PGPORT#g" -e 's#sslmode=verify-full#sslmode=disable#g' \
                >"$T/setup.sh"
        cat >"$T/newcomer.sh" <<EOF
set -euo pipefail
cd "$ROOT"
export PATH="$R/usr/sbin:$R/usr/bin:\$PATH"
OWNER_PASSWORD=$(openssl rand -hex 24)
RUNTIME_PASSWORD=$(openssl rand -hex 24)
OPERATOR_PASSWORD=$(openssl rand -hex 24)
make() { command make -s DESTDIR="$R" "\$@" >/dev/null; }
editor() {
        sed -i -e 's#^kafka.bootstrap.servers = .*#kafka.bootstrap.servers = $KAFKA#' \\
                -e 's#host=db.example.org port=5432#host=127.0.0.1 port=$PGPORT#' \\
                -e 's#sslmode=verify-full sslrootcert=[^ ]*#sslmode=disable#' \\
                -e 's#^kafka.security.protocol = SSL#kafka.security.protocol = PLAINTEXT#' \\
                -e 's#^kafka.ssl.ca.location#\\#kafka.ssl.ca.location#' "\$1"
        # This test's topics and group on the shared broker (not a README step).
        cat >>"\$1" <<CONF
topics.referrals = ${TOPIC_PREFIX}police.referrals.v1
topics.outcomes = ${TOPIC_PREFIX}allvarssamtal.outcomes.v1
topics.scheduling = ${TOPIC_PREFIX}allvarssamtal.scheduling.v1
topics.feedback = ${TOPIC_PREFIX}police.feedback.v1
topics.alerts = ${TOPIC_PREFIX}allvarssamtal.alerts.v1
topics.dead_letter = ${TOPIC_PREFIX}allvarssamtal.deadletter.v1
kafka.group.id = ${TOPIC_PREFIX}allvarsd
log.target = stderr
CONF
}
# systemd: the installed unit's ExecStart= with its LoadCredential= files.
systemctl() {
        local unit=$R/lib/systemd/system/allvarsd.service creds=$T/run-credentials exec
        case "\$*" in
        "enable --now allvarsd")
                mkdir -p "\$creds"
                sed -n 's/^LoadCredential=//p' "\$unit" | while IFS=: read -r name path; do
                        cp "$R\$path" "\$creds/\$name"
                done
                exec=\$(sed -n 's/^ExecStart=//p' "\$unit" | sed "s#/usr/sbin/#$R/usr/sbin/#; s# /etc/# $R/etc/#g")
                CREDENTIALS_DIRECTORY=\$creds setsid \$exec >>"$T/a.log" 2>&1 </dev/null &
                echo \$! >"$T/a.pid"
                ;;
        "status allvarsd")
                for _ in \$(seq 600); do grep -q 'ready: group' "$T/a.log" && return 0; sleep 0.1; done
                cat "$T/a.log" >&2
                return 1
                ;;
        *) echo "systemctl \$*: not emulated" >&2; return 1 ;;
        esac
}
source "$T/setup.sh"
EOF
        run bash "$T/newcomer.sh"
        [[ $status -eq 0 ]] || { echo "$output"; cat "$T/a.log"; false; }
        # Only the endpoints of the example configuration changed (the test broker's TLS off, the test's topics).
        diff "$ROOT/deploy/allvarsd.conf.example" "$R/etc/allvarsd/allvarsd.conf" | grep '^>' >"$T/conf.diff" || true
        grep -vE '^> (kafka.bootstrap.servers|kafka.security.protocol|#kafka.ssl.ca.location|database.conninfo|topics\.[a-z_]+|kafka.group.id|log.target) = ' "$T/conf.diff" |
                { ! grep . ; }
        # As deployed: the daemon is the runtime role, the schema the owner's.
        [[ $(sql "select string_agg(distinct usename, ',') from pg_stat_activity
                  where datname = current_database() and application_name like 'allvarsd%'") == allvarsd_runtime ]]
        [[ $(sql "select nspowner::regrole from pg_namespace where nspname = 'allvarsd'") == allvarsd_owner ]]
        # And it works.
        gen --count 40 --seed 81 --duplicates 10 --malformed 30 --ids-out "$T/ids"
        wait_for 60 bash -c "[[ \$(psql -XAtq -d $DB -c 'select count(*) from allvarsd.decisions') -ge $(expected_ids "$T/ids" | wc -l) ]]"
        check_exactly_once "$T/ids"
}
