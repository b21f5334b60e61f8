#pragma once
// PeerHealth: whether each tcp peer of the receiver's SUB socket is connected, read from the
// socket monitor's events, and the log lines that tell an operator about a peer that stays
// unreachable (a wrong address, a peer that does not bind it, a key it does not accept): one
// warning after BusOptions::peer_unreachable_after, reminders every peer_unreachable_repeat,
// an info line when it connects.
//
// libzmq (4.3) reports, for a connect to "tcp://host:port":
//   an attempt:         CONNECT_DELAYED, then CONNECTED, or CLOSED (refused, timed out)
//   then, on failure:   CONNECT_RETRIED (alone when the host does not resolve)
//   a connection:       HANDSHAKE_SUCCEEDED (up), or HANDSHAKE_FAILED_* then DISCONNECTED
//   a lost connection:  DISCONNECTED, then CONNECT_RETRIED
// Events name the endpoint as it was given to connect(), except after libzmq reconnects a lost
// connection itself (then the resolved address): the receiver reconnects under the configured
// name after a disconnect or a failed handshake, and events for unknown names are ignored.
//
// Thread-safety: on_event(), reconnecting() and tick() from one thread (the receiver's);
// snapshot() from any thread.
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/bus_stats.hpp"
#include "reqbus/clock.hpp"
#include "reqbus/log.hpp"

namespace reqbus::detail {

class PeerHealth {
 public:
  // `endpoints`: the configured peers ("tcp://host:port"; a repeated one is tracked once).
  // `owner` starts every log line, before the endpoint ("bus 'reqbus': peer"). All peers start
  // down, since now.
  // `connect_timeout`: the sockets' ZMQ_CONNECT_TIMEOUT (0 = the system's). An attempt that
  // closes within min(1 s, connect_timeout / 2) was refused; a later close timed out.
  // `other` names what is at the endpoints in the hints ("check ... that the forwarder binds it").
  PeerHealth(const std::vector<std::string>& endpoints, std::string owner,
             std::chrono::milliseconds warn_after, std::chrono::milliseconds repeat,
             std::chrono::milliseconds connect_timeout, std::shared_ptr<Clock> clock = system_clock(),
             std::string other = "peer");

  // One monitor event (a ZMQ_EVENT_* id) for `endpoint`.
  void on_event(uint16_t event, std::string_view endpoint);
  // The receiver is dropping the connection to `endpoint` and connecting again: an attempt in
  // flight ends without being a failure.
  void reconnecting(std::string_view endpoint);
  // Logs what is due (first warnings, reminders). Call often: its resolution is the caller's.
  void tick();
  // `events` sent while `endpoint` was down (PeerStats::events_unsent). The line an endpoint's
  // (re)connection logs says how many an outage cost, even one within the grace period; hand
  // them over before its HANDSHAKE_SUCCEEDED.
  void add_unsent(std::string_view endpoint, uint64_t events);

  std::vector<PeerStats> snapshot() const;

 private:
  struct Peer {
    PeerStats stats;
    Clock::time_point since;          // monotonic twin of stats.since_unix_us
    bool attempt_open = false;        // CONNECT_DELAYED seen, no CONNECTED/CLOSED yet
    Clock::time_point attempt_started{};
    bool handshaking = false;         // CONNECTED seen, no handshake result yet (ZMQ_HANDSHAKE_IVL: 30 s)
    Clock::time_point handshake_started{};
    bool retry_expected = false;      // a failure or a disconnect was noted: its CONNECT_RETRIED is not another
    std::string run_reason;           // the failure repeated since the peer went down ...
    uint64_t run_count = 0;           // ... and how many times in a row
    bool warned = false;              // the unreachable warning went out for this outage
    uint64_t unsent_at_down = 0;      // stats.events_unsent when this outage began
    Clock::time_point next_reminder{};
  };

  Peer* find(std::string_view endpoint);          // requires mu_
  void fail(Peer& peer, const char* reason);      // requires mu_
  void go_down(Peer& peer, Clock::time_point now);  // requires mu_
  std::string why(const Peer& peer, Clock::time_point now) const;  // requires mu_

  const std::string owner_;
  const std::string other_;  // what is at the endpoints, in hints ("peer", "forwarder")
  const std::chrono::milliseconds warn_after_, repeat_;
  const std::chrono::milliseconds refused_within_;  // see the constructor
  const std::shared_ptr<Clock> clock_;
  mutable std::mutex mu_;
  std::vector<Peer> peers_;  // guarded by mu_; fixed size after construction
  RateLimiter log_limit_{10, std::chrono::minutes(1)};  // over all peers: a flapping mesh stays readable
};

}  // namespace reqbus::detail
