// Batcher: each Mxpanel.Batcher behaviour, plus the spool that makes it lossless. Time is a
// ManualClock; tests synchronise on the TestSink's conditions and on futures, never on sleeps.
#include <sqlite3.h>

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "analytics/batcher_impl.hpp"  // approx_bytes
#include "analytics/batcher_timing.hpp"
#include "analytics/spool.hpp"
#include "analytics/spool_format.hpp"
#include "reqbus/batcher.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"
#include "reqbus/ndjson_sink.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/hanging_sink.hpp"
#include "tests/support/log_lines.hpp"
#include "tests/support/temp_dir.hpp"
#include "tests/support/test_sink.hpp"

using namespace reqbus;
using namespace std::chrono_literals;
using test::TestSink;
namespace fs = std::filesystem;

namespace {

constexpr auto kNever = std::chrono::hours(1);   // intervals a test does not want to fire
constexpr auto kQuiet = 25ms;                     // real time given to prove nothing happens

RequestLog request(uint64_t seq, size_t path_bytes = 4) {
  RequestLog r;
  r.request_id = uuid_v7();
  r.method = "GET";
  r.path = "/page/" + std::string(path_bytes, 'p');
  r.status_code = 200;
  r.duration_ms = 1.5;
  r.inserted_at = 1'700'000'000'000'000 + static_cast<int64_t>(seq);
  r.node_id = "node-a";
  r.seq = seq;
  return r;
}

Message message(uint64_t seq, size_t path_bytes = 4) {
  Message m;
  m.request = request(seq, path_bytes);
  return m;
}

struct Rig {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::shared_ptr<TestSink> sink = std::make_shared<TestSink>(clock);
  test::TempDir dir{"reqbus-batcher"};

  // One buffer, one worker, nothing timed unless a test turns it on.
  BatcherOptions options() const {
    BatcherOptions o;
    o.pool_size = 1;
    o.flush_workers = 1;
    o.flush_interval = kNever;
    o.flush_jitter = 0ms;
    o.flush_at = 1000;
    o.replay_interval = kNever;
    o.replay_max_backoff = kNever;
    o.clock = clock;
    o.seed = 1;
    o.spool_sync = false;  // tmpfs-speed tests; fsync is exercised by spool_test's defaults
    return o;
  }
  std::string spool() const { return dir.sub("spool"); }
};

int64_t ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

std::vector<uint64_t> seqs(const std::vector<Message>& messages) {
  std::vector<uint64_t> out;
  for (const Message& m : messages) out.push_back(m.request.seq);
  return out;
}

std::vector<uint64_t> range(uint64_t first, uint64_t last) {  // [first, last)
  std::vector<uint64_t> out;
  for (uint64_t i = first; i < last; ++i) out.push_back(i);
  return out;
}

// The seqs of every distinct event the sink stored, sorted.
std::vector<uint64_t> stored_seqs(const TestSink& sink) {
  std::vector<uint64_t> out = seqs(sink.stored());
  std::sort(out.begin(), out.end());
  return out;
}

// Enqueues request(first) .. request(last - 1); each must be accepted.
void enqueue_range(Batcher& batcher, uint64_t first, uint64_t last) {
  for (uint64_t i = first; i < last; ++i) BOOST_REQUIRE(batcher.enqueue(request(i)) == EnqueueStatus::ok);
}

// Drives the manual clock until `future` is ready (for a close() whose deadline must pass).
template <class T>
T advance_until_ready(ManualClock& clock, std::future<T>& future, std::chrono::milliseconds step) {
  for (int i = 0; i < 20000 && future.wait_for(1ms) != std::future_status::ready; ++i) clock.advance(step);
  BOOST_REQUIRE(future.wait_for(0ms) == std::future_status::ready);
  return future.get();
}

std::vector<fs::path> segment_files(const std::string& dir) {
  std::vector<fs::path> files;
  if (!fs::exists(dir)) return files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".seg") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Polls stats() (1 ms apart, at most 20 s) until `pred` holds; returns the last snapshot.
template <class Pred>
BatcherStats stats_when(const Batcher& batcher, Pred pred) {
  BatcherStats s = batcher.stats();
  for (int i = 0; i < 20000 && !pred(s); ++i) {
    std::this_thread::sleep_for(1ms);  // polling a condition, not timing anything
    s = batcher.stats();
  }
  return s;
}

// A sink that fails every write, two workers, a spool: the circuit breaker's setting.
BatcherOptions outage_options(Rig& rig, size_t flush_at) {
  rig.sink->set_default(WriteResult::retry_later("store down"));
  BatcherOptions o = rig.options();
  o.flush_workers = 2;
  o.flush_at = flush_at;
  o.retry_base_backoff = 100ms;
  o.spool_dir = rig.spool();
  return o;
}

// The real SQLite store behind switches that inject faults: an outage (every write returns
// retry_later), a batch the store always rejects (permanent, for any batch holding an event
// `rejects` matches), and a gate that holds writes (a store that hangs).
class FaultyStore final : public Sink {
 public:
  explicit FaultyStore(const std::string& path) {
    SqliteSinkOptions o;
    o.path = path;
    o.synchronous = SqliteSinkOptions::Synchronous::off;
    sqlite_ = std::make_shared<SqliteSink>(o);
  }
  void set_down(bool down) {
    std::lock_guard lock(mu_);
    down_ = down;
  }
  void reject_if(std::function<bool(const Message&)> rejects) {
    std::lock_guard lock(mu_);
    rejects_ = std::move(rejects);
  }
  void close_gate() {
    std::lock_guard lock(mu_);
    gate_open_ = false;
  }
  void open_gate() {
    {
      std::lock_guard lock(mu_);
      gate_open_ = true;
    }
    cv_.notify_all();
  }
  // Waits until `n` writes have begun (held at the gate or not).
  bool wait_for_writes(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 20s, [&] { return writes_ >= n; });
  }

  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override {
    {
      std::unique_lock lock(mu_);
      ++writes_;
      cv_.notify_all();
      cv_.wait_for(lock, 60s, [&] { return gate_open_; });  // a safety limit, not a timing
      if (down_) return WriteResult::retry_later("store down (injected)");
      if (rejects_ && std::any_of(batch.begin(), batch.end(), rejects_))
        return WriteResult::failure("the store rejects this batch (injected)");
    }
    return sqlite_->write(batch, timeout);
  }
  std::string name() const override { return "faulty " + sqlite_->name(); }

 private:
  std::shared_ptr<SqliteSink> sqlite_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool down_ = false;
  bool gate_open_ = true;
  size_t writes_ = 0;
  std::function<bool(const Message&)> rejects_;
};

// A store that is down: every write fails. A write of a batch whose first event has a held seq
// waits, from that batch's `from_write`-th write on, until release(seq) — a write still running
// when close() reaches its deadline, made to end exactly when the test says.
class HeldDownSink final : public Sink {
 public:
  void hold(uint64_t seq, int from_write) {
    std::lock_guard lock(mu_);
    hold_from_[seq] = from_write;
  }
  void release(uint64_t seq) {
    {
      std::lock_guard lock(mu_);
      released_.insert(seq);
    }
    cv_.notify_all();
  }
  bool wait_until_held(uint64_t seq, std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return held_.count(seq) > 0; });
  }
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds) override {
    std::unique_lock lock(mu_);
    const uint64_t seq = batch.front().request.seq;
    const int nth = ++writes_[seq];
    if (auto it = hold_from_.find(seq); it != hold_from_.end() && nth >= it->second) {
      held_.insert(seq);
      cv_.notify_all();
      cv_.wait_for(lock, 60s, [&] { return released_.count(seq) > 0; });  // a safety limit
    }
    return WriteResult::retry_later("store down (injected)");
  }
  std::string name() const override { return "held-down"; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, int> writes_, hold_from_;
  std::set<uint64_t> held_, released_;
};

// Rows and distinct request ids in a SQLite store's requests table (0 before its first write).
struct StoredRows {
  uint64_t rows = 0, distinct = 0;
};
StoredRows stored_rows(const std::string& db_path) {
  StoredRows out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*), count(DISTINCT request_id) FROM requests", -1, &st, nullptr) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      out = {uint64_t(sqlite3_column_int64(st, 0)), uint64_t(sqlite3_column_int64(st, 1))};
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

// Advances the manual clock 100 ms at a time (letting the Batcher's threads run between steps)
// until `pred` holds; false if it never does.
template <class Pred>
bool advance_until(ManualClock& clock, Pred pred) {
  for (int i = 0; i < 4000; ++i) {
    if (pred()) return true;
    clock.advance(100ms);
    std::this_thread::sleep_for(5ms);  // polling a condition, not timing anything
  }
  return pred();
}

