#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan + coverage) and runs each one for a
# bounded time, starting from its checked-in seeds (fuzz/corpus/<target>/). Any crash or broken
# invariant fails the run; the input is written to fuzz/crashes/<target>/ so that, once
# committed, tests/fuzz_regression_test.cpp replays it in the normal suite.
#   fuzz/run.sh                       every target, FUZZ_SECONDS (default 20) each
#   fuzz/run.sh frame log_line        only these
# Environment: FUZZ_SECONDS, BUILD_DIR (default build-fuzz), FUZZ_WORK (the growing corpus,
# default $BUILD_DIR/fuzz-work; kept between runs so a longer local run builds on earlier ones),
# FUZZ_SEED (libFuzzer's -seed; default: a new random one each run). With a fixed seed and an
# empty FUZZ_WORK a run repeats: CI sets both, so its gate explores the same inputs each time
# (a run that passed 60 s here passes CI's 20 s), and a crash comes from a change, not from
# where the dice fell. Exploration for new bugs is the default, random-seeded run.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
FUZZ_WORK=${FUZZ_WORK:-$BUILD_DIR/fuzz-work}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame http_body log_line config)

# Warnings stay errors: the libraries and targets build warning-free with clang 14 too.
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DREQBUS_BUILD_FUZZERS=ON -DREQBUS_SANITIZE=address,undefined \
  -DREQBUS_BUILD_TESTS=OFF -DREQBUS_BUILD_EXAMPLES=OFF -DREQBUS_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$BUILD_DIR" --target fuzzers -j"${JOBS:-2}"

failed=()
for t in "${targets[@]}"; do
  mkdir -p "$FUZZ_WORK/$t" "fuzz/crashes/$t"
  echo "--- ${t}_fuzz for ${FUZZ_SECONDS}s"
  # New inputs go to the work corpus (first directory); the checked-in seeds are only read.
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     "$BUILD_DIR/fuzz/${t}_fuzz" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 ${FUZZ_SEED:+-seed=$FUZZ_SEED} \
       -print_final_stats=1 -artifact_prefix="fuzz/crashes/$t/" \
       "$FUZZ_WORK/$t" "fuzz/corpus/$t" > "$FUZZ_WORK/$t.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^Done" "$FUZZ_WORK/$t.log" || true
  else
    failed+=("$t")
    tail -n 40 "$FUZZ_WORK/$t.log"
    echo "${t}_fuzz FAILED; input saved under fuzz/crashes/$t/ (replay: $BUILD_DIR/fuzz/${t}_fuzz <file>)"
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]}"
  exit 1
fi
echo "fuzz: ${targets[*]}: no crash in ${FUZZ_SECONDS}s each"
