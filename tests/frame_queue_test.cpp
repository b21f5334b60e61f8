// bus/frame_queue.hpp: the publish queue of frames. Records land back to back in their
// channel's open frame behind the header room, frames split on channel, event count and bytes;
// the event and byte bounds under each overflow policy (drop_oldest evicting across frames);
// close, clear, wake and the buffer pool; many producers against one consumer.
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cstdint>
#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bus/frame_queue.hpp"

namespace reqbus::detail {
std::ostream& operator<<(std::ostream& os, PushResult r) {
  const char* names[] = {"ok", "dropped_newest", "timed_out", "closed"};
  return os << names[int(r)];
}
}  // namespace reqbus::detail

using namespace std::chrono_literals;
using reqbus::Overflow;
using reqbus::detail::FrameBuffer;
using reqbus::detail::FramePool;
using reqbus::detail::FrameQueue;
using reqbus::detail::PushResult;
using Clock = FrameQueue::Clock;
using Frames = std::vector<std::unique_ptr<FrameBuffer>>;

namespace {

PushResult push(FrameQueue& q, std::string_view record, std::string_view topic = "t", char scope = 'a') {
  return q.push(record, topic, scope, Overflow::drop_newest, Clock::now() + 1s).result;
}

Frames pop_now(FrameQueue& q) {  // whatever is queued, without waiting
  Frames out;
  q.pop(out, SIZE_MAX, Clock::now());
  return out;
}

std::string live(const FrameBuffer& f) { return f.bytes.substr(f.start); }

// The frame's live records, cut by sizes[first..]; they must cover [start, size) exactly.
std::vector<std::string> records(const FrameBuffer& f) {
  std::vector<std::string> out;
  size_t at = f.start;
  for (size_t i = f.first; i < f.sizes.size() && at <= f.bytes.size(); at += f.sizes[i++])
    out.push_back(f.bytes.substr(at, f.sizes[i]));
  BOOST_CHECK_EQUAL(at, f.bytes.size());  // CHECK, not REQUIRE: also called beside running threads
  return out;
}

// The popped frames' live bytes, frame by frame.
void expect(const Frames& out, const std::vector<std::string>& want) {
  BOOST_REQUIRE_EQUAL(out.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) BOOST_CHECK_EQUAL(live(*out[i]), want[i]);
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

}  // namespace

BOOST_AUTO_TEST_SUITE(FrameQueueSuite)

// Records of one channel are copied back to back into one frame behind the header room.
BOOST_AUTO_TEST_CASE(one_channel_fills_one_frame_behind_header_room) {
  FrameQueue q(100, 1 << 20, 64, 1 << 16, 8);
  for (const char* r : {"alpha", "be", "gamma!"}) BOOST_CHECK_EQUAL(push(q, r, "topic", 'x'), PushResult::ok);
  BOOST_CHECK_EQUAL(q.size(), 3u);
  BOOST_CHECK_EQUAL(q.bytes(), 13u);
  Frames out;
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, Clock::now()), 3u);
  BOOST_REQUIRE_EQUAL(out.size(), 1u);
  const FrameBuffer& f = *out[0];
  BOOST_CHECK_EQUAL(f.start, 8u);
  BOOST_CHECK_EQUAL(f.bytes, std::string(8, '\0') + "alphabegamma!");
  BOOST_CHECK(f.sizes == (std::vector<uint32_t>{5, 2, 6}));
  BOOST_CHECK_EQUAL(f.count(), 3u);
  BOOST_CHECK_EQUAL(f.topic, "topic");
  BOOST_CHECK_EQUAL(f.scope, 'x');
  BOOST_CHECK(q.size() == 0 && q.bytes() == 0);
}

// With stamping, push() numbers records 0, 1, 2... in the order they enter the queue, in the
// last 8 bytes of each (big-endian, after msgpack's 0xcf); refused records take no number.
BOOST_AUTO_TEST_CASE(stamping_numbers_records_in_queue_order) {
  FrameQueue q(3, 1 << 20, 64, 1 << 16, 0);
  q.stamp_sequence();
  const std::string placeholder = std::string("r") + char(0xcf) + std::string(8, char(0xff));
  for (int i = 0; i < 3; ++i) BOOST_CHECK_EQUAL(push(q, placeholder), PushResult::ok);
  BOOST_CHECK_EQUAL(push(q, placeholder), PushResult::dropped_newest);  // full: no number taken
  BOOST_CHECK_EQUAL(q.accepted(), 3u);
  const Frames first = pop_now(q);
  BOOST_CHECK_EQUAL(push(q, placeholder), PushResult::ok);
  const Frames second = pop_now(q);
  BOOST_REQUIRE(first.size() == 1u && second.size() == 1u);
  std::vector<std::string> all = records(*first[0]);
  all.push_back(records(*second[0]).at(0));
  BOOST_REQUIRE_EQUAL(all.size(), 4u);
  for (size_t i = 0; i < all.size(); ++i)
    BOOST_CHECK_EQUAL(all[i], std::string("r") + char(0xcf) + std::string(7, '\0') + char(i));
  BOOST_CHECK_EQUAL(q.accepted(), 4u);
}

