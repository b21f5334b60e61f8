#pragma once
// Batcher::Impl: the state shared by enqueue() (batcher.cpp), the flush workers, drain, flush
// and close (batcher_flush.cpp), and the timer and replayer threads (batcher_background.cpp).
//
// Locks, in the order they may nest: Buffer::mu -> work_mu_; spool_order_mu_ -> work_mu_,
// room_mu_, retry_mu_, replay_mu_ (each taken alone, and released, inside it); stop_mu_ ->
// work_mu_. Otherwise
// room_mu_, retry_mu_, timer_mu_, replay_mu_ and rng_mu_ never nest with another lock.
// An event is counted in queued_events_/queued_bytes_ from enqueue until its batch is resolved
// (delivered, spooled or dropped); a Batch is resolved exactly once (Batch::try_resolve), by a
// worker, by drain(), or by close() at its deadline.
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "analytics/batcher_timing.hpp"
#include "analytics/spool.hpp"
#include "reqbus/batcher.hpp"
#include "reqbus/log.hpp"

namespace reqbus {

namespace detail {

enum class DropReason : uint8_t {
  newest, oldest, timeout, closed, retries_exhausted, permanent, close_deadline, spool_full,
  spool_error, dead_letter_error,
};
inline constexpr size_t kDropReasons = 10;

struct Batch {
  uint64_t id = 0;
  std::vector<Message> events;  // read-only once handed to a worker
  size_t bytes = 0;
  std::atomic<bool> resolved{false};
  // close() resolved it at its deadline (spooled or dropped) while it may still be written:
  // set under spool_order_mu_, read under it (a success that comes after is counted apart).
  bool resolved_at_close_deadline = false;
  bool try_resolve() { return !resolved.exchange(true); }
};
using BatchPtr = std::shared_ptr<Batch>;

struct Buffer {
  mutable std::mutex mu;
  std::vector<Message> events;  // guarded by mu
  size_t bytes = 0;             // guarded by mu
};

struct BatcherCounters {
  std::atomic<uint64_t> enqueued{0}, inactive{0}, delivered{0}, batches_delivered{0},
      retries{0}, failed_attempts{0}, spooled{0}, spooled_batches{0}, spooled_while_down{0},
      replayed{0}, replay_failures{0}, dead_lettered{0}, breaker_opened{0}, batches_coalesced{0},
      delivered_after_deadline{0}, stalled_writes{0};
  std::array<std::atomic<uint64_t>, kDropReasons> drops{};
  std::atomic<uint64_t> latency_last_us{0}, latency_total_us{0}, latency_count{0},
      latency_max_us{0};
};

// Approximate encoded size of a message, for the byte bounds (cheaper than encoding it).
size_t approx_bytes(const Message& message) noexcept;

}  // namespace detail

class Batcher::Impl {
 public:
  Impl(std::shared_ptr<Sink> sink, BatcherOptions options);
  ~Impl();

  EnqueueStatus enqueue(Message&& message);
  std::vector<Message> drain();
  BatcherReport flush(std::chrono::milliseconds deadline);
  BatcherReport close(std::chrono::milliseconds deadline);
  void hurry();
  BatcherStats stats() const;
  std::vector<BufferInfo> buffers() const;
  const BatcherOptions& options() const noexcept { return options_; }
  std::string dead_letter_path() const { return spool_ ? spool_->dead_letter_path() : ""; }

 private:
  using time_point = Clock::time_point;

  // --- bounds and overflow (batcher.cpp) ---
  bool try_reserve(size_t bytes);
  bool has_room(size_t bytes) const;
  void release(size_t events, size_t bytes);
  bool evict_oldest();
  EnqueueStatus drop(detail::DropReason reason, EnqueueStatus status);

  // --- batches and delivery (batcher_flush.cpp) ---
  detail::BatchPtr take_batch_locked(detail::Buffer& buffer);  // buffer.mu held
  void submit(detail::BatchPtr batch);                         // to the workers
  void submit_all_buffers();
  void coalesce_locked(detail::BatchPtr& batch);  // work_mu_ held
  void worker_loop();
  void process(const detail::BatchPtr& batch);  // attempts, retries, spool
  WriteResult call_sink(const std::vector<Message>& events);
  void resolve_undeliverable(const detail::BatchPtr& batch, detail::DropReason reason,
                             const std::string& why);
  void spool_or_drop(const std::vector<Message>& events, detail::DropReason reason,
                     const std::string& why);
  bool spool_while_down(const detail::BatchPtr& batch);  // true: the batch is resolved
  void spool_behind_stalled_write(time_point now);      // timer: see BatcherOptions::stall_timeout
  void hand_probe_to_spool_locked(uint64_t newer_id);    // spool_order_mu_ held
  // Opens the breaker (if closed) after `batch_id` failed; true if that batch is the probe,
  // the one batch that keeps retrying while the breaker is open.
  bool open_breaker(uint64_t batch_id, const std::string& why);
  void end_probe(uint64_t batch_id);
  void close_breaker(const char* why);
  void finish(const detail::BatchPtr& batch);
  void spool_leftovers();
  void record_latency(time_point start, time_point end);
  BatcherReport snapshot_report() const;

