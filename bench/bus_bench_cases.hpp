#pragma once
// bus_bench's cases (bench/bus_bench.cpp runs and aggregates them): raw cppzmq in
// bus_bench_raw.cpp, reqbus's Bus in bus_bench_reqbus.cpp. Each run_* function performs one run
// of one case; *_child are the entry points of the re-executed receiver process.
// Thread-safety: each function owns everything it creates; call them one at a time.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench_util.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::bench {

inline constexpr std::string_view kProbePath = "/__bench_probe";  // start-up probes, never counted
inline constexpr int kIdleTimeoutMs = 3000;    // a receiver that sees nothing for this long gives up
inline constexpr int kStartTimeoutMs = 15000;  // child start-up and subscription propagation

// One run of one throughput case.
struct Throughput {
  double events_per_s = 0;
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t gaps = 0;        // bus: subscriber gaps + receiver remote_gaps
  uint64_t not_ok = 0;      // bus: broadcast() results other than ok
  uint64_t errors = 0;      // raw_*_decode: records that failed to decode
  double cpu_ns = 0;        // CPU time of every process and thread involved (robust to the
                            // machine's other load, unlike events/s)
};

// One run of a broadcast() cost case.
struct CallCost {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  double over_2us_pct = 0;  // share of calls slower than the 2 us p99 target
  double cold_p50 = 0, cold_p99 = 0, cold_over_2us_pct = 0;  // the first lap of the queue
  uint64_t not_ok = 0;
};

// The published form of each log (request_id, node_id, seq filled), encoded with codec::append.
std::vector<std::string> encode_records(const std::vector<RequestLog>& logs);

Throughput run_raw_inproc(const std::vector<std::string>& records, uint64_t events, bool decode);
Throughput run_raw_tcp(const std::vector<std::string>& records, uint64_t events, bool decode);
int raw_child(const std::string& endpoint, uint64_t events, bool decode);

Throughput run_bus_inproc(const std::vector<RequestLog>& logs, uint64_t events);
Throughput run_bus_tcp(const std::vector<RequestLog>& logs, uint64_t events);
int bus_child(const std::string& endpoint, uint64_t events);
CallCost run_broadcast_cost(const std::vector<RequestLog>& logs, uint64_t calls, uint64_t pace_ns);
double timer_overhead_ns();

// --- the parent's side of a receiver child ---------------------------------------------------

template <class SendProbe>
inline void await_child_ready(Child& child, SendProbe send_probe) {
  const uint64_t deadline = now_ns() + uint64_t(kStartTimeoutMs) * 1000000u;
  while (now_ns() < deadline) {
    send_probe();
    if (auto line = child.read_line(1)) {
      if (*line == "ready") return;
      throw std::runtime_error("child said '" + *line + "' instead of ready");
    }
  }
  throw std::runtime_error("child receiver not ready after " + std::to_string(kStartTimeoutMs) + " ms");
}

// "done <received> <gaps> <errors> <last_ns> <cpu_ns>" from a child; `parent_cpu0` is the
// parent's process CPU clock when it started sending.
inline Throughput read_child_result(Child& child, uint64_t start, uint64_t parent_cpu0, uint64_t events) {
  const auto line = child.read_line(120000);
  Throughput t;
  t.sent = events;
  unsigned long long received = 0, gaps = 0, errors = 0, last = 0, cpu = 0;
  if (!line || std::sscanf(line->c_str(), "done %llu %llu %llu %llu %llu", &received, &gaps, &errors,
                           &last, &cpu) != 5)
    throw std::runtime_error("child gave no result: '" + line.value_or("<nothing>") + "'");
  if (child.wait() != 0) throw std::runtime_error("child receiver failed");
  t.received = received;
  t.gaps = gaps;
  t.errors = errors;
  t.events_per_s = last > start ? double(received) * 1e9 / double(last - start) : 0;
  t.cpu_ns = double(cpu) + double(cpu_now_ns() - parent_cpu0);
  return t;
}


}  // namespace reqbus::bench
