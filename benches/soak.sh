#!/usr/bin/env bash
# Soak: engine target <- engine proxy (admin scraped every second) <- engine blast --rate,
# for DURATION. Every minute it samples each process's RSS and open descriptors into a CSV;
# at the end it adds the blast's exact p99 per minute (engine report windows) and judges:
# no process died, RSS within +10% of its 5-minute value, descriptors flat (the second
# half's median within 2 of the first half's, the last sample no higher than the first half's
# peak: a pool that grows in a burst and shrinks after its idle timeout is not a leak),
# per-minute p99 within +-20% of its median.
#
#   DURATION=2h benches/soak.sh            # by hand, in the background; minutes of output
#   ENGINE=target/release/engine RATE=200 DURATION=10m OUT=/tmp/soak benches/soak.sh
#
# The three engine processes run on ENGINE_CPUS (default: the last CPU) and the sampler and
# the curl scraper on TOOLS_CPUS (default: the others), so starting a curl every third of a
# second does not show in the blast's p99. Keep other work off ENGINE_CPUS meanwhile.
#
# AWAKE=1 keeps every CPU from halting while the soak runs: one SCHED_IDLE spinner per CPU,
# which any runnable task preempts at once. On a VM whose idle vCPUs halt (a guest without
# halt-polling, as this one: haltpoll.guest_halt_poll_ns=0), waking a halted vCPU for each of
# 200 requests a second puts a millisecond or more into about 1% of them, and that noise moves
# the per-minute p99 by more than the 20% the soak judges. The spinners take no time from
# the engines; they only keep their CPUs from sleeping, as idle=poll would.
#
# CONTROL=1 runs a second blast at the same rate straight to the target (no proxy), on the
# same CPU, into OUT/control: its per-minute p99 is the machine's own noise, reported beside
# the proxied one but not judged. Each sample also has the steal time of ENGINE_CPUS over the
# minute before it (/proc/stat): time the host ran something else on our vCPU.
#
# Loopback only. Exit 0 when every judgement holds, 1 otherwise.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENGINE=${ENGINE:-target/release/engine}
DURATION=${DURATION:-2h}
RATE=${RATE:-200}
OUT=${OUT:-soak-$(date -u +%Y%m%d-%H%M%S)}
SAMPLE_EVERY=${SAMPLE_EVERY:-60}
last_cpu=$(($(nproc) - 1))
ENGINE_CPUS=${ENGINE_CPUS:-$last_cpu}
TOOLS_CPUS=${TOOLS_CPUS:-$([ "$last_cpu" -gt 0 ] && echo "0-$((last_cpu - 1))" || echo 0)}
command -v taskset >/dev/null || { echo "soak: needs taskset (util-linux)" >&2; exit 2; }
taskset -pc "$TOOLS_CPUS" $$ >/dev/null

[ -x "$ENGINE" ] || { echo "soak: build first: cargo build --release (or set ENGINE)" >&2; exit 2; }
command -v curl >/dev/null || { echo "soak: needs curl" >&2; exit 2; }
mkdir -p "$OUT"
csv="$OUT/samples.csv"