// The store-fault rig: the real SQLite store in the test's directory, a spool, replays every
// second, and batches that go to the spool after one failed attempt.
BatcherOptions store_fault_options(const Rig& rig, size_t flush_at) {
  BatcherOptions o = rig.options();
  o.flush_at = flush_at;
  o.retry_max_attempts = 1;
  o.spool_dir = rig.spool();
  o.replay_interval = 1s;
  o.replay_max_backoff = 1s;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(batcher_suite)

BOOST_AUTO_TEST_CASE(enqueue_goes_round_robin_across_the_buffers) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.pool_size = 4;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 10);
  const auto buffers = batcher.buffers();
  BOOST_REQUIRE(buffers.size() == 4u);
  const size_t expected[] = {3, 3, 2, 2};
  for (size_t i = 0; i < 4; ++i) {
    BOOST_TEST(buffers[i].index == i);
    BOOST_TEST(buffers[i].events == expected[i]);
  }
  batcher.drain();
  const auto batches = rig.sink->batches();
  BOOST_REQUIRE(batches.size() == 4u);
  BOOST_TEST(seqs(batches[0]) == (std::vector<uint64_t>{0, 4, 8}));
  BOOST_TEST(seqs(batches[1]) == (std::vector<uint64_t>{1, 5, 9}));
  BOOST_TEST(seqs(batches[2]) == (std::vector<uint64_t>{2, 6}));
  BOOST_TEST(seqs(batches[3]) == (std::vector<uint64_t>{3, 7}));
}

BOOST_AUTO_TEST_CASE(flush_at_events_flushes_at_once) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.flush_at = 5;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 4);
  BOOST_TEST(batcher.buffers()[0].events == 4u);
  BOOST_TEST(rig.sink->call_count() == 0u);
  BOOST_REQUIRE(batcher.enqueue(request(4)) == EnqueueStatus::ok);
  BOOST_REQUIRE(rig.sink->wait_for_stored(5));  // the clock never moved
  BOOST_TEST(seqs(rig.sink->batches().at(0)) == range(0, 5));
  BOOST_TEST(!batcher.flush(1s).deadline_reached);
  BOOST_TEST(batcher.stats().delivered == 5u);
  BOOST_TEST(batcher.stats().batches_delivered == 1u);
  BOOST_TEST(rig.sink->calls().at(0).timeout.count() == o.import_timeout.count());
}

BOOST_AUTO_TEST_CASE(interval_plus_seeded_jitter_flushes_on_the_clock) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.pool_size = 2;
  o.flush_interval = 1000ms;
  o.flush_jitter = 500ms;
  o.seed = 42;
  // The same generator the Batcher draws each buffer's first flush time from, in buffer order.
  detail::SplitMix64 rng(detail::jitter_seed(o.seed));
  const int64_t first[2] = {detail::flush_delay(o.flush_interval, o.flush_jitter, rng).count(),
                            detail::flush_delay(o.flush_interval, o.flush_jitter, rng).count()};
  for (int64_t d : first) BOOST_TEST((d >= 1000 && d <= 1500));
  const auto start = rig.clock->now();
  Batcher batcher(rig.sink, o);
  BOOST_REQUIRE(batcher.enqueue(request(0)) == EnqueueStatus::ok);  // buffer 0
  BOOST_REQUIRE(batcher.enqueue(request(1)) == EnqueueStatus::ok);  // buffer 1
  const size_t early = first[0] <= first[1] ? 0 : 1;
  const size_t late = 1 - early;

  rig.clock->advance(std::chrono::milliseconds(first[early] - 1));
  BOOST_TEST(!rig.sink->wait_for_calls(1, kQuiet));  // not one millisecond early
  rig.clock->advance(1ms);
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));
  BOOST_TEST(ms_between(start, rig.sink->calls()[0].at) == first[early]);
  if (first[late] > first[early]) {
    rig.clock->advance(std::chrono::milliseconds(first[late] - first[early]));
  }
  BOOST_REQUIRE(rig.sink->wait_for_calls(2));
  BOOST_TEST(ms_between(start, rig.sink->calls()[1].at) == first[late]);
  BOOST_REQUIRE(rig.sink->wait_for_stored(2));
  const auto batches = rig.sink->batches();
  std::set<uint64_t> flushed = {batches.at(0).at(0).request.seq, batches.at(1).at(0).request.seq};
  BOOST_TEST(flushed == (std::set<uint64_t>{0, 1}));
  BOOST_TEST(batches.at(0).at(0).request.seq == early);
}

BOOST_AUTO_TEST_CASE(a_batch_never_passes_max_batch_bytes) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.max_batch_bytes = 1024;
  Batcher batcher(rig.sink, o);
  const size_t each = detail::approx_bytes(message(0, 200));
  BOOST_REQUIRE(each * 3 <= 1024);
  BOOST_REQUIRE(each * 4 > 1024);
  for (uint64_t i = 0; i < 10; ++i) BOOST_REQUIRE(batcher.enqueue(request(i, 200)) == EnqueueStatus::ok);
  BOOST_REQUIRE(rig.sink->wait_for_stored(9));
  BOOST_TEST(batcher.buffers()[0].events == 1u);
  const auto batches = rig.sink->batches();
  BOOST_REQUIRE(batches.size() == 3u);
  for (size_t b = 0; b < 3; ++b) BOOST_TEST(seqs(batches[b]) == range(b * 3, b * 3 + 3));
}

BOOST_AUTO_TEST_CASE(drain_returns_exactly_the_processed_events) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.pool_size = 3;
  Batcher batcher(rig.sink, o);
  std::set<std::string> ids;
  for (uint64_t i = 0; i < 7; ++i) {
    RequestLog r = request(i);
    ids.insert(r.request_id);
    BOOST_REQUIRE(batcher.enqueue(r) == EnqueueStatus::ok);
  }
  const std::vector<Message> drained = batcher.drain();
  BOOST_TEST(drained.size() == 7u);
  std::set<std::string> drained_ids, stored_ids;
  for (const Message& m : drained) drained_ids.insert(m.request.request_id);
  for (const Message& m : rig.sink->stored()) stored_ids.insert(m.request.request_id);
  BOOST_TEST((drained_ids == ids));
  BOOST_TEST((stored_ids == ids));
  BOOST_TEST(batcher.drain().empty());
  BOOST_TEST(batcher.stats().delivered == 7u);
  BOOST_TEST(batcher.stats().queue_depth == 0u);
}

BOOST_AUTO_TEST_CASE(retries_follow_the_backoff_formula_then_spool) {
  Rig rig;
  rig.sink->set_default(WriteResult::retry_later("sink down"));
  BatcherOptions o = rig.options();
  o.flush_at = 3;
  o.retry_max_attempts = 4;
  o.retry_base_backoff = 100ms;
  o.seed = 7;
  o.spool_dir = rig.spool();
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 3);
  detail::SplitMix64 rng(detail::retry_seed(o.seed));
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));
  for (int attempt = 1; attempt <= 3; ++attempt) {
    const int64_t wait = detail::retry_wait(attempt, o.retry_base_backoff, 0ms, rng).count();
    // attempt * base + random(1..base)
    BOOST_TEST((wait >= attempt * 100 + 1 && wait <= attempt * 100 + 100));
    rig.clock->advance(std::chrono::milliseconds(wait - 1));
    BOOST_TEST(!rig.sink->wait_for_calls(attempt + 1, kQuiet));
    rig.clock->advance(1ms);
    BOOST_REQUIRE(rig.sink->wait_for_calls(attempt + 1));
    const auto calls = rig.sink->calls();
    BOOST_TEST(ms_between(calls[attempt - 1].at, calls[attempt].at) == wait);
  }
  const BatcherReport report = batcher.flush(1s);  // resolves once the 4th attempt fails
  BOOST_TEST(!report.deadline_reached);
  BOOST_TEST(report.spooled == 3u);
  const BatcherStats stats = batcher.stats();
  BOOST_TEST(rig.sink->call_count() == 4u);
  BOOST_TEST(stats.retries == 3u);
  BOOST_TEST(stats.failed_attempts == 4u);
  BOOST_TEST(stats.spooled == 3u);
  BOOST_TEST(stats.delivered == 0u);
  BOOST_TEST(stats.dropped.total() == 0u);
  BOOST_TEST(stats.spool_segments == 1u);
  BOOST_TEST(stats.queue_depth == 0u);
}

BOOST_AUTO_TEST_CASE(a_sinks_retry_after_is_a_floor) {
  Rig rig;
  rig.sink->push_result(WriteResult::retry_later("429", 5000ms));  // above the formula
  rig.sink->push_result(WriteResult::retry_later("503", 1ms));     // below it: formula wins
  BatcherOptions o = rig.options();
  o.flush_at = 1;
  o.retry_base_backoff = 100ms;
  o.seed = 9;
  Batcher batcher(rig.sink, o);
  BOOST_REQUIRE(batcher.enqueue(request(0)) == EnqueueStatus::ok);
  detail::SplitMix64 rng(detail::retry_seed(o.seed));
  const int64_t w1 = detail::retry_wait(1, o.retry_base_backoff, 5000ms, rng).count();
  const int64_t w2 = detail::retry_wait(2, o.retry_base_backoff, 1ms, rng).count();
  BOOST_TEST(w1 == 5000);
  BOOST_TEST((w2 >= 201 && w2 <= 300));
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));
  rig.clock->advance(4999ms);
  BOOST_TEST(!rig.sink->wait_for_calls(2, kQuiet));
  rig.clock->advance(1ms);
  BOOST_REQUIRE(rig.sink->wait_for_calls(2));
  rig.clock->advance(std::chrono::milliseconds(w2));
  BOOST_REQUIRE(rig.sink->wait_for_stored(1));
  const auto calls = rig.sink->calls();
  BOOST_TEST(ms_between(calls[0].at, calls[1].at) == 5000);
  BOOST_TEST(ms_between(calls[1].at, calls[2].at) == w2);
  BOOST_TEST(batcher.flush(1s).delivered == 1u);
  BOOST_TEST(batcher.stats().retries == 2u);
}

