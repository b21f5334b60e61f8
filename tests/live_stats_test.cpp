// LiveStats: exact counts, per-node views, the bounded tables, visitors by the salted hash of
// (ip, user agent), and the requests/s series bucketed by event time on a ManualClock.
#include <boost/test/unit_test.hpp>
#include <limits>
#include <cmath>
#include <thread>

#include "node/live_stats.hpp"
#include "node/visitor_hash.hpp"

using namespace reqbus;
using namespace reqbus::node;

namespace {

constexpr int64_t kSecond = 1'000'000;
const char* kFirefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
const char* kIphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1";
const char* kGooglebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  LiveStatsOptions options() const {
    LiveStatsOptions o;
    o.clock = clock;
    return o;
  }
  int64_t now_s() const { return clock->unix_us() / kSecond; }

  RequestLog event(const std::string& path, uint16_t status = 200, double ms = 5, int64_t age_s = 0) const {
    RequestLog r;
    r.method = "GET";
    r.path = path;
    r.status_code = status;
    r.duration_ms = ms;
    r.user_agent = kFirefox;
    r.remote_ip = "192.0.2.1";
    r.device_type = "desktop";
    r.node_id = "n1";
    r.inserted_at = clock->unix_us() - age_s * kSecond;
    return r;
  }
};

// The value of `key` in a [[key, count], ...] table, or -1.
int64_t row(const nlohmann::json& table, const std::string& key) {
  for (const auto& r : table)
    if (r[0] == key) return r[1].get<int64_t>();
  return -1;
}

