#pragma once
// TestSink: an in-memory, idempotent Sink for tests, with injectable failures and a gate.
//  - Results: each write() takes the next scripted result (push_result / fail_after), else the
//    default (set_default; initially success). A failure may carry retry_after, or be permanent.
//  - Gate: close_gate() makes write() record the call, then wait until open_gate() — a sink
//    that hangs, for "enqueue never blocks while a batch is in flight" tests.
//  - Records every call (clock time, size, timeout, result) and every stored batch; stores each
//    event once by request_id / message_id, like the real sinks, and counts duplicates.
//  - wait_for_calls / wait_for_stored block on a condition (with a real-time safety timeout so
//    a broken test fails instead of hanging).
// Thread-safety: every method is safe from any thread.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "reqbus/clock.hpp"
#include "reqbus/sink.hpp"

namespace reqbus::test {

inline const std::string& event_key(const Message& m) {
  return m.kind == MessageKind::request_sent ? m.request.request_id : m.analytics.message_id;
}

class TestSink final : public Sink {
 public:
  struct Call {
    Clock::time_point at;  // clock time when write() was entered
    size_t events = 0;
    std::chrono::milliseconds timeout{0};
    bool finished = false;
    WriteResult::Kind result = WriteResult::Kind::ok;
  };

  explicit TestSink(std::shared_ptr<Clock> clock = system_clock(), std::string name = "test")
      : clock_(std::move(clock)), name_(std::move(name)) {}

  // The next `times` writes return `result` (after anything scripted before).
  void push_result(WriteResult result, size_t times = 1) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < times; ++i) script_.push_back(result);
  }
  // What writes return when nothing is scripted.
  void set_default(WriteResult result) {
    std::lock_guard lock(mu_);
    default_ = std::move(result);
  }
  // The next `ok_calls` writes succeed, every later one returns `result`.
  void fail_after(size_t ok_calls, WriteResult result) {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < ok_calls; ++i) script_.push_back(WriteResult::success());
    default_ = std::move(result);
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

  bool wait_for_calls(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return calls_.size() >= n; });
  }
  // Waits until `n` distinct events are stored.
  bool wait_for_stored(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return stored_.size() >= n; });
  }
  // Waits until `n` calls have returned.
  bool wait_for_finished(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return finished_ >= n; });
  }

  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  size_t call_count() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  std::vector<std::vector<Message>> batches() const {  // every successful write, in order
    std::lock_guard lock(mu_);
    return batches_;
  }
  std::vector<Message> stored() const {  // distinct events, in first-stored order
    std::lock_guard lock(mu_);
    return stored_;
  }
  size_t stored_count() const {
    std::lock_guard lock(mu_);
    return stored_.size();
  }
  size_t duplicates() const {
    std::lock_guard lock(mu_);
    return duplicates_;
  }

  WriteResult write(const std::vector<Message>& batch, std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mu_);
    const size_t index = calls_.size();
    calls_.push_back({clock_->now(), batch.size(), timeout, false, WriteResult::Kind::ok});
    cv_.notify_all();
    // A safety limit, so a test that forgets to open the gate fails instead of hanging.
    cv_.wait_for(lock, std::chrono::seconds(60), [&] { return gate_open_; });
    WriteResult result = default_;
    if (!script_.empty()) {
      result = script_.front();
      script_.pop_front();
    }
    if (result.ok()) {
      batches_.push_back(batch);
      for (const Message& m : batch) {
        if (keys_.insert(event_key(m)).second) {
          stored_.push_back(m);
        } else {
          ++duplicates_;
        }
      }
    }
    calls_[index].finished = true;
    calls_[index].result = result.kind;
    ++finished_;
    cv_.notify_all();
    return result;
  }
  std::string name() const override { return name_; }

 private:
  const std::shared_ptr<Clock> clock_;
  const std::string name_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<WriteResult> script_;
  WriteResult default_ = WriteResult::success();
  bool gate_open_ = true;
  std::vector<Call> calls_;
  size_t finished_ = 0;
  std::vector<std::vector<Message>> batches_;
  std::vector<Message> stored_;
  std::unordered_set<std::string> keys_;
  size_t duplicates_ = 0;
};

}  // namespace reqbus::test
