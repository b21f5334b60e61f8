#pragma once
// HangingSink: a store that hangs (a frozen database): every write — Sink::write and
// CounterSink::write_counters — waits with no answer until abort_writes() is called, then
// fails with retry_later("abandoned"); a minute is a safety limit no test should reach. For
// tests of close() deadlines. A fault injected beside the real sinks (sqlite_sink_test,
// postgres_sink_test and http_sink_test abort real writes, with abort_until_done below).
// Thread-safety: every method may be called from any thread.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "reqbus/counter_sink.hpp"
#include "reqbus/sink.hpp"

namespace reqbus::test {

class HangingSink final : public Sink, public CounterSink {
 public:
  WriteResult write(const std::vector<Message>&, std::chrono::milliseconds) override { return hang(); }
  WriteResult write_counters(const std::vector<CounterFlush>&, std::chrono::milliseconds) override {
    return hang();
  }
  void abort_writes() noexcept override {
    {
      std::lock_guard lock(mu_);
      ++aborts_;
    }
    cv_.notify_all();
  }
  std::string name() const override { return "hanging"; }

  // Waits until `n` writes have started (false after 20 s).
  bool wait_for_writes(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(20), [&] { return writes_ >= n; });
  }
  uint64_t aborts() {
    std::lock_guard lock(mu_);
    return aborts_;
  }

 private:
  WriteResult hang() {
    std::unique_lock lock(mu_);
    ++writes_;
    cv_.notify_all();
    const uint64_t started = aborts_;
    cv_.wait_for(lock, std::chrono::minutes(1), [&] { return aborts_ != started; });
    return WriteResult::retry_later(aborts_ != started ? "abandoned" : "hung for a minute");
  }

  std::mutex mu_;
  std::condition_variable cv_;
  size_t writes_ = 0;
  uint64_t aborts_ = 0;
};

// Calls sink.abort_writes() every 50 ms until `write` is done, as Batcher::close does (a write
// that had not begun at one call is reached by the next); false if it never is (10 s).
inline bool abort_until_done(Sink& sink, std::future<WriteResult>& write) {
  for (int i = 0; i < 200 && write.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready; ++i)
    sink.abort_writes();
  return write.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready;
}

}  // namespace reqbus::test
