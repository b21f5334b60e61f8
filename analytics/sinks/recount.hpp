#pragma once
// What a CounterSink::recount changes, from what the rows count and the counters hold: the
// part both database sinks share (each reads and writes in its own dialect and transaction).
// Thread-safety: a pure function.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reqbus/counter_sink.hpp"

namespace reqbus::detail {

// A counter as the store holds it.
struct HeldCounter {
  int64_t value = 0;
  int64_t updated_at = 0;  // µs since the epoch: the last flush into it
};

// Every owned counter (of `held`, read with the recount's prefix and suffix; and every key the
// plan returns), sorted by key, with its value before and the plan's after (0 for an owned
// counter the plan leaves out). Throws Error{invalid_argument} for a planned key the recount
// does not own, and for what CounterRecount says to refuse (a counter flushed into since
// refuse_if_flushed_since_us; zeroing counters of a span without rows unless allow_zeroing).
std::vector<CounterChange> recount_changes(const CounterRecount& recount, const StoredCounts& rows,
                                           const std::map<std::string, HeldCounter>& held);

// For the counters query: the first key past every key that starts with `prefix` (its last
// byte that is not 0xFF incremented, what follows dropped); "" when there is none (all 0xFF).
std::string prefix_end(const std::string& prefix);

}  // namespace reqbus::detail
