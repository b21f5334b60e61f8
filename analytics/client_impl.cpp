// The Client's queue, sender thread and retry loop (see client_impl.hpp).
#include "analytics/client_impl.hpp"

#include <algorithm>

#include "analytics/segment_json.hpp"
#include "bus/thread_name.hpp"
#include "reqbus/log.hpp"
#include "reqbus/uuid.hpp"

#ifndef REQBUS_VERSION_STRING
#define REQBUS_VERSION_STRING "0.1.0"
#endif

namespace reqbus {
namespace {

using std::chrono::milliseconds;

// Segment refuses a single message over 32 KB.
constexpr size_t kMaxMessageBytes = 32 * 1024 + 4096;

std::string trim_slashes(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

ClientError::Kind error_kind(http::PostResult::Outcome outcome) {
  switch (outcome) {
    case http::PostResult::Outcome::response: return ClientError::Kind::http_status;
    case http::PostResult::Outcome::timeout: return ClientError::Kind::timeout;
    case http::PostResult::Outcome::aborted: return ClientError::Kind::abandoned;
    default: return ClientError::Kind::network;
  }
}

}  // namespace

Client::Impl::Impl(ClientOptions options)
    : opts_(std::move(options)),
      clock_(opts_.clock ? opts_.clock : system_clock()),
      url_(trim_slashes(opts_.base_url) + "/v1/batch"),
      user_agent_(std::string("reqbus/") + REQBUS_VERSION_STRING) {
  worker_ = detail::named_thread("rb-client", [this] { run(); });
}

Client::Impl::~Impl() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    abort_ = true;
  }
  work_cv_.notify_all();
  std::lock_guard join(join_mu_);
  if (worker_.joinable()) worker_.join();
}

Clock::time_point Client::Impl::deadline_after(milliseconds timeout) const {
  const auto now = clock_->now();
  // Saturate: milliseconds::max() means "no deadline" and must not overflow.
  const auto room = std::chrono::duration_cast<milliseconds>(Clock::time_point::max() - now);
  return timeout >= room ? Clock::time_point::max() : now + timeout;
}

EnqueueResult Client::Impl::enqueue(AnalyticsEvent event) {
  EnqueueResult result;
  if (event.message_id.empty()) event.message_id = uuid_v7();
  if (event.timestamp == 0) event.timestamp = clock_->unix_us();
  std::string error = validate(event);
  std::string json;
  if (error.empty()) error = segment::append_json(json, event);
  if (error.empty() && json.size() > kMaxMessageBytes)
    error = "message: " + std::to_string(json.size()) + " bytes of JSON exceeds the limit of " +
            std::to_string(kMaxMessageBytes);
  std::unique_lock lock(mu_);
  if (!error.empty()) {
    ++stats_.rejected;
    return {EnqueueStatus::invalid, std::move(error), {}};
  }
  if (closing_) return {EnqueueStatus::closed, "client is closed", {}};
  if (queue_.size() >= opts_.max_queue) {
    switch (opts_.overflow) {
      case Overflow::drop_newest:
        ++stats_.dropped;
        return {EnqueueStatus::dropped, "queue full (" + std::to_string(opts_.max_queue) + " events)", {}};
      case Overflow::drop_oldest: {
        Queued& victim = queue_.front();
        queued_bytes_ -= victim.json.size();
        // The worker hands it to on_error, which needs the event, not its JSON. While the worker
        // is stuck in a send, victims pile up: past max_queue of them they are only counted.
        if (evicted_.size() < opts_.max_queue) {
          evicted_.push_back({victim.seq, victim.enqueued_at, std::move(victim.event), {}});
        } else {
          ++stats_.dropped_unreported;
          ++unreported_since_;
        }
        queue_.pop_front();
        ++stats_.dropped;
        break;
      }
      case Overflow::block:
        if (!clock_->wait_until(lock, done_cv_, deadline_after(opts_.enqueue_timeout), [&] {
              return closing_ || queue_.size() < opts_.max_queue;
            })) {
          ++stats_.dropped;
          return {EnqueueStatus::dropped, "queue full: no room within enqueue_timeout", {}};
        }
        if (closing_) return {EnqueueStatus::closed, "client is closed", {}};
        break;
    }
  }
  result.message_id = event.message_id;
  queued_bytes_ += json.size();
  queue_.push_back({next_seq_++, clock_->now(), std::move(event), std::move(json)});
  ++stats_.enqueued;
  const bool wake = queue_.size() == 1 || ready_locked(clock_->now()) || !evicted_.empty();
  lock.unlock();
  if (wake) work_cv_.notify_one();
  return result;
}

bool Client::Impl::ready_locked(Clock::time_point now) const {
  if (queue_.empty()) return false;
  const Queued& front = queue_.front();
  return closing_ || queue_.size() >= opts_.flush_at || queued_bytes_ >= opts_.max_batch_bytes ||
         flush_through_ >= front.seq || now - front.enqueued_at >= opts_.flush_interval;
}

