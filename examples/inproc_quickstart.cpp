// inproc_quickstart: the smallest complete use of reqbus, inside one process.
// One Bus, one handler subscription on topic "requests", a dozen realistic request logs
// broadcast, then close() and its report. Exit status 0 if every published event was delivered.
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"

using namespace reqbus;

namespace {

struct Sample {
  const char* method;
  const char* path;
  uint16_t status;
  double ms;
  const char* device;
  const char* user_agent;
  const char* session;
  uint32_t views;
};

// What a small shop sees in a few seconds: two visitors browsing, a crawler, a failed login,
// a broken link, a slow search and one server error.
const std::vector<Sample> kTraffic = {
    {"GET", "/", 200, 4.2, "desktop", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "s-alice", 1},
    {"GET", "/products/7", 200, 6.8, "desktop", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "s-alice", 2},
    {"GET", "/", 200, 3.9, "mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148", "s-bob", 1},
    {"GET", "/robots.txt", 200, 0.4, "bot", "Mozilla/5.0 (compatible; Googlebot/2.1)", "", 0},
    {"GET", "/api/search", 200, 182.5, "mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148", "s-bob", 2},
    {"POST", "/login", 401, 12.1, "desktop", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "s-alice", 3},
    {"POST", "/login", 303, 14.7, "desktop", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "s-alice", 4},
    {"GET", "/products/99", 404, 2.2, "bot", "Mozilla/5.0 (compatible; Googlebot/2.1)", "", 0},
    {"GET", "/products/12", 200, 5.5, "tablet", "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X)", "s-carol", 1},
    {"GET", "/checkout", 500, 48.0, "desktop", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "s-alice", 5},
    {"GET", "/wp-login.php", 404, 0.9, "bot", "python-requests/2.31", "", 0},
    {"GET", "/products/7", 200, 6.1, "mobile", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148", "s-bob", 3},
};

// What the subscriber saw. Written only on the subscription's thread; read by main after
// close(), which joins that thread.
struct Tally {
  uint64_t events = 0;
  std::map<std::string, uint64_t> status_classes, devices;
  double slowest_ms = 0;
  std::string slowest;
};

}  // namespace

int main() {
  try {
    BusOptions options;
    options.name = "quickstart";
    options.node_id = "quickstart-node";
    Bus bus(options);
    std::printf("reqbus quickstart: an in-process bus, one subscriber, %zu requests\n\n", kTraffic.size());
    std::printf("bus '%s' on node '%s' (inproc only: no --bind, no peers)\n", bus.name().c_str(),
                bus.node_id().c_str());

    Tally tally;
    SubscribeOptions sub_options;
    sub_options.topic = kDefaultTopic;
    sub_options.name = "printer";
    Subscription printer = bus.subscribe(sub_options, [&tally](const Message& m) {
      const RequestLog& r = m.request;
      const std::string session =
          r.session_id.empty() ? "-" : r.session_id + "#" + std::to_string(r.session_page_views);
      std::printf("  seq %-2" PRIu64 " %-4s %-13s %3u %6.1f ms  %-7s %-10s id %s\n", r.seq,
                  r.method.c_str(), r.path.c_str(), unsigned(r.status_code), r.duration_ms,
                  r.device_type.c_str(), session.c_str(), r.request_id.c_str());
      ++tally.events;
      ++tally.status_classes[std::to_string(r.status_code / 100) + "xx"];
      ++tally.devices[r.device_type];
      if (r.duration_ms > tally.slowest_ms) {
        tally.slowest_ms = r.duration_ms;
        tally.slowest = r.method + " " + r.path;
      }
    });
    std::printf("subscription '%s' on topic '%s' is live; its handler runs on its own thread\n\n",
                sub_options.name.c_str(), sub_options.topic.c_str());

    std::printf("broadcasting; the bus stamps request_id (UUIDv7), inserted_at, node_id and seq.\n"
                "the subscriber prints what it receives (session#page views):\n");
    uint64_t refused = 0;
    for (const Sample& s : kTraffic) {
      RequestLog log;
      log.method = s.method;
      log.path = s.path;
      log.status_code = s.status;
      log.duration_ms = s.ms;
      log.user_agent = s.user_agent;
      log.remote_ip = "203.0.113.7";
      log.device_type = s.device;
      log.session_id = s.session;
      log.session_page_views = s.views;
      if (const PublishStatus st = bus.broadcast(log); st != PublishStatus::ok) {
        std::printf("  broadcast refused: %s\n", to_string(st));
        ++refused;
      }
    }

    // close() stops accepting, delivers everything already accepted, joins the threads.
    const CloseReport r = bus.close(std::chrono::seconds(5));
    std::printf("\nclosed the bus in %lld ms%s\n", static_cast<long long>(r.took.count()),
                r.deadline_reached ? " (deadline reached: something was still in flight)" : "");
    std::printf("  published  %" PRIu64 "\n  delivered  %" PRIu64 "\n", r.published, r.delivered);
    std::printf("  dropped    %" PRIu64 "  (queue full %" PRIu64 ", evicted %" PRIu64 ", timed out %" PRIu64
                ", at close %" PRIu64 ")\n",
                r.dropped_newest + r.dropped_oldest + r.dropped_timeout + r.dropped_close_deadline,
                r.dropped_newest, r.dropped_oldest, r.dropped_timeout, r.dropped_close_deadline);
    std::printf("  gaps       %" PRIu64 "\n", r.gaps);

    std::printf("\nwhat the subscriber counted:\n  status    ");
    for (const auto& [cls, n] : tally.status_classes) std::printf(" %s %" PRIu64, cls.c_str(), n);
    std::printf("\n  devices   ");
    for (const auto& [device, n] : tally.devices) std::printf(" %s %" PRIu64, device.c_str(), n);
    std::printf("\n  slowest    %s (%.1f ms)\n", tally.slowest.c_str(), tally.slowest_ms);

    const bool ok = refused == 0 && r.delivered == kTraffic.size() && tally.events == kTraffic.size();
    std::printf("\n%s: %" PRIu64 " of %zu requests published and delivered\n", ok ? "OK" : "FAILED",
                tally.events, kTraffic.size());
    return ok ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "inproc_quickstart: %s\n", e.what());
    return 1;
  }
}
