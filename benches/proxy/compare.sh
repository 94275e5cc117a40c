#!/usr/bin/env bash
# Overhead of `engine proxy` against direct traffic and against nginx's own proxy_pass, on
# this 2-core box: origin nginx (benches/rig/target.sh) and the blast on CPU 0, the proxy
# under test alone on CPU 1 (engine proxy --shards 1, or one nginx worker).
#
#   1. throughput, closed model, -c CONNS for DURATION s, engine proxy and nginx interleaved
#      with the order alternating (A B, B A, ...: going second is a bias of its own here):
#      served (origin's stub_status delta) per CPU-second of the proxy process;
#   2. latency at a rate all sustain (--rate RATE, open model, corrected): direct, then
#      engine proxy, engine proxy --busy-poll BUSY_POLL and nginx (order rotating), PAIRS
#      times; p50/p99 added, and the proxy's CPU per request at that rate (utime + stime /
#      requests).
# Ends with the medians and engine/nginx per throughput pair (lines starting with '# ').
#
# usage: benches/proxy/compare.sh ENGINE_BIN     env: CONNS (64) DURATION (10) RATE (5000) PAIRS (3)
#        BUSY_POLL (200us; 0 leaves the busy-polling proxy out), THROUGHPUT=0 skips part 1,
#        LATENCY=0 skips part 2, PROTO=h2: the clients speak h2c (STREAMS streams a
#        connection, 10) to both proxies, which speak HTTP/1.1 to the origin (nginx: an http2
#        listener with proxy_pass; engine: --upstream-protocol h1); direct is the origin's h2c port
# Run it from a scratch directory: each blast writes a results/ folder into the cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bench="$(cd "$here/../rig" && pwd)"
engine="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
conns="${CONNS:-64}"; dur="${DURATION:-10}"; rate="${RATE:-5000}"; pairs="${PAIRS:-3}"
busy_poll="${BUSY_POLL:-200us}"
prefix=/tmp/bench-nginx-proxy
proto="${PROTO:-h1}"
if [[ "$proto" == h2 ]]; then
    client=(--http2-prior-knowledge --streams "${STREAMS:-10}")
    engine_flags=(--upstream-protocol h1)
    nginx_port=18093; direct_port=18082
else
    client=(); engine_flags=(); nginx_port=18090; direct_port=18080
fi

"$bench/target.sh" requests >/dev/null 2>&1 || "$bench/target.sh" start >&2
mkdir -p "$prefix/logs" "$prefix/tmp"
taskset -c 1 nginx -p "$prefix/" -c "$here/nginx-proxy.conf" -e "$prefix/logs/error.log"
taskset -c 1 "$engine" proxy --listen 127.0.0.1:18091 --upstream 127.0.0.1:18080 --admin off --shards 1 \
    "${engine_flags[@]}" > "$prefix/engine-proxy.log" 2>&1 &
engine_pid=$!
busy_pid=
if [[ "$busy_poll" != 0 ]]; then
    # Idle while the others are measured: it polls for BUSY_POLL after its last event, then sleeps.
    taskset -c 1 "$engine" proxy --listen 127.0.0.1:18092 --upstream 127.0.0.1:18080 --admin off --shards 1 \
        --busy-poll "$busy_poll" "${engine_flags[@]}" > "$prefix/engine-busy.log" 2>&1 &
    busy_pid=$!
