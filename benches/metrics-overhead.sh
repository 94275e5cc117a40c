#!/usr/bin/env bash
# The cost of --metrics-addr: served requests per CPU-second of `engine blast` with and
# without it (scraped every second, as Prometheus would), interleaved A B B A A B ... (the
# order alternates, so a penalty of going second does not land on one side), on the
# benches/rig (nginx on CPU 0, the blast on CPU 1, nginx's own served counter).
# usage: benches/metrics-overhead.sh ENGINE_BIN [CONNS]    env: PAIRS (5), DURATION (10)
# Run it from a scratch directory: each blast writes a results/ folder into the cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$here/rig"
engine="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
conns="${2:-64}"; pairs="${PAIRS:-5}"; dur="${DURATION:-10}"
port=19464
wrapper="$(mktemp)"
printf '#!/bin/sh\nexec "%s" "$@" --metrics-addr 127.0.0.1:%s\n' "$engine" "$port" > "$wrapper"
chmod +x "$wrapper"
scraper() { while true; do curl -s -o /dev/null "http://127.0.0.1:$port/metrics" || true; sleep 1; done; }
"$bench/target.sh" requests >/dev/null 2>&1 || "$bench/target.sh" start >&2
val() { grep -oP "(^| )$1=\K[^ ]+" <<<"$2"; }
echo "# benches/metrics-overhead.sh $(date -Is) conns=$conns pairs=$pairs duration=$dur"
ratios=()
plain() { ENGINE_BIN="$engine" "$bench/run-one.sh" engine "$conns" "$dur"; }
with_metrics() {
    scraper & local spid=$!
    ENGINE_BIN="$wrapper" "$bench/run-one.sh" engine "$conns" "$dur"
    kill "$spid" 2>/dev/null || true
}
for p in $(seq "$pairs"); do
    if (( p % 2 )); then
        a="$(plain)"; sleep 3; b="$(with_metrics)"; sleep 3
    else
        b="$(with_metrics)"; sleep 3; a="$(plain)"; sleep 3
    fi
    pa="$(val served_per_cpu_s "$a")"; pb="$(val served_per_cpu_s "$b")"
    r="$(awk -v x="$pb" -v y="$pa" 'BEGIN { printf "%.3f", x / y }')"
    ratios+=("$r")
    echo "pair=$p plain=$pa with_metrics=$pb ratio=$r"
done
echo "median with/without: $(printf '%s\n' "${ratios[@]}" | sort -g | awk '{x[NR]=$1} END { print x[int((NR+1)/2)] }') (pairs: ${ratios[*]})"
rm -f "$wrapper"
