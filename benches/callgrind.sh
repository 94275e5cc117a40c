#!/usr/bin/env bash
# User-space instructions per request of `engine blast` and of `engine proxy`, counted by
# valgrind's callgrind. Wall-clock ratios on the 2-core bench VM move by +-10% from run to run;
# an instruction count repeats to within about 1%, so it shows changes of a few percent in the
# engine's own code (the kernel's share, most of the CPU here, is not counted).
#
# Each figure is the difference of a short (2 s) and a long (6 s) run, divided by the
# difference of their completed requests, so start-up and shutdown cancel out. The blast runs
# under valgrind with one shard and 16 connections against the bench nginx
# (benches/rig/target.sh); for the proxy, `engine proxy --shards 1` runs under valgrind
# on CPU 1 and a native blast (the same binary) drives it from CPU 0.
#
# The proxy's figure varies by a few percent between runs (how many requests each turn of its
# loop handles under valgrind varies too), so each figure is the median of REPS such pairs.
#
# usage: benches/callgrind.sh ENGINE_BIN [blast|proxy|both]   env: REPS (3); ~25 s per pair
# Run it from a scratch directory: it writes callgrind.out.* files and results/ folders there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$here/rig"
engine="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
what="${2:-both}"
port=18095
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }
"$bench/target.sh" requests >/dev/null 2>&1 || "$bench/target.sh" start >&2

requests() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['requests'])" "$1"; }
collected() { grep -oP 'Collected : \K[0-9]+' "$1"; }

blast_run() { # SECONDS
    timeout 120 valgrind --tool=callgrind --callgrind-out-file="callgrind.out.blast-$1" \
        "$engine" blast http://127.0.0.1:18080/ -c 16 --shards 1 -d "$1s" -q --json "blast-$1.json" \
        >/dev/null 2>"blast-$1.err"
    echo "$(requests "blast-$1.json") $(collected "blast-$1.err")"
}

proxy_run() { # SECONDS
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="callgrind.out.proxy-$1" \
        "$engine" proxy --listen "127.0.0.1:$port" --upstream 127.0.0.1:18080 --admin off --shards 1 \
        >/dev/null 2>"proxy-$1.err" &
    local pid=$! up=
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && { up=1; break; }
        sleep 0.2
    done
    [[ -n "$up" ]] || { kill "$pid"; echo "callgrind.sh: the proxy did not come up" >&2; exit 1; }
    taskset -c 0 "$engine" blast "http://127.0.0.1:$port/" -c 16 -d "$1s" -q --json "proxy-$1.json" >/dev/null 2>&1
    kill -TERM "$pid"
    wait "$pid" || true
    echo "$(requests "proxy-$1.json") $(collected "proxy-$1.err")"
}

per_request() { # NAME RUN_FN
    local short long all=()
    for _ in $(seq "${REPS:-3}"); do
        short="$($2 2)"; long="$($2 6)"
        all+=("$(awk -v s="$short" -v l="$long" 'BEGIN { split(s, a, " "); split(l, b, " "); printf "%.0f", (b[2] - a[2]) / (b[1] - a[1]) }')")
    done
    printf '%s\n' "${all[@]}" | sort -n | awk -v name="$1" '{ v[NR] = $1; runs = runs " " $1 }
        END { printf "%s: %d user-space instructions per request (median; runs:%s)\n", name, v[int((NR + 1) / 2)], runs }'
}

echo "# benches/callgrind.sh $(date -Is) $engine"
[[ "$what" == proxy ]] || per_request blast blast_run
[[ "$what" == blast ]] || per_request proxy proxy_run
