#!/usr/bin/env bash
# Run one load generator against the bench target and print one logfmt line of results.
# usage: benches/rig/run-one.sh GENERATOR CONNS DURATION_S
#   GENERATOR: wrk | h2load | hey | oha | ab | engine
# The generator runs pinned to CPU 1 (nginx is on CPU 0) under GNU time and a hard timeout.
# 'served' is the delta of nginx's own request counter (stub_status), not what the tool claims.
# env overrides: URL, WRK, H2LOAD, HEY, OHA, AB, GL2, ENGINE_BIN, RAW_DIR, GEN_CPU
# HTTP/2: STREAMS=N runs h2load, oha and engine over HTTP/2 with N streams a connection (h2c
# on http:// by prior knowledge: the rig's :18082; h2 by ALPN on https://: :18444).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gen="${1:-}"; conns="${2:-}"; dur="${3:-}"
if [[ -z "$gen" || ! "$conns" =~ ^[0-9]+$ || ! "$dur" =~ ^[0-9]+$ ]]; then
    echo "usage: $0 wrk|h2load|hey|oha|ab|engine CONNS DURATION_S" >&2; exit 2
fi
url="${URL:-http://127.0.0.1:18080/}"
raw_dir="${RAW_DIR:-/tmp/bench-raw}"
cpu="${GEN_CPU:-1}"
mkdir -p "$raw_dir"
stamp="$(date +%Y%m%d-%H%M%S)-$$"
streams="${STREAMS:-}"
out="$raw_dir/$gen-c$conns${streams:+x$streams}-d$dur-$stamp.out"
tfile="$raw_dir/$gen-c$conns${streams:+x$streams}-d$dur-$stamp.time"

case "$url" in
    http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
    https://127.0.0.1:*|https://localhost:*|https://\[::1\]:*) ;;
    *) echo "run-one.sh: refusing non-loopback URL $url" >&2; exit 2 ;;
esac

pick() { # first executable among args
    local c; for c in "$@"; do [[ -n "$c" ]] && command -v "$c" >/dev/null 2>&1 && { command -v "$c"; return 0; }; done
    return 1
}

case "$gen" in
    wrk)    bin="$(pick "${WRK:-}" wrk)" || { echo "wrk not found" >&2; exit 3; }
            cmd=("$bin" -t1 -c"$conns" -d"${dur}s" "$url") ;;
    h2load) bin="$(pick "${H2LOAD:-}" h2load)" || { echo "h2load not found" >&2; exit 3; }
            if [[ -n "$streams" ]]; then cmd=("$bin" -t1 -c"$conns" -m"$streams" -D "$dur" -n 1000000000 "$url")
            else cmd=("$bin" --h1 -t1 -c"$conns" -D "$dur" -n 1000000000 "$url"); fi ;;
    hey)    bin="$(pick "${HEY:-}" hey)" || { echo "hey not found" >&2; exit 3; }
            cmd=("$bin" -cpus 1 -c "$conns" -z "${dur}s" "$url") ;;
    oha)    bin="$(pick "${OHA:-}" oha)" || { echo "oha not found (cargo install oha --locked)" >&2; exit 3; }
            cmd=("$bin" -c "$conns" -z "${dur}s" --no-tui "$url")
            [[ -n "$streams" ]] && cmd+=(--http2 -p "$streams")
            [[ $url == https:* ]] && cmd+=(--insecure) ;;
    ab)     bin="$(pick "${AB:-}" ab)" || { echo "ab not found" >&2; exit 3; }
            # -t alone implies -n 50000, so -n must come after it
            cmd=("$bin" -k -q -c "$conns" -t "$dur" -n 100000000 "$url") ;;
    engine) [[ -n "${ENGINE_BIN:-}" && -x "${ENGINE_BIN:-}" ]] || { echo "engine: set ENGINE_BIN to an executable engine binary" >&2; exit 3; }
            bin="$ENGINE_BIN"
            # The results folder beside the raw output, not in the caller's directory.
            cmd=("$bin" blast "$url" --conns "$conns" --duration "${dur}s" --out "${out%.out}.results")
            [[ $url == https:* ]] && cmd+=(--cacert "$("$here/target.sh" cacert)")
            if [[ -n "$streams" && $url == https:* ]]; then cmd+=(--http2 --streams "$streams")
            elif [[ -n "$streams" ]]; then cmd+=(--http2-prior-knowledge --streams "$streams"); fi ;;
    *) echo "unknown generator $gen" >&2; exit 2 ;;
esac

"$here/target.sh" requests >/dev/null 2>&1 || { echo "run-one.sh: target not answering; run benches/rig/target.sh start" >&2; exit 4; }
worker="$(pgrep -P "$(cat "${BENCH_PREFIX:-/tmp/bench-nginx}/logs/nginx.pid")" | head -1)"
srv_ticks() { awk '{print $14 + $15}' "/proc/$worker/stat"; }

limit=$(( dur * 2 + 30 ))
{
    echo "# cmd: taskset -c $cpu ${cmd[*]}"
    echo "# date: $(date -Is)  loadavg: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# before: $(ss -tan state time-wait | wc -l) TIME_WAIT sockets"
} > "$out"

before="$("$here/target.sh" requests)"
s0="$(srv_ticks)"
taskset -c "$cpu" /usr/bin/time -v -o "$tfile" timeout -k 5 "$limit" "${cmd[@]}" >> "$out" 2>&1
rc=$?
s1="$(srv_ticks)"
after="$("$here/target.sh" requests)"
served=$(( after - before - 1 ))   # the 'after' status request counts itself