// The series entry [t, requests, 4xx, 5xx] for unix second t.
nlohmann::json second(const nlohmann::json& snapshot, int64_t t) {
  for (const auto& s : snapshot["series"])
    if (s[0].get<int64_t>() == t) return s;
  return nullptr;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(LiveStatsSuite, Fixture)

BOOST_AUTO_TEST_CASE(counts_are_exact) {
  LiveStats live(options());
  for (int i = 0; i < 7; ++i) live.add(event("/"));
  for (int i = 0; i < 3; ++i) live.add(event("/missing", 404));
  for (int i = 0; i < 2; ++i) live.add(event("/api/checkout", 503, 250));
  RequestLog with_referer = event("/pricing", 301);
  with_referer.referer = "https://search.example/?q=reqbus";
  live.add(with_referer);

  BOOST_TEST(live.total() == 13u);
  const auto s = live.snapshot();
  BOOST_TEST(s["total"] == 13);
  BOOST_TEST(s["status"]["200"] == 7);
  BOOST_TEST(s["status"]["404"] == 3);
  BOOST_TEST(s["status"]["503"] == 2);
  BOOST_TEST(s["status"]["301"] == 1);
  BOOST_TEST(s["status"].size() == 4u);
  BOOST_TEST(s["top_paths"][0][0] == "/");  // most requested first
  BOOST_TEST(row(s["top_paths"], "/") == 7);
  BOOST_TEST(row(s["top_paths"], "/missing") == 3);
  BOOST_TEST(row(s["top_paths"], "/api/checkout") == 2);
  BOOST_TEST(s["not_found"].size() == 1u);
  BOOST_TEST(row(s["not_found"], "/missing") == 3);
  BOOST_TEST(s["top_referers"].size() == 1u);
  BOOST_TEST(row(s["top_referers"], "https://search.example/?q=reqbus") == 1);
  // The slowest path first: [path, avg ms, max ms, requests].
  BOOST_TEST(s["slowest"][0][0] == "/api/checkout");
  BOOST_TEST(s["slowest"][0][1].get<double>() == 250.0);
  BOOST_TEST(s["slowest"][0][3] == 2);
  BOOST_TEST(s["recent"].size() == 13u);
  BOOST_TEST(s["recent"][0]["path"] == "/pricing");  // newest first
  // Every event is in this second's bucket.
  const auto now = second(s, now_s());
  BOOST_REQUIRE(!now.is_null());
  BOOST_TEST(now[1] == 13);
  BOOST_TEST(now[2] == 3);  // 4xx
  BOOST_TEST(now[3] == 2);  // 5xx
}

BOOST_AUTO_TEST_CASE(devices_and_bots_vs_humans) {
  LiveStats live(options());
  live.add(event("/"));  // desktop Firefox
  RequestLog phone = event("/");
  phone.user_agent = kIphone;
  phone.device_type = "mobile";
  live.add(phone);
  RequestLog crawler = event("/robots.txt");
  crawler.user_agent = kGooglebot;
  crawler.device_type = "bot";
  live.add(crawler);
  RequestLog scanner = event("/wp-login.php", 404);  // classified by its user agent alone
  scanner.user_agent = "sqlmap/1.7";
  scanner.device_type = "";
  live.add(scanner);
  RequestLog no_agent = event("/");
  no_agent.user_agent = "";
  no_agent.device_type = "";
  live.add(no_agent);

  const auto s = live.snapshot();
  BOOST_TEST(s["humans"] == 2);
  BOOST_TEST(s["bots"] == 3);
  BOOST_TEST(s["devices"]["desktop"] == 1);
  BOOST_TEST(s["devices"]["mobile"] == 1);
  BOOST_TEST(s["devices"]["bot"] == 1);
  BOOST_TEST(s["devices"]["unknown"] == 2);

  // device_type is whatever a client sent: counted under six labels at most, never one key each.
  for (int i = 0; i < 1000; ++i) {
    RequestLog odd = event("/");
    odd.device_type = "d" + std::to_string(i);
    live.add(odd);
  }
  const auto after = live.snapshot();
  BOOST_TEST(after["devices"]["other"] == 1000);
  BOOST_TEST(after["devices"].size() == 5u);  // desktop, mobile, bot, unknown, other
}

BOOST_AUTO_TEST_CASE(per_node_views_and_the_cluster_view) {
  LiveStats live(options());
  for (int i = 0; i < 4; ++i) live.add(event("/a"));
  for (int i = 0; i < 6; ++i) {
    RequestLog e = event("/b", 500);
    e.node_id = "n2";
    live.add(e);
  }
  const auto all = live.snapshot();
  BOOST_TEST(all["total"] == 10);
  BOOST_TEST(all["node"] == "");
  BOOST_TEST(all["nodes"] == nlohmann::json::array({"n1", "n2"}));
  const auto n1 = live.snapshot("n1");
  BOOST_TEST(n1["total"] == 4);
  BOOST_TEST(n1["node"] == "n1");
  BOOST_TEST(row(n1["top_paths"], "/a") == 4);
  BOOST_TEST(row(n1["top_paths"], "/b") == -1);
  BOOST_TEST(!n1["status"].contains("500"));
  const auto n2 = live.snapshot("n2");
  BOOST_TEST(n2["total"] == 6);
  BOOST_TEST(n2["status"]["500"] == 6);
  const auto none = live.snapshot("no-such-node");
  BOOST_TEST(none["total"] == 0);
  BOOST_TEST(none["top_paths"].empty());
}

BOOST_AUTO_TEST_CASE(visitors_are_counted_by_ip_and_user_agent) {
  LiveStats live(options());
  live.add(event("/"));
  live.add(event("/pricing"));  // same ip + ua: the same visitor
  BOOST_TEST(live.snapshot()["visitors_active"] == 1);
  RequestLog other_browser = event("/");
  other_browser.user_agent = kIphone;  // same ip, different ua: another visitor (e.g. behind NAT)
  live.add(other_browser);
  BOOST_TEST(live.snapshot()["visitors_active"] == 2);
  RequestLog other_ip = event("/");
  other_ip.remote_ip = "192.0.2.2";
  live.add(other_ip);
  BOOST_TEST(live.snapshot()["visitors_active"] == 3);
  // The visitor window is 5 minutes of event time: after it, nobody is active.
  clock->advance(std::chrono::seconds(299));
  BOOST_TEST(live.snapshot()["visitors_active"] == 3);
  live.add(event("/again"));  // the first visitor comes back
  clock->advance(std::chrono::seconds(2));
  BOOST_TEST(live.snapshot()["visitors_active"] == 1);
  clock->advance(std::chrono::seconds(300));
  BOOST_TEST(live.snapshot()["visitors_active"] == 0);
  BOOST_TEST(live.snapshot()["visitors_window_s"] == 300);
}

BOOST_AUTO_TEST_CASE(events_stamped_in_the_future_do_not_stay_active_or_spoil_todays_salt) {
  LiveStatsOptions o = options();
  o.max_visitors = 50;
  LiveStats live(o);
  // A client stamps events years ahead: once counted as seen now, they leave the window
  // like any other visitor, so they cannot fill max_visitors for good.
  for (int i = 0; i < 50; ++i) {
    RequestLog future = event("/");
    future.remote_ip = "198.51.100." + std::to_string(i);
    future.inserted_at = clock->unix_us() + int64_t(3 * 365) * 86400 * kSecond + i * 86400 * kSecond;
    live.add(future);
  }
  BOOST_TEST(live.snapshot()["visitors_active"] == 50);
  clock->advance(std::chrono::seconds(301));
  BOOST_TEST(live.snapshot()["visitors_active"] == 0);
  // And today's visitors are still told apart: the future days drew no salts that pushed
  // today's out (which made every id the same, zero, id).
  live.add(event("/"));
  RequestLog other = event("/");
  other.remote_ip = "192.0.2.77";
  live.add(other);
  BOOST_TEST(live.snapshot()["visitors_active"] == 2);
  BOOST_TEST(live.snapshot()["visitors_untracked"] == 0);
}

// A full visitor table is pruned at most once a second (a scan of it for every new visitor
// starved the live thread): new visitors past the bound are counted as untracked, and tracked
// again as soon as the window lets old ones go, with no snapshot in between.
BOOST_AUTO_TEST_CASE(a_full_visitor_table_counts_newcomers_untracked_until_old_ones_leave) {
  LiveStatsOptions o = options();
  o.max_visitors = 50;
  LiveStats live(o);
  auto visitor = [&](int i) {
    RequestLog r = event("/");
    r.remote_ip = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250);
    return r;
  };
  for (int i = 0; i < 50; ++i) live.add(visitor(i));
  clock->advance(std::chrono::seconds(200));
  for (int i = 50; i < 1050; ++i) live.add(visitor(i));  // nobody has left yet: all untracked
  for (int i = 0; i < 10; ++i) live.add(visitor(i));     // known visitors are still seen
  clock->advance(std::chrono::seconds(101));  // the first 50, seen 301 s ago, leave the window
  for (int i = 2000; i < 2040; ++i) live.add(visitor(i));  // 40 take the room the 40 others left
  live.add(visitor(3000));  // full again
  const auto snap = live.snapshot();
  BOOST_TEST(snap["visitors_untracked"] == 1000 + 1);
  // Tracked: the 10 seen again at 200 s (still in the window) and 40 of the newcomers.
  BOOST_TEST(snap["visitors_active"] == 50);
}

