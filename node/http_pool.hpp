#pragma once
// ElasticPool: the node's HTTP worker threads (an httplib::TaskQueue, one task per connection).
// httplib holds a thread for as long as a connection stays open — keep-alive waits, live-stream
// clients, and clients that send a request slowly. With httplib's fixed ThreadPool of 16, 16 such
// connections left every other client (/healthz, the log shippers) waiting in an unbounded queue:
// 23 s for /healthz behind 16 trickling clients. Here `min` threads are always there, more are
// started while every one is busy, up to `max`; threads above `min` leave after `idle` without
// work. A task goes to the thread that became idle last, so under a steady trickle of
// connections the same few threads serve and the others do reach their idle timeout. At `max`,
// enqueue() waits for a free thread, so httplib's accept loop stops taking connections and the
// kernel's listen backlog holds them: bounded, nothing queues in memory. A thread the system
// will not start (a pids limit) is counted and taken as the pool being full; with no thread at
// all, the task runs on the caller's thread rather than being lost (it owns a socket).
// Thread-safety: enqueue() and shutdown() are called by httplib's listening thread; stats from
// any thread, also after the pool is gone (PoolStats is shared).
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace reqbus::node {

// What ElasticPool reports; one object outlives the pools httplib makes and drops.
struct PoolStats {
  std::atomic<uint64_t> threads{0};         // running now
  std::atomic<uint64_t> busy{0};            // serving a connection now
  std::atomic<uint64_t> peak{0};            // most threads at once
  std::atomic<uint64_t> saturated{0};       // connections that waited for a thread (all busy, none startable)
  std::atomic<uint64_t> start_failures{0};  // threads the system would not start
};

class ElasticPool final : public httplib::TaskQueue {
 public:
  // 1 <= min <= max. `stats` may be shared with the owner of the server.
  ElasticPool(size_t min, size_t max, std::chrono::milliseconds idle, std::shared_ptr<PoolStats> stats);
  ~ElasticPool() override;
  ElasticPool(const ElasticPool&) = delete;
  ElasticPool& operator=(const ElasticPool&) = delete;

  void enqueue(std::function<void()> fn) override;
  // Lets every thread finish its task, then joins them.
  void shutdown() override;

 private:
  struct Worker {
    std::thread thread;
    std::condition_variable wake;  // a task was handed over, or shutdown
    std::function<void()> task;    // handed over by enqueue(); empty while idle
    bool exited = false;           // left its loop; joined by the next enqueue() or shutdown()
  };
  void run(Worker* self);
  bool start_worker_locked(std::function<void()> first_task);
  void reap_locked();

  const size_t min_, max_;
  const std::chrono::milliseconds idle_timeout_;
  const std::shared_ptr<PoolStats> stats_;
  std::mutex mu_;
  std::condition_variable space_cv_;  // a thread became idle (enqueue waits at max)
  std::list<Worker> workers_;         // also those that left and are not joined yet
  std::vector<Worker*> idle_;         // idle workers, the one idle last at the back
  size_t live_ = 0;                   // workers that have not left
  bool shutdown_ = false;
};

}  // namespace reqbus::node
