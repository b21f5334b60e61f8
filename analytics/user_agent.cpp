// User-agent rules. Bots first: crawlers announce themselves ("bot", "crawl", "spider"),
// scanners and HTTP libraries by name. Then tablets before mobiles (iPad and Android tablets
// also say "Mobile" sometimes), then desktop.
#include "reqbus/user_agent.hpp"

#include <array>
#include <algorithm>
#include <string>
#include <unordered_map>

namespace reqbus {
namespace {

// The needles are lowercase; the user agent is lowercased once (ASCII) into `lower`, then each
// needle is a plain find (memchr-driven). Per-byte tolower per needle cost ~19 us a call.
bool contains(std::string_view lower, std::string_view needle) noexcept {
  return lower.find(needle) != std::string_view::npos;
}

template <size_t N>
bool any_of(std::string_view lower, const std::array<std::string_view, N>& needles) noexcept {
  for (std::string_view n : needles)
    if (contains(lower, n)) return true;
  return false;
}

constexpr std::array<std::string_view, 32> kBots = {
    "bot",      "crawl",     "spider",   "slurp",     "facebookexternalhit", "curl/",
    "wget/",    "python-",   "go-http",  "java/",     "libwww",   "httpclient",
    "okhttp",   "axios/",    "node-fetch", "scrapy",  "headless", "phantomjs",
    "nikto",    "sqlmap",    "nmap",     "masscan",   "zgrab",    "nuclei",
    "wpscan",   "dirbuster", "gobuster", "feroxbuster", "censys", "lighthouse",
    "pingdom",  "uptime"};
constexpr std::array<std::string_view, 4> kTablets = {"ipad", "tablet", "kindle", "silk/"};
constexpr std::array<std::string_view, 5> kMobiles = {"mobi", "iphone", "ipod", "android",
                                                      "windows phone"};

}  // namespace

namespace {

DeviceType classify_uncached(std::string_view user_agent) noexcept {
  char buffer[512];  // rules look at the first 512 bytes; real agents are ~100-300
  const size_t n = std::min(user_agent.size(), sizeof(buffer));
  for (size_t i = 0; i < n; ++i) {
    const char c = user_agent[i];
    buffer[i] = (c >= 'A' && c <= 'Z') ? char(c + 32) : c;
  }
  const std::string_view ua(buffer, n);
  if (any_of(ua, kBots)) return DeviceType::bot;
  if (any_of(ua, kTablets)) return DeviceType::tablet;
  // Android without "Mobile" is a tablet by Google's own convention.
  if (contains(ua, "android") && !contains(ua, "mobile")) return DeviceType::tablet;
  if (any_of(ua, kMobiles)) return DeviceType::mobile;
  return DeviceType::desktop;
}

}  // namespace

DeviceType classify_user_agent(std::string_view user_agent) noexcept {
  if (user_agent.empty() || user_agent == "-") return DeviceType::unknown;
  // Real traffic repeats a few hundred agents: a small per-thread cache answers most calls
  // with one hash and one compare. Bounded: cleared when full.
  struct Cache {
    std::unordered_map<std::string, DeviceType> map;
  };
  thread_local Cache cache;
  try {
    if (user_agent.size() <= 512) {
      thread_local std::string key;
      key.assign(user_agent);
      if (auto it = cache.map.find(key); it != cache.map.end()) return it->second;
      const DeviceType t = classify_uncached(user_agent);
      if (cache.map.size() >= 4096) cache.map.clear();
      cache.map.emplace(key, t);
      return t;
    }
  } catch (...) {  // allocation failure: classify without the cache
  }
  return classify_uncached(user_agent);
}

const char* to_string(DeviceType type) noexcept {
  switch (type) {
    case DeviceType::desktop: return "desktop";
    case DeviceType::mobile: return "mobile";
    case DeviceType::tablet: return "tablet";
    case DeviceType::bot: return "bot";
    case DeviceType::unknown: return "";
  }
  return "";
}

}  // namespace reqbus
