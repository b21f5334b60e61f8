#pragma once
// Clock: injectable time. Every interval, jitter, backoff and idle timeout in reqbus reads
// now() and waits through wait_until() of a Clock, so tests drive time with a ManualClock
// instead of sleeping.
// Thread-safety: all methods are safe from any thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace reqbus {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic time, for intervals and deadlines.
  virtual time_point now() const = 0;
  // Wall-clock time in microseconds since the Unix epoch, for timestamps.
  virtual int64_t unix_us() const = 0;
  // With `lock` held on the mutex that guards pred's state: waits on `cv` until pred() is true
  // or now() reaches `deadline`. Returns pred(). Whoever changes that state notifies `cv`.
  virtual bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          time_point deadline, const std::function<bool()>& pred) const = 0;
};

// The real clock (steady_clock + system_clock).
std::shared_ptr<Clock> system_clock();

// A clock that moves only when told to. Waiters re-check it every millisecond of real time,
// so advance() needs no knowledge of who waits.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t unix_us = 1'700'000'000'000'000) : unix_us_(unix_us) {}
  time_point now() const override { return time_point(std::chrono::nanoseconds(mono_ns_.load())); }
  int64_t unix_us() const override { return unix_us_.load(); }
  bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  time_point deadline, const std::function<bool()>& pred) const override {
    while (!pred() && now() < deadline) cv.wait_for(lock, std::chrono::milliseconds(1));
    return pred();
  }
  void advance(std::chrono::nanoseconds d) {
    mono_ns_ += d.count();
    unix_us_ += std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  }

 private:
  std::atomic<int64_t> mono_ns_{1'000'000'000};
  std::atomic<int64_t> unix_us_;
};

}  // namespace reqbus
