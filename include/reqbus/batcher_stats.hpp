#pragma once
// Counters a Batcher exports (read by the metrics endpoint), and the report flush() and close()
// return. Totals since construction unless named *_depth or *_now.
#include <chrono>
#include <cstdint>

namespace reqbus {

// Events dropped, by reason. Every drop is also logged (rate-limited). Two kinds: refused by
// enqueue() (newest, timeout, closed: never counted in BatcherStats::enqueued), and dropped
// after enqueue() accepted them (every other reason).
struct BatcherDrops {
  uint64_t newest = 0;             // refused: bound reached, Overflow::drop_newest (or drop_oldest
                                   // with nothing evictable: every queued event in a write)
  uint64_t oldest = 0;             // evicted: bound reached, Overflow::drop_oldest (was accepted)
  uint64_t timeout = 0;            // refused: bound reached for block_timeout, Overflow::block
  uint64_t closed = 0;             // refused: enqueued after close()
  // The following happen only without a spool (or when the spool refuses):
  uint64_t retries_exhausted = 0;  // no spool: retry_max_attempts failed
  uint64_t permanent = 0;          // no spool: the sink said the batch can never succeed
  uint64_t close_deadline = 0;     // no spool: still undelivered at close()'s deadline
  uint64_t spool_full = 0;         // the spool reached spool_max_bytes
  uint64_t spool_error = 0;        // the spool could not be written (disk error)
  // At replay the sink rejected a spooled batch for good and the dead-letter file could not take
  // it either (see BatcherStats::dead_lettered).
  uint64_t dead_letter_error = 0;

  uint64_t total() const noexcept {
    return newest + oldest + timeout + closed + retries_exhausted + permanent + close_deadline +
           spool_full + spool_error + dead_letter_error;
  }
  // Refused by enqueue(): not in BatcherStats::enqueued.
  uint64_t refused() const noexcept { return newest + timeout + closed; }
  // Accepted by enqueue(), then dropped (dead_letter_error: out of the spool, at replay).
  uint64_t after_accept() const noexcept { return total() - refused(); }
};

struct BatcherStats {
  uint64_t enqueued = 0;          // accepted by enqueue()
  uint64_t inactive = 0;          // enqueue() calls ignored because active = false
  uint64_t delivered = 0;         // events the sink stored (live batches)
  // Counted as spooled or dropped.close_deadline at close()'s deadline, then stored after all:
  // the write was still running when close() gave up on it, and it succeeded. Not in
  // `delivered` (an event is counted once in the ledger); a spooled copy is stored again at
  // replay, idempotently. Nonzero means close()'s report overstated the loss.
  uint64_t delivered_after_deadline = 0;
  uint64_t batches_delivered = 0;  // successful sink writes (a coalesced write counts once)
  uint64_t batches_coalesced = 0;  // batches merged into an older one's write (coalesce_max_events)
  uint64_t retries = 0;           // batch attempts after a failed one
  uint64_t failed_attempts = 0;   // writes that returned retry/permanent or threw
  uint64_t spooled = 0;           // events written to the spool
  uint64_t spooled_batches = 0;
  uint64_t spooled_while_down = 0;  // of spooled: sent straight to the spool, breaker open
  uint64_t breaker_opened = 0;    // times a failed (or stalled) write opened the circuit breaker
  uint64_t stalled_writes = 0;    // of those, writes that gave no answer within stall_timeout
  uint64_t replayed = 0;          // spooled events later stored by the sink
  // Replays that failed: a sink write (the batch stays spooled, or is dead-lettered when the
  // failure is permanent), or a segment that could not be read (it stays, retried later).
  uint64_t replay_failures = 0;
  // Spooled events the sink rejected permanently at replay, moved to the spool directory's
  // dead-letter file (not lost: kept there for an operator; see analytics/spool.hpp).
  uint64_t dead_lettered = 0;
  // The ledger, in events (refusals are outside it: they were never accepted):
  //   enqueued = delivered + spooled + dropped.after_accept() - dropped.dead_letter_error
  //              + queue_depth
  //   spooled + what earlier processes left in the spool
  //            = replayed + dead_lettered + dropped.dead_letter_error + events still spooled
  //              (+ events in records counted in spool_corrupt_records)
  // So when the spool started empty and has been replayed in full:
  //   enqueued = delivered + replayed + dead_lettered + dropped.after_accept() + queue_depth.
  uint64_t spool_corrupt_records = 0;  // torn or corrupt spool records skipped (counted loss)
  BatcherDrops dropped;

  uint64_t queue_depth = 0;       // events in buffers, waiting batches and in-flight batches
  uint64_t queue_bytes = 0;
  uint64_t waiting_batches = 0;   // handed off, not yet picked by a worker
  uint64_t inflight_batches = 0;  // being written or waiting for a retry
  uint64_t spool_segments = 0;    // segment files now
  uint64_t spool_bytes = 0;
  // Segments written by a newer reqbus (unknown version): kept on disk, not replayed.
  uint64_t spool_skipped_segments = 0;
  uint64_t dead_letter_bytes = 0;  // size of the dead-letter file
  // The circuit breaker is open now: a write failed and none has succeeded since. With a
  // spool, new batches then go straight to it (see BatcherOptions::spool_dir).
  bool sink_down = false;

  // Duration of successful sink writes, on the Batcher's clock.
  std::chrono::microseconds last_flush_latency{0};
  std::chrono::microseconds avg_flush_latency{0};
  std::chrono::microseconds max_flush_latency{0};
};

// What flush() or close() did. flush(): counts since the previous flush() (or construction),
// so an outcome is reported even when a worker resolved it before flush() was called;
// close(): totals since construction.
struct BatcherReport {
  uint64_t delivered = 0;
  uint64_t retries = 0;
  uint64_t spooled = 0;
  uint64_t delivered_after_deadline = 0;  // see BatcherStats::delivered_after_deadline
  BatcherDrops dropped;
  bool deadline_reached = false;  // something was still undelivered at the deadline
  std::chrono::milliseconds took{0};
};

}  // namespace reqbus
