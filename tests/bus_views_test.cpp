// View subscriptions (Bus::subscribe_views): the handler reads each event in place, in the
// frame's own bytes. They must see exactly what a handler subscription sees, for every kind of
// message and every msgpack form a peer may send, and keep a handler subscription's accounting.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "bus/frame.hpp"
#include "reqbus/error.hpp"
#include "support/bus_fixtures.hpp"
#include "support/poll.hpp"

using namespace reqbus;
using namespace reqbus::test;
using namespace std::chrono_literals;

namespace {

bool same(const Message& a, const Message& b) {
  if (a.kind != b.kind) return false;
  return a.kind == MessageKind::request_sent ? a.request == b.request : a.analytics == b.analytics;
}

AnalyticsEvent sample_event(AnalyticsType type, int i) {
  AnalyticsEvent e;
  e.type = type;
  e.user_id = "user-" + std::to_string(i);
  e.event = type == AnalyticsType::track ? "Signed Up \xe2\x9c\x93" : "";
  e.email = type == AnalyticsType::identify ? "a@example.com" : "";
  e.account_id = type == AnalyticsType::group ? "acct-" + std::to_string(i) : "";
  e.traits_json = type == AnalyticsType::track ? "" : R"({"plan":"pro"})";
  e.properties_json = type == AnalyticsType::track ? R"({"n":1})" : "";
  return e;
}

// Varied request logs: empty and long strings (str8, str16 forms), UTF-8, every status class.
RequestLog varied_log(int i) {
  RequestLog r = sample_log("/p/" + std::to_string(i), uint32_t(i), uint16_t(100 + i % 500));
  r.referer = i % 3 == 0 ? "" : std::string(size_t(i % 2000), 'r');
  r.user_agent = i % 5 == 0 ? "" : "Mozilla/5.0 \xc3\xa9t\xc3\xa9 " + std::to_string(i);
  r.session_id = i % 2 ? std::string(32, 'a') : "";
  r.device_type = i % 4 ? "desktop" : "bot";
  r.duration_ms = i * 0.5;
  return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bus_views)

// Publishes 3,000 varied events of every kind, and checks that a view subscription with
// `options` saw exactly what a handler subscription saw, in order, each once; returns the
// threads its handler ran on.
std::set<std::thread::id> check_views_match_copies(const SubscribeOptions& options) {
  BusOptions bus_options;
  bus_options.node_id = "node-v";
  Bus bus(bus_options);
  Collector copies;
  auto handler_sub = bus.subscribe({}, copies.handler());
  std::mutex mu;
  std::vector<Message> seen;
  std::set<std::thread::id> threads;
  auto view_sub = bus.subscribe_views(options, [&](const MessageView& v) {
    std::lock_guard lock(mu);
    seen.push_back(v.to_message());
    threads.insert(std::this_thread::get_id());
  });
  constexpr int kEvents = 3000;
  const AnalyticsType types[] = {AnalyticsType::identify, AnalyticsType::group, AnalyticsType::track};
  for (int i = 0; i < kEvents; ++i) {
    const PublishStatus s = i % 7 == 3 ? bus.broadcast(sample_event(types[i % 3], i)) : bus.broadcast(varied_log(i));
    BOOST_REQUIRE_EQUAL(s, PublishStatus::ok);
  }
  bus.close(10s);
  const auto expected = copies.messages();
  BOOST_REQUIRE_EQUAL(expected.size(), size_t(kEvents));
  std::lock_guard lock(mu);
  BOOST_REQUIRE_EQUAL(seen.size(), size_t(kEvents));
  for (int i = 0; i < kEvents; ++i) BOOST_TEST_REQUIRE(same(seen[i], expected[i]), "event " << i);
  const SubscriptionStats st = view_sub.stats();
  BOOST_TEST(st.received == uint64_t(kEvents));
  BOOST_TEST(st.delivered == uint64_t(kEvents));
  BOOST_TEST(st.dropped_oldest + st.dropped_newest + st.dropped_close + st.malformed == 0u);
  return threads;
}

BOOST_AUTO_TEST_CASE(a_view_subscription_sees_what_a_handler_subscription_sees) {
  const auto threads = check_views_match_copies({});
  BOOST_TEST(threads.size() == 1u);  // its reader thread
}

// A peer may write msgpack in forms the direct reader does not take (here status_code as an
// int64 and a v1 record without node_id): msgpack-c decodes those frames, and the views point
// into its copy. Many analytics records make the owned vector grow while decoding: the views
// must still point at their own event afterwards.
BOOST_AUTO_TEST_CASE(views_of_every_form_match_decode_frame) {
  std::vector<std::string> records;
  for (int i = 0; i < 100; ++i) {
    AnalyticsEvent e = sample_event(AnalyticsType::identify, i);
    e.message_id = "m-" + std::to_string(i);
    e.node_id = "node-p";
    records.push_back({});
    codec::append(records.back(), e);
  }
  RequestLog v1 = sample_log("/v1-record");
  v1.request_id = "r-v1";
  records.push_back({});
  codec::append_v1(records.back(), v1);
  const std::string fast = frame_payload(records, "node-p", 7, 1);

  // The same request in a form only msgpack-c reads: status_code as int64 (0xd3).
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_array(16);
  p.pack_uint8(uint8_t(MessageKind::request_sent));
  p.pack_uint8(2);
  for (const char* s : {"r-slow", "GET", "/slow"}) p.pack(std::string(s));
  p.pack_fix_int64(404);
  p.pack_double(2.5);
  for (const char* s : {"curl/8", "10.0.0.1", "", "bot", ""}) p.pack(std::string(s));
  p.pack_uint32(3);
  p.pack_int64(1'700'000'000'000'000);
  p.pack(std::string("node-p"));
  p.pack_uint64(101);
  records.push_back(std::string(buf.data(), buf.size()));
  const std::string slow = frame_payload(records, "node-p", 7, 1);

  for (const std::string* frame : {&fast, &slow}) {
    detail::FrameHeader h1, h2;
    std::vector<Message> expected;
    BOOST_REQUIRE(!detail::decode_frame(frame->data(), frame->size(), 1 << 20, h1, expected));
    std::vector<MessageView> views(3);  // left from "another frame"
    std::vector<Message> owned;         // grows while decoding
    const auto error = detail::decode_frame_views(frame->data(), frame->size(), 1 << 20, h2, views, owned);
    BOOST_REQUIRE(!error);
    BOOST_REQUIRE_EQUAL(h2.count, h1.count);
    for (uint32_t i = 0; i < h1.count; ++i) BOOST_TEST_REQUIRE(same(views[i].to_message(), expected[i]), "record " << i);
    BOOST_TEST(views[100].request.node_id == "node-p");  // the v1 record's, from the header
    BOOST_TEST(views[0].analytics->message_id == "m-0");
    if (frame == &slow) BOOST_TEST(views[101].request.status_code == 404);
  }
}

BOOST_AUTO_TEST_CASE(a_throwing_view_handler_is_counted_and_the_stream_goes_on) {
  BusOptions options;
  options.node_id = "node-v";
  Bus bus(options);
  std::atomic<int> calls{0};
  auto sub = bus.subscribe_views({}, [&](const MessageView&) {
    if (calls.fetch_add(1) % 2 == 0) throw std::runtime_error("odd one out");
  });
  for (int i = 0; i < 100; ++i) BOOST_REQUIRE_EQUAL(bus.broadcast(sample_log("/t")), PublishStatus::ok);
  bus.close(10s);
  const SubscriptionStats st = sub.stats();
  BOOST_TEST(calls.load() == 100);
  BOOST_TEST(st.delivered == 100u);
  BOOST_TEST(st.handler_errors == 50u);
}

BOOST_AUTO_TEST_CASE(a_view_subscription_needs_a_handler) {
  Bus bus;
  BOOST_CHECK_THROW((void)bus.subscribe_views({}, ViewHandler{}), Error);
  SubscribeOptions drop;
  drop.overflow = Overflow::drop_oldest;
  BOOST_CHECK_THROW((void)bus.subscribe_views(drop, ViewHandler{}), Error);
}

// Where every received event is now: the invariant each SubscriptionStats keeps.
uint64_t accounted(const SubscriptionStats& s) {
  return s.delivered + s.dropped_newest + s.dropped_oldest + s.dropped_close + s.pending_depth + s.in_hand;
}

// With a drop policy, whole frames wait in the queue and a handler thread reads them in place:
// exactly what a handler subscription sees, every kind of message, in order.
BOOST_AUTO_TEST_CASE(a_queued_view_subscription_sees_what_a_handler_subscription_sees) {
  SubscribeOptions so;
  so.overflow = Overflow::drop_oldest;
  so.max_pending = 1 << 20;  // nothing dropped here
  const auto threads = check_views_match_copies(so);
  BOOST_TEST(threads.size() == 1u);  // one handler thread, never two at once
  BOOST_TEST(threads.count(std::this_thread::get_id()) == 0u);
}

// A stuck view handler with a drop policy sheds load in its own queue, counted in events, and
// does not hold back the bus: every event is published and received; the newest survive
// (drop_oldest) or the oldest (drop_newest).
BOOST_AUTO_TEST_CASE(a_stuck_queued_view_handler_sheds_load_and_counts_every_event) {
  for (const Overflow policy : {Overflow::drop_oldest, Overflow::drop_newest}) {
    BusOptions options;
    options.node_id = "node-q";
    options.max_events_per_frame = 10;
    Bus bus(options);
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    std::atomic<bool> entered{false};
    std::vector<uint64_t> seqs;  // guarded by mu
    SubscribeOptions so;
    so.overflow = policy;
    so.max_pending = 100;
    auto sub = bus.subscribe_views(so, [&](const MessageView& v) {
      std::unique_lock lock(mu);
      entered = true;
      cv.wait(lock, [&] { return release; });
      seqs.push_back(v.request.seq);
    });
    constexpr int kEvents = 5000;
    BOOST_REQUIRE_EQUAL(bus.broadcast(sample_log("/first")), PublishStatus::ok);
    BOOST_REQUIRE(poll_until([&] { return entered.load(); }, 10s));  // the handler holds the first
    for (int i = 1; i < kEvents; ++i) BOOST_REQUIRE_EQUAL(bus.broadcast(sample_log("/n")), PublishStatus::ok);
    // Every frame reaches the reader although the handler is stuck: the queue sheds, not the bus.
    BOOST_REQUIRE(poll_until([&] { return sub.stats().received == uint64_t(kEvents); }, 10s));
    SubscriptionStats st = sub.stats();
    BOOST_TEST(accounted(st) == st.received);
    BOOST_TEST(st.pending_depth <= 100u);
    BOOST_TEST((policy == Overflow::drop_oldest ? st.dropped_oldest : st.dropped_newest) > 0u);
    BOOST_TEST(st.slow);
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
    bus.close(10s);
    st = sub.stats();
    BOOST_TEST(st.received == uint64_t(kEvents));
    BOOST_TEST(st.delivered + st.dropped_oldest + st.dropped_newest == uint64_t(kEvents));
    BOOST_TEST(st.dropped_close + st.pending_depth + st.in_hand == 0u);
    std::lock_guard lock(mu);
    BOOST_REQUIRE_EQUAL(seqs.size(), size_t(st.delivered));
    BOOST_TEST(std::is_sorted(seqs.begin(), seqs.end()));
    if (policy == Overflow::drop_oldest) BOOST_TEST(seqs.back() == seqs.front() + kEvents - 1);  // the newest kept
    else BOOST_TEST(seqs[1] == seqs[0] + 1);  // the oldest kept
  }
}

// close() on a subscription whose handler is behind: what is still queued is counted as
// dropped_close, in events, and the handler is not called once close() has returned.
BOOST_AUTO_TEST_CASE(closing_a_queued_view_subscription_counts_what_it_leaves) {
  BusOptions options;
  options.node_id = "node-q";
  options.max_events_per_frame = 10;
  Bus bus(options);
  std::atomic<int> calls{0};
  SubscribeOptions so;
  so.overflow = Overflow::drop_oldest;
  so.max_pending = 100000;
  auto sub = bus.subscribe_views(so, [&](const MessageView&) {
    ++calls;
    std::this_thread::sleep_for(1ms);
  });
  constexpr int kEvents = 2000;
  for (int i = 0; i < kEvents; ++i) BOOST_REQUIRE_EQUAL(bus.broadcast(sample_log("/c")), PublishStatus::ok);
  BOOST_REQUIRE(poll_until([&] { return sub.stats().received == uint64_t(kEvents); }, 10s));
  sub.close();
  const int calls_at_close = calls.load();
  const SubscriptionStats st = sub.stats();
  BOOST_TEST(st.received == uint64_t(kEvents));
  BOOST_TEST(st.dropped_close > 0u);
  BOOST_TEST(st.delivered + st.dropped_close + st.dropped_oldest == uint64_t(kEvents));
  BOOST_TEST(st.pending_depth + st.in_hand == 0u);
  BOOST_TEST(calls_at_close == int(st.delivered));
  std::this_thread::sleep_for(50ms);
  BOOST_TEST(calls.load() == calls_at_close);  // not called again once close() returned
  bus.close(10s);
}

BOOST_AUTO_TEST_SUITE_END()
