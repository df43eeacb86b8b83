# The contract checkers (buf, the AsyncAPI parser), from the npm registry, pinned by
# tests/contract/package-lock.json (source it, do not run it).
#
#   contract_tools_fetch     install them once into the cache (npm ci); no-op when cached
#   contract_tools_bin NAME  the path of an installed command (buf, ...)
#   contract_tools_node_path the node_modules directory, for NODE_PATH
#
# The cache directory is named by the hash of the lock file, so that a changed pin
# installs anew and never mixes with an older one: ALLVARS_CONTRACT_CACHE, else
# $XDG_CACHE_HOME/allvarsd/contract-HASH when XDG_CACHE_HOME is set, else
# <repo>/.cache/contract-HASH (ignored by git), like the Kafka jars (tests/lib/kafka.sh).
# Install scripts are not run (--ignore-scripts): @bufbuild/buf finds its prebuilt
# binary in the optional package @bufbuild/buf-linux-x64 without one.

if [[ -z ${ALLVARS_CONTRACT_TOOLS_SH:-} ]]; then
ALLVARS_CONTRACT_TOOLS_SH=1

ALLVARS_ROOT=${ALLVARS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}

_contract_tools_dir() {
        local lock=$ALLVARS_ROOT/tests/contract/package-lock.json hash
        hash=$(sha256sum "$lock" | cut -c1-12)
        if [[ -n ${ALLVARS_CONTRACT_CACHE:-} ]]; then
                echo "$ALLVARS_CONTRACT_CACHE/contract-$hash"
        elif [[ -n ${XDG_CACHE_HOME:-} ]]; then
                echo "$XDG_CACHE_HOME/allvarsd/contract-$hash"
        else
                echo "$ALLVARS_ROOT/.cache/contract-$hash"
        fi
}

contract_tools_fetch() {
        local dir tmp
        dir=$(_contract_tools_dir)
        [[ -f $dir/.complete ]] && return 0
        command -v npm >/dev/null || { echo "contract_tools_fetch: npm is missing (make deps)" >&2; return 1; }
        mkdir -p "$(dirname "$dir")"
        tmp=$(mktemp -d "$(dirname "$dir")/.contract-XXXXXX") || return 1
        cp "$ALLVARS_ROOT/tests/contract/package.json" "$ALLVARS_ROOT/tests/contract/package-lock.json" "$tmp/"
        if ! (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2); then
                rm -rf "$tmp"
                return 1
        fi
        touch "$tmp/.complete"
        # Another run may have finished first: keep its copy.
        mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
        [[ -f $dir/.complete ]]
}

contract_tools_bin() {
        echo "$(_contract_tools_dir)/node_modules/.bin/$1"
}

contract_tools_node_path() {
        echo "$(_contract_tools_dir)/node_modules"
}

fi
