// classify_user_agent: the rules (analytics/user_agent.cpp) and its per-thread cache, which
// must answer exactly what the rules answer, also after its 256 slots have been reused.
#include <boost/test/unit_test.hpp>

#include <string>
#include <thread>
#include <vector>

#include "reqbus/user_agent.hpp"

using namespace reqbus;

namespace {

struct Case {
  const char* agent;
  DeviceType type;
};

const Case kCases[] = {
    {"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
     DeviceType::desktop},
    {"Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 "
     "Mobile/15E148 Safari/604.1",
     DeviceType::mobile},
    {"Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148",
     DeviceType::tablet},
    {"Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Safari/537.36",
     DeviceType::tablet},  // Android without "Mobile"
    {"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile Safari/537.36",
     DeviceType::mobile},
    {"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", DeviceType::bot},
    {"curl/8.4.0", DeviceType::bot},
    {"sqlmap/1.7.11#stable (https://sqlmap.org)", DeviceType::bot},
    {"MOZILLA/5.0 (COMPATIBLE; BINGBOT/2.0)", DeviceType::bot},  // case-insensitive
    {"<script>alert(1)</script>", DeviceType::desktop},          // no rule matches: a browser
    {"", DeviceType::unknown},
    {"-", DeviceType::unknown},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(UserAgentSuite)

// Each agent gets its rule's answer, the first time (computed) and the next times (cached).
BOOST_AUTO_TEST_CASE(rules_answer_the_same_cached_and_uncached) {
  for (int round = 0; round < 3; ++round)
    for (const Case& c : kCases) {
      BOOST_TEST_CONTEXT(c.agent << " round " << round) {
        BOOST_TEST(int(classify_user_agent(c.agent)) == int(c.type));
      }
    }
  BOOST_TEST(is_bot(""));
  BOOST_TEST(is_bot("Googlebot/2.1"));
  BOOST_TEST(!is_bot(kCases[0].agent));
}

// Thousands of distinct agents of every kind go through the 256 slots, evicting each other;
// every answer, first or repeated, is still the rule's. Two threads, each with its own cache.
BOOST_AUTO_TEST_CASE(a_full_cache_still_answers_by_the_rules) {
  auto run = [](int seed, int& wrong) {
    for (int round = 0; round < 2; ++round)
      for (int i = 0; i < 5000; ++i) {
        const Case& c = kCases[size_t(i + seed) % 10];  // the ten non-empty rule cases
        const std::string agent = std::string(c.agent) + " build/" + std::to_string(i);
        if (classify_user_agent(agent) != c.type) ++wrong;
      }
  };
  int wrong_a = 0, wrong_b = 0;
  std::thread a(run, 0, std::ref(wrong_a));
  std::thread b(run, 3, std::ref(wrong_b));
  a.join();
  b.join();
  BOOST_TEST(wrong_a == 0);
  BOOST_TEST(wrong_b == 0);
}

// Agents longer than the 512 bytes the rules read are classified by their first 512 bytes.
BOOST_AUTO_TEST_CASE(long_agents_are_classified_by_their_start) {
  const std::string bot = "Googlebot " + std::string(4000, 'x');
  const std::string late = std::string(600, 'x') + " Googlebot";
  BOOST_TEST(int(classify_user_agent(bot)) == int(DeviceType::bot));
  BOOST_TEST(int(classify_user_agent(bot)) == int(DeviceType::bot));
  BOOST_TEST(int(classify_user_agent(late)) == int(DeviceType::desktop));
}

BOOST_AUTO_TEST_CASE(device_labels_are_the_known_types_unknown_or_other) {
  for (const char* known : {"desktop", "mobile", "tablet", "bot"}) BOOST_TEST(std::string(device_label(known)) == known);
  BOOST_TEST(std::string(device_label("")) == "unknown");
  BOOST_TEST(std::string(device_label("Desktop")) == "other");  // exact labels only
  BOOST_TEST(std::string(device_label("<script>")) == "other");
}

BOOST_AUTO_TEST_SUITE_END()
