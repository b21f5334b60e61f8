// reqbus tail: subscribe to a node's bus over tcp and print its live stream as NDJSON,
// optionally filtered by path prefix, status and origin node. A request is a line in the
// RequestLog's JSON (analytics/request_json.hpp); an identify/group/track event is a line in
// Segment's message form (analytics/segment_json.hpp), whose "type" names its kind. --path and
// --status select requests, so they leave analytics events out; --node selects both.
// A node that refuses us (wrong CURVE key) or is not there looks the same as a quiet one from
// here: the bus retries by itself and the node has no heartbeat. So after --warn-after without
// any event tail says once, on stderr, what to check, and keeps waiting; with --timeout it gives
// up (exit 1) when no event came in time.
// When the reader of its output goes away (`reqbus tail | head`), tail exits quietly with status 0.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "analytics/request_json.hpp"
#include "analytics/segment_json.hpp"
#include "app/commands.hpp"
#include "app/node_flags.hpp"
#include "node/config.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {
namespace {

struct TailFlags {
  std::vector<std::string> peers;
  std::string topic = kDefaultTopic;
  std::string path_prefix;
  std::string status;  // "404", "5xx", "4xx"
  std::string node;
  int64_t limit = 0;   // stop after this many lines (0 = until interrupted)
  std::string curve_secret;  // docs/CLUSTER.md: key or `reqbus keygen --out` file
  bool insecure = false;
  double warn_after_s = 5;  // say once on stderr that nothing came yet (0 = never)
  double timeout_s = 0;     // exit 1 when no event came within this (0 = keep waiting)
};

// "tcp://a:1, tcp://b:2": the peers without their "#serverkey".
std::string endpoints(const std::vector<std::string>& peers) {
  std::string s;
  for (const auto& p : peers) s += (s.empty() ? "" : ", ") + p.substr(0, p.find('#'));
  return s;
}

// Why nothing may have come, from what the bus knows of each peer: CURVE handshakes it saw
// fail, peers it cannot reach (and why), or connected peers that publish nothing on the topic.
std::string hint(const TailFlags& f, const BusStats& s) {
  if (s.handshake_failures > 0)
    return std::to_string(s.handshake_failures) + " CURVE handshake(s) failed: is the server key after '#' in --peer " +
           "right, and is our public key on the node's allow-list?";
  std::string down;  // the line names the peers already: each only when there are several
  for (const PeerStats& p : s.peers) {
    if (p.connected) continue;
    std::string why = p.connect_failures == 0 ? ""
                      : p.connect_failures == 1
                          ? p.last_failure
                          : std::to_string(p.connect_failures) + " failures, last: " + p.last_failure;
    if (s.peers.size() > 1) why = p.endpoint + (why.empty() ? "" : " (" + why + ")");
    down += (down.empty() ? "" : ", ") + why;
  }
  if (down.empty() && std::all_of(s.peers.begin(), s.peers.end(), [](const PeerStats& p) { return p.connected; }))
    return "connected, but nothing was published on topic '" + f.topic + "' since: is the node getting traffic?";
  return "not connected" + (s.peers.size() > 1 ? " to " + down : down.empty() ? "" : " (" + down + ")") + ": " +
         (f.insecure ? "is the node running, on that address, with --insecure?"
                     : "is the node running, and does it allow this key?");
}

std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

bool status_matches(const std::string& filter, uint16_t code) {
  if (filter.empty()) return true;
  if (filter.size() == 3 && filter[1] == 'x' && filter[2] == 'x') return code / 100 == filter[0] - '0';
  return std::to_string(code) == filter;
}

// The origin node of any message kind.
const std::string& origin(const Message& m) {
  return m.kind == MessageKind::request_sent ? m.request.node_id : m.analytics.node_id;
}

// Whether the filters let `m` through. --path and --status say what requests to show; an
// analytics event has neither, so either filter leaves it out.
bool selected(const TailFlags& f, const Message& m) {
  if (!f.node.empty() && origin(m) != f.node) return false;
  if (m.kind != MessageKind::request_sent) return f.path_prefix.empty() && f.status.empty();
  const RequestLog& r = m.request;
  if (!f.path_prefix.empty() && r.path.rfind(f.path_prefix, 0) != 0) return false;
  return status_matches(f.status, r.status_code);
}

// Appends `m` as one line of NDJSON (with its '\n').
void append_line(std::string& line, const Message& m) {
  if (m.kind == MessageKind::request_sent) {
    json::append_ndjson(line, m.request);
  } else if (!segment::append_json(line, m.analytics).empty()) {
    // traits/properties that are not a JSON object (the bus checks their size only): the line
    // must still be JSON, so the event is shown without them.
    AnalyticsEvent shown = m.analytics;
    shown.traits_json.clear();
    shown.properties_json.clear();
    (void)segment::append_json(line, shown);
  }
  line.push_back('\n');
}

// True once the reader of our stdout is gone (`reqbus tail | head -n 1`). This program ignores
// SIGPIPE, so a write fails with EPIPE instead (ferror); and the write end of a pipe polls
// POLLERR as soon as its reader closes, so tail notices even while no event comes to write.
bool reader_gone() {
  if (std::ferror(stdout)) return true;
  pollfd p{STDOUT_FILENO, 0, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)) != 0;
}

}  // namespace

