#!/bin/bash
# tests/unit/build-opt.sh: what `make bench` builds (make bench-build: the
# daemon, the tools and the bench's own programs with -O2) compiles without a
# warning. gcc warns about more at -O2 than at the tests' -O1 (it found a
# possibly truncated snprintf in a test that only the optimised build saw),
# and nothing else in `make test` builds it. Run by tests/run unit.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! make -j"$(nproc)" bench-build >"$log" 2>&1; then
        grep -E -A4 'error:|\*\*\*' "$log" | head -n 40
        echo "make bench-build failed"
        exit 1
fi
echo "make bench-build: ok"
