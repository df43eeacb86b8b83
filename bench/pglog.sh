# bench/pglog.sh: what the PostgreSQL server logged during a part of the benchmark
# (bash; sourced by bench/run, do not run it). Reads $ALLVARS_PG_DIR/log, whose
# lines begin with the UTC time of log_line_prefix '%m' (tests/lib/pg.sh); the
# FROM and TO arguments are bench/run's utc_now times.

# slow_statements FROM TO: the server's statements of 100 ms or more between two
# utc_now times, grouped by their first 80 characters ("TOTAL ms in COUNT, max
# MAX ms: STATEMENT"), then the checkpoints and autovacuum runs meanwhile.
slow_statements() {
        local log=$ALLVARS_PG_DIR/log
        awk -v from="$1" -v to="$2" '
                substr($0, 1, 23) >= from && substr($0, 1, 23) <= to && / duration: / {
                        ms = $0; sub(/^.* duration: /, "", ms); sub(/ ms .*$/, "", ms)
                        q = $0; sub(/^.* ms  [^:]*: /, "", q); q = substr(q, 1, 80)
                        n[q]++; t[q] += ms; if (ms > m[q]) m[q] = ms }
                END { for (q in n) printf "%7.0f ms in %d, max %.0f ms: %s\n", t[q], n[q], m[q], q }' "$log" |
                sort -rn | head -n 8
        awk -v from="$1" -v to="$2" '
                substr($0, 1, 23) >= from && substr($0, 1, 23) <= to &&
                /(checkpoint starting|automatic (vacuum|analyze) of table)/ {
                        e = $0; sub(/^.*LOG: +/, "", e); sub(/ of table "[^"]*\.allvarsd\./, " of ", e)
                        sub(/"?: .*$/, "", e); sub(/"$/, "", e); ev[e]++ }
                END { for (e in ev) printf "%d x %s\n", ev[e], e }' "$log" | sort -rn | head -n 8
}

# window_events FROM TO: the checkpoints and autovacuum/autoanalyze runs the server
# logged between two utc_now times (log_checkpoints, log_autovacuum_min_duration = 0),
# one line each: "SECONDS_AFTER_FROM EVENT", e.g.
#   "41.2 checkpoint starting (time)",
#   "68.3 checkpoint complete: 2210 buffers, write 26.9 s, sync 0.1 s, total 27.1 s",
#   "63.0 autovacuum referrals: 1.35 s".
# A run is placed at its end (when it is logged); its length says when it began.
window_events() {
        awk -v from="$1" -v to="$2" '
                function secs(ts) { split(substr(ts, 12, 12), a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
                BEGIN { f = secs(from) }
                /^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / { pending = ""; ts = substr($0, 1, 23)
                        inwin = ts >= from && ts <= to
                        at = secs(ts) - f + (substr(ts, 1, 10) > substr(from, 1, 10) ? 86400 : 0) }
                inwin && /checkpoint starting:/ {
                        why = $0; sub(/^.*checkpoint starting: /, "", why); sub(/ +$/, "", why); started = 1
                        printf "%.1f checkpoint starting (%s)\n", at, why }
                inwin && /checkpoint complete:/ {
                        b = $0; sub(/^.*wrote /, "", b); sub(/ buffers.*$/, "", b)
                        w = $0; sub(/^.*write=/, "", w); sub(/ s,.*$/, "", w)
                        sy = $0; sub(/^.*sync=/, "", sy); sub(/ s,.*$/, "", sy)
                        tt = $0; sub(/^.*total=/, "", tt); sub(/ s;.*$/, "", tt)
                        printf "%.1f checkpoint complete%s: %s buffers, write %s s, sync %s s, total %s s\n", at,
                               (started ? "" : " (begun before the window)"), b, w, sy, tt; started = 0 }
                inwin && /automatic (vacuum|analyze) of table "[^"]*\.allvarsd\./ {
                        kind = ($0 ~ /automatic vacuum/) ? "autovacuum" : "autoanalyze"
                        t = $0; sub(/^.*of table "/, "", t); sub(/".*$/, "", t); sub(/^.*\./, "", t)
                        pending = kind " " t; pat = at }
                pending != "" && /elapsed: / {
                        e = $0; sub(/^.*elapsed: /, "", e); sub(/ s.*$/, "", e)
                        printf "%.1f %s: %s s\n", pat, pending, e; pending = "" }' "$ALLVARS_PG_DIR/log"
}

# event_spans T0_US < EVENTS: window_events' lines as "KIND START_US END_US" (T0_US: the
# window's start in µs since the epoch): a checkpoint from its start to its completion
# (its start, or the window's end, where the log has only one of them), an autovacuum
# or autoanalyze run ("vacuum") from its end less its elapsed time to its end.
event_spans() {
        awk -v t0="$1" '
                function us(s) { return sprintf("%.0f", t0 + s * 1e6) }
                / checkpoint starting/ { cs = $1; open = 1 }
                / checkpoint complete/ { tt = $0; sub(/^.*total /, "", tt); sub(/ s$/, "", tt)
                                         print "checkpoint", us(open ? cs : $1 - tt), us($1); open = 0 }
                / auto(vacuum|analyze) / { e = $NF == "s" ? $(NF - 1) : $NF
                                           print "vacuum", us($1 - e), us($1) }
                END { if (open) print "checkpoint", us(cs), us(1e9) }'
}
