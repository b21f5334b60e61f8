// examples/session_table.hpp: the RequestLogger's session table. Its CLOCK eviction checked
// against a second-chance FIFO model (std::deque + std::map) through random inserts and
// touches, then with idle expiry mixed in; ids a client may forge; and threads counting the
// same and different sessions at once while others insert and expire (lost page views or a
// wrong live count would show; TSan checks the slot locks in CI).
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "examples/session_table.hpp"

using reqbus::examples::SessionTable;
using Seen = SessionTable::Seen;
using namespace std::chrono_literals;

namespace {

using Key = std::pair<uint64_t, uint64_t>;
Key key(const SessionTable::Id& id) { return {id.hi, id.lo}; }
SessionTable::Id id_of(const Key& k) { return SessionTable::Id{k.first, k.second}; }

const SessionTable::TimePoint kT0{};
constexpr SessionTable::Duration kForever = 24h;

SessionTable::Id add(SessionTable& t, bool* evicted = nullptr, SessionTable::TimePoint now = kT0) {
  SessionTable::Id id;
  const bool e = t.insert(now, SessionTable::draw_random(), id);
  if (evicted) *evicted = e;
  return id;
}

uint32_t touch(SessionTable& t, const SessionTable::Id& id, SessionTable::TimePoint now = kT0) {
  uint32_t views = 0;
  return t.touch(id, now, kForever, views) == Seen::returning ? views : 0;
}

// Second chance as a queue: sessions in the order the hand meets them; to make room, the front
// is evicted if unmarked, else unmarked and sent to the back. (Without expiry this is what a
// hand sweeping a ring of slots does: a new session takes its victim's slot, just behind the
// hand, i.e. the back of the queue.)
struct Model {
  std::deque<Key> order;
  std::map<Key, std::pair<uint32_t, bool>> sessions;  // views, marked

