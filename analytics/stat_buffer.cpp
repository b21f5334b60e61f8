// StatBuffer: the increment path (thread-local cache, cells, slow path), queries and the
// public wrapper. Flushing, scheduling and close live in stat_buffer_flush.cpp.
#include <algorithm>
#include <limits>
#include <utility>

#include "analytics/stat_buffer_impl.hpp"
#include "bus/thread_name.hpp"
#include "reqbus/error.hpp"

namespace reqbus {
namespace detail {
namespace {

std::atomic<uint64_t> g_next_buffer_id{1};

// A small open-addressing map, per thread, from (buffer id, key) to that thread's cell for the
// key. Full means cleared (slots hold shared_ptrs, so a dropped slot is only a cache miss).
struct CacheSlot {
  uint64_t owner = 0;  // 0: empty
  size_t hash = 0;
  std::string key;
  std::shared_ptr<StatEntry> entry;
  StatCell* cell = nullptr;
};

class ThreadCache {
 public:
  static constexpr size_t kSlots = 1024;
  static constexpr size_t kMaxUsed = 768;

  CacheSlot* find(uint64_t owner, size_t hash, std::string_view key) {
    for (size_t i = hash & (kSlots - 1);; i = (i + 1) & (kSlots - 1)) {
      CacheSlot& s = slots_[i];
      if (s.owner == 0) return nullptr;
      if (s.hash == hash && s.owner == owner && s.key == key) return &s;
    }
  }
  void put(uint64_t owner, size_t hash, std::string_view key, std::shared_ptr<StatEntry> entry,
           StatCell* cell) {
    if (CacheSlot* s = find(owner, hash, key)) {
      s->entry = std::move(entry);
      s->cell = cell;
      return;
    }
    if (used_ >= kMaxUsed) clear();
    size_t i = hash & (kSlots - 1);
    while (slots_[i].owner != 0) i = (i + 1) & (kSlots - 1);
    slots_[i] = CacheSlot{owner, hash, std::string(key), std::move(entry), cell};
    ++used_;
  }
  void clear() {
    for (size_t i = 0; i < kSlots; ++i) slots_[i] = CacheSlot{};
    used_ = 0;
  }

