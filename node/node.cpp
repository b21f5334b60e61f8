#include "node/node.hpp"
#include "node/daily_counters.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <functional>
#include <mutex>
#include <optional>

#include "analytics/spool.hpp"
#include "node/prometheus.hpp"
#include "node/syslog_listener.hpp"
#include "reqbus/batcher.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"
#include "reqbus/postgres_sink.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/user_agent.hpp"

namespace reqbus::node {
namespace {

// The store as the Batcher sees it: each write, live or replayed, also counts the events that
// were new to the store, so the daily counters match the rows (a client's resend, a replay of a
// write that had committed, a log ingested twice are stored once and counted once).
class CountingSink final : public Sink {
 public:
  CountingSink(std::shared_ptr<Sink> store, std::function<void(const Message&)> count)
      : store_(std::move(store)), count_(std::move(count)) {}
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override {
    std::vector<bool> is_new;
    WriteResult r = store_->write_telling_new(batch, timeout, is_new);
    if (r.ok())
      for (size_t i = 0; i < batch.size() && i < is_new.size(); ++i)
        if (is_new[i]) count_(batch[i]);
    return r;
  }
  void abort_writes() noexcept override { store_->abort_writes(); }
  std::string name() const override { return store_->name(); }

 private:
  std::shared_ptr<Sink> store_;
  std::function<void(const Message&)> count_;
};

}  // namespace

class Node::Impl {
 public:
  explicit Impl(NodeOptions o);
  NodeReport close(std::chrono::milliseconds deadline);
  // The persisting subscription's handler (its reader thread only): the event's one owning
  // copy goes to the Batcher.
  void persist(const MessageView& m);
  // The day's counters for an event the store has just stored (CountingSink, flush workers).
  void count(const Message& m);
  // The StatBuffer key "<parts...>:<day>", built in key_ (no allocation once it has grown).
  std::string_view counter_key(std::initializer_list<std::string_view> parts, int64_t unix_us);
  // Events the store already held when they were written (stored once): a client's resend, a
  // replay, a log ingested twice, or another event with the same id.
  uint64_t store_duplicates() const {
    return sqlite ? sqlite->stats().duplicates : postgres ? postgres->stats().duplicates : 0;
  }
  // Text values PostgreSQL stored with U+FFFD for bytes its text cannot hold (SQLite keeps them).
  uint64_t store_text_replaced() const { return postgres ? postgres->stats().text_replaced : 0; }
  // Items refused to HTTP senders, who were told (503) which to send again: not lost. (The API
  // offers events to the bus, Bus::offer: such refusals are not among the bus's drops.)
  uint64_t http_refused() const { return http ? http->stats().items_refused : 0; }

