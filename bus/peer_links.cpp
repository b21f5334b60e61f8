// PeerLinks (peer_links.hpp): a socket's connections to its tcp endpoints, from its monitor.
#include "bus/peer_links.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <zmq.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace reqbus::detail {
namespace {

// The connect-side events PeerHealth reads (peer_health.hpp: what libzmq reports when).
constexpr int kMonitoredEvents = ZMQ_EVENT_CONNECT_DELAYED | ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CLOSED |
                                 ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);

bool handshake_failed(uint16_t event) {
  return event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ||
         event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
}

// "tcp://HOST:PORT" (HOST may be "[v6]") split into host (without brackets) and port; false
// for anything else.
bool split_tcp(std::string_view endpoint, std::string& host, std::string& port) {
  if (!endpoint.starts_with("tcp://")) return false;
  endpoint.remove_prefix(6);
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view h = endpoint.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  host.assign(h);
  port.assign(endpoint.substr(colon + 1));
  return true;
}

// Whether `host` resolves to the numeric address `ip` (blocking: only called for an event
// several endpoints' ports could match).
bool resolves_to(const std::string& host, const std::string& ip) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return false;
  bool match = false;
  for (addrinfo* a = found; a && !match; a = a->ai_next) {
    char text[NI_MAXHOST];
    match = getnameinfo(a->ai_addr, a->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST) == 0 && ip == text;
  }
  freeaddrinfo(found);
  return match;
}

}  // namespace

PeerLinks::PeerLinks(zmq::context_t& context, zmq::socket_t& socket, const std::vector<PeerEndpoint>& endpoints,
                     const CurveKeys* keys, const std::string& monitor_endpoint, PeerHealth& health,
                     std::string owner, std::string field, Counters counters, Role role, RateLimiter& log)
    : socket_(socket),
      keys_(keys),
      health_(health),
      owner_(std::move(owner)),
      field_(std::move(field)),
      counters_(counters),
      role_(role),
      log_(log),
      monitor_(context, zmq::socket_type::pair) {
  for (const auto& e : endpoints)
    if (std::none_of(links_.begin(), links_.end(), [&](const Link& l) { return l.peer.endpoint == e.endpoint; }))
      links_.push_back(Link{e});
  if (zmq_socket_monitor(socket_.handle(), monitor_endpoint.c_str(), kMonitoredEvents) != 0) throw zmq::error_t();
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(monitor_endpoint);
  for (auto& link : links_) connect(link);
}

PeerLinks::~PeerLinks() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }

PeerLinks::Link* PeerLinks::find(const std::string& endpoint) {
  for (auto& l : links_)
    if (l.peer.endpoint == endpoint) return &l;
  if (auto it = aliases_.find(endpoint); it != aliases_.end()) return &links_[it->second];
  std::string ip, port, host, link_port;
  if (!split_tcp(endpoint, ip, port)) return nullptr;
  std::vector<size_t> same_port;
  for (size_t i = 0; i < links_.size(); ++i)
    if (split_tcp(links_[i].peer.endpoint, host, link_port) && link_port == port) same_port.push_back(i);
  std::optional<size_t> match;
  if (same_port.size() == 1) {
    match = same_port[0];
  } else {
    for (size_t i : same_port)
      if (split_tcp(links_[i].peer.endpoint, host, link_port) && resolves_to(host, ip)) {
        match = i;
        break;
      }
  }
  if (!match) return nullptr;
  aliases_.emplace(endpoint, *match);
  return &links_[*match];
}

void PeerLinks::connect(Link& link) {
  if (keys_) make_curve_client(socket_, *keys_, link.peer.server_key);
  socket_.connect(link.peer.endpoint);
  link.pipe_subscribed = false;  // a new pipe: nothing subscribed through it yet
  link.unsent += std::exchange(link.queued_events, 0);  // the old pipe's frames went with it
  link.frames_while_down = 0;
}

void PeerLinks::set_up(Link& link, bool up) {
  if (link.up == up) return;
  link.up = up;
  up ? ++up_count_ : --up_count_;
}

