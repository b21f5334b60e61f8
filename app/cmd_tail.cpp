// reqbus tail: subscribe to a node's bus over tcp and print its live stream as NDJSON,
// optionally filtered by path prefix, status and origin node.
#include <cstdio>

#include "analytics/request_json.hpp"
#include "app/commands.hpp"
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
};

bool status_matches(const std::string& filter, uint16_t code) {
  if (filter.empty()) return true;
  if (filter.size() == 3 && filter[1] == 'x' && filter[2] == 'x') return code / 100 == filter[0] - '0';
  return std::to_string(code) == filter;
}

}  // namespace

Run add_tail(CLI::App& app) {
  auto f = std::make_shared<TailFlags>();
  app.add_option("--peer", f->peers, "The node's bus endpoint, e.g. tcp://127.0.0.1:7400 (repeatable)")->required();
  app.add_option("--topic", f->topic, "Topic (default requests)");
  app.add_option("--path", f->path_prefix, "Only paths starting with this prefix");
  app.add_option("--status", f->status, "Only this status (404) or class (5xx)")
      ->check([](const std::string& s) -> std::string {
        // HTTP status codes are 100..599: classes 1xx..5xx.
        const bool code = s.size() == 3 && s[0] >= '1' && s[0] <= '5' &&
                          ((std::isdigit((unsigned char)s[1]) && std::isdigit((unsigned char)s[2])) || (s[1] == 'x' && s[2] == 'x'));
        return code ? "" : "'" + s + "' is not a status code (100..599, like 404) or class (1xx..5xx)";
      });
  app.add_option("--curve-secret", f->curve_secret, "Our CURVE secret key or key file (its public key must be on the node's allow-list)");
  app.add_flag("--insecure", f->insecure, "Plain tcp (the node runs with --insecure)");
  app.add_option("--node", f->node, "Only events from this origin node");
  app.add_option("-n,--limit", f->limit, "Exit after printing this many events")->check(CLI::Range(int64_t(0), int64_t(1) << 62));
  return [f]() -> int {
    BusOptions bo;
    bo.name = "tail";
    bo.node_id = "tail-" + std::to_string(::getpid());
    bo.peers = f->peers;
    bo.insecure_plaintext = f->insecure;
    if (!f->curve_secret.empty())
      if (auto e = node::read_curve_key(f->curve_secret, "secret_key", "--curve-secret", bo.curve_secret_key); !e.empty())
        throw Error(ErrorCode::invalid_argument, e);
    Bus bus(bo);
    SubscribeOptions so;
    so.topic = f->topic;
    so.scope = Scope::cluster;
    so.name = "tail";
    Subscription sub = bus.subscribe(so);
    std::fprintf(stderr, "reqbus tail: subscribed to '%s' on %zu peer(s); Ctrl-C to stop\n", f->topic.c_str(), f->peers.size());
    int64_t printed = 0;
    std::vector<Message> batch;
    std::string line;
    while (f->limit == 0 || printed < f->limit) {
      if (wait_for_signal(std::chrono::milliseconds(0)) != 0) break;
      batch.clear();
      sub.next_batch(batch, 256, std::chrono::milliseconds(200));
      for (const Message& m : batch) {
        if (m.kind != MessageKind::request_sent) continue;
        const RequestLog& r = m.request;
        if (!f->node.empty() && r.node_id != f->node) continue;
        if (!f->path_prefix.empty() && r.path.rfind(f->path_prefix, 0) != 0) continue;
        if (!status_matches(f->status, r.status_code)) continue;
        line.clear();
        json::append_ndjson(line, r);
        line.push_back('\n');
        std::fwrite(line.data(), 1, line.size(), stdout);
        if (f->limit && ++printed >= f->limit) break;
      }
      std::fflush(stdout);
    }
    const SubscriptionStats s = sub.stats();
    bus.close(std::chrono::milliseconds(1000));
    std::fprintf(stderr, "reqbus tail: received %llu events, %llu missing (gaps)\n",
                 (unsigned long long)s.received, (unsigned long long)s.gaps);
    return 0;
  };
}

}  // namespace reqbus::app