  NodeOptions options;
  std::string store_description;
  std::shared_ptr<SqliteSink> sqlite;
  std::shared_ptr<PostgresSink> postgres;
  std::unique_ptr<Bus> bus;
  std::unique_ptr<StatBuffer> counters;  // before the Batcher: its writes count into it to the end
  std::unique_ptr<Batcher> batcher;
  std::unique_ptr<LiveStats> live;
  std::unique_ptr<HttpApi> http;
  std::unique_ptr<SyslogListener> syslog;
  HealthWatch health;
  Subscription persist_sub, live_sub;
  std::atomic<uint64_t> batcher_refused{0};
  // count()'s, under count_mu_ (flush workers may write at once): the day of the last event,
  // and the key being built.
  std::mutex count_mu_;
  int64_t key_day_ = INT64_MIN;
  std::string key_day_text_, key_;
  std::mutex close_mu;
  std::optional<NodeReport> report;
};

Node::Impl::Impl(NodeOptions o) : options(std::move(o)), health(options.health) {
  // The store.
  std::shared_ptr<Sink> sink;
  std::shared_ptr<CounterSink> counter_sink;
  const std::string& store = options.store;
  // A spool directory another live node holds is refused before the store is opened or the bus
  // binds (and logs): one line, nothing started. The Batcher's own lock (detail::SpoolLock) is
  // what keeps the directory to one owner; this only says it first.
  if (store != "none" && !options.spool_dir.empty()) detail::SpoolLock::throw_if_held(options.spool_dir);
  if (store.rfind("sqlite:", 0) == 0) {
    SqliteSinkOptions so;
    so.path = store.substr(7);
    if (so.path.empty()) throw Error(ErrorCode::invalid_argument, "store: sqlite: needs a path (sqlite:PATH)");
    sqlite = std::make_shared<SqliteSink>(so);
    // A file that can never be opened (no such directory, a directory, not a database) is a
    // configuration error, refused at start: otherwise the node took events and spooled them
    // all while logging errors. A busy or locked database is not: the Batcher retries it.
    if (auto r = sqlite->open(std::chrono::seconds(2)); r.kind == WriteResult::Kind::permanent)
      throw Error(ErrorCode::invalid_argument, "store: " + r.reason);  // the reason names the file
    sink = sqlite;
    counter_sink = sqlite;
    store_description = "sqlite:" + std::filesystem::absolute(so.path).string();
  } else if (store.rfind("postgres:", 0) == 0) {
    PostgresSinkOptions po;
    po.conninfo = store.substr(9);
    postgres = std::make_shared<PostgresSink>(po);
    // As with SQLite: a database, role, password or privilege that no write will get past is
    // refused at start (it dead-lettered every event, /healthz 200 until the first arrived). A
    // server that cannot be reached now is an outage, not a mistake: the node starts and spools.
    if (const WriteResult r = postgres->check(po.connect_timeout); r.kind == WriteResult::Kind::permanent)
      throw Error(ErrorCode::invalid_argument, "store: " + r.reason);
    else if (!r.ok())
      log(LogLevel::warn, "store: " + r.reason + " at start; events are spooled until the database answers");
    sink = postgres;
    counter_sink = postgres;
    store_description = "postgres (" + std::to_string(po.conninfo.size()) + "-byte conninfo)";
  } else if (store == "none") {
    store_description = "none (nothing is persisted)";
  } else {
    throw Error(ErrorCode::invalid_argument, "store: '" + store + "' is not sqlite:PATH, postgres:CONNINFO or none");
  }

  bus = std::make_unique<Bus>(options.bus);
  live = std::make_unique<LiveStats>(options.live);
  if (sink) {
    StatBufferOptions co = options.counters;
    co.node_id = bus->node_id();
    counters = std::make_unique<StatBuffer>(counter_sink, co);
    BatcherOptions bo = options.batcher;
    bo.spool_dir = options.spool_dir;
    batcher = std::make_unique<Batcher>(std::make_shared<CountingSink>(sink, [this](const Message& m) { count(m); }), bo);
    // Events an earlier run set aside wait for an operator: say so at every start.
    if (const uint64_t dlq = batcher->stats().dead_letter_bytes; dlq > 0)
      log(LogLevel::warn, "spool: " + std::to_string(dlq) + " bytes of events the store rejected for good wait in " +
                              batcher->dead_letter_path() +
                              " (docs/RELIABILITY.md: rename it to a segment name to replay it)");
    SubscribeOptions so;
    so.scope = Scope::local_only;  // each node persists only what it published
    so.name = "persist";
    // Read in place: the only copy of an event made on this node's persisting path is the one
    // the Batcher keeps (a Message decoded, then copied into the Batcher, was most of the
    // reader thread's time in ingest_bench's e2e_sqlite case).
    persist_sub = bus->subscribe_views(so, [this](const MessageView& m) { persist(m); });
  }
  SubscribeOptions lo;
  lo.scope = Scope::cluster;  // the dashboard shows the whole cluster
  lo.name = "live";
  lo.overflow = Overflow::drop_oldest;  // a dashboard may lag; it must never slow the bus
  lo.max_pending = 100000;
  // Whole frames wait in its queue and are read in place: no Message decoded, queued and
  // copied per event (that path cost e2e ingest through a node about 13 % of its throughput).
  live_sub = bus->subscribe_views(lo, [this](const MessageView& m) {
    if (m.kind == MessageKind::request_sent) live->add(m.request);
  });

  if (!options.syslog_listen.empty()) {
    syslog = std::make_unique<SyslogListener>(options.syslog_listen,
                                              [this](const RequestLog& r) { return bus->broadcast(r); });
    syslog->start();
  }
}

void Node::Impl::persist(const MessageView& m) {
  if (batcher->enqueue(m.to_message()) != EnqueueStatus::ok) batcher_refused.fetch_add(1, std::memory_order_relaxed);
}

void Node::Impl::count(const Message& m) {
  std::lock_guard lock(count_mu_);
  // Refusals past max_keys are counted by the StatBuffer itself (stats().dropped).
  if (m.kind != MessageKind::request_sent) {
    if (m.kind == MessageKind::identify || m.kind == MessageKind::group || m.kind == MessageKind::track)
      (void)counters->increment(counter_key({"events:", to_string(m.kind)}, m.analytics.timestamp));
    return;
  }
  const RequestLog& r = m.request;
  char status[8];
  const int n = std::snprintf(status, sizeof(status), "%u", unsigned(r.status_code));
  (void)counters->increment(counter_key({"requests"}, r.inserted_at));
  (void)counters->increment(counter_key({"status:", std::string_view(status, size_t(n))}, r.inserted_at));
  (void)counters->increment(counter_key({"device:", device_label(r.device_type)}, r.inserted_at));  // bounded labels
}

std::string_view Node::Impl::counter_key(std::initializer_list<std::string_view> parts, int64_t unix_us) {
  const int64_t day = unix_us / 86400000000LL;
  if (day != key_day_) {
    key_day_ = day;
    key_day_text_ = day_of(unix_us);
  }
  key_.clear();
  for (std::string_view part : parts) key_.append(part);
  key_.append(1, ':').append(key_day_text_);
  return key_;
}

NodeReport Node::Impl::close(std::chrono::milliseconds budget) {
  std::lock_guard lock(close_mu);
  if (report) return *report;
  const auto deadline = std::chrono::steady_clock::now() + budget;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(0), std::chrono::duration_cast<std::chrono::milliseconds>(
                                                      deadline - std::chrono::steady_clock::now()));
  };
  NodeReport r;
  if (http) http->stop();  // intake first
  if (syslog) {
    syslog->stop();
    r.syslog_received = syslog->received();
    r.syslog_rejected = syslog->rejected();
  }
  // The StatBuffer closes last, with a share of its own (a fifth): the Batcher's close() can
  // overrun its deadline (it awaits a sink write in progress, up to import_timeout), and the
  // counters would then get nothing and be lost untried. So the StatBuffer always gets its
  // share, even if that passes the budget by as much.
  const auto counters_share = counters ? budget / 5 : std::chrono::milliseconds(0);
  auto left_before_counters = [&] { return std::max(std::chrono::milliseconds(0), left() - counters_share); };
  r.bus = bus->close(left_before_counters() / 3);  // delivers everything accepted to the Batcher/StatBuffer
  for (const PeerStats& u : bus->stats().uplinks) r.uplink_unsent += u.events_unsent;
  const SubscriptionStats view = live_sub.stats();
  r.view_dropped = view.dropped_newest + view.dropped_oldest + view.dropped_close;
  r.http_refused = http_refused();
  if (batcher) {
    r.batcher = batcher->close(left_before_counters());
    const BatcherStats s = batcher->stats();
    r.replayed = s.replayed;
    r.dead_lettered = s.dead_lettered;
    r.spool_left_bytes = s.spool_bytes;
  }
  if (counters) {
    r.counters = counters->close(std::chrono::steady_clock::now() + std::max(left(), counters_share));
    r.counter_windows = counters->stats().flushes;
  }
  r.store_duplicates = store_duplicates();
  r.deadline_reached = r.bus.deadline_reached || r.batcher.deadline_reached || r.counters.failed > 0;
  report = r;
  return r;
}

