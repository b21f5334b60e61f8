// The publisher thread: owns the local XPUB (inproc, lossless via XPUB_NODROP) and the tcp PUB
// facing peers. It drains the publish queue, coalesces consecutive events of one channel
// (topic + scope) into frames, and stamps each frame with the channel's sequence number.
#include <cstring>

#include "bus/bus_impl.hpp"
#include "bus/frame.hpp"
#include "bus/tsan.hpp"

namespace reqbus {
namespace {

constexpr auto kIdleWait = std::chrono::milliseconds(200);
constexpr auto kSendSlice = std::chrono::milliseconds(20);
constexpr size_t kDrainBatch = 1024;

zmq::message_t to_message(std::string&& s) {
  auto* owned = new std::string(std::move(s));
  detail::tsan_release(owned->data());  // readers and the deleter acquire it
  return zmq::message_t(owned->data(), owned->size(),
                        [](void* data, void* hint) {
                          detail::tsan_acquire(data);
                          delete static_cast<std::string*>(hint);
                        },
                        owned);
}

}  // namespace

void Bus::Impl::publisher_main(std::promise<void> started) {
  std::optional<zmq::socket_t> local, tcp, uplink;
  try {
    local.emplace(context_, zmq::socket_type::xpub);
    local->set(zmq::sockopt::xpub_nodrop, 1);  // wait (bounded) instead of dropping silently
    local->set(zmq::sockopt::sndhwm, options.inproc_hwm);
    local->set(zmq::sockopt::linger, 0);
    local->bind(local_endpoint_);
    if (!options.bind.empty()) {
      tcp.emplace(context_, zmq::socket_type::pub);
      tcp->set(zmq::sockopt::sndhwm, options.tcp_hwm);
      tcp->set(zmq::sockopt::linger, 1000);  // let queued frames reach peers at close
      if (curve) detail::make_curve_server(*tcp, keys);
      tcp->bind(options.bind);
      bound_endpoint = tcp->get(zmq::sockopt::last_endpoint);
    }
    if (!uplinks.empty()) {  // a forwarder's frontend: we are its CURVE client
      uplink.emplace(context_, zmq::socket_type::pub);
      uplink->set(zmq::sockopt::sndhwm, options.tcp_hwm);
      uplink->set(zmq::sockopt::linger, 1000);
      uplink->set(zmq::sockopt::reconnect_ivl, 100);
      uplink->set(zmq::sockopt::reconnect_ivl_max, 5000);
      for (const auto& u : uplinks) {
        if (curve) detail::make_curve_client(*uplink, keys, u.server_key);
        uplink->connect(u.endpoint);
      }
    }
    started.set_value();
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }

  std::vector<PendingEvent> batch;
  while (!abort_.load(std::memory_order_relaxed)) {
    const size_t n = queue_.pop(batch, kDrainBatch, std::chrono::steady_clock::now() + kIdleWait);
    drain_subscriptions(*local);
    if (n > 0) {
      publish_batch(batch, n, *local, tcp ? &*tcp : nullptr, uplink ? &*uplink : nullptr);
    } else if (queue_.closed_and_empty()) {
      break;
    }
  }
  // What the deadline left behind is dropped, and counted.
  dropped_close_deadline_ += queue_.clear();
  zmq::message_t key(detail::kCloseKey.data(), detail::kCloseKey.size()), body;
  if (!abort_.load()) send_blocking(*local, key, body);
}

void Bus::Impl::publish_batch(std::vector<PendingEvent>& batch, size_t n, zmq::socket_t& local,
                              zmq::socket_t* tcp, zmq::socket_t* uplink) {
  size_t i = 0;
  std::string payload, key;
  while (i < n) {
    // One frame: consecutive events of the same channel, up to the frame limits.
    const PendingEvent& first = batch[i];
    size_t j = i, bytes = 0;
    while (j < n && j - i < options.max_events_per_frame && batch[j].scope == first.scope &&
           batch[j].topic == first.topic &&
           (j == i || bytes + batch[j].record.size() <= options.max_frame_bytes)) {
      bytes += batch[j].record.size();
      ++j;
    }
    const uint32_t count = uint32_t(j - i);
    key = detail::envelope_key(first.topic, first.scope);
    uint64_t& seq = channel_seq_[key];
    payload.clear();
    payload.reserve(bytes + 64 + options.node_id.size());
    detail::append_frame_header(payload, options.node_id, epoch, seq, count);
    for (size_t k = i; k < j; ++k) payload.append(batch[k].record);
    seq += count;

    zmq::message_t key_msg(key.data(), key.size());
    zmq::message_t body = to_message(std::move(payload));
    payload = std::string();
    for (zmq::socket_t* out : {tcp, uplink}) {
      if (!out || first.scope != detail::kScopeCluster) continue;
      // PUB never blocks: past tcp_hwm ZeroMQ drops, and peers count the gap.
      zmq::message_t tcp_key(key.data(), key.size()), tcp_body;
      tcp_body.copy(body);  // shares the buffer (reference counted)
      out->send(tcp_key, zmq::send_flags::sndmore);
      out->send(tcp_body, zmq::send_flags::none);
    }
    if (send_blocking(local, key_msg, body)) {
      frames_sent_.fetch_add(1, std::memory_order_relaxed);
      events_sent_.fetch_add(count, std::memory_order_relaxed);
    } else {
      dropped_close_deadline_.fetch_add(n - i, std::memory_order_relaxed);
      return;
    }
    i = j;
  }
}

// Sends a two-part message on the XPUB_NODROP socket, waiting while a subscriber's pipe is
// full. Returns false only when close() has passed its deadline.
bool Bus::Impl::send_blocking(zmq::socket_t& socket, zmq::message_t& key, zmq::message_t& body) {
  bool key_sent = false;
  while (true) {
    if (!key_sent) key_sent = socket.send(key, zmq::send_flags::sndmore | zmq::send_flags::dontwait).has_value();
    if (key_sent && socket.send(body, zmq::send_flags::dontwait)) return true;
    if (abort_.load(std::memory_order_relaxed)) return false;
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLOUT | ZMQ_POLLIN, 0};
    zmq::poll(&item, 1, kSendSlice);
    drain_subscriptions(socket);
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
