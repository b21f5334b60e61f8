// web_bench: the example web site (examples/demo_site.hpp) under wrk, with reqbus publishing one
// RequestLog per request (examples/request_logger.hpp, as examples/web_server does) against the
// same site without it, in the same run (issue 4 point 5: <= 3 % throughput, <= 5 % p99 cost).
//
//   web_bench [--runs PAIRS] [--duration S] [--threads N] [--connections N] [--nagle] [--pin]
//             [--shared-cpu] [--modes A,B] [--linger-us N] [--frame-events N] [--json] [--quick]
//
// It starts this program again twice as server children (`--serve off` and `--serve publish`),
// each on a free loopback port, and keeps both up for the whole run. wrk (`--latency -t2 -c32
// -s bench/web_bench.lua`: a mix of the site's pages, products, search, 404s and a POST, with
// returning visitors' cookies) then loads one server at a time for --duration seconds (default
// 2), alternating off, publish, publish, off, ... (ABBA) for --runs pairs (default 40; ~3 min),
// after one warm-up run each.
//
// Why this shape: this 2-vCPU VM changes speed within seconds (the server alone moved between
// 18 k and 30 k req/s, and two identical servers measured 10 s apart differed by up to 15 %).
// Short runs close together put both servers in the same conditions, and many pairs make the
// median of the per-pair ratios (the overhead reported) stable: two identical servers gave a
// median of 0.985 over 20 pairs. Figures are medians over the pairs. Each child also reports
// the CPU time it used (getrusage, all its threads) over the whole program: its
// cpu_us_per_request (server CPU / requests wrk completed against it) is the cost of publishing
// in the server's own CPU, bus threads included.
//
// The server sets TCP_NODELAY (--nagle: not; then every keep-alive response waits ~40 ms for a
// delayed ACK and the run measures that) and listens with a full accept backlog
// (examples/bind_server.hpp; httplib's own backlog of 5 dropped SYNs, and p99 measured the
// retransmits). --linger-us N sets BusOptions::publish_linger in publish mode, --frame-events N
// BusOptions::max_events_per_frame (default: the BusOptions defaults).
//   off      demo site only, no Bus, no RequestLogger hooks
//   publish  demo site + RequestLogger on an in-process Bus (drop_newest, as web_server) with a
//            local view subscription (Bus::subscribe_views: every frame decoded, no string
//            copied) counting every event. The server child reports served/published/dropped at exit; the
//            program fails if an event was dropped or not delivered.
//   nosub    publish without the counting subscription: encode, queue and send, nothing decoded
//   nocookie publish with RequestLoggerOptions::sessions off (cookie-less: no session table, no
//            Set-Cookie)
//   logger   the RequestLogger on a closed Bus: the logger's own work (headers, sessions, user
//            agent, client IP), nothing encoded. --modes A,B picks the two compared (default
//            off,publish), e.g. --shared-cpu --modes logger,nosub to see what the bus adds.
// --pin puts each server child (all its threads: httplib's workers and the bus's) on the last
// CPU and wrk on the others (sched_setaffinity; needs 2 CPUs). Then the server's throughput is
// what one CPU serves, wrk and the servers no longer share caches or a run queue, and a
// publishing cost cannot hide in the CPU wrk leaves idle.
// --shared-cpu measures CPU instead of wall clock: both server children on the last CPU,
// loaded at the same time by one wrk each (-t1 unless --threads) for --duration (default 10 s),
// --runs times (default 6); each run reads both children's CPU time (their /__bench_cpu) and
// reports CPU per request and the publish/off ratio (median over runs). Whatever the machine
// does to that CPU it does to both servers at once, so the ratio holds still (off against off:
// 0.995-1.006 a run) where wall-clock pairs move by 10-20 %: the instrument to decide a change
// of 1-3 % by. Not the target, which is throughput.
// wrk is not installed by this program: it exits 2 if wrk is not on PATH (Debian: apt-get
// install wrk).
#include <httplib.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.hpp"
#include "examples/bind_server.hpp"
#include "examples/demo_site.hpp"
#include "examples/request_logger.hpp"
#include "reqbus/bus.hpp"

using namespace reqbus;
using namespace reqbus::bench;

