#!/usr/bin/env bash
# Where a proxied request's time goes at light load, from kernel tracepoints (no ptrace, so
# the proxy runs at its own speed): the blast sends on CPU 0 through a proxy on CPU 1 to the
# rig's origin (benches/rig, nginx on CPU 0); `perf record -a` takes the syscalls that move the
# request (sendto, writev, recvfrom, io_uring_enter, epoll_wait) and the scheduler's wakeup and
# switch events for 2 s, and wake_path.py splits each request into: the sender's system call
# until the kernel wakes the proxy, the wakeup until the proxy runs, the proxy's processing,
# the origin, the same on the way back, and the blast's own wake-up.
#
# usage: benches/proxy/trace-wakes.sh NAME PROXY_PORT PROXY_PID [BLAST FLAGS...]
#   e.g. trace-wakes.sh engine 18091 "$(pgrep -f 'listen 127.0.0.1:18091')" --http2-prior-knowledge --streams 1
#   env: ENGINE (the blast's binary; default: engine on PATH), OUT (default /tmp/trace-wakes),
#        ORIGIN_PORT (18080), RATE (2000), CONNS (8)
# Then: python3 benches/proxy/wake_path.py OUT/NAME PROXY_PID PROXY_TID ORIGIN_WORKER_PID
# Needs root (perf's tracepoints and -a).
set -euo pipefail
name="$1"; port="$2"; pid="$3"; shift 3
engine="${ENGINE:-engine}"; out="${OUT:-/tmp/trace-wakes}"; origin="${ORIGIN_PORT:-18080}"
mkdir -p "$out"
taskset -c 0 "$engine" blast "http://127.0.0.1:$port/" "$@" -c "${CONNS:-8}" -R "${RATE:-2000}" -d 6s -q >/dev/null 2>&1 &
blast=$!
sleep 2
# The proxy's sockets: to the origin ("up"), or accepted on its port ("client").
python3 - "$pid" "$origin" "$port" > "$out/$name.fds" <<'PY'
import json, os, re, sys
pid, origin, listen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ports = {}
for line in open('/proc/net/tcp').readlines()[1:]:
    f = line.split()
    ports[f[9]] = (int(f[1].split(':')[1], 16), int(f[2].split(':')[1], 16))
fds = {}
for fd in os.listdir(f'/proc/{pid}/fd'):
    m = re.match(r'socket:\[(\d+)\]', os.readlink(f'/proc/{pid}/fd/{fd}'))
    if m and m.group(1) in ports:
        local, remote = ports[m.group(1)]
        if remote == origin: fds[fd] = 'up'
        elif local == listen: fds[fd] = 'client'
print(json.dumps(fds))
PY
perf record -q -a -o "$out/$name.data" -e 'sched:sched_wakeup,sched:sched_switch,syscalls:sys_enter_sendto,syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_exit_io_uring_enter,syscalls:sys_exit_epoll_wait,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait' -- sleep 2 2>/dev/null
perf script -i "$out/$name.data" -F comm,pid,tid,cpu,time,event,trace > "$out/$name.txt" 2>/dev/null
wait "$blast" || true
echo "$out/$name.txt"
