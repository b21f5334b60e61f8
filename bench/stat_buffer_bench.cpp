// StatBuffer increments/s on 1 and 2 threads, by key (increment("key")) and through
// pre-resolved Counter handles, against the naive baseline in the same run: a
// std::unordered_map<std::string, int64_t> under one std::mutex. Every case checks that the
// flushed total equals what was incremented. Results are medians over --runs.
//
//   stat_buffer_bench [--events N] [--runs N] [--json] [--quick]   (N = increments per thread)
#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "bench/bench_util.hpp"
#include "reqbus/stat_buffer.hpp"

namespace {

using reqbus::bench::Result;

constexpr size_t kKeys = 64;  // distinct keys cycled through (a realistic route set)

std::vector<std::string> make_keys() {
  std::vector<std::string> keys;
  for (size_t i = 0; i < kKeys; ++i) keys.push_back("GET /api/v1/items/" + std::to_string(i));
  return keys;
}

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Runs body(thread_index) on `threads` threads released together; returns wall seconds.
double timed(int threads, const std::function<void(int)>& body) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> pool;
  uint64_t start = 0;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load()) std::this_thread::yield();
      body(t);
    });
  }
  while (ready.load() != threads) std::this_thread::yield();
  start = reqbus::bench::now_ns();
  go.store(true);
  for (auto& th : pool) th.join();
  return double(reqbus::bench::now_ns() - start) / 1e9;
}

// The naive baseline: one global lock around a hash map.
double naive_run(int threads, uint64_t per_thread, const std::vector<std::string>& keys, bool& exact) {
  std::mutex mu;
  std::unordered_map<std::string, int64_t, SvHash, std::equal_to<>> map;
  const double secs = timed(threads, [&](int t) {
    for (uint64_t i = 0; i < per_thread; ++i) {
      const std::string_view key = keys[(i + uint64_t(t) * 17) % kKeys];
      std::lock_guard lock(mu);
      auto it = map.find(key);
      if (it == map.end()) it = map.emplace(std::string(key), 0).first;
      ++it->second;
    }
  });
  int64_t sum = 0;
  for (auto& [k, v] : map) sum += v;
  exact = exact && sum == int64_t(per_thread) * threads;
  return double(per_thread) * threads / secs;
}

// StatBuffer with a real clock and default interval; the callback only sums.
double stat_buffer_run(int threads, uint64_t per_thread, const std::vector<std::string>& keys,
                       bool handles, bool& exact) {
  std::atomic<int64_t> flushed{0};
  reqbus::StatBuffer buf(
      [&flushed](const std::string&, int64_t n) {
        flushed.fetch_add(n);
        return true;
      },
      reqbus::StatBufferOptions{});
  std::atomic<int64_t> refused{0};
  const double secs = timed(threads, [&](int t) {
    if (handles) {
      std::vector<reqbus::StatBuffer::Counter> counters;
      for (auto& k : keys) counters.push_back(buf.counter(k));
      for (uint64_t i = 0; i < per_thread; ++i) {
        if (counters[(i + uint64_t(t) * 17) % kKeys].increment() != reqbus::IncrementResult::ok)
          refused.fetch_add(1);
      }
    } else {
      for (uint64_t i = 0; i < per_thread; ++i) {
        if (buf.increment(keys[(i + uint64_t(t) * 17) % kKeys]) != reqbus::IncrementResult::ok)
          refused.fetch_add(1);
      }
    }
  });
  const auto report = buf.close(reqbus::system_clock()->now() + std::chrono::seconds(10));
  exact = exact && refused.load() == 0 && report.failed == 0 &&
          flushed.load() == int64_t(per_thread) * threads;
  return double(per_thread) * threads / secs;
}

}  // namespace

int main(int argc, char** argv) {
  reqbus::bench::CommonFlags flags;
  try {
    flags = reqbus::bench::parse_common_flags(argc, argv, 200000);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stat_buffer_bench: %s\n", e.what());
    return 2;
  }
  if (!flags.rest.empty()) {
    std::fprintf(stderr, "stat_buffer_bench: unknown argument %s\n", flags.rest.front().c_str());
    return 2;
  }
  const auto keys = make_keys();
  const uint64_t n = flags.events;

  struct Case {
    std::string name, baseline;
    int threads;
    std::function<double(bool&)> run;
    std::vector<double> rates;
    bool exact = true;
  };
  std::vector<Case> cases;
  for (int threads : {1, 2}) {
    const std::string naive = "naive_mutex_map_" + std::to_string(threads) + "t";
    cases.push_back({naive, "", threads, [&, threads](bool& ok) { return naive_run(threads, n, keys, ok); }, {}});
    cases.push_back({"stat_buffer_increment_" + std::to_string(threads) + "t", naive, threads,
                     [&, threads](bool& ok) { return stat_buffer_run(threads, n, keys, false, ok); }, {}});
    cases.push_back({"stat_buffer_counter_" + std::to_string(threads) + "t", naive, threads,
                     [&, threads](bool& ok) { return stat_buffer_run(threads, n, keys, true, ok); }, {}});
  }
  // Interleave the cases run by run so that machine load affects them alike.
  for (int r = 0; r < flags.runs; ++r)
    for (auto& c : cases) c.rates.push_back(c.run(c.exact));

  std::vector<Result> results;
  bool all_exact = true;
  for (auto& c : cases) {
    Result res;
    res.name = c.name;
    res.value = reqbus::bench::median(c.rates);
    res.unit = "increments/s";
    res.baseline = c.baseline;
    for (auto& b : cases)
      if (b.name == c.baseline) res.ratio = reqbus::bench::ratio(res.value, reqbus::bench::median(b.rates));
    res.add("threads", double(c.threads)).add("runs", double(c.rates.size()))
        .add("per_thread", double(n)).add("exact_total", c.exact)
        .add("load", std::string_view(reqbus::bench::load_average()));
    all_exact = all_exact && c.exact;
    results.push_back(std::move(res));
  }
  reqbus::bench::print_results(results, flags.json);
  if (!all_exact) {
    std::fprintf(stderr, "stat_buffer_bench: a flushed total did not match the increments\n");
    return 1;
  }
  return 0;
}