Run add_tail(CLI::App& app) {
  auto f = std::make_shared<TailFlags>();
  app.footer("Output: one JSON object a line. A request has the RequestLog's fields (path, status_code, node_id, ...); "
             "an identify, group or track event is a Segment message whose \"type\" names its kind (origin node in "
             "context.reqbus.nodeId). --path and --status select requests only; --node selects both.");
  app.add_option("--peer", f->peers, "The node's bus endpoint, e.g. tcp://127.0.0.1:7400 (repeatable)")->required();
  app.add_option("--topic", f->topic, "Topic (default requests)");
  app.add_option("--path", f->path_prefix, "Only requests whose path starts with this prefix (no analytics events)");
  app.add_option("--status", f->status, "Only requests of this status (404) or class (5xx) (no analytics events)")
      ->check([](const std::string& s) -> std::string {
        // HTTP status codes are 100..599: classes 1xx..5xx.
        const bool code = s.size() == 3 && s[0] >= '1' && s[0] <= '5' &&
                          ((std::isdigit((unsigned char)s[1]) && std::isdigit((unsigned char)s[2])) || (s[1] == 'x' && s[2] == 'x'));
        return code ? "" : "'" + s + "' is not a status code (100..599, like 404) or class (1xx..5xx)";
      });
  app.add_option("--curve-secret", f->curve_secret, "Our CURVE secret key or key file (its public key must be on the node's allow-list)");
  app.add_flag("--insecure", f->insecure, "Plain tcp (the node runs with --insecure)");
  app.add_option("--node", f->node, "Only events (requests and analytics events) from this origin node");
  app.add_option("-n,--limit", f->limit, "Exit after printing this many events")->check(CLI::Range(int64_t(0), int64_t(1) << 62));
  app.add_option("--warn-after", f->warn_after_s,
                 "Seconds without any event before saying once on stderr what to check (default 5; 0 = never)")
      ->check(finite_range(0, 86400));
  app.add_option("--timeout", f->timeout_s,
                 "Exit with status 1 if no event arrives within this many seconds (default 0: keep waiting)")
      ->check(finite_range(0, 86400));
  return [f]() -> int {
    BusOptions bo;
    bo.name = "tail";
    bo.node_id = "tail-" + std::to_string(::getpid());
    bo.peers = f->peers;
    bo.insecure_plaintext = f->insecure;
    // tail says itself, with the peers' state, what to check when nothing comes (--warn-after,
    // --timeout): the bus's own "peer unreachable" warning would say it a second time.
    bo.peer_unreachable_after = std::chrono::hours(24 * 365);
    if (!f->curve_secret.empty())
      if (auto e = node::read_curve_key(f->curve_secret, "secret_key", "--curve-secret", bo.curve_secret_key); !e.empty())
        throw Error(ErrorCode::invalid_argument, e);
    Bus bus = [&] {
      try {
        return Bus(bo);
      } catch (const Error& e) {  // the Bus names its C++ fields; say which flag
        throw Error(e.code(), in_user_terms(e.what(), tail_terms()));
      }
    }();
    SubscribeOptions so;
    so.topic = f->topic;
    so.scope = Scope::cluster;
    so.name = "tail";
    Subscription sub = bus.subscribe(so);
    std::fprintf(stderr, "reqbus tail: subscribed to '%s' on %zu peer(s); Ctrl-C to stop\n", f->topic.c_str(), f->peers.size());
    int64_t printed = 0;
    std::vector<Message> batch;
    std::string line;
    // Any event counts, also one the filters hide: it shows the node is there and lets us in.
    bool heard = false, warned = false;
    const auto start = std::chrono::steady_clock::now();
    while (f->limit == 0 || printed < f->limit) {
      if (wait_for_signal(std::chrono::milliseconds(0)) != 0) break;
      batch.clear();
      sub.next_batch(batch, 256, std::chrono::milliseconds(200));
      heard = heard || !batch.empty();
      if (!heard) {
        const auto waited = std::chrono::steady_clock::now() - start;
        if (f->timeout_s > 0 && waited >= seconds(f->timeout_s)) {
          const std::string why = hint(*f, bus.stats());
          bus.close(std::chrono::milliseconds(1000));
          std::fprintf(stderr, "reqbus tail: no events from %s within --timeout %gs; %s\n", endpoints(f->peers).c_str(),
                       f->timeout_s, why.c_str());
          return 1;
        }
        if (!warned && f->warn_after_s > 0 && waited >= seconds(f->warn_after_s)) {
          warned = true;
          std::fprintf(stderr, "reqbus tail: no events from %s after %gs; %s (still trying)\n",
                       endpoints(f->peers).c_str(), f->warn_after_s, hint(*f, bus.stats()).c_str());
        }
      }
      for (const Message& m : batch) {
        if (!selected(*f, m)) continue;
        line.clear();
        append_line(line, m);
        std::fwrite(line.data(), 1, line.size(), stdout);
        if (f->limit && ++printed >= f->limit) break;
      }
      std::fflush(stdout);
      if (reader_gone()) {  // like `journalctl -f | head`: nobody reads any more, nothing to say
        bus.close(std::chrono::milliseconds(1000));
        return 0;
      }
    }
    const SubscriptionStats s = sub.stats();
    bus.close(std::chrono::milliseconds(1000));
    std::fprintf(stderr, "reqbus tail: received %llu events, %llu missing (gaps)\n",
                 (unsigned long long)s.received, (unsigned long long)s.gaps);
    return 0;
  };
}

}  // namespace reqbus::app