Node::Node(NodeOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  if (!impl_->options.http_enabled) return;
  HttpApiHooks hooks;
  // offer(): a refusal goes back to the sender (503 naming it), so it is no drop of the bus's.
  hooks.publish_request = [this](const RequestLog& r) { return impl_->bus->offer(r); };
  hooks.publish_event = [this](const AnalyticsEvent& e) { return impl_->bus->offer(e); };
  hooks.stats = [this](const std::string& node) { return stats_json(node); };
  hooks.metrics = [this] { return metrics(); };
  hooks.health = [this] { return health(); };
  impl_->http = std::make_unique<HttpApi>(impl_->options.http, std::move(hooks));
  impl_->http->start();
}

Node::~Node() { close(impl_->options.close_timeout); }

Bus& Node::bus() { return *impl_->bus; }
LiveStats& Node::live() { return *impl_->live; }
int Node::http_port() const { return impl_->http ? impl_->http->port() : 0; }
int Node::syslog_port() const { return impl_->syslog ? impl_->syslog->port() : 0; }
const NodeOptions& Node::options() const { return impl_->options; }
std::string Node::store_description() const { return impl_->store_description; }
NodeReport Node::close(std::chrono::milliseconds deadline) { return impl_->close(deadline); }
void Node::hurry() {
  if (impl_->batcher) impl_->batcher->hurry();
  if (impl_->counters) impl_->counters->hurry();
}

