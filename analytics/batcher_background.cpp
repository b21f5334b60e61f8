// Batcher background threads: the timer (interval flushes with jitter, telemetry) and the
// replayer (spooled batches back to the sink, oldest first).
#include <algorithm>
#include <string>

#include "analytics/batcher_impl.hpp"

namespace reqbus {

namespace {

// The next firing after `previous`; if the thread fell behind, counted from now instead of
// firing a burst to catch up.
Clock::time_point next_after(Clock::time_point previous, Clock::time_point::duration delay, Clock::time_point now) {
  const Clock::time_point next = previous + delay;
  return next > now ? next : now + delay;
}

}  // namespace

void Batcher::Impl::timer_loop() {
  const bool telemetry = static_cast<bool>(options_.telemetry);
  for (;;) {
    time_point wake = *std::min_element(next_flush_.begin(), next_flush_.end());
    if (telemetry) wake = std::min(wake, next_telemetry_);
    if (spool_ && options_.stall_timeout > std::chrono::milliseconds(0))  // look for a stalled write
      wake = std::min(wake, clock_->now() + std::clamp<std::chrono::milliseconds>(options_.stall_timeout, std::chrono::milliseconds(100),
                                                                                   std::chrono::seconds(1)));
    {
      std::unique_lock lock(timer_mu_);
      if (clock_->wait_until(lock, timer_cv_, wake, [&] { return stop_timer_; })) return;
    }
    const time_point now = clock_->now();
    for (size_t i = 0; i < buffers_.size(); ++i) {
      if (next_flush_[i] > now) continue;
      {
        detail::Buffer& buffer = buffers_[i];
        std::lock_guard lock(buffer.mu);
        if (!buffer.events.empty()) submit(take_batch_locked(buffer));
      }
      next_flush_[i] = next_after(
          next_flush_[i], detail::flush_delay(options_.flush_interval, options_.flush_jitter, jitter_rng_), now);
    }
    spool_behind_stalled_write(now);
    if (telemetry && next_telemetry_ <= now) {
      try {
        options_.telemetry(buffers());
      } catch (const std::exception& e) {
        spool_log_.log(LogLevel::warn, std::string("batcher: telemetry callback threw: ") + e.what());
      } catch (...) {
        spool_log_.log(LogLevel::warn, "batcher: telemetry callback threw");
      }
      next_telemetry_ = next_after(next_telemetry_, options_.telemetry_buffers_info_interval, now);
    }
  }
}

void Batcher::Impl::kick_replayer() {
  {
    std::lock_guard lock(replay_mu_);
    replay_kick_ = true;
  }
  replay_cv_.notify_one();
}

void Batcher::Impl::replay_loop(time_point next) {
  std::chrono::milliseconds backoff = options_.replay_interval;
  for (;;) {
    {
      std::unique_lock lock(replay_mu_);
      clock_->wait_until(lock, replay_cv_, next, [&] { return stop_replay_ || replay_kick_; });
      if (stop_replay_) return;
      replay_kick_ = false;
    }
    const ReplayOutcome outcome = replay_pending();
    if (outcome == ReplayOutcome::stopped) return;
    replay_backoff_ = outcome == ReplayOutcome::failed || outcome == ReplayOutcome::unreadable;
    if (outcome == ReplayOutcome::unreadable) {
      // Not the sink's fault: try the file again at the usual pace, without touching the backoff.
      next = clock_->now() + options_.replay_interval;
    } else if (outcome == ReplayOutcome::failed) {
      if (const int left = fast_probes_.fetch_sub(1); left > 0) {
        // The spool holds the probe handed over by a worker: retry at the pace that batch had.
        std::lock_guard lock(rng_mu_);
        const int attempt = std::max(1, options_.retry_max_attempts - left + 1);
        next = clock_->now() + detail::retry_wait(attempt, options_.retry_base_backoff, {}, retry_rng_);
        continue;
      }
      fast_probes_ = 0;
      next = clock_->now() + backoff;
      backoff = std::min(backoff * 2, options_.replay_max_backoff);
    } else {
      fast_probes_ = 0;
      backoff = options_.replay_interval;
      next = clock_->now() + options_.replay_interval;
    }
  }
}

// Loads the oldest readable segment into replay_segment_. A segment that cannot be read stays
// in the spool (counted, logged) and is tried again later; one from a newer reqbus is skipped.
bool Batcher::Impl::read_next_segment(ReplayOutcome& outcome) {
  for (;;) {
    detail::SpoolSegment segment;
    std::string error;
    switch (spool_->read_oldest(segment, &error)) {
      case detail::SpoolRead::ok:
        replay_segment_ = std::move(segment);
        replay_index_ = 0;
        if (replay_segment_->corrupt_records > 0) {
          loss_log_.log(LogLevel::error,
                        "batcher: spool segment " + spool_->segment_path(replay_segment_->id) +
                            ": skipped " + std::to_string(replay_segment_->corrupt_records) +
                            " torn or corrupt record(s)");
        }
        return true;
      case detail::SpoolRead::empty:
        // Nothing spooled to probe with (the failing batch may still be retrying, or the spool
        // refused it): let the next live batch be the probe.
        close_breaker("the spool is empty, so the next live batch probes the sink");
        outcome = ReplayOutcome::idle;
        return false;
      case detail::SpoolRead::io_error:
        ++counters_.replay_failures;
        loss_log_.log(LogLevel::error, "batcher: cannot read spool segment (kept; retrying in " +
                                           std::to_string(options_.replay_interval.count()) + " ms): " + error);
        outcome = ReplayOutcome::unreadable;
        return false;
      case detail::SpoolRead::newer_version:
        loss_log_.log(LogLevel::error, "batcher: " + error);
        continue;  // the next segment
    }
  }
}

// The sink will never take this batch: it moves to the dead-letter file (nothing lost, an
// operator can look at it) so that the batches behind it are replayed; if even that file
// refuses it, it is dropped, counted as dead_letter_error.
void Batcher::Impl::dead_letter(size_t batch_events, const std::string& why) {
  const std::string what = std::to_string(batch_events) + " spooled events permanently (" + why + ")";
  std::string error;
  if (spool_->dead_letter(*replay_segment_, replay_index_, &error) == detail::SpoolAppend::ok) {
    counters_.dead_lettered += batch_events;
    loss_log_.log(LogLevel::error, "batcher: " + sink_->name() + " rejected " + what + "; moved them to " +
                                       spool_->dead_letter_path());
    return;
  }
  counters_.drops[static_cast<size_t>(detail::DropReason::dead_letter_error)] += batch_events;
  loss_log_.log(LogLevel::error, "batcher: DROPPED: " + sink_->name() + " rejected " + what +
                                     " and the dead-letter file refused them: " + error);
}

// Replays segments oldest first, each batch in order, until the spool is empty, a write fails,
// or close() stops the replayer. A segment is deleted once all its batches are stored (or
// dead-lettered); a batch stored twice (replayed again after a crash) is harmless because sinks
// are idempotent.
Batcher::Impl::ReplayOutcome Batcher::Impl::replay_pending() {
  for (;;) {
    if (ReplayOutcome outcome; !replay_segment_ && !read_next_segment(outcome)) return outcome;
    while (replay_index_ < replay_segment_->size()) {
      const std::vector<Message> batch = replay_segment_->batch(replay_index_);
      // Marked before stopping is read, and close() reads the mark after setting stopping:
      // either this write does not start, or close() sees it and abandons it.
      replay_writing_ = true;
      if (replay_stopping_.load()) {
        replay_writing_ = false;
        return ReplayOutcome::stopped;
      }
      const WriteResult result = call_sink(batch);
      replay_writing_ = false;
      if (replay_stopping_.load() && !result.ok()) return ReplayOutcome::stopped;  // abandoned
      if (result.kind == WriteResult::Kind::permanent) {
        // The sink answered: it works, it will just never take this batch.
        ++counters_.replay_failures;
        dead_letter(batch.size(), result.reason);
        close_breaker("the sink answered a replay (rejecting one batch for good)");
        ++replay_index_;
        continue;
      }
      if (!result.ok()) {
        ++counters_.replay_failures;
        spool_log_.log(LogLevel::warn, "batcher: replay of " + std::to_string(batch.size()) +
                                          " spooled events to " + sink_->name() +
                                          " failed (they stay spooled): " + result.reason);
        return ReplayOutcome::failed;
      }
      counters_.replayed += batch.size();
      close_breaker("a replayed batch was stored");
      ++replay_index_;
    }
    spool_->remove(replay_segment_->id);
    replay_segment_.reset();
  }
}

void Batcher::Impl::abort_sink_writes_until(const std::function<bool()>& finished,
                                            const std::function<bool()>& abandon) {
  std::unique_lock lock(stop_mu_);
  while (!finished()) {
    const bool aborting = abandon();
    if (aborting) {
      lock.unlock();
      sink_->abort_writes();
      lock.lock();
    }
    stop_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return finished() || (!aborting && hurry_.load()); });
  }
}

void Batcher::Impl::stop_background(bool abort_replay) {
  {
    std::lock_guard lock(timer_mu_);
    stop_timer_ = true;
  }
  timer_cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  replay_stopping_ = true;
  {
    std::lock_guard lock(replay_mu_);
    stop_replay_ = true;
  }
  replay_cv_.notify_all();
  // Whatever the replayer writes is in the spool: a write the store leaves hanging is abandoned
  // (replayed at the next start) rather than waited out for its import_timeout; so is any after
  // a hurry().
  abort_sink_writes_until([&] { return !replay_writing_.load(); }, [&] { return abort_replay || hurry_.load(); });
  if (replayer_.joinable()) replayer_.join();
}

}  // namespace reqbus