pids=()
spinners=()
cleanup() {
    for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

# Starts a server with --listen on port 0 and waits for its start line in LOG.
start() {
    local log=$1; shift
    taskset -c "$ENGINE_CPUS" "$ENGINE" "$@" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        grep -q "http://" "$log" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "soak: '$*' did not start:" >&2; cat "$log" >&2; exit 1
}

if [ "${AWAKE:-0}" = 1 ]; then
    command -v chrt >/dev/null || { echo "soak: AWAKE=1 needs chrt (util-linux)" >&2; exit 2; }
    for cpu in $(seq 0 "$last_cpu"); do
        taskset -c "$cpu" chrt -i 0 bash -c 'while :; do :; done' &
        spinners+=($!)
    done
fi

start "$OUT/target.log" target --listen 127.0.0.1:0 --shards 1
target_pid=${pids[-1]}
target_addr=$(grep -o 'http://[0-9.:]*' "$OUT/target.log" | head -1 | sed 's|http://||')
start "$OUT/proxy.log" proxy --listen 127.0.0.1:0 --admin 127.0.0.1:0 --upstream "$target_addr"
proxy_pid=${pids[-1]}
proxy_addr=$(grep -o 'http://[0-9.:]*' "$OUT/proxy.log" | head -1 | sed 's|http://||')
admin_addr=$(grep -o 'admin http://[0-9.:]*' "$OUT/proxy.log" | sed 's|admin http://||')

taskset -c "$ENGINE_CPUS" "$ENGINE" blast "http://$proxy_addr/" --rate "$RATE" -c 64 --shards 1 -d "$DURATION" --out "$OUT/blast" \
    >"$OUT/blast.log" 2>&1 &
blast_pid=$!
pids+=("$blast_pid")
if [ "${CONTROL:-0}" = 1 ]; then
    taskset -c "$ENGINE_CPUS" "$ENGINE" blast "http://$target_addr/" --rate "$RATE" -c 64 --shards 1 -d "$DURATION" --out "$OUT/control" \
        >"$OUT/control.log" 2>&1 &
    control_pid=$!
    pids+=("$control_pid")
fi

# The admin API scraped every second, as Prometheus and a dashboard would.
scrape_failures="$OUT/scrape-failures"
: >"$scrape_failures"
(
    while kill -0 "$blast_pid" 2>/dev/null; do
        for path in stats metrics healthz; do
            curl -sf -m 2 -o /dev/null "http://$admin_addr/$path" || echo "$(date -u +%T) /$path" >>"$scrape_failures"
        done
        sleep 1
    done
) &
pids+=($!)

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
# Steal ticks (USER_HZ) summed over ENGINE_CPUS, from /proc/stat's 8th field.
steal_ticks() {
    local total=0 cpu
    for cpu in $(echo "$ENGINE_CPUS" | tr ',' ' '); do
        case $cpu in *-*) cpu=$(seq "${cpu%-*}" "${cpu#*-}") ;; esac
        for c in $cpu; do total=$((total + $(awk -v c="cpu$c" '$1 == c {print $9}' /proc/stat))); done
    done
    echo "$total"
}
tick_ms=$((1000 / $(getconf CLK_TCK)))

echo "minute,t_s,target_rss_kib,target_fds,proxy_rss_kib,proxy_fds,blast_rss_kib,blast_fds,scrape_failures,steal_ms" >"$csv"
echo "soak: target $target_addr, proxy $proxy_addr (admin $admin_addr), blast --rate $RATE for $DURATION on CPU $ENGINE_CPUS (tools on $TOOLS_CPUS)$([ "${AWAKE:-0}" = 1 ] && echo ", CPUs kept awake"); samples in $csv"
t0=$(date +%s)
minute=0
steal_before=$(steal_ticks)
while kill -0 "$blast_pid" 2>/dev/null; do
    now=$(date +%s)
    steal_now=$(steal_ticks)
    echo "$minute,$((now - t0)),$(rss "$target_pid"),$(fds "$target_pid"),$(rss "$proxy_pid"),$(fds "$proxy_pid"),$(rss "$blast_pid"),$(fds "$blast_pid"),$(wc -l <"$scrape_failures"),$(((steal_now - steal_before) * tick_ms))" >>"$csv"
    steal_before=$steal_now
    minute=$((minute + 1))
    # Sleep to the next sample, waking early when the blast ends.
    for _ in $(seq "$SAMPLE_EVERY"); do
        kill -0 "$blast_pid" 2>/dev/null || break
        sleep 1
    done
done
blast_rc=0
wait "$blast_pid" || blast_rc=$?
[ "${CONTROL:-0}" = 1 ] && { wait "$control_pid" || true; }
alive=1
for p in "$target_pid" "$proxy_pid"; do kill -0 "$p" 2>/dev/null || alive=0; done
"$ENGINE" report windows "$OUT/blast" --every "${SAMPLE_EVERY}s" >"$OUT/p99-per-window.csv"
if [ "${CONTROL:-0}" = 1 ]; then
    "$ENGINE" report windows "$OUT/control" --every "${SAMPLE_EVERY}s" >"$OUT/control-p99-per-window.csv"
