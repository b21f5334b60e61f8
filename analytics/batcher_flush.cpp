// Batcher delivery: flush workers, the attempt/retry/spool cycle, drain(), flush() and close().
#include <algorithm>
#include <iterator>
#include <string>

#include "analytics/batcher_impl.hpp"

namespace reqbus {

using detail::BatchPtr;
using detail::DropReason;

namespace {

const char* reason_text(DropReason reason) {
  switch (reason) {
    case DropReason::retries_exhausted: return "retries exhausted";
    case DropReason::permanent: return "permanent sink error";
    case DropReason::close_deadline: return "close() deadline reached";
    default: return "undeliverable";
  }
}

int64_t micros(Clock::time_point::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

}  // namespace

BatchPtr Batcher::Impl::take_batch_locked(detail::Buffer& buffer) {
  auto batch = std::make_shared<detail::Batch>();
  batch->id = next_batch_id_.fetch_add(1);
  batch->events.swap(buffer.events);
  batch->bytes = buffer.bytes;
  buffer.bytes = 0;
  buffer.events.reserve(std::min<size_t>(options_.flush_at, 1024));
  return batch;
}

void Batcher::Impl::submit(BatchPtr batch) {
  {
    std::lock_guard lock(work_mu_);
    unresolved_.insert(batch->id);
    pending_.push_back(std::move(batch));
  }
  work_cv_.notify_one();
}

void Batcher::Impl::submit_all_buffers() {
  for (detail::Buffer& buffer : buffers_) {
    std::lock_guard lock(buffer.mu);
    if (!buffer.events.empty()) submit(take_batch_locked(buffer));
  }
}

void Batcher::Impl::worker_loop() {
  for (;;) {
    BatchPtr batch;
    {
      std::unique_lock lock(work_mu_);
      work_cv_.wait(lock, [&] { return stop_workers_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and nothing left
      batch = std::move(pending_.front());
      pending_.pop_front();
      if (options_.coalesce_max_events > 0 && !pending_.empty()) coalesce_locked(batch);
      inflight_.emplace(batch->id, batch);
    }
    process(batch);
  }
}

// The sink is behind: merges the batches waiting after `batch` into it, as many as fit in the
// coalesce bounds. The merged batch keeps the smallest id of its parts and their events in id
// order; the other ids leave unresolved_, so flush() and close() wait on the merged one.
void Batcher::Impl::coalesce_locked(BatchPtr& batch) {
  size_t events = batch->events.size(), bytes = batch->bytes, take = 0;
  for (; take < pending_.size(); ++take) {
    const detail::Batch& next = *pending_[take];
    if (events + next.events.size() > options_.coalesce_max_events ||
        bytes + next.bytes > options_.coalesce_max_bytes)
      break;
    events += next.events.size();
    bytes += next.bytes;
  }
  if (take == 0) return;
  std::vector<BatchPtr> parts{batch};
  parts.insert(parts.end(), pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(take));
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(take));
  std::sort(parts.begin(), parts.end(), [](const BatchPtr& a, const BatchPtr& b) { return a->id < b->id; });
  auto merged = std::make_shared<detail::Batch>();
  merged->id = parts.front()->id;
  merged->bytes = bytes;
  merged->events.reserve(events);
  for (const BatchPtr& part : parts) {
    std::move(part->events.begin(), part->events.end(), std::back_inserter(merged->events));
    if (part->id != merged->id) unresolved_.erase(part->id);
  }
  counters_.batches_coalesced += take;
  batch = std::move(merged);
}

WriteResult Batcher::Impl::call_sink(const std::vector<Message>& events) {
  try {
    return sink_->write(events, options_.import_timeout);
  } catch (const std::exception& e) {
    return WriteResult::retry_later(std::string("sink threw: ") + e.what());
  } catch (...) {
    return WriteResult::retry_later("sink threw a non-std exception");
  }
}

void Batcher::Impl::record_latency(time_point start, time_point end) {
  const auto us = static_cast<uint64_t>(std::max<int64_t>(0, micros(end - start)));
  counters_.latency_last_us = us;
  counters_.latency_total_us += us;
  ++counters_.latency_count;
  uint64_t max = counters_.latency_max_us.load();
  while (us > max && !counters_.latency_max_us.compare_exchange_weak(max, us)) {
  }
}

// Writes the batch, retrying with backoff, until it is delivered, spooled or dropped — or until
// close() abandons it at its deadline (close() then spools it; see spool_leftovers()).
void Batcher::Impl::process(const BatchPtr& batch) {
  // Past close()'s deadline spool_leftovers() spools every unresolved batch in id order; a
  // worker spooling one of them on its own could put it ahead of an older one.
  if (abandon_.load()) return;
  if (spool_ && sink_down_.load() && spool_while_down(batch)) return;
  struct EndProbe {  // however this returns, the batch is no longer the probe
    Impl* self;
    uint64_t id;
    ~EndProbe() { self->end_probe(id); }
  } end_probe_on_return{this, batch->id};
  for (int attempt = 1;; ++attempt) {
    if (batch->resolved.load()) return;
    const time_point start = clock_->now();
    {
      std::lock_guard lock(work_mu_);
      writing_.emplace(batch->id, Writing{batch, start});
    }
    const WriteResult result = call_sink(batch->events);
    {
      std::lock_guard lock(work_mu_);
      writing_.erase(batch->id);
    }
    const time_point end = clock_->now();
    if (result.ok()) {
      // Not resolved here if close() or a probe handoff spooled it meanwhile: the spooled copy
      // is a harmless duplicate (writes are idempotent), and the sink works all the same.
      if (batch->try_resolve()) {
        counters_.delivered += batch->events.size();
        ++counters_.batches_delivered;
        record_latency(start, end);
        if (options_.debug) {
          log(LogLevel::debug, "batcher: flushed " + std::to_string(batch->events.size()) +
                                   " events to " + sink_->name() + " (attempt " +
                                   std::to_string(attempt) + ", " + std::to_string(micros(end - start)) + " us)");
        }
        finish(batch);
      } else {
        std::lock_guard order(spool_order_mu_);  // where close() marks what it resolved
        if (batch->resolved_at_close_deadline) counters_.delivered_after_deadline += batch->events.size();
      }
      close_breaker("a live batch was stored");
      // The sink works: replay the spool — unless a replay failed and waits for its backoff,
      // which a batch the sink keeps refusing at replay must get, however many live writes work.
      if (spool_ && !replay_backoff_.load() && !spool_->empty()) kick_replayer();
      return;
    }
    // close() abandoned the write (Sink::abort_writes) past its deadline, or the stall check
    // spooled the batch meanwhile: nothing to retry, and no breaker to open at shutdown.
    if (abandon_.load() || batch->resolved.load()) return;
    ++counters_.failed_attempts;
    if (result.kind == WriteResult::Kind::permanent) {
      resolve_undeliverable(batch, DropReason::permanent, result.reason);
      return;
    }
    // One batch at a time retries against a failing sink (the probe); any other that fails
    // meanwhile is made durable in the spool instead of holding a worker and memory.
    if (!open_breaker(batch->id, result.reason) && spool_ && spool_while_down(batch)) return;
    if (attempt >= options_.retry_max_attempts) {
      resolve_undeliverable(batch, DropReason::retries_exhausted, result.reason);
      return;
    }
    std::chrono::milliseconds wait;
    {
      std::lock_guard lock(rng_mu_);
      wait = detail::retry_wait(attempt, options_.retry_base_backoff, result.retry_after, retry_rng_);
    }
    ++counters_.retries;
    if (options_.debug) {
      log(LogLevel::debug, "batcher: flush of " + std::to_string(batch->events.size()) +
                               " events failed (attempt " + std::to_string(attempt) + ": " +
                               result.reason + "); retrying in " + std::to_string(wait.count()) + " ms");
    }
    // Measured from the attempt's start: a slow failure (a timeout) already waited.
    std::unique_lock lock(retry_mu_);
    clock_->wait_until(lock, retry_cv_, start + wait,
                       [&] { return abandon_.load() || batch->resolved.load(); });
    if (abandon_.load()) return;  // close() reached its deadline and spools what is left
  }
}

void Batcher::Impl::resolve_undeliverable(const BatchPtr& batch, DropReason reason,
                                          const std::string& why) {
  std::lock_guard order(spool_order_mu_);  // see hand_probe_to_spool_locked()
  if (!batch->try_resolve()) return;
  batch->resolved_at_close_deadline = reason == DropReason::close_deadline;
  spool_or_drop(batch->events, reason, why);
  finish(batch);
}

void Batcher::Impl::spool_or_drop(const std::vector<Message>& events, DropReason reason,
                                  const std::string& why) {
  const std::string what = std::to_string(events.size()) + " events to " + sink_->name() + " (" +
                           reason_text(reason) + (why.empty() ? "" : ": " + why) + ")";
  if (spool_) {
    std::string error;
    switch (spool_->append(events, &error)) {
      case detail::SpoolAppend::ok:
        counters_.spooled += events.size();
        ++counters_.spooled_batches;
        spool_log_.log(LogLevel::warn, "batcher: spooled " + what);
        return;
      case detail::SpoolAppend::full:
        reason = DropReason::spool_full;
        break;
      case detail::SpoolAppend::io_error:
        reason = DropReason::spool_error;
        break;
    }
    counters_.drops[static_cast<size_t>(reason)] += events.size();
    loss_log_.log(LogLevel::error, "batcher: DROPPED " + what + ": " + error);
    return;
  }
  counters_.drops[static_cast<size_t>(reason)] += events.size();
  loss_log_.log(LogLevel::error, "batcher: DROPPED " + what + ": no spool_dir configured");
}

// The breaker is open: make the batch durable now rather than queue it behind a failing sink.
// If the spool refuses it (full, disk error), the batch is written to the sink as usual instead
// — the sink may be back — so the breaker never turns a spool problem into a drop by itself.
bool Batcher::Impl::spool_while_down(const BatchPtr& batch) {
  std::lock_guard order(spool_order_mu_);
  // close() at its deadline spooled it (counted) while its write was still running: a second
  // copy would replay it twice (`replayed` past `spooled`, twice the spool bytes). Checked under
  // spool_order_mu_, under which every other resolver of an in-flight batch resolves it.
  if (batch->resolved.load()) {
    if (options_.debug) {
      log(LogLevel::debug, "batcher: a write of " + std::to_string(batch->events.size()) +
                               " events failed after close() had spooled them at its deadline");
    }
    return true;
  }
  hand_probe_to_spool_locked(batch->id);
  std::string error;
  const detail::SpoolAppend outcome = spool_->append(batch->events, &error);
  if (outcome != detail::SpoolAppend::ok) {
    loss_log_.log(LogLevel::error, "batcher: " + sink_->name() + " is down and the spool refused " +
                                       std::to_string(batch->events.size()) +
                                       " events (" + error + "); writing them to the sink instead");
    return false;
  }
  if (batch->try_resolve()) {  // nobody else resolves it meanwhile: we hold spool_order_mu_
    counters_.spooled += batch->events.size();
    counters_.spooled_while_down += batch->events.size();
    ++counters_.spooled_batches;
    finish(batch);
  }
  return true;
}

// A newer batch is about to be spooled while the probe (older) still waits to retry: the probe
// goes into the spool first, so that replay keeps batch order, and the replayer takes over
// probing. Every other path that spools a batch resolves it under spool_order_mu_ too, so the
// probe can only be resolved meanwhile by its own successful write — and then the copy
// spooled here is a harmless duplicate (writes are idempotent).
void Batcher::Impl::hand_probe_to_spool_locked(uint64_t newer_id) {
  const uint64_t probe = probe_batch_.load();
  if (probe == 0 || probe >= newer_id) return;
  BatchPtr batch;
  {
    std::lock_guard lock(work_mu_);
    if (auto it = inflight_.find(probe); it != inflight_.end()) batch = it->second;
  }
  if (!batch || batch->resolved.load()) return;
  std::string error;
  if (spool_->append(batch->events, &error) != detail::SpoolAppend::ok) return;  // it keeps retrying
  if (batch->try_resolve()) {
    counters_.spooled += batch->events.size();
    ++counters_.spooled_batches;
    finish(batch);
  }
  {
    std::lock_guard lock(retry_mu_);  // its worker stops waiting for the next attempt
  }
  retry_cv_.notify_all();
  fast_probes_ = options_.retry_max_attempts;
  kick_replayer();
}

// A write has run for stall_timeout without an answer (a database that hangs): the sink is
// taken as down, as after a failed write, at every timer pass while it lasts. Each stalled
// batch goes to the spool (its write goes on; a late success is a harmless duplicate), and so
// do the batches waiting for a worker when every worker is inside a write: nothing else would
// take them out of memory before import_timeout. Called by the timer.
void Batcher::Impl::spool_behind_stalled_write(time_point now) {
  if (!spool_ || options_.stall_timeout <= std::chrono::milliseconds(0) || abandon_.load()) return;
  std::vector<BatchPtr> stalled;  // in id order; those spooled at an earlier pass too
  size_t writing = 0;
  {
    std::lock_guard lock(work_mu_);
    writing = writing_.size();
    for (const auto& [id, w] : writing_)
      if (now - w.since >= options_.stall_timeout) stalled.push_back(w.batch);
  }
  if (stalled.empty()) return;
  // Not made the probe: its write may answer before this line, and a probe id nobody clears
  // would keep every later failed batch from probing. The replayer probes meanwhile.
  if (!sink_down_.exchange(true)) {
    ++counters_.breaker_opened;
    ++counters_.stalled_writes;
    spool_log_.log(LogLevel::warn, "batcher: a write to " + sink_->name() + " has not answered in " +
                                       std::to_string(options_.stall_timeout.count()) +
                                       " ms; new batches go straight to the spool until a write succeeds");
  }
  bool spooled = false;
  for (const BatchPtr& batch : stalled)
    if (!batch->resolved.load()) spooled = spool_while_down(batch) || spooled;
  std::deque<BatchPtr> waiting;
  if (writing >= options_.flush_workers) {  // no worker is free to spool what waits
    std::lock_guard lock(work_mu_);
    waiting.swap(pending_);
    for (const BatchPtr& batch : waiting) inflight_.emplace(batch->id, batch);
  }
  while (!waiting.empty() && spool_while_down(waiting.front())) {
    waiting.pop_front();
    spooled = true;
  }
  if (!waiting.empty()) {  // the spool refused one: the rest wait for a worker, as before, in order
    {
      std::lock_guard lock(work_mu_);
      for (auto it = waiting.rbegin(); it != waiting.rend(); ++it) {
        inflight_.erase((*it)->id);
        pending_.push_front(*it);
      }
    }
    work_cv_.notify_all();
  }
  if (spooled) kick_replayer();
}

bool Batcher::Impl::open_breaker(uint64_t batch_id, const std::string& why) {
  uint64_t none = 0;
  const bool probing = probe_batch_.compare_exchange_strong(none, batch_id) || none == batch_id;
  if (sink_down_.exchange(true)) return probing;
  ++counters_.breaker_opened;
  if (spool_) {
    spool_log_.log(LogLevel::warn, "batcher: a write to " + sink_->name() + " failed (" + why +
                                       "); new batches go straight to the spool until a write succeeds");
  }
  return probing;
}

void Batcher::Impl::end_probe(uint64_t batch_id) {
  uint64_t expected = batch_id;
  probe_batch_.compare_exchange_strong(expected, 0);
}

void Batcher::Impl::close_breaker(const char* why) {
  if (!sink_down_.exchange(false)) return;
  if (spool_) spool_log_.log(LogLevel::info, std::string("batcher: ") + why + "; writing live batches to " + sink_->name() + " again");
}

void Batcher::Impl::finish(const BatchPtr& batch) {
  release(batch->events.size(), batch->bytes);  // first: flush() returning sees the room
  {
    std::lock_guard lock(work_mu_);
    unresolved_.erase(batch->id);
    inflight_.erase(batch->id);
  }
  done_cv_.notify_all();
}

// close() at its deadline: everything not yet resolved goes to the spool, oldest batch first.
void Batcher::Impl::spool_leftovers() {
  std::vector<BatchPtr> left;
  {
    std::lock_guard lock(work_mu_);
    left.assign(pending_.begin(), pending_.end());
    pending_.clear();
    for (auto& [id, batch] : inflight_) left.push_back(batch);
  }
  std::sort(left.begin(), left.end(), [](const BatchPtr& a, const BatchPtr& b) { return a->id < b->id; });
  for (const BatchPtr& batch : left) resolve_undeliverable(batch, DropReason::close_deadline, "");
}

// Every batch drain() takes is in inflight_ (and unresolved_) from the moment it leaves
// pending_ or its buffer, in the same work_mu_ section: close() at its deadline spools what
// inflight_ holds, so a batch drain() has not reached yet is never out of its sight.
std::vector<Message> Batcher::Impl::drain() {
  std::vector<BatchPtr> batches;
  {
    std::lock_guard lock(work_mu_);
    batches.assign(pending_.begin(), pending_.end());  // older than what the buffers hold
    pending_.clear();
    for (const BatchPtr& batch : batches) inflight_.emplace(batch->id, batch);
  }
  for (detail::Buffer& buffer : buffers_) {
    std::lock_guard lock(buffer.mu);
    if (buffer.events.empty()) continue;
    BatchPtr batch = take_batch_locked(buffer);
    std::lock_guard work(work_mu_);
    unresolved_.insert(batch->id);
    inflight_.emplace(batch->id, batch);
    batches.push_back(std::move(batch));
  }
  std::vector<Message> processed;
  for (const BatchPtr& batch : batches) {
    processed.insert(processed.end(), batch->events.begin(), batch->events.end());
    process(batch);
  }
  return processed;
}

BatcherReport Batcher::Impl::snapshot_report() const {
  BatcherReport r;
  r.delivered = counters_.delivered.load();
  r.retries = counters_.retries.load();
  r.spooled = counters_.spooled.load();
  r.delivered_after_deadline = counters_.delivered_after_deadline.load();
  auto d = [&](DropReason reason) { return counters_.drops[static_cast<size_t>(reason)].load(); };
  r.dropped = {d(DropReason::newest),   d(DropReason::oldest),
               d(DropReason::timeout),  d(DropReason::closed),
               d(DropReason::retries_exhausted), d(DropReason::permanent),
               d(DropReason::close_deadline),    d(DropReason::spool_full),
               d(DropReason::spool_error),       d(DropReason::dead_letter_error)};
  return r;
}

BatcherReport Batcher::Impl::flush(std::chrono::milliseconds deadline) {
  const time_point start = clock_->now();
  bool done = true;
  if (options_.active) {
    submit_all_buffers();
    const uint64_t target = next_batch_id_.load() - 1;
    std::unique_lock lock(work_mu_);
    done = clock_->wait_until(lock, done_cv_, start + deadline, [&] {
      return unresolved_.empty() || *unresolved_.begin() > target;
    });
  }
  // Counts since the previous flush() (or construction), so nothing resolved between two
  // calls — by a worker, before this call began — goes unreported. The snapshot is taken under
  // report_mu_: a concurrent flush() must not move report_base_ past it (a wrapped difference).
  BatcherReport r;
  {
    std::lock_guard lock(report_mu_);
    r = snapshot_report();
    const BatcherReport now = r;
    const BatcherReport& b = report_base_;
    r.delivered -= b.delivered;
    r.retries -= b.retries;
    r.spooled -= b.spooled;
    r.delivered_after_deadline -= b.delivered_after_deadline;
    auto& a = r.dropped;
    const auto& d = b.dropped;
    a = {a.newest - d.newest, a.oldest - d.oldest, a.timeout - d.timeout, a.closed - d.closed,
         a.retries_exhausted - d.retries_exhausted, a.permanent - d.permanent,
         a.close_deadline - d.close_deadline, a.spool_full - d.spool_full,
         a.spool_error - d.spool_error, a.dead_letter_error - d.dead_letter_error};
    report_base_ = now;
  }
  r.deadline_reached = !done;
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_->now() - start);
  return r;
}

void Batcher::Impl::hurry() {
  {
    std::lock_guard lock(work_mu_);  // close() waits on done_cv_ under it: it sees the flag
    hurry_ = true;
  }
  done_cv_.notify_all();
  { std::lock_guard lock(stop_mu_); }  // nor does abort_sink_writes_until() miss it
  stop_cv_.notify_all();
}

BatcherReport Batcher::Impl::close(std::chrono::milliseconds deadline) {
  std::lock_guard close_lock(close_mu_);
  if (close_report_) return *close_report_;
  const time_point start = clock_->now();
  closed_ = true;
  {
    std::lock_guard lock(room_mu_);  // wake blocked enqueuers: they return `closed`
    room_cv_.notify_all();
  }
  bool done = true;
  if (options_.active) {
    submit_all_buffers();
    {
      std::unique_lock lock(work_mu_);
      clock_->wait_until(lock, done_cv_, start + deadline, [&] { return unresolved_.empty() || hurry_.load(); });
      done = unresolved_.empty();
    }
    if (!done) {
      {
        std::lock_guard lock(retry_mu_);
        abandon_ = true;
      }
      retry_cv_.notify_all();
      spool_leftovers();
    }
    {
      std::lock_guard lock(work_mu_);
      stop_workers_ = true;
    }
    work_cv_.notify_all();
    replay_stopping_ = true;  // a replay the abort below cuts short is not a failure to report
    // With a spool every batch is resolved or in it now: a write still running (a store that
    // hangs; a stalled write whose batch was spooled) is abandoned rather than waited out for
    // its import_timeout — past the deadline, until every worker has returned. Without a
    // spool a write in progress is its batch's only chance, and is waited for — unless the
    // close is hurried, then or while it waits.
    abort_sink_writes_until([&] { return workers_finished_.load() == workers_.size(); },
                            [&] {
                              if (hurry_.load()) return true;
                              if (!spool_) return false;
                              std::lock_guard lock(work_mu_);
                              return !done || !writing_.empty();
                            });
    for (std::thread& worker : workers_) worker.join();
    // A replay to a store that is down or past the deadline is abandoned too (its batch stays
    // in the spool); one to a working store is let finish.
    stop_background(!done || sink_down_.load());
  }
  // Nothing touches the spool any more: its directory is free for another Batcher (the next
  // node on it) though this one is not destroyed yet.
  if (spool_) spool_->close();
  BatcherReport r = snapshot_report();
  r.deadline_reached = !done;
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_->now() - start);
  close_report_ = r;
  return r;
}

}  // namespace reqbus
