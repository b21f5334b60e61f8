#pragma once
// TrafficGenerator: realistic HTTP traffic against a web server for `reqbus demo` — many paths
// and methods, 2xx/3xx/4xx/5xx, browsers on desktops, phones and tablets, search bots, HTTP
// libraries and vulnerability scanners, and returning visitors whose session cookie the server
// set. Each visitor has its own address, sent as X-Forwarded-For (the demo's web server trusts
// 127.0.0.1 as its proxy). Requests are paced to `rate` per second overall (0 = as fast as the
// server answers).
// Thread-safety: start() once, stop() once, stats() from any thread.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace reqbus::app {

struct TrafficOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  int clients = 4;        // concurrent connections
  double rate = 1500;     // requests per second overall; 0 = unpaced
  int visitors = 400;     // distinct simulated visitors (address + user agent + session)
  uint64_t seed = 42;
};

struct TrafficStats {
  uint64_t sent = 0;
  uint64_t answered = 0;  // got an HTTP response (any status)
  uint64_t failed = 0;    // connection errors
};

class TrafficGenerator {
 public:
  explicit TrafficGenerator(TrafficOptions options);
  ~TrafficGenerator();
  void start();
  void stop();
  TrafficStats stats() const;
  struct World;  // the simulated visitors (traffic.cpp)

 private:
  void run(int client);
  TrafficOptions options_;
  std::unique_ptr<World> world_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> sent_{0}, answered_{0}, failed_{0};
};

}  // namespace reqbus::app
