// Overload: a publisher about 10x faster than the sink, for each overflow policy, through the
// node's persistence path (Bus -> local_only subscription -> Batcher -> a slow Sink).
// Checks: RSS stays under a budget while the queues are full, and every event the bus accepted
// is accounted for EXACTLY: published == persisted + every counted drop (bus, subscription,
// Batcher), with nothing persisted twice.
//
// Duration: 6 s per policy x REQBUS_RELIABILITY_SCALE (default 1; 10 = the 60 s run recorded in
// docs/RELIABILITY.md). RSS budget: REQBUS_RSS_BUDGET_MB of growth over the starting RSS
// (default 96 MiB; 512 MiB under ASan's quarantine or TSan's shadow memory).
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "reqbus/batcher.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/log.hpp"
#include "tests/support/bus_fixtures.hpp"

using namespace reqbus;
using namespace reqbus::test;
using namespace std::chrono_literals;

namespace {

double reliability_scale() {
  const char* s = std::getenv("REQBUS_RELIABILITY_SCALE");
  const double v = (s && *s) ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr size_t kDefaultBudgetMb = 512;  // ASan's quarantine, TSan's shadow memory
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr size_t kDefaultBudgetMb = 512;
#else
constexpr size_t kDefaultBudgetMb = 96;
#endif
#else
constexpr size_t kDefaultBudgetMb = 96;
#endif

size_t rss_budget_bytes() {
  const char* s = std::getenv("REQBUS_RSS_BUDGET_MB");
  const size_t mb = (s && *s) ? size_t(std::atoll(s)) : kDefaultBudgetMb;
  return mb << 20;
}

size_t rss_bytes() {
  std::ifstream in("/proc/self/statm");
  size_t size = 0, resident = 0;
  in >> size >> resident;
  return resident * size_t(::sysconf(_SC_PAGESIZE));
}

// Samples this process's RSS every 50 ms on its own thread and keeps the maximum.
class RssSampler {
 public:
  RssSampler() : start_(rss_bytes()), peak_(start_), thread_([this] { run(); }) {}
  ~RssSampler() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  size_t start() const { return start_; }
  size_t peak() const { return peak_.load(); }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, 50ms, [&] { return stop_; })) {
      const size_t now = rss_bytes();
      if (now > peak_.load()) peak_ = now;
    }
  }
  const size_t start_;
  std::atomic<size_t> peak_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// A sink that takes `delay` per batch (a slow database) and remembers, by the bus's per-node
// sequence number, which events it stored — a bitmap, so that its own memory does not hide the
// pipeline's in the RSS budget.
class SlowSink final : public Sink {
 public:
  explicit SlowSink(std::chrono::microseconds delay) : delay_(delay) {}
  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds) override {
    std::this_thread::sleep_for(delay_);  // the simulated I/O time, not synchronisation
    std::lock_guard lock(mu_);
    for (const Message& m : batch) {
      const uint64_t seq = m.request.seq;
      if (seq >= seen_.size()) seen_.resize(std::max<size_t>(seq + 1, seen_.size() * 2), false);
      if (seen_[seq]) {
        ++duplicates_;
      } else {
        seen_[seq] = true;
        ++stored_;
      }
    }
    ++batches_;
    return WriteResult::success();
  }
  std::string name() const override { return "slow"; }
  uint64_t stored() const {
    std::lock_guard lock(mu_);
    return stored_;
  }
  uint64_t duplicates() const {
    std::lock_guard lock(mu_);
    return duplicates_;
  }
  uint64_t batches() const {
    std::lock_guard lock(mu_);
    return batches_;
  }

 private:
  const std::chrono::microseconds delay_;
  mutable std::mutex mu_;
  std::vector<bool> seen_;
  uint64_t stored_ = 0, duplicates_ = 0, batches_ = 0;
};

struct OverloadResult {
  uint64_t offered = 0;  // what the paced publisher would have sent unhindered: 100/ms
  uint64_t attempted = 0, published = 0, refused_by_bus = 0, persisted = 0, duplicates = 0;
  uint64_t bus_drops = 0, subscription_drops = 0, batcher_drops = 0;
  double seconds = 0, close_seconds = 0, publish_rate = 0, persist_rate = 0;
  size_t rss_start = 0, rss_peak = 0;
};