// pop takes at most max_frames frames, oldest first; the rest stay queued and counted, and the
// frame being filled goes on filling.
BOOST_AUTO_TEST_CASE(pop_takes_at_most_max_frames) {
  FrameQueue q(100, 1 << 20, 2, 1 << 16, 4);
  for (int i = 0; i < 7; ++i) BOOST_CHECK_EQUAL(push(q, "r" + std::to_string(i)), PushResult::ok);
  Frames out;
  BOOST_CHECK_EQUAL(q.pop(out, 2, Clock::now()), 4u);
  expect(out, {"r0r1", "r2r3"});
  BOOST_CHECK_EQUAL(q.size(), 3u);
  BOOST_CHECK_EQUAL(q.bytes(), 6u);
  BOOST_CHECK_EQUAL(push(q, "r7"), PushResult::ok);  // fills the open frame r6
  BOOST_CHECK_EQUAL(q.pop(out, 1, Clock::now()), 2u);
  expect(out, {"r4r5"});
  BOOST_CHECK_EQUAL(q.pop(out, 5, Clock::now()), 2u);
  expect(out, {"r6r7"});
  BOOST_CHECK(q.size() == 0 && q.bytes() == 0);
}

// A frame holds at most frame_events records: 7 pushes with a limit of 3 make frames 3, 3, 1.
BOOST_AUTO_TEST_CASE(frame_events_limit_splits_frames) {
  FrameQueue q(100, 1 << 20, 3, 1 << 16, 4);
  for (int i = 0; i < 7; ++i) BOOST_CHECK_EQUAL(push(q, "r" + std::to_string(i)), PushResult::ok);
  const Frames out = pop_now(q);
  expect(out, {"r0r1r2", "r3r4r5", "r6"});
  for (const auto& f : out) BOOST_CHECK_EQUAL(f->start, 4u);
}

// Past its first record a frame takes no more than frame_bytes record bytes (exactly
// frame_bytes still fits); a record larger than frame_bytes gets a frame of its own.
BOOST_AUTO_TEST_CASE(frame_bytes_limit_splits_frames_and_big_record_stands_alone) {
  FrameQueue q(100, 1 << 20, 64, 10, 4);
  const std::string big(25, 'x');
  for (const std::string& r : std::vector<std::string>{"aaaa", "bbbb", "cccc", big, "dddd", "ee", "ffff", "g"})
    BOOST_CHECK_EQUAL(push(q, r), PushResult::ok);
  expect(pop_now(q), {"aaaabbbb", "cccc", big, "ddddeeffff" /* exactly 10 bytes */, "g"});
}

// A different topic or scope opens a new frame; going back to an earlier channel opens another,
// so the queue keeps the order of pushes.
BOOST_AUTO_TEST_CASE(channel_change_starts_new_frame_in_push_order) {
  FrameQueue q(100, 1 << 20, 64, 1 << 16, 2);
  for (const char* r : {"A1", "A2", "B1", "A3"}) push(q, r, r[0] == 'B' ? "t2" : "t1", 'a');
  push(q, "C1", "t1", 'b');  // same topic, other scope
  const Frames out = pop_now(q);
  BOOST_REQUIRE_EQUAL(out.size(), 4u);
  const char* expected[][3] = {{"t1", "a", "A1A2"}, {"t2", "a", "B1"}, {"t1", "a", "A3"}, {"t1", "b", "C1"}};
  for (size_t i = 0; i < out.size(); ++i) {
    BOOST_CHECK_EQUAL(out[i]->topic, expected[i][0]);
    BOOST_CHECK_EQUAL(out[i]->scope, expected[i][1][0]);
    BOOST_CHECK_EQUAL(live(*out[i]), expected[i][2]);
  }
}

