// examples/session_table.hpp: the RequestLogger's flat LRU session table, checked against a
// std::list + std::map model through random inserts, touches, erases and evictions (small
// capacities, so slots are reused many times); ids a client may forge.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <list>
#include <map>
#include <random>
#include <utility>

#include "examples/session_table.hpp"

using reqbus::examples::SessionTable;

namespace {

using Key = std::pair<uint64_t, uint64_t>;
Key key(const SessionTable::Id& id) { return {id.hi, id.lo}; }

struct Model {
  std::list<Key> lru;  // most recently seen first
  std::map<Key, uint32_t> views;
};

void check_same(const SessionTable& t, const Model& m) {
  BOOST_REQUIRE_EQUAL(t.size(), m.views.size());
  for (const auto& [k, views] : m.views) {
    const uint32_t s = t.find(SessionTable::Id{k.first, k.second});
    BOOST_REQUIRE(s != SessionTable::npos);
    BOOST_REQUIRE_EQUAL(t.page_views(s), views);
  }
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

BOOST_AUTO_TEST_CASE(full_table_evicts_the_least_recently_seen) {
  SessionTable t(3);
  const SessionTable::TimePoint now{};
  uint32_t a, b, c, d;
  BOOST_CHECK(!t.insert(now, SessionTable::draw_random(), a));
  BOOST_CHECK(!t.insert(now, SessionTable::draw_random(), b));
  BOOST_CHECK(!t.insert(now, SessionTable::draw_random(), c));
  const auto id_a = t.id(a), id_b = t.id(b);
  BOOST_CHECK_EQUAL(t.touch(a, now + std::chrono::seconds(1)), 2u);
  BOOST_CHECK(t.last_seen(a) == now + std::chrono::seconds(1));
  BOOST_CHECK(t.insert(now, SessionTable::draw_random(), d));  // evicts b, the least recently seen
  BOOST_CHECK_EQUAL(t.size(), 3u);
  BOOST_CHECK(t.find(id_b) == SessionTable::npos);
  BOOST_CHECK_EQUAL(t.find(id_a), a);
  BOOST_CHECK_EQUAL(t.page_views(d), 1u);
  t.erase(c);
  BOOST_CHECK_EQUAL(t.size(), 2u);
  uint32_t e;
  BOOST_CHECK(!t.insert(now, SessionTable::draw_random(), e));  // room again: nothing evicted
  BOOST_CHECK(t.insert(now, SessionTable::draw_random(), e));   // full: a (touched before d was made) goes
  BOOST_CHECK(t.find(id_a) == SessionTable::npos);
}

BOOST_AUTO_TEST_CASE(agrees_with_a_list_and_map_model) {
  std::mt19937 rng(12345);
  const SessionTable::TimePoint now{};
  for (size_t capacity : {1u, 2u, 7u, 8u, 9u, 64u, 300u}) {
    SessionTable t(capacity);
    Model m;
    for (int step = 0; step < 20000; ++step) {
      const int op = int(rng() % 10);
      if (op < 5 || m.views.empty()) {  // insert
        uint32_t s;
        const bool evicted = t.insert(now, SessionTable::draw_random(), s);
        BOOST_REQUIRE_EQUAL(evicted, m.views.size() == capacity);
        if (evicted) {
          m.views.erase(m.lru.back());
          m.lru.pop_back();
        }
        m.lru.push_front(key(t.id(s)));
        m.views[key(t.id(s))] = 1;
      } else {
        auto it = m.lru.begin();
        std::advance(it, rng() % m.lru.size());
        const Key k = *it;
        const uint32_t s = t.find(SessionTable::Id{k.first, k.second});
        BOOST_REQUIRE(s != SessionTable::npos);
        if (op < 8) {  // touch
          BOOST_REQUIRE_EQUAL(t.touch(s, now), ++m.views[k]);
          m.lru.erase(it);
          m.lru.push_front(k);
        } else {  // erase (idle expiry)
          t.erase(s);
          m.lru.erase(it);
          m.views.erase(k);
          BOOST_REQUIRE(t.find(SessionTable::Id{k.first, k.second}) == SessionTable::npos);
        }
      }
      if (step % 97 == 0) check_same(t, m);
    }
    check_same(t, m);
    BOOST_CHECK(t.find(SessionTable::Id{1, 2}) == SessionTable::npos);
  }
}

// The low 32 bits of an id name its slot; whatever a cookie says, only the live session's own
// id matches, and an index past the table is refused rather than read.
BOOST_AUTO_TEST_CASE(forged_stale_and_out_of_range_ids_are_not_found) {
  const SessionTable::TimePoint now{};
  SessionTable t(2);
  uint32_t a = 0, b = 0, c = 0;
  t.insert(now, SessionTable::draw_random(), a);
  t.insert(now, SessionTable::draw_random(), b);
  const SessionTable::Id id_a = t.id(a), id_b = t.id(b);
  BOOST_CHECK_EQUAL(uint32_t(id_a.lo), a);
  BOOST_CHECK(t.find(SessionTable::Id{id_a.hi ^ 1, id_a.lo}) == SessionTable::npos);  // right slot, wrong id
  BOOST_CHECK(t.find(SessionTable::Id{id_a.hi, id_a.lo ^ (uint64_t(1) << 40)}) == SessionTable::npos);
  BOOST_CHECK(t.find(SessionTable::Id{id_a.hi, (id_a.lo & ~uint64_t(UINT32_MAX)) | 7}) == SessionTable::npos);
  BOOST_CHECK(t.find(SessionTable::Id{id_a.hi, id_a.lo | UINT32_MAX}) == SessionTable::npos);
  t.erase(a);  // expired: its slot is free, and its old id must not match before reuse either
  BOOST_CHECK(t.find(id_a) == SessionTable::npos);
  t.insert(now, SessionTable::draw_random(), c);  // reuses a's slot with a new id
  BOOST_CHECK_EQUAL(c, a);
  BOOST_CHECK(t.find(id_a) == SessionTable::npos);
  BOOST_CHECK(t.find(t.id(c)) == c);
  BOOST_CHECK(t.find(id_b) == b);
}

BOOST_AUTO_TEST_SUITE_END()