namespace {

// --- server child -------------------------------------------------------------------------------

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Restricts the calling thread, and every thread or process it starts after this, to CPUs
// [first, last]. Returns false if the kernel refused.
bool pin_to_cpus(int first, int last) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c = first; c <= last; ++c) CPU_SET(c, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

int serve(const std::string& mode, bool nodelay, int linger_us, int frame_events, int pin_cpu) {
  if (pin_cpu >= 0 && !pin_to_cpus(pin_cpu, pin_cpu)) {  // before any thread starts: they all inherit it
    std::perror("web_bench: sched_setaffinity");
    return 1;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::unique_ptr<Bus> bus;
  std::unique_ptr<examples::RequestLogger> logger;
  Subscription sub;
  std::atomic<uint64_t> delivered{0};
  httplib::Server server;
  // httplib writes a response's headers and body separately; without TCP_NODELAY every
  // keep-alive response after the first waits for the client's delayed ACK, ~40 ms, and both
  // variants measure that instead of the server.
  server.set_tcp_nodelay(nodelay);
  examples::install_demo_site(server);
  // How the driver stops this server once wrk is done (SIGTERM is taken by sigwait below).
  server.Get("/__bench_stop", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("stopping\n", "text/plain");
    kill(getpid(), SIGTERM);
  });
  // The CPU this process has used so far (seconds): --shared-cpu reads it around each run.
  server.Get("/__bench_cpu", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::to_string(cpu_seconds()), "text/plain");
  });
  if (mode == "publish" || mode == "nosub" || mode == "logger" || mode == "nocookie") {
    BusOptions bo;
    bo.name = "web-bench";
    bo.node_id = "web-bench";
    bo.overflow = Overflow::drop_newest;  // as examples/web_server: never hold up a server thread
    if (linger_us >= 0) bo.publish_linger = std::chrono::microseconds(linger_us);
    if (frame_events > 0) bo.max_events_per_frame = size_t(frame_events);
    bus = std::make_unique<Bus>(bo);
    if (mode == "publish" || mode == "nocookie") {
      SubscribeOptions so;
      so.scope = Scope::local_only;
      so.name = "count";
      // Reads each event in place (Bus::subscribe_views): the check that every event arrives,
      // without copying its strings out, as a counter or a live view reads them.
      sub = bus->subscribe_views(so, [&](const MessageView&) { delivered.fetch_add(1, std::memory_order_relaxed); });
    }
    if (mode == "logger") bus->close(std::chrono::seconds(5));  // broadcast() returns `closed` at once
    examples::RequestLoggerOptions lo;
    lo.sessions = mode != "nocookie";
    logger = std::make_unique<examples::RequestLogger>(*bus, lo);
    logger->install(server);
  } else if (mode != "off") {
    std::fprintf(stderr, "web_bench: --serve off|publish|nosub|logger|nocookie, not %s\n", mode.c_str());
    return 2;
  }
  const int port = examples::bind_server(server, "127.0.0.1", 0);  // full accept backlog
  if (port <= 0) return 1;
  const double cpu_at_start = cpu_seconds();  // leaves out start-up (and the bus's, below)
  write_line("port " + std::to_string(port));
  std::thread http([&] { server.listen_after_bind(); });
  int sig = 0;
  sigwait(&stop, &sig);
  server.stop();
  http.join();
  // Before close(): the bus has delivered every event by then (checked by the driver).
  const double cpu = cpu_seconds() - cpu_at_start;
  std::string report = "cpu " + std::to_string(cpu) + " served ";
  if (logger) {
    const CloseReport r = bus->close(std::chrono::seconds(30));
    sub.close();
    const auto s = logger->stats();
    report += std::to_string(s.served) + " published " + std::to_string(s.published) + " dropped " +
              std::to_string(s.not_published()) + " delivered " + std::to_string(delivered.load()) +
              (r.deadline_reached ? " deadline" : "");
  } else {
    report += "0 published 0 dropped 0 delivered 0";
  }
  write_line(report);
  return 0;
}

// --- driver -------------------------------------------------------------------------------------

struct WrkResult {
  double requests_per_s = 0;
  double p50_ms = 0, p99_ms = 0;
  uint64_t requests = 0, errors = 0;
};