 private:
  std::unique_ptr<CacheSlot[]> slots_ = std::make_unique<CacheSlot[]>(kSlots);
  size_t used_ = 0;
};

thread_local ThreadCache t_cache;

void validate(const StatBufferOptions& o) {
  auto bad = [](const char* field, const char* why) {
    throw Error(ErrorCode::invalid_argument, std::string("StatBufferOptions.") + field + ": " + why);
  };
  if (o.name.empty()) bad("name", "must not be empty");
  if (o.node_id.empty()) bad("node_id", "must not be empty");
  if (o.interval.count() <= 0) bad("interval", "must be > 0");
  if (o.jitter.count() < 0) bad("jitter", "must be >= 0");
  if (o.timeout.count() < 0) bad("timeout", "must be >= 0");
  if (o.backoff.count() <= 0) bad("backoff", "must be > 0");
  if (o.sink_timeout.count() <= 0) bad("sink_timeout", "must be > 0");
  if (o.close_timeout.count() < 0) bad("close_timeout", "must be >= 0");
  if (o.max_keys == 0) bad("max_keys", "must be >= 1");
  if (o.shards == 0) bad("shards", "must be >= 1");
  if (o.flush_workers == 0) bad("flush_workers", "must be >= 1");
  if (!o.clock) bad("clock", "must not be null");
}

}  // namespace

StatBufferImpl::StatBufferImpl(StatBuffer::FlushHandler handler, std::shared_ptr<CounterSink> sink,
                               StatBufferOptions options)
    : opt_((validate(options), std::move(options))),
      handler_(std::move(handler)),
      sink_(std::move(sink)),
      id_(g_next_buffer_id.fetch_add(1)),
      shards_(opt_.shards),
      rng_(opt_.seed != 0 ? opt_.seed : std::random_device{}()) {
  if (!handler_ && !sink_) {
    throw Error(ErrorCode::invalid_argument, "StatBuffer: handle_flush or sink must be set");
  }
  workers_.reserve(opt_.flush_workers);
  for (size_t i = 0; i < opt_.flush_workers; ++i)
    workers_.push_back(detail::named_thread("rb-stat-flush", [this] { worker_loop(); }));
}

StatBufferImpl::~StatBufferImpl() { close(opt_.clock->now() + opt_.close_timeout); }

IncrementResult StatBufferImpl::refuse(IncrementResult why, int64_t n) {
  dropped_.fetch_add(1, std::memory_order_relaxed);
  dropped_count_.fetch_add(n, std::memory_order_relaxed);
  return why;
}

// An increment on a retired entry that cannot move to a live one (closed, or max_keys): `own` is
// what was left of its count in its own cell. 0 means a flusher took the count first — close()
// retires an entry and then collects it, and that collect can see an add whose adder saw the
// entry not yet retired (or saw kRetired before the collect) — and close() writes it, so the
// increment succeeded. Only the caller's own cell is taken: a cell of another caller holds that
// caller's count, which it settles (ok or refused) itself. Cells are shared only past
// kMaxCellsPerEntry, or by threads sharing one Counter; then one caller may refuse another's
// count with its own (counted exactly in dropped_count, reported to that one caller).
IncrementResult StatBufferImpl::refuse_retired(IncrementResult why, int64_t own) {
  if (own == 0) return IncrementResult::ok;
  return refuse(why, own);
}

// The hot path: a thread-local lookup, one atomic add on this thread's own cell, one load.
IncrementResult StatBufferImpl::increment(std::string_view key, int64_t n) {
  if (closed_.load(std::memory_order_relaxed)) return refuse(IncrementResult::closed, n);
  const size_t hash = SvHash{}(key);
  if (CacheSlot* slot = t_cache.find(id_, hash, key)) {
    slot->cell->pending.fetch_add(n);
    if (slot->entry->state.load() == kArmed) return IncrementResult::ok;
    return slow_path(key, hash, *slot->entry, *slot->cell);
  }
  Shard& s = shard_for(hash);
  Found f;
  {
    std::lock_guard lock(s.mu);
    IncrementResult why = IncrementResult::ok;
    f = resolve_locked(s, key, /*new_cell=*/true, why);
    if (!f.entry) return refuse(why, n);
  }
  StatEntry& e = *f.entry;
  StatCell* cell = f.cell;
  t_cache.put(id_, hash, key, std::move(f.entry), cell);
  cell->pending.fetch_add(n);
  if (e.state.load() == kArmed) return IncrementResult::ok;
  return slow_path(key, hash, e, *cell);
}

// Finds or creates the key's entry; with new_cell, gives the caller a cell of its own.
StatBufferImpl::Found StatBufferImpl::resolve_locked(Shard& s, std::string_view key, bool new_cell,
                                                     IncrementResult& why) {
  if (closed_.load()) {
    why = IncrementResult::closed;
    return {};
  }
  auto it = s.map.find(key);
  if (it == s.map.end()) {
    if (keys_.load() >= opt_.max_keys) {
      why = IncrementResult::dropped_key_limit;
      return {};
    }
    std::string k(key);
    auto e = std::make_shared<StatEntry>(k, opt_.name + "/" + k);
    e->last_activity = opt_.clock->now();
    it = s.map.emplace(std::move(k), std::move(e)).first;
    keys_.fetch_add(1);
  }
  StatEntry& e = *it->second;
  StatCell* cell = e.cells.front().get();
  if (new_cell && e.cells.size() < kMaxCellsPerEntry) {
    e.cells.push_back(std::make_unique<StatCell>());
    cell = e.cells.back().get();
  }
  return {it->second, cell};
}

// The increment saw state != armed: open a window, or move off a retired entry. Its count is
// already in `cell`, the caller's own.
IncrementResult StatBufferImpl::slow_path(std::string_view key, size_t hash, StatEntry& e, StatCell& cell) {
  Shard& s = shard_for(hash);
  std::unique_lock lock(s.mu);
  const uint8_t state = e.state.load();
  if (state == kArmed) return IncrementResult::ok;
  if (state == kIdle) {
    arm_locked(e, opt_.clock->now());
    return IncrementResult::ok;
  }
  // Retired (final): nothing collects this entry any more, so whatever is still in its cells
  // was never flushed. Move it to the key's live entry. Every adder whose count is left here
  // reaches this point (it saw kIdle or kRetired), and exchange() moves each unit once.
  const int64_t own = cell.pending.exchange(0);
  IncrementResult why = IncrementResult::ok;
  Found f = resolve_locked(s, key, /*new_cell=*/true, why);
  if (!f.entry) return refuse_retired(why, own);
  int64_t moved = own;
  for (auto& c : e.cells) moved += c->pending.exchange(0);
  f.cell->pending.fetch_add(moved);
  if (f.entry->state.load() == kIdle) arm_locked(*f.entry, opt_.clock->now());
  lock.unlock();
  t_cache.put(id_, hash, key, std::move(f.entry), f.cell);
  return IncrementResult::ok;
}

void StatBufferImpl::arm_locked(StatEntry& e, TimePoint now) {
  int64_t jitter_us = 0;
  if (opt_.jitter.count() > 0) {
    std::lock_guard lock(rng_mu_);
    const int64_t max_us = std::chrono::duration_cast<std::chrono::microseconds>(opt_.jitter).count();
    jitter_us = std::uniform_int_distribution<int64_t>(0, max_us)(rng_);
  }
  // Window ids strictly increase per key, even when the clock does not move between windows,
  // so two windows of one key never share an idempotency id.
  e.window_start_us = std::max(opt_.clock->unix_us(), e.last_window_us + 1);
  e.last_window_us = e.window_start_us;
  e.open_due = now + opt_.interval + std::chrono::microseconds(jitter_us);
  e.last_activity = now;
  e.state.store(kArmed);
  reschedule_locked(e, now);
}

StatBuffer::Counter StatBufferImpl::counter(std::string_view key) {
  StatBuffer::Counter c;
  c.impl_ = this;
  Shard& s = shard_for(SvHash{}(key));
  std::lock_guard lock(s.mu);
  IncrementResult why = IncrementResult::ok;
  Found f = resolve_locked(s, key, /*new_cell=*/true, why);
  if (!f.entry) return c;
  f.entry->pins++;
  c.entry_ = std::move(f.entry);
  c.cell_ = f.cell;
  return c;
}

IncrementResult StatBufferImpl::counter_slow(StatBuffer::Counter& c, int64_t n) {
  if (!c.entry_) return refuse(IncrementResult::dropped_key_limit, n);  // refused at counter()
  StatEntry& e = *c.entry_;
  Shard& s = shard_for(SvHash{}(e.key));
  std::lock_guard lock(s.mu);
  const uint8_t state = e.state.load();
  if (state == kArmed) return IncrementResult::ok;
  if (state == kIdle) {
    arm_locked(e, opt_.clock->now());
    return IncrementResult::ok;
  }
  // A pinned entry retires only at close(): what close() did not collect is dropped, counted.
  (void)n;
  return refuse_retired(IncrementResult::closed, c.cell_->pending.exchange(0));
}

void StatBufferImpl::unpin(StatEntry& e) {
  Shard& s = shard_for(SvHash{}(e.key));
  std::lock_guard lock(s.mu);
  if (--e.pins == 0 && e.in_map) reschedule_locked(e, opt_.clock->now());
}

std::optional<int64_t> StatBufferImpl::count(std::string_view key) const {
  Shard& s = shard_for(SvHash{}(key));
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return std::nullopt;
  const StatEntry& e = *it->second;
  return e.peek() + (e.failed ? e.failed->count : 0);
}

std::optional<TimePoint> StatBufferImpl::next_flush_at(std::string_view key) const {
  Shard& s = shard_for(SvHash{}(key));
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return std::nullopt;
  const StatEntry& e = *it->second;
  if (sink_ && e.failed) return e.retry_due;
  if (e.state.load() == kArmed) return e.open_due;
  return std::nullopt;
}

void StatBufferImpl::flush(std::string_view key) {
  Shard& s = shard_for(SvHash{}(key));
  std::lock_guard lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return;
  it->second->flush_requested = true;
  reschedule_locked(*it->second, opt_.clock->now());
}

StatBufferStats StatBufferImpl::stats() const {
  StatBufferStats st;
  st.flushes = flushes_.load();
  st.flushed_count = flushed_count_.load();
  st.flush_failures = flush_failures_.load();
  st.retries = retries_.load();
  st.keys = keys_.load();
  st.evicted_keys = evicted_.load();
  st.dropped = dropped_.load();
  st.dropped_count = dropped_count_.load();
  st.lost_at_close = lost_at_close_.load();
  st.lost_at_close_count = lost_at_close_count_.load();
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto& [k, e] : s.map) st.pending_count += e->peek() + (e->failed ? e->failed->count : 0);
  }
  return st;
}

}  // namespace detail