Client::Impl::Batch Client::Impl::take_batch_locked() {
  Batch batch;
  size_t bytes = 32;  // {"batch":[...],"sentAt":"..."}
  while (!queue_.empty() && batch.size() < opts_.flush_at) {
    const size_t next = queue_.front().json.size() + 1;
    if (!batch.empty() && bytes + next > opts_.max_batch_bytes) break;
    bytes += next;
    queued_bytes_ -= queue_.front().json.size();
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  return batch;
}

void Client::Impl::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    if (!evicted_.empty()) {
      Batch victims = std::move(evicted_);
      evicted_.clear();
      // Unfinished until on_error returns, like the batch in flight: flush() waits for them.
      reporting_first_ = victims.front().seq;
      reporting_size_ = victims.size();
      ClientError error{ClientError::Kind::dropped, 0, 0,
                        "queue full: oldest events evicted (Overflow::drop_oldest)"};
      if (unreported_since_ != 0)
        error.message += "; " + std::to_string(unreported_since_) +
                         " more evicted while on_error was behind were not handed to it";
      unreported_since_ = 0;
      lock.unlock();
      fail(error, victims, nullptr);  // already counted as dropped at eviction
      lock.lock();
      reporting_first_ = 0;
      reporting_size_ = 0;
      done_cv_.notify_all();
      continue;
    }
    if (abort_) break;
    if (queue_.empty()) {
      if (closing_) break;
      clock_->wait_until(lock, work_cv_, deadline_after(std::chrono::hours(1)), [&] {
        return abort_ || closing_ || !queue_.empty() || !evicted_.empty();
      });
      continue;
    }
    if (!ready_locked(clock_->now())) {
      const auto due = queue_.front().enqueued_at + opts_.flush_interval;
      clock_->wait_until(lock, work_cv_, due, [&] {
        return abort_ || !evicted_.empty() || ready_locked(clock_->now());
      });
      continue;
    }
    Batch batch = take_batch_locked();
    inflight_first_ = batch.front().seq;
    inflight_size_ = batch.size();
    done_cv_.notify_all();  // room for a blocked enqueue
    lock.unlock();
    deliver(batch);
    lock.lock();
    inflight_first_ = 0;
    inflight_size_ = 0;
    done_cv_.notify_all();
  }
  // Aborted (close deadline): what is left is handed over, never silently lost.
  Batch rest(std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  queued_bytes_ = 0;
  inflight_first_ = rest.empty() ? 0 : rest.front().seq;
  inflight_size_ = rest.size();
  lock.unlock();
  if (!rest.empty()) {
    ClientError error{ClientError::Kind::abandoned, 0, 0,
                      "close() deadline reached before these events were sent"};
    fail(error, rest, &ClientStats::abandoned);
  }
  lock.lock();
  inflight_first_ = 0;
  inflight_size_ = 0;
  worker_done_ = true;
  done_cv_.notify_all();
}

void Client::Impl::deliver(Batch& batch) {
  std::vector<std::string> messages;
  messages.reserve(batch.size());
  for (const auto& q : batch) messages.push_back(q.json);
  for (uint32_t attempt = 1;; ++attempt) {
    const std::string body = segment::batch_body(messages, clock_->unix_us());
    http::PostRequest request;
    request.url = url_;
    request.body = body;
    request.user_agent = user_agent_;
    request.basic_user = opts_.api_key;
    request.connect_timeout = opts_.open_timeout;
    request.read_timeout = opts_.read_timeout;
    // A backstop against a server that trickles bytes just inside read_timeout forever.
    request.total_timeout = opts_.open_timeout + 2 * opts_.read_timeout;
    request.abort = &abort_;
    const http::PostResult result = transport_.post(request);
    if (result.success()) {
      std::lock_guard lock(mu_);
      stats_.sent += batch.size();
      ++stats_.batches_sent;
      return;
    }
    narrow_to_refused(result, batch, messages);
    ClientError error{error_kind(result.outcome), static_cast<int>(result.status), attempt,
                      http::describe(result, url_)};
    if (result.outcome == http::PostResult::Outcome::aborted) {
      error.message = "close() deadline reached during a send: " + error.message;
      return fail(error, batch, &ClientStats::abandoned);
    }
    // 408: a proxy or the server timed out reading a slow upload; the batch itself is fine.
    const bool transient = result.outcome != http::PostResult::Outcome::response ||
                           result.status == 408 || result.status == 429 || result.status >= 500;
    if (!transient || attempt > opts_.max_retries) {
      if (transient) error.message += " (gave up after " + std::to_string(attempt) + " attempts)";
      return fail(error, batch, &ClientStats::failed);
    }
    // Exponential backoff; a Retry-After from the server is a floor.
    milliseconds wait = opts_.retry_backoff * (int64_t{1} << std::min<uint32_t>(attempt - 1, 20));
    wait = std::min(wait, opts_.max_backoff);
    if (auto after = http::parse_retry_after(result.retry_after, clock_->unix_us() / 1'000'000,
                                             opts_.max_retry_after))
      wait = std::max(wait, *after);
    std::unique_lock lock(mu_);
    ++stats_.retried;
    clock_->wait_until(lock, work_cv_, deadline_after(wait), [&] { return abort_.load(); });
    if (abort_) {
      lock.unlock();
      error.kind = ClientError::Kind::abandoned;
      error.message = "close() deadline reached while waiting to retry after: " + error.message;
      return fail(error, batch, &ClientStats::abandoned);
    }
  }
}

