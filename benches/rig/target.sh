#!/usr/bin/env bash
# Benchmark target: nginx (1 worker, CPU 0) on 127.0.0.1:18080 (HTTP) and :18443 (HTTPS),
# stub_status on :18081.
# usage: benches/rig/target.sh start|stop|restart|status|requests|cacert
#   requests  prints nginx's served-request counter (stub_status 'requests'); each call
#             counts itself, so a delta between two calls is (after - before - 1).
# env: BENCH_PREFIX (default /tmp/bench-nginx), NGINX (default: nginx on PATH)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="${BENCH_PREFIX:-/tmp/bench-nginx}"
# nginx reads relative file paths (tls/cert.pem) beside its config, so the config is
# copied into the prefix at start.
conf="$prefix/nginx.conf"
nginx="${NGINX:-nginx}"
status_url="http://127.0.0.1:18081/nginx_status"

die() { echo "target.sh: $*" >&2; exit 1; }

running_pid() {
    local pid
    [[ -f "$prefix/logs/nginx.pid" ]] || return 1
    pid="$(cat "$prefix/logs/nginx.pid")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

requests() {
    curl -fsS --max-time 2 "$status_url" | awk 'NR==3 {print $3}'
}

start() {
    command -v "$nginx" >/dev/null || die "nginx not found (apt-get install -y nginx-light)"
    if running_pid >/dev/null; then echo "already running (pid $(running_pid))"; return 0; fi
    mkdir -p "$prefix/logs" "$prefix/tmp" "$prefix/tls"
    cp "$here/nginx.conf" "$conf"
    cp "$here/tls/cert.pem" "$here/tls/key.pem" "$prefix/tls/"
    # -e keeps even the startup error log inside the prefix (nginx >= 1.19.5)
    "$nginx" -t -q -p "$prefix/" -c "$conf" -e "$prefix/logs/error.log" \
        || die "config test failed: see $prefix/logs/error.log"
    taskset -c 0 "$nginx" -p "$prefix/" -c "$conf" -e "$prefix/logs/error.log" \
        || die "nginx failed to start: see $prefix/logs/error.log"
    for _ in $(seq 50); do
        if requests >/dev/null 2>&1; then
            echo "started: pid $(running_pid), prefix $prefix, requests=$(requests)"
            return 0
        fi
        sleep 0.1
    done
    die "nginx did not answer on $status_url within 5 s"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then echo "not running"; return 0; fi
    "$nginx" -p "$prefix/" -c "$conf" -e "$prefix/logs/error.log" -s quit || kill "$pid"
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || { echo "stopped"; return 0; }
        sleep 0.1
    done
    kill -TERM "$pid" 2>/dev/null || true
    sleep 0.5
    kill -0 "$pid" 2>/dev/null && die "nginx pid $pid did not stop"
    echo "stopped (TERM)"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running: master pid $pid, prefix $prefix"
        pgrep -P "$pid" | while read -r w; do
            echo "  worker $w on CPUs $(taskset -cp "$w" | awk '{print $NF}')"
        done
        curl -fsS --max-time 2 "$status_url" | sed 's/^/  /'
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    restart) stop; start ;;
    status) status ;;
    requests) requests ;;
    cacert) echo "$prefix/tls/cert.pem" ;;
    *) echo "usage: $0 start|stop|restart|status|requests" >&2; exit 2 ;;
esac
