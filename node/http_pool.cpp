#include "node/http_pool.hpp"

#include <algorithm>

#include "bus/thread_name.hpp"

namespace reqbus::node {

ElasticPool::ElasticPool(size_t min, size_t max, std::chrono::milliseconds idle, std::shared_ptr<PoolStats> stats)
    : min_(std::max<size_t>(1, min)), max_(std::max(max, std::max<size_t>(1, min))), idle_(idle), stats_(std::move(stats)) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < min_; ++i) start_worker_locked();
}

ElasticPool::~ElasticPool() { shutdown(); }

void ElasticPool::start_worker_locked() {
  Worker& w = workers_.emplace_back();
  w.thread = std::thread([this, self = &w] { run(self); });
  ++live_;
  const uint64_t n = stats_->threads.fetch_add(1) + 1;
  uint64_t peak = stats_->peak.load();
  while (n > peak && !stats_->peak.compare_exchange_weak(peak, n)) {}
}

// Joins the threads that left for idleness (each has released the lock for good, so this waits
// at most for it to return).
void ElasticPool::reap_locked() {
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (!it->exited) {
      ++it;
      continue;
    }
    it->thread.join();
    it = workers_.erase(it);
  }
}

void ElasticPool::enqueue(std::function<void()> fn) {
  std::unique_lock lock(mu_);
  reap_locked();
  if (idle_threads_ <= tasks_.size()) {  // no free thread for it
    if (live_ < max_) {
      start_worker_locked();
    } else {
      stats_->saturated.fetch_add(1, std::memory_order_relaxed);
      space_cv_.wait(lock, [&] { return idle_threads_ > tasks_.size() || shutdown_; });
    }
  }
  tasks_.push_back(std::move(fn));  // also at shutdown: the task owns an accepted socket
  work_cv_.notify_one();
}

void ElasticPool::run(Worker* self) {
  reqbus::detail::name_this_thread("rb-http");
  std::unique_lock lock(mu_);
  for (;;) {
    ++idle_threads_;
    space_cv_.notify_one();
    const bool woke = work_cv_.wait_for(lock, idle_, [&] { return !tasks_.empty() || shutdown_; });
    --idle_threads_;
    // Leaves when shut down with nothing left to run, or idle past `idle_` with more than `min_`.
    if (tasks_.empty() && (shutdown_ || (!woke && live_ > min_))) {
      self->exited = true;
      --live_;
      stats_->threads.fetch_sub(1);
      return;
    }
    if (tasks_.empty()) continue;
    std::function<void()> task = std::move(tasks_.front());
    tasks_.pop_front();
    lock.unlock();
    stats_->busy.fetch_add(1, std::memory_order_relaxed);
    task();
    stats_->busy.fetch_sub(1, std::memory_order_relaxed);
    lock.lock();
  }
}

void ElasticPool::shutdown() {
  std::list<Worker> workers;
  {
    std::lock_guard lock(mu_);
    if (shutdown_ && workers_.empty()) return;
    shutdown_ = true;
    work_cv_.notify_all();
    space_cv_.notify_all();
  }
  // Threads still running tasks finish them (and whatever is queued) before they see shutdown_.
  for (;;) {
    std::unique_lock lock(mu_);
    if (workers_.empty()) break;
    Worker& w = workers_.front();
    std::thread t = std::move(w.thread);
    lock.unlock();
    t.join();
    lock.lock();
    workers_.pop_front();
  }
}

}  // namespace reqbus::node