// drop_newest refuses a push past max_events or max_bytes and leaves the queue as it was
// (exactly max_bytes still fits); one record larger than max_bytes is taken into an empty queue.
BOOST_AUTO_TEST_CASE(drop_newest_at_event_and_byte_bounds) {
  FrameQueue by_events(3, 1000, 64, 1 << 16, 0);
  for (const char* r : {"a", "b", "c"}) BOOST_CHECK_EQUAL(push(by_events, r), PushResult::ok);
  const auto refused = by_events.push("d", "t", 'a', Overflow::drop_newest, Clock::now() + 1s);
  BOOST_CHECK_EQUAL(refused.result, PushResult::dropped_newest);
  BOOST_CHECK_EQUAL(refused.evicted, 0u);
  BOOST_CHECK_EQUAL(by_events.size(), 3u);
  BOOST_CHECK_EQUAL(by_events.bytes(), 3u);
  expect(pop_now(by_events), {"abc"});

  FrameQueue by_bytes(100, 10, 64, 1 << 16, 0);
  BOOST_CHECK_EQUAL(push(by_bytes, "12345"), PushResult::ok);
  BOOST_CHECK_EQUAL(push(by_bytes, "6789"), PushResult::ok);
  BOOST_CHECK_EQUAL(push(by_bytes, "ab"), PushResult::dropped_newest);  // 11 > 10
  BOOST_CHECK_EQUAL(push(by_bytes, "a"), PushResult::ok);               // exactly 10
  BOOST_CHECK_EQUAL(by_bytes.size(), 3u);
  BOOST_CHECK_EQUAL(by_bytes.bytes(), 10u);
  const std::string big(50, 'z');
  BOOST_CHECK_EQUAL(push(by_bytes, big), PushResult::dropped_newest);  // not while others are queued
  expect(pop_now(by_bytes), {"123456789a"});
  BOOST_CHECK_EQUAL(push(by_bytes, big), PushResult::ok);  // alone in an empty queue
  BOOST_CHECK_EQUAL(by_bytes.bytes(), 50u);
  BOOST_CHECK_EQUAL(push(by_bytes, "x"), PushResult::dropped_newest);
  expect(pop_now(by_bytes), {big});
}

// drop_oldest evicts exactly the oldest records, one by one and across frame boundaries: the
// front frame's start and first move on, a frame emptied by eviction leaves the queue.
BOOST_AUTO_TEST_CASE(drop_oldest_evicts_oldest_records_across_frames) {
  auto fill = [](FrameQueue& q) {  // frames [e0 e1] [e2 e3] [e4]
    for (int i = 0; i < 5; ++i) BOOST_CHECK_EQUAL(push(q, "e" + std::to_string(i)), PushResult::ok);
  };
  // By event count: one eviction; the front frame keeps e1 with start and first moved on.
  FrameQueue q(5, 1000, 2, 1 << 16, 4);
  fill(q);
  auto o = q.push("e5", "t", 'a', Overflow::drop_oldest, Clock::now() + 1s);
  BOOST_CHECK_EQUAL(o.result, PushResult::ok);
  BOOST_CHECK_EQUAL(o.evicted, 1u);
  BOOST_CHECK_EQUAL(q.size(), 5u);
  BOOST_CHECK_EQUAL(q.bytes(), 10u);
  Frames out = pop_now(q);
  expect(out, {"e1", "e2e3", "e4e5"});
  BOOST_CHECK_EQUAL(out[0]->start, 4u + 2u);
  BOOST_CHECK_EQUAL(out[0]->first, 1u);
  BOOST_CHECK(records(*out[0]) == std::vector<std::string>{"e1"});

  // By bytes: a 6-byte record into 10 of 10 bytes evicts e0, e1 (the whole first frame) and e2.
  FrameQueue b(100, 10, 2, 1 << 16, 4);
  fill(b);
  o = b.push("BIGBIG", "t", 'a', Overflow::drop_oldest, Clock::now() + 1s);
  BOOST_CHECK_EQUAL(o.result, PushResult::ok);
  BOOST_CHECK_EQUAL(o.evicted, 3u);
  BOOST_CHECK_EQUAL(b.size(), 3u);
  BOOST_CHECK_EQUAL(b.bytes(), 10u);
  out = pop_now(b);
  expect(out, {"e3", "e4BIGBIG"});
  BOOST_CHECK_EQUAL(out[0]->start, 4u + 2u);
  BOOST_CHECK(records(*out[0]) == std::vector<std::string>{"e3"});
  BOOST_CHECK(records(*out[1]) == (std::vector<std::string>{"e4", "BIGBIG"}));

  // An oversized record evicts everything queued and stands alone.
  fill(b);
  o = b.push(std::string(20, 'O'), "t", 'a', Overflow::drop_oldest, Clock::now() + 1s);
  BOOST_CHECK_EQUAL(o.evicted, 5u);
  expect(pop_now(b), {std::string(20, 'O')});
}