BOOST_AUTO_TEST_CASE(a_permanent_error_spools_without_retrying) {
  Rig rig;
  rig.sink->set_default(WriteResult::failure("schema mismatch"));
  BatcherOptions o = rig.options();
  o.flush_at = 2;
  o.spool_dir = rig.spool();
  std::vector<Message> sent;
  {
    Batcher batcher(rig.sink, o);
    for (uint64_t i = 0; i < 2; ++i) {
      sent.push_back(message(i));
      BOOST_REQUIRE(batcher.enqueue(sent.back()) == EnqueueStatus::ok);
    }
    const BatcherReport report = batcher.flush(1s);
    BOOST_TEST(report.spooled == 2u);
    BOOST_TEST(report.retries == 0u);
    BOOST_TEST(rig.sink->call_count() == 1u);
    BOOST_TEST(batcher.close(1s).spooled == 2u);
  }
  detail::Spool spool({rig.spool()});
  detail::SpoolSegment segment;
  BOOST_REQUIRE((spool.read_oldest(segment) == detail::SpoolRead::ok));
  BOOST_REQUIRE(segment.size() == 1u);
  BOOST_TEST(seqs(segment.batch(0)) == seqs(sent));
  BOOST_TEST(segment.batch(0)[0].request.request_id == sent[0].request.request_id);
}

// A store that hangs (no error, no answer: a frozen database) must not keep batches in memory
// for import_timeout: after stall_timeout the sink counts as down; the stalled batches, those
// waiting behind them (both workers are stuck) and those that come later, at every timer pass,
// go to the spool (durable: a crash now loses none of them); the hung writes' late success
// closes the breaker without counting their events twice.
BOOST_AUTO_TEST_CASE(a_write_that_stalls_sends_its_batch_and_those_behind_it_to_the_spool) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.spool_dir = rig.spool();
  o.flush_at = 2;
  o.flush_workers = 2;
  o.stall_timeout = 5s;
  Batcher batcher(rig.sink, o);
  rig.sink->close_gate();
  uint64_t seq = 0;
  auto batch = [&] {
    for (int i = 0; i < 2; ++i) BOOST_REQUIRE(batcher.enqueue(request(seq++)) == EnqueueStatus::ok);
  };
  batch();
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));
  batch();
  BOOST_REQUIRE(rig.sink->wait_for_calls(2));  // both workers are stuck in a write
  batch();                                     // and this one waits for a worker
  BatcherStats s = batcher.stats();
  BOOST_TEST(!s.sink_down);
  BOOST_TEST(s.queue_depth == 6u);

  rig.clock->advance(4s);  // not yet
  std::this_thread::sleep_for(kQuiet);
  BOOST_TEST(!batcher.stats().sink_down);
  rig.clock->advance(1s);
  s = stats_when(batcher, [](const BatcherStats& st) { return st.spooled == 6u; });
  BOOST_TEST(s.sink_down);
  BOOST_TEST(s.stalled_writes == 1u);
  BOOST_TEST(s.breaker_opened == 1u);
  BOOST_TEST(s.queue_depth == 0u);
  BOOST_TEST(s.spooled_batches == 3u);

  batch();  // later batches too, at the next pass: no worker is free to take them
  // In steps: the timer may still be finishing the pass above, and then counts its next one
  // from the clock as it finds it.
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return batcher.stats().spooled == 8u; }));
  s = batcher.stats();
  BOOST_TEST(s.spooled == 8u);
  BOOST_TEST(s.queue_depth == 0u);
  BOOST_TEST(s.stalled_writes == 1u);  // one outage

  rig.sink->open_gate();  // the hung writes are answered at last: stored, and the sink is back
  s = stats_when(batcher, [](const BatcherStats& st) { return !st.sink_down && st.replayed == 8u; });
  BOOST_TEST(!s.sink_down);
  BOOST_TEST(s.replayed == 8u);   // the spool, written again: idempotently
  BOOST_TEST(s.delivered == 0u);  // the late successes are not counted again
  BOOST_TEST(!batcher.close(5s).deadline_reached);
  BOOST_TEST(rig.sink->stored_count() == 8u);
  s = batcher.stats();
  BOOST_TEST(s.enqueued == s.delivered + s.spooled + s.dropped.after_accept() + s.queue_depth);
}

// A Batcher whose sink hangs (test::HangingSink), inside the write of its first batch of 2 with
// `events` enqueued: writes that would wait a minute, no stall check, and real time, so that
// close()'s deadline passes by itself.
struct HungWrite {
  HungWrite(bool spool, uint64_t events) : batcher(sink, options(rig, spool)) {
    enqueue_range(batcher, 0, events);
    BOOST_REQUIRE(sink->wait_for_writes(1));
  }
  static BatcherOptions options(Rig& rig, bool spool) {
    BatcherOptions o = rig.options();
    o.clock = system_clock();
    if (spool) o.spool_dir = rig.spool();
    o.flush_at = 2;
    o.import_timeout = 60s;
    o.stall_timeout = 0ms;
    return o;
  }
  Rig rig;
  std::shared_ptr<test::HangingSink> sink = std::make_shared<test::HangingSink>();
  Batcher batcher;
};

// close() keeps its deadline when the store hangs: past it the batches are spooled and the write
// still running is abandoned (Sink::abort_writes), not waited out for import_timeout (here a
// minute). Before, a node's shutdown on a frozen database took the write's whole timeout.
BOOST_AUTO_TEST_CASE(close_abandons_a_hung_write_at_its_deadline) {
  HungWrite hung(true, 2);
  const auto start = std::chrono::steady_clock::now();
  const BatcherReport report = hung.batcher.close(300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(report.deadline_reached);
  BOOST_TEST(report.spooled == 2u);
  BOOST_TEST(hung.sink->aborts() >= 1u);
  BOOST_TEST(took < 3s);
}

// hurry() makes a close() in progress act at once as at its deadline: the hung write's batch and
// the one waiting behind it are spooled and the write abandoned, long before the 60 s deadline.
// Without a spool (where close() otherwise waits for a write in progress) the write is
// abandoned too, and the batches are dropped, counted.
BOOST_AUTO_TEST_CASE(hurry_cuts_a_close_in_progress_short) {
  for (const bool spool : {true, false}) {
    BOOST_TEST_CONTEXT("spool " << spool) {
      HungWrite hung(spool, 3);
      const auto start = std::chrono::steady_clock::now();
      auto closing = std::async(std::launch::async, [&] { return hung.batcher.close(60s); });
      BOOST_TEST((closing.wait_for(300ms) == std::future_status::timeout));  // waiting for the store
      hung.batcher.hurry();
      BOOST_REQUIRE((closing.wait_for(5s) == std::future_status::ready));
      const BatcherReport report = closing.get();
      BOOST_TEST((std::chrono::steady_clock::now() - start < 5s));
      BOOST_TEST(report.deadline_reached);
      BOOST_TEST(report.spooled == (spool ? 3u : 0u));
      BOOST_TEST(report.dropped.total() == (spool ? 0u : 3u));
      BOOST_TEST(hung.sink->aborts() >= 1u);
    }
  }
}

// Without a spool close() waits past its deadline for a write in progress (its batch's only
// chance); a hurry() then still ends that wait.
BOOST_AUTO_TEST_CASE(hurry_ends_the_wait_for_a_write_past_the_deadline) {
  HungWrite hung(false, 2);
  auto closing = std::async(std::launch::async, [&] { return hung.batcher.close(200ms); });
  BOOST_TEST((closing.wait_for(800ms) == std::future_status::timeout));  // past its deadline, waiting
  BOOST_TEST(hung.sink->aborts() == 0u);
  hung.batcher.hurry();
  BOOST_REQUIRE((closing.wait_for(2s) == std::future_status::ready));
  BOOST_TEST(closing.get().deadline_reached);
  BOOST_TEST(hung.sink->aborts() >= 1u);
}

// The same when the stall check already spooled the hung write's batch: close() has nothing left
// to wait for, and the write still running is abandoned.
BOOST_AUTO_TEST_CASE(close_abandons_a_stalled_write_whose_batch_is_spooled) {
  Rig rig;
  auto sink = std::make_shared<test::HangingSink>();
  BatcherOptions o = rig.options();
  o.spool_dir = rig.spool();
  o.flush_at = 2;
  o.import_timeout = 60s;
  o.stall_timeout = 5s;
  Batcher batcher(sink, o);
  enqueue_range(batcher, 0, 2);
  BOOST_REQUIRE(sink->wait_for_writes(1));
  // In steps: the timer may count its first pass from a clock already moved.
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return batcher.stats().spooled == 2u; }));
  const auto start = std::chrono::steady_clock::now();
  const BatcherReport report = batcher.close(5s);
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(!report.deadline_reached);
  BOOST_TEST(report.spooled == 2u);
  BOOST_TEST(sink->aborts() >= 1u);
  BOOST_TEST(took < 3s);
}

