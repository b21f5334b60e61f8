#pragma once
// LiveStats: what the dashboard, `reqbus top` and /api/stats show, aggregated in memory from
// the live stream (a cluster-scope subscription), per node and for the whole cluster.
// - requests/s for the last `series_seconds`, with 4xx/5xx shares, bucketed by event time;
// - latency p50/p95/p99 over the last `latency_seconds` from log-spaced histograms (about 6 %
//   relative error, stated in the JSON);
// - since start: status codes, top paths, referers, 404 paths, slowest paths, devices,
//   bots vs humans; each table is bounded at `max_keys` (what does not fit is counted as
//   "(other)", never dropped silently); devices by device_label() (six labels at most);
// - visitors active in the last 5 minutes, counted by VisitorHasher ids (an event stamped in
//   the future counts as seen now);
// - per node for the 256 nodes heard from most recently.
// Thread-safety: add() and snapshot() are safe from any thread (one mutex).
#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "node/visitor_hash.hpp"
#include "reqbus/clock.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::node {

struct LiveStatsOptions {
  int series_seconds = 600;        // requests/s history kept (10 min)
  int latency_seconds = 300;       // window of the latency percentiles (5 min)
  int visitor_seconds = 300;       // "active visitors" window (5 min)
  size_t max_keys = 10000;         // per table (paths, referers, ...)
  size_t max_visitors = 200000;    // tracked visitor ids per node
  size_t top_n = 10;               // rows per table in a snapshot
  std::shared_ptr<Clock> clock = system_clock();
};

class LiveStats {
 public:
  explicit LiveStats(LiveStatsOptions options = {});
  ~LiveStats();
  // `event` may be a view into a received frame (a RequestLog converts): nothing of it is kept.
  void add(const RequestLogView& event);
  // The JSON the dashboard reads; `node` = "" for the whole cluster.
  nlohmann::json snapshot(const std::string& node = "") const;
  uint64_t total() const;

  class Aggregate;
  struct Facts;

 private:
  LiveStatsOptions options_;
  mutable std::mutex mu_;
  std::unique_ptr<Aggregate> all_;                            // guarded by mu_
  std::map<std::string, std::unique_ptr<Aggregate>, std::less<>> nodes_;  // guarded by mu_
  size_t max_nodes_ = 256;  // per-node views kept; the least recently heard from goes first
  VisitorHasher visitors_;
};

}  // namespace reqbus::node
