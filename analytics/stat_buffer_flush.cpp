// StatBuffer: scheduling (one min-heap of due times shared by the flush workers), flush
// attempts, merge-back / retry of failures, idle eviction, flush_all() and close().
#include <algorithm>
#include <exception>
#include <utility>

#include "analytics/stat_buffer_impl.hpp"
#include "reqbus/log.hpp"

namespace reqbus::detail {
namespace {

constexpr size_t kMaxBatch = 512;  // due keys one worker takes at once (one sink write)
constexpr std::chrono::seconds kHurriedFlushGrace{1};  // close()'s last flush after a hurry()

}  // namespace

// Makes sure a scheduler item exists no later than the key's next due time: a flush request,
// the failed window's retry (sink mode), the open window's flush, or the idle-eviction check.
void StatBufferImpl::reschedule_locked(StatEntry& e, TimePoint now) {
  if (!e.in_map || e.flushing.load()) return;  // finish_locked() reschedules after a flush
  TimePoint t = TimePoint::max();
  if (e.flush_requested) t = now;
  if (sink_ && e.failed) {
    t = std::min(t, e.retry_due);  // the open window waits for the in-doubt one
  } else if (e.state.load() == kArmed) {
    t = std::min(t, e.open_due);
  } else if (e.pins == 0) {
    t = std::min(t, e.last_activity + opt_.timeout);
  }
  if (t == TimePoint::max()) return;
  if (e.has_item && e.item_due <= t) return;
  e.has_item = true;
  e.item_due = t;
  const uint64_t seq = ++e.sched_seq;
  {
    std::lock_guard lock(sched_mu_);
    heap_.push(Item{t, seq, e.shared_from_this()});
    ++wake_seq_;
  }
  sched_cv_.notify_one();
}

// Evicts a key that has been idle `timeout` since its last flush. Retiring is final: an
// increment that lands on the retired entry afterwards (through a thread cache) sees kRetired
// and moves its count to a fresh entry (see slow_path()), so nothing is lost or counted twice.
bool StatBufferImpl::try_evict_locked(Shard& s, StatEntry& e) {
  const TimePoint now = opt_.clock->now();
  if (e.pins != 0 || e.failed || e.flushing.load() || e.flush_requested) return false;
  if (e.state.load() != kIdle || now < e.last_activity + opt_.timeout) return false;
  if (e.peek() != 0) return false;  // an increment is on its way to open a window
  e.state.store(kRetired);
  auto it = s.map.find(e.key);
  if (it != s.map.end() && it->second.get() == &e) s.map.erase(it);
  e.in_map = false;
  keys_.fetch_sub(1);
  evicted_.fetch_add(1);
  return true;
}

StatBufferImpl::Attempt StatBufferImpl::begin_attempt_locked(StatEntry& e, bool force, TimePoint now) {
  if (sink_ && e.failed) {
    if (!force && now < e.retry_due) return {};
    if (force) e.flush_requested = true;  // after the retry, flush the open window too
    return Attempt{true, true, e.key, *e.failed};
  }
  if (e.state.load() != kArmed || (!force && now < e.open_due)) return {};
  e.state.store(kIdle);  // Dekker with increment(): write state, then collect the cells
  const int64_t n = e.collect();
  e.last_activity = now;
  if (n == 0) {
    e.retrying = false;
    return {};
  }
  return Attempt{true, !sink_ && e.retrying, e.key,
                 CounterFlush{e.scoped_key, e.window_start_us, opt_.node_id, n}};
}

void StatBufferImpl::finish_locked(StatEntry& e, const Attempt& a, const WriteResult& r, TimePoint now) {
  e.flushing.store(false);
  e.last_activity = now;
  if (r.ok()) {
    flushes_.fetch_add(1);
    flushed_count_.fetch_add(a.flush.count);
    if (sink_) e.failed.reset();
    e.retrying = false;
  } else {
    flush_failures_.fetch_add(1);
    e.flush_requested = false;  // a failure waits for backoff, even after flush(key)
    const TimePoint retry_at = now + std::max<std::chrono::milliseconds>(opt_.backoff, r.retry_after);
    if (e.state.load() == kRetired) {
      // Only when close() gave up waiting for this flush: counted, never silent.
      dropped_.fetch_add(1);
      dropped_count_.fetch_add(a.flush.count);
    } else if (sink_) {
      e.failed = a.flush;  // retried alone, same (key, window_start, node_id)
      e.retry_due = retry_at;
    } else {
      // Merge back: the failed count joins whatever arrived meanwhile and goes out together.
      e.cells.front()->pending.fetch_add(a.flush.count);
      e.retrying = true;
      if (e.state.load() == kArmed) {
        e.open_due = std::min(e.open_due, retry_at);
        e.window_start_us = std::min(e.window_start_us, a.flush.window_start);
      } else {
        e.window_start_us = a.flush.window_start;
        e.open_due = retry_at;
        e.state.store(kArmed);
      }
    }
  }
  reschedule_locked(e, now);
}

WriteResult StatBufferImpl::send(const std::vector<Attempt*>& attempts) {
  try {
    if (sink_) {
      std::vector<CounterFlush> flushes;
      flushes.reserve(attempts.size());
      for (const Attempt* a : attempts) flushes.push_back(a->flush);
      return sink_->write_counters(flushes, opt_.sink_timeout);
    }
    return handler_(attempts.front()->key, attempts.front()->flush.count);
  } catch (const std::exception& ex) {
    return WriteResult::retry_later(std::string("flush threw: ") + ex.what());
  } catch (...) {
    return WriteResult::retry_later("flush threw");
  }
}

void StatBufferImpl::worker_loop() {
  std::vector<Item> due;
  for (;;) {
    {
      std::unique_lock lock(sched_mu_);
      for (;;) {
        if (stopping_) return;
        const TimePoint now = opt_.clock->now();
        if (!heap_.empty() && heap_.top().due <= now) break;
        const uint64_t seen = wake_seq_;
        const TimePoint until = heap_.empty() ? now + std::chrono::hours(1) : heap_.top().due;
        opt_.clock->wait_until(lock, sched_cv_, until, [&] { return stopping_ || wake_seq_ != seen; });
      }
      const TimePoint now = opt_.clock->now();
      while (!heap_.empty() && heap_.top().due <= now && due.size() < kMaxBatch) {
        due.push_back(heap_.top());
        heap_.pop();
      }
    }
    // Start an attempt for each key that is really due.
    std::vector<std::pair<std::shared_ptr<StatEntry>, Attempt>> work;
    std::vector<std::string> evicted;
    for (Item& item : due) {
      StatEntry& e = *item.entry;
      Shard& s = shard_for(SvHash{}(e.key));
      std::lock_guard lock(s.mu);
      if (item.seq != e.sched_seq || !e.in_map) continue;  // superseded
      e.has_item = false;
      if (e.flushing.load()) continue;  // finish_locked() reschedules it
      const TimePoint now = opt_.clock->now();
      const bool force = std::exchange(e.flush_requested, false);
      Attempt a = begin_attempt_locked(e, force, now);
      if (!a.valid) {
        if (try_evict_locked(s, e)) {
          if (opt_.on_key_evicted) evicted.push_back(e.key);
        } else {
          reschedule_locked(e, now);
        }
        continue;
      }
      e.flushing.store(true);
      if (a.retry) retries_.fetch_add(1);
      work.emplace_back(std::move(item.entry), std::move(a));
    }
    due.clear();
    // Write: the sink takes the whole batch in one call; a callback is called per key.
    auto finish = [&](std::pair<std::shared_ptr<StatEntry>, Attempt>& w, const WriteResult& r) {
      Shard& s = shard_for(SvHash{}(w.first->key));
      {
        std::lock_guard lock(s.mu);
        finish_locked(*w.first, w.second, r, opt_.clock->now());
      }
      s.cv.notify_all();
    };
    if (sink_ && !work.empty()) {
      std::vector<Attempt*> batch;
      for (auto& w : work) batch.push_back(&w.second);
      const WriteResult r = send(batch);
      for (auto& w : work) finish(w, r);
    } else {
      for (auto& w : work) finish(w, send({&w.second}));
    }
    for (const std::string& key : evicted) {
      try {
        opt_.on_key_evicted(key);
      } catch (...) {  // an observer's error must not kill the worker
      }
    }
  }
}

StatBufferReport StatBufferImpl::flush_all(TimePoint deadline) {
  StatBufferReport rep;
  std::vector<std::shared_ptr<StatEntry>> all;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    for (auto& [k, e] : s.map) all.push_back(e);
  }
  for (auto& entry : all) {
    StatEntry& e = *entry;
    Shard& s = shard_for(SvHash{}(e.key));
    // Sink mode may take two rounds: the in-doubt window, then the open one.
    for (int round = 0; round < 2; ++round) {
      std::unique_lock lock(s.mu);
      const bool free = opt_.clock->wait_until(lock, s.cv, deadline, [&] { return !e.flushing.load(); });
      if (!e.in_map) break;
      const TimePoint now = opt_.clock->now();
      if (!free || now >= deadline) {  // out of time: report what stays unflushed
        const int64_t n = e.peek() + (e.failed ? e.failed->count : 0);
        if (n != 0) {
          rep.failed++;
          rep.left_count += n;
        }
        break;
      }
      Attempt a = begin_attempt_locked(e, /*force=*/true, now);
      if (!a.valid) break;
      e.flushing.store(true);
      if (a.retry) {
        retries_.fetch_add(1);
        rep.retried++;
      }
      lock.unlock();
      const WriteResult r = send({&a});
      lock.lock();
      finish_locked(e, a, r, opt_.clock->now());
      lock.unlock();
      s.cv.notify_all();
      if (!r.ok()) {
        rep.failed++;
        rep.left_count += a.flush.count;
        break;
      }
      rep.flushed++;
      rep.flushed_count += a.flush.count;
      if (!sink_) break;  // a callback attempt carries the whole (merged) count
    }
  }
  rep.dropped = dropped_.load();
  return rep;
}