void PeerLinks::drain(bool act) {
  zmq::message_t part;
  uint16_t event_id = 0;
  while (monitor_.recv(part, zmq::recv_flags::dontwait)) {
    if (part.more()) {  // the event id (uint16) and value; the last part is the endpoint
      if (part.size() >= 2) std::memcpy(&event_id, part.data(), 2);
      continue;
    }
    on_event(event_id, part.to_string(), act);
  }
}

void PeerLinks::hand_over_unsent() {
  for (auto& link : links_)
    if (link.unsent) health_.add_unsent(link.peer.endpoint, std::exchange(link.unsent, 0));
}

void PeerLinks::service() {
  drain(true);
  hand_over_unsent();
  const auto now = std::chrono::steady_clock::now();
  for (auto& link : links_) {
    if (!link.pending || now < link.next_allowed) continue;
    link.pending = false;
    link.next_allowed = now + link.backoff;
    link.backoff = std::min(link.backoff * 2, kMaxBackoff);
    health_.reconnecting(link.peer.endpoint);
    try {
      socket_.disconnect(link.peer.endpoint);
    } catch (const zmq::error_t&) {  // already gone: nothing to undo
    }
    connect(link);
  }
  health_.tick();
}

void PeerLinks::finish() {
  drain(false);
  for (auto& link : links_)
    if (!link.up) link.unsent += std::exchange(link.queued_events, 0);
  hand_over_unsent();
}

void PeerLinks::on_event(uint16_t event, const std::string& endpoint, bool act) {
  Link* link = find(endpoint);
  const bool disconnected = event == ZMQ_EVENT_DISCONNECTED;
  // A connection that closes before its handshake is done failed it: libzmq reports only the
  // disconnect when it refused the peer's greeting (not a ZeroMQ endpoint: an HTTP server).
  const bool failed = handshake_failed(event) || (disconnected && link && link->handshaking);
  if (failed) counters_.handshake_failures->fetch_add(1, std::memory_order_relaxed);
  if (!link) return;  // not one of ours (a failed handshake is counted above)
  link->handshaking = event == ZMQ_EVENT_CONNECTED;
  if (disconnected && link->up) counters_.disconnects->fetch_add(1, std::memory_order_relaxed);
  if (link->unsent) health_.add_unsent(link->peer.endpoint, std::exchange(link->unsent, 0));  // before the event
  health_.on_event(event, link->peer.endpoint);
  if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
    set_up(*link, true);
    link->pipe_subscribed = true;
    link->frames_while_down = 0;
    link->queued_events = 0;  // delivered now
    link->backoff = std::chrono::milliseconds(100);
    link->handshake_failure_logged = false;
    return;
  }
  if (!disconnected && !failed) return;  // PeerHealth's only
  const bool was_up = link->up;
  set_up(*link, false);
  if (disconnected && !failed && !was_up) return;  // the close of an attempt that failed already
  if (!act) return;
  if (!failed) {  // a working connection lost: libzmq reconnects it, unless the role says we do
    link->pending = role_.reconnect_after_lost_connection;
    return;
  }
  // A failed handshake (a wrong key, refused, not a ZeroMQ endpoint): logged once until one
  // succeeds, and taken from libzmq, which retries every ~140 ms or, after a protocol error,
  // never: connected again in service(), with our backoff.
  if (!std::exchange(link->handshake_failure_logged, true))
    log_.log(LogLevel::warn, owner_ + ": " +
                                 (keys_ ? "CURVE handshake with " + link->peer.endpoint + " failed (wrong server key in " +
                                              field_ + ", our key is not on its allow-list, or it is not the endpoint meant" +
                                              (field_ == "publish_to" ? ": a forwarder's frontend, not its backend)" : ")")
                                        : "ZeroMQ handshake with " + link->peer.endpoint +
                                              " failed (is it a reqbus bus endpoint, without CURVE?)"));
  health_.reconnecting(link->peer.endpoint);
  try {
    socket_.disconnect(link->peer.endpoint);
  } catch (const zmq::error_t&) {  // already gone
  }
  link->pending = true;
}

}  // namespace reqbus::detail