  // --- background threads (batcher_background.cpp) ---
  void timer_loop();
  void replay_loop(time_point first);
  enum class ReplayOutcome { idle, failed, unreadable, stopped };
  ReplayOutcome replay_pending();
  bool read_next_segment(ReplayOutcome& outcome);  // false: stop replaying with `outcome`
  void dead_letter(size_t batch_events, const std::string& why);
  void kick_replayer();
  // At close(); abort_replay (or a hurry()): a replay write in progress is abandoned
  // (Sink::abort_writes).
  void stop_background(bool abort_replay);
  // Waits until `finished`, abandoning the sink's writes in progress (Sink::abort_writes) every
  // 50 ms while `abandon` says so. Both are asked again at every wake (at least every 50 ms, at
  // once after hurry() or a worker's exit), so a hurry() that comes meanwhile takes effect.
  void abort_sink_writes_until(const std::function<bool()>& finished, const std::function<bool()>& abandon);

  const BatcherOptions options_;
  const std::shared_ptr<Sink> sink_;
  const std::shared_ptr<Clock> clock_;
  std::unique_ptr<detail::Spool> spool_;  // null without spool_dir
  detail::BatcherCounters counters_;
  // Separate limits, so that a burst of "spooled" warnings never hides a DROPPED error.
  RateLimiter spool_log_{10, std::chrono::seconds(10)};
  RateLimiter loss_log_{10, std::chrono::seconds(10)};
  // The circuit breaker: open (true) from the first failed write until a write succeeds. While
  // it is open and a spool is configured, new batches go straight to the spool (durable at
  // once) instead of waiting in memory behind the failing ones; the batch that failed first
  // keeps retrying (the probe), the replayer keeps trying the spool, and either one's success
  // closes it. Without a spool, batches retry as usual.
  std::atomic<bool> sink_down_{false};
  std::atomic<uint64_t> probe_batch_{0};  // id of the batch retrying as the probe; 0 = none
  // The spool keeps batch order: workers spool under this lock, and a batch spooled while the
  // breaker is open first hands the older probe to the spool (the replayer then probes, at the
  // retry pace for fast_probes_ more attempts, then at replay_interval).
  std::mutex spool_order_mu_;
  std::atomic<int> fast_probes_{0};

  std::vector<detail::Buffer> buffers_;
  std::atomic<uint64_t> round_robin_{0};
  std::atomic<uint64_t> next_batch_id_{1};
  std::atomic<bool> closed_{false};

  // Bounds: events and bytes not yet resolved.
  std::atomic<uint64_t> queued_events_{0};
  std::atomic<uint64_t> queued_bytes_{0};
  std::mutex room_mu_;  // blocked enqueuers wait here
  std::condition_variable room_cv_;
  std::atomic<uint32_t> room_waiters_{0};

  // Work handed to the flush workers.
  mutable std::mutex work_mu_;
  std::condition_variable work_cv_;  // workers: a batch is waiting, or stop
  std::condition_variable done_cv_;  // flush/close: a batch was resolved
  std::deque<detail::BatchPtr> pending_;              // guarded by work_mu_
  std::map<uint64_t, detail::BatchPtr> inflight_;     // guarded by work_mu_
  // Batches inside a sink write now, and since when (finish() leaves them here: a spooled
  // batch's write may still run); what spool_behind_stalled_write() looks at. Guarded by work_mu_.
  struct Writing {
    detail::BatchPtr batch;
    time_point since;
  };
  std::map<uint64_t, Writing> writing_;
  std::set<uint64_t> unresolved_;                     // guarded by work_mu_
  bool stop_workers_ = false;                         // guarded by work_mu_
  std::atomic<bool> hurry_{false};                    // hurry(): set under work_mu_
  std::vector<std::thread> workers_;
  std::atomic<size_t> workers_finished_{0};  // workers whose loop has returned; set under stop_mu_
  // abort_sink_writes_until() waits on these; a worker's exit and hurry() wake it.
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;

  // Retry waits; close() sets abandon_ at its deadline to end them.
  std::mutex retry_mu_;
  std::condition_variable retry_cv_;
  std::atomic<bool> abandon_{false};
  std::mutex rng_mu_;
  detail::SplitMix64 retry_rng_;  // guarded by rng_mu_

  // Timer thread: interval flushes and telemetry.
  std::mutex timer_mu_;
  std::condition_variable timer_cv_;
  bool stop_timer_ = false;                // guarded by timer_mu_
  detail::SplitMix64 jitter_rng_;          // timer thread (and the constructor)
  std::vector<time_point> next_flush_;     // timer thread (and the constructor)
  time_point next_telemetry_{};            // timer thread (and the constructor)
  std::thread timer_;

  // Replayer thread.
  std::mutex replay_mu_;
  std::condition_variable replay_cv_;
  bool stop_replay_ = false;       // guarded by replay_mu_
  bool replay_kick_ = false;       // guarded by replay_mu_
  // A replay failed and the replayer waits for its backoff: a live write's success does not
  // cut the wait short (a batch failing at replay would otherwise be retried after every one).
  std::atomic<bool> replay_backoff_{false};
  std::atomic<bool> replay_stopping_{false};
  std::optional<detail::SpoolSegment> replay_segment_;  // replayer thread
  size_t replay_index_ = 0;                             // replayer thread
  std::thread replayer_;
  std::atomic<bool> replay_writing_{false};  // the replayer is inside a sink write

  std::mutex report_mu_;
  BatcherReport report_base_;  // guarded by report_mu_: totals at the last flush()

  std::mutex close_mu_;
  std::optional<BatcherReport> close_report_;  // guarded by close_mu_
};

}  // namespace reqbus
