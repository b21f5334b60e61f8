#pragma once
// Options for a Batcher (the C++ form of Mxpanel.Batcher's options, same defaults). Every field
// has its unit and default; the Batcher's constructor validates them once and throws
// Error{invalid_argument} naming the field.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "reqbus/clock.hpp"
#include "reqbus/overflow.hpp"

namespace reqbus {

// One buffer's size, as the telemetry callback and Batcher::buffers() report it.
struct BufferInfo {
  size_t index = 0;   // 0..pool_size-1
  size_t events = 0;  // events waiting in the buffer
  size_t bytes = 0;   // their approximate encoded size
};
using TelemetryCallback = std::function<void(const std::vector<BufferInfo>&)>;

struct BatcherOptions {
  // --- the pool of buffers ---
  // Buffers fed round-robin. Default: hardware threads (Mxpanel: System.schedulers_online()).
  size_t pool_size = std::max(1u, std::thread::hardware_concurrency());
  // A buffer flushes every flush_interval plus a random 0..flush_jitter, which spreads the
  // writes of many buffers apart. Defaults 5000 ms and 1000 ms.
  std::chrono::milliseconds flush_interval{5000};
  std::chrono::milliseconds flush_jitter{1000};
  // A buffer also flushes as soon as it holds flush_at events (default 100) or would pass
  // max_batch_bytes of approximate encoded size (default 1 MiB): a batch never exceeds either.
  size_t flush_at = 100;
  size_t max_batch_bytes = 1 << 20;

  // --- delivery ---
  // Threads that write batches to the sink and retry them. A retrying batch occupies one
  // worker; enqueue() never waits for a worker. Default 2.
  size_t flush_workers = 2;
  // Attempts per batch (the first write included) before it goes to the spool. Default 5.
  int retry_max_attempts = 5;
  // Wait before attempt n+1 = n * retry_base_backoff + random(1..retry_base_backoff), measured
  // from the start of attempt n; a sink's retry_after is a floor. Default 100 ms.
  std::chrono::milliseconds retry_base_backoff{100};
  // The timeout passed to Sink::write for each attempt. Default 30000 ms.
  std::chrono::milliseconds import_timeout{30000};
  // A write that has not returned after this long is taken as a failure for the circuit
  // breaker, with a spool: the sink counts as down (BatcherStats::sink_down), the stalled batch
  // and those waiting for a worker go to the spool, and new ones go straight there, as when a
  // write fails. The write itself keeps waiting for its answer (up to import_timeout); its
  // success closes the breaker. Without it a database that hangs (no error, no answer) held
  // every batch in memory for import_timeout, all lost to a crash meanwhile. Checked about once
  // a second. Default 5000 ms; 0 = off (only failed writes open the breaker).
  std::chrono::milliseconds stall_timeout{5000};

  // When a flush worker takes a batch and more are already waiting (the sink is behind), it
  // merges them, oldest first, into one write of at most coalesce_max_events events and
  // coalesce_max_bytes approximate bytes (the first batch is always taken whole). A database
  // stores one 5,000-row transaction far faster than fifty of 100 rows; an HTTP API with a
  // per-request limit wants it off. Idle or keeping up, batches are written as they are cut.
  // 0 = off: every batch is written as cut, as in the seeds. Default 0 (`reqbus serve` uses
  // 10000 for its database stores; see docs/CONFIG.md).
  size_t coalesce_max_events = 0;
  size_t coalesce_max_bytes = size_t{16} << 20;  // default 16 MiB

  // --- bounds: events in buffers + waiting batches + batches being written or retried ---
  size_t max_queued_events = 1 << 20;        // default 1 Mi events; >= 1
  size_t max_queued_bytes = size_t{256} << 20;  // default 256 MiB; >= max_batch_bytes
  Overflow overflow = Overflow::block;       // what enqueue() does when a bound is reached
  std::chrono::milliseconds block_timeout{100};  // longest a block-policy enqueue waits

  // --- the spool: where undeliverable batches wait (see analytics/spool.hpp) ---
  // Directory of the on-disk spool. Empty = no spool: a batch that exhausts its retries, gets
  // a permanent error, or is left at close()'s deadline is then DROPPED — counted under its
  // reason and logged as an error. Default empty. One Batcher per directory: it is locked
  // (flock on <dir>/LOCK) while the Batcher lives, and a second one on it, in any process,
  // throws Error{storage} naming the directory and the holder's pid.
  // With a spool, a failed write also opens a circuit breaker: the failing batch keeps retrying
  // (the probe) and every other batch goes straight to the spool — durable at once instead of
  // waiting in memory, where a crash would lose it — until a write or a replay succeeds
  // (BatcherStats::sink_down, spooled_while_down). The first batch spooled that way takes the
  // older probe into the spool ahead of itself, so replay keeps batch order; the replayer then
  // probes, at the probe's retry pace for retry_max_attempts attempts, then as below.
  std::string spool_dir;
  size_t spool_segment_bytes = 16 << 20;        // rotate segment files at 16 MiB
  size_t spool_max_bytes = size_t{1} << 30;     // past 1 GiB, spooling is a counted drop
  bool spool_sync = true;                       // fdatasync each spooled batch
  // The replayer retries the oldest spooled batch after any successful write, and otherwise
  // every replay_interval (default 5000 ms), doubling after each failure up to
  // replay_max_backoff (default 60000 ms); a successful write does not cut that backoff short.
  // A new Batcher replays at once. A spooled batch is deleted only once the sink stored it: one
  // the sink refuses for now stays (logged, counted in replay_failures) and holds back the
  // batches behind it, which keeps replay in order; one it rejects permanently moves to the
  // spool's dead-letter file (BatcherStats::dead_lettered) and replay goes on. A segment that
  // cannot be read stays and is retried every replay_interval; one written by a newer reqbus
  // is kept and skipped.
  std::chrono::milliseconds replay_interval{5000};
  std::chrono::milliseconds replay_max_backoff{60000};

  // --- switches and observability ---
  // false: enqueue() is a counted no-op (EnqueueStatus::inactive) and nothing is written, e.g.
  // in a test environment. Default true.
  bool active = true;
  // Logs every flush (events, attempt, outcome, latency) at LogLevel::debug. Default false.
  bool debug = false;
  // Called with every buffer's size every telemetry_buffers_info_interval (default 30000 ms),
  // on the Batcher's timer thread; keep it short. Empty = no telemetry.
  TelemetryCallback telemetry;
  std::chrono::milliseconds telemetry_buffers_info_interval{30000};

  // --- time and randomness ---
  std::shared_ptr<Clock> clock = system_clock();  // intervals, jitter, backoff, deadlines
  // Seeds the jitter and backoff generators (same seed, same sequence). 0 = random.
  uint64_t seed = 0;
  // The deadline the destructor gives close(). Default 5000 ms.
  std::chrono::milliseconds close_timeout{5000};
};

}  // namespace reqbus