nlohmann::json Node::stats_json(const std::string& node_filter) const {
  nlohmann::json j = impl_->live->snapshot(node_filter);
  const BusStats b = impl_->bus->stats();
  uint64_t dropped = b.dropped_newest + b.dropped_oldest + b.dropped_timeout + b.dropped_close_deadline;
  // The live view (the dashboard's numbers) may skip events to keep up (drop_oldest): stored all
  // the same, so they are not "dropped", but said apart.
  uint64_t view_dropped = 0;
  for (const auto& s : b.subscriptions)
    (s.name == "live" ? view_dropped : dropped) += s.dropped_newest + s.dropped_oldest + s.dropped_close;
  j["self"] = impl_->bus->node_id();
  j["published"] = b.published;
  j["dropped"] = dropped + (impl_->batcher ? impl_->batcher->stats().dropped.total() : 0);
  j["refused"] = impl_->http_refused();  // told to send again: not in `dropped`
  j["view_dropped"] = view_dropped;
  // Events missing from peers' sequences at this node. Not plus the subscriptions' gaps: each
  // of them counts the same missing events again as it sees the sequence jump.
  j["gaps"] = b.remote_gaps;
  // This node's tcp peers and publish_to endpoints, whatever the filter.
  auto links = [](const std::vector<PeerStats>& list, bool uplinks) {
    nlohmann::json out = nlohmann::json::array();
    for (const PeerStats& p : list) {
      out.push_back({{"endpoint", p.endpoint},
                     {"connected", p.connected},
                     {"since", p.since_unix_us / 1'000'000},  // unix seconds, as "now"
                     {"connect_failures", p.connect_failures},
                     {"last_failure", p.last_failure}});
      if (uplinks) out.back()["events_unsent"] = p.events_unsent;
    }
    return out;
  };
  j["peers"] = links(b.peers, false);
  j["uplinks"] = links(b.uplinks, true);
  if (impl_->batcher) {
    const BatcherStats s = impl_->batcher->stats();
    j["persisted"] = s.delivered + s.replayed;
    j["duplicates"] = impl_->store_duplicates();  // of those, already stored
    j["text_replaced"] = impl_->store_text_replaced();
    j["spooled"] = s.spooled;
    j["store_down"] = s.sink_down;
  }
  return j;
}

