#include "analytics/sinks/recount.hpp"

#include <ctime>

#include "reqbus/error.hpp"

namespace reqbus::detail {

std::vector<CounterChange> recount_changes(const CounterRecount& recount, const StoredCounts& rows,
                                           const std::map<std::string, HeldCounter>& held) {
  auto owned = [&](const std::string& key) {
    return key.size() >= recount.key_prefix.size() + recount.key_suffix.size() &&
           key.compare(0, recount.key_prefix.size(), recount.key_prefix) == 0 &&
           key.compare(key.size() - recount.key_suffix.size(), std::string::npos, recount.key_suffix) == 0 &&
           recount.owns(key);
  };
  std::map<std::string, CounterChange> changes;
  int64_t held_total = 0;
  for (const auto& [key, counter] : held) {
    if (!owned(key)) continue;
    if (recount.refuse_if_flushed_since_us != 0 && counter.updated_at >= recount.refuse_if_flushed_since_us)
    {
      const time_t at = time_t(counter.updated_at / 1'000'000);
      struct tm utc {};
      char text[32] = "?";
      if (gmtime_r(&at, &utc)) std::strftime(text, sizeof text, "%Y-%m-%d %H:%M:%S UTC", &utc);
      throw Error(ErrorCode::invalid_argument,
                  "counter '" + key + "' was flushed into at " + text +
                      ", within the quiet time asked for: a node is still counting into this span, and the "
                      "increments it holds would count twice");
    }
    changes[key] = CounterChange{key, counter.value, 0};
    held_total += counter.value;
  }
  if (!recount.allow_zeroing && rows.requests.empty() && rows.events.empty() && held_total != 0)
    throw Error(ErrorCode::invalid_argument,
                "no rows are stored for this span, but its counters hold " + std::to_string(held_total) +
                    ": were rows deleted? Zeroing them needs to be asked for");
  for (const auto& [key, value] : recount.plan(rows)) {
    if (!owned(key)) throw Error(ErrorCode::invalid_argument, "recount: planned counter '" + key + "' is not owned");
    CounterChange& c = changes[key];
    c.key = key;
    c.after = value;
  }
  std::vector<CounterChange> out;
  out.reserve(changes.size());
  for (auto& [key, change] : changes) out.push_back(std::move(change));
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xFF) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
  return end;
}

}  // namespace reqbus::detail