BOOST_AUTO_TEST_CASE(without_a_spool_exhausted_retries_are_a_loud_counted_drop) {
  Rig rig;
  test::LogLines logs;
  rig.sink->set_default(WriteResult::retry_later("sink down"));
  BatcherOptions o = rig.options();
  o.flush_at = 4;
  o.retry_max_attempts = 1;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 4);
  const BatcherReport report = batcher.flush(1s);
  BOOST_TEST(report.dropped.retries_exhausted == 4u);
  BOOST_TEST(report.spooled == 0u);
  BOOST_TEST(batcher.stats().dropped.retries_exhausted == 4u);
  BOOST_TEST(!logs.any_level("DROPPED 4 events").empty());
}

BOOST_AUTO_TEST_CASE(telemetry_reports_every_buffer_at_its_interval) {
  Rig rig;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::vector<BufferInfo>> reports;
  BatcherOptions o = rig.options();
  o.pool_size = 3;
  o.telemetry_buffers_info_interval = 30000ms;
  o.telemetry = [&](const std::vector<BufferInfo>& info) {
    std::lock_guard lock(mu);
    reports.push_back(info);
    cv.notify_all();
  };
  auto wait_reports = [&](size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [&] { return reports.size() >= n; });
  };
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 5);
  const auto now = batcher.buffers();
  rig.clock->advance(29999ms);
  BOOST_TEST(!wait_reports(1, kQuiet));
  rig.clock->advance(1ms);
  BOOST_REQUIRE(wait_reports(1, 20s));
  {
    std::lock_guard lock(mu);
    const auto& info = reports[0];
    BOOST_REQUIRE(info.size() == 3u);
    const size_t events[] = {2, 2, 1};
    for (size_t i = 0; i < 3; ++i) {
      BOOST_TEST(info[i].index == i);
      BOOST_TEST(info[i].events == events[i]);
      BOOST_TEST(info[i].bytes == now[i].bytes);
      BOOST_TEST(info[i].bytes == events[i] * detail::approx_bytes(message(0)));
    }
  }
  rig.clock->advance(30000ms);  // and again, every interval
  BOOST_TEST(wait_reports(2, 20s));
}

// The ledger of BatcherStats, after an overload under each policy, a spooled batch, its replay,
// and an enqueue after close(): refusals (newest, timeout, closed) are outside `enqueued`;
// evictions and later drops are inside it. (The old documented ledger, enqueued = delivered +
// replayed + dead_lettered + dropped.total(), counted refusals as if accepted.)
BOOST_AUTO_TEST_CASE(the_ledger_balances_after_an_overload_with_refusals) {
  for (const Overflow policy : {Overflow::drop_newest, Overflow::drop_oldest, Overflow::block}) {
    BOOST_TEST_CONTEXT("policy " << to_string(policy)) {
      Rig rig;
      BatcherOptions o = rig.options();
      o.flush_workers = 2;
      o.flush_at = 1;
      o.max_queued_events = 3;
      o.overflow = policy;
      o.block_timeout = 0ms;
      o.spool_dir = rig.spool();
      Batcher batcher(rig.sink, o);
      uint64_t calls = 0;
      auto enqueue = [&](uint64_t seq) {
        ++calls;
        return batcher.enqueue(request(seq));
      };
      rig.sink->close_gate();
      BOOST_REQUIRE(enqueue(0) == EnqueueStatus::ok);
      BOOST_REQUIRE(rig.sink->wait_for_calls(1));
      BOOST_REQUIRE(enqueue(1) == EnqueueStatus::ok);
      BOOST_REQUIRE(rig.sink->wait_for_calls(2));  // both workers hold a batch in the sink
      BOOST_REQUIRE(enqueue(2) == EnqueueStatus::ok);  // waits: the bound is reached
      for (uint64_t i = 3; i < 5; ++i) (void)enqueue(i);   // refused, or evicting the oldest
      rig.sink->push_result(WriteResult::failure("maintenance"));  // one batch: spooled
      rig.sink->open_gate();
      BatcherStats s = stats_when(batcher, [](const BatcherStats& st) {
        return st.queue_depth == 0 && st.spooled == 1u;
      });
      BOOST_TEST(s.dropped.refused() == (policy == Overflow::drop_oldest ? 0u : 2u));
      BOOST_TEST(s.dropped.oldest == (policy == Overflow::drop_oldest ? 2u : 0u));
      BOOST_TEST(s.enqueued + s.dropped.refused() == calls);
      BOOST_TEST(s.enqueued == s.delivered + s.spooled + s.dropped.after_accept() -
                                   s.dropped.dead_letter_error + s.queue_depth);

      BOOST_REQUIRE(enqueue(5) == EnqueueStatus::ok);  // a live write succeeds: replay starts
      s = stats_when(batcher, [](const BatcherStats& st) { return st.replayed == 1u && st.spool_segments == 0; });
      BOOST_REQUIRE_EQUAL(s.replayed, 1u);
      BOOST_TEST(!batcher.close(1s).deadline_reached);
      BOOST_TEST((enqueue(6) == EnqueueStatus::closed));
      s = batcher.stats();
      BOOST_TEST(s.dropped.closed == 1u);
      BOOST_TEST(s.enqueued + s.dropped.refused() == calls);
      BOOST_TEST(s.enqueued == s.delivered + s.replayed + s.dead_lettered + s.dropped.after_accept() + s.queue_depth);
      BOOST_TEST(rig.sink->stored_count() == s.delivered + s.replayed);
    }
  }
}

BOOST_AUTO_TEST_CASE(inactive_is_a_counted_no_op) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.active = false;
  o.flush_at = 1;
  o.spool_dir = rig.spool();
  Batcher batcher(rig.sink, o);
  for (uint64_t i = 0; i < 10; ++i) BOOST_TEST((batcher.enqueue(request(i)) == EnqueueStatus::inactive));
  BOOST_TEST(batcher.drain().empty());
  const BatcherReport report = batcher.flush(1s);
  BOOST_TEST(report.delivered == 0u);
  const BatcherStats stats = batcher.stats();
  BOOST_TEST(stats.inactive == 10u);
  BOOST_TEST(stats.enqueued == 0u);
  BOOST_TEST(stats.dropped.total() == 0u);
  BOOST_TEST(rig.sink->call_count() == 0u);
  BOOST_TEST(!fs::exists(rig.spool()));  // nothing touched the disk either
}

BOOST_AUTO_TEST_CASE(overflow_drop_newest_refuses_exactly_the_excess) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.max_queued_events = 10;
  o.overflow = Overflow::drop_newest;
  Batcher batcher(rig.sink, o);
  size_t ok = 0, refused = 0;
  for (uint64_t i = 0; i < 15; ++i) {
    const EnqueueStatus s = batcher.enqueue(request(i));
    ok += s == EnqueueStatus::ok;
    refused += s == EnqueueStatus::dropped_newest;
  }
  BOOST_TEST(ok == 10u);
  BOOST_TEST(refused == 5u);
  BOOST_TEST(batcher.stats().dropped.newest == 5u);
  BOOST_TEST(batcher.stats().queue_depth == 10u);
  BOOST_TEST(seqs(batcher.drain()) == range(0, 10));
  BOOST_TEST((batcher.enqueue(request(99)) == EnqueueStatus::ok));  // room again
}

BOOST_AUTO_TEST_CASE(overflow_drop_oldest_evicts_exactly_the_oldest) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.max_queued_events = 10;
  o.overflow = Overflow::drop_oldest;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 15);
  BOOST_TEST(batcher.stats().dropped.oldest == 5u);
  BOOST_TEST(seqs(batcher.drain()) == range(5, 15));
}

BOOST_AUTO_TEST_CASE(overflow_drop_oldest_evicts_waiting_batches_but_never_one_being_written) {
  Rig rig;
  rig.sink->close_gate();
  BatcherOptions o = rig.options();
  o.flush_at = 4;
  o.max_queued_events = 10;
  o.overflow = Overflow::drop_oldest;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 4);
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));  // batch 0..3 is inside the sink
  enqueue_range(batcher, 4, 13);
  // 4..7 waited for the worker, 8..11 too, 12 is buffered: 4, 5 and 6 were the oldest evictable.
  BOOST_TEST(batcher.stats().dropped.oldest == 3u);
  rig.sink->open_gate();
  BOOST_TEST(!batcher.close(10s).deadline_reached);
  std::vector<uint64_t> stored = seqs(rig.sink->stored());
  std::sort(stored.begin(), stored.end());
  BOOST_TEST(stored == (std::vector<uint64_t>{0, 1, 2, 3, 7, 8, 9, 10, 11, 12}));
}

BOOST_AUTO_TEST_CASE(overflow_block_times_out_on_the_clock) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.max_queued_events = 10;
  o.overflow = Overflow::block;
  o.block_timeout = 100ms;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 10);
  auto blocked = std::async(std::launch::async, [&] { return batcher.enqueue(request(10)); });
  BOOST_TEST((blocked.wait_for(kQuiet) == std::future_status::timeout));
  // enqueue() reads the clock for its deadline when its thread gets to run, which a loaded
  // machine may delay past the first advance: a second one is allowed, not more.
  for (int advances = 0; advances < 2 && blocked.wait_for(advances ? 5s : 0s) != std::future_status::ready; ++advances)
    rig.clock->advance(100ms);
  BOOST_REQUIRE((blocked.wait_for(20s) == std::future_status::ready));
  BOOST_TEST((blocked.get() == EnqueueStatus::timed_out));
  BOOST_TEST(batcher.stats().dropped.timeout == 1u);
  BOOST_TEST(seqs(batcher.drain()) == range(0, 10));
}

