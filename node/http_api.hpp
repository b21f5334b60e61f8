#pragma once
// HttpApi: the node's HTTP server (cpp-httplib, a thread pool).
//   POST /v1/requests   NDJSON or a JSON array of RequestLogs -> 202 {accepted, rejected, errors};
//                       503 (the same, with "refused": the items the bus refused) when it refused any
//   POST /v1/batch      Segment HTTP Tracking API batch (identify/group/track); the write key is
//                       the basic-auth user name -> 200 {"success": true, accepted, rejected}
//   GET  /api/stats     live statistics (JSON); ?node= filters by node
//   GET  /api/stream    the same, pushed once a second as Server-Sent Events
//   GET  /metrics       Prometheus text format
//   GET  /healthz       "ok" (200) or the reason (503): the node's health hook (node/health.hpp)
//   GET  /              the dashboard (embedded web assets under /assets/)
// A route asked with a method it does not take gets 405 with Allow; OPTIONS gets 204 with Allow.
// Events go to the bus with Bus::offer(): what it refuses is the sender's to send again, no drop.
// Worker threads: node/http_pool.hpp (grows to max_threads); stop() cuts connections still open
// 1.5 s after the listener closed.
// Bodies over max_body_bytes get 413, a chunked body to any route but the two POSTs 411, another
// transfer coding 501, an ambiguous length (two, not digits, beside chunked) 400; a bad
// body (invalid JSON, nested deeper than 64 levels, more than 100,000 items) gets 400 with a
// message; invalid items in a valid body are rejected one by one and do not stop the valid
// ones. Once the bus times out or is closed on one item of a body, the rest are refused at once.
// With a bearer token set, every route but /healthz, the dashboard's page and its assets needs
// `Authorization: Bearer <token>` (or `?token=` on /api/stream, for the browser's EventSource).
// /v1/batch takes a write key as the basic-auth user name: one of write_keys, or, when none are
// configured, the token (as the write key or as a bearer token); open only without either.
// Thread-safety: start()/stop() from one thread; the hooks are called from server threads.
#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "reqbus/analytics_event.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus::node {

struct HttpApiOptions {
  std::string host = "127.0.0.1";     // loopback unless configured otherwise
  int port = 7480;                    // 0 = pick a free port (see HttpApi::port())
  std::string bearer_token;           // "" = no authentication
  std::vector<std::string> write_keys;  // accepted /v1/batch write keys; empty = the token (any
                                        // key when there is no token either)
  size_t max_body_bytes = 8 << 20;    // bytes (8 MiB); larger bodies get 413
  size_t max_stream_clients = 64;     // concurrent /api/stream clients; more get 503
  // Worker threads: a connection holds one for as long as it stays open (keep-alive, a live
  // stream, a slow client). `threads` are always there; more are started while all are busy, up
  // to `max_threads` (then new connections wait in the kernel's listen backlog), and leave after
  // 30 s idle. Defaults 16 and 256.
  int threads = 16;
  int max_threads = 256;
  std::chrono::milliseconds stream_interval{1000};  // SSE push period
};

struct HttpApiHooks {
  std::function<PublishStatus(const RequestLog&)> publish_request;
  std::function<PublishStatus(const AnalyticsEvent&)> publish_event;
  std::function<nlohmann::json(const std::string& node)> stats;
  std::function<std::string()> metrics;  // Prometheus text of the node's components
  std::function<std::string()> health;   // "" when healthy, else the reason
};

struct HttpApiStats {
  uint64_t requests = 0;          // HTTP requests served
  uint64_t items_accepted = 0;    // RequestLogs/events published from bodies
  uint64_t items_rejected = 0;    // invalid items, each with a message
  uint64_t items_refused = 0;     // valid items the bus refused (full, timed out, closing): the
                                  // reply (503) names them ("refused") for the sender to send again
  uint64_t bodies_rejected = 0;   // 400/411/413/501 bodies
  uint64_t unauthorized = 0;      // 401s
  uint64_t stream_clients = 0;    // connected now
  uint64_t threads = 0;           // worker threads running now (threads..max_threads)
  uint64_t threads_busy = 0;      // serving a connection now
  uint64_t saturated = 0;         // connections that waited for a thread (max_threads busy)
};

class HttpApi {
 public:
  HttpApi(HttpApiOptions options, HttpApiHooks hooks);
  ~HttpApi();
  // Binds and starts serving; throws Error{transport} naming the address when it cannot bind.
  void start();
  int port() const noexcept;
  void stop();
  HttpApiStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus::node
