// bus_bench's reqbus cases: Bus::broadcast -> handler subscription, inproc and tcp (receiver Bus
// in a child process), and the caller-side cost of broadcast().
#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "bench/bus_bench_cases.hpp"
#include "reqbus/bus.hpp"

namespace reqbus::bench {
namespace {

// Counts delivered request_sent events on the subscription's thread; probes are not counted.
// The target can be lowered after publishing (to what broadcast() accepted).
struct Counter {
  explicit Counter(uint64_t target) : target(target) {}
  void operator()(const Message& m) {
    if (m.kind != MessageKind::request_sent) return;
    if (m.request.path == kProbePath) {
      probes.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const uint64_t n = count.fetch_add(1, std::memory_order_relaxed) + 1;
    if ((n & 1023) == 0 || n == target.load(std::memory_order_relaxed))
      last_ns.store(now_ns(), std::memory_order_relaxed);  // rate even if some never arrive
  }
  std::atomic<uint64_t> target;
  std::atomic<uint64_t> count{0}, probes{0}, last_ns{0};
};

// Waits until the counter reaches its target or stops moving for kIdleTimeoutMs.
void await_counter(Counter& counter) {
  uint64_t last_seen = UINT64_MAX, last_change = now_ns();
  while (counter.count.load() < counter.target.load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // polling a benchmark counter
    const uint64_t seen = counter.count.load() + counter.probes.load();
    if (seen != last_seen) {
      last_seen = seen;
      last_change = now_ns();
    } else if (now_ns() - last_change > uint64_t(kIdleTimeoutMs) * 1000000u) {
      return;
    }
  }
}

// The throughput cases measure lossless delivery, like raw ZeroMQ with XPUB_NODROP (which
// waits forever): broadcast() may wait up to 10 s for room instead of the default 100 ms, so
// a subscriber descheduled for a while on a loaded machine does not turn into timed-out drops.
constexpr std::chrono::milliseconds kThroughputBlockTimeout{10000};

uint64_t total_gaps(const BusStats& s) {
  uint64_t gaps = s.remote_gaps;
  for (const auto& sub : s.subscriptions) gaps += sub.gaps;
  return gaps;
}

}  // namespace

Throughput run_bus_inproc(const std::vector<RequestLog>& logs, uint64_t events) {
  BusOptions options;
  options.name = "bench-inproc";
  options.block_timeout = kThroughputBlockTimeout;
  Bus bus(options);
  Counter counter(events);
  Subscription sub = bus.subscribe(SubscribeOptions{}, [&](const Message& m) { counter(m); });
  Throughput t;
  t.sent = events;
  const uint64_t cpu0 = cpu_now_ns();
  const uint64_t start = now_ns();
  for (uint64_t i = 0; i < events; ++i)
    if (bus.broadcast(logs[i % logs.size()]) != PublishStatus::ok) ++t.not_ok;
  counter.target = events - t.not_ok;  // refused calls are counted drops, not awaited
  await_counter(counter);
  t.cpu_ns = double(cpu_now_ns() - cpu0);
  (void)bus.close();
  t.received = counter.count.load();
  t.gaps = total_gaps(bus.stats());
  const uint64_t last = counter.last_ns.load();
  t.events_per_s = last > start ? double(t.received) * 1e9 / double(last - start) : 0;
  return t;
}

Throughput run_bus_tcp(const std::vector<RequestLog>& logs, uint64_t events) {
  BusOptions options;
  options.name = "bench-pub";
  options.bind = "tcp://127.0.0.1:*";
  options.insecure_plaintext = true;  // loopback benchmark; CURVE is cluster_bench's subject
  options.block_timeout = kThroughputBlockTimeout;
  Bus bus(options);
  Child child({"--child", "bus", bus.bound_endpoint(), std::to_string(events)});
  RequestLog probe = logs.front();
  probe.path = kProbePath;
  await_child_ready(child, [&] { (void)bus.broadcast(probe); });
  uint64_t not_ok = 0;
  const uint64_t cpu0 = cpu_now_ns();
  const uint64_t start = now_ns();
  for (uint64_t i = 0; i < events; ++i)
    if (bus.broadcast(logs[i % logs.size()]) != PublishStatus::ok) ++not_ok;
  Throughput t = read_child_result(child, start, cpu0, events);
  t.not_ok = not_ok;
  (void)bus.close();
  return t;
}

int bus_child(const std::string& endpoint, uint64_t events) {
  BusOptions options;
  options.name = "bench-sub";
  options.peers = {endpoint};
  options.insecure_plaintext = true;
  Bus bus(options);
  Counter counter(events);
  std::atomic<bool> ready{false};
  Subscription sub = bus.subscribe(SubscribeOptions{}, [&](const Message& m) {
    if (!ready.load(std::memory_order_relaxed) && m.request.path == kProbePath) {
      ready = true;
      write_line("ready");
    }
    counter(m);
  });
  // Until the first probe arrives the parent is still starting: allow it kStartTimeoutMs.
  const uint64_t start_deadline = now_ns() + uint64_t(kStartTimeoutMs) * 1000000u;
  while (!ready.load() && now_ns() < start_deadline) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  await_counter(counter);
  (void)bus.close();
  write_line("done " + std::to_string(counter.count.load()) + " " + std::to_string(total_gaps(bus.stats())) +
             " 0 " + std::to_string(counter.last_ns.load()) + " " + std::to_string(cpu_now_ns()));
  return 0;
}

// Times every broadcast() call while a subscriber drains the bus. pace_ns = 0: back to back.
// The first queue_max_events calls are timed apart ("cold"): each lands in a publish-queue slot
// never used before, whose string has no capacity yet, so it allocates and the heap grows
// (page faults). After one lap of the ring the slots' buffers are recycled: the steady state a
// long-running server sees, reported as the case's value.
CallCost run_broadcast_cost(const std::vector<RequestLog>& logs, uint64_t calls, uint64_t pace_ns) {
  BusOptions options;
  options.name = "bench-cost";
  Bus bus(options);
  const uint64_t cold_calls = options.queue_max_events;
  Counter counter(cold_calls + calls);
  Subscription sub = bus.subscribe(SubscribeOptions{}, [&](const Message& m) { counter(m); });
  CallCost c;
  std::vector<uint32_t> cold(cold_calls), ns(calls);
  uint64_t next = now_ns();
  for (uint64_t i = 0; i < cold_calls + calls; ++i) {
    if (pace_ns) {
      next += pace_ns;
      while (now_ns() < next) {
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    const PublishStatus st = bus.broadcast(logs[i % logs.size()]);
    const auto t1 = std::chrono::steady_clock::now();
    const auto d = uint32_t(std::min<int64_t>((t1 - t0).count(), UINT32_MAX));
    if (i < cold_calls)
      cold[i] = d;
    else
      ns[i - cold_calls] = d;
    if (st != PublishStatus::ok) ++c.not_ok;
  }
  await_counter(counter);
  (void)bus.close();
  auto over_2us = [](const std::vector<uint32_t>& v) {
    return 100.0 * double(std::count_if(v.begin(), v.end(), [](uint32_t x) { return x > 2000; })) / double(v.size());
  };
  c.p50 = percentile(ns, 50);
  c.p90 = percentile(ns, 90);
  c.p99 = percentile(ns, 99);
  c.p999 = percentile(ns, 99.9);
  c.max = percentile(ns, 100);
  c.over_2us_pct = over_2us(ns);
  c.cold_p50 = percentile(cold, 50);
  c.cold_p99 = percentile(cold, 99);
  c.cold_over_2us_pct = over_2us(cold);
  return c;
}

// Median cost of the timer itself (two back-to-back steady_clock::now()).
double timer_overhead_ns() {
  std::vector<int64_t> d(100000);
  for (auto& v : d) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto t1 = std::chrono::steady_clock::now();
    v = (t1 - t0).count();
  }
  return median(d);
}

}  // namespace reqbus::bench