BOOST_AUTO_TEST_CASE(overflow_block_resumes_when_room_frees) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.max_queued_events = 10;
  o.overflow = Overflow::block;
  o.block_timeout = 100ms;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 10);
  auto blocked = std::async(std::launch::async, [&] { return batcher.enqueue(request(10)); });
  BOOST_TEST((blocked.wait_for(kQuiet) == std::future_status::timeout));
  BOOST_TEST(batcher.drain().size() == 10u);  // frees the room
  BOOST_REQUIRE((blocked.wait_for(20s) == std::future_status::ready));
  BOOST_TEST((blocked.get() == EnqueueStatus::ok));
  BOOST_TEST(batcher.stats().dropped.total() == 0u);
  BOOST_TEST(seqs(batcher.drain()) == (std::vector<uint64_t>{10}));
}

BOOST_AUTO_TEST_CASE(enqueue_never_blocks_while_a_batch_is_in_the_sink_or_retrying) {
  Rig rig;
  rig.sink->close_gate();
  rig.sink->set_default(WriteResult::retry_later("sink down"));
  BatcherOptions o = rig.options();
  o.flush_at = 5;
  o.retry_base_backoff = 100ms;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 5);
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));  // the only worker hangs inside the sink
  auto enqueue_many = [&](uint64_t first) {
    return std::async(std::launch::async, [&batcher, first] {
      size_t ok = 0;
      for (uint64_t i = first; i < first + 1000; ++i) ok += batcher.enqueue(request(i)) == EnqueueStatus::ok;
      return ok;
    });
  };
  auto during_write = enqueue_many(5);
  BOOST_REQUIRE((during_write.wait_for(20s) == std::future_status::ready));
  BOOST_TEST(during_write.get() == 1000u);
  rig.sink->open_gate();  // attempt 1 fails: the worker now waits for a backoff that the
  BOOST_REQUIRE(rig.sink->wait_for_finished(1));  // manual clock never reaches
  auto during_retry = enqueue_many(1005);
  BOOST_REQUIRE((during_retry.wait_for(20s) == std::future_status::ready));
  BOOST_TEST(during_retry.get() == 1000u);
  BOOST_TEST(rig.sink->call_count() == 1u);
  rig.sink->set_default(WriteResult::success());
  rig.clock->advance(1s);  // past any first backoff
  const BatcherReport report = batcher.close(kNever);
  BOOST_TEST(report.delivered == 2005u);
  BOOST_TEST(rig.sink->stored_count() == 2005u);
  BOOST_TEST(report.dropped.total() == 0u);
}

BOOST_AUTO_TEST_CASE(a_sink_that_falls_behind_gets_the_waiting_batches_in_one_write) {
  Rig rig;
  rig.sink->close_gate();
  BatcherOptions o = rig.options();
  o.pool_size = 2;  // two buffers cut batches whose ids interleave
  o.flush_at = 10;
  o.coalesce_max_events = 35;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 19);               // buffer 0 cuts batch 1 (the even seqs 0..18)
  BOOST_REQUIRE(rig.sink->wait_for_calls(1));  // the only worker holds it in the sink
  enqueue_range(batcher, 19, 80);              // seven more batches wait behind it
  rig.sink->open_gate();
  const BatcherReport report = batcher.close(kNever);
  BOOST_TEST(report.delivered == 80u);
  BOOST_TEST(report.dropped.total() == 0u);
  // After the first write, waiting batches are merged oldest first while they fit in 35 events:
  // three of 10, then the last three.
  std::vector<size_t> sizes;
  for (const auto& call : rig.sink->calls()) sizes.push_back(call.events);
  BOOST_TEST(sizes == (std::vector<size_t>{10, 30, 30, 10}), boost::test_tools::per_element());
  // Each write holds its batches in batch order: the events of a buffer stay in order.
  const auto batches = rig.sink->batches();
  std::vector<uint64_t> all;
  for (const auto& b : batches) for (uint64_t s : seqs(b)) all.push_back(s);
  BOOST_TEST(all.size() == 80u);
  std::vector<uint64_t> even, odd;  // buffer 0 got the even seqs, buffer 1 the odd ones
  for (uint64_t s : all) (s % 2 ? odd : even).push_back(s);
  BOOST_TEST(std::is_sorted(even.begin(), even.end()));
  BOOST_TEST(std::is_sorted(odd.begin(), odd.end()));
  const BatcherStats stats = batcher.stats();
  BOOST_TEST(stats.batches_delivered == 4u);
  BOOST_TEST(stats.batches_coalesced == 4u);  // 8 batches in 4 writes
}

BOOST_AUTO_TEST_CASE(a_merged_write_that_fails_retries_and_spools_as_one) {
  Rig rig;
  rig.sink->close_gate();
  rig.sink->fail_after(1, WriteResult::retry_later("sink down"));
  BatcherOptions o = rig.options();
  o.flush_at = 10;
  o.coalesce_max_events = 1000;
  o.retry_max_attempts = 1;
  o.spool_dir = rig.spool();
  {
    Batcher batcher(rig.sink, o);
    enqueue_range(batcher, 0, 10);
    BOOST_REQUIRE(rig.sink->wait_for_calls(1));
    enqueue_range(batcher, 10, 50);  // four batches wait, merged into the next write
    rig.sink->open_gate();           // the first write succeeds, the merged one fails
    BOOST_REQUIRE(rig.sink->wait_for_finished(2));
    const BatcherReport report = batcher.close(kNever);
    BOOST_TEST(report.delivered == 10u);
    BOOST_TEST(report.spooled == 40u);  // nothing lost, nothing counted twice
    BOOST_TEST(report.dropped.total() == 0u);
    BOOST_TEST(batcher.stats().spooled_batches == 1u);  // the merged write is one spool record
  }  // its spool directory is released with it
  // A new Batcher replays the spool in order once the sink works.
  rig.sink->set_default(WriteResult::success());
  Batcher again(rig.sink, o);
  BOOST_REQUIRE(rig.sink->wait_for_stored(50));
  BOOST_TEST(seqs(rig.sink->stored()) == range(0, 50), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(close_at_its_deadline_spools_the_rest_and_a_new_batcher_replays_it_in_order) {
  Rig rig;
  rig.sink->set_default(WriteResult::retry_later("sink down"));
  BatcherOptions o = rig.options();
  o.flush_at = 3;
  o.retry_max_attempts = 100;
  o.retry_base_backoff = 10000ms;  // the deadline comes long before the first retry
  o.spool_dir = rig.spool();
  std::vector<Message> sent;
  {
    Batcher batcher(rig.sink, o);
    for (uint64_t i = 0; i < 5; ++i) {
      sent.push_back(message(i));
      BOOST_REQUIRE(batcher.enqueue(sent.back()) == EnqueueStatus::ok);
    }
    BOOST_REQUIRE(rig.sink->wait_for_finished(1));  // 0..2 failed once and waits to retry
    auto closing = std::async(std::launch::async, [&] { return batcher.close(1000ms); });
    const BatcherReport report = advance_until_ready(*rig.clock, closing, 50ms);
    BOOST_TEST(report.deadline_reached);
    BOOST_TEST(report.spooled == 5u);
    BOOST_TEST(report.delivered == 0u);
    BOOST_TEST(report.dropped.total() == 0u);
    BOOST_TEST((batcher.enqueue(request(99)) == EnqueueStatus::closed));
    BOOST_TEST(batcher.stats().dropped.closed == 1u);
    // Closed, not yet destroyed: the spool directory is free for the next Batcher.
    BOOST_CHECK_NO_THROW(reqbus::detail::SpoolLock::throw_if_held(o.spool_dir));
  }
  BOOST_TEST(rig.sink->stored_count() == 0u);
  BOOST_TEST(segment_files(rig.spool()).size() == 1u);

  // The next process: a healthy sink, the same spool directory.
  auto sink2 = std::make_shared<TestSink>(rig.clock);
  Batcher next(sink2, o);
  BOOST_REQUIRE(sink2->wait_for_stored(5));
  BOOST_TEST(seqs(sink2->stored()) == range(0, 5));
  const auto batches = sink2->batches();
  BOOST_REQUIRE(batches.size() == 2u);
  BOOST_TEST(seqs(batches[0]) == range(0, 3));
  BOOST_TEST(seqs(batches[1]) == range(3, 5));
  BOOST_TEST(sink2->stored()[4].request.request_id == sent[4].request.request_id);
  BOOST_TEST(!next.close(1s).deadline_reached);
  BOOST_TEST(next.stats().replayed == 5u);
  BOOST_TEST(segment_files(rig.spool()).empty());  // a fully replayed segment is deleted
}

BOOST_AUTO_TEST_CASE(the_spool_is_replayed_once_the_sink_recovers) {
  Rig rig;
  rig.sink->push_result(WriteResult::failure("maintenance"));  // first batch: spooled
  BatcherOptions o = rig.options();
  o.flush_at = 2;
  o.spool_dir = rig.spool();
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 2);
  BOOST_TEST(batcher.flush(1s).spooled == 2u);
  // A later successful write tells the replayer the sink is back.
  enqueue_range(batcher, 2, 4);
  BOOST_REQUIRE(rig.sink->wait_for_stored(4));
  BOOST_TEST(!batcher.close(1s).deadline_reached);
  BOOST_TEST(batcher.stats().replayed == 2u);
  BOOST_TEST(batcher.stats().spool_segments == 0u);
  BOOST_TEST(stored_seqs(*rig.sink) == range(0, 4));
}

// The circuit breaker: once a write fails, the failing batch keeps retrying (the probe) and
// every other batch goes straight to the spool — durable at once, not waiting in memory where a
// crash would lose it. The first batch spooled that way takes the older probe into the spool
// ahead of it, so replay keeps batch order, and the replayer probes from then on at the retry
// pace. Its first success closes the breaker and replays the rest.
BOOST_AUTO_TEST_CASE(while_the_sink_is_down_other_batches_go_straight_to_the_spool_behind_the_probe) {
  Rig rig;
  const BatcherOptions o = outage_options(rig, 2);
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 2);
  BOOST_REQUIRE(rig.sink->wait_for_finished(1));  // the probe failed and waits for its backoff
  BOOST_REQUIRE(stats_when(batcher, [](const BatcherStats& s) { return s.sink_down; }).sink_down);
  // Ten more batches while the manual clock holds the probe: none is written; the first takes
  // the probe into the spool ahead of itself.
  enqueue_range(batcher, 2, 22);
  BatcherStats stats = stats_when(batcher, [](const BatcherStats& s) { return s.spooled == 22u; });
  BOOST_TEST(stats.spooled == 22u);
  BOOST_TEST(stats.spooled_while_down == 20u);  // the probe was tried; the others were not
  BOOST_TEST(stats.sink_down);
  BOOST_TEST(stats.breaker_opened == 1u);
  BOOST_TEST(stats.queue_depth == 0u);  // nothing waits in memory
  BOOST_TEST(stats.dropped.total() == 0u);

  // The sink recovers; the replayer's next probe (at most a few retry waits away) succeeds.
  rig.sink->set_default(WriteResult::success());
  for (int i = 0; i < 2000 && rig.sink->stored_count() < 22; ++i) {
    rig.clock->advance(100ms);
    rig.sink->wait_for_stored(22, 2ms);
  }
  BOOST_REQUIRE_EQUAL(rig.sink->stored_count(), 22u);
  const std::vector<uint64_t> first = seqs(rig.sink->stored());
  BOOST_TEST((std::vector<uint64_t>(first.begin(), first.begin() + 2)) == range(0, 2),
             boost::test_tools::per_element());  // the probe's events replay first
  enqueue_range(batcher, 22, 24);
  BOOST_REQUIRE(rig.sink->wait_for_stored(24));  // live batches reach the sink again
  const BatcherReport report = batcher.close(1s);
  BOOST_TEST(!report.deadline_reached);
  stats = batcher.stats();
  BOOST_TEST(!stats.sink_down);
  BOOST_TEST(stats.replayed == 22u);
  BOOST_TEST(stats.delivered == 2u);
  BOOST_TEST(stats.spool_segments == 0u);
  BOOST_TEST(rig.sink->duplicates() == 0u);
  BOOST_TEST(stored_seqs(*rig.sink) == range(0, 24));
}

