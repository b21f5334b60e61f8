#pragma once
// Realistic RequestLogs for benchmarks: the mix a small web shop's access log shows (mostly
// GET, a few POSTs, real browser user agents, search-engine referers, UUID-like session ids),
// about 250 bytes each once encoded with request_id, node_id and seq filled in.
// Deterministic for a given seed, so every benchmark run publishes the same events.
// Thread-safety: pure functions.
#include <array>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "reqbus/request_log.hpp"

namespace reqbus::bench {

// SplitMix64: a tiny deterministic generator (std::mt19937's output is fine too, but its
// distributions are not portable across standard libraries).
struct SplitMix64 {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
};

// `count` distinct events. request_id, node_id and seq are left empty for the bus to fill;
// inserted_at is set (a web server knows when the request completed).
inline std::vector<RequestLog> sample_request_logs(size_t count, uint64_t seed = 42) {
  static const std::array<const char*, 6> agents = {
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
      "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
      "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
      "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"};
  static const std::array<const char*, 6> devices = {"desktop", "desktop", "mobile", "desktop", "mobile", "bot"};
  static const std::array<const char*, 6> sections = {"products", "category", "blog", "cart", "account", "search"};
  static const std::array<const char*, 4> referers = {
      "", "https://www.google.com/", "https://duckduckgo.com/", "https://shop.example.com/category/shoes"};
  SplitMix64 rng{seed};
  std::vector<RequestLog> logs;
  logs.reserve(count);
  const int64_t t0 = 1735689600000000;  // 2025-01-01T00:00:00Z, microseconds
  for (size_t i = 0; i < count; ++i) {
    RequestLog r;
    const uint64_t kind = rng.below(100);
    r.method = kind < 85 ? "GET" : kind < 97 ? "POST" : "PUT";
    char path[96];
    std::snprintf(path, sizeof(path), "/%s/%llu%s", sections[rng.below(sections.size())],
                  (unsigned long long)rng.below(100000), rng.below(4) == 0 ? "?page=2&sort=price" : "");
    r.path = path;
    const uint64_t s = rng.below(100);
    r.status_code = s < 88 ? 200 : s < 93 ? 304 : s < 97 ? 404 : s < 99 ? 302 : 500;
    r.duration_ms = double(rng.below(250000)) / 1000.0;
    const size_t agent = rng.below(agents.size());
    r.user_agent = agents[agent];
    r.device_type = devices[agent];
    char ip[16];
    std::snprintf(ip, sizeof(ip), "%u.%u.%u.%u", unsigned(rng.below(223) + 1),
                  unsigned(rng.below(256)), unsigned(rng.below(256)), unsigned(rng.below(254) + 1));
    r.remote_ip = ip;
    r.referer = referers[rng.below(referers.size())];
    char session[33];
    std::snprintf(session, sizeof(session), "%016llx%016llx", (unsigned long long)rng.next(),
                  (unsigned long long)rng.next());
    r.session_id = session;
    r.session_page_views = uint32_t(rng.below(40) + 1);
    r.inserted_at = t0 + int64_t(i) * 1000 + int64_t(rng.below(1000));
    logs.push_back(std::move(r));
  }
  return logs;
}

}  // namespace reqbus::bench