fi
cleanup() {
    kill "$engine_pid" $busy_pid 2>/dev/null || true
    nginx -p "$prefix/" -c "$here/nginx-proxy.conf" -e "$prefix/logs/error.log" -s quit 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
nginx_worker="$(pgrep -P "$(cat "$prefix/logs/nginx.pid")" | head -1)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
served() { "$bench/target.sh" requests; }

throughput() { # NAME PORT PID
    local before after t0 t1 cpu
    before="$(served)"; t0="$(cpu_ticks "$3")"
    taskset -c 0 "$engine" blast "http://127.0.0.1:$2/" "${client[@]}" -c "$conns" -d "${dur}s" -q --json "$prefix/$1.json" >/dev/null 2>&1
    after="$(served)"; t1="$(cpu_ticks "$3")"
    cpu="$(awk -v a="$t0" -v b="$t1" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')"
    local n=$((after - before - 1))
    local errors; errors="$(python3 -c "import json; print(json.load(open('$prefix/$1.json'))['errors']['total'])")"
    echo "$1 served=$n proxy_cpu_s=$cpu served_per_proxy_cpu_s=$(awk -v n="$n" -v c="$cpu" 'BEGIN { printf "%.0f", n / c }') errors=$errors"
}

latency() { # NAME PORT [PID]: with PID, also the proxy's CPU per request at this rate
    local t0=0 t1=0
    [[ -n "${3:-}" ]] && t0="$(cpu_ticks "$3")"
    taskset -c 0 "$engine" blast "http://127.0.0.1:$2/" "${client[@]}" -c "$conns" -R "$rate" -d "${dur}s" -q --json "$prefix/$1.json" >/dev/null 2>&1
    [[ -n "${3:-}" ]] && t1="$(cpu_ticks "$3")"
    python3 - "$prefix/$1.json" "$1" "$((t1 - t0))" "$(getconf CLK_TCK)" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
l = d["latency_ms"]
ticks, hz = int(sys.argv[3]), int(sys.argv[4])
cpu = f' proxy_cpu_us_per_req={ticks / hz / d["requests"] * 1e6:.1f}' if ticks else ''
print(f'{sys.argv[2]} rate={d["rps"]:.0f} p50_ms={l["p50"]:.3f} p99_ms={l["p99"]:.3f} errors={d["errors"]["total"]}{cpu}')
PY
}

summarize() { # the medians, and engine/nginx per throughput pair, from the lines above
    python3 - "$prefix/results.txt" <<'PY'
import re, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
def field(row, key):
    return next((float(f.split("=", 1)[1]) for f in row if f.startswith(key + "=")), None)
thr = [(r[0], field(r, "served_per_proxy_cpu_s")) for r in rows if field(r, "served_per_proxy_cpu_s")]
if thr:
    ratios = []
    for a, b in zip(thr[::2], thr[1::2]):
        pair = dict([a, b])
        ratios.append(pair["engine-proxy"] / pair["nginx-proxy"])
    for name in ("engine-proxy", "nginx-proxy"):
        print(f"# {name} served per proxy CPU-second: median {statistics.median(v for n, v in thr if n == name):.0f}")
    print("# engine/nginx per pair: " + " ".join(f"{r:.3f}" for r in ratios) + f", median {statistics.median(ratios):.3f}")
for name in ("direct", "engine-proxy", "engine-busy", "nginx-proxy"):
    lat = [r for r in rows if r[0] == name and field(r, "p50_ms") is not None]
    if not lat:
        continue
    line = f"# {name} at the fixed rate: p50 median {statistics.median(field(r, 'p50_ms') for r in lat):.3f} ms, p99 median {statistics.median(field(r, 'p99_ms') for r in lat):.3f} ms"
    cpu = [field(r, "proxy_cpu_us_per_req") for r in lat if field(r, "proxy_cpu_us_per_req") is not None]
    if cpu:
        line += f", proxy CPU per request median {statistics.median(cpu):.1f} us"
    print(line)
PY
}

echo "# benches/proxy/compare.sh $(date -Is) proto=$proto conns=$conns duration=$dur rate=$rate pairs=$pairs"
: > "$prefix/results.txt"
for p in $(seq "$pairs"); do
    [[ "${THROUGHPUT:-1}" == 0 ]] && break
    if (( p % 2 )); then
        throughput engine-proxy 18091 "$engine_pid"; sleep 2
        throughput nginx-proxy "$nginx_port" "$nginx_worker"; sleep 2
    else
        throughput nginx-proxy "$nginx_port" "$nginx_worker"; sleep 2
        throughput engine-proxy 18091 "$engine_pid"; sleep 2
    fi
done | tee -a "$prefix/results.txt"
if [[ "${LATENCY:-1}" != 0 ]]; then
    proxies=("engine-proxy 18091 $engine_pid")
    [[ -n "$busy_pid" ]] && proxies+=("engine-busy 18092 $busy_pid")
    proxies+=("nginx-proxy $nginx_port $nginx_worker")
    for p in $(seq "$pairs"); do
        latency direct "$direct_port"; sleep 1
        # Rotate the order: each proxy goes first, second, ... in turn.
        n=${#proxies[@]}
        for i in $(seq 0 $((n - 1))); do
            # shellcheck disable=SC2086
            latency ${proxies[$(((p + i) % n))]}; sleep 1
        done
    done | tee -a "$prefix/results.txt"
fi
summarize