BOOST_AUTO_TEST_CASE(past_256_nodes_the_least_recently_heard_from_makes_room) {
  LiveStats live(options());
  for (int i = 0; i < 256; ++i) {
    RequestLog e = event("/");
    e.node_id = "old-" + std::to_string(i);
    live.add(e);
    clock->advance(std::chrono::seconds(1));
  }
  RequestLog again = event("/");
  again.node_id = "old-0";  // heard from again: now the most recent
  live.add(again);
  clock->advance(std::chrono::seconds(1));
  RequestLog fresh = event("/fresh");
  fresh.node_id = "restarted";
  live.add(fresh);
  const auto s = live.snapshot("restarted");
  BOOST_TEST(s["total"] == 1);
  BOOST_TEST(row(s["top_paths"], "/fresh") == 1);
  BOOST_TEST(live.snapshot("old-0")["total"] == 2);
  BOOST_TEST(live.snapshot("old-1")["total"] == 0);  // the least recently heard from
  BOOST_TEST(live.snapshot()["nodes"].size() == 256u);
}

BOOST_AUTO_TEST_CASE(visitor_ids_are_keyed_and_salted_per_day) {
  VisitorHasher a, b;
  const int64_t day = 19675;
  const VisitorId x = a.id("192.0.2.1", kFirefox, day);
  BOOST_TEST((x == a.id("192.0.2.1", kFirefox, day)));
  BOOST_TEST(!(x == a.id("192.0.2.1", kIphone, day)));
  BOOST_TEST(!(x == a.id("192.0.2.2", kFirefox, day)));
  // The ip/ua boundary is part of the message: ("ab", "c") is not ("a", "bc").
  BOOST_TEST(!(a.id("ab", "c", day) == a.id("a", "bc", day)));
  // Another hasher (another process) has another random salt: ids cannot be precomputed.
  BOOST_TEST(!(x == b.id("192.0.2.1", kFirefox, day)));
  // A new day draws a new salt: yesterday's id does not link to today's.
  const VisitorId tomorrow = a.id("192.0.2.1", kFirefox, day + 1);
  BOOST_TEST(!(x == tomorrow));
  BOOST_TEST((tomorrow == a.id("192.0.2.1", kFirefox, day + 1)));
  BOOST_TEST((x.hi | x.lo) != 0u);
}

