#pragma once
// BoundedQueue: a fixed-capacity ring, bounded by item count and by bytes, with an explicit
// overflow policy. Items move in and out by swap, so the strings inside them keep their
// capacity and circulate between producers and the consumer without new allocations.
// Thread-safety: push() from any number of threads; pop() from any number of consumers
// (reqbus uses one); close()/wake()/size() from any thread.
#include <chrono>
#include <condition_variable>
#include <algorithm>
#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#include "reqbus/overflow.hpp"

namespace reqbus::detail {

enum class PushResult { ok, dropped_newest, timed_out, closed };

struct PushOutcome {
  PushResult result = PushResult::ok;
  size_t evicted = 0;  // items dropped from the head (drop_oldest) to make room
  size_t evicted_bytes = 0;  // their weight (what each was pushed with)
};

template <class T>
class BoundedQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // The ring starts small and doubles up to max_items as needed, so a large bound costs
  // memory only when it is used.
  BoundedQueue(size_t max_items, size_t max_bytes)
      : max_items_(max_items), max_bytes_(max_bytes) {
    grow_to(std::min<size_t>(max_items_, 64));
  }

  // Swaps `item` into the queue; on return `item` holds a recycled value (or, when the push
  // failed, its own value untouched). `bytes` is the item's weight against max_bytes.
  PushOutcome push(T& item, size_t bytes, Overflow policy, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    PushOutcome outcome;
    while (!closed_ && !fits(bytes)) {
      if (policy == Overflow::drop_newest) return {PushResult::dropped_newest, 0};
      if (policy == Overflow::drop_oldest) {
        outcome.evicted_bytes += evict_head();
        ++outcome.evicted;
        continue;
      }
      ++producers_waiting_;
      const bool woke = not_full_.wait_until(lock, deadline, [&] { return closed_ || fits(bytes); });
      --producers_waiting_;
      if (!woke) return {PushResult::timed_out, 0};
    }
    if (closed_) return {PushResult::closed, outcome.evicted, outcome.evicted_bytes};
    if (count_ == slots_.size()) grow_to(std::min(max_items_, slots_.size() * 2));
    const size_t tail = (head_ + count_) % slots_.size();
    std::swap(slots_[tail], item);
    sizes_[tail] = bytes;
    bytes_ += bytes;
    ++count_;
    const bool wake_consumer = consumer_waiting_;
    lock.unlock();
    if (wake_consumer) not_empty_.notify_one();  // after unlocking: see FrameQueue::push
    return outcome;
  }

  // Waits until an item is queued, the queue is closed, wake() is called, or `deadline`;
  // then swaps up to `max` items into out[0..n) (out is grown to `max` if smaller), and adds
  // their weight to *bytes when given.
  size_t pop(std::vector<T>& out, size_t max, Clock::time_point deadline, size_t* bytes = nullptr) {
    if (out.size() < max) out.resize(max);
    std::unique_lock lock(mu_);
    if (count_ == 0 && !closed_ && !wake_) {
      consumer_waiting_ = true;
      not_empty_.wait_until(lock, deadline, [&] { return count_ > 0 || closed_ || wake_; });
      consumer_waiting_ = false;
    }
    wake_ = false;
    size_t n = 0;
    for (; n < max && count_ > 0; ++n) {
      std::swap(out[n], slots_[head_]);
      bytes_ -= sizes_[head_];
      if (bytes) *bytes += sizes_[head_];
      head_ = (head_ + 1) % slots_.size();
      --count_;
    }
    const bool wake_producers = n > 0 && producers_waiting_ > 0;
    lock.unlock();
    if (wake_producers) not_full_.notify_all();
    return n;
  }

  // Makes the next (or current) pop() return even if nothing is queued.
  void wake() {
    std::lock_guard lock(mu_);
    wake_ = true;
    not_empty_.notify_all();
  }

  // Refuses further pushes; pop() still drains what is queued, then returns 0 at once.
  void close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool closed_and_empty() const {
    std::lock_guard lock(mu_);
    return closed_ && count_ == 0;
  }
  // Removes everything still queued; returns how many items that was (and their weight in
  // `bytes`, when given).
  size_t clear(size_t* bytes = nullptr) {
    std::lock_guard lock(mu_);
    const size_t n = count_;
    size_t weight = 0;
    while (count_ > 0) weight += evict_head();
    if (bytes) *bytes = weight;
    not_full_.notify_all();
    return n;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  size_t bytes() const {
    std::lock_guard lock(mu_);
    return bytes_;
  }
  size_t capacity() const { return max_items_; }

 private:
  // Re-lays the ring out from index 0 in a larger vector; items keep their order.
  void grow_to(size_t n) {
    std::vector<T> slots(n);
    std::vector<size_t> sizes(n, 0);
    for (size_t i = 0; i < count_; ++i) {
      const size_t from = (head_ + i) % slots_.size();
      std::swap(slots[i], slots_[from]);
      sizes[i] = sizes_[from];
    }
    slots_.swap(slots);
    sizes_.swap(sizes);
    head_ = 0;
  }
  bool fits(size_t bytes) const {
    if (count_ == max_items_) return false;
    return count_ == 0 || bytes_ + bytes <= max_bytes_;  // one oversized item still fits alone
  }
  size_t evict_head() {  // returns the item's weight
    slots_[head_] = T{};
    const size_t weight = sizes_[head_];
    bytes_ -= weight;
    head_ = (head_ + 1) % slots_.size();
    --count_;
    return weight;
  }

  mutable std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::vector<T> slots_;       // guarded by mu_; grows up to max_items_
  std::vector<size_t> sizes_;  // guarded by mu_
  const size_t max_items_;
  const size_t max_bytes_;
  size_t head_ = 0;            // guarded by mu_
  size_t count_ = 0;           // guarded by mu_
  size_t bytes_ = 0;           // guarded by mu_
  size_t producers_waiting_ = 0;
  bool consumer_waiting_ = false;
  bool wake_ = false;
  bool closed_ = false;
};

}  // namespace reqbus::detail
