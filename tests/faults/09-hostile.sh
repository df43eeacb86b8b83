#!/bin/bash
# Fault scenario 6: hostile input at size. The fuzzing stream of
# tests/integration/hostile.bats (mutated referrals and outcomes through the
# running daemon: each decided or dead-lettered once, the daemon up, peak RSS
# under 64 MiB, a valid referral decided promptly afterwards) with 400
# referrals in the small size and 2,000 in the full one, and the 1 MB
# referrals of 500,000 unknown fields of tests/e2e/memory.bats on the real
# broker, 60 and 150 of them.
source "$(dirname "$0")/lib.bash"

export ALLVARS_HOSTILE_COUNT=${ALLVARS_HOSTILE_COUNT:-$(by_size 400 2000)}
export ALLVARS_HOSTILE_BIG=${ALLVARS_HOSTILE_BIG:-$(by_size 60 150)}
bats "$ALLVARS_ROOT/tests/integration/hostile.bats" "$ALLVARS_ROOT/tests/e2e/memory.bats"
