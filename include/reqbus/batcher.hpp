#pragma once
// Batcher: a pool of event buffers that writes to a Sink in batches, in the background — the
// C++ form of Mxpanel.Batcher, with a spool so that nothing accepted is lost.
//
// enqueue() appends to one of pool_size buffers, chosen round-robin. A buffer flushes every
// flush_interval + random(0..flush_jitter), and as soon as it holds flush_at events or
// max_batch_bytes. Flush workers write each batch to the sink, retrying a failed one
// retry_max_attempts times with backoff; a batch that still fails, that the sink rejects
// permanently, or that is undelivered at close()'s deadline goes to the on-disk spool and is
// replayed, in order, when the sink recovers or when a Batcher starts on the same spool_dir.
//
// Thread-safety: every method may be called from any number of threads at once. enqueue()
// only touches one buffer (its own mutex) and the shared bounds; it never waits for the sink or
// for a retrying batch — only, with Overflow::block, for room, up to block_timeout. The sink is
// called from flush workers, the replayer thread, and the caller of drain().
//
// Errors: the constructor throws Error (invalid_argument naming the field; storage when the
// spool directory is unusable or another Batcher, in any process, holds it). enqueue() never
// throws for back-pressure; it returns a status.
// Sink exceptions are caught and treated as retryable failures.
#include <chrono>
#include <memory>
#include <vector>

#include "reqbus/analytics_event.hpp"
#include "reqbus/batcher_options.hpp"
#include "reqbus/batcher_stats.hpp"
#include "reqbus/message.hpp"
#include "reqbus/request_log.hpp"
#include "reqbus/sink.hpp"

namespace reqbus {

enum class EnqueueStatus : uint8_t {
  ok,              // accepted (with drop_oldest, possibly after evicting older events)
  dropped_newest,  // a bound was reached and the policy is drop_newest
  timed_out,       // a bound stayed reached for block_timeout (block policy)
  closed,          // close() was called
  inactive,        // BatcherOptions::active is false: counted, not written
};
const char* to_string(EnqueueStatus status) noexcept;

class Batcher {
 public:
  // Starts the timer, the flush workers and (with a spool) the replayer, which at once
  // replays whatever a previous process left in spool_dir.
  Batcher(std::shared_ptr<Sink> sink, BatcherOptions options = {});
  ~Batcher();  // close(options.close_timeout)
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  [[nodiscard]] EnqueueStatus enqueue(Message message);
  [[nodiscard]] EnqueueStatus enqueue(RequestLog log);
  [[nodiscard]] EnqueueStatus enqueue(AnalyticsEvent event);

  // Synchronously drains every buffer (and every batch not yet picked by a worker) on the
  // calling thread, writing, retrying and spooling as a worker would, and returns the events it
  // processed (Mxpanel's drain_buffers). Retries wait on the clock, so with a failing sink this
  // takes up to the full backoff; use flush(deadline) for a bounded wait.
  std::vector<Message> drain();

  // Hands every buffer to the workers and waits until everything enqueued before the call is
  // delivered, spooled or dropped, or until `deadline` (the batches keep retrying after it).
  // The report counts what happened since the previous flush().
  BatcherReport flush(std::chrono::milliseconds deadline);

  // Stops accepting, flushes, and waits until `deadline` for delivery; whatever is still
  // undelivered then (waiting, retrying, or inside a sink write) is spooled (a write that later
  // succeeds too is harmless: sinks are idempotent). Then joins the threads; a sink write in
  // progress is awaited (it is bounded by import_timeout). Idempotent: later calls return the
  // first report.
  BatcherReport close(std::chrono::milliseconds deadline);
  // Makes close() — the one in progress on another thread, or the next — act as if its
  // deadline had come now: what is undelivered is spooled (dropped and counted as
  // close_deadline without a spool) and the sink writes in progress are abandoned, with or
  // without a spool. For an operator who asked for a graceful stop and will not wait for it
  // (a second Ctrl-C). Does nothing else before close() is called.
  void hurry();

  BatcherStats stats() const;
  std::vector<BufferInfo> buffers() const;  // every buffer's size now
  // Where events the sink rejected for good are kept (the spool's dead-letter file); "" without
  // a spool_dir.
  std::string dead_letter_path() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus
