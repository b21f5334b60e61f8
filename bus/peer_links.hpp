#pragma once
// PeerLinks: the connections one socket makes to a list of tcp endpoints (the receiver's SUB to
// BusOptions::peers, the publisher's PUB to BusOptions::publish_to), watched through the
// socket's monitor. Each endpoint's state and failures go to a PeerHealth (BusStats, the
// "unreachable" warnings); a failed handshake is counted, and logged once until one succeeds;
// and we connect again ourselves, with backoff, where libzmq would not (after a protocol error,
// e.g. a frame past ZMQ_MAXMSGSIZE, it ends the session for good) or would too often (every
// ~140 ms after a failed handshake, whatever reconnect_ivl_max says).
//
// Thread-safety: everything from the thread that owns the socket. The PeerHealth it feeds is
// read from any thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "bus/curve.hpp"
#include "bus/peer_health.hpp"
#include "reqbus/log.hpp"

namespace reqbus::detail {

class PeerLinks {
 public:
  struct Counters {
    std::atomic<uint64_t>* handshake_failures;  // BusStats::handshake_failures
    std::atomic<uint64_t>* disconnects;         // BusStats::peer_disconnects
  };
  // How the socket's connections behave when one is lost.
  struct Role {
    // Connect again ourselves after a working connection is lost: the receiver's SUB, whose
    // session libzmq ends for good after a protocol error (a frame past ZMQ_MAXMSGSIZE). Off
    // for the publisher's PUB: libzmq's own reconnect keeps the connection's pipe, with the
    // frames queued in it and the forwarder's subscriptions, where ours would throw both away.
    // A connection that closes before its handshake is done is always connected again by us,
    // with backoff: after a protocol error there (not a ZeroMQ endpoint) libzmq never retries.
    bool reconnect_after_lost_connection = true;
    // For sent(): frames a lost connection's pipe holds before ZeroMQ drops (tcp_hwm).
    size_t queued_frames = 0;
  };
  // `socket` must outlive this object; `keys` is null in plaintext mode. `endpoints` repeated
  // are connected once. `owner` starts log lines ("bus 'reqbus'"), `field` names the option
  // the endpoints come from ("peers", "publish_to"); `log` limits their rate. Starts the
  // monitor (at `monitor_endpoint`, inproc) and connects to every endpoint. Throws zmq::error_t.
  PeerLinks(zmq::context_t& context, zmq::socket_t& socket, const std::vector<PeerEndpoint>& endpoints,
            const CurveKeys* keys, const std::string& monitor_endpoint, PeerHealth& health, std::string owner,
            std::string field, Counters counters, Role role, RateLimiter& log);
  ~PeerLinks();  // stops the monitor
  PeerLinks(const PeerLinks&) = delete;
  PeerLinks& operator=(const PeerLinks&) = delete;

  zmq::socket_t& socket() noexcept { return socket_; }
  // For zmq::poll: readable when monitor events wait.
  zmq::pollitem_t monitor_item() { return {monitor_.handle(), 0, ZMQ_POLLIN, 0}; }
  // Reads the monitor's events, reconnects what is due, and lets PeerHealth log what is due.
  // Cheap when nothing happened; call at least every few hundred milliseconds.
  void service();
  // At close: reads the monitor's last events and hands over what sent() counted, and what
  // waits in the pipe of a connection still down (the socket's close discards it), acting on
  // nothing (no reconnect, no log line).
  void finish();

  // Whether every endpoint's connection is up (handshake done), as the monitor last said.
  bool all_up() const noexcept { return up_count_ == links_.size(); }
  // A frame of `events` was sent on the socket. ZeroMQ's PUB drops it for an endpoint whose
  // connection has no subscribed pipe (never connected yet, or connected again by us after a
  // failed handshake), and past Role::queued_frames frames for one whose pipe waits for
  // libzmq to reconnect it: those events go to its PeerStats::events_unsent at the next
  // service().
  void sent(uint64_t events) {
    if (all_up()) return;
    drain(true);  // the state as of this frame, not as of the last service()
    if (all_up()) return;
    for (auto& l : links_) {
      if (l.up) continue;
      if (!l.pipe_subscribed || ++l.frames_while_down > role_.queued_frames) l.unsent += events;
      else l.queued_events += events;
    }
  }

 private:
  struct Link {
    PeerEndpoint peer;
    bool up = false;
    bool handshaking = false;      // TCP connected, no handshake result yet
    bool pipe_subscribed = false;  // the pipe has carried a connection (handshake done) since made
    uint64_t frames_while_down = 0;
    uint64_t queued_events = 0;  // in frames waiting in the pipe of a lost connection
    uint64_t unsent = 0;  // not yet handed to PeerHealth
    std::chrono::steady_clock::time_point next_allowed{};
    std::chrono::milliseconds backoff{100};
    bool pending = false;  // reconnect when next_allowed comes
    // The handshake failure was logged: the next ones are counted and repeated by PeerHealth's
    // warnings, not logged each (~6 lines in the first seconds of a wrong key).
    bool handshake_failure_logged = false;
  };

  // The link an event names: by its configured endpoint, or by the resolved address libzmq
  // names a connection with after reconnecting it itself ("tcp://10.0.0.5:7401" for
  // "tcp://fwd:7401"), matched by port, and by resolving the hosts when several share it.
  Link* find(const std::string& endpoint);
  void drain(bool act);
  void on_event(uint16_t event, const std::string& endpoint, bool act);
  void connect(Link& link);
  void set_up(Link& link, bool up);
  void hand_over_unsent();

  zmq::socket_t& socket_;
  const CurveKeys* const keys_;
  PeerHealth& health_;
  const std::string owner_, field_;
  const Counters counters_;
  const Role role_;
  RateLimiter& log_;
  std::vector<Link> links_;
  std::unordered_map<std::string, size_t> aliases_;  // resolved address -> index in links_
  size_t up_count_ = 0;
  zmq::socket_t monitor_;
};

}  // namespace reqbus::detail