// Batches arrive one at a time, each spooled before the next is cut, so the spool's order is
// the batches' order: the probe, which would have exhausted its retries after newer batches
// were spooled (and so landed behind them), is replayed before them.
BOOST_AUTO_TEST_CASE(replay_keeps_batch_order_across_a_long_outage) {
  Rig rig;
  BatcherOptions o = outage_options(rig, 3);
  o.retry_max_attempts = 2;
  {
    Batcher batcher(rig.sink, o);
    enqueue_range(batcher, 0, 3);
    BOOST_REQUIRE(rig.sink->wait_for_finished(1));
    stats_when(batcher, [](const BatcherStats& s) { return s.sink_down; });
    for (uint64_t b = 1; b < 6; ++b) {  // one batch at a time, each spooled before the next
      enqueue_range(batcher, 3 * b, 3 * b + 3);
      stats_when(batcher, [b](const BatcherStats& s) { return s.spooled >= 3 * (b + 1); });
    }
    for (int i = 0; i < 200; ++i) rig.clock->advance(100ms);  // the replayer's probes all fail
    const BatcherReport report = batcher.close(1s);
    BOOST_TEST(report.spooled == 18u);
    BOOST_TEST(report.dropped.total() == 0u);
  }
  rig.sink->set_default(WriteResult::success());
  Batcher again(rig.sink, o);  // replays at start
  BOOST_REQUIRE(rig.sink->wait_for_stored(18));
  BOOST_TEST(seqs(rig.sink->stored()) == range(0, 18), boost::test_tools::per_element());
  BOOST_TEST(rig.sink->duplicates() == 0u);
}

// Without a spool there is nowhere safer than memory: batches retry as before, none is dropped
// for the breaker's sake.
BOOST_AUTO_TEST_CASE(without_a_spool_the_breaker_changes_nothing) {
  Rig rig;
  rig.sink->push_result(WriteResult::retry_later("blip"));
  BatcherOptions o = rig.options();
  o.flush_workers = 2;
  o.flush_at = 2;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 6);
  rig.clock->advance(1s);
  BOOST_REQUIRE(rig.sink->wait_for_stored(4));
  rig.clock->advance(1s);
  const BatcherReport report = batcher.close(kNever);
  BOOST_TEST(report.delivered == 6u);
  BOOST_TEST(report.spooled == 0u);
  BOOST_TEST(report.dropped.total() == 0u);
  BOOST_TEST(!batcher.stats().sink_down);
}

BOOST_AUTO_TEST_CASE(a_torn_or_corrupt_spool_is_counted_and_the_valid_batches_replayed) {
  Rig rig;
  std::vector<std::vector<Message>> written;
  {
    detail::Spool spool({rig.spool()});
    for (uint64_t b = 0; b < 3; ++b) {
      written.push_back({message(b * 2), message(b * 2 + 1)});
      BOOST_REQUIRE(spool.append(written.back()) == detail::SpoolAppend::ok);
    }
  }
  const fs::path file = segment_files(rig.spool()).at(0);
  std::string data;
  {
    std::ifstream in(file, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  namespace sf = detail::spool_format;
  const size_t first_len = sf::get_u32(data.data() + sf::kHeaderBytes);
  const size_t second = sf::kHeaderBytes + sf::kRecordHeaderBytes + first_len;
  data[second + 4] ^= 0x01;  // corrupt the second record's CRC
  data += std::string("\x40\x00\x00\x00\x12\x34", 6);  // and a torn record at the tail
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out << data;
  }
  Batcher batcher(rig.sink, [&] {
    BatcherOptions o = rig.options();
    o.spool_dir = rig.spool();
    return o;
  }());
  BOOST_REQUIRE(rig.sink->wait_for_stored(4));
  BOOST_TEST(!batcher.close(1s).deadline_reached);
  BOOST_TEST(seqs(rig.sink->stored()) == (std::vector<uint64_t>{0, 1, 4, 5}));
  const BatcherStats stats = batcher.stats();
  BOOST_TEST(stats.spool_corrupt_records == 2u);
  BOOST_TEST(stats.replayed == 4u);
  BOOST_TEST(segment_files(rig.spool()).empty());
}

BOOST_AUTO_TEST_CASE(debug_logs_each_flush) {
  Rig rig;
  test::LogLines logs;
  BatcherOptions o = rig.options();
  o.debug = true;
  o.flush_at = 2;
  Batcher batcher(rig.sink, o);
  enqueue_range(batcher, 0, 2);
  BOOST_TEST(batcher.flush(1s).delivered == 2u);
  BOOST_TEST(!logs.any_level("batcher: flushed 2 events to test").empty());
}

BOOST_AUTO_TEST_CASE(a_throwing_sink_is_retried_like_a_failure) {
  struct ThrowingSink : Sink {
    int calls = 0;
    WriteResult write(const std::vector<Message>&, std::chrono::milliseconds) override {
      if (++calls == 1) throw std::runtime_error("boom");
      return WriteResult::success();
    }
    std::string name() const override { return "throwing"; }
  };
  Rig rig;
  auto sink = std::make_shared<ThrowingSink>();
  BatcherOptions o = rig.options();
  o.retry_base_backoff = 0ms;  // no wait: the retry follows at once
  Batcher batcher(sink, o);
  BOOST_REQUIRE(batcher.enqueue(request(0)) == EnqueueStatus::ok);
  BOOST_TEST(batcher.flush(1s).delivered == 1u);
  BOOST_TEST(batcher.stats().failed_attempts == 1u);
  BOOST_TEST(sink->calls == 2);
}

BOOST_AUTO_TEST_CASE(bad_options_name_the_field) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.flush_at = 0;
  try {
    Batcher batcher(rig.sink, o);
    BOOST_FAIL("expected Error");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == ErrorCode::invalid_argument));
    BOOST_TEST(std::string(e.what()).find("flush_at") != std::string::npos);
  }
  BOOST_CHECK_THROW(Batcher(nullptr, rig.options()), Error);
  o = rig.options();
  o.coalesce_max_events = 100;
  o.coalesce_max_bytes = 1024;  // below max_batch_bytes: a batch could never be merged
  BOOST_CHECK_EXCEPTION(Batcher(rig.sink, o), Error, [](const Error& e) {
    return std::string(e.what()).find("coalesce_max_bytes") != std::string::npos;
  });
}

