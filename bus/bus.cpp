// Bus API: options validation, broadcast (the caller-side hot path), subscribe, close, stats.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <random>

#include "bus/bus_impl.hpp"
#include "bus/thread_name.hpp"
#include "bus/codec_detail.hpp"
#include "bus/frame.hpp"
#include "reqbus/error.hpp"
#include "reqbus/uuid.hpp"

namespace reqbus {
namespace {

std::string default_node_id() {
  char host[256] = {0};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof(host), "node");
  return std::string(host).substr(0, 40) + "-" + std::to_string(getpid());
}

uint64_t random_epoch() {
  std::random_device rd;
  return (uint64_t(rd()) << 32 | rd()) | 1;  // never 0
}

BusOptions checked(BusOptions o) {
  auto fail = [](const std::string& what) { throw Error(ErrorCode::invalid_argument, "BusOptions." + what); };
  if (o.name.empty() || o.name.size() > 64) fail("name: must be 1..64 bytes");
  if (o.node_id.empty()) o.node_id = default_node_id();
  if (o.node_id.size() > RequestLogLimits::node_id) fail("node_id: longer than 64 bytes");
  if (o.queue_max_events < 1) fail("queue_max_events: must be >= 1");
  if (o.queue_max_bytes < (64 << 10)) fail("queue_max_bytes: must be >= 65536");
  if (o.publish_linger < std::chrono::microseconds::zero() || o.publish_linger > std::chrono::seconds(1))
    fail("publish_linger: must be 0..1 s");
  if (o.block_timeout.count() < 0) fail("block_timeout: negative");
  if (o.max_events_per_frame < 1 || o.max_events_per_frame > 4096) fail("max_events_per_frame: must be 1..4096");
  if (o.max_frame_bytes < 1024) fail("max_frame_bytes: must be >= 1024");
  if (o.inproc_hwm < 1) fail("inproc_hwm: must be >= 1");
  if (o.tcp_hwm < 0) fail("tcp_hwm: negative");
  if (o.max_message_bytes < 4096) fail("max_message_bytes: must be >= 4096");
  if (o.max_frame_bytes + 4096 > o.max_message_bytes) fail("max_frame_bytes: must leave 4 KiB under max_message_bytes");
  if (o.close_timeout.count() < 0) fail("close_timeout: negative");
  if (!o.bind.empty())
    if (auto why = tcp_endpoint_problem(o.bind); !why.empty()) fail("bind: " + why);
  for (const auto* list : {&o.peers, &o.publish_to}) {
    const std::string field = list == &o.peers ? "peers" : "publish_to";
    for (size_t i = 0; i < list->size(); ++i) {  // a peer may name the server's CURVE key after '#'
      const std::string& peer = (*list)[i];
      if (auto why = peer_endpoint_problem(peer); !why.empty()) fail(field + ": " + why);
      // Listed twice, it would be connected once, with the first entry's key.
      const std::string_view endpoint = std::string_view(peer).substr(0, peer.find('#'));
      for (size_t j = 0; j < i; ++j)
        if (std::string_view((*list)[j]).substr(0, (*list)[j].find('#')) == endpoint)
          fail(field + ": '" + std::string(endpoint.substr(0, 80)) + "' is listed twice");
    }
  }
  if (o.peer_state_interval.count() < 1) fail("peer_state_interval: must be >= 1 ms");
  if (o.peer_unreachable_after.count() < 1) fail("peer_unreachable_after: must be >= 1 ms");
  if (o.peer_unreachable_repeat.count() < 0) fail("peer_unreachable_repeat: negative");
  if (const int64_t ms = o.peer_connect_timeout.count(); ms != 0 && (ms < 100 || ms > std::numeric_limits<int>::max()))
    fail("peer_connect_timeout: must be 0 (the system's) or 100 ms..2^31-1 ms");
  const bool tcp = !o.bind.empty() || !o.peers.empty() || !o.publish_to.empty();
  const bool curve = !o.curve_secret_key.empty();
  if (curve && o.insecure_plaintext) fail("insecure_plaintext: set together with curve_secret_key; choose one");
  if (tcp && !curve && !o.insecure_plaintext)
    fail("curve_secret_key: tcp needs CURVE keys (`reqbus keygen`), or insecure_plaintext = true for plain tcp");
  if (curve) {
    if (!detail::valid_z85_key(o.curve_secret_key)) fail("curve_secret_key: not 40 characters of Z85");
    const std::string derived = detail::curve_public_of(o.curve_secret_key);
    if (o.curve_public_key.empty()) o.curve_public_key = derived;
    else if (o.curve_public_key != derived) fail("curve_public_key: does not belong to curve_secret_key");
    if (!o.bind.empty() && o.curve_allowed_clients.empty())
      fail("curve_allowed_clients: empty, so every client of `bind` would be refused");
    for (const auto& key : o.curve_allowed_clients)
      if (!detail::valid_z85_key(key)) fail("curve_allowed_clients: '" + key.substr(0, 60) + "' is not 40 characters of Z85");
  } else if (!o.curve_public_key.empty() || !o.curve_allowed_clients.empty()) {
    fail("curve_secret_key: curve_public_key/curve_allowed_clients are set but the secret key is not");
  }
  return o;
}

std::string make_endpoint(const BusOptions& o, uint64_t epoch, const char* role) {
  static std::atomic<uint64_t> instance{0};
  return "inproc://reqbus/" + o.name + "/" + std::to_string(epoch) + "-" +
         std::to_string(instance.fetch_add(1)) + "/" + role;
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Encodes the published form of an event: the caller's object is never modified.
// A missing id is a UUIDv7 of the event's own time (one clock read per event, not two).
void encode_published(std::string& out, const RequestLogView& r, const std::string& node, uint64_t seq) {
  char id[36];
  const bool need_id = r.request_id.empty();
  const int64_t at = r.inserted_at ? r.inserted_at : now_us();
  if (need_id) uuid_v7_into(id, at / 1000);
  codec::detail::append_request_log(out, r, need_id ? std::string_view(id, 36) : r.request_id, at, node, seq);
}

void encode_published(std::string& out, const AnalyticsEvent& e, const std::string& node, uint64_t seq) {
  char id[36];
  const bool need_id = e.message_id.empty();
  const int64_t at = e.timestamp ? e.timestamp : now_us();
  if (need_id) uuid_v7_into(id, at / 1000);
  codec::detail::append_analytics(out, e, need_id ? std::string_view(id, 36) : e.message_id, at, node, seq);
}

// SubscribeOptions::rcv_hwm = 0: enough full frames for max_pending events, 2..256.
int auto_rcv_hwm(size_t max_pending, size_t events_per_frame) {
  const size_t frames = (max_pending + events_per_frame - 1) / events_per_frame;
  return int(std::clamp<size_t>(frames, 2, 256));
}

std::vector<detail::PeerEndpoint> parse_peers(const BusOptions& o, const std::vector<std::string>& list,
                                              const char* field) {
  std::vector<detail::PeerEndpoint> out;
  for (const auto& entry : list) out.push_back(detail::parse_peer(entry, !o.curve_secret_key.empty(), field));
  return out;
}

}  // namespace

Bus::Impl::Impl(BusOptions opts)
    : options(checked(std::move(opts))),
      epoch(random_epoch()),
      curve(!options.curve_secret_key.empty()),
      keys{options.curve_secret_key, options.curve_public_key},
      peers(parse_peers(options, options.peers, "peers")),
      uplinks(parse_peers(options, options.publish_to, "publish_to")),
      context_(1),
      local_endpoint_(make_endpoint(options, epoch, "local")),
      remote_endpoint_(options.peers.empty() ? "" : make_endpoint(options, epoch, "remote")),
      queue_(options.queue_max_events, options.queue_max_bytes, options.max_events_per_frame,
             options.max_frame_bytes, options.node_id.size() + 6 * codec::detail::WireWriter::kMaxPrefix) {
  closed_.name = "(closed)";
  queue_.stamp_sequence();
  if (options.publish_linger > std::chrono::microseconds::zero())
    queue_.set_lazy_wake(options.publish_linger,
                         std::max<std::chrono::microseconds>(std::chrono::milliseconds(5), 4 * options.publish_linger));
  context_.set(zmq::ctxopt::blocky, 0);  // never hang in zmq_ctx_term on lingering sockets
  const bool tcp = !options.bind.empty() || !peers.empty() || !uplinks.empty();
  if (tcp && !curve)
    log(LogLevel::warn, "bus '" + options.name + "': insecure_plaintext: tcp traffic is neither authenticated nor "
                        "encrypted; anyone who can reach " + (options.bind.empty() ? std::string("the peers") : options.bind) +
                        " can read and inject events (docs/CLUSTER.md)");
  // The ZAP handler must be bound before the CURVE server socket: without one libzmq admits everybody.
  if (curve && !options.bind.empty())
    zap_ = std::make_unique<detail::ZapHandler>(context_, options.curve_allowed_clients, "bus '" + options.name + "'");
  auto health = [this](const std::vector<detail::PeerEndpoint>& list, const char* noun) {
    std::vector<std::string> endpoints;
    for (const auto& peer : list) endpoints.push_back(peer.endpoint);
    return std::make_unique<detail::PeerHealth>(endpoints, "bus '" + options.name + "': " + noun,
                                                options.peer_unreachable_after, options.peer_unreachable_repeat,
                                                options.peer_connect_timeout, system_clock(),
                                                std::string(noun) == "peer" ? "peer" : "forwarder");
  };
  if (!uplinks.empty()) uplink_health_ = health(uplinks, "publish_to");
  start_thread(publisher_, publisher_done_, &Impl::publisher_main, "rb-publisher");
  if (!remote_endpoint_.empty()) {
    peer_health_ = health(peers, "peer");
    try {
      start_thread(receiver_, receiver_done_, &Impl::receiver_main, "rb-receiver");
    } catch (...) {
      close(std::chrono::milliseconds(0));
      throw;
    }
  }
}

Bus::Impl::~Impl() { close(options.close_timeout); }

void Bus::Impl::start_thread(std::thread& thread, std::future<void>& done,
                             void (Impl::*main)(std::promise<void>), const char* name) {
  std::promise<void> started;
  auto started_future = started.get_future();
  std::promise<void> finished;
  done = finished.get_future();
  thread = detail::named_thread(name, [this, main, s = std::move(started), f = std::move(finished)]() mutable {
    (this->*main)(std::move(s));
    f.set_value();
  });
  try {
    started_future.get();
  } catch (const zmq::error_t& e) {
    thread.join();
    throw Error(ErrorCode::transport, std::string("bus '") + options.name + "': " + e.what());
  } catch (...) {
    thread.join();
    throw;
  }
}

template <class Event>
PublishStatus Bus::Impl::publish(const Event& event, std::string_view topic, char scope, bool offer) {
  if (!accepting_.load(std::memory_order_relaxed)) {
    dropped_closed_.fetch_add(1, std::memory_order_relaxed);
    return PublishStatus::closed;
  }
  auto reject = [this] {
    rejected_invalid_.fetch_add(1, std::memory_order_relaxed);
    return PublishStatus::invalid;
  };
  // A thread publishes to one topic, or a few: the last valid one it saw is not checked again.
  thread_local std::string checked_topic;
  if (topic != checked_topic) {
    if (!detail::check_topic(topic).empty()) return reject();
    checked_topic = topic;
  }
  if (!validate(event).empty()) return reject();
  // Encoded in this thread's own buffer (it stays in cache), then copied into the frame.
  thread_local std::string record;
  record.clear();
  encode_published(record, event, options.node_id, detail::FrameQueue::kSeqToStamp);  // push() numbers it
  const auto deadline = options.overflow == Overflow::block
                            ? std::chrono::steady_clock::now() + options.block_timeout
                            : std::chrono::steady_clock::time_point{};
  const detail::PushOutcome out = queue_.push(record, topic, scope, options.overflow, deadline);
  if (out.evicted) dropped_oldest_.fetch_add(out.evicted, std::memory_order_relaxed);
  switch (out.result) {
    case detail::PushResult::ok:
      return PublishStatus::ok;
    case detail::PushResult::dropped_newest:
      (offer ? offers_refused_ : dropped_newest_).fetch_add(1, std::memory_order_relaxed);
      return PublishStatus::dropped_newest;
    case detail::PushResult::timed_out:
      (offer ? offers_refused_ : dropped_timeout_).fetch_add(1, std::memory_order_relaxed);
      return PublishStatus::timed_out;
    case detail::PushResult::closed:
      break;
  }
  dropped_closed_.fetch_add(1, std::memory_order_relaxed);
  return PublishStatus::closed;
}

Subscription Bus::Impl::subscribe(SubscribeOptions o, Handler handler, ViewHandler view_handler) {
  if (auto why = detail::check_topic(o.topic); !why.empty())
    throw Error(ErrorCode::invalid_argument, "SubscribeOptions." + why);
  if (o.max_pending < 1) throw Error(ErrorCode::invalid_argument, "SubscribeOptions.max_pending: must be >= 1");
  if (o.rcv_hwm < 0) throw Error(ErrorCode::invalid_argument, "SubscribeOptions.rcv_hwm: negative");
  if (o.rcv_hwm == 0) o.rcv_hwm = auto_rcv_hwm(o.max_pending, options.max_events_per_frame);
  // Held until the subscription is live, so close() never runs while a subscriber is half
  // started (its threads and futures being created, its socket not yet connected).
  std::lock_guard start_lock(subscribe_mu_);
  const uint64_t n = subscriber_count_.fetch_add(1);
  if (o.name.empty()) o.name = o.topic + "#" + std::to_string(n);
  if (!accepting_.load()) throw Error(ErrorCode::closed, "subscribe: bus '" + options.name + "' is closed");

  detail::SubscriberEnv env;
  env.context = &context_;
  env.local_endpoint = local_endpoint_;
  env.remote_endpoint = remote_endpoint_;
  env.ready = &ready_;
  env.poke = [this] { queue_.wake(); };
  env.max_message_bytes = options.max_message_bytes;
  auto subscriber = std::make_shared<detail::Subscriber>(std::move(env), std::move(o), std::move(handler),
                                                         std::move(view_handler));
  {
    std::lock_guard lock(subs_mu_);
    if (!accepting_.load()) throw Error(ErrorCode::closed, "subscribe: bus '" + options.name + "' is closed");
    prune_finished();
    subscribers_.push_back(subscriber);
  }
  subscriber->start(std::to_string(epoch) + "." + std::to_string(n));
  return Subscription(subscriber);
}

CloseReport Bus::Impl::close(std::chrono::milliseconds budget) {
  std::lock_guard close_lock(close_mu_);
  if (close_report_) return *close_report_;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + budget;
  bool late = false;
  auto wait = [&](std::future<void>& done) {
    if (done.valid() && done.wait_until(deadline) != std::future_status::ready) {
      late = true;
      abort_ = true;  // stop waiting on sockets; what is left is counted below
    }
  };
  {
    std::lock_guard start_lock(subscribe_mu_);  // waits for a subscribe() in progress
    std::lock_guard lock(subs_mu_);
    accepting_ = false;
  }
  queue_.close();
  receiver_stop_ = true;
  wait(receiver_done_);
  if (receiver_.joinable()) receiver_.join();
  wait(publisher_done_);
  if (publisher_.joinable()) publisher_.join();
  std::vector<std::shared_ptr<detail::Subscriber>> subs;
  {
    std::lock_guard lock(subs_mu_);
    subs = subscribers_;
  }
  for (auto& s : subs) late |= !s->finish(deadline);
  if (zap_) zap_->stop();
  context_.shutdown();

  const BusStats s = stats();
  CloseReport r;
  r.published = s.published;
  r.dropped_newest = s.dropped_newest;
  r.dropped_oldest = s.dropped_oldest;
  r.dropped_timeout = s.dropped_timeout;
  r.dropped_close_deadline = s.dropped_close_deadline;
  for (const auto& sub : s.subscriptions) {
    r.delivered += sub.delivered;
    r.dropped_newest += sub.dropped_newest;
    r.dropped_oldest += sub.dropped_oldest;
    r.dropped_close_deadline += sub.dropped_close;
    r.gaps += sub.gaps;
    r.in_hand += sub.in_hand;
  }
  r.deadline_reached = late;
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  close_report_ = r;
  return r;
}

BusStats Bus::Impl::stats() const {
  BusStats s;
  s.published = queue_.accepted();
  s.dropped_newest = dropped_newest_.load();
  s.dropped_oldest = dropped_oldest_.load();
  s.dropped_timeout = dropped_timeout_.load();
  s.offers_refused = offers_refused_.load();
  s.dropped_closed = dropped_closed_.load();
  s.dropped_close_deadline = dropped_close_deadline_.load();
  s.rejected_invalid = rejected_invalid_.load();
  s.frames_sent = frames_sent_.load();
  s.events_sent = events_sent_.load();
  s.queue_depth = queue_.size();
  s.queue_bytes = queue_.bytes();
  s.remote_frames = remote_frames_.load();
  s.remote_events = remote_events_.load();
  s.remote_gaps = remote_gaps_.load();
  s.remote_rejected_events = remote_rejected_events_.load();
  s.remote_gap_resyncs = remote_gap_resyncs_.load();
  s.peer_channels_forgotten = peer_channels_forgotten_.load();
  s.peer_disconnects = peer_disconnects_.load();
  s.auth_refused = zap_ ? zap_->refused() : 0;
  s.handshake_failures = handshake_failures_.load();
  s.echoes_ignored = echoes_ignored_.load();
  s.duplicate_node_id_frames = duplicate_node_id_frames_.load();
  for (size_t i = 0; i < malformed_.size(); ++i) s.malformed[i] = malformed_[i].load();
  if (peer_health_) s.peers = peer_health_->snapshot();
  if (uplink_health_) s.uplinks = uplink_health_->snapshot();
  std::lock_guard lock(subs_mu_);
  prune_finished();
  for (const auto& sub : subscribers_) s.subscriptions.push_back(sub->stats());
  if (closed_count_ > 0) s.subscriptions.push_back(closed_);
  s.subscriptions_closed = closed_count_;
  return s;
}

void Bus::Impl::prune_finished() const {
  std::erase_if(subscribers_, [this](const std::shared_ptr<detail::Subscriber>& sub) {
    if (!sub->finished()) return false;
    const SubscriptionStats f = sub->stats();  // final: nothing changes a finished subscriber
    closed_.received += f.received;
    closed_.delivered += f.delivered;
    closed_.dropped_newest += f.dropped_newest;
    closed_.dropped_oldest += f.dropped_oldest;
    closed_.dropped_close += f.dropped_close;
    closed_.gaps += f.gaps;
    closed_.handler_errors += f.handler_errors;
    closed_.malformed += f.malformed;
    ++closed_count_;
    return true;
  });
}

// --- Bus: forwards to Impl ---------------------------------------------------------------

Bus::Bus(BusOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Bus::~Bus() = default;
const std::string& Bus::name() const noexcept { return impl_->options.name; }
const std::string& Bus::node_id() const noexcept { return impl_->options.node_id; }
std::string Bus::bound_endpoint() const { return impl_->bound_endpoint; }

PublishStatus Bus::broadcast(const RequestLogView& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeCluster);
}
PublishStatus Bus::broadcast(const AnalyticsEvent& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeCluster);
}
PublishStatus Bus::local_broadcast(const RequestLogView& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeLocal);
}
PublishStatus Bus::local_broadcast(const AnalyticsEvent& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeLocal);
}
PublishStatus Bus::offer(const RequestLogView& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeCluster, /*offer=*/true);
}
PublishStatus Bus::offer(const AnalyticsEvent& e, std::string_view topic) {
  return impl_->publish(e, topic, detail::kScopeCluster, /*offer=*/true);
}
Subscription Bus::subscribe(SubscribeOptions o, Handler h) {
  if (!h) throw Error(ErrorCode::invalid_argument, "subscribe: empty handler");
  return impl_->subscribe(std::move(o), std::move(h));
}
Subscription Bus::subscribe(SubscribeOptions o) { return impl_->subscribe(std::move(o), nullptr); }
Subscription Bus::subscribe_views(SubscribeOptions o, ViewHandler h) {
  if (!h) throw Error(ErrorCode::invalid_argument, "subscribe_views: empty handler");
  return impl_->subscribe(std::move(o), nullptr, std::move(h));
}
CloseReport Bus::close(std::chrono::milliseconds d) { return impl_->close(d); }
CloseReport Bus::close() { return impl_->close(impl_->options.close_timeout); }
BusStats Bus::stats() const { return impl_->stats(); }

