#include "app/traffic.hpp"

#include <httplib.h>

#include <array>
#include <cmath>
#include <mutex>
#include <random>

namespace reqbus::app {
namespace {

struct Agent {
  const char* ua;
  int weight;
};
// Weights roughly like a small public site's log: mostly browsers, a steady share of bots.
constexpr std::array<Agent, 14> kAgents = {{
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36", 22},
    {"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", 12},
    {"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", 8},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 18},
    {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36", 14},
    {"Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", 5},
    {"Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36", 3},
    {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 6},
    {"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", 3},
    {"Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", 2},
    {"curl/8.5.0", 2},
    {"python-requests/2.31.0", 2},
    {"Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:Port Check)", 2},
    {"Go-http-client/1.1", 1},
}};

constexpr std::array<const char*, 8> kReferers = {
    "", "", "", "https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
    "https://twitter.com/", "https://www.reddit.com/r/cpp/"};

constexpr std::array<const char*, 10> kScannerPaths = {
    "/wp-login.php", "/.env", "/admin", "/phpmyadmin/", "/.git/config", "/xmlrpc.php",
    "/cgi-bin/luci", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/actuator/health", "/server-status"};

constexpr std::array<const char*, 8> kQueries = {"shoes", "red+shoes", "laptop", "coffee", "desk+lamp",
                                                 "headphones", "%3Cscript%3E", "gift"};

struct Visitor {
  std::string ip;
  const char* ua;
  std::string cookie;  // the session cookie the server gave this visitor
  bool scanner;
  bool bot;
  std::mutex mu;
};


const char* pick_agent(std::mt19937_64& rng) {
  int total = 0;
  for (const auto& a : kAgents) total += a.weight;
  int r = int(rng() % uint64_t(total));
  for (const auto& a : kAgents)
    if ((r -= a.weight) < 0) return a.ua;
  return kAgents[0].ua;
}

}  // namespace

struct TrafficGenerator::World {
  std::vector<std::unique_ptr<Visitor>> visitors;
};

namespace {

std::unique_ptr<TrafficGenerator::World> make_world(const TrafficOptions& o) {
  auto w = std::make_unique<TrafficGenerator::World>();
  std::mt19937_64 rng(o.seed);
  for (int i = 0; i < o.visitors; ++i) {
    auto v = std::make_unique<Visitor>();
    v->ip = std::to_string(11 + rng() % 200) + "." + std::to_string(rng() % 256) + "." +
            std::to_string(rng() % 256) + "." + std::to_string(1 + rng() % 254);
    v->ua = pick_agent(rng);
    const std::string ua = v->ua;
    v->scanner = ua.find("Nikto") != std::string::npos;
    v->bot = v->scanner || ua.find("bot") != std::string::npos || ua.find("curl") != std::string::npos ||
             ua.find("python") != std::string::npos || ua.find("Go-http") != std::string::npos;
    w->visitors.push_back(std::move(v));
  }
  return w;
}

}  // namespace

TrafficGenerator::TrafficGenerator(TrafficOptions options) : options_(std::move(options)) {}
TrafficGenerator::~TrafficGenerator() { stop(); }

void TrafficGenerator::start() {
  world_ = make_world(options_);
  for (int c = 0; c < options_.clients; ++c) threads_.emplace_back([this, c] { run(c); });
}

void TrafficGenerator::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

TrafficStats TrafficGenerator::stats() const { return {sent_.load(), answered_.load(), failed_.load()}; }

void TrafficGenerator::run(int client) {
  World& world = *world_;
  std::mt19937_64 rng(options_.seed * 7919 + uint64_t(client));
  httplib::Client http(options_.host, options_.port);
  http.set_keep_alive(true);
  http.set_tcp_nodelay(true);  // no Nagle + delayed-ACK stalls (40 ms) on small requests
  http.set_connection_timeout(2, 0);
  http.set_read_timeout(5, 0);
  const auto interval = options_.rate > 0
                            ? std::chrono::nanoseconds(int64_t(1e9 * options_.clients / options_.rate))
                            : std::chrono::nanoseconds(0);
  auto next = std::chrono::steady_clock::now();
  while (!stop_.load(std::memory_order_relaxed)) {
    if (interval.count() > 0) {
      next += interval;
      std::this_thread::sleep_until(next);  // pacing the load, not synchronising
    }
    // Returning visitors: a Zipf-like pick favours a core of frequent visitors.
    const size_t n = world.visitors.size();
    const size_t idx = size_t(double(n) * std::pow(double(rng() % 1000000) / 1e6, 2.0)) % n;
    Visitor& v = *world.visitors[idx];
    httplib::Headers headers = {{"User-Agent", v.ua}, {"X-Forwarded-For", v.ip}};
    {
      std::lock_guard lock(v.mu);
      if (!v.cookie.empty()) headers.emplace("Cookie", v.cookie);
    }
    const char* referer = kReferers[rng() % kReferers.size()];
    if (*referer) headers.emplace("Referer", referer);
    httplib::Result res{nullptr, httplib::Error::Unknown};
    const uint64_t r = rng() % 100;
    if (v.scanner || (v.bot && r < 15)) {
      res = http.Get(kScannerPaths[rng() % kScannerPaths.size()], headers);
    } else if (r < 22) {
      res = http.Get("/", headers);
    } else if (r < 60) {
      // A few ids past the catalogue: 404s from stale links.
      res = http.Get("/products/" + std::to_string(1 + rng() % 28), headers);
    } else if (r < 75) {
      res = http.Get(std::string("/api/search?q=") + kQueries[rng() % kQueries.size()], headers);
    } else if (r < 80) {
      res = http.Get("/api/search", headers);  // missing q: 400
    } else if (r < 84) {
      res = http.Get("/login", headers);
    } else if (r < 89) {
      const bool good = rng() % 3 != 0;
      res = http.Post("/login", headers, good ? "user=ada&password=lovelace" : "user=ada&password=guess",
                      "application/x-www-form-urlencoded");
    } else if (r < 94) {
      res = http.Post("/api/checkout", headers, "{\"cart\":[1,2]}", "application/json");
    } else if (r < 97) {
      res = http.Get("/slow?ms=" + std::to_string(20 + rng() % 180), headers);
    } else {
      res = http.Get("/blog/" + std::to_string(2015 + rng() % 10) + "/missing-post", headers);
    }
    sent_.fetch_add(1, std::memory_order_relaxed);
    if (!res) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    answered_.fetch_add(1, std::memory_order_relaxed);
    if (res->has_header("Set-Cookie")) {
      std::string c = res->get_header_value("Set-Cookie");
      c = c.substr(0, c.find(';'));
      std::lock_guard lock(v.mu);
      v.cookie = c;
    }
  }
}

}  // namespace reqbus::app
