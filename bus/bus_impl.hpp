#pragma once
// Bus::Impl: the state shared by the API (bus.cpp), the publisher thread (publisher.cpp) and
// the receiver thread (receiver.cpp).
#include <array>
#include <atomic>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "bus/frame_queue.hpp"
#include "bus/curve.hpp"
#include "bus/peer_health.hpp"
#include "bus/peer_links.hpp"
#include "bus/ready_board.hpp"
#include "bus/subscriber.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/log.hpp"

namespace reqbus {

class Bus::Impl {
 public:
  explicit Impl(BusOptions options);
  ~Impl();

  template <class Event>
  // `offer`: a refusal goes back to the caller (Bus::offer): counted in offers_refused_.
  PublishStatus publish(const Event& event, std::string_view topic, char scope, bool offer = false);
  // One of the two handlers, or neither (pull mode).
  Subscription subscribe(SubscribeOptions options, Handler handler, ViewHandler view_handler = nullptr);
  CloseReport close(std::chrono::milliseconds deadline);
  BusStats stats() const;

  const BusOptions options;
  const uint64_t epoch;
  const bool curve;                                // tcp sockets use CURVE
  const detail::CurveKeys keys;                    // this node's, when curve
  const std::vector<detail::PeerEndpoint> peers;   // parsed options.peers
  const std::vector<detail::PeerEndpoint> uplinks; // parsed options.publish_to
  std::string bound_endpoint;  // set before the constructor returns

 private:
  // publisher.cpp
  void publisher_main(std::promise<void> started);
  // Sends each frame (header written into its room) to the local XPUB and, for cluster
  // scope, to the tcp PUB and the uplink (counting there what a down endpoint misses);
  // empties `frames`.
  void publish_frames(std::vector<std::unique_ptr<detail::FrameBuffer>>& frames, zmq::socket_t& local,
                      zmq::socket_t* tcp, detail::PeerLinks* uplinks);
  // The local side of the bus (publisher's and receiver's): XPUB_NODROP, inproc_hwm, bound.
  void make_lossless_xpub(std::optional<zmq::socket_t>& socket, const std::string& endpoint);
  // Sends on a socket made by make_lossless_xpub, waiting while a subscriber's pipe is full.
  bool send_blocking(zmq::socket_t& socket, zmq::message_t& key, zmq::message_t& body);
  void drain_subscriptions(zmq::socket_t& xpub);
  // receiver.cpp
  void receiver_main(std::promise<void> started);

  void start_thread(std::thread& thread, std::future<void>& done,
                    void (Impl::*main)(std::promise<void>), const char* name);
  // Folds the subscribers whose counters are final into closed_ and forgets them, so a
  // program that subscribes and closes over and over does not grow. Requires subs_mu_.
  void prune_finished() const;

  zmq::context_t context_;
  std::unique_ptr<detail::ZapHandler> zap_;  // when binding with CURVE; started first
  const std::string local_endpoint_;
  const std::string remote_endpoint_;  // "" without peers
  detail::FrameQueue queue_;
  detail::ReadyBoard ready_;

  std::thread publisher_, receiver_;
  std::future<void> publisher_done_, receiver_done_;
  std::atomic<bool> accepting_{true};
  std::atomic<bool> abort_{false};          // close() deadline passed: stop waiting on sockets
  std::atomic<bool> receiver_stop_{false};
  std::atomic<uint64_t> subscriber_count_{0};

  // Counters (relaxed atomics: totals only).
  std::atomic<uint64_t> offers_refused_{0};
  std::atomic<uint64_t> dropped_newest_{0}, dropped_oldest_{0},
      dropped_timeout_{0}, dropped_closed_{0}, dropped_close_deadline_{0}, rejected_invalid_{0},
      frames_sent_{0}, events_sent_{0}, remote_frames_{0}, remote_events_{0}, remote_gaps_{0},
      peer_disconnects_{0}, handshake_failures_{0}, echoes_ignored_{0}, remote_rejected_events_{0},
      remote_gap_resyncs_{0}, peer_channels_forgotten_{0}, duplicate_node_id_frames_{0};
  std::array<std::atomic<uint64_t>, codec::kDecodeErrorCount> malformed_{};
  // Each peer's connection state: fed by the receiver thread's socket monitor, read by stats().
  // Null without peers; made before the receiver starts.
  std::unique_ptr<detail::PeerHealth> peer_health_;
  // The same for publish_to, fed by the publisher thread. Null without publish_to.
  std::unique_ptr<detail::PeerHealth> uplink_health_;

  // Publisher-thread state.
  std::unordered_map<std::string, uint64_t> channel_seq_;  // envelope key -> next seq

  std::mutex subscribe_mu_;  // serialises subscribe() with close()
  mutable std::mutex subs_mu_;
  // Pruned by stats() too, hence mutable.
  mutable std::vector<std::shared_ptr<detail::Subscriber>> subscribers_;  // guarded by subs_mu_
  mutable SubscriptionStats closed_;       // guarded by subs_mu_: sums of pruned subscribers
  mutable uint64_t closed_count_ = 0;      // guarded by subs_mu_

  std::mutex close_mu_;
  std::optional<CloseReport> close_report_;  // guarded by close_mu_
  RateLimiter bad_input_log_;
  // The peers' and publish_to endpoints' handshake failures (PeerLinks): their own limiter, so
  // a flood of malformed frames cannot swallow the one line each failure run gets.
  RateLimiter link_log_{10, std::chrono::minutes(1)};
  // Another node with our node id (or two peers sharing one) sends every frame: its own
  // limiter, so it does not crowd the other warnings out of bad_input_log_.
  RateLimiter duplicate_id_log_{2, std::chrono::seconds(10)};
};

}  // namespace reqbus
