#pragma once
// StatBuffer: local counters by key, flushed in windows to a handle_flush callback or a
// CounterSink. A key's window opens at its first increment and is flushed `interval` (+ a
// random 0..`jitter`) later; a failed flush is retried after `backoff` and never lost; a key
// idle for `timeout` after its last flush leaves memory.
//
// Thread-safety: every method may be called from any thread. increment() takes no global
// lock: each thread adds to its own counter cell for a key (found through a small
// thread-local cache), and the flush workers collect the cells. A shard lock (by key hash) is
// taken only when a thread first meets a key or when a key opens a window. A Counter handle is
// safe to share between threads, but each thread should get its own for best scaling. The
// callback / sink is called from flush workers, or from the thread in flush_all() / close().
//
// Failure handling (the documented choice):
//  * callback: a failed count is MERGED BACK into the key's live counter (added to the
//    increments that arrived meanwhile) and the sum is flushed after `backoff`.
//  * CounterSink: a failed window is kept as it is and retried ALONE with the same
//    (key, window_start, node_id) id, so an in-doubt write is never counted twice; increments
//    that arrive meanwhile wait in the live counter and form the next window once it succeeds.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include "reqbus/clock.hpp"
#include "reqbus/counter_sink.hpp"
#include "reqbus/sink.hpp"

namespace reqbus {

namespace detail {
class StatBufferImpl;
struct StatEntry;
struct StatCell;
}  // namespace detail

struct StatBufferOptions {
  std::string name = "stats";  // scope: a sink receives "<name>/<key>"; must not be empty
  std::string node_id = "local";  // the node part of a flush's idempotency id; must not be empty
  std::chrono::milliseconds interval{5000};  // first increment of a window -> its flush (> 0)
  std::chrono::milliseconds jitter{0};       // + uniform random 0..jitter per window (>= 0)
  std::chrono::milliseconds timeout{10000};  // idle this long after the last flush: key evicted
  std::chrono::milliseconds backoff{1000};   // failed flush -> next attempt (sink retry_after is a floor)
  std::chrono::milliseconds sink_timeout{10000};   // passed to CounterSink::write_counters
  std::chrono::milliseconds close_timeout{5000};   // the destructor's close() deadline
  size_t max_keys = 100'000;  // keys held at once; a NEW key past it is refused and counted
                              // (stats().dropped), never silently; existing keys still count
  size_t shards = 16;         // key-hash shards, each with its own mutex (>= 1)
  size_t flush_workers = 2;   // threads calling the callback / sink (>= 1)
  uint64_t seed = 0;          // jitter RNG seed; 0 = random
  std::shared_ptr<Clock> clock = system_clock();  // intervals, jitter, backoff, timeout
  std::function<void(const std::string& key)> on_key_evicted;  // optional: after idle eviction
};

enum class IncrementResult : uint8_t {
  ok,
  dropped_key_limit,  // a new key past max_keys: refused, counted in stats().dropped
  closed,             // the buffer is closed: refused, counted in stats().dropped
};

struct StatBufferStats {
  uint64_t flushes = 0;         // windows written successfully
  int64_t flushed_count = 0;    // sum of their counts
  uint64_t flush_failures = 0;  // failed attempts (each is retried)
  uint64_t retries = 0;         // attempts that repeated a failed count
  uint64_t keys = 0;            // keys in memory now
  uint64_t evicted_keys = 0;    // keys removed after `timeout` idle
  uint64_t dropped = 0;         // refused increments (max_keys or closed)
  int64_t dropped_count = 0;    // sum of their n
  // Windows close() could not write by its deadline (failures, or no time left): lost, also
  // logged once at error level and reported in StatBufferReport::failed / left_count.
  uint64_t lost_at_close = 0;
  int64_t lost_at_close_count = 0;  // sum of their counts
  int64_t pending_count = 0;    // not yet flushed (live + failed windows); a snapshot
};

struct StatBufferReport {
  uint64_t flushed = 0;       // windows written successfully
  int64_t flushed_count = 0;  // sum of their counts
  uint64_t retried = 0;       // attempts that repeated a failed window
  uint64_t failed = 0;        // windows still unwritten when it returned (failure or deadline)
  int64_t left_count = 0;     // sum of their counts (after close(): lost, and reported here)
  uint64_t dropped = 0;       // increments refused over the buffer's life
};

class StatBuffer {
 public:
  // Returns ok, or retry/permanent (both retried after backoff: a counter has nowhere else to go).
  using FlushHandler = std::function<WriteResult(const std::string& key, int64_t count)>;

