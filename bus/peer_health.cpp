// PeerHealth (peer_health.hpp): per-peer connection state from the socket monitor, and the
// "peer unreachable" warnings.
#include "bus/peer_health.hpp"

#include <zmq.h>

#include <algorithm>
#include <cstdio>

namespace reqbus::detail {
namespace {

constexpr std::chrono::milliseconds kRefusedWithin{1000};  // a refusal (RST) is quick; a timeout is not

// "0.2 s" under 10 s (short test timings read right), "42 s" above.
std::string seconds(std::chrono::nanoseconds d) {
  const double s = std::chrono::duration<double>(d).count();
  char buf[32];
  if (s < 10) std::snprintf(buf, sizeof(buf), "%.1f s", s);
  else std::snprintf(buf, sizeof(buf), "%.0f s", s);
  return buf;
}

// What to check, for the failure seen last (`handshaking`: TCP is connected, the handshake
// waits). `other`: what is at the address ("peer", "forwarder").
std::string hint(const std::string& reason, bool handshaking, const std::string& other) {
  if (reason == "address not resolved") return "check the host name in the " + other + "'s address";
  if (reason == "handshake failed" || handshaking)
    return "check that the address is a reqbus bus endpoint, the server key after '#', and that "
           "this node's public key is on the " + other + "'s allow-list";
  if (reason == "connection timed out")  // nothing answered: not even a refusal
    return "check the IP address, and that no firewall drops the traffic";
  return "check the address and that the " + other + " binds it";
}

}  // namespace

PeerHealth::PeerHealth(const std::vector<std::string>& endpoints, std::string owner,
                       std::chrono::milliseconds warn_after, std::chrono::milliseconds repeat,
                       std::chrono::milliseconds connect_timeout, std::shared_ptr<Clock> clock, std::string other)
    : owner_(std::move(owner)),
      other_(std::move(other)),
      warn_after_(warn_after),
      repeat_(repeat),
      refused_within_(connect_timeout.count() > 0 ? std::min(kRefusedWithin, connect_timeout / 2) : kRefusedWithin),
      clock_(std::move(clock)) {
  const auto now = clock_->now();
  const int64_t now_us = clock_->unix_us();
  for (const auto& endpoint : endpoints) {
    if (find(endpoint)) continue;
    Peer p;
    p.stats.endpoint = endpoint;
    p.stats.since_unix_us = now_us;
    p.since = now;
    peers_.push_back(std::move(p));
  }
}

PeerHealth::Peer* PeerHealth::find(std::string_view endpoint) {
  for (auto& p : peers_)
    if (p.stats.endpoint == endpoint) return &p;
  return nullptr;
}

void PeerHealth::fail(Peer& peer, const char* reason) {
  ++peer.stats.connect_failures;
  peer.stats.last_failure = reason;
  if (peer.run_reason == reason) {
    ++peer.run_count;
  } else {
    peer.run_reason = reason;
    peer.run_count = 1;
  }
  peer.retry_expected = true;
}

void PeerHealth::go_down(Peer& peer, Clock::time_point now) {
  if (!peer.stats.connected) return;
  peer.stats.connected = false;
  peer.stats.since_unix_us = clock_->unix_us();
  peer.since = now;
  peer.run_reason.clear();
  peer.run_count = 0;
  peer.warned = false;
  peer.unsent_at_down = peer.stats.events_unsent;
}

void PeerHealth::on_event(uint16_t event, std::string_view endpoint) {
  std::string line;
  LogLevel level = LogLevel::info;
  {
    std::lock_guard lock(mu_);
    Peer* peer = find(endpoint);
    if (!peer) return;
    Peer& p = *peer;
    const auto now = clock_->now();
    switch (event) {
      case ZMQ_EVENT_CONNECT_DELAYED:  // an attempt started
        p.attempt_open = true;
        p.attempt_started = now;
        p.retry_expected = false;
        break;
      case ZMQ_EVENT_CONNECTED:  // TCP is up; the peer is up once the handshake is done
        p.attempt_open = false;
        p.handshaking = true;
        p.handshake_started = now;
        p.retry_expected = false;
        break;
      case ZMQ_EVENT_CLOSED:
        if (p.attempt_open) {
          p.attempt_open = false;
          fail(p, now - p.attempt_started < refused_within_ ? "connection refused" : "connection timed out");
        } else if (!p.handshaking && !p.stats.connected && !p.retry_expected) {
          // A connect that failed at once (no CONNECT_DELAYED: an unreachable network), not
          // the close of a failure noted already: the CONNECT_RETRIED that follows is its
          // retry, not a name that does not resolve.
          fail(p, "connection failed");
        }
        break;
      case ZMQ_EVENT_CONNECT_RETRIED:
        // After a failure or a disconnect noted above it is just the retry; alone it is an
        // attempt that could not start: the host name does not resolve.
        if (p.retry_expected) {
          p.retry_expected = false;
        } else {
          fail(p, "address not resolved");
          p.retry_expected = false;  // this was the retry: the next one is another failure
        }
        break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        if (!p.stats.connected) {
          const uint64_t lost = p.stats.events_unsent - p.unsent_at_down;
          if (p.warned || lost > 0) {
            line = owner_ + " " + p.stats.endpoint + " connected after " + seconds(now - p.since) +
                   " unreachable" + (p.run_count > 0 ? " (" + p.run_reason + " x" + std::to_string(p.run_count) + ")" : "");
            if (lost > 0) line += "; " + std::to_string(lost) + " events published meanwhile were not sent to it";
            level = lost > 0 ? LogLevel::warn : LogLevel::info;
          }
          p.stats.connected = true;
          p.stats.since_unix_us = clock_->unix_us();
          p.since = now;
          p.warned = false;
        }
        p.handshaking = false;
        p.retry_expected = false;
        break;
      case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
      case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
        go_down(p, now);
        p.handshaking = false;
        fail(p, "handshake failed");
        break;
      case ZMQ_EVENT_DISCONNECTED:
        if (p.stats.connected) {
          go_down(p, now);
          p.stats.last_failure = "disconnected";
        } else if (p.handshaking) {
          // Closed before the handshake was done: something that is not a ZeroMQ endpoint of
          // ours (an HTTP server, a forwarder's other side), or one that refused us.
          fail(p, "handshake failed");
        }
        p.handshaking = false;
        p.retry_expected = true;
        break;
      default:
        break;
    }
  }
  // Not through log_limit_: one line per outage that was warned about (or cost events), and the
  // log's last word on an endpoint must not stay "unreachable" because others used the quota.
  if (!line.empty()) log(level, line);
}

void PeerHealth::reconnecting(std::string_view endpoint) {
  std::lock_guard lock(mu_);
  if (Peer* p = find(endpoint)) {
    p->attempt_open = p->handshaking = false;
    p->retry_expected = true;  // the CLOSED of the attempt torn down is no failure
  }
}

std::string PeerHealth::why(const Peer& p, Clock::time_point now) const {
  if (p.handshaking) {  // e.g. a port that is not a ZeroMQ endpoint and waits for its own protocol
    std::string text = "TCP connected, no ZeroMQ handshake for " + seconds(now - p.handshake_started);
    return p.run_count > 0 ? text + "; before: " + p.run_reason + " x" + std::to_string(p.run_count) : text;
  }
  if (p.run_count > 0) return p.run_reason + " x" + std::to_string(p.run_count);
  if (p.attempt_open) return "no answer to the connection attempt for " + seconds(now - p.attempt_started);
  return "no connection attempt has answered";
}

void PeerHealth::tick() {
  std::vector<std::string> lines;
  {
    std::lock_guard lock(mu_);
    const auto now = clock_->now();
    for (auto& p : peers_) {
      if (p.stats.connected || now - p.since < warn_after_) continue;
      if (p.warned && (repeat_.count() == 0 || now < p.next_reminder)) continue;
      // An attempt still open and no failure yet: nothing has answered, as with a timeout.
      static const std::string kNoAnswer = "connection timed out";
      const std::string& reason = p.run_count == 0 && p.attempt_open ? kNoAnswer : p.run_reason;
      lines.push_back(owner_ + " " + p.stats.endpoint + (p.warned ? " still" : "") + " unreachable for " +
                      seconds(now - p.since) + " (" + why(p, now) + "); " + hint(reason, p.handshaking, other_));
      p.warned = true;
      p.next_reminder = now + repeat_;
    }
  }
  for (const auto& line : lines) log_limit_.log(LogLevel::warn, line);
}

void PeerHealth::add_unsent(std::string_view endpoint, uint64_t events) {
  std::lock_guard lock(mu_);
  if (Peer* p = find(endpoint)) p->stats.events_unsent += events;
}

std::vector<PeerStats> PeerHealth::snapshot() const {
  std::lock_guard lock(mu_);
  std::vector<PeerStats> out;
  out.reserve(peers_.size());
  for (const auto& p : peers_) out.push_back(p.stats);
  return out;
}

}  // namespace reqbus::detail
