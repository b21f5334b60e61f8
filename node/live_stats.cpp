#include "node/live_stats.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string_view>

#include "reqbus/user_agent.hpp"

namespace reqbus::node {
namespace {

// Log-spaced latency buckets: 20 per decade from 0.01 ms to 100 s (+ under/overflow).
constexpr int kPerDecade = 20;
constexpr double kMinMs = 0.01;
constexpr int kBuckets = 7 * kPerDecade + 2;

// Events up to this far ahead of the local clock (a peer's clock running fast) still count in
// the per-second rings, which hold that many extra slots so such an event never overwrites a
// second that is still inside the window.
constexpr int64_t kFutureSeconds = 5;

int bucket_of(double ms) {
  if (!(ms > kMinMs)) return 0;
  // Compared as a double: ms / kMinMs overflows to infinity past ~1.8e306 ms (a valid, finite
  // duration a client may send), and int(infinity) is undefined: it indexed far outside the
  // histogram and took the node down.
  const double b = 1 + std::floor(std::log10(ms / kMinMs) * kPerDecade);
  return b >= kBuckets - 1 ? kBuckets - 1 : int(b);
}
double bucket_mid_ms(int b) {  // geometric middle of the bucket
  if (b == 0) return kMinMs;
  return kMinMs * std::pow(10.0, (b - 0.5) / kPerDecade);
}

// std::string keys looked up by string_view (the events are views into the received frame):
// no string is built for a key already in a table.
struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using ViewMap = std::unordered_map<std::string, V, ViewHash, std::equal_to<>>;

// The n keys of `table` with the highest count(value), ties by key, as [[key, count], ...],
// then ["(other)", other] when something was counted past the table's bound.
template <class Map, class Count>
nlohmann::json top_rows(const Map& table, size_t n, uint64_t other, Count count) {
  std::vector<std::pair<const std::string*, uint64_t>> rows;
  rows.reserve(table.size());
  for (const auto& [k, v] : table) rows.emplace_back(&k, count(v));
  const size_t keep = std::min(n, rows.size());
  std::partial_sort(rows.begin(), rows.begin() + long(keep), rows.end(),
                    [](const auto& a, const auto& b) { return a.second > b.second || (a.second == b.second && *a.first < *b.first); });
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < keep; ++i) out.push_back({*rows[i].first, rows[i].second});
  if (other) out.push_back({"(other)", other});
  return out;
}

// A bounded key -> count table; keys past the bound are counted under "(other)".
class BoundedTable {
 public:
  explicit BoundedTable(size_t max_keys) : max_keys_(max_keys) {}
  void add(std::string_view key, uint64_t n = 1) {
    auto it = counts_.find(key);
    if (it != counts_.end()) {
      it->second += n;
    } else if (counts_.size() < max_keys_) {
      counts_.emplace(std::string(key), n);
    } else {
      other_ += n;
    }
  }
  nlohmann::json top(size_t n) const {
    return top_rows(counts_, n, other_, [](uint64_t v) { return v; });
  }

 private:
  size_t max_keys_;
  ViewMap<uint64_t> counts_;
  uint64_t other_ = 0;
};

// A path's requests and their latency (top paths and slowest paths, one lookup an event).
struct PathStats {
  uint64_t n = 0;
  double sum_ms = 0;
  double max_ms = 0;
};

}  // namespace

// What an event is, worked out once for the cluster's aggregate and its node's.
struct LiveStats::Facts {
  int64_t now_s = 0;
  int64_t t = 0;              // the event's second (now for an event without a time)
  std::optional<VisitorId> visitor;  // set when recent enough to count as an active visitor
  const char* device = "";    // device_label()
  bool bot = false;
  int latency_bucket = 0;
};

namespace {

}  // namespace

class LiveStats::Aggregate {
 public:
  explicit Aggregate(const LiveStatsOptions& o)
      : o_(o), referers_(o.max_keys), not_found_(o.max_keys),
        series_(size_t(o.series_seconds + kFutureSeconds + 1)),
        latency_(size_t(o.latency_seconds + kFutureSeconds + 1)) {}

