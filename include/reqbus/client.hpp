#pragma once
// Client: the Letter ingestion client in C++. identify / group / track calls are queued in memory
// and POSTed in batches, as JSON in the shape of the Segment HTTP Tracking API, to
// `<base_url>/v1/batch` — a reqbus node, or any Segment-compatible collector.
//
//   reqbus::Client client({.api_key = "wk_123", .base_url = "http://127.0.0.1:7480"});
//   auto r = client.track("user-1", "Signed Up", R"({"plan":"pro"})");
//   if (!r.ok()) ...                              // invalid input, queue full, or closed
//
// Long-running server (default): a background thread sends a batch every flush_interval or as
// soon as flush_at events are queued. Serverless: flush_at = 1 and call flush() before each
// invocation returns. Either way the client closes itself at process exit (see close_at_exit).
//
// Delivery: a batch is retried with exponential backoff on 5xx, 408, 429 (Retry-After honoured as
// a floor), timeouts and network errors, up to max_retries; other 4xx are not retried. A batch
// that is not delivered is handed to on_error with the error — never dropped silently — and
// counted in stats().failed. Every event carries a messageId (a UUIDv7 unless given) so that a
// receiver can deduplicate a batch that was delivered but whose response was lost.
//
// Thread-safety: every method is safe from any thread. on_error runs on the client's own thread,
// never concurrently with itself; it must not call flush() or close() on the same client.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "reqbus/analytics_event.hpp"
#include "reqbus/clock.hpp"
#include "reqbus/overflow.hpp"

