#!/usr/bin/env bash
# web_instructions.sh: user-space instructions per request of web_bench's two servers (`--serve
# off` and `--serve publish`), counted by valgrind's callgrind under the same wrk load.
#
#   bench/web_instructions.sh [--json] [BUILD_DIR]     (default BUILD_DIR: build-bench)
#
# Why: web_bench's wall-clock figures move by several percent from one program to the next on
# this VM, more than the changes we want to see. Instruction counts are exact and repeat: they
# show what a change to the publish path does to the work per request. They are not the issue's
# target and they understate it: the kernel's share of a request (most of it: sockets, poll) and
# cache misses are not counted. Prints, per server, instructions per request (whole program over
# the requests it served, start-up included: a few hundred per request at this load), then the
# publish server's top functions by extra instructions. Needs valgrind and wrk (apt-get install
# valgrind wrk); takes about a minute.
set -euo pipefail
json=0
if [ "${1:-}" = "--json" ]; then json=1; shift; fi
build=${1:-build-bench}
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/bench/web_bench
for tool in valgrind wrk callgrind_annotate; do
  command -v $tool >/dev/null || { echo "web_instructions: $tool is not installed" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "web_instructions: no $bin (build with -DREQBUS_BUILD_BENCHMARKS=ON)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs one server under callgrind: 3 s of warm-up load, then 12 s more, all of it counted.
# Prints "<requests> <instructions>".
measure() {
  local mode=$1 out=$work/$1 port=""
  valgrind --tool=callgrind --callgrind-out-file="$out.cg" "$bin" --serve "$mode" > "$out.log" 2> "$out.vg" &
  for _ in $(seq 1 120); do
    port=$(awk '/^port/{print $2}' "$out.log")
    [ -n "$port" ] && break
    sleep 0.5
  done
  [ -n "$port" ] || { echo "web_instructions: the $mode server did not start" >&2; exit 1; }
  wrk -t1 -c8 -d3s -s "$here/web_bench.lua" "http://127.0.0.1:$port/" > "$out.wrk"
  wrk -t1 -c8 -d12s -s "$here/web_bench.lua" "http://127.0.0.1:$port/" >> "$out.wrk"
  curl -s "http://127.0.0.1:$port/__bench_stop" > /dev/null || true
  wait
  callgrind_annotate --threshold=100 "$out.cg" > "$out.txt" 2> /dev/null
  local requests total
  requests=$(awk '/requests in/{s += $1} END {print s + 1}' "$out.wrk")  # + the stop request
  total=$(awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}' "$out.txt")
  echo "$requests $total"
}

read -r off_n off_ir < <(measure off)
read -r pub_n pub_ir < <(measure publish)
off=$(awk -v i="$off_ir" -v n="$off_n" 'BEGIN {printf "%.0f", i / n}')
pub=$(awk -v i="$pub_ir" -v n="$pub_n" 'BEGIN {printf "%.0f", i / n}')
ratio=$(awk -v a="$pub" -v b="$off" 'BEGIN {printf "%.4f", a / b}')
if [ $json = 1 ]; then
  echo "{\"name\":\"web_off_instructions\",\"value\":$off,\"unit\":\"instructions/request\",\"baseline\":null,\"ratio\":null,\"requests\":$off_n}"
  echo "{\"name\":\"web_publish_instructions\",\"value\":$pub,\"unit\":\"instructions/request\",\"baseline\":\"web_off_instructions\",\"ratio\":$ratio,\"extra_per_request\":$((pub - off)),\"requests\":$pub_n}"
  exit 0
fi
echo "user-space instructions per request (callgrind, start-up included)"
printf '  off      %8d  (%d requests)\n' "$off" "$off_n"
printf '  publish  %8d  (%d requests)  ratio %s, +%d a request\n' "$pub" "$pub_n" "$ratio" $((pub - off))
echo "publish server, functions with the most instructions per request that the off server does not run as much:"
# Self cost per function in each server, per request; the 15 largest differences.
per_function() {
  sed -nE '/PROGRAM TOTALS/d; s/ \[\/[^]]*\]$//; s/^ *([0-9,]+) \( *[0-9.]+%\) +(.*)$/\1\t\2/p' "$1" |
    awk -F'\t' -v n="$2" '{c = $1; gsub(",", "", c); printf "%.1f\t%s\n", c / n, $2}'
}
per_function "$work/off.txt" "$off_n" | sort -t$'\t' -k2,2 > "$work/off.f"
per_function "$work/publish.txt" "$pub_n" | sort -t$'\t' -k2,2 > "$work/pub.f"
join -t$'\t' -1 2 -2 2 -a 2 -e 0 -o '0,1.1,2.1' "$work/off.f" "$work/pub.f" |
  awk -F'\t' '{printf "%8.0f  %s\n", $3 - $2, substr($1, 1, 110)}' | sort -rn | head -15