// "1.23ms" / "850.00us" / "2.01s" -> milliseconds.
double to_ms(const std::string& v) {
  const double x = std::strtod(v.c_str(), nullptr);
  if (v.size() > 2 && v.substr(v.size() - 2) == "us") return x / 1000;
  if (v.size() > 2 && v.substr(v.size() - 2) == "ms") return x;
  if (!v.empty() && v.back() == 's') return x * 1000;
  return x;
}

WrkResult run_wrk(const std::string& wrk, const std::string& script, int port, int threads,
                  int connections, int seconds) {
  const std::string cmd = wrk + " --latency -t" + std::to_string(threads) + " -c" +
                          std::to_string(connections) + " -d" + std::to_string(seconds) + "s -s " + script +
                          " http://127.0.0.1:" + std::to_string(port) + "/ 2>&1";
  std::FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run wrk");
  std::string out;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (pclose(p) != 0) throw std::runtime_error("wrk failed:\n" + out);
  WrkResult r;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream f(line);
    std::string a, b;
    f >> a >> b;
    if (a == "Requests/sec:") r.requests_per_s = std::strtod(b.c_str(), nullptr);
    else if (a == "50%") r.p50_ms = to_ms(b);
    else if (a == "99%") r.p99_ms = to_ms(b);
    else if (line.find("requests in") != std::string::npos) r.requests = std::strtoull(a.c_str(), nullptr, 10);
    else if (a == "Non-2xx") {}  // the mix has 404s and 401s on purpose
    else if (a == "Socket" && b == "errors:") r.errors += 1;
  }
  if (r.requests_per_s <= 0 || r.p99_ms <= 0) throw std::runtime_error("cannot read wrk's output:\n" + out);
  if (r.errors) std::fprintf(stderr, "web_bench: wrk reported socket errors:\n%s\n", out.c_str());
  return r;
}

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');)
    if (!d.empty() && access((d + "/" + program).c_str(), X_OK) == 0) return d + "/" + program;
  return {};
}

// What a server child reports when it stops: its CPU time over the whole program and, for the
// publish server, what the logger and the bus did with every request.
struct ServerReport {
  double cpu_seconds = 0;
  uint64_t served = 0, published = 0, dropped = 0, delivered = 0;
};

// Stops a server child and reads its report; throws if it failed or the publish server lost
// an event (dropped, or published and not delivered).
ServerReport stop_server(Child& child, int port, const std::string& mode) {
  httplib::Client stopper("127.0.0.1", port);
  stopper.Get("/__bench_stop");
  const auto line = child.read_line(60000);
  if (child.wait() != 0 || !line) throw std::runtime_error(mode + " server failed");
  ServerReport r;
  if (std::sscanf(line->c_str(), "cpu %lf served %lu published %lu dropped %lu delivered %lu", &r.cpu_seconds,
                  &r.served, &r.published, &r.dropped, &r.delivered) < 5)
    throw std::runtime_error("cannot read the server's report: " + *line);
  if ((mode == "publish" || mode == "nosub" || mode == "nocookie") && r.dropped != 0)
    throw std::runtime_error(mode + " server dropped events: " + *line);
  if ((mode == "publish" || mode == "nocookie") && (r.published != r.delivered || r.published + 1 < r.served))
    throw std::runtime_error("publish server lost events: " + *line);
  return r;
}

// The CPU seconds a server child has used so far (its /__bench_cpu).
double child_cpu(int port) {
  httplib::Client c("127.0.0.1", port);
  const auto res = c.Get("/__bench_cpu");
  if (!res || res->status != 200) throw std::runtime_error("cannot read a server's CPU time");
  return std::strtod(res->body.c_str(), nullptr);
}

