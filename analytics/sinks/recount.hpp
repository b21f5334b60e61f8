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

// Every owned counter (of `held`: key -> value, all with the recount's prefix; and every key
// the plan returns), sorted by key, with its value before and the plan's after (0 for an owned
// counter the plan leaves out). Throws Error{invalid_argument} for a planned key the recount
// does not own.
std::vector<CounterChange> recount_changes(const CounterRecount& recount, const StoredCounts& rows,
                                           const std::map<std::string, int64_t>& held);

}  // namespace reqbus::detail
