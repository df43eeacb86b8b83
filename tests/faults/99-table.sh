#!/bin/bash
# The last step of `tests/run faults`: the table of tests/faults/results.json,
# which every scenario script filled in (faults_record). tests/run prints the
# table itself at the end of the phase (calling this script with
# ALLVARS_FAULTS_TABLE_TO_RUNNER=0); ALLVARS_FAULTS_TABLE_TO_RUNNER=1 also
# writes it to the runner's own standard output from here.
# Fails when there are no results, or a scenario lost or doubly decided a referral.
set -uo pipefail
FAULTS_DIR=$(cd "$(dirname "$0")" && pwd)
RESULTS=${ALLVARS_FAULTS_RESULTS:-$FAULTS_DIR/results.json}

# table: results.json as aligned columns (the functions of lib.bash, without
# its setup: this script needs no server).
table() {
        jq -r '["scenario", "faults", "sent", "decided", "dead-lettered", "dup. decisions", "lost", "events published",
                "dup. deliveries", "notice s", "recovery s", "p99 ms"],
               (.[] | [.scenario, (.faults // "?"), .sent, .decided, .dead_lettered, .duplicate_decisions, .lost,
                       .events_published, .duplicate_deliveries, (.notice_s // "-"), .recovery_s,
                       (.p99_ms // "-")]) | @tsv' "$RESULTS" |
                awk -F'\t' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }
                              if (NF > nf) nf = NF }
                            END { for (r = 1; r <= NR; r++) { line = ""
                                    for (i = 1; i <= nf; i++)
                                            line = line sprintf(i == 1 ? "%-" w[i] "s" : "  %" w[i] "s", cell[r, i])
                                    print line } }'
}

# runner_stdout: /proc/PID/fd/1 of the nearest ancestor running tests/run, when
# writing there cannot clobber the runner's own output: a terminal, a pipe or a
# socket, or a file it opened for appending (a file opened without O_APPEND has
# an offset of its own, and the runner's next lines would overwrite ours).
runner_stdout() {
        local pid=$PPID i kind flags
        for ((i = 0; i < 8 && pid > 1; i++)); do
                if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'tests/run\b'; then
                        [[ -w /proc/$pid/fd/1 ]] || return
                        kind=$(stat -L -c %F "/proc/$pid/fd/1" 2>/dev/null)
                        case $kind in
                        "character special file" | fifo | socket) echo "/proc/$pid/fd/1" ;;
                        "regular file" | "regular empty file")
                                flags=$(awk '$1 == "flags:" { print $2 }' "/proc/$pid/fdinfo/1" 2>/dev/null)
                                # O_APPEND is 02000 (octal) on Linux.
                                [[ -n $flags ]] && (((8#$flags & 8#2000) != 0)) && echo "/proc/$pid/fd/1"
                                ;;
                        esac
                        return
                fi
                pid=$(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) || return
        done
}

if [[ ! -s $RESULTS ]] || ! jq -e 'type == "array" and length > 0' "$RESULTS" >/dev/null 2>&1; then
        echo "no results in $RESULTS"
        exit 1
fi
# The size(s) the scenarios ran at (a scenario run alone may differ from the rest).
size=$(jq -r '[.[].size // "full"] | unique | join("+")' "$RESULTS")
out=$(
        echo "fault suite, $size size, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(uname -srm)"
        table
)
echo "$out"
if [[ ${ALLVARS_FAULTS_TABLE_TO_RUNNER:-0} != 0 ]]; then
        dest=$(runner_stdout)
        if [[ -n $dest ]]; then
                { echo "$out" | sed 's/^/     /'; } >>"$dest"
        fi
fi
bad=$(jq '[.[] | select(.lost > 0 or .duplicate_decisions > 0)] | length' "$RESULTS")
((bad == 0)) || { echo "$bad scenario(s) lost or doubly decided referrals"; exit 1; }