// --shared-cpu: both servers share one CPU and are loaded at the same time, one wrk each (on
// the other CPUs). Whatever the machine does to that CPU during a run, it does to both, so the
// ratio of their CPU time per request is steady (off against off: 0.995-1.006 over 10 s runs)
// where wall-clock pairs move by +-10-20 %. It is the cost of publishing in CPU, the figure the
// throughput overhead follows; not the target, which is wall-clock throughput.
std::vector<Result> shared_cpu_runs(const std::string& wrk, const std::string& script, const int port[2],
                                    const std::string modes[2], int threads, int connections, int duration,
                                    const CommonFlags& common) {
  std::vector<double> us[2], ratio, rps_ratio;
  for (int run = 0; run < common.runs; ++run) {
    double cpu0[2], per_request[2];
    WrkResult got[2];
    for (int m = 0; m < 2; ++m) cpu0[m] = child_cpu(port[m]);
    std::thread other([&] { got[1] = run_wrk(wrk, script, port[1], threads, connections, duration); });
    got[0] = run_wrk(wrk, script, port[0], threads, connections, duration);
    other.join();
    for (int m = 0; m < 2; ++m) {
      per_request[m] = (child_cpu(port[m]) - cpu0[m]) * 1e6 / double(std::max<uint64_t>(1, got[m].requests));
      us[m].push_back(per_request[m]);
    }
    ratio.push_back(per_request[1] / per_request[0]);
    rps_ratio.push_back(got[1].requests_per_s / got[0].requests_per_s);
    if (!common.json)
      std::fprintf(stderr, "run %d/%d: %s %.2f us/request (%.0f req/s) | %s %.2f us/request (%.0f req/s) | "
                   "cpu ratio %.4f | load %s\n", run + 1, common.runs, modes[0].c_str(), per_request[0],
                   got[0].requests_per_s, modes[1].c_str(), per_request[1], got[1].requests_per_s, ratio.back(),
                   load_average().c_str());
  }
  const std::string load = load_average();
  Result off, pub;
  off.name = "web_" + modes[0] + "_cpu_shared";
  off.value = median(us[0]);
  off.unit = "us/request";
  pub.name = "web_" + modes[1] + "_cpu_shared";
  pub.value = median(us[1]);
  pub.unit = "us/request";
  pub.baseline = off.name;
  pub.ratio = median(ratio);
  pub.add("cpu_overhead_pct", (pub.ratio - 1) * 100)
      .add("min_ratio", *std::min_element(ratio.begin(), ratio.end()))
      .add("max_ratio", *std::max_element(ratio.begin(), ratio.end()))
      .add("req_ratio", median(rps_ratio));
  for (Result* r : {&off, &pub})
    r->add("runs", double(common.runs)).add("seconds", double(duration))
        .add("wrk", "-t" + std::to_string(threads) + " -c" + std::to_string(connections) + " each, at once")
        .add("loadavg", load);
  return {off, pub};
}

