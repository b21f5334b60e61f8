// PeerLinks (peer_links.hpp): a socket's connections to its tcp endpoints, from its monitor.
#include "bus/peer_links.hpp"

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

}  // namespace

PeerLinks::PeerLinks(zmq::context_t& context, zmq::socket_t& socket, const std::vector<PeerEndpoint>& endpoints,
                     const CurveKeys* keys, const std::string& monitor_endpoint, PeerHealth& health,
                     std::string owner, std::string field, Counters counters, RateLimiter& log)
    : socket_(socket),
      keys_(keys),
      health_(health),
      owner_(std::move(owner)),
      field_(std::move(field)),
      counters_(counters),
      log_(log),
      monitor_(context, zmq::socket_type::pair) {
  for (const auto& e : endpoints)
    if (!find(e.endpoint)) links_.push_back(Link{e});
  if (zmq_socket_monitor(socket_.handle(), monitor_endpoint.c_str(), kMonitoredEvents) != 0) throw zmq::error_t();
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(monitor_endpoint);
  for (const auto& link : links_) connect(link);
}

PeerLinks::~PeerLinks() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }

PeerLinks::Link* PeerLinks::find(const std::string& endpoint) {
  for (auto& l : links_)
    if (l.peer.endpoint == endpoint) return &l;
  return nullptr;
}

void PeerLinks::connect(const Link& link) {
  if (keys_) make_curve_client(socket_, *keys_, link.peer.server_key);
  socket_.connect(link.peer.endpoint);
}

void PeerLinks::set_up(Link& link, bool up) {
  if (link.up == up) return;
  link.up = up;
  up ? ++up_count_ : --up_count_;
}

void PeerLinks::service() {
  zmq::message_t part;
  uint16_t event_id = 0;
  while (monitor_.recv(part, zmq::recv_flags::dontwait)) {
    if (part.more()) {  // the event id (uint16) and value; the last part is the endpoint
      if (part.size() >= 2) std::memcpy(&event_id, part.data(), 2);
      continue;
    }
    on_event(event_id, part.to_string());
  }
  const auto now = std::chrono::steady_clock::now();
  for (auto& link : links_) {
    if (link.unsent) health_.add_unsent(link.peer.endpoint, std::exchange(link.unsent, 0));
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

void PeerLinks::on_event(uint16_t event, const std::string& endpoint) {
  health_.on_event(event, endpoint);
  const bool disconnected = event == ZMQ_EVENT_DISCONNECTED, failed = handshake_failed(event);
  if (disconnected) counters_.disconnects->fetch_add(1, std::memory_order_relaxed);
  if (failed) counters_.handshake_failures->fetch_add(1, std::memory_order_relaxed);
  // Events name the endpoint as given to connect(), except after libzmq reconnected a lost
  // connection itself (the resolved address): counted above, not ours to act on.
  Link* link = find(endpoint);
  if (!link) return;
  if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
    set_up(*link, true);
    link->backoff = std::chrono::milliseconds(100);
    link->handshake_failure_logged = false;
    return;
  }
  if (!disconnected && !failed) return;  // PeerHealth's only
  set_up(*link, false);
  link->pending = true;
  if (disconnected) return;
  // A failed handshake (a wrong key, or refused): logged once until one succeeds, and taken
  // from libzmq's fast retries (connected again in service(), with our backoff).
  if (!std::exchange(link->handshake_failure_logged, true))
    log_.log(LogLevel::warn, owner_ + ": " +
                                 (keys_ ? "CURVE handshake with " + endpoint + " failed (wrong server key in " + field_ +
                                              ", or our key is not on its allow-list)"
                                        : "ZeroMQ handshake with " + endpoint +
                                              " failed (is it a reqbus bus endpoint, without CURVE?)"));
  health_.reconnecting(endpoint);
  try {
    socket_.disconnect(endpoint);
  } catch (const zmq::error_t&) {  // already gone
  }
}

}  // namespace reqbus::detail