  Key victim() {
    for (;;) {
      const Key k = order.front();
      order.pop_front();
      bool& marked = sessions[k].second;
      if (!marked) return k;
      marked = false;
      order.push_back(k);
    }
  }
};

void check_same(const SessionTable& t, const Model& m) {
  BOOST_REQUIRE_EQUAL(t.size(), m.sessions.size());
  for (const auto& [k, session] : m.sessions) BOOST_REQUIRE_EQUAL(t.page_views(id_of(k)), session.first);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(SessionTableSuite)

BOOST_AUTO_TEST_CASE(text_form_round_trips) {
  const SessionTable::Id id{0x0123456789abcdefull, 0xfedcba9876543210ull};
  char text[SessionTable::kTextSize];
  SessionTable::format(id, text);
  BOOST_CHECK_EQUAL(std::string_view(text, sizeof text), "0123456789abcdeffedcba9876543210");
  SessionTable::Id back;
  BOOST_REQUIRE(SessionTable::parse(std::string_view(text, sizeof text), back));
  BOOST_CHECK(back == id);
  BOOST_CHECK(!SessionTable::parse("0123456789ABCDEFfedcba9876543210", back));  // upper case
  BOOST_CHECK(!SessionTable::parse("0123456789abcdeffedcba987654321", back));   // 31 digits
  BOOST_CHECK(!SessionTable::parse("0123456789abcdeffedcba987654321g", back));
  BOOST_CHECK(!SessionTable::parse("", back));
  // Every byte that is not a lowercase hex digit, in every position, is refused.
  for (int c = 0; c < 256; ++c) {
    const bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    for (size_t at = 0; at < SessionTable::kTextSize; ++at) {
      std::string bad(text, sizeof text);
      bad[at] = char(c);
      BOOST_CHECK_EQUAL(SessionTable::parse(bad, back), digit);
    }
  }
}

BOOST_AUTO_TEST_CASE(random_ids_round_trip_through_text) {
  // parse() reads eight digits at a time (hex::parse_u32): every digit value in every position.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    const SessionTable::Id id{rng(), rng()};
    char text[SessionTable::kTextSize];
    SessionTable::format(id, text);
    SessionTable::Id back;
    BOOST_REQUIRE(SessionTable::parse(std::string_view(text, sizeof text), back));
    BOOST_REQUIRE(back == id);
  }
}

BOOST_AUTO_TEST_CASE(full_table_evicts_one_not_seen_since_the_hand_passed) {
  SessionTable t(3);
  bool evicted = true;
  const auto a = add(t, &evicted);
  BOOST_CHECK(!evicted);
  const auto b = add(t, &evicted);
  BOOST_CHECK(!evicted);
  const auto c = add(t, &evicted);
  BOOST_CHECK(!evicted);
  BOOST_CHECK_EQUAL(touch(t, a, kT0 + 1s), 2u);  // a gets a second chance
  const auto d = add(t, &evicted);                // the hand spares a, evicts b
  BOOST_CHECK(evicted);
  BOOST_CHECK_EQUAL(t.size(), 3u);
  BOOST_CHECK_EQUAL(t.page_views(b), 0u);
  BOOST_CHECK_EQUAL(touch(t, b), 0u);
  BOOST_CHECK_EQUAL(t.page_views(a), 2u);
  BOOST_CHECK_EQUAL(t.page_views(d), 1u);
  BOOST_CHECK_EQUAL(uint32_t(d.lo), uint32_t(b.lo));  // b's slot, a new id
  BOOST_CHECK_EQUAL(touch(t, c), 2u);
  const auto e = add(t, &evicted);  // a's chance is spent: the hand (now at c) spares c, takes a
  BOOST_CHECK(evicted);
  BOOST_CHECK_EQUAL(t.page_views(a), 0u);
  BOOST_CHECK_EQUAL(t.page_views(c), 2u);
  BOOST_CHECK_EQUAL(t.page_views(e), 1u);
}

BOOST_AUTO_TEST_CASE(idle_sessions_expire_and_their_slots_are_reused) {
  SessionTable t(4);
  const auto a = add(t, nullptr, kT0);
  const auto b = add(t, nullptr, kT0);
  uint32_t views = 0;
  BOOST_CHECK(t.touch(a, kT0 + 30min, 30min, views) == Seen::returning);  // exactly idle: still on
  BOOST_CHECK_EQUAL(views, 2u);
  BOOST_CHECK(t.touch(b, kT0 + 30min + 1ns, 30min, views) == Seen::expired);
  BOOST_CHECK(t.touch(b, kT0 + 30min + 1ns, 30min, views) == Seen::unknown);  // gone
  BOOST_CHECK_EQUAL(t.size(), 1u);
  const auto c = add(t);
  BOOST_CHECK_EQUAL(uint32_t(c.lo), uint32_t(b.lo));  // b's slot, reused before a new one is made
  BOOST_CHECK(t.page_views(b) == 0);
  BOOST_CHECK_EQUAL(t.size(), 2u);
  BOOST_CHECK(t.touch(a, kT0 + 60min, 30min, views) == Seen::returning);  // a was seen at 30 min
  // A request that started earlier but is counted later does not move last_seen back.
  const auto d = add(t, nullptr, kT0);
  BOOST_CHECK(t.touch(d, kT0 + 10min, 30min, views) == Seen::returning);
  BOOST_CHECK(t.touch(d, kT0 + 5min, 30min, views) == Seen::returning);
  BOOST_CHECK(t.touch(d, kT0 + 38min, 30min, views) == Seen::returning);  // seen at 10 min, not 5
  BOOST_CHECK_EQUAL(views, 4u);
}

BOOST_AUTO_TEST_CASE(agrees_with_a_second_chance_model) {
  std::mt19937 rng(12345);
  for (size_t capacity : {1u, 2u, 7u, 8u, 9u, 64u, 300u, 5000u}) {
    SessionTable t(capacity);
    Model m;
    for (int step = 0; step < 20000; ++step) {
      if (rng() % 2 == 0 || m.sessions.empty()) {  // a new visitor
        bool evicted = false;
        const auto id = add(t, &evicted);
        BOOST_REQUIRE_EQUAL(evicted, m.sessions.size() == capacity);
        if (evicted) {
          const Key gone = m.victim();
          m.sessions.erase(gone);
          BOOST_REQUIRE_EQUAL(t.page_views(id_of(gone)), 0u);
        }
        m.order.push_back(key(id));
        m.sessions[key(id)] = {1, false};
      } else {  // a returning one
        auto it = m.sessions.begin();
        std::advance(it, rng() % m.sessions.size());
        BOOST_REQUIRE_EQUAL(touch(t, id_of(it->first)), ++it->second.first);
        it->second.second = true;
      }
      if (step % 97 == 0) check_same(t, m);
    }
    check_same(t, m);
    BOOST_CHECK_EQUAL(t.page_views(SessionTable::Id{1, 2}), 0u);
  }
}

// With expiry the hand's order is no longer a queue (a freed slot is reused where it lies), so
// this checks what must hold whatever the hand does: counts, an eviction only when full and of
// exactly one session, expiry exactly when idle too long.
BOOST_AUTO_TEST_CASE(expiry_mixed_with_eviction_keeps_every_count) {
  std::mt19937 rng(99);
  constexpr auto kIdle = 100s;
  for (size_t capacity : {1u, 3u, 16u, 200u}) {
    SessionTable t(capacity);
    std::map<Key, std::pair<uint32_t, SessionTable::TimePoint>> live;  // views, last seen
    SessionTable::TimePoint now = kT0;
    for (int step = 0; step < 20000; ++step) {
      now += std::chrono::seconds(rng() % 3);
      if (rng() % 3 == 0 || live.empty()) {
        bool evicted = false;
        const auto id = add(t, &evicted, now);
        BOOST_REQUIRE_EQUAL(evicted, live.size() == capacity);
        if (evicted) {
          size_t gone = 0;
          for (auto it = live.begin(); it != live.end();)
            it = t.page_views(id_of(it->first)) == 0 ? (++gone, live.erase(it)) : std::next(it);
          BOOST_REQUIRE_EQUAL(gone, 1u);
        }
        live[key(id)] = {1, now};
      } else {
        auto it = live.begin();
        std::advance(it, rng() % live.size());
        uint32_t views = 0;
        const Seen seen = t.touch(id_of(it->first), now, kIdle, views);
        if (now - it->second.second > kIdle) {
          BOOST_REQUIRE(seen == Seen::expired);
          live.erase(it);
        } else {
          BOOST_REQUIRE(seen == Seen::returning);
          BOOST_REQUIRE_EQUAL(views, ++it->second.first);
          it->second.second = now;
        }
      }
      BOOST_REQUIRE_EQUAL(t.size(), live.size());
    }
  }
}

// The low 32 bits of an id name its slot; whatever a cookie says, only the live session's own
// id matches, and an index past the table is refused rather than read.
BOOST_AUTO_TEST_CASE(forged_stale_and_out_of_range_ids_are_not_found) {
  SessionTable t(2);
  const auto a = add(t), b = add(t);
  BOOST_CHECK_EQUAL(uint32_t(a.lo), 0u);
  BOOST_CHECK_EQUAL(touch(t, SessionTable::Id{a.hi ^ 1, a.lo}), 0u);  // right slot, wrong id
  BOOST_CHECK_EQUAL(touch(t, SessionTable::Id{a.hi, a.lo ^ (uint64_t(1) << 40)}), 0u);
  BOOST_CHECK_EQUAL(touch(t, SessionTable::Id{a.hi, (a.lo & ~uint64_t(UINT32_MAX)) | 7}), 0u);
  BOOST_CHECK_EQUAL(touch(t, SessionTable::Id{a.hi, a.lo | UINT32_MAX}), 0u);
  uint32_t views = 0;
  BOOST_CHECK(t.touch(a, kT0 + 2h, 1h, views) == Seen::expired);  // its slot is free, its id dead
  BOOST_CHECK_EQUAL(touch(t, a), 0u);
  const auto c = add(t);  // reuses a's slot with a new id
  BOOST_CHECK_EQUAL(uint32_t(c.lo), uint32_t(a.lo));
  BOOST_CHECK_EQUAL(touch(t, a), 0u);
  BOOST_CHECK_EQUAL(touch(t, c), 2u);
  BOOST_CHECK_EQUAL(touch(t, b), 2u);
  BOOST_CHECK_EQUAL(t.size(), 2u);
}

// Four threads count page views of the same 32 sessions (every slot contended) and of their
// own, while a fifth inserts and expires sessions of its own, growing the table across chunks.
// No page view may be lost and every live count must add up.
BOOST_AUTO_TEST_CASE(threads_counting_and_inserting_at_once_lose_nothing) {
  SessionTable t(20000);
  std::vector<SessionTable::Id> shared;
  for (int i = 0; i < 32; ++i) shared.push_back(add(t));
  constexpr int kCounters = 4, kRounds = 20000;
  std::atomic<bool> go{false};
  std::atomic<int> wrong{0};  // Boost.Test's assertions are not for other threads: count, check after
  std::vector<std::thread> threads;
  std::vector<std::vector<std::pair<SessionTable::Id, uint32_t>>> own(kCounters);
  for (int n = 0; n < kCounters; ++n)
    threads.emplace_back([&, n] {
      while (!go.load()) std::this_thread::yield();
      std::mt19937 rng(n);
      for (int i = 0; i < kRounds; ++i) {
        if (touch(t, shared[rng() % shared.size()]) < 2) ++wrong;
        if (i % 8 == 0) own[n].push_back({add(t), 1});
        auto& [id, views] = own[n][rng() % own[n].size()];
        if (touch(t, id) != ++views) ++wrong;
      }
    });
  std::atomic<size_t> churn_live{0};
  threads.emplace_back([&] {
    while (!go.load()) std::this_thread::yield();
    std::vector<SessionTable::Id> mine;
    for (int i = 0; i < kRounds / 2; ++i) {
      mine.push_back(add(t, nullptr, kT0));
      if (i % 2 == 1) {  // expire the one before: seen at kT0, idle 1 h, now 2 h
        uint32_t views = 0;
        if (t.touch(mine[mine.size() - 2], kT0 + 2h, 1h, views) != Seen::expired) ++wrong;
      }
    }
    churn_live = (kRounds / 2 + 1) / 2;
  });
  go = true;
  for (auto& th : threads) th.join();
  BOOST_REQUIRE_EQUAL(wrong.load(), 0);

  uint64_t shared_views = 0;
  for (const auto& id : shared) shared_views += t.page_views(id);
  BOOST_CHECK_EQUAL(shared_views, shared.size() + uint64_t(kCounters) * kRounds);
  size_t own_live = 0;
  for (const auto& list : own)
    for (const auto& [id, views] : list) {
      BOOST_REQUIRE_EQUAL(t.page_views(id), views);
      ++own_live;
    }
  BOOST_CHECK_EQUAL(t.size(), shared.size() + own_live + churn_live.load());
}

BOOST_AUTO_TEST_SUITE_END()