  // A handle with the key resolved once: increment() is one atomic add on a cell of its own.
  // Keeps its key in memory (never evicted) while it lives. Must not outlive its StatBuffer.
  class Counter {
   public:
    Counter() = default;
    Counter(Counter&&) noexcept;
    Counter& operator=(Counter&&) noexcept;
    Counter(const Counter&) = delete;
    Counter& operator=(const Counter&) = delete;
    ~Counter();
    IncrementResult increment(int64_t n = 1);
    bool valid() const noexcept { return cell_ != nullptr; }  // false: refused (max_keys)

   private:
    friend class detail::StatBufferImpl;
    detail::StatBufferImpl* impl_ = nullptr;
    std::shared_ptr<detail::StatEntry> entry_;
    detail::StatCell* cell_ = nullptr;
  };

  // handle_flush receives the key as given to increment() (unscoped).
  StatBuffer(FlushHandler handle_flush, StatBufferOptions options = {});
  // A bool-returning handle_flush: true = flushed, false = retry after backoff.
  template <class F>
    requires std::is_same_v<std::invoke_result_t<F&, const std::string&, int64_t>, bool>
  StatBuffer(F handle_flush, StatBufferOptions options = {})
      : StatBuffer(FlushHandler([f = std::move(handle_flush)](const std::string& key,
                                                             int64_t count) mutable {
                     return f(key, count) ? WriteResult::success()
                                          : WriteResult::retry_later("handle_flush returned false");
                   }),
                   std::move(options)) {}
  // The sink receives CounterFlush{"<name>/<key>", window_start, node_id, count}.
  StatBuffer(std::shared_ptr<CounterSink> sink, StatBufferOptions options = {});
  StatBuffer(const StatBuffer&) = delete;
  StatBuffer& operator=(const StatBuffer&) = delete;
  ~StatBuffer();  // close(now + options.close_timeout)

  [[nodiscard]] IncrementResult increment(std::string_view key, int64_t n = 1);
  void async_increment(std::string_view key, int64_t n = 1);  // fire-and-forget increment
  Counter counter(std::string_view key);

  std::optional<int64_t> count(std::string_view key) const;  // unflushed; nullopt: not in memory
  // When the key's next flush (or retry) is due; nullopt when nothing is pending for it.
  std::optional<Clock::time_point> next_flush_at(std::string_view key) const;
  void flush(std::string_view key);  // asynchronous: a flush worker flushes the key now
  // Flushes every key on this thread (failed retries included); failures are retried later.
  StatBufferReport flush_all(Clock::time_point deadline);
  // Stops the workers and flushes everything, retrying after backoff until the deadline.
  // Later increments return closed. Idempotent: a second call returns an empty report.
  StatBufferReport close(Clock::time_point deadline);
  // Makes close() — the one in progress on another thread, or the next — finish now: the writes
  // in progress are abandoned (CounterSink::abort_writes), the last flush gets one attempt of up
  // to a second, and nothing is retried; what is unwritten is reported lost (left_count). From
  // any thread.
  void hurry();

  StatBufferStats stats() const;
  const StatBufferOptions& options() const noexcept;

 private:
  std::unique_ptr<detail::StatBufferImpl> impl_;
};

}  // namespace reqbus
