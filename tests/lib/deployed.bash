# The deployed shape, the only one the tests know (README "Running it with systemd"):
#
#   the superuser       only creates the database and runs deploy/roles.sql in it,
#                       as a DBA would (deployed_db);
#   allvarsd_owner      runs the migrations, `allvarsd --migrate` (deployed_migrate);
#   allvarsd_runtime    runs the daemon (deployed_conf ... allvarsd_runtime);
#   $ALLVARS_CTL_ROLE   runs allvarsctl (deployed_ctl).
#
# Every configuration is deploy/allvarsd.conf.example with only its endpoints,
# paths and secrets changed (deployed_conf): never a hand-written one. Secrets
# stay where the example puts them (@credential:pepper, @credential:db-password),
# read from a credentials directory per role ($CREDENTIALS_DIRECTORY, as
# systemd's LoadCredential= gives them). Needs bash, psql, createdb, and the
# superuser's PG* environment (tests/lib/pg.sh).

DEPLOYED_ROOT=${ALLVARS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
DEPLOYED_EXAMPLE=$DEPLOYED_ROOT/deploy/allvarsd.conf.example
DEPLOYED_CTL_EXAMPLE=$DEPLOYED_ROOT/deploy/allvarsctl.conf.example
DEPLOYED_ROLES=$DEPLOYED_ROOT/deploy/roles.sql

# The role allvarsctl runs as: the one deploy/allvarsctl.conf.example names
# (allvarsd_operator; an operator never uses the daemon's role).
ALLVARS_CTL_ROLE=${ALLVARS_CTL_ROLE:-$(sed -n 's/^database\.conninfo *=.*[[:space:]]user=\([^[:space:]]*\).*/\1/p' \
        "$DEPLOYED_CTL_EXAMPLE" 2>/dev/null)}
ALLVARS_CTL_ROLE=${ALLVARS_CTL_ROLE:-allvarsd_operator}

# The keys a test configuration may change besides the test's own subject:
# endpoints (with the TLS of the example's brokers, off for the plaintext test
# brokers on loopback), paths, secrets, and the log going to stderr where the test reads it.
# deployed_conf_check fails a configuration that changes any other key of the
# example without the test saying so (its KEY = VALUE arguments).
DEPLOYED_ENDPOINT_KEYS='kafka.bootstrap.servers kafka.embedded kafka.security.protocol kafka.ssl.ca.location database.conninfo log.target'

# deployed_db DB: as the superuser, a new database DB and deploy/roles.sql in it,
# with the role passwords of this run ($DEPLOYED_SECRETS/<role>-password).
deployed_db() {
        local db=$1
        deployed_secrets || return 1
        createdb "$db" || return 1
        "$DEPLOYED_ROOT/tests/lib/roles-sql" "$db" \
                -v owner_password="$(cat "$DEPLOYED_SECRETS/allvarsd_owner-password")" \
                -v runtime_password="$(cat "$DEPLOYED_SECRETS/allvarsd_runtime-password")" \
                -v operator_password="$(cat "$DEPLOYED_SECRETS/allvarsd_operator-password")" >/dev/null
}

# deployed_secrets: the pepper and one password per role, made once per
# directory ($T, or DEPLOYED_SECRETS when set), readable by the owner only.
deployed_secrets() {
        DEPLOYED_SECRETS=${DEPLOYED_SECRETS:-$T/secrets}
        [[ -s $DEPLOYED_SECRETS/pepper ]] && return 0
        (
                umask 077
                mkdir -p "$DEPLOYED_SECRETS" &&
                        head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DEPLOYED_SECRETS/pepper" &&
                        for r in allvarsd_owner allvarsd_runtime allvarsd_operator; do
                                head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$DEPLOYED_SECRETS/$r-password"
                        done
        )
}

# deployed_credentials ROLE: the credentials directory of ROLE (what LoadCredential=
# makes in deploy/allvarsd.service): pepper, and db-password with ROLE's password.
deployed_credentials() {
        local role=$1 dir
        deployed_secrets || return 1
        dir=$DEPLOYED_SECRETS/credentials.$role
        if [[ ! -d $dir ]]; then
                (umask 077 && mkdir -p "$dir" && cp "$DEPLOYED_SECRETS/pepper" "$dir/pepper" &&
                        cp "$DEPLOYED_SECRETS/$role-password" "$dir/db-password") || return 1
        fi
        echo "$dir"
}

# deployed_conninfo ROLE DB HOST PORT [EXAMPLE]: the example's database.conninfo with its
# endpoint (host, port, dbname) and role changed; the test server speaks no TLS
# (sslmode; tests/e2e/tls.bats covers verify-full), the rest is the example's.
deployed_conninfo() {
        local role=$1 db=$2 host=$3 port=$4 example=${5:-$DEPLOYED_EXAMPLE} ci
        ci=$(sed -n 's/^database\.conninfo *= *//p' "$example")
        [[ -n $ci ]] || { echo "deployed: no database.conninfo in $DEPLOYED_EXAMPLE" >&2; return 1; }
        awk -v role="$role" -v db="$db" -v host="$host" -v port="$port" -v ci="$ci" 'BEGIN {
                n = split(ci, kv, /[ \t]+/); out = ""
                for (i = 1; i <= n; i++) {
                        k = kv[i]; sub(/=.*/, "", k); v = kv[i]; sub(/^[^=]*=/, "", v)
                        if (k == "host") v = host
                        else if (k == "port") v = port
                        else if (k == "dbname") v = db
                        else if (k == "user" && role != "") v = role
                        else if (k == "sslmode") v = "disable"
                        else if (k == "sslrootcert") continue
                        out = out (out == "" ? "" : " ") k "=" v
                }
                print out
        }'
}