std::string Node::health() const {
  std::vector<LossCounter> losses;
  // Events the HTTP API offered and the bus refused are not among its drops (Bus::offer): the
  // sender was told to send them again, and a burst must not pull the node out of a load balancer
  // for a whole window (helper-53 F4). Overload shows in reqbus_http_items_refused_total.
  const BusStats b = impl_->bus->stats();
  losses.push_back({"the bus's publish queue was full", b.dropped_newest + b.dropped_oldest + b.dropped_timeout});
  SpoolFill spool;
  if (impl_->batcher) {
    const SubscriptionStats p = impl_->persist_sub.stats();  // this one, not another named alike
    losses.push_back({"the store's subscription fell behind", p.dropped_newest + p.dropped_oldest});
    const BatcherStats s = impl_->batcher->stats();
    const BatcherDrops& d = s.dropped;
    losses.push_back({"the Batcher's queue was full", d.newest + d.oldest + d.timeout});
    losses.push_back({"the spool was full", d.spool_full});
    losses.push_back({"the spool could not be written", d.spool_error + d.dead_letter_error});
    losses.push_back({"the store failed and there is no spool", d.retries_exhausted + d.permanent + d.close_deadline});
    // Not lost (kept in the spool's dead-letter file), but out of the store until an operator acts.
    losses.push_back({"the store rejected spooled events for good (dead-lettered)", s.dead_lettered});
    if (!impl_->options.spool_dir.empty()) spool = {s.spool_bytes, impl_->options.batcher.spool_max_bytes};
  }
  if (impl_->counters)
    losses.push_back({"daily counter increments were refused (max_keys)", impl_->counters->stats().dropped});
  return impl_->health.check(losses, spool);
}

