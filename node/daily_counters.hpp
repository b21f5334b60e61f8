#pragma once
// The node's daily counters: the keys Node counts for each event its store stored (one
// StatBuffer, NodeOptions::counters, whose name prefixes every key: "stats/requests:2026-12-07"),
// and the recount that sets one day's counters from the stored rows (`reqbus recount`).
//
//   requests:<day>          requests stored, by inserted_at's UTC day
//   status:<code>:<day>     the same by status code
//   device:<label>:<day>    the same by device_label(device_type)
//   events:<type>:<day>     identify/group/track events, by their timestamp's UTC day
//
// Why recount: the counters are kept in memory and flushed every few seconds, so a node killed
// with SIGKILL loses up to one flush of increments, and a write abandoned at shutdown that
// PostgreSQL committed anyway was never counted. The rows are the truth; a recount makes the
// counters match them again.
//
// Thread-safety: functions are pure, or (recount_days) use only what they open.
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/counter_sink.hpp"

namespace reqbus::node {

inline constexpr int64_t kDayMicros = 86'400'000'000LL;

// "2026-12-07": the UTC day of a µs timestamp (days since the epoch: unix_us / kDayMicros,
// rounded down).
std::string day_of(int64_t unix_us);
// Days since the epoch of "YYYY-MM-DD" (a real calendar day, years 1970..9999); nullopt if not.
std::optional<int64_t> parse_day(std::string_view text);

// Counts what the node counts for one UTC day (days since the epoch) of the StatBuffer named
// `buffer`: a CounterRecount of the counters above, from the day's rows.
CounterRecount daily_recount(const std::string& buffer, int64_t day);

struct DayRecount {
  int64_t day = 0;
  std::vector<CounterChange> counters;  // every counter of the day, before and after
};

struct RecountOptions {
  bool dry_run = false;  // compare only
  // Recount a day even when one of its counters was flushed into within `quiet` (a node still
  // counting into it: what it holds in memory would count twice), and zero the counters of a
  // day without rows. Default off.
  bool force = false;
  std::chrono::milliseconds quiet{60000};  // see force; > the nodes' [counters] interval_ms
  std::chrono::milliseconds timeout{60000};  // each day's transaction
};

// Opens `store` ("sqlite:PATH" of an existing reqbus store, or "postgres:CONNINFO"; nothing is
// created or migrated) and recounts each day in its own transaction (retried a few times when
// the store says retry: a lock, a serialization failure), calling `done` after each day's
// commit. Throws Error naming the store and the day for anything else; the days before it are
// recounted (and were passed to `done`).
void recount_days(const std::string& store, const std::string& buffer, const std::vector<int64_t>& days,
                  const RecountOptions& options, const std::function<void(const DayRecount&)>& done);

}  // namespace reqbus::node