# deployed_example_role: the role the example's database.conninfo names.
deployed_example_role() {
        sed -n 's/^database\.conninfo *=.*[[:space:]]user=\([^[:space:]]*\).*/\1/p' "$DEPLOYED_EXAMPLE"
}

# deployed_conf OUT [KEY = VALUE | #KEY...]: the example with each named key set:
# the line that has the key (set or commented out, "#key = default") becomes
# "key = value" in place; a key the example does not show is added at the end,
# under a comment; "#KEY" comments the key's line out. Nothing else changes.
# DEPLOYED_CONF_FROM names another example (deploy/allvarsctl.conf.example).
deployed_conf() {
        local out=$1
        shift
        # The example reaches its brokers over TLS (the rule for brokers not on
        # this machine); the test brokers on loopback speak plaintext. A test
        # that wants TLS sets these keys itself, which wins.
        printf '%s\n' "#kafka.security.protocol" "#kafka.ssl.ca.location" "$@" | awk '
                NR == FNR {
                        if ($0 ~ /^#[a-z]/) { off[substr($0, 2)] = 1; next }
                        if ($0 !~ /=/) next
                        k = $0; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]+/, "", k)
                        if (!(k in val)) order[++n] = k
                        val[k] = $0
                        next
                }
                {
                        k = $0
                        if (match(k, /^#?[a-z][a-z0-9_.-]*[ \t]*=/)) {
                                k = substr(k, 1, RLENGTH); sub(/^#/, "", k); sub(/[ \t]*=$/, "", k)
                                if ((k in val) && !(k in done)) { print val[k]; done[k] = 1; next }
                                if ((k in off) && $0 !~ /^#/) { print "#" $0; next }
                        }
                        print
                }
                END {
                        for (i = 1; i <= n; i++)
                                if (!(order[i] in done)) {
                                        if (!extra++) print "\n## Set by the test (not shown in the example) ##"
                                        print val[order[i]]
                                }
                }' - "${DEPLOYED_CONF_FROM:-$DEPLOYED_EXAMPLE}" >"$out"
}

# deployed_conf_role CONF: the role CONF connects as (its conninfo's user=).
deployed_conf_role() {
        sed -n 's/^database\.conninfo *=.*[[:space:]]user=\([^[:space:]]*\).*/\1/p' "$1" | tail -n 1
}

# deployed_run CONF CMD...: CMD with CONF's role's credentials ($CREDENTIALS_DIRECTORY).
deployed_run() {
        local conf=$1 role creds
        shift
        role=$(deployed_conf_role "$conf")
        creds=$(deployed_credentials "${role:-allvarsd_runtime}") || return 1
        CREDENTIALS_DIRECTORY=$creds "$@"
}

# deployed_migrate CONF: `allvarsd --migrate` as allvarsd_owner, with CONF (a
# runtime configuration) made the owner's: its conninfo's user and credentials.
deployed_migrate() {
        local conf=$1 owner=${1%.conf}.owner.conf
        sed 's/^\(database\.conninfo *=.*[[:space:]]user=\)[^[:space:]]*/\1allvarsd_owner/' "$conf" >"$owner"
        deployed_run "$owner" "$BUILD/allvarsd" --config "$owner" --migrate --schemas "$DEPLOYED_ROOT/schemas"
}

# deployed_ctl_conf CONF OUT: allvarsctl's configuration for the deployment CONF
# (a daemon configuration) describes: deploy/allvarsctl.conf.example with the
# same endpoints (database, brokers in plain text as the test brokers speak),
# the operator's password file, and the daemon's topics, group and clock.
deployed_ctl_conf() {
        local conf=$1 out=$2 ci host port db k lines=()
        ci=$(sed -n 's/^database\.conninfo *= *//p' "$conf" | tail -n 1)
        host=$(sed -n 's/.*host=\([^ ]*\).*/\1/p' <<<"$ci")
        port=$(sed -n 's/.*port=\([^ ]*\).*/\1/p' <<<"$ci")
        db=$(sed -n 's/.*dbname=\([^ ]*\).*/\1/p' <<<"$ci")
        deployed_secrets || return 1
        lines+=("database.conninfo = $(deployed_conninfo "" "$db" "$host" "$port" "$DEPLOYED_CTL_EXAMPLE")"
                "database.password = @file:$DEPLOYED_SECRETS/$ALLVARS_CTL_ROLE-password"
                "kafka.security.protocol = PLAINTEXT")
        for k in kafka.bootstrap.servers kafka.group.id clock.file topics.referrals topics.outcomes topics.scheduling \
                topics.feedback topics.alerts topics.dead_letter; do
                grep -q "^$k *=" "$conf" && lines+=("$(grep "^$k *=" "$conf" | tail -n 1)")
        done
        # A daemon on the embedded Kafka names no brokers: neither does its
        # allvarsctl (the example's remote brokers would need TLS).
        grep -q "^kafka.bootstrap.servers *=" "$conf" || lines+=("#kafka.bootstrap.servers")
        DEPLOYED_CONF_FROM=$DEPLOYED_CTL_EXAMPLE deployed_conf "$out" "${lines[@]}"
}

# deployed_ctl CONF CMD [ARGS...]: allvarsctl CMD as the operator, with its own
# configuration for the deployment CONF describes (deployed_ctl_conf).
deployed_ctl() {
        local conf=$1 cmd=$2 ctl=${1%.conf}.ctl.conf
        shift 2
        deployed_ctl_conf "$conf" "$ctl" || return 1
        "$BUILD/allvarsctl" "$cmd" --config "$ctl" "$@"
}

# deployed_roles_created: the roles deploy/roles.sql creates, one a line.
deployed_roles_created() {
        grep -oE "CREATE ROLE [a-z_]+" "$DEPLOYED_ROLES" | awk '{ print $3 }' | sort -u
}

# deployed_conf_check CONF [KEY...]: CONF differs from the example only in the
# endpoint keys, the secrets and the KEYs the test named; prints what differs.
deployed_conf_check() {
        local conf=$1 k bad=0
        shift
        local allowed=" $DEPLOYED_ENDPOINT_KEYS $* "
        for k in $(diff <(_deployed_settings "$DEPLOYED_EXAMPLE") <(_deployed_settings "$conf") |
                sed -n 's/^[<>] \([^ =]*\) *=.*/\1/p' | sort -u); do
                if [[ $allowed != *" $k "* ]]; then
                        echo "deployed: $conf changes $k, which is not an endpoint, path or secret" >&2
                        bad=1
                fi
        done
        return $bad
}
_deployed_settings() { grep -E '^[a-z][a-z0-9_.-]* *=' "$1" | sed 's/ *= */ = /' | sort; }
