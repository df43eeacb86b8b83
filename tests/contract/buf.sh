#!/bin/bash
# buf lint and buf breaking on proto/ (proto/buf.yaml states the rules): the
# contract is lint-clean, and nothing in it breaks v1 as released (proto/v1.binpb,
# the descriptors of v1). Then the check is shown to bite: a copy of proto/ with one
# field renumbered, and another with one field's type changed, must each fail it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ALLVARS_ROOT=$ROOT
source "$ROOT/tests/lib/contract_tools.sh"
contract_tools_fetch
BUF=$(contract_tools_bin buf)
echo "buf $("$BUF" --version)"

cd "$ROOT/proto"
"$BUF" lint
echo "buf lint: clean"
"$BUF" breaking --against v1.binpb
echo "buf breaking against v1.binpb: nothing breaks"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# must_break NAME SED-EXPRESSION FILE: the edited copy fails buf breaking.
must_break() {
        local name=$1 expr=$2 file=$3
        rm -rf "$work/proto"
        cp -r "$ROOT/proto" "$work/proto"
        sed -i "$expr" "$work/proto/$file"
        if cmp -s "$ROOT/proto/$file" "$work/proto/$file"; then
                echo "FAIL: the edit for '$name' changed nothing in $file" >&2
                return 1
        fi
        if (cd "$work/proto" && "$BUF" breaking --against "$ROOT/proto/v1.binpb" >"$work/out" 2>&1); then
                echo "FAIL: buf breaking accepted $name" >&2
                return 1
        fi
        echo "buf breaking rejects $name: $(head -n 1 "$work/out")"
}
must_break "a renumbered field" 's/string referral_id = 1;/string referral_id = 99;/' allvarssamtal/v1/referral.proto
must_break "a changed type" 's/google.protobuf.Timestamp deadline = 6;/string deadline = 6;/' \
        allvarssamtal/v1/scheduling.proto