BOOST_AUTO_TEST_SUITE_END()

// The Batcher against the real SQLite store, with faults injected around it.
BOOST_AUTO_TEST_SUITE(batcher_store_faults)

// A segment the replayer cannot read (here: a directory where the file was — what a failing
// open() or read() looks like, also as root) is kept, counted and retried; once readable it is
// replayed. It used to read as empty and be deleted, uncounted.
BOOST_AUTO_TEST_CASE(an_unreadable_spool_segment_is_kept_and_replayed_once_readable) {
  Rig rig;
  test::LogLines logs;
  auto store = std::make_shared<FaultyStore>(rig.dir.sub("store.db"));
  store->set_down(true);
  Batcher batcher(store, store_fault_options(rig, 3));
  enqueue_range(batcher, 0, 3);
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).spooled, 3u);
  const std::vector<fs::path> files = segment_files(rig.spool());
  BOOST_REQUIRE_EQUAL(files.size(), 1u);
  const fs::path segment = files[0], aside = files[0].string() + ".aside";
  fs::rename(segment, aside);
  fs::create_directory(segment);
  store->set_down(false);

  // The replayer tries, fails to read the segment, and keeps it.
  const BatcherStats tried = stats_when(batcher, [&](const BatcherStats& s) {
    rig.clock->advance(100ms);
    return s.replay_failures > 0 || s.spool_segments == 0;
  });
  BOOST_TEST(tried.spool_segments == 1u);
  BOOST_TEST(tried.spool_corrupt_records == 0u);
  BOOST_TEST(!logs.any_level("cannot read spool segment").empty());

  // Readable again: replayed at the next replay_interval, every event stored once.
  fs::remove(segment);
  fs::rename(aside, segment);
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return stored_rows(rig.dir.sub("store.db")).rows >= 3; }));
  const BatcherStats stats = stats_when(batcher, [](const BatcherStats& s) { return s.spool_segments == 0; });
  BOOST_TEST(stats.replayed == 3u);
  BOOST_TEST(stats.spool_segments == 0u);
  BOOST_TEST(stored_rows(rig.dir.sub("store.db")).rows == 3u);
  BOOST_TEST(stored_rows(rig.dir.sub("store.db")).distinct == 3u);
  BOOST_TEST(segment_files(rig.spool()).empty());
}

// The real store, rejecting for good every batch that holds event 1 (as PostgreSQL rejects a NUL
// byte, an HTTP API a 413).
struct RejectingStore {
  Rig rig;
  test::LogLines logs;
  const std::string db = rig.dir.sub("store.db");
  std::shared_ptr<FaultyStore> store = [&] {
    auto s = std::make_shared<FaultyStore>(db);
    s->reject_if([](const Message& m) { return m.request.seq == 1; });
    return s;
  }();
};

// A batch the store always rejects used to stay at the head of the spool for good, holding back
// every batch behind it and the breaker open. Now it moves to the dead-letter file and replay
// goes on.
BOOST_FIXTURE_TEST_CASE(a_batch_the_store_always_rejects_is_dead_lettered_and_replay_goes_on, RejectingStore) {
  Batcher batcher(store, store_fault_options(rig, 2));
  enqueue_range(batcher, 0, 2);  // rejected: spooled
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).spooled, 2u);

  // An outage: the next batches go to the spool behind the rejected one.
  store->set_down(true);
  enqueue_range(batcher, 2, 6);
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).spooled, 4u);
  BOOST_REQUIRE(batcher.stats().sink_down);

  // The store is back (and still rejects that batch): everything behind it is replayed.
  store->set_down(false);
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return stored_rows(db).rows >= 4; }));
  BatcherStats stats = stats_when(batcher, [](const BatcherStats& s) { return s.spool_segments == 0 && !s.sink_down; });
  BOOST_TEST(!stats.sink_down);
  BOOST_TEST(stats.replayed == 4u);
  BOOST_TEST(!logs.any_level("rejected 2 spooled events permanently").empty());

  // The rejected batch is accounted for, in the dead-letter file where an operator finds it.
  BOOST_TEST(stats.dead_lettered == 2u);
  BOOST_TEST(stats.dropped.total() == 0u);
  std::string dead;
  {
    std::ifstream in(fs::path(rig.spool()) / "dead-letter.dlq", std::ios::binary);
    dead.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::vector<detail::spool_format::RecordSpan> records;
  BOOST_TEST(detail::spool_format::index_segment(dead, records) == 0u);
  BOOST_REQUIRE_EQUAL(records.size(), 1u);
  std::vector<Message> rejected;
  BOOST_REQUIRE(detail::spool_format::decode_record(dead, records[0], rejected));
  BOOST_TEST(seqs(rejected) == range(0, 2));

  // Live batches reach the store again instead of the spool.
  enqueue_range(batcher, 6, 8);
  const BatcherReport report = batcher.flush(1s);
  BOOST_TEST(report.delivered == 2u);
  BOOST_TEST(report.spooled == 0u);
  BOOST_TEST(stored_rows(db).rows == 6u);
  BOOST_TEST(stored_rows(db).distinct == 6u);
  stats = batcher.stats();
  BOOST_TEST(stats.enqueued == stats.delivered + stats.replayed + stats.dead_lettered + stats.dropped.total());
}

// When even the dead-letter file refuses the rejected batch (here a directory in its place), the
// batch is dropped, logged and counted under its own reason, and replay still goes on.
BOOST_FIXTURE_TEST_CASE(a_rejected_batch_the_dead_letter_file_refuses_is_counted_as_its_own_drop, RejectingStore) {
  Batcher batcher(store, store_fault_options(rig, 2));
  fs::create_directories(fs::path(rig.spool()) / "dead-letter.dlq");
  enqueue_range(batcher, 0, 2);  // rejected: spooled
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).spooled, 2u);
  enqueue_range(batcher, 2, 4);  // stored live
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).delivered, 2u);

  const BatcherStats stats = stats_when(batcher, [&](const BatcherStats& s) {
    rig.clock->advance(100ms);
    return s.spool_segments == 0;
  });
  BOOST_TEST(stats.dropped.dead_letter_error == 2u);
  BOOST_TEST(stats.dropped.permanent == 0u);  // that one means: no spool at all
  BOOST_TEST(stats.dead_lettered == 0u);
  BOOST_TEST(!logs.any_level("DROPPED").empty());
  BOOST_TEST(!logs.any_level("the dead-letter file refused them").empty());
  BOOST_TEST(stored_rows(db).rows == 2u);
  BOOST_TEST(stats.enqueued == stats.delivered + stats.replayed + stats.dead_lettered + stats.dropped.total());
}

// drain() takes the waiting batches while close() runs out of time: close() spools every one of
// them. drain() used to hold them where close() could not see them: unwritten, unspooled, uncounted.
BOOST_AUTO_TEST_CASE(close_at_its_deadline_spools_the_batches_a_concurrent_drain_holds) {
  Rig rig;
  auto store = std::make_shared<FaultyStore>(rig.dir.sub("store.db"));
  store->close_gate();
  BatcherOptions o = rig.options();
  o.flush_at = 2;
  o.spool_dir = rig.spool();
  Batcher batcher(store, o);
  enqueue_range(batcher, 0, 2);
  BOOST_REQUIRE(store->wait_for_writes(1));  // the worker holds batch 0-1 in the store
  enqueue_range(batcher, 2, 6);              // two batches wait for the worker
  auto draining = std::async(std::launch::async, [&] { return batcher.drain(); });
  BOOST_REQUIRE(store->wait_for_writes(2));  // drain took both, and holds 2-3 in the store
  auto closing = std::async(std::launch::async, [&] { return batcher.close(1000ms); });
  stats_when(batcher, [&](const BatcherStats& s) {
    rig.clock->advance(50ms);  // close() reaches its deadline and spools what is unresolved
    return s.spooled >= 4u;
  });
  store->open_gate();  // close() joins the worker once its write returns
  const BatcherReport report = closing.get();
  BOOST_TEST(draining.get().size() == 4u);
  BOOST_TEST(report.deadline_reached);
  BOOST_TEST(report.spooled == 6u);
  BOOST_TEST(report.delivered + report.spooled + report.dropped.total() == 6u);
  BOOST_TEST(batcher.stats().queue_depth == 0u);
}