tv() { grep -F "$1" "$tfile" | head -1 | awk -F': ' '{print $NF}'; }
user="$(tv 'User time (seconds)')"; sys="$(tv 'System time (seconds)')"
rss="$(tv 'Maximum resident set size')"
wall="$(tv 'Elapsed (wall clock) time' | awk -F: '{ s=0; for (i=1;i<=NF;i++) s = s*60 + $i; print s }')"
hz="$(getconf CLK_TCK)"

# Reported rps and errors, per tool output format.
rep=NA; errs=NA; detail=""; sample=""
case "$gen" in
    wrk)
        rep="$(grep -oP 'Requests/sec:\s+\K[0-9.]+' "$out")"
        se="$(grep -oP 'Socket errors: connect \d+, read \d+, write \d+, timeout \d+' "$out")"
        n2="$(grep -oP 'Non-2xx or 3xx responses: \K\d+' "$out")"
        read -r c r w t <<<"$(echo "${se:-connect 0, read 0, write 0, timeout 0}" | grep -oP '\d+' | tr '\n' ' ')"
        errs=$(( c + r + w + t + ${n2:-0} ))
        detail="connect:$c,read:$r,write:$w,timeout:$t,non2xx:${n2:-0}" ;;
    h2load)
        rep="$(grep -oP 'finished in [0-9.]+s, \K[0-9.]+(?= req/s)' "$out")"
        line="$(grep -P '^requests: ' "$out")"
        f="$(grep -oP '\d+(?= failed)' <<<"$line")"; e="$(grep -oP '\d+(?= errored)' <<<"$line")"
        t="$(grep -oP '\d+(?= timeout)' <<<"$line")"
        errs="${f:-NA}"; detail="failed:${f:-NA},errored:${e:-NA},timeout:${t:-NA}" ;;
    hey|oha)
        rep="$(grep -oP 'Requests/sec:\s+\K[0-9.]+' "$out")"
        # oha lists requests cut off at the end of -z as errors ("aborted due to deadline"):
        # those are not failures, so they are counted apart.
        errs="$(awk '/^Error distribution:/ {on=1; next} on && /^[ \t]*\[[0-9]+\]/ && !/aborted due to deadline/ { gsub(/[\[\]]/, "", $1); s += $1 } on && /^$/ {on=0} END {print s+0}' "$out")"
        ab_dl="$(awk '/^Error distribution:/ {on=1; next} on && /aborted due to deadline/ { gsub(/[\[\]]/, "", $1); s += $1 } END {print s+0}' "$out")"
        sample="$(awk '/^Error distribution:/ {on=1; next} on && /^[ \t]*\[[0-9]+\]/ && !/aborted due to deadline/ {print; exit}' "$out")"
        detail="status:$(awk '/^Status code distribution:/ {on=1; next} on && /^[ \t]*\[/ { gsub(/[\[\]]/, "", $1); printf "%s%s:%s", sep, $1, $2; sep="," } on && /^$/ {on=0}' "$out"),deadline_aborted:$ab_dl" ;;
    ab)
        rep="$(grep -oP 'Requests per second:\s+\K[0-9.]+' "$out")"
        f="$(grep -oP 'Failed requests:\s+\K\d+' "$out")"; n2="$(grep -oP 'Non-2xx responses:\s+\K\d+' "$out")"
        [[ -n "$f" ]] && errs=$(( f + ${n2:-0} )); detail="failed:${f:-NA},non2xx:${n2:-0}" ;;
    engine)
        rep="$(grep -oP '^\d+ requests in [0-9.]+s, \K[0-9.]+(?= req/s)' "$out" | head -1)"
        # The summary's line: "errors      N (connect 0, timeout 0, ...)".
        el="$(grep -P '^\s+errors\s+\d+ \(' "$out" | tail -1)"
        errs="$(grep -oP '^\s+errors\s+\K\d+' <<<"$el")"
        detail="$(grep -oP '\(\K[^)]*' <<<"$el" | tr -d ' ' | tr ',' '\n' | sed 's/\([a-z_]*\)\([0-9]*\)/\1:\2/' | paste -sd,)" ;;
esac
# Anything that looks like a fatal message from the tool when it failed.
if [[ $rc -ne 0 && -z "$sample" ]]; then
    sample="$(grep -v '^#' "$out" | grep -iE 'error|fail|refused|too many|cannot|unable|panic|killed|reset' | head -1)"
fi
[[ $rc -eq 124 || $rc -eq 137 ]] && sample="killed by timeout after ${limit}s; ${sample}"
sample="$(echo "$sample" | tr -s ' \t' ' ' | tr '"' "'" | cut -c1-200)"

awk -v g="$gen" -v c="$conns" -v strm="${streams:+x$streams}" -v d="$dur" -v served="$served" -v wall="$wall" -v u="$user" -v s="$sys" \
    -v rss="$rss" -v rep="${rep:-NA}" -v errs="${errs:-NA}" -v det="$detail" -v rc="$rc" \
    -v st="$(( s1 - s0 ))" -v hz="$hz" -v raw="$out" -v smp="$sample" 'BEGIN {
    cpu = u + s
    printf "generator=%s conns=%s%s duration=%s served=%d wall_s=%.2f rps_served=%.0f rps_nominal=%.0f", g, c, strm, d, served, wall, (wall > 0 ? served / wall : 0), served / d
    printf " gen_user_s=%.2f gen_sys_s=%.2f gen_cpu_util=%.2f served_per_cpu_s=%.0f gen_max_rss_kb=%d", u, s, (wall > 0 ? cpu / wall : 0), (cpu > 0 ? served / cpu : 0), rss
    printf " srv_cpu_util=%.2f gen_reported_rps=%s errors=%s", (wall > 0 ? st / hz / wall : 0), rep, errs
    if (det != "") printf " err_detail=%s", det
    printf " exit=%s raw=%s", rc, raw
    if (smp != "") printf " err_sample=\"%s\"", smp
    printf "\n"
}'
