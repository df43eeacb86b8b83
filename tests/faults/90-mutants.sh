#!/bin/bash
# The fault suite's checks can fail: builds of allvarsd broken on purpose, each
# run through a short scenario (the same stream, outcome events and checks as
# every scenario, no fault), must be caught by the check named for them. This
# script fails when a mutant passes the check it should fail, or when a
# mutation no longer applies to the source (then update it here).
#
#   dup    the referral batch's duplicate check removed: a referral id seen
#          before comes back from the INSERT as new (ON CONFLICT DO UPDATE of a
#          column the runtime role may update), is decided again, and the
#          writes after it do not stop it (the decision and the events kept,
#          the case opened again over the first, the statistics row written
#          again: its insert has no ON CONFLICT of its own, store_referrals.c).
#          Must fire: "duplicate decisions" (since schema 15 by the decision's
#          events stored twice: lib.bash "twice.stored").
#   lost   a referral acknowledged without its decision: the batch's INSERT
#          skips referral ids ending in 7, which then count as seen before and
#          their positions move on. Must fire: "lost".
#
# The mutants are built from a copy of the tree in a temporary directory; the
# figures go to a file of their own, not tests/faults/results.json.
source "$(dirname "$0")/lib.bash"

FAULTS_RESULTS=$FAULTS_BASE/mutants.json
MUTANTS=${ALLVARS_FAULTS_MUTANTS:-dup lost}
SRC=$FAULTS_BASE/src
mutants_failed=0

# stmt_append NAME TEXT: append TEXT to the SQL of the prepared statement NAME
# (daemon/*.c: { "NAME", "..." "..." }), before its closing brace.
stmt_append() {
        local name=$1 text=$2 file
        file=$(grep -l "{ \"$name\"," "$SRC"/daemon/*.c "$SRC"/daemon/*/*.c 2>/dev/null | head -n 1)
        [[ -n $file ]] || { say "MUTATION DOES NOT APPLY: no statement $name in daemon/"; return 1; }
        NAME=$name TEXT=$text perl -0pi -e \
                's/(\{ "\Q$ENV{NAME}\E",.*?")(\s*\},)/$1 " $ENV{TEXT}"$2/s or die "no $ENV{NAME}\n"' "$file"
}

# stmt_replace NAME FROM TO: in the SQL of statement NAME, FROM (once) becomes TO.
stmt_replace() {
        local name=$1 from=$2 to=$3 file
        file=$(grep -l "{ \"$name\"," "$SRC"/daemon/*.c "$SRC"/daemon/*/*.c 2>/dev/null | head -n 1)
        [[ -n $file ]] || { say "MUTATION DOES NOT APPLY: no statement $name in daemon/"; return 1; }
        NAME=$name FROM=$from TO=$to perl -0pi -e \
                's/(\{ "\Q$ENV{NAME}\E",.*?)\Q$ENV{FROM}\E(.*?\},)/$1$ENV{TO}$2/s or die "no \"$ENV{FROM}\" in $ENV{NAME}\n"' \
                "$file"
}

mutate() {
        case $1 in
        dup)
                stmt_replace ref_referrals_insert 'ON CONFLICT (referral_id) DO NOTHING' \
                        'ON CONFLICT (referral_id) DO UPDATE SET purged_at = referrals.purged_at' &&
                        stmt_append ref_decisions_insert 'ON CONFLICT DO NOTHING' &&
                        stmt_append ref_cases_insert 'ON CONFLICT (case_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at' &&
                        stmt_append ref_personal_insert 'ON CONFLICT DO NOTHING' &&
                        stmt_append ref_contacts_insert 'ON CONFLICT DO NOTHING' &&
                        stmt_append ref_stats_insert 'ON CONFLICT DO NOTHING' &&
                        stmt_append rows_outbox 'ON CONFLICT DO NOTHING'
                ;;
        lost)
                stmt_replace ref_referrals_insert '"  ORDER BY u.id' '"  WHERE right(u.id, 1) <> '"'7'"' ORDER BY u.id'
                ;;
        *) say "unknown mutant $1"; return 1 ;;
        esac
}

# build_mutant NAME: $BUILD/allvarsd replaced by the mutant's.
build_mutant() {
        rm -rf "$SRC"
        mkdir -p "$SRC"
        tar -C "$ALLVARS_ROOT" --exclude='./build*' --exclude=./.git --exclude=./.cache -cf - . | tar -C "$SRC" -xf - ||
                return 1
        # The plain build's objects and generated code, with their times: make then
        # compiles only what the mutation changes (or what is older than its source)
        # instead of the whole daemon twice.
        if [[ -f $ALLVARS_ROOT/build/liballvars.a ]]; then
                tar -C "$ALLVARS_ROOT" -cf - build/obj build/gen build/liballvars.a | tar -C "$SRC" -xf - || return 1
        fi
        mutate "$1" || return 1
        # The mutation changed the source: a diff shows it in the log.
        diff -ru "$ALLVARS_ROOT/daemon" "$SRC/daemon" | grep '^[-+] ' | sed 's/^/    /'
        if ! make -C "$SRC" -j2 build/allvarsd >"$FAULTS_BASE/build-$1.log" 2>&1; then
                say "mutant $1 does not build:"
                tail -n 20 "$FAULTS_BASE/build-$1.log"
                return 1
        fi
        cp "$SRC/build/allvarsd" "$BUILD/allvarsd"
}

# run_mutant NAME CHECK: a short scenario on the mutant; CHECK must fail.
run_mutant() {
        local name=$1 check=$2 fired
        faults_begin "mutant-$name"
        faults_real_kafka
        faults_conf a
        daemon_migrate a >/dev/null || check_fail "migration failed"
        daemon_start a
        daemon_ready a 60 || check_fail "the daemon did not become ready"
        feed_start 300 400
        sleep 6
        feed_stop
        fault_struck            # the broken build is the fault
        faults_finish 20 >"$T/finish.out" 2>&1
        cat "$T/finish.out"
        faults_stop_all
        fired=$(grep -c "CHECK FAILED \[mutant-$name\]: $check" "$T/finish.out")
        if ((fired > 0)); then
                say "mutant $name: caught by \"$check\" ($(grep -o "figures: .*" "$T/finish.out" | head -n 1))"
        else
                say "MUTANT $name SURVIVED: \"$check\" did not fire"
                mutants_failed=$((mutants_failed + 1))
        fi
}

cp "$BUILD/allvarsd" "$FAULTS_BASE/allvarsd.good"
for m in $MUTANTS; do
        case $m in
        dup) check="duplicate decisions" ;;
        lost) check="lost" ;;
        *) check=$m ;;
        esac
        if build_mutant "$m"; then
                run_mutant "$m" "$check"
        else
                say "MUTANT $m: cannot be made (update tests/faults/90-mutants.sh)"
                mutants_failed=$((mutants_failed + 1))
        fi
        cp "$FAULTS_BASE/allvarsd.good" "$BUILD/allvarsd"
done
# The mutants' own checks were meant to fail; what counts is whether they fired.
FAULTS_FAILED=$mutants_failed
rm -rf "$SRC"
faults_exit