namespace reqbus {

struct ClientError {
  enum class Kind : uint8_t {
    http_status,  // the collector answered with a non-2xx status (see status)
    timeout,      // open_timeout or read_timeout expired
    network,      // connection refused, dropped or reset
    dropped,      // evicted from a full queue (Overflow::drop_oldest)
    abandoned,    // close() reached its deadline before the batch could be delivered
  };
  Kind kind = Kind::network;
  int status = 0;         // the HTTP status for http_status
  uint32_t attempts = 0;  // HTTP attempts made for this batch
  std::string message;    // one line: what happened, with a snippet of the response body
};

const char* to_string(ClientError::Kind kind) noexcept;

// Receives each batch that was not delivered, with why.
using ClientErrorHandler =
    std::function<void(const ClientError& error, const std::vector<AnalyticsEvent>& batch)>;

struct ClientOptions {
  std::string api_key{};  // required: the write key, sent as the basic-auth user name (no password)
  // The collector. Default: a reqbus node on this machine (its default port). A trailing '/' is
  // removed; batches go to base_url + "/v1/batch".
  std::string base_url = "http://127.0.0.1:7480";
  size_t flush_at = 50;                            // send as soon as this many events are queued (>= 1)
  std::chrono::milliseconds flush_interval{100};   // an event waits at most this long before a send
  uint32_t max_retries = 3;                        // retries after the first attempt (4 attempts)
  std::chrono::milliseconds open_timeout{10'000};  // TCP connect
  // Once the batch is sent: the longest wait for the response (and between its bytes). One
  // attempt is further bounded by open_timeout + 2 × read_timeout in all.
  std::chrono::milliseconds read_timeout{10'000};
  ClientErrorHandler on_error{};                   // default: one warn log line per failed batch

  // Events waiting to be sent (the batch being sent is apart: at most flush_at more). With
  // drop_oldest, up to max_queue more evicted events, kept without their JSON, wait for on_error
  // (and as many may be in an on_error call); beyond that an evicted event is not handed to
  // on_error, only counted (ClientStats::dropped_unreported).
  size_t max_queue = 10'000;
  Overflow overflow = Overflow::drop_newest;  // when max_queue is reached; every drop is counted
  std::chrono::milliseconds enqueue_timeout{10};  // Overflow::block: longest wait for room
  size_t max_batch_bytes = 500 * 1024;  // a batch body stays under this (Segment's 500 KB limit)
  std::chrono::milliseconds retry_backoff{100};   // wait before retry n: retry_backoff * 2^(n-1)
  std::chrono::milliseconds max_backoff{10'000};  // cap of that wait (a Retry-After may exceed it)
  std::chrono::milliseconds max_retry_after{60'000};  // cap of an honoured Retry-After
  std::chrono::milliseconds close_timeout{10'000};  // deadline of the destructor's / exit's close
  bool close_at_exit = true;  // close (with close_timeout) from std::atexit if still open
  std::shared_ptr<Clock> clock{};  // nullptr = system_clock(); drives intervals, backoff, deadlines
};

struct ClientStats {
  uint64_t enqueued = 0;      // events accepted
  uint64_t sent = 0;          // events delivered (2xx)
  uint64_t batches_sent = 0;  // batches delivered
  uint64_t retried = 0;       // HTTP attempts that were retried
  uint64_t failed = 0;        // events handed to on_error after a failed delivery
  uint64_t dropped = 0;       // events lost to a full queue (newest refused, oldest evicted, block timeout)
  // Of those evicted (drop_oldest), the ones never handed to on_error because max_queue earlier
  // victims were still waiting for it (a stuck sender); the next `dropped` on_error call says how
  // many since the one before.
  uint64_t dropped_unreported = 0;
  uint64_t abandoned = 0;     // events still undelivered when close() reached its deadline
  uint64_t rejected = 0;      // calls refused as invalid (bad JSON, missing user id...)
  uint64_t queued = 0;        // events waiting, in flight, or evicted and not yet through on_error
};

// What flush() / close() achieved.
struct ClientReport {
  bool complete = false;  // every event accepted before the call is finished (sent or failed)
  uint64_t pending = 0;   // events not finished when the call returned
  ClientStats stats;      // counters at return
};

enum class EnqueueStatus : uint8_t {
  accepted,
  invalid,  // the event was refused; error says why (naming the field)
  dropped,  // the queue was full (drop_newest, or block timed out); counted in stats().dropped
  closed,   // close() was called
};

struct [[nodiscard]] EnqueueResult {
  EnqueueStatus status = EnqueueStatus::accepted;
  std::string error;       // why, when not accepted
  std::string message_id;  // the event's messageId when accepted
  bool ok() const noexcept { return status == EnqueueStatus::accepted; }
};

// Optional per-call fields; filled at enqueue when absent.
struct CallOptions {
  int64_t timestamp_us = 0;  // when it happened, µs since the epoch; 0 = the clock's now
  std::string message_id{};  // idempotency key; "" = a new UUIDv7
};

class Client {
 public:
  // Throws reqbus::Error(invalid_argument) naming the field for bad options (empty api_key, a
  // base_url that is not http(s), flush_at 0, ...). Starts the background thread.
  explicit Client(ClientOptions options);
  ~Client();  // close(options.close_timeout)
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Queue an identify call (creates or updates a contact). traits: "" or a JSON object.
  [[nodiscard]] EnqueueResult identify(std::string user_id, std::string email = {},
                                       std::string traits_json = {}, std::string timezone = {},
                                       CallOptions call = {});
  // Queue a group call (associates a contact with an account).
  [[nodiscard]] EnqueueResult group(std::string user_id, std::string account_id,
                                    std::string name = {}, std::string traits_json = {},
                                    CallOptions call = {});
  // Queue a track call (records an event). properties: "" or a JSON object.
  [[nodiscard]] EnqueueResult track(std::string user_id, std::string event,
                                    std::string properties_json = {}, CallOptions call = {});
  // Any of the three, already built. message_id / timestamp are filled when empty / 0.
  [[nodiscard]] EnqueueResult enqueue(AnalyticsEvent event);

  // Sends everything queued before the call and blocks until each of those events is sent or
  // handed to on_error, or `timeout` passes. With the default timeout it still ends: retries,
  // backoff and timeouts are all bounded.
  ClientReport flush(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());
  // Stops accepting, flushes, stops the background thread and blocks until drained or until
  // `timeout`; what is still undelivered then goes to on_error (abandoned). Idempotent.
  ClientReport close(std::chrono::milliseconds timeout);
  ClientReport close() { return close(close_timeout_); }

  ClientStats stats() const;

  class Impl;

 private:
  std::chrono::milliseconds close_timeout_;
  std::shared_ptr<Impl> impl_;
};

}  // namespace reqbus