// --- public wrapper ----------------------------------------------------------------------

StatBuffer::StatBuffer(FlushHandler handle_flush, StatBufferOptions options)
    : impl_(std::make_unique<detail::StatBufferImpl>(std::move(handle_flush), nullptr,
                                                     std::move(options))) {}
StatBuffer::StatBuffer(std::shared_ptr<CounterSink> sink, StatBufferOptions options) {
  if (!sink) throw Error(ErrorCode::invalid_argument, "StatBuffer: sink must not be null");
  impl_ = std::make_unique<detail::StatBufferImpl>(nullptr, std::move(sink), std::move(options));
}
StatBuffer::~StatBuffer() = default;

IncrementResult StatBuffer::increment(std::string_view key, int64_t n) { return impl_->increment(key, n); }
void StatBuffer::async_increment(std::string_view key, int64_t n) { (void)impl_->increment(key, n); }
StatBuffer::Counter StatBuffer::counter(std::string_view key) { return impl_->counter(key); }
std::optional<int64_t> StatBuffer::count(std::string_view key) const { return impl_->count(key); }
std::optional<Clock::time_point> StatBuffer::next_flush_at(std::string_view key) const {
  return impl_->next_flush_at(key);
}
void StatBuffer::flush(std::string_view key) { impl_->flush(key); }
StatBufferReport StatBuffer::flush_all(Clock::time_point deadline) { return impl_->flush_all(deadline); }
StatBufferReport StatBuffer::close(Clock::time_point deadline) { return impl_->close(deadline); }
void StatBuffer::hurry() { impl_->hurry(); }
StatBufferStats StatBuffer::stats() const { return impl_->stats(); }
const StatBufferOptions& StatBuffer::options() const noexcept { return impl_->options(); }

StatBuffer::Counter::Counter(Counter&& o) noexcept
    : impl_(std::exchange(o.impl_, nullptr)), entry_(std::move(o.entry_)), cell_(std::exchange(o.cell_, nullptr)) {}
StatBuffer::Counter& StatBuffer::Counter::operator=(Counter&& o) noexcept {
  if (this != &o) {
    if (impl_ && entry_) impl_->unpin(*entry_);
    impl_ = std::exchange(o.impl_, nullptr);
    entry_ = std::move(o.entry_);
    cell_ = std::exchange(o.cell_, nullptr);
  }
  return *this;
}
StatBuffer::Counter::~Counter() {
  if (impl_ && entry_) impl_->unpin(*entry_);
}

IncrementResult StatBuffer::Counter::increment(int64_t n) {
  if (!impl_) return IncrementResult::closed;
  if (!cell_) return impl_->counter_slow(*this, n);
  cell_->pending.fetch_add(n);
  if (entry_->state.load() == detail::kArmed) return IncrementResult::ok;
  return impl_->counter_slow(*this, n);
}

}  // namespace reqbus
