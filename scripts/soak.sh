#!/usr/bin/env bash
# Soak: runs `reqbus demo` (a node, the example web server and realistic HTTP traffic in one
# process) for a long time while sampling its RSS, open files and threads every second into a
# CSV, then compares the first minute with the last (scripts/soak_report.py). Not run by CI.
#
#   scripts/soak.sh [--duration SECONDS] [--rate REQ_PER_S] [--out DIR] [--binary PATH]
#
# Defaults: 600 s, 1500 requests/s (the demo's default), DIR = soak-<date>, PATH = build/reqbus.
# Exit status: 0 when nothing grew (see soak_report.py for the rule), 1 when something did,
# 2 when the demo failed.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600
rate=1500
out="soak-$(date +%Y%m%d-%H%M%S)"
binary=build/reqbus
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    *) echo "soak.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -x "$binary" ]] || { echo "soak.sh: $binary not found (build first, or pass --binary)" >&2; exit 2; }
mkdir -p "$out"
csv="$out/samples.csv"

"$binary" demo --duration "$duration" --rate "$rate" --db "$out/soak.db" --http 127.0.0.1:0 \
  >"$out/demo.out" 2>"$out/demo.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' INT TERM

echo "t_s,rss_kb,open_files,threads" >"$csv"
start=$(date +%s.%N)
while kill -0 "$pid" 2>/dev/null && [[ -r /proc/$pid/status ]]; do
  now=$(date +%s.%N)
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
  fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
  [[ -n "$rss" && -n "$threads" ]] && \
    echo "$(awk -v a="$now" -v b="$start" 'BEGIN {printf "%.1f", a - b}'),$rss,$fds,$threads" >>"$csv"
  # Sample on a 1 s grid measured from the start; a late sample skips to the next grid point
  # rather than catching up with a burst.
  next=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN {e = n - s; d = int(e) + 1 - e; printf "%.3f", d}')
  sleep "$next"
done
status=0
wait "$pid" || status=$?
if [[ $status -ne 0 ]]; then
  echo "soak.sh: reqbus demo exited with $status; see $out/demo.err" >&2
  exit 2
fi
echo "reqbus demo:"; sed 's/^/  /' "$out/demo.out" | tail -n 15
python3 scripts/soak_report.py "$csv"
