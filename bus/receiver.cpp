// The receiver thread: owns the SUB socket connected to tcp peers and the inproc XPUB that
// re-publishes their frames to this node's cluster-scope subscribers. Every frame from the
// network is decoded and checked before it is forwarded; bad ones are dropped and counted.
#include <algorithm>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "bus/bus_impl.hpp"
#include "bus/frame.hpp"
#include "bus/gap_tracker.hpp"
#include "bus/peer_links.hpp"
#include "bus/skip_notice.hpp"

namespace reqbus {
namespace {

// Writes `text` to `path` atomically (temp file + rename): a crash leaves the old or the new file.
bool write_state(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

void Bus::Impl::receiver_main(std::promise<void> started) {
  std::optional<zmq::socket_t> peers, remote;
  std::optional<detail::PeerLinks> links;
  try {
    peers.emplace(context_, zmq::socket_type::sub);
    // ZeroMQ's own limit is the hard stop (it disconnects the peer); below it we drop and count.
    peers->set(zmq::sockopt::maxmsgsize, int64_t(options.max_message_bytes) * 2);
    peers->set(zmq::sockopt::rcvhwm, options.tcp_hwm);
    peers->set(zmq::sockopt::linger, 0);
    if (detail::names_ipv6(this->peers)) peers->set(zmq::sockopt::ipv6, 1);
    peers->set(zmq::sockopt::reconnect_ivl, 100);
    peers->set(zmq::sockopt::reconnect_ivl_max, 5000);  // backoff when a peer stays down
    peers->set(zmq::sockopt::connect_timeout, int(options.peer_connect_timeout.count()));
    peers->set(zmq::sockopt::subscribe, "");
    if (!curve) peers->set(zmq::sockopt::zap_domain, "reqbus");  // refuse ZMTP 1.0 peers (publisher.cpp)
    links.emplace(context_, *peers, this->peers, curve ? &keys : nullptr, remote_endpoint_ + "-monitor", *peer_health_,
                  "bus '" + options.name + "'", "peers",
                  detail::PeerLinks::Counters{&handshake_failures_, &peer_disconnects_}, detail::PeerLinks::Role{},
                  link_log_);

    make_lossless_xpub(remote, remote_endpoint_);
    started.set_value();
  } catch (...) {
    started.set_exception(std::current_exception());
    return;
  }

  // count_restarts: a peer that restarted while we were connected to its previous epoch lost
  // its first events to our reconnect (PUB cannot replay): they are remote_gaps too.
  detail::GapTracker gaps(detail::GapTracker::kDefaultMaxChannels, /*count_restarts=*/true);
  if (!options.peer_state_file.empty()) {
    std::ifstream in(options.peer_state_file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    try {
      const size_t n = gaps.load(text.str());
      if (n) log(LogLevel::info, "bus '" + options.name + "': resumed " + std::to_string(n) +
                                     " peer channels from " + options.peer_state_file);
    } catch (const std::exception&) {
      log(LogLevel::warn, "bus '" + options.name + "': ignored a malformed " + options.peer_state_file);
    }
  }
  auto next_state_save = std::chrono::steady_clock::now() + options.peer_state_interval;
  bool state_dirty = false;
  auto save_state = [&] {
    if (options.peer_state_file.empty() || !state_dirty) return;
    if (!write_state(options.peer_state_file, gaps.save()))
      bad_input_log_.log(LogLevel::warn, "bus '" + options.name + "': cannot write " + options.peer_state_file);
    state_dirty = false;
  };
  detail::FrameHeader header;
  std::vector<Message> scratch;
  // Where this frame stands in its origin's sequence: missing events are remote_gaps; what the
  // bounded tracker forgot, and jumps it did not believe, are exported too (the jumps logged).
  auto observe = [&](std::string_view key, uint64_t count) {
    const uint64_t resyncs = gaps.resyncs(), restarts = gaps.restarts(), flips = gaps.epoch_flips();
    const uint64_t missing = gaps.observe(header.node_id, key, header.epoch, header.first_seq, uint32_t(count));
    remote_gaps_.fetch_add(missing, std::memory_order_relaxed);
    if (gaps.restarts() != restarts && missing > 0)
      bad_input_log_.log(LogLevel::warn, "bus '" + options.name + "': " + header.node_id + " restarted (new epoch " +
                                             std::to_string(header.epoch) + "); its first " + std::to_string(missing) +
                                             " events on '" + std::string(key.substr(0, key.find('\0'))) +
                                             "' were sent before we reconnected: counted as gaps");
    if (gaps.epoch_flips() != flips)
      duplicate_id_log_.log(LogLevel::error, "bus '" + options.name + "': two nodes publish with the node id '" + header.node_id +
                                              "' (epochs alternate, now " + std::to_string(header.epoch) +
                                              "): node ids must be unique; their gaps cannot be counted");
    if (gaps.resyncs() != resyncs) {
      remote_gap_resyncs_.store(gaps.resyncs(), std::memory_order_relaxed);
      bad_input_log_.log(LogLevel::warn, "bus '" + options.name + "': a frame from " + header.node_id +
                                             " jumped more than 2^32 events ahead: taken as a new numbering, not as missing events");
    }
    peer_channels_forgotten_.store(gaps.forgotten(), std::memory_order_relaxed);
    state_dirty = true;
  };
  auto reject = [&](codec::DecodeError why, std::string_view detail_text) {
    malformed_[size_t(why)].fetch_add(1, std::memory_order_relaxed);
    bad_input_log_.log(LogLevel::warn, "bus '" + options.name + "': dropped a frame from a peer: " +
                                           codec::to_string(why) + std::string(detail_text));
  };

  while (!receiver_stop_.load() && !abort_.load()) {
    zmq::pollitem_t items[] = {{peers->handle(), 0, ZMQ_POLLIN, 0},
                               {remote->handle(), 0, ZMQ_POLLIN, 0},
                               links->monitor_item()};
    zmq::poll(items, 3, std::chrono::milliseconds(100));
    if (items[1].revents & ZMQ_POLLIN) drain_subscriptions(*remote);
    if (std::chrono::steady_clock::now() >= next_state_save) {
      save_state();
      next_state_save = std::chrono::steady_clock::now() + options.peer_state_interval;
    }
    links->service();
    if (!(items[0].revents & ZMQ_POLLIN)) continue;

    for (int burst = 0; burst < 256; ++burst) {
      std::vector<zmq::message_t> parts;
      zmq::message_t part;
      if (!peers->recv(part, zmq::recv_flags::dontwait)) break;
      parts.push_back(std::move(part));
      while (parts.back().more() && parts.size() <= 3) {
        zmq::message_t next;
        if (!peers->recv(next)) break;
        parts.push_back(std::move(next));
      }
      while (parts.back().more()) {  // drain a message with too many parts
        zmq::message_t extra;
        if (!peers->recv(extra)) break;
        parts.back().move(extra);
      }
      if (parts.size() != 2) {
        reject(codec::DecodeError::wrong_shape, " (expected 2 parts)");
        continue;
      }
      const std::string_view key(static_cast<const char*>(parts[0].data()), parts[0].size());
      std::string_view topic;
      char scope = 0;
      if (!detail::parse_envelope_key(key, topic, scope) || scope != detail::kScopeCluster) {
        reject(codec::DecodeError::wrong_shape, " (bad envelope key)");
        continue;
      }
      if (auto error = detail::decode_frame(static_cast<const char*>(parts[1].data()),
                                            parts[1].size(), options.max_message_bytes, header,
                                            scratch)) {
        reject(*error, "");
        // When the header was readable the frame's events are counted here, as rejected, and
        // neither this node's gap tracker nor its subscribers' may count them again as missing.
        if (header.declared > 0 && header.node_id != options.node_id) {
          remote_rejected_events_.fetch_add(header.declared, std::memory_order_relaxed);
          observe(key, header.declared);
          const std::string notice_key = detail::envelope_key(topic, detail::kScopeSkipped);
          const std::string notice = detail::encode_skip(header);
          zmq::message_t notice_key_msg(notice_key.data(), notice_key.size());
          zmq::message_t notice_msg(notice.data(), notice.size());
          if (!send_blocking(*remote, notice_key_msg, notice_msg)) break;
        }
        continue;
      }
      if (header.node_id == options.node_id) {
        if (header.epoch == epoch) {  // our own frame, back through a forwarder
          echoes_ignored_.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        // Another Bus publishes with our id. Its events are ignored: mixed with ours (and our
        // peers' view of us) they would corrupt every origin's sequence tracking.
        duplicate_node_id_frames_.fetch_add(1, std::memory_order_relaxed);
        duplicate_id_log_.log(LogLevel::error, "bus '" + options.name + "': another node publishes with this node's id '" +
                                                options.node_id + "' (epoch " + std::to_string(header.epoch) +
                                                "): node ids must be unique; its events are ignored");
        continue;
      }
      remote_frames_.fetch_add(1, std::memory_order_relaxed);
      remote_events_.fetch_add(header.count, std::memory_order_relaxed);
      observe(key, header.count);
      if (!send_blocking(*remote, parts[0], parts[1])) break;
    }
  }
  save_state();
  zmq::message_t key(detail::kCloseKey.data(), detail::kCloseKey.size()), body;
  if (!abort_.load()) send_blocking(*remote, key, body);
}

}  // namespace reqbus
