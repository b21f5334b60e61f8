// The publisher thread: owns the local XPUB (inproc, lossless via XPUB_NODROP) and the tcp PUB
// facing peers. It takes the frames broadcast() callers filled in the publish queue
// (bus/frame_queue.hpp), stamps each with its channel's sequence number in the header room at
// its front, and sends the buffer itself (no copy) to local subscribers and, for cluster scope,
// to peers.
#include <cerrno>
#include <cstring>

#include "bus/bus_impl.hpp"
#include "bus/frame.hpp"
#include "bus/peer_links.hpp"
#include "bus/tsan.hpp"

namespace reqbus {
namespace {

constexpr auto kIdleWait = std::chrono::milliseconds(200);
constexpr auto kSendSlice = std::chrono::milliseconds(20);
constexpr auto kSpinFor = std::chrono::milliseconds(1);  // polling a full pipe before sleeping (send_blocking)
// Frames taken from the queue at a time: at most 4 x max_events_per_frame events (2,048 by
// default) sit outside the queue's bounds while the publisher waits on a slow subscriber.
constexpr size_t kFramesPerPop = 4;
// How often the publish_to endpoints' monitor is read (PeerLinks::service), between frames.
constexpr auto kServiceEvery = std::chrono::milliseconds(100);

// The frame's bytes from `begin` become the message; ZeroMQ's release returns the buffer to the
// pool it came from (on whichever thread lets go of the message last).
zmq::message_t to_message(std::unique_ptr<detail::FrameBuffer> frame, size_t begin,
                          const std::shared_ptr<detail::FramePool>& pool) {
  frame->home = pool;
  detail::FrameBuffer* owned = frame.release();
  char* data = owned->bytes.data() + begin;
  zmq::message_t message(data, owned->bytes.size() - begin,
                         [](void* data, void* hint) {
                           detail::tsan_acquire(data);
                           std::unique_ptr<detail::FrameBuffer> b(static_cast<detail::FrameBuffer*>(hint));
                           auto home = b->home;
                           home->put(std::move(b));
                         },
                         owned);
  // Readers and the release acquire it: after the last touch of the buffer and of libzmq's
  // allocation for the message, either of which the thread that lets go of the message last
  // frees.
  detail::tsan_release(data);
  return message;
}

}  // namespace

void Bus::Impl::publisher_main(std::promise<void> started) {
  std::optional<zmq::socket_t> local, tcp, uplink;
  std::optional<detail::PeerLinks> uplink_links;
  try {
    make_lossless_xpub(local, local_endpoint_);
    if (!options.bind.empty()) {
      tcp.emplace(context_, zmq::socket_type::pub);
      tcp->set(zmq::sockopt::sndhwm, options.tcp_hwm);
      tcp->set(zmq::sockopt::linger, 1000);  // let queued frames reach peers at close
      if (detail::names_ipv6(options.bind)) tcp->set(zmq::sockopt::ipv6, 1);
      if (curve) detail::make_curve_server(*tcp, keys);
      tcp->bind(options.bind);
      bound_endpoint = tcp->get(zmq::sockopt::last_endpoint);
    }
    if (!uplinks.empty()) {  // a forwarder's frontend: we are its CURVE client
      uplink.emplace(context_, zmq::socket_type::pub);
      uplink->set(zmq::sockopt::sndhwm, options.tcp_hwm);
      uplink->set(zmq::sockopt::linger, 1000);
      if (detail::names_ipv6(uplinks)) uplink->set(zmq::sockopt::ipv6, 1);
      uplink->set(zmq::sockopt::reconnect_ivl, 100);
      uplink->set(zmq::sockopt::reconnect_ivl_max, 5000);
      uplink->set(zmq::sockopt::connect_timeout, int(options.peer_connect_timeout.count()));
      // A ZAP domain makes libzmq refuse a peer it takes for ZMTP 1.0 (any reply whose first byte
      // is not 0xFF: an HTTP server's), as CURVE does. Without it a plaintext PUB "talked" ZMTP
      // 1.0 to such a server and libzmq 4.3.4 aborted the process (zmtp_engine.cpp:463: the
      // subscription it injects for 1.0 peers, pushed into a session whose pipe was gone). No
      // ZAP request is made: the context has no handler in plaintext mode.
      if (!curve) uplink->set(zmq::sockopt::zap_domain, "reqbus");
      uplink_links.emplace(context_, *uplink, uplinks, curve ? &keys : nullptr, local_endpoint_ + "-uplink-monitor",
                           *uplink_health_, "bus '" + options.name + "'", "publish_to",
                           detail::PeerLinks::Counters{&handshake_failures_, &peer_disconnects_},
                           detail::PeerLinks::Role{false, size_t(options.tcp_hwm)}, link_log_);
    }
    started.set_value();
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }

  std::vector<std::unique_ptr<detail::FrameBuffer>> frames;
  auto next_service = std::chrono::steady_clock::now();
  while (!abort_.load(std::memory_order_relaxed)) {
    const size_t n = queue_.pop(frames, kFramesPerPop, std::chrono::steady_clock::now() + kIdleWait);
    drain_subscriptions(*local);
    if (n > 0) publish_frames(frames, *local, tcp ? &*tcp : nullptr, uplink_links ? &*uplink_links : nullptr);
    if (uplink_links && std::chrono::steady_clock::now() >= next_service) {
      uplink_links->service();
      next_service = std::chrono::steady_clock::now() + kServiceEvery;
    }
    if (n == 0 && queue_.closed_and_empty()) break;
  }
  if (uplink_links) uplink_links->finish();  // what was sent while an uplink was down
  // What the deadline left behind is dropped, and counted.
  dropped_close_deadline_ += queue_.clear();
  zmq::message_t key(detail::kCloseKey.data(), detail::kCloseKey.size()), body;
  if (!abort_.load()) send_blocking(*local, key, body);
}

void Bus::Impl::publish_frames(std::vector<std::unique_ptr<detail::FrameBuffer>>& frames, zmq::socket_t& local,
                                zmq::socket_t* tcp, detail::PeerLinks* uplinks) {
  zmq::socket_t* uplink = uplinks ? &uplinks->socket() : nullptr;
  std::string header, key;
  for (size_t i = 0; i < frames.size(); ++i) {
    detail::FrameBuffer& f = *frames[i];
    const uint32_t count = f.count();
    const char scope = f.scope;
    key = detail::envelope_key(f.topic, scope);
    uint64_t& seq = channel_seq_[key];
    header.clear();
    detail::append_frame_header(header, options.node_id, epoch, seq, count);
    seq += count;
    // The header goes into the room left in front of the first record (sized for it).
    const size_t begin = f.start - header.size();
    std::memcpy(f.bytes.data() + begin, header.data(), header.size());

    zmq::message_t key_msg(key.data(), key.size());
    zmq::message_t body = to_message(std::move(frames[i]), begin, queue_.pool());
    for (zmq::socket_t* out : {tcp, uplink}) {
      if (!out || scope != detail::kScopeCluster) continue;
      // PUB never blocks: past tcp_hwm ZeroMQ drops, and peers count the gap.
      zmq::message_t tcp_key(key.data(), key.size()), tcp_body;
      tcp_body.copy(body);  // shares the buffer (reference counted)
      out->send(tcp_key, zmq::send_flags::sndmore);
      out->send(tcp_body, zmq::send_flags::none);
      if (out == uplink) uplinks->sent(count);
    }
    if (send_blocking(local, key_msg, body)) {
      frames_sent_.fetch_add(1, std::memory_order_relaxed);
      events_sent_.fetch_add(count, std::memory_order_relaxed);
    } else {
      size_t left = count;
      for (size_t k = i + 1; k < frames.size(); ++k) left += frames[k]->count();
      dropped_close_deadline_.fetch_add(left, std::memory_order_relaxed);
      frames.clear();
      return;
    }
  }
  frames.clear();
}

void Bus::Impl::make_lossless_xpub(std::optional<zmq::socket_t>& socket, const std::string& endpoint) {
  socket.emplace(context_, zmq::socket_type::xpub);
  socket->set(zmq::sockopt::xpub_nodrop, 1);  // wait (bounded) instead of dropping silently
  socket->set(zmq::sockopt::sndhwm, options.inproc_hwm);
  socket->set(zmq::sockopt::sndtimeo, int(kSendSlice.count()));  // see send_blocking
  socket->set(zmq::sockopt::linger, 0);
  socket->bind(endpoint);
}

// Sends a two-part message on an XPUB_NODROP socket, waiting while a subscriber's pipe is
// full. Returns false only when close() has passed its deadline.
// A full pipe often has room again within a millisecond (its reader is busy, not stuck): for
// kSpinFor the sends poll without sleeping, which keeps a fast subscriber fed. After that the
// wait is libzmq's own blocking send (sndtimeo = kSendSlice, make_lossless_xpub), which sleeps
// until the reader frees room. zmq_poll alone cannot wait for that, because an XPUB always
// reports POLLOUT: polling for it spun the publisher thread on a core for as long as a
// subscriber was behind (30 % of ingest_bench's e2e samples, taken from the subscriber it
// waited for).
bool Bus::Impl::send_blocking(zmq::socket_t& socket, zmq::message_t& key, zmq::message_t& body) {
  bool key_sent = false;
  std::optional<std::chrono::steady_clock::time_point> spin_until;
  while (true) {
    const bool spin = !spin_until || std::chrono::steady_clock::now() < *spin_until;
    const auto flags = spin ? zmq::send_flags::dontwait : zmq::send_flags::none;
    try {
      if (!key_sent) key_sent = socket.send(key, zmq::send_flags::sndmore | flags).has_value();
      if (key_sent && socket.send(body, flags)) return true;
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal in a program that does not block them: try again
    }
    if (abort_.load(std::memory_order_relaxed)) return false;
    if (!spin_until) spin_until = std::chrono::steady_clock::now() + kSpinFor;
    if (spin) {
      // Processes libzmq's commands (the reader's "room again") and reads subscriptions.
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(0));
    }
    drain_subscriptions(socket);  // readiness acks while we wait
  }
}

// Reads subscription notices from an XPUB socket and acks readiness tokens.
void Bus::Impl::drain_subscriptions(zmq::socket_t& xpub) {
  zmq::message_t notice;
  while (xpub.recv(notice, zmq::recv_flags::dontwait)) {
    const auto* data = static_cast<const char*>(notice.data());
    if (notice.size() > 2 && data[0] == 1 && data[1] == detail::kReadyPrefix)
      ready_.ack(std::string(data + 2, notice.size() - 2));
  }
}

}  // namespace reqbus
