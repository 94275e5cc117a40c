#!/usr/bin/env bash
# engine blast against wrk like benches/rig/compare.sh, but with the order alternating in
# each pair (engine first in odd pairs, wrk first in even ones): on the 2-core bench VM the
# second run of a pair measured lower on its own. Prints served per CPU-second per pair.
# usage: benches/wrk-alternating.sh ENGINE_BIN [CONNS]   env: PAIRS (6), DURATION (10)
# Run it from a scratch directory: each blast writes a results/ folder into the cwd.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$here/rig"
engine="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
conns="${2:-64}"; pairs="${PAIRS:-6}"; dur="${DURATION:-10}"
val() { grep -oP "(^| )$1=\K[^ ]+" <<<"$2"; }
"$bench/target.sh" requests >/dev/null 2>&1 || "$bench/target.sh" start >&2
"$bench/run-one.sh" wrk 64 5 >/dev/null; sleep 3   # discarded warm-up, as compare.sh does
echo "# benches/wrk-alternating.sh $(date -Is) conns=$conns pairs=$pairs duration=$dur"
for p in $(seq "$pairs"); do
    if (( p % 2 )); then
        a="$(ENGINE_BIN="$engine" "$bench/run-one.sh" engine "$conns" "$dur")"; sleep 3
        b="$("$bench/run-one.sh" wrk "$conns" "$dur")"; sleep 3
    else
        b="$("$bench/run-one.sh" wrk "$conns" "$dur")"; sleep 3
        a="$(ENGINE_BIN="$engine" "$bench/run-one.sh" engine "$conns" "$dur")"; sleep 3
    fi
    ea="$(val served_per_cpu_s "$a")"; wb="$(val served_per_cpu_s "$b")"
    echo "pair=$p engine=$ea wrk=$wb engine/wrk=$(awk -v x="$ea" -v y="$wb" 'BEGIN { printf "%.3f", x / y }') engine_exit=$(val exit "$a")"
done
