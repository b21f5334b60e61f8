// bus_peer: a reqbus node in its own process, driven by tests/bus_scope_test.cpp over a line
// protocol on stdin/stdout.
//   bus_peer --node ID [--peer tcp://...]... [--secret Z85 --allow Z85...]
// Plain tcp (insecure_plaintext) unless --secret is given; then peers are "tcp://...#serverkey"
// and --allow lists the client keys its bound endpoint admits.
// It binds tcp://127.0.0.1:* and prints "ready <endpoint>", then answers one line per command:
//   probe                      broadcast one event on topic "probe"          -> "ok"
//   probed NODE MS             did a probe from NODE arrive (waits <= MS ms)  -> "probed yes|no"
//   publish G L                broadcast G and local_broadcast L events on "requests", then
//                              broadcast the end marker "/end"               -> "published <ok>"
//   wait_end NODE MS           wait for NODE's end marker (cluster sub)      -> "end yes|no"
//   wait_local_end NODE MS     the same on the local_only subscription       -> "end yes|no"
//   counts NODE                what its subscriptions saw from NODE:
//                              "counts cluster_g=.. cluster_l=.. cluster_end=.. local_g=.. local_l=.. local_end=.."
//   stats                      "stats malformed=.. remote_gaps=.. gaps=.."
//   quit (or EOF)              close the bus and exit 0
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "reqbus/bus.hpp"

using namespace reqbus;

namespace {

struct Tally {
  uint64_t g = 0, l = 0, end = 0;
};

struct Seen {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, Tally> cluster, local;   // by origin node
  std::map<std::string, uint64_t> probes;        // by origin node

  static void count(std::map<std::string, Tally>& m, const Message& msg) {
    Tally& t = m[msg.request.node_id];
    const std::string& p = msg.request.path;
    if (p == "/end") ++t.end;
    else if (p.rfind("/g/", 0) == 0) ++t.g;
    else if (p.rfind("/l/", 0) == 0) ++t.l;
  }
};

RequestLog event(const std::string& path) {
  RequestLog r;
  r.method = "GET";
  r.path = path;
  r.status_code = 200;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  BusOptions options;
  options.bind = "tcp://127.0.0.1:*";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--node") options.node_id = argv[i + 1];
    else if (flag == "--peer") options.peers.push_back(argv[i + 1]);
    else if (flag == "--secret") options.curve_secret_key = argv[i + 1];
    else if (flag == "--allow") options.curve_allowed_clients.push_back(argv[i + 1]);
    else {
      std::cerr << "bus_peer: unknown flag " << flag << "\n";
      return 2;
    }
  }
  options.insecure_plaintext = options.curve_secret_key.empty();
  Bus bus(options);
  Seen seen;
  SubscribeOptions cluster_options;
  cluster_options.scope = Scope::cluster;
  auto cluster = bus.subscribe(cluster_options, [&](const Message& m) {
    std::lock_guard lock(seen.mu);
    Seen::count(seen.cluster, m);
    seen.cv.notify_all();
  });
  SubscribeOptions local_options;
  local_options.scope = Scope::local_only;
  auto local = bus.subscribe(local_options, [&](const Message& m) {
    std::lock_guard lock(seen.mu);
    Seen::count(seen.local, m);
    seen.cv.notify_all();
  });
  SubscribeOptions probe_options;
  probe_options.topic = "probe";
  auto probe = bus.subscribe(probe_options, [&](const Message& m) {
    std::lock_guard lock(seen.mu);
    ++seen.probes[m.request.node_id];
    seen.cv.notify_all();
  });

  std::cout << "ready " << bus.bound_endpoint() << std::endl;
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "probe") {
      const auto status = bus.broadcast(event("/probe"), "probe");
      std::cout << (status == PublishStatus::ok ? "ok" : to_string(status)) << std::endl;
    } else if (command == "probed" || command == "wait_end" || command == "wait_local_end") {
      std::string node;
      int ms = 0;
      in >> node >> ms;
      std::unique_lock lock(seen.mu);
      const bool yes = seen.cv.wait_for(lock, std::chrono::milliseconds(ms), [&] {
        if (command == "probed") return seen.probes[node] > 0;
        return (command == "wait_end" ? seen.cluster : seen.local)[node].end > 0;
      });
      std::cout << (command == "probed" ? "probed " : "end ") << (yes ? "yes" : "no") << std::endl;
    } else if (command == "publish") {
      int g = 0, l = 0;
      in >> g >> l;
      uint64_t ok = 0;
      for (int i = 0; i < g; ++i) ok += bus.broadcast(event("/g/" + std::to_string(i))) == PublishStatus::ok;
      for (int i = 0; i < l; ++i) ok += bus.local_broadcast(event("/l/" + std::to_string(i))) == PublishStatus::ok;
      ok += bus.broadcast(event("/end")) == PublishStatus::ok;
      std::cout << "published " << ok << std::endl;
    } else if (command == "counts") {
      std::string node;
      in >> node;
      std::lock_guard lock(seen.mu);
      const Tally c = seen.cluster[node], l = seen.local[node];
      std::cout << "counts cluster_g=" << c.g << " cluster_l=" << c.l << " cluster_end=" << c.end
                << " local_g=" << l.g << " local_l=" << l.l << " local_end=" << l.end << std::endl;
    } else if (command == "stats") {
      const BusStats s = bus.stats();
      uint64_t malformed = 0, gaps = 0;
      for (uint64_t m : s.malformed) malformed += m;
      for (const auto& sub : s.subscriptions) gaps += sub.gaps;
      std::cout << "stats malformed=" << malformed << " remote_gaps=" << s.remote_gaps
                << " gaps=" << gaps << " remote_events=" << s.remote_events << " auth_refused=" << s.auth_refused
                << " handshake_failures=" << s.handshake_failures << std::endl;
    } else if (command == "quit") {
      break;
    } else {
      std::cout << "error unknown command '" << command << "'" << std::endl;
    }
  }
  const CloseReport report = bus.close(std::chrono::seconds(10));
  return report.deadline_reached ? 1 : 0;
}
