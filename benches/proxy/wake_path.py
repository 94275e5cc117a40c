"""Splits each request of a trace-wakes.sh trace into its parts (medians, means of the middle
90% for a finer grain than the trace's microsecond stamps, and 90th percentiles; microseconds).

usage: wake_path.py OUT/NAME PROXY_PID PROXY_TID ORIGIN_WORKER_PID
A request is followed from the blast's sendto, through the proxy's wake-up, its read of the
request and its send upstream, the origin's answer, the proxy's wake-up and read of it, its
send to the client, to the blast's wake-up. Only requests that found the proxy asleep count.
"""
import sys, json, re, statistics as st
base, proxy_pid, proxy_tid, origin_pid = sys.argv[1:5]
fds = json.load(open(base + '.fds'))
rx = re.compile(r'^\s*(.+?)\s+(\d+)/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\w+):(\w+):\s*(.*)$')
ev = []
for line in open(base + '.txt'):
    m = rx.match(line)
    if not m: continue
    comm, pid, tid, cpu, t, sub, e, rest = m.groups()
    t = float(t) * 1e6
    fd = ret = None
    if sub == 'syscalls':
        mm = re.search(r'fd: 0x([0-9a-f]+)', rest)
        if mm: fd = str(int(mm.group(1), 16))
        if e.startswith('sys_exit'):
            r = rest.strip(); ret = int(r, 16) if r.startswith('0x') else int(r)
    elif e == 'sched_wakeup':
        fd = re.search(r' pid=(\d+)', rest).group(1)
    elif e == 'sched_switch':
        fd = re.search(r'next_pid=(\d+)', rest).group(1)
    ev.append((t, comm.strip(), pid, tid, e, fd, ret))
ev.sort()
blast_send = origin_send = None
wake = switch = None
last_wait_enter = None; last_wait_exit = None; pending = None
cyc = None; res = []
for (t, comm, pid, tid, e, fd, ret) in ev:
    if e == 'sched_wakeup' and fd == proxy_tid: wake = t; continue
    if e == 'sched_switch' and fd == proxy_tid: switch = t; continue
    if e.startswith('sched'): continue
    if comm.startswith('blast'):
        if e == 'sys_enter_sendto': blast_send = t
        if e == 'sys_exit_io_uring_enter' and cyc and cyc.get('t8'):
            cyc['t9'] = t; res.append(cyc); cyc = None
        continue
    if pid == origin_pid:
        if e in ('sys_enter_writev', 'sys_enter_sendto'): origin_send = t
        continue
    if pid != proxy_pid: continue
    if e in ('sys_enter_io_uring_enter', 'sys_enter_epoll_wait'): last_wait_enter = t
    elif e in ('sys_exit_io_uring_enter', 'sys_exit_epoll_wait'):
        last_wait_exit = (t, last_wait_enter is not None and t - last_wait_enter > 15, wake, switch)
    elif e == 'sys_enter_recvfrom': pending = fd
    elif e == 'sys_exit_recvfrom':
        kind = fds.get(pending)
        if ret is None or ret <= 0 or ret > 10**9: continue
        if kind == 'client' and cyc is None and last_wait_exit and last_wait_exit[1] and blast_send and blast_send < last_wait_exit[0]:
            cyc = {'t0': blast_send, 't1': last_wait_exit[0], 'w1': last_wait_exit[2], 's1': last_wait_exit[3], 't2': t}
        elif kind == 'up' and cyc and 't3' in cyc and 't7' not in cyc and last_wait_exit:
            cyc.update({'t7': t, 't6': last_wait_exit[0], 'w6': last_wait_exit[2], 's6': last_wait_exit[3], 't5': origin_send})
    elif e in ('sys_enter_sendto', 'sys_enter_writev'):
        kind = fds.get(fd)
        if kind == 'up' and cyc and 't3' not in cyc: cyc['t3'] = t
        elif kind == 'client' and cyc and 't7' in cyc and 't8' not in cyc: cyc['t8'] = t
def med(a, b, lo=None):
    xs = [c[b] - c[a] for c in res if c.get(a) and c.get(b) and (lo is None or c[a] >= c[lo])]
    if not xs:
        return (float('nan'), float('nan'), float('nan'), 0)
    xs.sort()
    mid = xs[len(xs) // 20: len(xs) - len(xs) // 20] or xs
    return (st.median(xs), st.mean(mid), xs[len(xs) * 9 // 10], len(xs))
print(base, 'requests followed:', len(res))
for lab, a, b, lo in [('request: sender syscall -> wakeup of proxy', 't0', 'w1', 't0'), ('request: wakeup -> proxy on CPU', 'w1', 's1', 't0'), ('request: on CPU -> wait returns', 's1', 't1', 't0'),
                  ('request: processing', 't1', 't3', None), ('origin', 't3', 't5', None),
                  ('response: origin syscall -> wakeup', 't5', 'w6', 't5'), ('response: wakeup -> on CPU', 'w6', 's6', 't5'), ('response: on CPU -> wait returns', 's6', 't6', 't5'),
                  ('response: processing', 't6', 't8', None), ('to the blast', 't8', 't9', None), ('total', 't0', 't9', None)]:
    m, avg, p90, n = med(a, b, lo); print(f'  {lab:45s} {m:7.1f} us  mean {avg:6.2f}  p90 {p90:6.1f} (n={n})')
