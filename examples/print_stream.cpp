// print_stream: subscribes to a node over tcp and prints its live request stream, one line per
// event: completion time, node, method, path, status, duration, device, session#page views and
// client address.
//
//   print_stream --peer tcp://127.0.0.1:7400 [--peer ...] [--topic requests] [--count N]
//
// It is itself a (client-only) Bus with `peers` set and a cluster-scope subscription. SIGINT or
// SIGTERM (or --count events) ends it with a summary: events, gaps (events the network lost,
// found from each origin's sequence numbers) and malformed frames.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "examples/flags.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"

using namespace reqbus;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

// Request fields come from the network: show control bytes as \xNN so that nothing a client
// sends can drive the terminal.
std::string printable(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c < 0x20 || c == 0x7f) {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string clock_time(int64_t unix_us) {
  const time_t secs = time_t(unix_us / 1'000'000);
  tm local{};
  localtime_r(&secs, &local);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03d", local.tm_hour, local.tm_min, local.tm_sec,
                int(unix_us / 1000 % 1000));
  return buf;
}

void print_event(const Message& m) {
  if (m.kind != MessageKind::request_sent) {
    const AnalyticsEvent& a = m.analytics;
    std::printf("%s  %-16s %-6s user=%s %s\n", clock_time(a.timestamp).c_str(),
                printable(a.node_id, 16).c_str(), to_string(m.kind),
                printable(a.user_id, 40).c_str(), printable(a.event, 40).c_str());
    return;
  }
  const RequestLog& r = m.request;
  const std::string session =
      r.session_id.empty() ? "-" : r.session_id.substr(0, 8) + "#" + std::to_string(r.session_page_views);
  std::printf("%s  %-12s %-6s %-36s %3u %9.2f ms  %-7s %-13s %s\n", clock_time(r.inserted_at).c_str(),
              printable(r.node_id, 12).c_str(), printable(r.method, 7).c_str(),
              printable(r.path, 36).c_str(), unsigned(r.status_code), r.duration_ms,
              printable(r.device_type, 7).c_str(), session.c_str(), printable(r.remote_ip, 40).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags(argc, argv,
                        "--peer tcp://HOST:PORT [--peer ...] [--topic requests] [--count N] [--node-id ID]");
  BusOptions options;
  options.name = "print_stream";
  options.peers = flags.all("peer");
  options.insecure_plaintext = true;  // examples speak plain tcp; docs/CLUSTER.md sets up CURVE
  options.node_id = flags.str("node-id");
  SubscribeOptions sub_options;
  sub_options.topic = flags.str("topic", kDefaultTopic);
  sub_options.scope = Scope::cluster;  // the peers' events, not only our own (we publish none)
  sub_options.name = "print_stream";
  const long count = flags.num("count", 0, 0, 1'000'000'000);
  flags.done();
  if (options.peers.empty()) flags.fail("--peer is required (the --bind endpoint of a web_server or node)");

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  try {
    Bus bus(options);
    Subscription sub = bus.subscribe(sub_options);
    std::fprintf(stderr, "print_stream: subscribed to '%s' on", sub_options.topic.c_str());
    for (const auto& p : options.peers) std::fprintf(stderr, " %s", p.c_str());
    std::fprintf(stderr, " (Ctrl-C to stop)\n");

    std::vector<Message> batch;
    uint64_t events = 0;
    while (!g_stop && (count == 0 || events < uint64_t(count))) {
      batch.clear();
      const size_t max = count == 0 ? 256 : std::min<size_t>(256, size_t(count) - events);
      sub.next_batch(batch, max, std::chrono::milliseconds(200));
      for (const Message& m : batch) print_event(m);
      events += batch.size();
      if (!batch.empty()) std::fflush(stdout);
    }

    const SubscriptionStats s = sub.stats();
    const CloseReport report = bus.close();
    const BusStats b = bus.stats();
    uint64_t malformed = 0;
    for (uint64_t n : b.malformed) malformed += n;
    std::fprintf(stderr,
                 "print_stream: %" PRIu64 " events printed, %" PRIu64 " frames from peers, %" PRIu64
                 " gaps (events lost upstream), %" PRIu64 " malformed frames, %" PRIu64
                 " dropped here, closed in %lld ms\n",
                 events, b.remote_frames, s.gaps, malformed,
                 s.dropped_newest + s.dropped_oldest + s.dropped_close,
                 static_cast<long long>(report.took.count()));
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "print_stream: %s\n", e.what());
    return 1;
  }
}