// The script next to the source (bench/web_bench.lua); the build passes its path.
#ifndef REQBUS_WEB_BENCH_LUA
#define REQBUS_WEB_BENCH_LUA "bench/web_bench.lua"
#endif

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--serve") {  // --serve MODE [--nagle] [--linger-us N] [--frame-events N] [--cpu N]
    bool nodelay = true;
    int linger_us = -1, frame_events = -1, cpu = -1;
    for (int i = 3; i < argc; ++i) {
      if (std::string(argv[i]) == "--nagle") nodelay = false;
      else if (std::string(argv[i]) == "--cpu" && i + 1 < argc) cpu = std::atoi(argv[++i]);
      else if (std::string(argv[i]) == "--linger-us" && i + 1 < argc) linger_us = std::atoi(argv[++i]);
      else if (std::string(argv[i]) == "--frame-events" && i + 1 < argc) frame_events = std::atoi(argv[++i]);
    }
    return serve(argv[2], nodelay, linger_us, frame_events, cpu);
  }
  int duration = 2, threads = 2, connections = 32, linger_us = -1, frame_events = -1;
  bool nagle = false;  // --nagle: leave TCP_NODELAY off, as examples/web_server does
  bool pin = false;    // --pin: servers on the last CPU, wrk on the others
  bool shared_cpu = false;  // --shared-cpu: both servers on the last CPU, loaded at once
  bool duration_given = false, threads_given = false;
  // --modes A,B: the two servers compared (default off,publish). The others, to see where the
  // cost is: logger (the RequestLogger on a closed bus: its own work, nothing encoded) and
  // nosub (publishing with no subscriber: encode, queue and send, nothing decoded).
  std::string modes[2] = {"off", "publish"};
  CommonFlags common;
  try {
    const bool runs_given = [&] {
      for (int i = 1; i < argc; ++i)
        if (std::string(argv[i]) == "--runs") return true;
      return false;
    }();
    common = parse_common_flags(argc, argv, 0);
    if (!runs_given && !common.quick) common.runs = 40;
    if (common.quick) {
      duration = 1;
      if (!runs_given) common.runs = 2;
    }
    for (size_t i = 0; i < common.rest.size(); ++i) {
      const std::string& a = common.rest[i];
      auto number = [&]() {
        if (i + 1 >= common.rest.size()) throw std::invalid_argument(a + ": missing value");
        const int v = std::atoi(common.rest[++i].c_str());
        if (v <= 0) throw std::invalid_argument(a + ": not a positive number");
        return v;
      };
      if (a == "--duration") duration = number(), duration_given = true;
      else if (a == "--threads") threads = number(), threads_given = true;
      else if (a == "--connections") connections = number();
      else if (a == "--nagle") nagle = true;
      else if (a == "--pin") pin = true;
      else if (a == "--shared-cpu") shared_cpu = pin = true;
      else if (a == "--linger-us") linger_us = i + 1 < common.rest.size() ? std::atoi(common.rest[++i].c_str()) : -1;
      else if (a == "--frame-events") frame_events = number();
      else if (a == "--modes" && i + 1 < common.rest.size()) {
        const std::string v = common.rest[++i];
        const size_t comma = v.find(',');
        if (comma == std::string::npos) throw std::invalid_argument("--modes: A,B");
        modes[0] = v.substr(0, comma), modes[1] = v.substr(comma + 1);
        for (const std::string& m : modes)
          if (m != "off" && m != "publish" && m != "nosub" && m != "logger" && m != "nocookie")
            throw std::invalid_argument("--modes: " + m + " is not off, publish, nosub, logger or nocookie");
      }
      else throw std::invalid_argument("unknown argument " + a);
    }
    if (shared_cpu && !runs_given && !common.quick) common.runs = 6;
    if (shared_cpu && !duration_given && !common.quick) duration = 10;
    if (shared_cpu && !threads_given) threads = 1;  // two wrk at once on the other CPU(s)
  } catch (const std::exception& e) {
    std::fprintf(stderr, "web_bench: %s\nusage: web_bench [--runs N] [--duration S] [--threads N] "
                         "[--connections N] [--nagle] [--pin] [--shared-cpu] [--modes A,B] [--linger-us N] [--frame-events N] [--json] [--quick]\n", e.what());
    return 2;
  }
  const std::string wrk = find_on_path("wrk");
  if (wrk.empty()) {
    std::fprintf(stderr, "web_bench: wrk is not on PATH (Debian: apt-get install wrk)\n");
    return 2;
  }
  const std::string script = REQBUS_WEB_BENCH_LUA;
  if (access(script.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "web_bench: cannot read the wrk script %s\n", script.c_str());
    return 2;
  }

  try {
    const int cpus = int(std::thread::hardware_concurrency());
    if (pin && cpus < 2) throw std::runtime_error("--pin needs at least 2 CPUs");

    // Both servers stay up for the whole program; wrk alternates between them.
    std::unique_ptr<Child> child[2];
    int port[2] = {0, 0};
    for (int m = 0; m < 2; ++m) {
      std::vector<std::string> args{"--serve", modes[m]};
      if (nagle) args.push_back("--nagle");
      if (linger_us >= 0) args.insert(args.end(), {"--linger-us", std::to_string(linger_us)});
      if (frame_events > 0) args.insert(args.end(), {"--frame-events", std::to_string(frame_events)});
      if (pin) args.insert(args.end(), {"--cpu", std::to_string(cpus - 1)});
      child[m] = std::make_unique<Child>(args);
      const auto hello = child[m]->read_line(30000);
      if (!hello || hello->rfind("port ", 0) != 0) throw std::runtime_error("server child did not start");
      port[m] = std::atoi(hello->c_str() + 5);
    }
    // This thread starts wrk (popen), which inherits the mask; the children have theirs.
    if (pin && !pin_to_cpus(0, cpus - 2)) throw std::runtime_error("sched_setaffinity failed");
    uint64_t requests[2] = {0, 0};  // every request wrk completed against each server
    for (int m = 0; m < 2; ++m)     // warm-up: connections, caches, the session table
      requests[m] += run_wrk(wrk, script, port[m], threads, connections, duration).requests;
    if (shared_cpu) {
      print_results(shared_cpu_runs(wrk, script, port, modes, threads, connections, duration, common), common.json);
      for (int m = 0; m < 2; ++m) stop_server(*child[m], port[m], modes[m]);
      return 0;
    }
    std::vector<double> rps[2], p50[2], p99[2], rps_ratio, p99_ratio;
    for (int run = 0; run < common.runs; ++run) {
      WrkResult pair[2];
      for (int k = 0; k < 2; ++k) {
        const int m = run % 2 == 0 ? k : 1 - k;  // ABBA
        pair[m] = run_wrk(wrk, script, port[m], threads, connections, duration);
        requests[m] += pair[m].requests;
        rps[m].push_back(pair[m].requests_per_s);
        p50[m].push_back(pair[m].p50_ms);
        p99[m].push_back(pair[m].p99_ms);
      }
      rps_ratio.push_back(pair[1].requests_per_s / pair[0].requests_per_s);
      p99_ratio.push_back(pair[1].p99_ms / pair[0].p99_ms);
      if (!common.json || run % 10 == 9 || run + 1 == common.runs)
        std::fprintf(stderr, "pair %d/%d: %s %.0f req/s p99 %.2f ms | %s %.0f req/s p99 %.2f ms | "
                     "median ratio so far %.4f | load %s\n",
                     run + 1, common.runs, modes[0].c_str(), pair[0].requests_per_s, pair[0].p99_ms,
                     modes[1].c_str(), pair[1].requests_per_s, pair[1].p99_ms, median(rps_ratio),
                     load_average().c_str());
    }
    // Stop both; each reports its CPU time over the whole program (warm-up included).
    double cpu_us[2] = {0, 0};
    uint64_t served = 0, published = 0, delivered = 0, dropped = 0;
    for (int m = 0; m < 2; ++m) {
      const ServerReport r = stop_server(*child[m], port[m], modes[m]);
      if (m == 1) served = r.served, published = r.published, dropped = r.dropped, delivered = r.delivered;
      cpu_us[m] = r.cpu_seconds * 1e6 / double(std::max<uint64_t>(1, requests[m]));
    }
    const std::string load = load_average();
    const std::string wrk_args = "--latency -t" + std::to_string(threads) + " -c" + std::to_string(connections) +
                                 " -d" + std::to_string(duration) + "s";
    std::vector<Result> results;
    for (int m = 0; m < 2; ++m) {
      Result r;
      r.name = std::string("web_") + modes[m];
      r.value = std::round(median(rps[m]));
      r.unit = "req/s";
      if (m == 1) {
        r.baseline = "web_" + modes[0];
        r.ratio = median(rps_ratio);
        r.add("throughput_overhead_pct", (1 - r.ratio) * 100).add("target_overhead_pct", 3.0)
            .add("meets_target", (1 - r.ratio) * 100 <= 3.0);
      }
      r.add("tcp_nodelay", !nagle).add("pinned", pin).add("min", std::round(*std::min_element(rps[m].begin(), rps[m].end())))
          .add("max", std::round(*std::max_element(rps[m].begin(), rps[m].end())))
          .add("p50_ms", median(p50[m])).add("p99_ms", median(p99[m]))
          .add("cpu_us_per_request", cpu_us[m]).add("pairs", double(common.runs))
          .add("wrk", wrk_args);
      if (m == 1) r.add("cpu_overhead_pct", (cpu_us[1] / cpu_us[0] - 1) * 100)
                      .add("publish_linger_us", linger_us >= 0 ? double(linger_us)
                                                               : double(BusOptions{}.publish_linger.count()))
                      .add("max_events_per_frame", frame_events > 0 ? double(frame_events)
                                                                    : double(BusOptions{}.max_events_per_frame));
      if (m == 1) r.add("served", double(served)).add("published", double(published))
                      .add("delivered", double(delivered)).add("dropped", double(dropped));
      results.push_back(r);
    }
    Result lat;
    lat.name = "web_" + modes[1] + "_p99";
    lat.value = median(p99[1]);
    lat.unit = "ms";
    lat.baseline = "web_" + modes[0] + "_p99";
    lat.ratio = median(p99_ratio);
    lat.add("baseline_value", median(p99[0])).add("p99_overhead_pct", (lat.ratio - 1) * 100)
        .add("target_overhead_pct", 5.0).add("meets_target", (lat.ratio - 1) * 100 <= 5.0);
    results.push_back(lat);
    for (auto& r : results) r.add("loadavg", load);
    print_results(results, common.json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "web_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