// block waits for room until its deadline, then times out; a pop from another thread lets a
// blocked push through well before its deadline.
BOOST_AUTO_TEST_CASE(block_times_out_or_is_let_through_by_pop) {
  FrameQueue q(2, 1000, 64, 1 << 16, 0);
  for (const char* r : {"a", "b"}) push(q, r);
  const auto t0 = Clock::now();
  BOOST_CHECK_EQUAL(q.push("c", "t", 'a', Overflow::block, t0 + 50ms).result, PushResult::timed_out);
  BOOST_CHECK_GE(ms_since(t0), 40.0);
  BOOST_CHECK_EQUAL(q.size(), 2u);

  std::atomic<bool> done{false};
  PushResult result = PushResult::closed;
  const auto t1 = Clock::now();
  std::thread producer([&] {
    result = q.push("d", "t", 'a', Overflow::block, t1 + 20s).result;
    done = true;
  });
  std::this_thread::sleep_for(20ms);
  BOOST_CHECK(!done);  // the queue is still full
  Frames out;
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, Clock::now() + 1s), 2u);
  producer.join();
  BOOST_CHECK_EQUAL(result, PushResult::ok);
  BOOST_CHECK_LT(ms_since(t1), 10000.0);
  expect(pop_now(q), {"d"});
}

// After close() pushes are refused (a blocked one too), pop drains what was queued and then
// returns 0 at once.
BOOST_AUTO_TEST_CASE(close_refuses_pushes_and_pop_drains_then_returns_zero) {
  FrameQueue q(2, 1000, 64, 1 << 16, 0);
  for (const char* r : {"a", "b"}) push(q, r);
  PushResult blocked = PushResult::ok;
  std::thread producer([&] { blocked = q.push("c", "t", 'a', Overflow::block, Clock::now() + 20s).result; });
  std::this_thread::sleep_for(10ms);
  q.close();
  producer.join();
  BOOST_CHECK_EQUAL(blocked, PushResult::closed);
  BOOST_CHECK_EQUAL(push(q, "d"), PushResult::closed);
  BOOST_CHECK_EQUAL(q.push("d", "t", 'a', Overflow::drop_oldest, Clock::now()).result, PushResult::closed);
  BOOST_CHECK(!q.closed_and_empty());
  Frames out;
  const auto t0 = Clock::now();
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, t0 + 20s), 2u);
  expect(out, {"ab"});
  BOOST_CHECK(q.closed_and_empty());
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, t0 + 20s), 0u);
  BOOST_CHECK(out.empty());
  BOOST_CHECK_LT(ms_since(t0), 5000.0);
}

// clear() drops every queued event, returns how many, and frees room.
BOOST_AUTO_TEST_CASE(clear_drops_everything_and_returns_count) {
  FrameQueue q(5, 1000, 2, 1 << 16, 0);
  for (int i = 0; i < 5; ++i) push(q, "e" + std::to_string(i), i % 2 ? "x" : "y");
  BOOST_CHECK_EQUAL(q.clear(), 5u);
  BOOST_CHECK(q.size() == 0 && q.bytes() == 0);
  BOOST_CHECK(pop_now(q).empty());
  BOOST_CHECK_EQUAL(q.clear(), 0u);
  BOOST_CHECK_EQUAL(push(q, "new"), PushResult::ok);
  expect(pop_now(q), {"new"});
}

// wake() makes a waiting pop (or the next one) return 0 long before its deadline; the pop it
// ends uses it up, so the following pop waits again.
BOOST_AUTO_TEST_CASE(wake_ends_a_waiting_pop_early) {
  FrameQueue q(10, 1000, 64, 1 << 16, 0);
  Frames out;
  q.wake();
  const auto t0 = Clock::now();
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, t0 + 20s), 0u);
  const auto t1 = Clock::now();  // before the waker starts: it wakes at least 20 ms after t1
  std::thread waker([&] { std::this_thread::sleep_for(20ms); q.wake(); });
  BOOST_CHECK_EQUAL(q.pop(out, SIZE_MAX, t1 + 20s), 0u);
  BOOST_CHECK_GE(ms_since(t1), 15.0);  // waited for the waker, not for the first wake()
  waker.join();
  BOOST_CHECK(out.empty());
  BOOST_CHECK_LT(ms_since(t0), 5000.0);
}

