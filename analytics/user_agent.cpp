// User-agent rules. Bots first: crawlers announce themselves ("bot", "crawl", "spider"),
// scanners and HTTP libraries by name. Then tablets before mobiles (iPad and Android tablets
// also say "Mobile" sometimes), then desktop.
#include "reqbus/user_agent.hpp"

#include <array>
#include <cctype>

namespace reqbus {
namespace {

bool contains_ci(std::string_view hay, std::string_view needle) noexcept {
  if (needle.size() > hay.size()) return false;
  for (size_t i = 0; i + needle.size() <= hay.size(); ++i) {
    size_t j = 0;
    while (j < needle.size() &&
           std::tolower(static_cast<unsigned char>(hay[i + j])) == needle[j])
      ++j;
    if (j == needle.size()) return true;
  }
  return false;
}

template <size_t N>
bool any_of(std::string_view ua, const std::array<std::string_view, N>& needles) noexcept {
  for (std::string_view n : needles)
    if (contains_ci(ua, n)) return true;
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

DeviceType classify_user_agent(std::string_view ua) noexcept {
  if (ua.empty() || ua == "-") return DeviceType::unknown;
  if (any_of(ua, kBots)) return DeviceType::bot;
  if (any_of(ua, kTablets)) return DeviceType::tablet;
  // Android without "Mobile" is a tablet by Google's own convention.
  if (contains_ci(ua, "android") && !contains_ci(ua, "mobile")) return DeviceType::tablet;
  if (any_of(ua, kMobiles)) return DeviceType::mobile;
  return DeviceType::desktop;
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
