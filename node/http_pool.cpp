#include "node/http_pool.hpp"

#include <algorithm>
#include <system_error>

#include "bus/thread_name.hpp"

namespace reqbus::node {

ElasticPool::ElasticPool(size_t min, size_t max, std::chrono::milliseconds idle, std::shared_ptr<PoolStats> stats)
    : min_(std::max<size_t>(1, min)), max_(std::max(max, std::max<size_t>(1, min))), idle_timeout_(idle), stats_(std::move(stats)) {
  std::unique_lock lock(mu_);
  size_t started = 0;
  while (started < min_ && start_worker_locked(nullptr)) ++started;
  // Ready when they wait for work: a first enqueue() must find them idle, not start more.
  space_cv_.wait(lock, [&] { return idle_.size() == started; });
}

ElasticPool::~ElasticPool() { shutdown(); }

// Starts a thread that runs `first_task` (if any) and then waits for more. False when the
// system would not start one (counted).
bool ElasticPool::start_worker_locked(std::function<void()> first_task) {
  Worker& w = workers_.emplace_back();
  w.task = std::move(first_task);
  try {
    w.thread = std::thread([this, self = &w] { run(self); });
  } catch (const std::system_error&) {  // EAGAIN: a thread or pids limit
    workers_.pop_back();
    stats_->start_failures.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  ++live_;
  const uint64_t n = stats_->threads.fetch_add(1) + 1;
  uint64_t peak = stats_->peak.load();
  while (n > peak && !stats_->peak.compare_exchange_weak(peak, n)) {}
  return true;
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
  if (idle_.empty() && (live_ >= max_ || !start_worker_locked(fn))) {
    if (live_ == 0) {  // not one thread: serve it here rather than lose its socket
      lock.unlock();
      fn();
      return;
    }
    stats_->saturated.fetch_add(1, std::memory_order_relaxed);
    space_cv_.wait(lock, [&] { return !idle_.empty(); });
  } else if (idle_.empty()) {
    return;  // a new worker took it as its first task
  }
  Worker* w = idle_.back();  // the one idle last: the others get to leave when quiet
  idle_.pop_back();
  w->task = std::move(fn);
  w->wake.notify_one();
}

void ElasticPool::run(Worker* self) {
  reqbus::detail::name_this_thread("rb-http");
  std::unique_lock lock(mu_);
  for (;;) {
    if (self->task) {
      std::function<void()> task = std::move(self->task);
      self->task = nullptr;
      lock.unlock();
      stats_->busy.fetch_add(1, std::memory_order_relaxed);
      task();
      stats_->busy.fetch_sub(1, std::memory_order_relaxed);
      task = nullptr;  // its captures (the server) released outside the lock
      lock.lock();
    }
    if (shutdown_) break;
    idle_.push_back(self);
    space_cv_.notify_all();  // enqueue() at max, or the constructor
    const bool woke = self->wake.wait_for(lock, idle_timeout_, [&] { return self->task || shutdown_; });
    if (woke) continue;  // a task (run above), or shutdown (idle_ is cleared by shutdown())
    std::erase(idle_, self);  // idle past idle_timeout_: no task was handed to it meanwhile
    if (live_ > min_) break;  // more than min_ remain; else it waits again, as idle last
  }
  self->exited = true;
  --live_;
  stats_->threads.fetch_sub(1);
}

void ElasticPool::shutdown() {
  std::unique_lock lock(mu_);
  shutdown_ = true;
  idle_.clear();
  for (Worker& w : workers_) w.wake.notify_one();
  // Threads running a task finish it first. Joined one by one, outside the lock.
  while (!workers_.empty()) {
    std::thread t = std::move(workers_.front().thread);
    lock.unlock();
    if (t.joinable()) t.join();
    lock.lock();
    workers_.pop_front();
  }
}

}  // namespace reqbus::node
