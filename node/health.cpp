#include "node/health.hpp"

#include <cmath>

#include "reqbus/error.hpp"

namespace reqbus::node {

HealthWatch::HealthWatch(HealthOptions options) : options_(std::move(options)) {
  if (!options_.clock) throw Error(ErrorCode::invalid_argument, "HealthOptions.clock: null");
  if (options_.window.count() <= 0) throw Error(ErrorCode::invalid_argument, "HealthOptions.window: must be > 0");
  if (!(options_.spool_full_ratio > 0 && options_.spool_full_ratio <= 1))
    throw Error(ErrorCode::invalid_argument, "HealthOptions.spool_full_ratio: must be in (0, 1]");
}

std::string HealthWatch::check(const std::vector<LossCounter>& losses, SpoolFill spool) {
  const auto now = options_.clock->now();
  std::string why;
  auto add = [&why](const std::string& part) { why += (why.empty() ? "" : "; ") + part; };
  {
    std::lock_guard lock(mu_);
    for (const LossCounter& c : losses) {
      auto [it, added] = seen_.try_emplace(c.what);
      Seen& s = it->second;
      if (added && checked_) s.total = c.total;  // a counter that appeared later: from its total now
      if (c.total > s.total) {
        if (!s.rising) s.total_at_rise = s.total;
        s.rising = true;
        s.last_rise = now;
        s.total = c.total;
      }
      if (s.rising && now - s.last_rise >= options_.window) s.rising = false;
      if (!s.rising) continue;
      const auto ago = std::chrono::duration_cast<std::chrono::seconds>(now - s.last_rise).count();
      add(c.what + " (+" + std::to_string(s.total - s.total_at_rise) + ", last seen rising " +
          std::to_string(ago) + " s ago)");
    }
    checked_ = true;
  }
  if (!why.empty()) why = "losing events: " + why;
  if (spool.max_bytes > 0 && double(spool.bytes) >= options_.spool_full_ratio * double(spool.max_bytes)) {
    const auto percent = std::lround(100.0 * double(spool.bytes) / double(spool.max_bytes));
    add("spool " + std::to_string(percent) + " % full (" + std::to_string(spool.bytes) + " of " +
        std::to_string(spool.max_bytes) + " bytes): the store is not keeping up, and a full spool drops");
  }
  return why;
}

}  // namespace reqbus::node
