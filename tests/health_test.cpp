// HealthWatch (what a node's /healthz answers), on a ManualClock: a loss counter that rises
// makes the node unhealthy for the window after its last rise; a nearly full spool makes it
// unhealthy while it lasts; a store that is down but spooling is healthy.
#include <boost/test/unit_test.hpp>

#include <string>

#include "node/health.hpp"
#include "reqbus/error.hpp"

using namespace reqbus;
using namespace reqbus::node;
using namespace std::chrono_literals;

namespace {

struct Fixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  HealthWatch watch{[this] {
    HealthOptions o;
    o.window = 60s;
    o.clock = clock;
    return o;
  }()};
  uint64_t bus = 0, spool_full = 0;
  SpoolFill spool{0, 1000};
  std::string check() { return watch.check({{"bus queue full", bus}, {"spool full", spool_full}}, spool); }
};

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_SUITE(health)

BOOST_FIXTURE_TEST_CASE(a_node_losing_nothing_is_healthy, Fixture) {
  BOOST_TEST(check() == "");
  clock->advance(10s);
  BOOST_TEST(check() == "");
}

BOOST_FIXTURE_TEST_CASE(a_rising_counter_is_unhealthy_for_the_window_after_its_last_rise, Fixture) {
  BOOST_TEST(check() == "");
  bus = 12;
  BOOST_TEST(check() == "losing events: bus queue full (+12, last seen rising 0 s ago)");
  clock->advance(30s);
  BOOST_TEST(check() == "losing events: bus queue full (+12, last seen rising 30 s ago)");  // no new loss
  bus = 15;  // rises again: the stretch goes on, counted from its start
  BOOST_TEST(check() == "losing events: bus queue full (+15, last seen rising 0 s ago)");
  clock->advance(59s);
  BOOST_TEST(check() != "");
  clock->advance(1s);
  BOOST_TEST(check() == "");  // a window without a loss
  bus = 16;  // a new stretch counts from where the last one ended
  BOOST_TEST(check() == "losing events: bus queue full (+1, last seen rising 0 s ago)");
}

BOOST_FIXTURE_TEST_CASE(losses_before_the_first_check_count_from_the_nodes_start, Fixture) {
  bus = 3;
  BOOST_TEST(check() == "losing events: bus queue full (+3, last seen rising 0 s ago)");
}

// Counters are told apart by name: one that appears after the first check (a subscription
// made later) starts from its total then, not from zero.
BOOST_FIXTURE_TEST_CASE(a_counter_that_appears_later_starts_from_its_total, Fixture) {
  BOOST_TEST(check() == "");
  const auto with_late = [&](uint64_t late) {
    return watch.check({{"bus queue full", bus}, {"late", late}, {"spool full", spool_full}}, spool);
  };
  BOOST_TEST(with_late(5) == "");
  BOOST_TEST(with_late(6) == "losing events: late (+1, last seen rising 0 s ago)");
}

// Checks run on several HTTP threads read the counters before taking the lock: an older
// reading that arrives last is not a fall, and the next reading is not a rise again.
BOOST_FIXTURE_TEST_CASE(a_stale_reading_is_not_a_rise, Fixture) {
  bus = 5;
  BOOST_TEST(check() != "");
  clock->advance(60s);
  BOOST_TEST(check() == "");
  bus = 4;  // read before the last check, arriving after it
  BOOST_TEST(check() == "");
  bus = 5;
  BOOST_TEST(check() == "");
}

BOOST_FIXTURE_TEST_CASE(every_rising_counter_is_named, Fixture) {
  bus = 1;
  spool_full = 2;
  BOOST_TEST(check() ==
             "losing events: bus queue full (+1, last seen rising 0 s ago); spool full (+2, last seen rising 0 s ago)");
}

BOOST_FIXTURE_TEST_CASE(a_nearly_full_spool_is_unhealthy_while_it_lasts, Fixture) {
  spool.bytes = 899;  // the store is down and the spool takes its events: healthy
  BOOST_TEST(check() == "");
  spool.bytes = 930;
  const std::string why = check();
  BOOST_TEST(contains(why, "spool 93 % full (930 of 1000 bytes)"), why);
  BOOST_TEST(!contains(why, "losing events"), why);  // nothing lost yet
  spool.bytes = 100;  // replayed
  BOOST_TEST(check() == "");
  spool = {5000, 0};  // no spool configured: nothing to fill
  BOOST_TEST(check() == "");
}

BOOST_AUTO_TEST_CASE(bad_options_are_refused) {
  HealthOptions o;
  o.window = 0ms;
  BOOST_CHECK_THROW(HealthWatch{o}, Error);
  o = HealthOptions{};
  o.spool_full_ratio = 1.5;
  BOOST_CHECK_THROW(HealthWatch{o}, Error);
  o = HealthOptions{};
  o.clock = nullptr;
  BOOST_CHECK_THROW(HealthWatch{o}, Error);
}

BOOST_AUTO_TEST_SUITE_END()
