#pragma once
// A deterministic generator of realistic nginx/Apache "combined" access-log lines followed by
// $request_time, for ingest_bench:
//
//   203.0.113.7 - - [20/Nov/2026:13:55:36 +0000] "GET /products/12?ref=nav HTTP/1.1" 200 5123
//   "https://www.google.com/search?q=shop" "Mozilla/5.0 (...) Chrome/119.0 Safari/537.36" 0.014
//
// 20,000 clients (IPv4 and ~6 % IPv6), each with one user agent from a pool of browsers, phones,
// tablets, crawlers, scanners and scripts; a few clients make most of the requests (skewed
// pick). Paths: pages, products, categories with query strings, search, static assets, an API,
// login/cart/checkout, blog posts, and scanner probes (/wp-login.php, /.env, ...). Status codes
// follow the path (304 for revalidated assets, 404 for probes and unknown ids, rare 500/502/503,
// 301 redirects, 401/403). Time advances monotonically over about one day.
//
// Same seed, same bytes, on every machine: only std::mt19937_64's raw output is used (the
// standard fixes its sequence; the <random> distributions it does not).
//
// Thread-safety: a CombinedLogGenerator is used by one thread.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <random>
#include <string>
#include <vector>

namespace reqbus::bench {

class CombinedLogGenerator {
 public:
  explicit CombinedLogGenerator(uint64_t seed = 20261120) : rng_(seed) {
    clients_.reserve(kClients);
    for (size_t i = 0; i < kClients; ++i) {
      Client c;
      if (below(100) < 6) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "2001:db8:%x:%x::%x", unsigned(below(0xffff)),
                      unsigned(below(0xffff)), unsigned(1 + below(0xfffe)));
        c.ip = buf;
      } else {
        c.ip = std::to_string(1 + below(223)) + "." + std::to_string(below(256)) + "." +
               std::to_string(below(256)) + "." + std::to_string(1 + below(254));
      }
      c.agent = pick_agent();
      clients_.push_back(std::move(c));
    }
  }

  // Appends one line (with its '\n') to `out`.
  void append_line(std::string& out) {
    // ~1 M lines over about a day: advance 0..2 s at a time, 0 most often.
    const uint64_t step = below(1000);
    if (step >= 940) now_ += 1 + (step >= 995);
    const Client& c = clients_[skewed(kClients)];
    const bool bot = c.agent >= kFirstBotAgent;
    const bool scanner = c.agent >= kFirstScannerAgent;

    std::string method = "GET", path, query;
    int status = 200;
    uint64_t bytes = 0;
    const uint64_t r = below(1000);
    if (scanner && r < 700) {
      static const std::array<const char*, 10> probes = {
          "/wp-login.php", "/.env", "/admin/config.php", "/phpmyadmin/index.php", "/.git/config",
          "/xmlrpc.php", "/wp-admin/setup-config.php", "/cgi-bin/luci", "/vendor/phpunit/eval-stdin.php",
          "/actuator/health"};
      path = probes[below(probes.size())];
      method = below(10) < 2 ? "POST" : "GET";
      status = below(10) < 9 ? 404 : 403;
      bytes = 150 + below(400);
    } else if (r < 300) {  // static assets: many revalidated
      static const std::array<const char*, 6> assets = {
          "/static/css/app.3f9a1c.css", "/static/js/app.8b21e0.js", "/static/js/vendor.c0ffee.js",
          "/favicon.ico", "/static/fonts/inter-var.woff2", "/robots.txt"};
      if (below(2)) {
        path = "/images/products/p" + std::to_string(1 + below(400)) + (below(3) ? ".jpg" : ".webp");
      } else {
        path = assets[below(assets.size())];
      }
      status = below(100) < 22 ? 304 : (below(1000) < 6 ? 404 : 200);
      bytes = status == 304 ? 0 : 800 + below(180000);
    } else if (r < 520) {
      const uint64_t id = 1 + skewed(600);
      path = "/products/" + std::to_string(id);
      if (below(4) == 0) query = "?ref=" + std::string(below(2) ? "nav" : "search");
      status = id > 480 ? 404 : 200;
      bytes = status == 200 ? 9000 + below(30000) : 1200 + below(300);
    } else if (r < 640) {
      static const std::array<const char*, 8> cats = {"shoes", "bags", "shirts", "hats",
                                                      "jackets", "socks", "watches", "sale"};
      path = "/category/" + std::string(cats[below(cats.size())]);
      if (below(3) == 0) query = "?page=" + std::to_string(1 + below(12)) + "&sort=price";
      bytes = 12000 + below(40000);
    } else if (r < 720) {
      static const std::array<const char*, 10> words = {"red+shoes", "leather", "gift", "summer",
                                                        "xl", "waterproof", "kids", "wool", "black", "sale"};
      path = "/api/search";
      query = below(50) ? "?q=" + std::string(words[below(words.size())]) : "";
      status = query.empty() ? 400 : 200;
      bytes = 200 + below(6000);
    } else if (r < 790) {
      path = "/";
      bytes = 15000 + below(5000);
    } else if (r < 850) {
      path = "/api/cart";
      method = below(3) ? "POST" : (below(2) ? "PUT" : "DELETE");
      status = below(100) < 4 ? 401 : 200;
      bytes = 100 + below(900);
    } else if (r < 900) {
      path = below(2) ? "/login" : "/checkout";
      method = below(2) ? "POST" : "GET";
      status = method == "POST" ? (below(10) < 7 ? 303 : 401) : 200;
      bytes = method == "POST" ? 0 : 4000 + below(2000);
    } else if (r < 960) {
      path = "/blog/" + std::to_string(2019 + below(8)) + "/post-" + std::to_string(1 + below(200));
      bytes = 20000 + below(60000);
      if (below(50) == 0) status = 301, bytes = 162;
    } else if (r < 985) {
      path = "/old/" + std::to_string(below(10000));
      status = below(3) ? 404 : 301;
      bytes = status == 404 ? 1300 : 162;
    } else {
      path = "/api/orders/" + std::to_string(10000 + below(90000));
      method = below(5) ? "GET" : "HEAD";
      status = below(100) < 3 ? 403 : 200;
      bytes = method == "HEAD" ? 0 : 300 + below(3000);
    }
    if (status == 200 && below(1000) < 4) {  // rare server errors
      static const std::array<int, 4> errors = {500, 500, 502, 503};
      status = errors[below(errors.size())];
    }

    // $request_time: mostly milliseconds, a long tail, slow server errors.
    uint64_t ms = below(4) ? 1 + below(30) : 20 + below(400);
    if (below(100) == 0) ms += 500 + below(4500);
    if (status >= 500) ms += 1000 + below(29000);
    if (status == 304) ms = below(3);

    char time_buf[40];
    const std::time_t t = std::time_t(now_);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::strftime(time_buf, sizeof time_buf, "%d/%b/%Y:%H:%M:%S +0000", &tm);

    out += c.ip;
    out += " - - [";
    out += time_buf;
    out += "] \"";
    out += method;
    out += ' ';
    out += path;
    out += query;
    out += below(10) ? " HTTP/1.1\" " : " HTTP/2.0\" ";
    out += std::to_string(status);
    out += ' ';
    out += std::to_string(bytes);
    out += " \"";
    out += referer(bot, path);
    out += "\" \"";
    out += kAgents[c.agent];
    out += "\" ";
    char rt[24];
    std::snprintf(rt, sizeof rt, "%llu.%03llu\n", static_cast<unsigned long long>(ms / 1000),
                  static_cast<unsigned long long>(ms % 1000));
    out += rt;
  }

 private:
  static constexpr size_t kClients = 20000;
  static constexpr std::array<const char*, 24> kAgents = {
      // browsers (desktop)
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
      "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 Edg/119.0.2151.72",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Safari/537.36",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/119.0",
      // phones and tablets
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.6045.163 Mobile Safari/537.36",
      "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/118.0.0.0 Mobile Safari/537.36",
      "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/119.0.6045.109 Mobile/15E148 Safari/604.1",
      // crawlers (kFirstBotAgent)
      "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
      "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
      "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
      "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
      "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
      "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
      // scripts and scanners (kFirstScannerAgent)
      "curl/7.88.1",
      "python-requests/2.31.0",
      "Go-http-client/1.1",
      "Mozilla/5.0 zgrab/0.x",
      "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
      "-",
  };
  static constexpr size_t kFirstBotAgent = 12;
  static constexpr size_t kFirstScannerAgent = 18;

  struct Client {
    std::string ip;
    size_t agent = 0;
  };

  uint64_t below(uint64_t n) { return rng_() % n; }
  // Skewed towards small values: a few clients/products get most of the traffic.
  uint64_t skewed(uint64_t n) {
    const double u = double(rng_() >> 11) * (1.0 / 9007199254740992.0);
    return std::min<uint64_t>(n - 1, uint64_t(double(n) * u * u * u));
  }
  size_t pick_agent() {
    const uint64_t r = below(1000);
    if (r < 560) return below(6);                       // desktop browsers
    if (r < 880) return 6 + below(6);                   // phones and tablets
    if (r < 960) return kFirstBotAgent + below(6);      // crawlers
    return kFirstScannerAgent + below(6);               // scripts and scanners
  }
  std::string referer(bool bot, const std::string& path) {
    if (bot) return "-";
    const uint64_t r = below(100);
    if (r < 38) return "-";
    if (r < 75) return path == "/" ? "-" : "https://shop.example.com/";
    if (r < 85) return "https://shop.example.com/category/shoes?page=2";
    if (r < 93) return "https://www.google.com/search?q=shop+example";
    if (r < 96) return "https://www.bing.com/search?q=leather+bag";
    if (r < 98) return "https://t.co/x9Ab3kQ";
    return "https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example.com%2F";
  }

  std::mt19937_64 rng_;
  std::vector<Client> clients_;
  uint64_t now_ = 1795132800;  // 2026-11-20 00:00:00 UTC
};

}  // namespace reqbus::bench
