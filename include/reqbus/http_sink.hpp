#pragma once
// HttpSink: writes a batch by POSTing it as JSON with libcurl.
//   RequestLogs          -> POST url        a JSON array of objects with the schema's field names
//                                           (the body `POST /v1/requests` of a reqbus node takes)
//   identify/group/track -> POST batch_url  a Segment /v1/batch body {"batch":[...],"sentAt":...}
// A batch holding both kinds is two POSTs (requests first). When the second fails the whole
// write reports the failure and is retried — so the receiver must be idempotent, and it can be:
// every RequestLog carries its request_id and every event its messageId, by which the receiver
// deduplicates (a reqbus node stores each once).
//
// A reqbus node whose bus refused some items (queue full, or closing) stores the others and
// names the refused ones in its reply ("refused": 202 from /v1/requests, 503 from /v1/batch).
// The sink then sends only those again, after a short pause (100 ms, doubling, or the reply's
// Retry-After), until the node has taken them all or the write's timeout comes: then the write is
// retry_later, and the Batcher sends the whole batch again later (the node keeps one copy of
// each; its live views may count a resent item twice). Before, a 202 naming refused items was
// taken as "all stored", and those items were lost without a trace. A reply that names
// "refused" but cannot be read as such a list (cut at 64 KiB — a list of ~10,000 indices — or
// malformed) could have refused any item: all of them are sent again, the same way.
//
// How responses map to WriteResult:
//   2xx, nothing refused                            -> ok
//   429 or 503 (Retry-After honoured, capped)       -> retry_later(reason, retry_after)
//   408, other 5xx, timeout, refused or dropped connection -> retry_later(reason)
//   any other status (4xx, 3xx...)                  -> failure("HTTP 400 from <url>: <body snippet>")
//   an event whose traits/properties are not JSON   -> failure (it can never be encoded)
//
// Time: the write's deadline, the pause between resends of refused items, sentAt and the "now"
// an HTTP-date Retry-After is read against come from options.clock, so tests drive them with a
// ManualClock. libcurl's own connect and transfer timeouts run on real time.
//
// Thread-safety: write() is safe from any number of threads at once; each call uses its own curl
// easy handle from a small pool (connections are kept alive between calls).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "reqbus/clock.hpp"
#include "reqbus/sink.hpp"

namespace reqbus {

namespace http {
class HttpTransport;
}

struct HttpSinkOptions {
  std::string url{};      // required: where RequestLog batches go ("http://host:7480/v1/requests")
  std::string batch_url{};  // where identify/group/track go; "" = url
  std::string bearer_token{};  // sent as "Authorization: Bearer <token>" when not empty
  std::string write_key{};     // sent as the basic-auth user name (Segment style) when not empty
  // TCP connect bound; each write also stops at its own timeout (whichever is first).
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds max_retry_after{60'000};  // cap of an honoured Retry-After
  size_t max_idle_connections = 4;  // curl handles (and their kept-alive connections) pooled
  std::string user_agent = "reqbus-http-sink";
  std::shared_ptr<Clock> clock{};  // nullptr = system_clock(): deadlines, pauses, sentAt
};

class HttpSink final : public Sink {
 public:
  // Throws reqbus::Error(invalid_argument) naming the field for a missing or non-http(s) URL.
  explicit HttpSink(HttpSinkOptions options);
  ~HttpSink() override;

  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override;
  std::string name() const override;  // "http:<url>"
  // Writes in progress on other threads stop within about a second (curl's progress callback)
  // or after their current pause between resends: retry_later. Thread-safe.
  void abort_writes() noexcept override;

 private:
  // Posts `body`; `reply_body`/`reply_cut`, when given, get the response body (its first 64 KiB)
  // and whether it was longer.
  WriteResult post(const std::string& url, const std::string& body,
                   std::chrono::steady_clock::time_point deadline, std::string* reply_body = nullptr,
                   bool* reply_cut = nullptr);
  // Posts `items` (body_of(items) is the body) and again the ones a reqbus node refused, as
  // described above.
  template <class T, class BodyOf>
  WriteResult post_until_taken(const std::string& url, std::vector<T> items, BodyOf body_of,
                               std::chrono::steady_clock::time_point deadline);

  const HttpSinkOptions opts_;  // clock set (never null)
  std::unique_ptr<http::HttpTransport> transport_;
  // Waits on the sink's clock until `until`, or until abort_writes() is called.
  void pause_until(Clock::time_point until);

  std::mutex calls_mu_;
  std::condition_variable calls_cv_;       // abort_writes(): pauses between resends end
  std::vector<std::atomic<bool>*> calls_;  // guarded by calls_mu_: the writes in progress' abort flags
};

}  // namespace reqbus
