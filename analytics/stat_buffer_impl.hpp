#pragma once
// StatBuffer internals. Layout of a key's state:
//  * StatEntry: one per key in memory, owned by its shard's map (and by thread caches and
//    Counter handles through shared_ptr, so a stale pointer is never dangling).
//  * StatCell: a cache-line-sized atomic counter. Each thread (and each Counter) that touches
//    a key gets a cell of its own, so increments from many threads never share a cache line.
//    cells[0] is the shared overflow cell (used past kMaxCellsPerEntry, and for merge-back).
//
// The lock-free increment and the flusher agree through `state`, Dekker style, both sides
// seq_cst: an incrementer adds to its cell THEN reads state; the flusher writes state THEN
// collects (exchanges) the cells. So either the flusher sees the add, or the incrementer sees
// the new state and takes the slow path (re-arm a window, or re-resolve a retired entry).
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "reqbus/stat_buffer.hpp"

namespace reqbus::detail {

using TimePoint = Clock::time_point;

enum : uint8_t {
  kIdle = 0,     // no open window: the next increment opens one
  kArmed = 1,    // a window is open and its flush is scheduled
  kRetired = 2,  // evicted or closed: final; increments must go elsewhere
};

struct alignas(64) StatCell {
  std::atomic<int64_t> pending{0};
};

inline constexpr size_t kMaxCellsPerEntry = 64;

struct StatEntry : std::enable_shared_from_this<StatEntry> {
  StatEntry(std::string k, std::string scoped) : key(std::move(k)), scoped_key(std::move(scoped)) {
    cells.push_back(std::make_unique<StatCell>());
  }
  alignas(64) std::atomic<uint8_t> state{kIdle};  // read by every increment
  std::atomic<bool> flushing{false};               // written under the shard lock

  // Everything below is guarded by the shard mutex.
  alignas(64) const std::string key;
  const std::string scoped_key;                 // "<name>/<key>"
  std::vector<std::unique_ptr<StatCell>> cells;  // cells[0]: shared
  int64_t window_start_us = 0;                  // open window's id (unix us)
  int64_t last_window_us = 0;                   // window ids strictly increase per key
  TimePoint open_due{};                         // open window's flush time
  TimePoint retry_due{};                        // failed window's retry time (sink mode)
  TimePoint last_activity{};                    // last arm or flush attempt, for `timeout`
  std::optional<CounterFlush> failed;           // sink mode: the in-doubt window
  bool retrying = false;                        // callback mode: live count holds a failed one
  bool flush_requested = false;                 // flush(key) asked for it
  bool in_map = true;
  bool has_item = false;  // a scheduler item with sched_seq is queued, due at item_due
  uint64_t sched_seq = 0;
  TimePoint item_due{};
  uint32_t pins = 0;  // live Counter handles: a pinned key is never evicted

  int64_t collect() {  // flusher side of the Dekker pair
    int64_t n = 0;
    for (auto& c : cells) n += c->pending.exchange(0);
    return n;
  }
  int64_t peek() const {
    int64_t n = 0;
    for (auto& c : cells) n += c->pending.load();
    return n;
  }
};

// A fast inline hash for short keys (8 bytes per multiply-xorshift round): the increment path
// hashes every call, and std::hash (an out-of-line murmur) was a third of its cost.
inline size_t key_hash(std::string_view s) noexcept {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ s.size();
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
  }
  uint64_t tail = 0;
  for (size_t i = 0; i < n; ++i) tail |= uint64_t(static_cast<unsigned char>(p[i])) << (8 * i);
  h = (h ^ tail) * 0x94d049bb133111ebull;
  return size_t(h ^ (h >> 32));
}

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return key_hash(s); }
};

struct Shard {
  std::mutex mu;
  std::condition_variable cv;  // an entry's flush finished (flushing -> false)
  std::unordered_map<std::string, std::shared_ptr<StatEntry>, SvHash, std::equal_to<>> map;
};

class StatBufferImpl {
 public:
  StatBufferImpl(StatBuffer::FlushHandler handler, std::shared_ptr<CounterSink> sink,
                 StatBufferOptions options);
  ~StatBufferImpl();

  IncrementResult increment(std::string_view key, int64_t n);
  IncrementResult counter_slow(StatBuffer::Counter& c, int64_t n);
  StatBuffer::Counter counter(std::string_view key);
  void unpin(StatEntry& e);

  std::optional<int64_t> count(std::string_view key) const;
  std::optional<TimePoint> next_flush_at(std::string_view key) const;
  void flush(std::string_view key);
  StatBufferReport flush_all(TimePoint deadline);
  StatBufferReport close(TimePoint deadline);
  void hurry();
  StatBufferStats stats() const;
  const StatBufferOptions& options() const noexcept { return opt_; }

 private:
  struct Item {
    TimePoint due;
    uint64_t seq;
    std::shared_ptr<StatEntry> entry;
    bool operator>(const Item& o) const { return due > o.due; }
  };
  struct Attempt {
    bool valid = false;
    bool retry = false;
    std::string key;    // unscoped, for the callback
    CounterFlush flush;  // scoped, for the sink
  };
  struct Found {
    std::shared_ptr<StatEntry> entry;
    StatCell* cell = nullptr;
  };

  Shard& shard_for(size_t hash) const { return shards_[(hash >> 7) % shards_.size()]; }
  Found resolve_locked(Shard& s, std::string_view key, bool new_cell, IncrementResult& why);
  IncrementResult slow_path(std::string_view key, size_t hash, StatEntry& e, StatCell& cell);
  IncrementResult refuse(IncrementResult why, int64_t n);
  IncrementResult refuse_retired(IncrementResult why, int64_t own);
  void arm_locked(StatEntry& e, TimePoint now);
  void reschedule_locked(StatEntry& e, TimePoint now);
  bool try_evict_locked(Shard& s, StatEntry& e);

  void worker_loop();
  Attempt begin_attempt_locked(StatEntry& e, bool force, TimePoint now);
  WriteResult send(const std::vector<Attempt*>& attempts);
  void finish_locked(StatEntry& e, const Attempt& a, const WriteResult& r, TimePoint now);
  void count_lost_at_close(const StatBufferReport& rep, const std::string& last_error);

  const StatBufferOptions opt_;
  const StatBuffer::FlushHandler handler_;
  const std::shared_ptr<CounterSink> sink_;
  const uint64_t id_;  // tags this buffer's slots in the thread-local caches
  mutable std::vector<Shard> shards_;

  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> keys_{0};
  std::atomic<uint64_t> flushes_{0}, flush_failures_{0}, retries_{0}, evicted_{0}, dropped_{0};
  std::atomic<int64_t> flushed_count_{0}, dropped_count_{0};
  std::atomic<uint64_t> lost_at_close_{0};
  std::atomic<int64_t> lost_at_close_count_{0};

  std::mutex rng_mu_;  // after a shard mutex in lock order
  std::mt19937_64 rng_;

  std::mutex sched_mu_;  // after a shard mutex in lock order
  std::condition_variable sched_cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<>> heap_;
  uint64_t wake_seq_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  std::mutex close_mu_;  // serialises close()
  bool close_done_ = false;
  // close()'s watchdog (abandons writes from its deadline) waits on these; hurry() wakes it.
  std::mutex watch_mu_;
  std::condition_variable watch_cv_;
  std::atomic<bool> hurry_{false};  // set under watch_mu_
};

}  // namespace reqbus::detail
