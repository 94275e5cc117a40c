#!/usr/bin/env bash
# Run the anchor matrix: every generator x every conns level, REPS times, interleaved
# (rep 1 of all, then rep 2 of all, ...) so slow drift on the box spreads over all tools.
# usage: benches/rig/run-all.sh [RESULTS_FILE]
# env: GENS (default "wrk h2load hey oha ab"), CONNS (default "64 1000 10000"),
#      REPS (default 3), DURATION (default 10), PAUSE (seconds between runs, default 3),
#      WARMUP (seconds of discarded wrk warm-up first, default 5; 0 = none)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
results="${1:-/tmp/bench-raw/results.log}"
gens="${GENS:-wrk h2load hey oha ab}"
conns_list="${CONNS:-64 1000 10000}"
reps="${REPS:-3}"; dur="${DURATION:-10}"; pause="${PAUSE:-3}"
mkdir -p "$(dirname "$results")"

"$here/target.sh" start >&2 || exit 1
{
    echo "# run-all $(date -Is) gens='$gens' conns='$conns_list' reps=$reps duration=$dur"
    echo "# ip_local_port_range=$(tr '\t' ' ' < /proc/sys/net/ipv4/ip_local_port_range)" \
         "tcp_tw_reuse=$(cat /proc/sys/net/ipv4/tcp_tw_reuse)" \
         "somaxconn=$(cat /proc/sys/net/core/somaxconn)" \
         "tcp_max_syn_backlog=$(cat /proc/sys/net/ipv4/tcp_max_syn_backlog)" \
         "nofile=$(ulimit -Sn)/$(ulimit -Hn)"
} | tee -a "$results"

# Discarded warm-up (the first run after idle measured ~20% low here).
warm="${WARMUP:-5}"
[[ "$warm" -gt 0 ]] && echo "# warmup $("$here/run-one.sh" wrk 64 "$warm")" >> "$results" && sleep "$pause"

for rep in $(seq "$reps"); do
    for c in $conns_list; do
        for g in $gens; do
            line="$("$here/run-one.sh" "$g" "$c" "$dur")"
            rc=$?
            [[ $rc -ne 0 && -z "$line" ]] && line="generator=$g conns=$c duration=$dur run_one_exit=$rc"
            echo "rep=$rep $line" | tee -a "$results"
            sleep "$pause"
        done
    done
done
