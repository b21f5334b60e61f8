#include "analytics/sinks/recount.hpp"

#include "reqbus/error.hpp"

namespace reqbus::detail {

std::vector<CounterChange> recount_changes(const CounterRecount& recount, const StoredCounts& rows,
                                           const std::map<std::string, int64_t>& held) {
  auto owned = [&](const std::string& key) {
    return key.compare(0, recount.key_prefix.size(), recount.key_prefix) == 0 && recount.owns(key);
  };
  std::map<std::string, CounterChange> changes;
  for (const auto& [key, value] : held)
    if (owned(key)) changes[key] = CounterChange{key, value, 0};
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

}  // namespace reqbus::detail
