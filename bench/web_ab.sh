#!/usr/bin/env bash
# web_ab.sh: server CPU a request of two builds' web_bench servers, loaded at the same time, to
# decide a change to the publish path by ~0.5 %.
#
#   bench/web_ab.sh [--free] [--runs N] [--seconds S] BIN_A BIN_B [MODE]   (MODE: publish)
#
# BIN_A and BIN_B are two web_bench binaries (say, a build of main and one of a change). Both
# serve MODE (`--serve publish` by default) at once, each loaded by its own wrk (-t1 -c32,
# bench/web_bench.lua) for S seconds (default 8), N times (default 8); each run reads both
# servers' CPU time from /proc and prints B/A in CPU a request. Which wrk starts first
# alternates from run to run. Pinned (default): both servers on the last CPU and the wrks on the
# others, as `web_bench --shared-cpu`; --free: no pinning, as web_bench's own runs.
#
# The second server started reads ~0.5 % apart from the first even when both are the same
# binary (A against A: 0.995 and 1.005 in two programs; start order, memory layout), so the
# program runs twice, the second time with the roles swapped, and prints
# sqrt(ratio1 / ratio2): that bias cancels. Needs wrk and python3; takes 2 x N x S seconds.
set -euo pipefail
pin=1 runs=8 seconds=8
while [ $# -gt 0 ]; do
  case $1 in
    --free) pin=0; shift ;;
    --runs) runs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -*) echo "web_ab: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "usage: web_ab.sh [--free] [--runs N] [--seconds S] BIN_A BIN_B [MODE]" >&2; exit 2; }
bin_a=$1 bin_b=$2 mode=${3:-publish}
for b in "$bin_a" "$bin_b"; do [ -x "$b" ] || { echo "web_ab: $b is not an executable" >&2; exit 2; }; done
command -v wrk >/dev/null || { echo "web_ab: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
lua=$(cd "$(dirname "$0")" && pwd)/web_bench.lua
last_cpu=$(($(nproc) - 1))
server_pin=() wrk_pin=()
if [ $pin = 1 ]; then
  [ $last_cpu -ge 1 ] || { echo "web_ab: pinning needs 2 CPUs (use --free)" >&2; exit 2; }
  server_pin=(--cpu $last_cpu) wrk_pin=(taskset -c 0-$((last_cpu - 1)))
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
requests() { awk '/requests in/{print $1}' "$1"; }

# Runs one program: first and second started servers; prints the median of second/first.
program() {
  local first=$1 second=$2 pa pb port_a port_b ratios=() r
  "$first" --serve "$mode" "${server_pin[@]}" > "$work/a.out" & pa=$!
  "$second" --serve "$mode" "${server_pin[@]}" > "$work/b.out" & pb=$!
  pids=($pa $pb)
  for _ in $(seq 1 50); do
    port_a=$(awk '/^port/{print $2}' "$work/a.out"); port_b=$(awk '/^port/{print $2}' "$work/b.out")
    [ -n "$port_a" ] && [ -n "$port_b" ] && break
    sleep 0.1
  done
  [ -n "$port_a" ] && [ -n "$port_b" ] || { echo "web_ab: a server did not start" >&2; exit 1; }
  for p in $port_a $port_b; do "${wrk_pin[@]}" wrk -t1 -c32 -d2s -s "$lua" "http://127.0.0.1:$p/" > /dev/null; done
  for r in $(seq 1 "$runs"); do
    local ca cb wa wb
    ca=$(cpu_ticks $pa); cb=$(cpu_ticks $pb)
    if [ $((r % 2)) = 1 ]; then
      "${wrk_pin[@]}" wrk -t1 -c32 -d${seconds}s -s "$lua" "http://127.0.0.1:$port_a/" > "$work/wa" & wa=$!
      "${wrk_pin[@]}" wrk -t1 -c32 -d${seconds}s -s "$lua" "http://127.0.0.1:$port_b/" > "$work/wb" & wb=$!
    else
      "${wrk_pin[@]}" wrk -t1 -c32 -d${seconds}s -s "$lua" "http://127.0.0.1:$port_b/" > "$work/wb" & wb=$!
      "${wrk_pin[@]}" wrk -t1 -c32 -d${seconds}s -s "$lua" "http://127.0.0.1:$port_a/" > "$work/wa" & wa=$!
    fi
    wait $wa $wb
    ratios+=("$(python3 -c "print(($(cpu_ticks $pb) - $cb) / $(requests "$work/wb") / (($(cpu_ticks $pa) - $ca) / $(requests "$work/wa")))")")
    echo "  run $r: second/first CPU a request ${ratios[-1]:0:6}" >&2
  done
  kill $pa $pb; wait $pa $pb 2>/dev/null || true
  python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "${ratios[@]}"
}

echo "web_ab: A=$bin_a B=$bin_b mode=$mode, $runs runs of ${seconds}s, $([ $pin = 1 ] && echo "both on CPU $last_cpu" || echo unpinned)" >&2
r1=$(program "$bin_a" "$bin_b")
echo "program 1 (B started second): median B/A $r1" >&2
r2=$(program "$bin_b" "$bin_a")
echo "program 2 (A started second): median A/B $r2" >&2
python3 -c "
import math
r1, r2 = $r1, $r2
print(f'B/A server CPU a request: {math.sqrt(r1 / r2):.4f}  (program 1: {r1:.4f}, program 2 swapped: {r2:.4f}, start-order bias {math.sqrt(r1 * r2):.4f})')"
