#!/usr/bin/env bash
# Quick start, command 2: install what is missing, build, and run every test through ctest.
# BUILD_DIR and extra cmake arguments (e.g. -DREQBUS_SANITIZE=thread) select a variant.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
bash scripts/build.sh "$@"
cd "$BUILD_DIR"
ctest --output-on-failure -j"${CTEST_JOBS:-2}" --timeout "${CTEST_TIMEOUT:-900}"