// A reqbus node whose bus took only part of a batch answers 503 with the indices of the events
// it refused ("refused", ascending); it stored the others. Those count as sent, and only the
// refused ones are sent again. Any other answer leaves the batch whole.
void Client::Impl::narrow_to_refused(const http::PostResult& result, Batch& batch,
                                     std::vector<std::string>& messages) {
  if (result.outcome != http::PostResult::Outcome::response || result.status != 503) return;
  const auto keep = http::parse_refused(result.body, batch.size());
  if (!keep || keep->empty() || keep->size() == batch.size()) return;
  Batch rest;
  std::vector<std::string> rest_messages;
  for (const size_t i : *keep) {
    rest.push_back(std::move(batch[i]));
    rest_messages.push_back(std::move(messages[i]));
  }
  {
    std::lock_guard lock(mu_);
    stats_.sent += batch.size() - rest.size();
  }
  batch = std::move(rest);
  messages = std::move(rest_messages);
}

void Client::Impl::fail(const ClientError& error, Batch& batch, uint64_t ClientStats::*counter) {
  if (counter != nullptr) {
    std::lock_guard lock(mu_);
    stats_.*counter += batch.size();
  }
  std::vector<AnalyticsEvent> events;
  events.reserve(batch.size());
  for (auto& q : batch) events.push_back(std::move(q.event));
  try {
    if (opts_.on_error) {
      opts_.on_error(error, events);
    } else {
      log(LogLevel::warn, "reqbus client: " + std::to_string(events.size()) +
                              " events not delivered (" + to_string(error.kind) + "): " + error.message);
    }
  } catch (const std::exception& e) {  // errors never escape the worker thread
    log(LogLevel::error, std::string("reqbus client: on_error threw: ") + e.what());
  } catch (...) {
    log(LogLevel::error, "reqbus client: on_error threw");
  }
}

uint64_t Client::Impl::oldest_unfinished_locked() const {
  uint64_t oldest = next_seq_;
  if (inflight_first_ != 0) oldest = std::min(oldest, inflight_first_);
  if (reporting_first_ != 0) oldest = std::min(oldest, reporting_first_);
  if (!evicted_.empty()) oldest = std::min(oldest, evicted_.front().seq);
  if (!queue_.empty()) oldest = std::min(oldest, queue_.front().seq);
  return oldest;
}

uint64_t Client::Impl::unfinished_through_locked(uint64_t seq) const {
  uint64_t n = 0;
  // The batch in flight counts whole: an upper bound when it also holds events after seq.
  if (inflight_first_ != 0 && inflight_first_ <= seq) n += inflight_size_;
  if (reporting_first_ != 0 && reporting_first_ <= seq) n += reporting_size_;  // the same bound
  for (const auto& q : evicted_) n += q.seq <= seq;
  for (const auto& q : queue_) {
    if (q.seq > seq) break;
    ++n;
  }
  return n;
}

ClientReport Client::Impl::flush(milliseconds timeout) {
  std::unique_lock lock(mu_);
  const uint64_t target = next_seq_ - 1;
  if (oldest_unfinished_locked() <= target) {
    flush_through_ = std::max(flush_through_, target);
    work_cv_.notify_all();
    clock_->wait_until(lock, done_cv_, deadline_after(timeout), [&] {
      return worker_done_ || oldest_unfinished_locked() > target;
    });
  }
  ClientReport report;
  report.pending = unfinished_through_locked(target);
  report.complete = report.pending == 0;
  report.stats = stats_locked();
  return report;
}

ClientReport Client::Impl::close(milliseconds timeout) {
  std::unique_lock lock(mu_);
  closing_ = true;
  work_cv_.notify_all();
  const uint64_t abandoned_before = stats_.abandoned;
  const bool drained = clock_->wait_until(lock, done_cv_, deadline_after(timeout), [&] { return worker_done_; });
  if (!drained) {
    abort_ = true;  // stops an in-flight transfer and any backoff; the rest goes to on_error
    work_cv_.notify_all();
  }
  lock.unlock();
  {
    std::lock_guard join(join_mu_);
    if (worker_.joinable()) worker_.join();
  }
  lock.lock();
  ClientReport report;
  report.pending = stats_.abandoned - abandoned_before;
  report.complete = drained && stats_.abandoned == abandoned_before;
  report.stats = stats_locked();
  return report;
}

ClientStats Client::Impl::stats() const {
  std::lock_guard lock(mu_);
  return stats_locked();
}

ClientStats Client::Impl::stats_locked() const {
  ClientStats s = stats_;
  s.queued = queue_.size() + evicted_.size() + reporting_size_ + inflight_size_;
  return s;
}

}  // namespace reqbus
