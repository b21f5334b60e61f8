#pragma once
// Client::Impl: the bounded queue, the background sender thread and the retry loop behind
// reqbus::Client (include/reqbus/client.hpp). Options arrive validated.
//
// Ordering: events get increasing sequence numbers at enqueue; the one worker thread takes
// batches from the front of the queue and finishes them in order, so "everything up to seq N is
// finished" is simply "the oldest unfinished event is after N" — which is what flush() waits for.
// Flush and close travel to the worker as state (flush_through_, closing_) it acts on.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "analytics/http_transport.hpp"
#include "reqbus/client.hpp"

namespace reqbus {

class Client::Impl {
 public:
  explicit Impl(ClientOptions options);
  ~Impl();  // aborts and joins the worker if close() was never called

  EnqueueResult enqueue(AnalyticsEvent event);
  ClientReport flush(std::chrono::milliseconds timeout);
  ClientReport close(std::chrono::milliseconds timeout);
  ClientStats stats() const;

 private:
  struct Queued {
    uint64_t seq = 0;
    Clock::time_point enqueued_at;
    AnalyticsEvent event;
    std::string json;  // the encoded Segment message, made once at enqueue
  };
  using Batch = std::vector<Queued>;

  void run();
  bool ready_locked(Clock::time_point now) const;  // a batch should go now
  Batch take_batch_locked();
  void deliver(Batch& batch);
  void narrow_to_refused(const http::PostResult& result, Batch& batch, std::vector<std::string>& messages);
  void fail(const ClientError& error, Batch& batch, uint64_t ClientStats::*counter);
  uint64_t oldest_unfinished_locked() const;
  uint64_t unfinished_through_locked(uint64_t seq) const;
  ClientStats stats_locked() const;
  Clock::time_point deadline_after(std::chrono::milliseconds timeout) const;

  const ClientOptions opts_;
  const std::shared_ptr<Clock> clock_;
  const std::string url_;
  const std::string user_agent_;
  http::HttpTransport transport_{1};  // one sender thread: one kept-alive connection

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // to the worker: events, flush, close, abort
  std::condition_variable done_cv_;  // to flush/close/blocked enqueue: progress, room
  std::deque<Queued> queue_;         // guarded by mu_
  Batch evicted_;                    // guarded by mu_; drop_oldest victims the worker reports
  uint64_t unreported_since_ = 0;    // guarded by mu_; victims not kept since the last report
  uint64_t reporting_first_ = 0;     // guarded by mu_; first seq of victims in on_error, 0 = none
  size_t reporting_size_ = 0;        // guarded by mu_
  size_t queued_bytes_ = 0;          // guarded by mu_; sum of queue_[i].json sizes
  uint64_t next_seq_ = 1;            // guarded by mu_
  uint64_t inflight_first_ = 0;      // guarded by mu_; first seq of the batch being sent, 0 = none
  size_t inflight_size_ = 0;         // guarded by mu_
  uint64_t flush_through_ = 0;       // guarded by mu_; send promptly everything up to this seq
  bool closing_ = false;             // guarded by mu_
  bool worker_done_ = false;         // guarded by mu_
  ClientStats stats_;                // guarded by mu_ (queued is computed)
  std::atomic<bool> abort_{false};   // close() deadline passed: stop sending, abandon the rest

  std::mutex join_mu_;  // serialises joining the worker between concurrent close() calls
  std::thread worker_;
};

}  // namespace reqbus
