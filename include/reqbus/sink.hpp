#pragma once
// Sink: where a batch of events is written (SQLite, PostgreSQL, HTTP, NDJSON file, ...).
// A sink only writes; batching, retries, backoff and spooling belong to the Batcher.
// Writes must be idempotent: an event seen twice (same request_id, or same message_id for
// identify/group/track) is stored once.
// Thread-safety: write() may be called from several flush workers at once; implementations
// serialise internally where their connection needs it.
#include <chrono>
#include <string>
#include <vector>

#include "reqbus/message.hpp"

namespace reqbus {

struct WriteResult {
  enum class Kind : uint8_t {
    ok,         // stored (or already there)
    retry,      // transient failure: try again, not before retry_after
    permanent,  // will never succeed (bad credentials, schema mismatch...): spool, do not retry
  };
  Kind kind = Kind::ok;
  std::chrono::milliseconds retry_after{0};  // a floor for the next attempt (HTTP Retry-After)
  std::string reason;                        // why, for logs and reports

  static WriteResult success() { return {}; }
  static WriteResult retry_later(std::string why, std::chrono::milliseconds after = {}) {
    return {Kind::retry, after, std::move(why)};
  }
  static WriteResult failure(std::string why) { return {Kind::permanent, {}, std::move(why)}; }
  bool ok() const noexcept { return kind == Kind::ok; }
};

class Sink {
 public:
  virtual ~Sink() = default;
  // Writes the whole batch or nothing, within `timeout`.
  virtual WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) = 0;
  // write(), also telling which events were new to the store: when it returns ok, is_new[i] says
  // whether batch[i] was stored now (false: it was there already and is kept once — a resend, a
  // replay of a write that had committed, a log ingested twice). For counting what is stored.
  // The default writes and calls every event new: for sinks that cannot tell (HTTP, files).
  virtual WriteResult write_telling_new(const std::vector<Message>& batch, std::chrono::milliseconds timeout,
                                        std::vector<bool>& is_new) {
    WriteResult r = write(batch, timeout);
    is_new.assign(batch.size(), true);
    return r;
  }
  // Makes the writes in progress on other threads — every caller's, on this sink object — give
  // up soon: they return retry_later, and the store is left as after any failed write (a batch
  // is stored whole or not at all; one whose statement the server was already running may
  // still be stored, as after a timeout). Writes that start after the call run as usual.
  // Batcher::close (with a spool) calls it for writes whose batches are in the spool: past its
  // deadline, a stalled write, a replay to a store that is down — so a store that hangs cannot
  // hold a shutdown for a write's whole timeout. Thread-safe; never blocks. The default does
  // nothing: that sink's writes end at their own timeout.
  virtual void abort_writes() noexcept {}
  // A short name for logs and metrics ("sqlite:/var/lib/reqbus.db").
  virtual std::string name() const = 0;
};

}  // namespace reqbus
