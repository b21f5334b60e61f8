#pragma once
// CounterSink: where StatBuffer flushes its counters. Each flush carries an id made of
// (key, window_start, node_id): a retried or replayed flush of the same window is applied once,
// so a counter is never counted twice.
// Thread-safety: write_counters() may be called from several threads at once.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reqbus/sink.hpp"

namespace reqbus {

struct CounterFlush {
  std::string key;           // the counter's key, scoped by its buffer ("<buffer>/<key>")
  int64_t window_start = 0;  // microseconds since the epoch of the key's first increment in
                             // this window: with key and node_id, the flush's idempotency id
  std::string node_id;       // the node that counted
  int64_t count = 0;         // the increments in this window
};

// What a store's rows count over a span of time (CounterSink::recount reads it).
struct StoredCounts {
  struct Requests {
    int32_t status_code = 0;
    std::string device_type;
    int64_t rows = 0;
  };
  std::vector<Requests> requests;                        // by (status_code, device_type): inserted_at in the span
  std::vector<std::pair<std::string, int64_t>> events;   // by type: timestamp in the span
};

// A recount of the counters that count a span's rows: what they should be is computed from
// the rows, in the transaction that reads them.
struct CounterRecount {
  int64_t from_us = 0, to_us = 0;  // the span: [from_us, to_us), µs since the epoch
  // The counters the recount owns: keys that start with key_prefix, end with key_suffix (e.g.
  // ":2026-12-07") and that owns() accepts. Owned counters plan() leaves out are set to 0.
  std::string key_prefix, key_suffix;
  std::function<bool(std::string_view key)> owns;
  // The owned counters' true values (key -> value) from what the rows count. Every key it
  // returns must be owned.
  std::function<std::map<std::string, int64_t>(const StoredCounts&)> plan;
  bool dry_run = false;  // read and compare only: nothing is written, no write lock taken
  // Refuse (a permanent failure naming the counter) when an owned counter was flushed into at
  // or after this time (µs since the epoch; counters.updated_at, which a recount leaves as it
  // is): a node still counting into the span holds increments for rows already stored, which
  // would count twice. 0 = no check.
  int64_t refuse_if_flushed_since_us = 0;
  // Refuse when the span holds no rows but owned counters are not 0 (rows deleted to save
  // space?) rather than zeroing them.
  bool allow_zeroing = false;
};

// One owned counter, as it was and as the recount set it (after == before: unchanged).
struct CounterChange {
  std::string key;
  int64_t before = 0;  // 0 when the counter did not exist
  int64_t after = 0;
};

class CounterSink {
 public:
  virtual ~CounterSink() = default;
  // Adds each flush's count to its key's total, once per (key, window_start, node_id).
  virtual WriteResult write_counters(const std::vector<CounterFlush>& flushes,
                                     std::chrono::milliseconds timeout) = 0;
  // As Sink::abort_writes: write_counters calls in progress on other threads give up soon
  // (retry_later). StatBuffer::close calls it once its deadline has passed. Thread-safe; never
  // blocks. The default does nothing.
  virtual void abort_writes() noexcept {}
  virtual std::string name() const = 0;
  // Sets the owned counters to what the stored rows count (CounterRecount), in one
  // transaction, so that a counter flush is applied wholly before or wholly after it; `changes`
  // gets every owned counter, sorted by key. The default: failure (a store without rows to
  // count). Increments a StatBuffer still holds for rows already stored (up to one flush
  // interval) are added after, and count twice: recount spans no node is still counting into
  // (CounterRecount::refuse_if_flushed_since_us).
  virtual WriteResult recount(const CounterRecount& /*recount*/, std::vector<CounterChange>& changes,
                              std::chrono::milliseconds /*timeout*/) {
    changes.clear();
    return WriteResult::failure(name() + ": cannot recount counters (it keeps no rows)");
  }
};

}  // namespace reqbus
