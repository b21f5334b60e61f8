#pragma once
// HealthWatch: what a node's GET /healthz answers. A node is unhealthy (503) while it is losing
// events, and healthy (200) otherwise — including while its store is down, as long as the spool
// takes what the store cannot: a load balancer that pulled every node sharing a database during
// its outage would turn a delay into an outage of the web site's analytics intake.
//
// Losing events means one of the node's loss counters (bus drops, a persisting subscription that
// fell behind, Batcher drops and refusals, counter increments refused) rose, or the spool is
// nearly full (the next thing it does is drop). The counters are totals, so "rose" is measured
// between checks: a check that sees a counter above what the previous check saw marks it, and
// the node stays unhealthy for `window` after the last mark. Probes poll every few seconds, so
// this reads "events were lost in the last minute". The first check compares with zero (the
// node's start).
// Thread-safety: check() may be called from any thread (HTTP server threads).
#include <chrono>
#include <map>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "reqbus/clock.hpp"

namespace reqbus::node {

struct HealthOptions {
  std::chrono::milliseconds window{60000};  // unhealthy this long after a loss counter rose (60 s)
  double spool_full_ratio = 0.9;            // unhealthy while the spool holds this share of its
                                            // limit or more (0.9: 90 %); 0 < ratio <= 1
  std::shared_ptr<Clock> clock = system_clock();
};

// One loss counter as the node reads it: a stable name for the reason ("bus queue full") and
// its total since the node started.
struct LossCounter {
  std::string what;
  uint64_t total = 0;
};

struct SpoolFill {
  uint64_t bytes = 0;
  uint64_t max_bytes = 0;  // 0: no spool
};

class HealthWatch {
 public:
  explicit HealthWatch(HealthOptions options);
  // "" when healthy, else the reason, one line naming each loss: "losing events: bus queue full
  // (+12, last 3 s ago); spool 93 % full (...)". Counters are told apart by `what`; one first
  // seen after the first check starts from its total then (not from zero).
  std::string check(const std::vector<LossCounter>& losses, SpoolFill spool);

 private:
  struct Seen {
    uint64_t total = 0;         // the highest seen (checks may read counters out of order)
    uint64_t total_at_rise = 0; // at the start of the current unhealthy stretch
    Clock::time_point last_rise{};
    bool rising = false;        // a rise within the window
  };
  const HealthOptions options_;
  std::mutex mu_;
  bool checked_ = false;                // guarded by mu_
  std::map<std::string, Seen> seen_;    // guarded by mu_; by LossCounter::what
};

}  // namespace reqbus::node