std::string Node::metrics() const {
  PromWriter w;
  const BusStats b = impl_->bus->stats();
  w.counter("reqbus_bus_published_total", "Events accepted by broadcast().", double(b.published));
  w.header("reqbus_bus_dropped_total", "Events the bus dropped, by reason.", "counter");
  w.sample("reqbus_bus_dropped_total", "reason", "queue_full_newest", double(b.dropped_newest));
  w.sample("reqbus_bus_dropped_total", "reason", "queue_full_oldest", double(b.dropped_oldest));
  w.sample("reqbus_bus_dropped_total", "reason", "block_timeout", double(b.dropped_timeout));
  w.sample("reqbus_bus_dropped_total", "reason", "closed", double(b.dropped_closed));
  w.sample("reqbus_bus_dropped_total", "reason", "close_deadline", double(b.dropped_close_deadline));
  w.sample("reqbus_bus_dropped_total", "reason", "invalid", double(b.rejected_invalid));
  w.gauge("reqbus_bus_queue_depth", "Events waiting in the publish queue.", double(b.queue_depth));
  w.counter("reqbus_bus_frames_sent_total", "Frames written to the local socket.", double(b.frames_sent));
  w.counter("reqbus_bus_remote_events_total", "Events received from tcp peers.", double(b.remote_events));
  w.counter("reqbus_bus_remote_gaps_total", "Events missing from peers' sequences at this node.", double(b.remote_gaps));
  w.counter("reqbus_bus_remote_gap_resyncs_total", "Peer frames more than 2^32 events ahead, taken as a new numbering.", double(b.remote_gap_resyncs));
  w.counter("reqbus_bus_peer_channels_forgotten_total", "Peer channels the gap tracker forgot to stay within its bound.", double(b.peer_channels_forgotten));
  w.counter("reqbus_bus_remote_rejected_events_total", "Events in frames from peers that were rejected (counted once, not as gaps).", double(b.remote_rejected_events));
  w.counter("reqbus_bus_peer_disconnects_total", "Connections to peers and publish_to endpoints that closed.", double(b.peer_disconnects));
  w.counter("reqbus_bus_auth_refused_total", "Clients refused by the CURVE allow-list (ZAP) at bind.", double(b.auth_refused));
  w.counter("reqbus_bus_handshake_failures_total", "Connections to peers and publish_to endpoints that failed the handshake (CURVE).", double(b.handshake_failures));
  w.counter("reqbus_bus_echoes_ignored_total", "Frames of this node's own that came back (through a forwarder), ignored.", double(b.echoes_ignored));
  w.counter("reqbus_bus_duplicate_node_id_frames_total", "Frames from another node using this node's node id (ids must be unique), ignored.", double(b.duplicate_node_id_frames));
  w.header("reqbus_bus_peer_up", "1 while the connection to a peer (bus.peers) is up, handshake done; 0 while it is not.", "gauge");
  for (const auto& p : b.peers) w.sample("reqbus_bus_peer_up", "peer", p.endpoint, p.connected ? 1.0 : 0.0);
  w.header("reqbus_bus_peer_connect_failures_total", "Failed connection attempts to a peer: refused, timed out, address not resolved, handshake failed.", "counter");
  for (const auto& p : b.peers) w.sample("reqbus_bus_peer_connect_failures_total", "peer", p.endpoint, double(p.connect_failures));
  w.header("reqbus_bus_uplink_up", "1 while the connection to a publish_to endpoint is up, handshake done; 0 while it is not.", "gauge");
  for (const auto& p : b.uplinks) w.sample("reqbus_bus_uplink_up", "uplink", p.endpoint, p.connected ? 1.0 : 0.0);
  w.header("reqbus_bus_uplink_connect_failures_total", "Failed connection attempts to a publish_to endpoint.", "counter");
  for (const auto& p : b.uplinks) w.sample("reqbus_bus_uplink_connect_failures_total", "uplink", p.endpoint, double(p.connect_failures));
  w.header("reqbus_bus_uplink_unsent_events_total", "Cluster events ZeroMQ's PUB dropped for a publish_to endpoint: before its first connection, after a failed handshake, past tcp_hwm frames while reconnecting.", "counter");
  for (const auto& p : b.uplinks) w.sample("reqbus_bus_uplink_unsent_events_total", "uplink", p.endpoint, double(p.events_unsent));
  w.header("reqbus_bus_malformed_total", "Frames from peers dropped as malformed, by reason.", "counter");
  for (size_t i = 0; i < b.malformed.size(); ++i)
    w.sample("reqbus_bus_malformed_total", "reason", codec::to_string(codec::DecodeError(i)), double(b.malformed[i]));
  w.header("reqbus_subscription_delivered_total", "Events delivered per subscription.", "counter");
  for (const auto& s : b.subscriptions) w.sample("reqbus_subscription_delivered_total", "subscription", s.name, double(s.delivered));
  w.header("reqbus_subscription_dropped_total", "Events a subscription dropped (pending queue full or close deadline).", "counter");
  for (const auto& s : b.subscriptions)
    w.sample("reqbus_subscription_dropped_total", "subscription", s.name, double(s.dropped_newest + s.dropped_oldest + s.dropped_close));
  w.header("reqbus_subscription_gaps_total", "Events missing from origins' sequences, per subscription.", "counter");
  for (const auto& s : b.subscriptions) w.sample("reqbus_subscription_gaps_total", "subscription", s.name, double(s.gaps));
  w.header("reqbus_subscription_pending", "Events waiting in a subscription's queue.", "gauge");
  for (const auto& s : b.subscriptions) w.sample("reqbus_subscription_pending", "subscription", s.name, double(s.pending_depth));
  w.header("reqbus_subscription_in_hand", "Events a subscription's handler or reader is processing now.", "gauge");
  for (const auto& s : b.subscriptions) w.sample("reqbus_subscription_in_hand", "subscription", s.name, double(s.in_hand));
  if (impl_->batcher) {
    const BatcherStats s = impl_->batcher->stats();
    w.counter("reqbus_batcher_enqueued_total", "Events accepted by the Batcher.", double(s.enqueued));
    w.counter("reqbus_persisted_total", "Events stored by the sink (live batches and replays).", double(s.delivered + s.replayed));
    w.counter("reqbus_store_duplicates_total", "Events written that the store already held (a resend, a replay, a log ingested twice, or another event with the same id): kept once.", double(impl_->store_duplicates()));
    w.counter("reqbus_store_text_replaced_total", "Text values written to PostgreSQL with U+FFFD in place of bytes its text cannot hold (NUL, invalid UTF-8), rather than failing their batch (also in events it already held); 0 on SQLite, which stores them as they are.", double(impl_->store_text_replaced()));
    w.counter("reqbus_batcher_retried_total", "Batch attempts after a failed one.", double(s.retries));
    w.counter("reqbus_batcher_spooled_total", "Events written to the on-disk spool.", double(s.spooled));
    w.counter("reqbus_batcher_replayed_total", "Spooled events later stored.", double(s.replayed));
    w.counter("reqbus_batcher_delivered_after_deadline_total", "Events close() counted spooled or dropped at its deadline that the write still running then stored.", double(s.delivered_after_deadline));
    w.counter("reqbus_batcher_replay_failures_total", "Replays that failed (a sink write, or a spool segment that could not be read); the batch stays spooled.", double(s.replay_failures));
    w.counter("reqbus_batcher_dead_lettered_total", "Spooled events the store rejected permanently, moved to the spool's dead-letter file.", double(s.dead_lettered));
    w.counter("reqbus_spool_corrupt_records_total", "Torn or corrupt spool records skipped at replay (lost, counted).", double(s.spool_corrupt_records));
    w.gauge("reqbus_spool_skipped_segments", "Spool segments written by a newer reqbus: kept, not replayed.", double(s.spool_skipped_segments));
    w.gauge("reqbus_spool_dead_letter_bytes", "Bytes in the spool's dead-letter file.", double(s.dead_letter_bytes));
    w.counter("reqbus_batcher_spooled_while_down_total", "Events sent straight to the spool while the store was failing.", double(s.spooled_while_down));
    w.counter("reqbus_batcher_breaker_opened_total", "Times a failed store write opened the circuit breaker.", double(s.breaker_opened));
    w.counter("reqbus_batcher_stalled_writes_total", "Store writes that gave no answer within stall_timeout (the store was taken as down).", double(s.stalled_writes));
    w.gauge("reqbus_store_down", "1 while the store is failing (breaker open: new batches go to the spool).", s.sink_down ? 1.0 : 0.0);
    w.counter("reqbus_batcher_refused_total", "Events the Batcher refused at enqueue.", double(impl_->batcher_refused.load()));
    w.header("reqbus_batcher_dropped_total", "Events the Batcher dropped, by reason.", "counter");
    w.sample("reqbus_batcher_dropped_total", "reason", "newest", double(s.dropped.newest));
    w.sample("reqbus_batcher_dropped_total", "reason", "oldest", double(s.dropped.oldest));
    w.sample("reqbus_batcher_dropped_total", "reason", "timeout", double(s.dropped.timeout));
    w.sample("reqbus_batcher_dropped_total", "reason", "closed", double(s.dropped.closed));
    w.sample("reqbus_batcher_dropped_total", "reason", "spool_full", double(s.dropped.spool_full));
    w.sample("reqbus_batcher_dropped_total", "reason", "spool_error", double(s.dropped.spool_error));
    w.sample("reqbus_batcher_dropped_total", "reason", "no_spool", double(s.dropped.retries_exhausted + s.dropped.permanent + s.dropped.close_deadline));
    w.sample("reqbus_batcher_dropped_total", "reason", "dead_letter_error", double(s.dropped.dead_letter_error));
    w.gauge("reqbus_batcher_queue_depth", "Events buffered or in flight in the Batcher.", double(s.queue_depth));
    w.gauge("reqbus_spool_bytes", "Bytes in the spool.", double(s.spool_bytes));
    w.gauge("reqbus_flush_latency_seconds", "Latency of the last successful sink write.", double(s.last_flush_latency.count()) / 1e6);
    w.gauge("reqbus_flush_latency_avg_seconds", "Average latency of successful sink writes.", double(s.avg_flush_latency.count()) / 1e6);
  }
  if (impl_->counters) {
    const StatBufferStats s = impl_->counters->stats();
    w.counter("reqbus_counter_flushes_total", "Counter windows written.", double(s.flushes));
    w.counter("reqbus_counter_flush_failures_total", "Failed counter flush attempts (retried).", double(s.flush_failures));
    w.counter("reqbus_counter_dropped_total", "Increments refused (max_keys or closed).", double(s.dropped));
    w.counter("reqbus_counter_lost_at_close_total", "Counter windows close() could not write by its deadline (lost).", double(s.lost_at_close));
    w.gauge("reqbus_counter_keys", "Counter keys in memory.", double(s.keys));
  }
  if (impl_->syslog) {
    w.counter("reqbus_syslog_received_total", "Syslog datagrams received.", double(impl_->syslog->received()));
    w.counter("reqbus_syslog_rejected_total", "Syslog datagrams rejected.", double(impl_->syslog->rejected()));
  }
  return w.text();
}

}  // namespace reqbus::node
