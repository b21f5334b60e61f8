#pragma once
// ReadyBoard: how subscribe() learns that its subscription is live. The new subscriber's
// socket subscribes to a unique token; the thread that owns a publishing XPUB socket sees
// that subscription arrive (after the topic's, on the same pipe) and acks the token here.
// Thread-safety: all methods from any thread.
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

namespace reqbus::detail {

class ReadyBoard {
 public:
  void ack(const std::string& token) {
    std::lock_guard lock(mu_);
    ++acks_[token];
    cv_.notify_all();
  }
  // Waits until `token` has `count` acks or `deadline`; calls `poke` every millisecond while
  // waiting so that the owning threads look at their sockets.
  bool wait(const std::string& token, int count, std::chrono::steady_clock::time_point deadline,
            const std::function<void()>& poke) {
    std::unique_lock lock(mu_);
    while (acks_[token] < count) {
      if (std::chrono::steady_clock::now() >= deadline) {
        acks_.erase(token);
        return false;
      }
      lock.unlock();
      poke();
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(1), [&] { return acks_[token] >= count; });
    }
    acks_.erase(token);
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<std::string, int> acks_;
};

}  // namespace reqbus::detail
