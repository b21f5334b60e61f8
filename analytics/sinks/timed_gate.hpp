#pragma once
// TimedGate: exclusive ownership with a timeout, for a sink's one connection or file.
// Not std::timed_mutex: libstdc++ implements its try_lock_for with pthread_mutex_clocklock,
// which GCC 12's ThreadSanitizer does not intercept, so TSan sees unlocks without locks and
// reports races on everything the mutex guards. A mutex + condition variable is understood.
// Thread-safety: all methods are safe from any thread.
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace reqbus::detail {

class TimedGate {
 public:
  // Holds the gate for its lifetime when acquired() is true.
  class Hold {
   public:
    Hold(TimedGate& gate, std::chrono::milliseconds timeout) : gate_(gate) {
      std::unique_lock<std::mutex> lock(gate_.mu_);
      held_ = gate_.cv_.wait_for(lock, timeout, [&] { return !gate_.busy_; });
      if (held_) gate_.busy_ = true;
    }
    ~Hold() {
      if (!held_) return;
      {
        std::lock_guard<std::mutex> lock(gate_.mu_);
        gate_.busy_ = false;
      }
      gate_.cv_.notify_one();
    }
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;
    bool acquired() const noexcept { return held_; }

   private:
    TimedGate& gate_;
    bool held_ = false;
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool busy_ = false;  // guarded by mu_
};

}  // namespace reqbus::detail