BOOST_AUTO_TEST_CASE(bounded_tables_count_what_does_not_fit_as_other) {
  LiveStatsOptions o = options();
  o.max_keys = 3;
  o.top_n = 2;
  LiveStats live(o);
  for (int i = 0; i < 3; ++i) live.add(event("/a"));
  for (int i = 0; i < 2; ++i) live.add(event("/b"));
  live.add(event("/c"));
  live.add(event("/d", 404));  // a 4th path: past max_keys
  live.add(event("/e", 404));
  live.add(event("/e", 404));
  const auto s = live.snapshot();
  BOOST_TEST(s["total"] == 9);
  // top_n rows, then "(other)" with everything past max_keys; nothing is lost.
  BOOST_REQUIRE(s["top_paths"].size() == 3u);
  BOOST_TEST(row(s["top_paths"], "/a") == 3);
  BOOST_TEST(row(s["top_paths"], "/b") == 2);
  BOOST_TEST(row(s["top_paths"], "(other)") == 3);
  // The 404 table had room for both.
  BOOST_TEST(row(s["not_found"], "/e") == 2);
  BOOST_TEST(row(s["not_found"], "/d") == 1);
  BOOST_TEST(s["slowest"].size() == 2u);
}

BOOST_AUTO_TEST_CASE(series_buckets_by_event_time) {
  LiveStatsOptions o = options();
  o.series_seconds = 60;
  LiveStats live(o);
  const int64_t t0 = now_s();
  for (int i = 0; i < 3; ++i) live.add(event("/", 200, 5, 10));  // happened 10 s ago
  live.add(event("/", 503, 5, 2));
  live.add(event("/", 404, 5, 0));
  live.add(event("/", 404, 5, 0));
  live.add(event("/", 200, 5, 61));  // older than the series: counted in totals only
  auto s = live.snapshot();
  BOOST_TEST(s["total"] == 7);
  BOOST_REQUIRE(s["series"].size() == 60u);
  BOOST_TEST(s["series"].back()[0] == t0);
  BOOST_TEST(s["series"].front()[0] == t0 - 59);
  BOOST_TEST(second(s, t0 - 10)[1] == 3);
  BOOST_TEST(second(s, t0 - 2)[1] == 1);
  BOOST_TEST(second(s, t0 - 2)[3] == 1);
  BOOST_TEST(second(s, t0)[1] == 2);
  BOOST_TEST(second(s, t0)[2] == 2);
  uint64_t in_series = 0;
  for (const auto& e : s["series"]) in_series += e[1].get<uint64_t>();
  BOOST_TEST(in_series == 6u);

  // Time moves on: the buckets stay at their event seconds and slide out of the window.
  clock->advance(std::chrono::seconds(5));
  s = live.snapshot();
  BOOST_TEST(s["series"].back()[0] == t0 + 5);
  BOOST_TEST(second(s, t0 - 10)[1] == 3);
  BOOST_TEST(second(s, t0 + 5)[1] == 0);
  clock->advance(std::chrono::seconds(50));
  s = live.snapshot();
  BOOST_TEST(second(s, t0 - 10).is_null());  // out of the window
  BOOST_TEST(second(s, t0)[1] == 2);
}

