#pragma once
// Node: one running reqbus node — what `reqbus serve` and `reqbus demo` run.
//   Bus ── local_only subscription ──> Batcher ──> store (SQLite or PostgreSQL), with spool
//      │                          └──> StatBuffer ──> the store's counters table
//      └─ cluster subscription ──> LiveStats ──> HTTP API: dashboard, /api/stats, /metrics
//   HTTP API (/v1/requests, /v1/batch) and the syslog listener publish onto the Bus.
// Persistence subscribes local-only, so N nodes sharing one database store each event once;
// writes are idempotent besides, so even a misconfigured cluster stores each event once.
// Thread-safety: the accessors are safe from any thread; close() from one thread; hurry() from
// any thread, also while close() runs.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "node/health.hpp"
#include "node/http_api.hpp"
#include "node/live_stats.hpp"
#include "reqbus/batcher_options.hpp"
#include "reqbus/batcher_stats.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/stat_buffer.hpp"

namespace reqbus::node {

// The Batcher options a node starts from: the seed's defaults, plus coalescing — a node's
// store is a database, where a few big transactions beat many small ones when it falls behind.
inline BatcherOptions default_node_batcher_options() {
  BatcherOptions o;
  o.coalesce_max_events = 10000;
  return o;
}

struct NodeOptions {
  BusOptions bus;                        // node id, tcp bind and peers, publish queue
  std::string store = "sqlite:reqbus.db";  // "sqlite:PATH", "postgres:CONNINFO" or "none"
  std::string spool_dir = "reqbus-spool";  // the Batcher's spool ("" = none: failures are drops)
  BatcherOptions batcher = default_node_batcher_options();  // spool_dir set from above
  StatBufferOptions counters;            // interval, jitter, backoff, timeout
  HttpApiOptions http;                   // listen address, token, body limits
  bool http_enabled = true;
  std::string syslog_listen;             // "127.0.0.1:5514": nginx `access_log syslog:server=`
  LiveStatsOptions live;
  HealthOptions health;                  // when /healthz says 503: losing events (window 60 s)
  std::chrono::milliseconds close_timeout{10000};
};

// What close() did, component by component.
struct NodeReport {
  CloseReport bus;
  BatcherReport batcher;
  StatBufferReport counters;
  uint64_t syslog_received = 0, syslog_rejected = 0;
  uint64_t store_duplicates = 0;  // events written that the store already held (kept once)
  uint64_t uplink_unsent = 0;     // cluster events ZeroMQ dropped for publish_to endpoints (PeerStats::events_unsent)
  uint64_t view_dropped = 0;      // of bus.dropped_*: events the live view skipped to keep up (stored all the same)
  uint64_t http_refused = 0;      // items refused to HTTP senders, who were told (503) to send them again
                                  // (not in bus.dropped_*: the API offers events, Bus::offer)
  uint64_t counter_windows = 0;   // counter windows written over the node's life (counters.flushed:
                                  // those written by close())
  // The spool over the node's life (BatcherStats): events stored from it, set aside in its
  // dead-letter file, and what it still holds for the next start.
  uint64_t replayed = 0, dead_lettered = 0, spool_left_bytes = 0;
  bool deadline_reached = false;
};

class Node {
 public:
  // Opens the store (creating the schema), starts every component; throws Error naming what
  // failed (a bad store string, an unusable spool directory, a port in use).
  explicit Node(NodeOptions options);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  Bus& bus();
  LiveStats& live();
  int http_port() const;
  int syslog_port() const;  // the UDP port bound for syslog (0 when disabled)
  const NodeOptions& options() const;
  std::string store_description() const;  // "sqlite:/abs/path.db" (no passwords)

  nlohmann::json stats_json(const std::string& node_filter = "") const;
  std::string metrics() const;  // Prometheus text format
  // "" when healthy, else why not (what GET /healthz answers with 503): events lost in the
  // last HealthOptions::window, or a spool nearly full. A store that is down is healthy while
  // the spool takes its events. See node/health.hpp.
  std::string health() const;

  // Stops intake, drains the bus into the Batcher and StatBuffer, flushes them to the store
  // (what cannot be written by the deadline is spooled), and reports. Idempotent.
  NodeReport close(std::chrono::milliseconds deadline);
  // Cuts close() short (the one running on another thread, or the next): the Batcher spools
  // what is unwritten now and abandons its writes in progress (Batcher::hurry), and the
  // StatBuffer abandons its writes in progress and gives its last flush one attempt of up to a
  // second (StatBuffer::hurry; what that does not write is reported lost). The bus still hands
  // the Batcher what it holds first. For an operator's second Ctrl-C.
  void hurry();

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus::node
