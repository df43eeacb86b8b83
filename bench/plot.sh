# bench/plot.sh: the benchmark's two pictures, drawn as SVG from its own figures with
# awk and sort only (bash; sourced by bench/run, do not run it).
#
#   (a SUBTITLE is one line, or several separated by " | ")
#   plot_tenths OUT SUBTITLE PEER RATE...
#                                        bars: the replay's rate in each tenth of the
#                                        messages, the band of +-15 % around the first
#                                        tenth (the target), the 20,000/s target and the
#                                        peer's overall rate (PEER; "-" for none)
#   plot_cdf OUT SUBTITLE FILE           the latency distribution of the steady state as
#                                        a CDF on a logarithmic axis: FILE has lines
#                                        "produced_us committed_us decided_us received_us"
#                                        (received 0: no scheduling event); the targets
#                                        25 ms and 50 ms and each curve's p99 marked

_PLOT_STYLE='<style>text{font-family:sans-serif;font-size:12px;fill:#222}.t{font-size:15px;font-weight:bold}.s{fill:#555}.ax{stroke:#222;stroke-width:1}.g{stroke:#ddd;stroke-width:1}</style>'

plot_tenths() {
        local out=$1 sub=$2 peer=$3
        shift 3
        printf '%s\n' "$@" | awk -v sub_="$sub" -v peer="$peer" -v style="$_PLOT_STYLE" '
                { v[NR] = $1 + 0; if (v[NR] > max) max = v[NR] }
                END {
                        n = NR; W = 720; H = 420; L = 70; R = 20; T = 90; B = 50
                        top = max > 20000 ? max : 20000; if (peer + 0 > top) top = peer + 0; top *= 1.1
                        step = top > 40000 ? 10000 : top > 10000 ? 5000 : 1000
                        pw = W - L - R; ph = H - T - B; bw = pw / n
                        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", W, H, W, H
                        print style
                        printf "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W, H
                        printf "<text class=\"t\" x=\"%d\" y=\"22\">Replay rate by tenth of the messages</text>\n", L
                        ns = split(sub_, sl, " [|] ")
                        for (k = 1; k <= ns; k++) printf "<text class=\"s\" x=\"%d\" y=\"%d\">%s</text>\n", L, 24 + 16 * k, sl[k]
                        for (y = 0; y <= top; y += step) {
                                py = T + ph - ph * y / top
                                printf "<line class=\"g\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>\n", L, W - R, py, py
                                printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", L - 6, py + 4, y
                        }
                        # The target band: the last tenth within 15 % of the first.
                        if (v[1] > 0) {
                                y1 = T + ph - ph * v[1] * 1.15 / top; y2 = T + ph - ph * v[1] * 0.85 / top
                                printf "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"#2a7\" fill-opacity=\"0.12\"/>\n", L, y1, pw, y2 - y1
                                printf "<rect x=\"%d\" y=\"%d\" width=\"14\" height=\"10\" fill=\"#2a7\" fill-opacity=\"0.3\"/>\n", L, T - 14
                                printf "<text class=\"s\" x=\"%d\" y=\"%d\">first tenth &#177;15 %%: the last tenth&#39;s target (it is at %.2f)</text>\n", L + 20, T - 5, v[n] / v[1]
                        }
                        for (i = 1; i <= n; i++) {
                                h = ph * v[i] / top; x = L + (i - 1) * bw + bw * 0.15
                                printf "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#3b6ea5\"/>\n", x, T + ph - h, bw * 0.7, h
                                printf "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x + bw * 0.35, T + ph - h - 4, v[i]
                                printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x + bw * 0.35, T + ph + 16, i
                        }
                        py = T + ph - ph * 20000 / top
                        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#c33\" stroke-dasharray=\"6 4\"/>\n", L, W - R, py, py
                        printf "<text x=\"%d\" y=\"%.1f\" style=\"fill:#c33\" text-anchor=\"end\">target 20,000/s</text>\n", W - R - 4, py - 4
                        if (peer + 0 > 0) {
                                py = T + ph - ph * peer / top
                                printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#7a4\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>\n", L, W - R, py, py
                                printf "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#7a4\" stroke-width=\"2\" stroke-dasharray=\"2 3\"/>\n", L + 345, L + 365, T - 9, T - 9
                                printf "<text x=\"%d\" y=\"%d\" style=\"fill:#572\">peer (Kafka Connect + JDBC sink): %d/s</text>\n", L + 371, T - 5, peer
                        }
                        printf "<line class=\"ax\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n", L, W - R, T + ph, T + ph
                        printf "<line class=\"ax\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n", L, L, T, T + ph
                        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">tenth of the messages (1 = the first 10 %%)</text>\n", L + pw / 2, H - 14
                        printf "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">messages per second</text>\n", T + ph / 2, T + ph / 2
                        print "</svg>"
                }' >"$out"
}