BOOST_AUTO_TEST_CASE(events_slightly_ahead_do_not_erase_the_oldest_second) {
  LiveStatsOptions o = options();
  o.series_seconds = 60;
  LiveStats live(o);
  const int64_t t0 = now_s();
  live.add(event("/", 200, 5, 58));  // near the start of the window
  // A peer whose clock runs 3 s ahead: its event lands in the future, which the series accepts.
  RequestLog ahead = event("/");
  ahead.inserted_at = (t0 + 2) * kSecond;
  live.add(ahead);
  auto s = live.snapshot();
  BOOST_TEST(second(s, t0 - 58)[1] == 1);
  clock->advance(std::chrono::seconds(2));
  s = live.snapshot();
  BOOST_TEST(second(s, t0 + 2)[1] == 1);
  BOOST_TEST(s["total"] == 2);
}

BOOST_AUTO_TEST_CASE(latency_percentiles_over_the_window) {
  LiveStats live(options());
  for (int ms = 1; ms <= 100; ++ms) live.add(event("/", 200, double(ms)));
  auto s = live.snapshot();
  const auto& l = s["latency_ms"];
  BOOST_TEST(l["samples"] == 100);
  const double err = l["relative_error"].get<double>();
  BOOST_TEST(std::fabs(l["p50"].get<double>() - 50) <= 50 * err);
  BOOST_TEST(std::fabs(l["p95"].get<double>() - 95) <= 95 * err);
  BOOST_TEST(std::fabs(l["p99"].get<double>() - 99) <= 99 * err);
  // Past the window the samples are gone (totals stay).
  clock->advance(std::chrono::seconds(301));
  s = live.snapshot();
  BOOST_TEST(s["latency_ms"]["samples"] == 0);
  BOOST_TEST(s["latency_ms"]["p99"].get<double>() == 0.0);
  BOOST_TEST(s["total"] == 100);
}

// validate() takes any finite duration >= 0. Past ~1.8e306 ms the bucket arithmetic overflowed
// to infinity, and int(infinity) indexed outside the histogram: one request crashed the node.
BOOST_AUTO_TEST_CASE(huge_finite_durations_land_in_the_top_bucket) {
  LiveStats live(options());
  for (double ms : {1e306, 1e307, std::numeric_limits<double>::max(), 5.0}) live.add(event("/slow", 200, ms));
  const auto s = live.snapshot();
  BOOST_TEST(s["latency_ms"]["samples"] == 4);
  BOOST_TEST(s["latency_ms"]["p99"].get<double>() > 1e5);  // the top bucket (~106 s), not a wrapped index
  BOOST_TEST(s["total"] == 4);
}

BOOST_AUTO_TEST_CASE(concurrent_adds_are_all_counted) {
  LiveStats live(options());
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        RequestLog e = event("/t" + std::to_string(t));
        e.node_id = "n" + std::to_string(t);
        live.add(e);
        if (i % 500 == 0) (void)live.snapshot();
      }
    });
  for (auto& th : threads) th.join();
  const auto s = live.snapshot();
  BOOST_TEST(s["total"] == kThreads * kEach);
  for (int t = 0; t < kThreads; ++t) BOOST_TEST(live.snapshot("n" + std::to_string(t))["total"] == kEach);
}

BOOST_AUTO_TEST_SUITE_END()