OverloadResult run_overload(Overflow policy, std::chrono::milliseconds duration) {
  // The sink: 50-event batches at 20 ms each on 2 workers, i.e. at most ~5 000 events/s, so even
  // a sanitizer-slowed publisher outruns it and overflows the (small) queues.
  auto sink = std::make_shared<SlowSink>(20ms);
  RssSampler rss;

  BusOptions bo;
  bo.name = std::string("overload-") + to_string(policy);
  bo.node_id = "overload";
  bo.queue_max_events = 5000;
  bo.overflow = policy;
  bo.block_timeout = 20ms;
  Bus bus(bo);

  BatcherOptions bat;
  bat.pool_size = 2;
  bat.flush_at = 50;
  bat.flush_interval = 50ms;
  bat.flush_jitter = 10ms;
  bat.flush_workers = 2;
  bat.max_queued_events = 5000;
  bat.overflow = policy;
  bat.block_timeout = 20ms;
  bat.seed = 42;
  Batcher batcher(sink, bat);

  SubscribeOptions so;
  so.scope = Scope::local_only;
  so.name = "persist";
  so.max_pending = 5000;
  so.overflow = policy;
  std::atomic<uint64_t> refused_by_batcher{0};
  Subscription sub = bus.subscribe(so, [&](const Message& m) {
    if (batcher.enqueue(m) != EnqueueStatus::ok) refused_by_batcher.fetch_add(1, std::memory_order_relaxed);
  });

  // The publisher: paced at 100 000 events/s (10x the sink) in bursts of 100 per millisecond.
  OverloadResult r;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + duration;
  RequestLog log = sample_log("/overload");
  uint64_t tick = 0;
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 100; ++i) {
      ++r.attempted;
      if (bus.broadcast(log) == PublishStatus::ok) ++r.published;
      else ++r.refused_by_bus;
    }
    ++tick;
    const auto next = start + std::chrono::milliseconds(tick);
    if (next > std::chrono::steady_clock::now()) std::this_thread::sleep_until(next);  // pacing
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.offered = uint64_t(r.seconds * 100000);
  const auto close_start = std::chrono::steady_clock::now();

  // Everything accepted is delivered or counted: close the bus (drains into the subscription),
  // then the subscription, then the Batcher.
  const CloseReport bus_report = bus.close(60s);
  sub.close();
  const BatcherReport batcher_report = batcher.close(60s);
  rss.stop();
  r.close_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - close_start).count();
  BOOST_TEST(!bus_report.deadline_reached);
  BOOST_TEST(!batcher_report.deadline_reached);

  const BusStats bs = bus.stats();
  const BatcherStats st = batcher.stats();
  BOOST_REQUIRE_EQUAL(bs.subscriptions.size(), 1u);
  const SubscriptionStats& ss = bs.subscriptions[0];
  r.bus_drops = bs.dropped_oldest + bs.dropped_close_deadline;  // accepted, then lost
  r.subscription_drops = ss.dropped_newest + ss.dropped_oldest + ss.dropped_close;
  r.batcher_drops = st.dropped.total();
  r.persisted = sink->stored();
  r.duplicates = sink->duplicates();
  r.publish_rate = double(r.published) / r.seconds;
  r.persist_rate = double(r.persisted) / (r.seconds + r.close_seconds);
  r.rss_start = rss.start();
  r.rss_peak = rss.peak();

  BOOST_TEST_MESSAGE("overload " << to_string(policy) << ": " << r.seconds << " s (+ " << r.close_seconds
                                 << " s to close), offered " << r.offered << ", attempted " << r.attempted
                                 << ", published " << r.published << " (" << uint64_t(r.publish_rate)
                                 << "/s), refused at broadcast " << r.refused_by_bus << " (timeout "
                                 << bs.dropped_timeout << ", newest " << bs.dropped_newest << "), persisted "
                                 << r.persisted << " (" << uint64_t(r.persist_rate) << "/s), drops: bus "
                                 << r.bus_drops << ", subscription " << r.subscription_drops << ", batcher "
                                 << r.batcher_drops << " (newest " << st.dropped.newest << ", oldest "
                                 << st.dropped.oldest << ", timeout " << st.dropped.timeout << "), duplicates "
                                 << r.duplicates << ", RSS start " << (r.rss_start >> 20) << " MiB, peak "
                                 << (r.rss_peak >> 20) << " MiB");

  BOOST_TEST(bs.published == r.published);
  BOOST_TEST(r.refused_by_bus == bs.dropped_timeout + bs.dropped_newest);
  BOOST_TEST(ss.gaps == 0u);
  BOOST_TEST(ss.handler_errors == 0u);
  BOOST_TEST(refused_by_batcher.load() == st.dropped.newest + st.dropped.timeout + st.dropped.closed);
  // The exact ledger.
  BOOST_TEST(r.published == r.persisted + r.bus_drops + r.subscription_drops + r.batcher_drops);
  BOOST_TEST(r.duplicates == 0u);
  BOOST_TEST(st.spooled == 0u);  // no spool here: the sink never fails, it is only slow
  // It really was overloaded, and it really persisted.
  BOOST_TEST(r.persisted > 0u);
  BOOST_TEST(r.offered > 3 * r.persisted, "the offered load must outrun the sink (offered "
                                              << r.offered << ", persisted " << r.persisted << ")");
  BOOST_TEST(r.rss_peak - r.rss_start < rss_budget_bytes(),
             "RSS grew " << ((r.rss_peak - r.rss_start) >> 20) << " MiB, budget " << (rss_budget_bytes() >> 20));
  return r;
}

std::chrono::milliseconds overload_duration() {
  return std::chrono::milliseconds(int64_t(6000 * reliability_scale()));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(Overload)

BOOST_AUTO_TEST_CASE(block_policy_sheds_at_the_publisher_and_accounts_for_everything) {
  const OverloadResult r = run_overload(Overflow::block, overload_duration());
  // block: back-pressure reaches the publisher, which is held to about the sink's pace; what
  // waits longer than a block_timeout is refused (bus) or dropped as a timeout (Batcher), counted.
  BOOST_TEST(r.attempted < r.offered / 2, "the publisher was not held back: attempted " << r.attempted
                                                                                      << " of " << r.offered);
}

BOOST_AUTO_TEST_CASE(drop_newest_policy_accounts_for_everything) {
  const OverloadResult r = run_overload(Overflow::drop_newest, overload_duration());
  BOOST_TEST(r.refused_by_bus + r.subscription_drops + r.batcher_drops > 0u);
  BOOST_TEST(r.bus_drops == 0u);  // nothing accepted is evicted under drop_newest
}

BOOST_AUTO_TEST_CASE(drop_oldest_policy_accounts_for_everything) {
  const OverloadResult r = run_overload(Overflow::drop_oldest, overload_duration());
  BOOST_TEST(r.bus_drops + r.subscription_drops + r.batcher_drops > 0u);
}

BOOST_AUTO_TEST_SUITE_END()
