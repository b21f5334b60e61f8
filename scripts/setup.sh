#!/usr/bin/env bash
# Installs the Debian 12 packages reqbus needs to build, test and run, when they are missing.
# Safe to run repeatedly: it does nothing when everything is installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git
  libzmq3-dev cppzmq-dev          # ZeroMQ + its C++ binding (the bus)
  libmsgpack-cxx-dev              # msgpack-c (the wire format)
  libboost-dev libboost-test-dev  # Boost.Test (the test suite)
  libsqlite3-dev sqlite3          # SQLite (the embedded store)
  libpq-dev postgresql            # libpq + a server the tests start on a private port
  libcurl4-openssl-dev            # HTTP client (Client, HTTP sink)
  nlohmann-json3-dev              # JSON
  libcpp-httplib-dev libssl-dev   # HTTP server (examples, node API); OpenSSL HMAC for visitor hashes
  libcli11-dev libtomlplusplus-dev  # command line and TOML config (the reqbus program)
  chromium                        # headless browser for the dashboard test (tests/dashboard_test.cpp)
  nginx                           # real web server whose access log the ingest test reads (tests/nginx_ingest_test.cpp)
  clang libclang-rt-14-dev        # libFuzzer + sanitizer runtimes (fuzz/, the fuzz stage of .ci/run)
  redis-server libhiredis-dev      # Redis pub/sub, the baseline of bench/cluster_bench.cpp
  procps curl ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts a cluster when postgresql is installed; the tests run their own private one.
echo "setup: done"
