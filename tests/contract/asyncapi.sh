#!/bin/bash
# proto/asyncapi.yaml is a valid AsyncAPI 3.0 document whose messages are the
# contract's protobuf messages, and the topic table of docs/contract.md is the one
# it makes (tests/contract/asyncapi.mjs says what is checked). With --write: put
# the table into docs/contract.md instead of checking it.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ALLVARS_ROOT=$ROOT
source "$ROOT/tests/lib/contract_tools.sh"
contract_tools_fetch
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$ROOT/proto" && "$(contract_tools_bin buf)" build --exclude-source-info -o "$work/image.json")
# The script imports @asyncapi/parser from the cached node_modules: ESM resolves
# packages next to the importing file, so it runs from a copy there.
dir=$(contract_tools_node_path)/..
cp "$ROOT/tests/contract/asyncapi.mjs" "$dir/asyncapi.mjs"
node "$dir/asyncapi.mjs" "$ROOT" "$work/image.json" "$@"