fi

python3 - "$OUT" "$blast_rc" "$alive" <<'EOF'
import csv, statistics, sys
out, blast_rc, alive = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rows = list(csv.DictReader(open(f"{out}/samples.csv")))
windows = [w for w in csv.DictReader(open(f"{out}/p99-per-window.csv")) if w["p99_ms"]]
# The last window is cut short by the end of the run (and its drain): not a full minute.
p99 = [float(w["p99_ms"]) for w in windows[:-1]] or [float(w["p99_ms"]) for w in windows]
ok = True
def judge(name, good, detail):
    global ok
    ok &= good
    print(f"{'PASS' if good else 'FAIL'}  {name}: {detail}")
judge("no process died", alive and blast_rc == 0, f"blast exit {blast_rc}, target and proxy {'alive' if alive else 'GONE'}")
base_row = rows[min(5, len(rows) - 1)]
for proc in ("target", "proxy", "blast"):
    series = [int(r[f"{proc}_rss_kib"]) for r in rows if r[f"{proc}_rss_kib"]]
    base = int(base_row[f"{proc}_rss_kib"] or series[0])
    top = max(series[min(5, len(series) - 1):])
    judge(f"{proc} RSS", top <= base * 1.10, f"5-minute value {base} KiB, highest after it {top} KiB ({(top / base - 1) * 100:+.1f}%)")
    f = [int(r[f"{proc}_fds"]) for r in rows[1:]] or [0]
    first, second = f[: max(1, len(f) // 2)], f[len(f) // 2:]
    m1, m2 = statistics.median(first), statistics.median(second)
    judge(f"{proc} descriptors", abs(m2 - m1) <= 2 and f[-1] <= max(first),
          f"median {m1:g} in the first half, {m2:g} in the second, last {f[-1]}, range {min(f)}..{max(f)}")
med = statistics.median(p99)
lo, hi = min(p99), max(p99)
judge("blast p99 per minute", lo >= med * 0.8 and hi <= med * 1.2,
      f"median {med:.3f} ms, range {lo:.3f}..{hi:.3f} ms ({(lo / med - 1) * 100:+.0f}% / {(hi / med - 1) * 100:+.0f}%) over {len(p99)} windows")
try:
    control = [float(w["p99_ms"]) for w in csv.DictReader(open(f"{out}/control-p99-per-window.csv")) if w["p99_ms"]][:-1]
except FileNotFoundError:
    control = []
if control:
    cm = statistics.median(control)
    within = sum(1 for v in control if cm * 0.8 <= v <= cm * 1.2)
    print(f"info  control (same rate straight to the target, not judged): p99 per minute median {cm:.3f} ms, "
          f"range {min(control):.3f}..{max(control):.3f} ms; {within} of {len(control)} minutes within +-20%")
    n = min(len(control), len(p99))
    if n > 2:
        print(f"info  correlation of the proxied and control p99 per minute: {statistics.correlation(p99[:n], control[:n]):+.2f}")
steal = [int(r["steal_ms"]) for r in rows[1:] if r.get("steal_ms")]
if steal:
    print(f"info  steal on the engines' CPUs per minute: median {statistics.median(steal):g} ms, max {max(steal)} ms")
    n = min(len(steal), len(p99))
    if n > 2 and len(set(steal[:n])) > 1:
        print(f"info  correlation of the proxied p99 and steal per minute: {statistics.correlation(p99[:n], steal[:n]):+.2f}")
inside = sum(1 for v in p99 if med * 0.8 <= v <= med * 1.2)
print(f"info  proxied p99: {inside} of {len(p99)} minutes within +-20%; medians of the first and second halves "
      f"{statistics.median(p99[:len(p99) // 2] or p99):.3f} / {statistics.median(p99[len(p99) // 2:]):.3f} ms")
fails = int(rows[-1]["scrape_failures"]) if rows else 0
judge("admin scrapes", fails == 0, f"{fails} failed (stats, metrics, healthz every second)")
print(f"samples: {len(rows)} in {out}/samples.csv; p99 per window in {out}/p99-per-window.csv")
sys.exit(0 if ok else 1)
EOF