  void add(const RequestLogView& e, const Facts& f) {
    const int64_t now_s = f.now_s, t = f.t;
    ++total_;
    last_add_s_ = now_s;
    recent_[recent_next_++ % recent_.size()].assign(e);
    auto pl = paths_.find(e.path);
    if (pl == paths_.end() && paths_.size() < o_.max_keys) pl = paths_.emplace(std::string(e.path), PathStats{}).first;
    if (pl != paths_.end()) {
      ++pl->second.n;
      pl->second.sum_ms += e.duration_ms;
      pl->second.max_ms = std::max(pl->second.max_ms, e.duration_ms);
    } else {
      ++paths_other_;  // past max_keys: counted under "(other)"
    }
    if (!e.referer.empty()) referers_.add(e.referer);
    if (e.status_code == 404) not_found_.add(e.path);
    ++status_[e.status_code];
    ++devices_[f.device];
    (f.bot ? bots_ : humans_) += 1;
    if (t <= now_s + kFutureSeconds && t > now_s - o_.series_seconds) {
      Second& s = slot(series_, t);
      ++s.count;
      if (e.status_code >= 500) ++s.errors5;
      else if (e.status_code >= 400) ++s.errors4;
    }
    if (t <= now_s + kFutureSeconds && t > now_s - o_.latency_seconds) ++slot(latency_, t).buckets[size_t(f.latency_bucket)];
    if (const std::optional<VisitorId>& visitor = f.visitor) {
      // Seen now at the latest: a timestamp from the future would never leave the window.
      const int64_t seen = std::min(t, now_s);
      auto it = visitors_.find(*visitor);
      if (it != visitors_.end()) {
        it->second = std::max(it->second, seen);
      } else {
        // Full: the expired make room. Once a second at most: ids leave the window by the
        // second, so a second scan in the same second finds nothing, and a full table (over
        // 200,000 visitors active in 5 minutes, or a flood of forged ones) scanned for every
        // new visitor took the live thread down to a few hundred events a second.
        if (visitors_.size() >= o_.max_visitors && now_s != last_prune_s_) prune_visitors(now_s);
        if (visitors_.size() < o_.max_visitors) visitors_.emplace(*visitor, seen);
        else ++visitors_untracked_;  // bounded: counted, shown in the snapshot
      }
    }
  }

  nlohmann::json snapshot(int64_t now_s, size_t top_n) {
    nlohmann::json j;
    j["total"] = total_;
    nlohmann::json series = nlohmann::json::array();
    for (int64_t t = now_s - o_.series_seconds + 1; t <= now_s; ++t) {
      const Second* s = find(series_, t);
      series.push_back({t, s ? s->count : 0, s ? s->errors4 : 0, s ? s->errors5 : 0});
    }
    j["series"] = std::move(series);  // [unix second, requests, 4xx, 5xx]
    std::array<uint64_t, kBuckets> hist{};
    uint64_t n = 0;
    for (int64_t t = now_s - o_.latency_seconds + 1; t <= now_s; ++t)
      if (const Hist* h = find(latency_, t))
        for (int b = 0; b < kBuckets; ++b) hist[size_t(b)] += h->buckets[size_t(b)], n += h->buckets[size_t(b)];
    auto pct = [&](double q) -> double {
      if (n == 0) return 0;
      const uint64_t rank = uint64_t(std::ceil(q * double(n)));
      uint64_t seen = 0;
      for (int b = 0; b < kBuckets; ++b)
        if ((seen += hist[size_t(b)]) >= rank) return bucket_mid_ms(b);
      return bucket_mid_ms(kBuckets - 1);
    };
    j["latency_ms"] = {{"p50", pct(0.50)}, {"p95", pct(0.95)}, {"p99", pct(0.99)},
                       {"samples", n}, {"window_s", o_.latency_seconds}, {"relative_error", 0.06}};
    nlohmann::json status = nlohmann::json::object();
    for (const auto& [code, c] : status_) status[std::to_string(code)] = c;
    j["status"] = std::move(status);
    j["top_paths"] = top_rows(paths_, top_n, paths_other_, [](const PathStats& p) { return p.n; });
    j["top_referers"] = referers_.top(top_n);
    j["not_found"] = not_found_.top(top_n);
    nlohmann::json devices = nlohmann::json::object();
    for (const auto& [d, c] : devices_) devices[std::string(d)] = c;
    j["devices"] = std::move(devices);
    j["bots"] = bots_;
    j["humans"] = humans_;
    std::vector<std::pair<const std::string*, PathStats>> slow;
    for (const auto& [p, l] : paths_) slow.emplace_back(&p, l);
    const size_t keep = std::min(top_n, slow.size());
    std::partial_sort(slow.begin(), slow.begin() + long(keep), slow.end(), [](const auto& a, const auto& b) {
      return a.second.sum_ms / double(a.second.n) > b.second.sum_ms / double(b.second.n);
    });
    nlohmann::json slowest = nlohmann::json::array();
    for (size_t i = 0; i < keep; ++i)
      slowest.push_back({*slow[i].first, slow[i].second.sum_ms / double(slow[i].second.n), slow[i].second.max_ms, slow[i].second.n});
    j["slowest"] = std::move(slowest);  // [path, avg ms, max ms, requests]
    nlohmann::json recent = nlohmann::json::array();
    for (size_t i = 0; i < std::min<size_t>(recent_next_, recent_.size()); ++i) {
      const Recent& r = recent_[(recent_next_ - 1 - i) % recent_.size()];
      recent.push_back({{"method", r.method}, {"path", r.path}, {"status_code", r.status_code},
                        {"duration_ms", r.duration_ms}, {"user_agent", r.user_agent},
                        {"node_id", r.node_id}, {"inserted_at", r.inserted_at}});
    }
    j["recent"] = std::move(recent);  // newest first
    prune_visitors(now_s);
    j["visitors_active"] = visitors_.size();
    j["visitors_untracked"] = visitors_untracked_;
    j["visitors_window_s"] = o_.visitor_seconds;
    return j;
  }

