#!/usr/bin/env bats
# The deployed shape the whole suite runs in (tests/lib/deployed.bash): the
# shipped example configuration parses, names a role that deploy/roles.sql
# creates, and every test configuration is that example with only endpoints,
# paths, secrets and the tests' timings changed.

load ../lib/daemon.bash

setup() {
        DEPLOYED_SECRETS=$T/secrets
}

teardown() {
        teardown_daemons
}

@test "deploy/allvarsd.conf.example parses as shipped, with its secrets as credentials" {
        run env CREDENTIALS_DIRECTORY="$(deployed_credentials allvarsd_runtime)" \
                "$BUILD/allvarsd" --check-config --config "$DEPLOYED_EXAMPLE"
        [[ $status -eq 0 ]] || { echo "$output"; false; }
        [[ ${lines[-1]} == "# $DEPLOYED_EXAMPLE: OK" ]]
}

@test "the example's database role is allvarsd_runtime, created by deploy/roles.sql with LOGIN and nothing more" {
        role=$(deployed_example_role)
        [[ $role == allvarsd_runtime ]]
        deployed_roles_created | grep -qx "$role"
        deployed_roles_created | grep -qx allvarsd_owner
        # allvarsctl's role too (tests/lib/deployed.bash ALLVARS_CTL_ROLE).
        deployed_roles_created | grep -qx "$ALLVARS_CTL_ROLE"
        db_create
        [[ $(sql "select rolcanlogin::text || rolsuper::text || rolcreaterole::text || rolcreatedb::text
                  from pg_roles where rolname = '$role'") == truefalsefalsefalse ]]
}

@test "a test's configuration is the example with only endpoints, paths, secrets and the test timings changed" {
        db_create
        KAFKA=127.0.0.1:9
        daemon_conf a "clock.file = $T/clock"
        local timings=() t
        for t in "${DAEMON_TEST_TIMINGS[@]}"; do timings+=("${t%% =*}"); done
        deployed_conf_check "$T/a.conf" clock.file "${timings[@]}"
        # The check can fail: a key the test did not name.
        daemon_conf b "batch.max_messages = 7"
        run deployed_conf_check "$T/b.conf" "${timings[@]}"
        [[ $status -ne 0 && $output == *"changes batch.max_messages"* ]]
        # It keeps the example's role and application name; the endpoint is this test's.
        [[ $(deployed_conf_role "$T/a.conf") == allvarsd_runtime ]]
        grep -q "^database.conninfo = host=$PGHOST port=$PGPORT dbname=$DB user=allvarsd_runtime .*application_name=allvarsd" "$T/a.conf"
}

@test "the migrations run as allvarsd_owner, who owns every table; the runtime role owns nothing" {
        db_create
        KAFKA=127.0.0.1:9
        daemon_conf a
        daemon_migrate a
        [[ $(sql "select count(*) from pg_tables where schemaname = 'allvarsd' and tableowner <> 'allvarsd_owner'") -eq 0 ]]
        [[ $(sql "select count(*) from pg_tables where schemaname = 'allvarsd'") -ge 10 ]]
        [[ $(sql "select count(*) from pg_class c join pg_roles r on r.oid = c.relowner where r.rolname = 'allvarsd_runtime'") -eq 0 ]]
}
