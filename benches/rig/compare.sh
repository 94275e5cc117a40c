#!/usr/bin/env bash
# Side-by-side: the project's engine against wrk on the same target, interleaved A B A B A B
# (A = engine, B = wrk), and the ratio engine/wrk of served_per_cpu_s and rps_served.
# usage: benches/rig/compare.sh ENGINE_BIN [CONNS ...]        (default CONNS: 64 1000 10000)
# env: URL (default http://127.0.0.1:18080/; https://127.0.0.1:18443/ for TLS), PAIRS (default 3),
#      DURATION (seconds, default 10), PAUSE (default 3),
#      WARMUP (seconds of discarded wrk warm-up first, default 5; 0 = none), RESULTS (log file),
#      AGAINST (another engine binary to be B instead of wrk: a before/after comparison)
# Both tools run on CPU 1 (taskset), nginx on CPU 0; 'served' is nginx's own counter.
# The engine is run as: ENGINE_BIN blast http://127.0.0.1:18080/ --conns N --duration 10s
# It must respect the CPU affinity it is started with (one shard on CPU 1 here).
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "compare.sh: $*" >&2; exit 2; }
[[ $# -ge 1 ]] || die "usage: $0 ENGINE_BIN [CONNS ...]"
engine="$1"; shift
[[ -e "$engine" ]] || die "ENGINE_BIN '$engine' does not exist (build it: cargo build --release, then pass target/release/engine)"
[[ -f "$engine" && -x "$engine" ]] || die "ENGINE_BIN '$engine' is not an executable file"
engine="$(cd "$(dirname "$engine")" && pwd)/$(basename "$engine")"
"$engine" blast --help 2>&1 | grep -q -- '--conns' \
    || die "'$engine blast --help' does not mention --conns: this binary has no working 'blast' subcommand yet"
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
conns_list=("$@"); [[ ${#conns_list[@]} -gt 0 ]] || conns_list=(64 1000 10000)
for c in "${conns_list[@]}"; do [[ "$c" =~ ^[0-9]+$ ]] || die "bad CONNS '$c'"; done
pairs="${PAIRS:-3}"; dur="${DURATION:-10}"; pause="${PAUSE:-3}"

started=0
if ! "$here/target.sh" requests >/dev/null 2>&1; then
    "$here/target.sh" start >&2 || die "could not start the nginx target"
    started=1
fi
cleanup() { [[ $started -eq 1 ]] && "$here/target.sh" stop >&2; }
trap cleanup EXIT

results="${RESULTS:-/tmp/bench-raw/compare-$(date +%Y%m%d-%H%M%S).log}"
mkdir -p "$(dirname "$results")"
echo "# compare $(date -Is) engine=$engine pairs=$pairs duration=$dur conns='${conns_list[*]}'" | tee -a "$results"

val() { grep -oP "(^| )$1=\K[^ ]+" <<<"$2"; }

# A discarded warm-up: the first run after an idle spell measured ~20% fewer served per CPU-s
# here (same tool, same settings), so no measured run goes first.
warm="${WARMUP:-5}"
[[ "$warm" -gt 0 ]] && echo "# warmup $("$here/run-one.sh" wrk 64 "$warm")" >> "$results" && sleep "$pause"

failed=0
for c in "${conns_list[@]}"; do
    ratios_cpu=(); ratios_rps=()
    for p in $(seq "$pairs"); do
        a="$(ENGINE_BIN="$engine" "$here/run-one.sh" engine "$c" "$dur")"; echo "pair=$p $a" | tee -a "$results" >&2
        sleep "$pause"
        if [[ -n "${AGAINST:-}" ]]; then
            b="$(ENGINE_BIN="$AGAINST" "$here/run-one.sh" engine "$c" "$dur")"
        else
            b="$("$here/run-one.sh" wrk "$c" "$dur")"
        fi
        echo "pair=$p $b" | tee -a "$results" >&2
        sleep "$pause"
        for m in served_per_cpu_s rps_served; do
            ea="$(val "$m" "$a")"; wb="$(val "$m" "$b")"
            r="$(awk -v x="${ea:-0}" -v y="${wb:-0}" 'BEGIN { if (y > 0) printf "%.3f", x / y; else print "NA" }')"
            [[ $m == served_per_cpu_s ]] && ratios_cpu+=("$r") || ratios_rps+=("$r")
        done
        ee="$(val exit "$a")"; es="$(val served "$a")"
        if [[ "$ee" != 0 || "${es:-0}" -eq 0 ]]; then
            echo "compare.sh: engine run failed (pair $p, conns $c): exit=$ee served=${es:-0}; see $(val raw "$a")" >&2
            failed=1
        fi
    done
    med() { printf '%s\n' "$@" | grep -v NA | sort -g | awk '{x[NR]=$1} END { if (NR == 0) print "NA"; else if (NR % 2) print x[(NR+1)/2]; else printf "%.3f\n", (x[NR/2] + x[NR/2+1]) / 2 }'; }
    line="conns=$c engine/${AGAINST:-wrk} served_per_cpu_s=$(med "${ratios_cpu[@]}") (pairs: ${ratios_cpu[*]}) rps_served=$(med "${ratios_rps[@]}") (pairs: ${ratios_rps[*]})"
    echo "$line" | tee -a "$results"
done
echo "raw lines: $results; table: $here/summarize.py $results" >&2
[[ $failed -eq 0 ]] || { echo "compare.sh: at least one engine run failed; ratios above are not valid" >&2; exit 1; }