void StatBufferImpl::hurry() {
  {
    std::lock_guard lock(watch_mu_);
    hurry_ = true;
  }
  watch_cv_.notify_all();
}

StatBufferReport StatBufferImpl::close(TimePoint deadline) {
  std::lock_guard close_lock(close_mu_);
  StatBufferReport rep;
  if (close_done_) {
    rep.dropped = dropped_.load();
    return rep;
  }
  close_done_ = true;
  closed_.store(true);
  // A store that hangs must not hold close() past its deadline: from then on, the writes in
  // progress (a worker's, the last flush below) are abandoned every 50 ms until close() returns.
  // After a hurry() the writes in progress then are abandoned at once, and the last flush gets
  // one attempt of up to a second (a healthy store takes it; a hung one holds nobody longer).
  struct Watchdog {
    StatBufferImpl& owner;
    bool done = false;  // guarded by owner.watch_mu_
    std::thread thread;
    ~Watchdog() {
      if (!thread.joinable()) return;
      {
        std::lock_guard lock(owner.watch_mu_);
        done = true;
      }
      owner.watch_cv_.notify_all();
      thread.join();
    }
  } watchdog{*this, false, {}};
  if (sink_) {
    watchdog.thread = std::thread([this, deadline, &watchdog] {
      std::unique_lock lock(watch_mu_);
      opt_.clock->wait_until(lock, watch_cv_, deadline, [&] { return watchdog.done || hurry_.load(); });
      if (!watchdog.done && hurry_.load()) {
        sink_->abort_writes();
        const TimePoint grace = std::min(deadline, opt_.clock->now() + kHurriedFlushGrace);
        opt_.clock->wait_until(lock, watch_cv_, grace, [&] { return watchdog.done; });
      }
      while (!watchdog.done) {
        sink_->abort_writes();
        watch_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return watchdog.done; });
      }
    });
  }
  {
    std::lock_guard lock(sched_mu_);
    stopping_ = true;
    ++wake_seq_;
  }
  sched_cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();

  // Retire every key and take its counts. An increment racing with this either lands before
  // the collect (flushed here, and the increment returns ok even if it then sees kRetired) or
  // after it (refused and counted): see refuse_retired().
  std::vector<Attempt> left;
  for (Shard& s : shards_) {
    std::unique_lock lock(s.mu);
    for (auto& [k, entry] : s.map) {
      StatEntry& e = *entry;
      opt_.clock->wait_until(lock, s.cv, deadline, [&] { return !e.flushing.load(); });
      const uint8_t was = e.state.exchange(kRetired);
      const int64_t n = e.collect();
      e.in_map = false;
      if (sink_ && e.failed) left.push_back(Attempt{true, true, e.key, *e.failed});
      if (n == 0) continue;
      int64_t ws = e.window_start_us;
      if (was != kArmed) ws = std::max(opt_.clock->unix_us(), e.last_window_us + 1);
      left.push_back(Attempt{true, !sink_ && e.retrying, e.key,
                             CounterFlush{e.scoped_key, ws, opt_.node_id, n}});
    }
    s.map.clear();
  }
  keys_.store(0);

  std::string last_error;
  for (;;) {
    std::vector<Attempt> still;
    for (Attempt& a : left) {
      if (a.retry) {
        retries_.fetch_add(1);
        rep.retried++;
      }
    }
    auto settle = [&](Attempt& a, bool ok) {
      if (ok) {
        flushes_.fetch_add(1);
        flushed_count_.fetch_add(a.flush.count);
        rep.flushed++;
        rep.flushed_count += a.flush.count;
      } else {
        flush_failures_.fetch_add(1);
        a.retry = true;
        still.push_back(std::move(a));
      }
    };
    auto sent = [&](const WriteResult& r) {
      if (!r.ok()) last_error = r.reason;
      return r.ok();
    };
    if (sink_) {
      for (size_t i = 0; i < left.size(); i += kMaxBatch) {
        std::vector<Attempt*> batch;
        for (size_t j = i; j < std::min(left.size(), i + kMaxBatch); ++j) batch.push_back(&left[j]);
        const bool ok = sent(send(batch));
        for (Attempt* a : batch) settle(*a, ok);
      }
    } else {
      for (Attempt& a : left) settle(a, sent(send({&a})));
    }
    left = std::move(still);
    if (left.empty()) break;
    const TimePoint now = opt_.clock->now();
    if (now >= deadline || hurry_.load()) break;  // hurried: no retry
    std::unique_lock lock(watch_mu_);
    opt_.clock->wait_until(lock, watch_cv_, std::min(deadline, now + opt_.backoff), [&] { return hurry_.load(); });
  }
  for (const Attempt& a : left) {
    rep.failed++;
    rep.left_count += a.flush.count;
  }
  count_lost_at_close(rep, last_error);
  rep.dropped = dropped_.load();
  return rep;
}

// Nothing retries after close(): what it could not write is lost. Counted in stats() (where the
// metrics read it, whoever ignores the report) and said once, at error level.
void StatBufferImpl::count_lost_at_close(const StatBufferReport& rep, const std::string& last_error) {
  if (rep.failed == 0) return;
  lost_at_close_.fetch_add(rep.failed);
  lost_at_close_count_.fetch_add(rep.left_count);
  log(LogLevel::error, "stat buffer '" + opt_.name + "': close() lost " + std::to_string(rep.failed) +
                           " counter window(s) (count " + std::to_string(rep.left_count) +
                           ") it could not write by its deadline" +
                           (last_error.empty() ? std::string() : ": " + last_error));
}

}  // namespace reqbus::detail
