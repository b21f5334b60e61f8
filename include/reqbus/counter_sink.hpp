#pragma once
// CounterSink: where StatBuffer flushes its counters. Each flush carries an id made of
// (key, window_start, node_id): a retried or replayed flush of the same window is applied once,
// so a counter is never counted twice.
// Thread-safety: write_counters() may be called from several threads at once.
#include <chrono>
#include <cstdint>
#include <string>
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
};

}  // namespace reqbus