const char* to_string(PublishStatus s) noexcept {
  switch (s) {
    case PublishStatus::ok: return "ok";
    case PublishStatus::dropped_newest: return "dropped_newest";
    case PublishStatus::timed_out: return "timed_out";
    case PublishStatus::closed: return "closed";
    case PublishStatus::invalid: return "invalid";
  }
  return "unknown";
}

const char* to_string(Overflow o) noexcept {
  switch (o) {
    case Overflow::block: return "block";
    case Overflow::drop_newest: return "drop_newest";
    case Overflow::drop_oldest: return "drop_oldest";
  }
  return "unknown";
}

std::string tcp_endpoint_problem(std::string_view endpoint) {
  const std::string quoted = "'" + std::string(endpoint.substr(0, 80)) + "'";
  if (endpoint.rfind("tcp://", 0) != 0) return quoted + " is not a tcp:// endpoint";
  const size_t colon = endpoint.rfind(':');
  if (colon <= 6) return quoted + " is not tcp://HOST:PORT";
  const std::string_view port = endpoint.substr(colon + 1);
  if (port == "*") return {};
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535)
    return quoted + ": the port is not 0..65535 or *";
  return {};
}

std::string peer_endpoint_problem(std::string_view peer) {
  const std::string_view endpoint = peer.substr(0, peer.find('#'));
  if (auto why = tcp_endpoint_problem(endpoint); !why.empty()) return why;
  // What only a bind may say, and what libzmq refuses at connect with a bare "Invalid argument".
  const std::string quoted = "'" + std::string(endpoint.substr(0, 80)) + "'";
  const size_t colon = endpoint.rfind(':');
  const std::string_view host = endpoint.substr(6, colon - 6), port = endpoint.substr(colon + 1);
  // Written plainly (no leading zero), so that one endpoint cannot be listed twice unnoticed.
  if (port == "*" || port.front() == '0') return quoted + ": a peer's port must be 1..65535 without leading zeros (* and 0 are for bind)";
  if (host == "*") return quoted + ": a peer needs a host name or address (* is for bind)";
  for (const char c : host)
    if (!std::isalnum(static_cast<unsigned char>(c)) && std::string_view(".-_[]:%").find(c) == std::string_view::npos)
      return quoted + ": the host may hold letters, digits and . - _ (or an [IPv6] address)";
  return {};
}

const char* to_string(Scope s) noexcept { return s == Scope::local_only ? "local_only" : "cluster"; }

// --- Subscription: forwards to detail::Subscriber ---------------------------------------

Subscription::Subscription(std::shared_ptr<detail::Subscriber> impl) : impl_(std::move(impl)) {}
Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->stop(/*discard_pending=*/true);
    impl_ = std::move(other.impl_);
  }
  return *this;
}
// Nobody can read what a destroyed (or replaced) Subscription left queued: it is counted as
// dropped_close, and the bus may forget the subscriber.
Subscription::~Subscription() {
  if (impl_) impl_->stop(/*discard_pending=*/true);
}
std::optional<Message> Subscription::next(std::chrono::milliseconds t) {
  return impl_ ? impl_->next(t) : std::nullopt;
}
size_t Subscription::next_batch(std::vector<Message>& out, size_t max, std::chrono::milliseconds t) {
  return impl_ ? impl_->next_batch(out, max, t) : 0;
}
SubscriptionStats Subscription::stats() const { return impl_ ? impl_->stats() : SubscriptionStats{}; }
void Subscription::close() {
  if (impl_) impl_->stop();
}

}  // namespace reqbus
