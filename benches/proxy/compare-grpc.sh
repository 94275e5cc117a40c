#!/usr/bin/env bash
# gRPC through `engine proxy` (h2c to an h2c upstream) against nginx's `grpc_pass`, on this
# 2-core box: the origin (`engine target --grpc`, one shard) and the blast on CPU 0, the proxy
# under test alone on CPU 1 (engine proxy --shards 1 --upstream-protocol h2c, or one nginx
# worker with a keep-alive grpc upstream).
#
#   1. throughput, closed model, CONNS connections x STREAMS streams of unary calls for
#      DURATION s, engine and nginx interleaved with the order alternating: calls answered OK
#      (the blast's count; it is the origin's only client) per CPU-second of the proxy process;
#   2. latency at RATE calls a second (open model, corrected): direct, engine, nginx in
#      rotating order, PAIRS times; the proxy's CPU per call at that rate.
#
# usage: benches/proxy/compare-grpc.sh ENGINE_BIN   env: CONNS (8) STREAMS (10) DURATION (8)
#        RATE (2000) PAIRS (3), THROUGHPUT=0 skips part 1
# Run it from a scratch directory: each blast writes a results/ folder into the cwd.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
engine="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
conns="${CONNS:-8}"; streams="${STREAMS:-10}"; dur="${DURATION:-8}"; rate="${RATE:-2000}"; pairs="${PAIRS:-3}"
prefix=/tmp/bench-nginx-grpc
mkdir -p "$prefix/logs" "$prefix/tmp"
cat > "$prefix/echo.proto" <<'PROTO'
syntax = "proto3";
package demo;
message Say { string text = 1; }
service Echo { rpc Echo (Say) returns (Say); }
PROTO
cat > "$prefix/nginx.conf" <<'CONF'
worker_processes 1;
worker_cpu_affinity 10;
worker_rlimit_nofile 20000;
daemon on;
pid logs/nginx.pid;
error_log logs/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 256;
    client_body_temp_path tmp/client_body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    upstream origin {
        server 127.0.0.1:18085;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:18096 http2 backlog=4096;
        location / { grpc_pass grpc://origin; }
    }
}
CONF

taskset -c 0 "$engine" target --listen 127.0.0.1:18085 --http2 --grpc --shards 1 > "$prefix/target.log" 2>&1 &
target_pid=$!
taskset -c 1 nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
taskset -c 1 "$engine" proxy --listen 127.0.0.1:18097 --upstream 127.0.0.1:18085 --upstream-protocol h2c \
    --admin off --shards 1 > "$prefix/engine-proxy.log" 2>&1 &
engine_pid=$!
cleanup() {
    kill "$engine_pid" "$target_pid" 2>/dev/null || true
    nginx -p "$prefix/" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" -s quit 2>/dev/null || true
}
trap cleanup EXIT
sleep 1
nginx_worker="$(pgrep -P "$(cat "$prefix/logs/nginx.pid")" | head -1)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

blast() { # NAME PORT [extra blast flags...]
    local name=$1 port=$2; shift 2
    taskset -c 0 "$engine" blast "grpc://127.0.0.1:$port" --call demo.Echo/Echo --proto "$prefix/echo.proto" \
        --data '{"text": "hello"}' -c "$conns" --streams "$streams" -d "${dur}s" -q --json "$prefix/$name.json" "$@" \
        >/dev/null 2>&1
}

report() { # NAME TICKS MODE
    python3 - "$prefix/$1.json" "$1" "$2" "$(getconf CLK_TCK)" "$3" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
name, ticks, hz, mode = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
ok = d["grpc"]["codes"].get("OK", 0)
cpu = ticks / hz
if mode == "throughput":
    print(f"{name} ok={ok} proxy_cpu_s={cpu:.2f} ok_per_proxy_cpu_s={ok / cpu:.0f} errors={d['errors']['total']}")
else:
    l = d["latency_ms"]
    per = f" proxy_cpu_us_per_call={cpu / d['requests'] * 1e6:.1f}" if ticks else ""
    print(f"{name} rate={d['rps']:.0f} p50_ms={l['p50']:.3f} p99_ms={l['p99']:.3f} errors={d['errors']['total']}{per}")
PY
}

measure() { # NAME PORT PID MODE
    local t0=0 t1=0
    [[ -n "$3" ]] && t0="$(cpu_ticks "$3")"
    if [[ "$4" == throughput ]]; then blast "$1" "$2"; else blast "$1" "$2" -R "$rate"; fi
    [[ -n "$3" ]] && t1="$(cpu_ticks "$3")"
    report "$1" "$((t1 - t0))" "$4"
}

echo "# benches/proxy/compare-grpc.sh $(date -Is) conns=$conns streams=$streams duration=$dur rate=$rate pairs=$pairs"
: > "$prefix/results.txt"
pair() { # P KIND PAUSE: both proxies once, the engine first in odd pairs (interleaved)
    local order=(engine nginx)
    (( $1 % 2 )) || order=(nginx engine)
    for who in "${order[@]}"; do
        if [[ $who == engine ]]; then measure engine-proxy 18097 "$engine_pid" "$2"
        else measure nginx-grpc 18096 "$nginx_worker" "$2"; fi
        sleep "$3"
    done
}
for p in $(seq "$pairs"); do
    [[ "${THROUGHPUT:-1}" == 0 ]] && break
    pair "$p" throughput 2
done | tee -a "$prefix/results.txt"
for p in $(seq "$pairs"); do
    measure direct 18085 "" latency; sleep 1
    pair "$p" latency 1
done | tee -a "$prefix/results.txt"
python3 - "$prefix/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if not l.startswith("#")]
def field(row, key):
    return next((float(f.split("=", 1)[1]) for f in row if f.startswith(key + "=")), None)
thr = [(r[0], field(r, "ok_per_proxy_cpu_s")) for r in rows if field(r, "ok_per_proxy_cpu_s")]
if thr:
    ratios = [dict([a, b])["engine-proxy"] / dict([a, b])["nginx-grpc"] for a, b in zip(thr[::2], thr[1::2])]
    for name in ("engine-proxy", "nginx-grpc"):
        print(f"# {name} calls per proxy CPU-second: median {statistics.median(v for n, v in thr if n == name):.0f}")
    print("# engine/nginx per pair: " + " ".join(f"{r:.3f}" for r in ratios) + f", median {statistics.median(ratios):.3f}")
for name in ("direct", "engine-proxy", "nginx-grpc"):
    lat = [r for r in rows if r[0] == name and field(r, "p50_ms") is not None]
    if lat:
        line = f"# {name} at {lat[0][1]}: p50 median {statistics.median(field(r, 'p50_ms') for r in lat):.3f} ms, p99 median {statistics.median(field(r, 'p99_ms') for r in lat):.3f} ms"
        cpu = [field(r, "proxy_cpu_us_per_call") for r in lat if field(r, "proxy_cpu_us_per_call") is not None]
        if cpu:
            line += f", proxy CPU per call median {statistics.median(cpu):.1f} us"
        print(line)
PY
