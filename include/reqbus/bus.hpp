#pragma once
// Bus: a named topic bus for request analytics over ZeroMQ — inproc inside the process, tcp
// between nodes. The C++ form of PhoenixAnalytics.Services.PubSub: name(), subscribe(),
// broadcast(), plus local_broadcast() that stays on this node.
//
// Thread-safety: every method may be called from any number of threads at once. No ZeroMQ
// socket crosses a thread: broadcast() encodes on the caller's thread into a bounded queue; one
// publisher thread owns the publishing sockets; each subscription owns its own socket and
// thread; a receiver thread owns the sockets facing tcp peers.
//
// Delivery: lossless between broadcast() and local subscribers unless a queue's overflow policy
// says otherwise, and then every drop is counted. Between nodes ZeroMQ may drop at its
// high-water mark or during reconnects; every origin's events carry sequence numbers, and
// subscribers count what is missing as gaps.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "reqbus/analytics_event.hpp"
#include "reqbus/bus_options.hpp"
#include "reqbus/bus_stats.hpp"
#include "reqbus/message.hpp"
#include "reqbus/request_log.hpp"
#include "reqbus/subscription.hpp"

namespace reqbus {

enum class PublishStatus : uint8_t {
  ok,             // accepted; it will be delivered (or counted if later dropped)
  dropped_newest, // the queue was full and the policy is drop_newest
  timed_out,      // the queue stayed full for block_timeout (block policy)
  closed,         // the bus is closed
  invalid,        // the event or topic failed validation (see validate())
};
const char* to_string(PublishStatus status) noexcept;

using Handler = std::function<void(const Message&)>;
using ViewHandler = std::function<void(const MessageView&)>;

class Bus {
 public:
  // Binds/connects as configured; throws Error on bad options or a failed bind.
  explicit Bus(BusOptions options = {});
  ~Bus();  // close(options.close_timeout)
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  const std::string& name() const noexcept;
  const std::string& node_id() const noexcept;
  // The tcp endpoint actually bound (resolves "tcp://127.0.0.1:*"), or "".
  std::string bound_endpoint() const;

  // Publishes to every subscriber of `topic` on this node and on connected nodes.
  // Fills request_id (UUIDv7), inserted_at (now), node_id and seq on the published copy.
  // Never blocks longer than BusOptions::block_timeout. A RequestLog is published through its
  // view (request_log.hpp); the bytes are copied before the call returns.
  [[nodiscard]] PublishStatus broadcast(const RequestLogView& event,
                                        std::string_view topic = kDefaultTopic);
  [[nodiscard]] PublishStatus broadcast(const AnalyticsEvent& event,
                                        std::string_view topic = kDefaultTopic);
  // Same, but only this node's subscribers see it.
  [[nodiscard]] PublishStatus local_broadcast(const RequestLogView& event,
                                              std::string_view topic = kDefaultTopic);
  [[nodiscard]] PublishStatus local_broadcast(const AnalyticsEvent& event,
                                              std::string_view topic = kDefaultTopic);
  // broadcast() for a caller that hands a refusal back to whoever sent the event (the node's
  // HTTP API answers 503 naming it): a full queue (dropped_newest, timed_out) is counted as
  // BusStats::offers_refused, not as a drop, since nothing is lost. Otherwise the same.
  [[nodiscard]] PublishStatus offer(const RequestLogView& event, std::string_view topic = kDefaultTopic);
  [[nodiscard]] PublishStatus offer(const AnalyticsEvent& event, std::string_view topic = kDefaultTopic);

  // Handler mode: `handler` runs on the subscription's worker thread for every message.
  // Returns once the subscription is live. Throws Error on bad options or a closed bus.
  Subscription subscribe(SubscribeOptions options, Handler handler);
  // Pull mode: read with Subscription::next().
  Subscription subscribe(SubscribeOptions options = {});
  // View mode: `handler` gets each message as a view of the received frame's bytes (no string
  // is copied; message.hpp), one after another. With Overflow::block it runs on the
  // subscription's reader thread, and a slow handler holds back the bus as a block-policy
  // handler does (max_pending then only sizes the socket's buffer). With drop_newest or
  // drop_oldest the reader queues whole frames (bounded by max_pending events, drops counted
  // in events) and a handler thread reads them in place: a slow handler sheds load, as in
  // handler mode, without a Message decoded or copied per event. Throws Error as subscribe()
  // does.
  Subscription subscribe_views(SubscribeOptions options, ViewHandler handler);

  // Stops accepting, delivers everything already accepted to every subscription, joins all
  // threads, and reports. What is still in flight at the deadline is dropped and counted.
  // Idempotent: later calls return the first report.
  CloseReport close(std::chrono::milliseconds deadline);
  CloseReport close();  // with options.close_timeout

  // A snapshot, from any thread: counters are read one by one, and each entry of peers
  // and subscriptions is copied whole under its owner's lock.
  BusStats stats() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace reqbus