// Buffers put back in the pool are handed out again with their capacity, and a frame made from
// one starts fresh; the pool keeps at most `keep` idle buffers.
BOOST_AUTO_TEST_CASE(pool_reuses_buffers) {
  FrameQueue q(10, 1000, 64, 1 << 16, 6);
  push(q, std::string(500, 'p'), "old", 'o');
  Frames out = pop_now(q);
  FrameBuffer* used = out.at(0).get();
  const size_t capacity = used->bytes.capacity();
  used->home = q.pool();  // as the publisher does; put() clears it
  q.pool()->put(std::move(out[0]));
  push(q, "fresh", "new", 'n');
  out = pop_now(q);
  BOOST_REQUIRE(out.size() == 1 && out[0].get() == used);
  BOOST_CHECK_GE(used->bytes.capacity(), capacity);
  BOOST_CHECK(!used->home);
  BOOST_CHECK_EQUAL(used->start, 6u);
  BOOST_CHECK_EQUAL(used->bytes, std::string(6, '\0') + "fresh");
  BOOST_CHECK(used->first == 0 && used->sizes == std::vector<uint32_t>{5});
  BOOST_CHECK_EQUAL(used->topic, "new");

  FramePool pool(2);
  for (const char* mark : {"b1", "b2", "b3"}) {
    auto b = std::make_unique<FrameBuffer>();
    b->bytes = mark;
    pool.put(std::move(b));  // b3 is one too many
  }
  BOOST_CHECK_EQUAL(pool.get()->bytes, "b2");
  BOOST_CHECK_EQUAL(pool.get()->bytes, "b1");
  BOOST_CHECK_EQUAL(pool.get()->bytes, "");
}

// Four producers push 10,000 distinct records each (block policy, small bounds, two topics)
// while one consumer pops: every record arrives exactly once, in its frame's channel, and each
// producer's records in order. Run plain and with lazy wake-ups.
BOOST_AUTO_TEST_CASE(many_producers_one_consumer_lose_nothing_and_keep_order) {
  constexpr int kThreads = 4, kEach = 10000;
  for (bool lazy : {false, true}) {
    BOOST_TEST_CONTEXT("lazy wake " << lazy) {
      FrameQueue q(256, 4096, 16, 256, 8);
      if (lazy) q.set_lazy_wake(1ms, 50ms);
      std::atomic<int> failed{0};
      std::vector<std::thread> producers;
      for (int t = 0; t < kThreads; ++t)
        producers.emplace_back([&, t] {
          const std::string topic = "t" + std::to_string(t % 2);
          for (int i = 0; i < kEach; ++i) {
            const std::string r = "t" + std::to_string(t) + "-" + std::to_string(i);
            if (q.push(r, topic, 'a', Overflow::block, Clock::now() + 20s).result != PushResult::ok) ++failed;
          }
        });
      std::vector<int> next(kThreads, 0);
      int seen = 0, wrong = 0;
      const auto give_up = Clock::now() + 30s;
      Frames out;
      while (seen < kThreads * kEach && Clock::now() < give_up) {
        q.pop(out, 2, Clock::now() + 100ms);
        for (auto& f : out) {
          for (const std::string& r : records(*f)) {
            const size_t dash = r.find('-');
            const int t = std::stoi(r.substr(1, dash - 1)), i = std::stoi(r.substr(dash + 1));
            if (t < 0 || t >= kThreads || i != next[t] || f->topic != "t" + std::to_string(t % 2)) ++wrong;
            else ++next[t];
            ++seen;
          }
          q.pool()->put(std::move(f));
        }
      }
      for (auto& p : producers) p.join();
      BOOST_CHECK_EQUAL(failed.load(), 0);
      BOOST_CHECK_EQUAL(wrong, 0);
      BOOST_CHECK_EQUAL(seen, kThreads * kEach);
      for (int t = 0; t < kThreads; ++t) BOOST_CHECK_EQUAL(next[t], kEach);
      BOOST_CHECK_EQUAL(q.size(), 0u);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