 private:
  struct Second {
    int64_t t = -1;
    uint64_t count = 0, errors4 = 0, errors5 = 0;
  };
  struct Hist {
    int64_t t = -1;
    std::array<uint32_t, kBuckets> buckets{};
  };
  template <class S>
  static S& slot(std::vector<S>& ring, int64_t t) {
    S& s = ring[size_t(t) % ring.size()];
    if (s.t != t) s = S{}, s.t = t;
    return s;
  }
  template <class S>
  static const S* find(const std::vector<S>& ring, int64_t t) {
    const S& s = ring[size_t(t) % ring.size()];
    return s.t == t ? &s : nullptr;
  }
  void prune_visitors(int64_t now_s) {
    const int64_t cutoff = now_s - o_.visitor_seconds;
    std::erase_if(visitors_, [&](const auto& kv) { return kv.second <= cutoff; });
    last_prune_s_ = now_s;
  }

 public:
  uint64_t total() const { return total_; }
  int64_t last_add_s() const { return last_add_s_; }  // local clock, unix seconds

 private:

  const LiveStatsOptions& o_;
  uint64_t total_ = 0, bots_ = 0, humans_ = 0;
  int64_t last_add_s_ = 0;
  ViewMap<PathStats> paths_;  // bounded at max_keys
  uint64_t paths_other_ = 0;
  BoundedTable referers_, not_found_;
  std::map<uint16_t, uint64_t> status_;
  std::map<std::string_view, uint64_t> devices_;  // keys: device_label()'s static strings
  std::vector<Second> series_;
  std::vector<Hist> latency_;
  std::unordered_map<VisitorId, int64_t, VisitorIdHash> visitors_;
  uint64_t visitors_untracked_ = 0;
  int64_t last_prune_s_ = INT64_MIN;  // when prune_visitors last ran
  // The last events, as the snapshot shows them (the strings keep their capacity).
  struct Recent {
    std::string method, path, user_agent, node_id;
    uint16_t status_code = 0;
    double duration_ms = 0;
    int64_t inserted_at = 0;
    void assign(const RequestLogView& e) {
      method.assign(e.method);
      path.assign(e.path);
      user_agent.assign(e.user_agent);
      node_id.assign(e.node_id);
      status_code = e.status_code;
      duration_ms = e.duration_ms;
      inserted_at = e.inserted_at;
    }
  };
  std::array<Recent, 20> recent_{};
  size_t recent_next_ = 0;
};

LiveStats::LiveStats(LiveStatsOptions options)
    : options_(std::move(options)), all_(std::make_unique<Aggregate>(options_)) {}
LiveStats::~LiveStats() = default;

void LiveStats::add(const RequestLogView& e) {
  const int64_t now_s = options_.clock->unix_us() / 1000000;
  const int64_t t = e.inserted_at > 0 ? e.inserted_at / 1000000 : now_s;
  // Hashed only for events inside the active-visitor window, with the salt of their day, but
  // never a day after today: an event stamped in the future (any client can send one) would
  // otherwise draw a salt for that day and push today's out of the hasher.
  Facts f;
  f.now_s = now_s;
  f.t = t;
  if (t > now_s - options_.visitor_seconds) f.visitor = visitors_.id(e.remote_ip, e.user_agent, std::min(t, now_s) / 86400);
  f.device = device_label(e.device_type);  // a client may send any string: bounded labels
  f.bot = is_bot(e.user_agent) || e.device_type == "bot";
  f.latency_bucket = bucket_of(e.duration_ms);
  std::lock_guard lock(mu_);
  all_->add(e, f);
  auto it = nodes_.find(e.node_id);
  if (it == nodes_.end()) {
    // Node ids change with every restart (<host>-<pid> by default): past max_nodes the one
    // heard from least recently makes room, so a long-lived cluster keeps its per-node views.
    if (nodes_.size() >= max_nodes_) {
      nodes_.erase(std::min_element(nodes_.begin(), nodes_.end(), [](const auto& a, const auto& b) {
        return a.second->last_add_s() < b.second->last_add_s();
      }));
    }
    it = nodes_.emplace(std::string(e.node_id), std::make_unique<Aggregate>(options_)).first;
  }
  it->second->add(e, f);
}

nlohmann::json LiveStats::snapshot(const std::string& node) const {
  const int64_t now_s = options_.clock->unix_us() / 1000000;
  std::lock_guard lock(mu_);
  nlohmann::json j;
  Aggregate* agg = all_.get();
  if (!node.empty()) {
    auto it = nodes_.find(node);
    agg = it == nodes_.end() ? nullptr : it->second.get();
  }
  j = agg ? agg->snapshot(now_s, options_.top_n) : Aggregate(options_).snapshot(now_s, options_.top_n);
  j["node"] = node;
  j["now"] = now_s;
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& [id, _] : nodes_) nodes.push_back(id);
  j["nodes"] = std::move(nodes);
  return j;
}

uint64_t LiveStats::total() const {
  std::lock_guard lock(mu_);
  return all_->total();
}

}  // namespace reqbus::node