// Batch B's first write is still running when close() reaches its deadline and spools it
// (counted); batch P, the probe, is mid-retry. B's write then fails, and since P is the probe, B
// goes to spool_while_down() — which used to append B a second time (uncounted), so replay
// stored it twice: `replayed` 2n against `spooled` n, and twice the spool bytes.
BOOST_AUTO_TEST_CASE(a_batch_close_spooled_at_its_deadline_is_not_spooled_again_when_its_write_fails) {
  Rig rig;
  test::LogLines logs;
  auto sink = std::make_shared<HeldDownSink>();
  sink->hold(0, 1);  // B = events 0-1: its first write waits
  sink->hold(2, 2);  // P = events 2-3: its first write fails, its retry waits
  BatcherOptions o = rig.options();
  o.flush_workers = 2;
  o.flush_at = 2;
  o.retry_max_attempts = 100;
  o.retry_base_backoff = 100ms;
  o.spool_dir = rig.spool();
  o.debug = true;
  Batcher batcher(sink, o);
  enqueue_range(batcher, 0, 2);
  BOOST_REQUIRE(sink->wait_until_held(0));  // B is in the store before the breaker opens
  enqueue_range(batcher, 2, 4);
  BOOST_REQUIRE(stats_when(batcher, [](const BatcherStats& s) { return s.sink_down; }).sink_down);
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return sink->wait_until_held(2, 0ms); }));  // P retries

  auto closing = std::async(std::launch::async, [&] { return batcher.close(1000ms); });
  const BatcherStats at_deadline = stats_when(batcher, [&](const BatcherStats& s) {
    rig.clock->advance(50ms);
    return s.spooled == 4u;  // close() spooled B and P, oldest first
  });
  BOOST_REQUIRE_EQUAL(at_deadline.spooled, 4u);
  sink->release(0);  // B's write fails while P is still the probe
  // Until B's worker has handled the failure: spooled B again (the bug), or said it need not.
  stats_when(batcher, [&](const BatcherStats& s) {
    return s.spool_bytes > at_deadline.spool_bytes || !logs.any_level("after close() had spooled them").empty();
  });
  sink->release(2);
  const BatcherReport report = closing.get();
  BOOST_TEST(report.deadline_reached);
  BOOST_TEST(report.spooled == 4u);

  // The spool holds each batch once: B then P.
  std::vector<std::vector<uint64_t>> spooled;
  for (const fs::path& file : segment_files(rig.spool())) {
    std::ifstream in(file, std::ios::binary);
    const std::string data{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    std::vector<detail::spool_format::RecordSpan> records;
    BOOST_TEST(detail::spool_format::index_segment(data, records) == 0u);
    for (const auto& span : records) {
      std::vector<Message> batch;
      BOOST_REQUIRE(detail::spool_format::decode_record(data, span, batch));
      spooled.push_back(seqs(batch));
    }
  }
  BOOST_REQUIRE_EQUAL(spooled.size(), 2u);
  BOOST_TEST(spooled[0] == range(0, 2));
  BOOST_TEST(spooled[1] == range(2, 4));
  BOOST_TEST(batcher.stats().spool_bytes == at_deadline.spool_bytes);
}

// close() gives up at its deadline on a write still running (spooling it, or without a spool
// dropping it as close_deadline); then the write succeeds. The events were stored, yet close()'s
// report said spooled or dropped and nothing counted the success: it now shows in
// delivered_after_deadline.
BOOST_AUTO_TEST_CASE(a_write_that_succeeds_after_close_gave_up_on_it_is_counted) {
  for (const bool with_spool : {false, true}) {
    BOOST_TEST_CONTEXT((with_spool ? "spooled at the deadline" : "dropped at the deadline")) {
      Rig rig;
      BatcherOptions o = rig.options();
      o.flush_at = 2;
      if (with_spool) o.spool_dir = rig.spool();
      Batcher batcher(rig.sink, o);
      rig.sink->close_gate();
      enqueue_range(batcher, 0, 2);
      BOOST_REQUIRE(rig.sink->wait_for_calls(1));  // the write hangs
      auto closing = std::async(std::launch::async, [&] { return batcher.close(1000ms); });
      stats_when(batcher, [&](const BatcherStats& s) {
        rig.clock->advance(50ms);
        return s.spooled + s.dropped.close_deadline >= 2u;
      });
      rig.sink->open_gate();  // ... and then succeeds; close() joins its worker
      const BatcherReport report = closing.get();
      BOOST_TEST(report.deadline_reached);
      BOOST_TEST(report.spooled == (with_spool ? 2u : 0u));
      BOOST_TEST(report.dropped.close_deadline == (with_spool ? 0u : 2u));
      BOOST_TEST(rig.sink->stored_count() == 2u);
      BOOST_TEST(report.delivered == 0u);  // counted once: as what close() did at its deadline
      BOOST_TEST(report.delivered_after_deadline == 2u);
      BOOST_TEST(batcher.stats().delivered_after_deadline == 2u);
    }
  }
}

// The Batcher does not validate what it is given; an event the store accepts (status 0, no
// method) must survive the spool too, not make its whole batch a "corrupt" record at replay.
BOOST_AUTO_TEST_CASE(an_event_the_batcher_accepted_without_validation_is_replayed_from_the_spool) {
  Rig rig;
  const std::string db = rig.dir.sub("store.db");
  auto store = std::make_shared<FaultyStore>(db);
  store->set_down(true);
  Batcher batcher(store, store_fault_options(rig, 2));
  RequestLog odd = request(0);
  odd.status_code = 0;
  odd.method.clear();
  BOOST_REQUIRE(batcher.enqueue(odd) == EnqueueStatus::ok);
  BOOST_REQUIRE(batcher.enqueue(request(1)) == EnqueueStatus::ok);
  BOOST_REQUIRE_EQUAL(batcher.flush(1s).spooled, 2u);
  store->set_down(false);
  BOOST_REQUIRE(advance_until(*rig.clock, [&] { return stored_rows(db).rows >= 2; }));
  const BatcherStats stats = stats_when(batcher, [](const BatcherStats& s) { return s.spool_segments == 0; });
  BOOST_TEST(stats.spool_corrupt_records == 0u);
  BOOST_TEST(stats.replayed == 2u);
  BOOST_TEST(stored_rows(db).rows == 2u);
  BOOST_TEST(stored_rows(db).distinct == 2u);
}

// A segment written by a newer reqbus (an unknown header version) is kept for it, after a
// rollback: logged, skipped, never deleted; the segments after it are replayed.
BOOST_AUTO_TEST_CASE(a_segment_from_a_newer_version_is_kept_and_skipped) {
  Rig rig;
  test::LogLines logs;
  const std::string db = rig.dir.sub("store.db");
  namespace sf = detail::spool_format;
  fs::create_directories(rig.spool());
  std::string newer(sf::kMagic, sizeof sf::kMagic);
  sf::put_u32(newer, sf::kVersion + 1);
  newer += "records in a layout this version cannot read";
  const fs::path newer_file = fs::path(rig.spool()) / "00000000000000000001.seg";
  {
    std::ofstream out(newer_file, std::ios::binary);
    out << newer;
  }
  {
    detail::Spool spool({rig.spool()});
    BOOST_REQUIRE(spool.append({message(0), message(1)}) == detail::SpoolAppend::ok);  // segment 2
  }
  BatcherOptions o = rig.options();
  o.spool_dir = rig.spool();
  Batcher batcher(std::make_shared<FaultyStore>(db), o);  // replays at start
  const BatcherStats stats = stats_when(batcher, [](const BatcherStats& s) { return s.replayed == 2; });
  BOOST_TEST(stats.replayed == 2u);
  BOOST_TEST(stats.spool_corrupt_records == 0u);
  BOOST_TEST(stored_rows(db).rows == 2u);
  BOOST_TEST(fs::exists(newer_file));
  BOOST_TEST(fs::file_size(newer_file) == newer.size());
  BOOST_TEST(!logs.any_level("newer").empty());
  BOOST_TEST(!batcher.close(1s).deadline_reached);
  BOOST_TEST(fs::exists(newer_file));
}

// Two flush() calls at once: each reports what happened since the previous one, never a
// wrapped-around count (each used to subtract a base the other had already moved past).
BOOST_AUTO_TEST_CASE(concurrent_flushes_never_report_more_than_was_enqueued) {
  Rig rig;
  BatcherOptions o = rig.options();
  o.flush_at = 1;
  o.flush_workers = 2;
  o.clock = system_clock();
  // The NDJSON file store: real, and fast enough that the counts move between two snapshots.
  NdjsonSinkOptions no;
  no.path = rig.dir.sub("store.ndjson");
  no.fsync_each_batch = false;
  Batcher batcher(std::make_shared<NdjsonSink>(no), o);
  constexpr uint64_t kEvents = 20000;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reported{0}, worst{0};
  auto flusher = [&] {
    while (!done.load()) {
      const BatcherReport r = batcher.flush(0ms);  // no wait: as many reports as possible
      reported += r.delivered;
      uint64_t w = worst.load();
      while (r.delivered > w && !worst.compare_exchange_weak(w, r.delivered)) {
      }
    }
  };
  // More flushers than cores: they queue for report_mu_, so one that took its snapshot first
  // often gets the lock after one that took it later — the race, if the snapshot is outside.
  std::vector<std::thread> flushers;
  for (int i = 0; i < 8; ++i) flushers.emplace_back(flusher);
  enqueue_range(batcher, 0, kEvents);
  BOOST_REQUIRE(stats_when(batcher, [&](const BatcherStats& s) { return s.delivered == kEvents; }).delivered == kEvents);
  done = true;
  for (std::thread& t : flushers) t.join();
  const BatcherReport last = batcher.flush(10s);
  BOOST_TEST(worst.load() <= kEvents);
  BOOST_TEST(reported.load() + last.delivered == kEvents);
}

BOOST_AUTO_TEST_SUITE_END()