# _plot_points FILE COLOR LABEL Y: the sorted latencies (ms, one a line) as an SVG polyline
# (at most ~400 points, the tail kept whole) and the p99 mark; needs L T pw ph lo hi.
_plot_points() {
        awk -v color="$2" -v label="$3" -v L="$L" -v T="$T" -v pw="$pw" -v ph="$ph" -v lo="$lo" -v hi="$hi" -v ly="$4" '
                function px(ms) { if (ms < lo) ms = lo; return L + pw * (log(ms) - log(lo)) / (log(hi) - log(lo)) }
                function py(q) { return T + ph - ph * q }
                { v[NR] = $1 }
                END {
                        n = NR; if (n == 0) exit
                        pts = ""; last = 0
                        for (i = 1; i <= n; i++)
                                if (i == 1 || i == n || i - last >= n / 400 || i > n * 0.99) {
                                        pts = pts sprintf("%.1f,%.1f ", px(v[i]), py(i / n)); last = i }
                        printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"%s\"/>\n", color, pts
                        p99 = v[int(n * 0.99 + 0.5) < 1 ? 1 : int(n * 0.99 + 0.5)]; p50 = v[int(n * 0.5 + 0.5) < 1 ? 1 : int(n * 0.5 + 0.5)]
                        printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", px(p99), py(0.99), color
                        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", L + 10, L + 34, ly, ly, color
                        printf "<text x=\"%d\" y=\"%d\">%s: p50 %.1f ms, p99 %.1f ms, max %.1f ms (n = %d)</text>\n", L + 40, ly + 4, label, p50, p99, v[n], n
                }' "$1"
}

plot_cdf() {
        local out=$1 sub=$2 file=$3 dec sch lo=1 hi L=70 R=20 T=76 B=96 W=720 H=456 pw ph
        dec=$(mktemp) && sch=$(mktemp) || return 1
        awk '$2 > 0 { printf "%.3f\n", ($2 - $1) / 1000 }' "$file" | sort -n >"$dec"
        awk '$4 > 0 { printf "%.3f\n", ($4 - $1) / 1000 }' "$file" | sort -n >"$sch"
        # The axis: 1 ms to the next power of ten above the largest latency (at least 100 ms).
        hi=$(cat "$dec" "$sch" | awk 'BEGIN { m = 100 } $1 > m { m = $1 } END { h = 1; while (h < m) h *= 10; print h }')
        pw=$((W - L - R)) ph=$((H - T - B))
        {
                printf '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d">\n' $W $H $W $H
                echo "$_PLOT_STYLE"
                printf '<rect width="%d" height="%d" fill="#fff"/>\n' $W $H
                printf '<text class="t" x="%d" y="22">Steady-state latency from produce, cumulative distribution</text>\n' $L
                awk -v L=$L -v sub_="$sub" 'BEGIN { n = split(sub_, sl, " [|] ")
                        for (k = 1; k <= n; k++) printf "<text class=\"s\" x=\"%d\" y=\"%d\">%s</text>\n", L, 24 + 16 * k, sl[k] }'
                awk -v L=$L -v T=$T -v pw=$pw -v ph=$ph -v lo=$lo -v hi="$hi" 'BEGIN {
                        for (d = lo; d <= hi; d *= 10) for (k = 1; k < 10; k++) {
                                ms = d * k; if (ms > hi) break
                                x = L + pw * (log(ms) - log(lo)) / (log(hi) - log(lo))
                                printf "<line class=\"g\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\"%s/>\n", x, x, T, T + ph, (k == 1 ? "" : " stroke-opacity=\"0.4\"")
                                if (k == 1) printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%g</text>\n", x, T + ph + 16, ms }
                        for (q = 0; q <= 1.0001; q += 0.25) {
                                y = T + ph - ph * q
                                printf "<line class=\"g\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\"/>\n", L, L + pw, y, y
                                printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", L - 6, y + 4, q }
                        y = T + ph - ph * 0.99
                        printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"2 3\"/>\n", L, L + pw, y, y
                        printf "<text class=\"s\" x=\"%d\" y=\"%.1f\">0.99</text>\n", L + 4, y - 3
                        split("25 50", tg, " "); split("#3b6ea5 #d08020", tc, " ")
                        for (i = 1; i <= 2; i++) {
                                x = L + pw * (log(tg[i]) - log(lo)) / (log(hi) - log(lo))
                                printf "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-dasharray=\"6 4\"/>\n", x, x, T, T + ph, tc[i]
                                printf "<text x=\"%.1f\" y=\"%d\" style=\"fill:%s\" text-anchor=\"middle\">%d ms</text>\n", x, T - 4, tc[i], tg[i] }
                        printf "<line class=\"ax\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n", L, L + pw, T + ph, T + ph
                        printf "<line class=\"ax\" x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\"/>\n", L, L, T, T + ph
                        printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">milliseconds from produce (logarithmic)</text>\n", L + pw / 2, T + ph + 34
                        printf "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">fraction of referrals</text>\n", T + ph / 2, T + ph / 2 }'
                _plot_points "$dec" "#3b6ea5" "decision committed (target p99 &lt; 25 ms)" $((H - 34))
                _plot_points "$sch" "#d08020" "scheduling event readable (target p99 &lt; 50 ms)" $((H - 14))
                echo "</svg>"
        } >"$out"
        rm -f "$dec" "$sch"
}
