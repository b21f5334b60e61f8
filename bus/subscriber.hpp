#pragma once
// detail::Subscriber: one subscription's socket, threads and counters (behind Subscription).
// The reader thread owns the SUB socket: it decodes frames, tracks sequence gaps, and either
// runs the handler itself (handler or view handler + block policy: back-pressure flows to the
// publisher) or feeds a bounded queue (pull mode, or drop policies, where a second thread runs
// the handler so a slow handler sheds load here instead of slowing the bus). A view handler
// with a drop policy queues whole frames (frames_), read in place by the handler thread; every
// other queue holds decoded Messages (pending_).
#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "bus/bounded_queue.hpp"
#include "bus/gap_tracker.hpp"
#include "bus/ready_board.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/log.hpp"

namespace reqbus::detail {

// What a subscriber needs from its bus. The bus outlives its subscribers' threads: Bus::close
// joins them.
struct SubscriberEnv {
  zmq::context_t* context = nullptr;
  std::string local_endpoint;
  std::string remote_endpoint;  // "" when the bus has no tcp peers
  ReadyBoard* ready = nullptr;
  std::function<void()> poke;   // wakes the threads that ack readiness
  size_t max_message_bytes = 0;
};

class Subscriber {
 public:
  // At most one of the handlers; neither is pull mode.
  Subscriber(SubscriberEnv env, SubscribeOptions options, Handler handler, ViewHandler view_handler = nullptr);
  ~Subscriber();

  // Starts the threads and waits until the subscription is live; throws Error on failure.
  void start(const std::string& ready_token);

  std::optional<Message> next(std::chrono::milliseconds timeout);
  size_t next_batch(std::vector<Message>& out, size_t max, std::chrono::milliseconds timeout);
  SubscriptionStats stats() const;

  // Graceful end (Bus::close): the reader stops after the bus's close markers; waits for the
  // threads until `deadline`, then tells them to stop and returns false. A thread still inside
  // the user's handler is not waited for: it is joined by stop() or the destructor.
  bool finish(std::chrono::steady_clock::time_point deadline);
  // Immediate end (Subscription::close / destructor). Idempotent. In handler mode what is still
  // queued is counted as dropped_close; in pull mode it stays readable through next(), unless
  // `discard_pending` (the Subscription is gone, so no one can read it): then it is counted too.
  void stop(bool discard_pending = false);
  // True once the counters are final (stop() has returned; in pull mode, stop(true) has): the
  // bus may fold them into its totals and forget this subscriber.
  bool finished() const;

 private:
  void reader_main(std::promise<void> started);
  void handler_main();
  void view_handler_main();  // queued views: reads frames_ in place
  // Queues a received frame of `events` events for the view handler thread (swapped out of
  // `body`), counting what the policy drops.
  void queue_frame(zmq::message_t& body, size_t events);
  // Closes frames_ and counts what it still holds as dropped_close (nobody will take it).
  void drop_queued_frames();
  void deliver(Message& message);
  void deliver(const MessageView& message);  // view mode: runs the view handler
  // Runs a handler on one message, counting it delivered, and a throw as a handler error.
  template <class Fn, class M>
  void run_handler(const Fn& handler, const M& message);
  void note_pending_full();
  void note_consumed();
  void join();
  void join_finished();  // joins only the threads that have already returned
  // Reads what is still in the socket's pipes (sent to this subscription, never read), counts
  // its events as received and dropped_close, and closes the socket. Requires socket_mu_.
  void discard_unread();

  const SubscriberEnv env_;
  const SubscribeOptions options_;
  const Handler handler_;
  const ViewHandler view_handler_;
  const bool inline_handler_;  // the reader runs the handler (or view handler) + block policy
  const bool queued_views_;    // a view handler with a drop policy: frames_ and a handler thread
  std::string ready_token_;
  BoundedQueue<Message> pending_;
  // Queued views: whole received frames, weighed by their events (max_pending of them).
  struct QueuedFrame {
    zmq::message_t body;
    size_t events = 0;
  };
  BoundedQueue<QueuedFrame> frames_;
  // The SUB socket. The reader holds socket_mu_ only while it receives, never while a handler
  // runs: Bus::close, past its deadline, takes it to count what a stuck handler left unread in
  // the pipes (before the context is shut down, when reading them is no longer possible).
  std::mutex socket_mu_;
  std::optional<zmq::socket_t> socket_;  // guarded by socket_mu_; reset once discarded
  std::thread reader_;
  std::thread handler_thread_;
  std::future<void> reader_done_;
  std::future<void> handler_done_;
  std::mutex join_mu_;
  std::atomic<bool> stop_{false};     // leave now
  std::atomic<bool> stopped_{false};  // stop() has joined the threads and counted the rest
  std::atomic<bool> released_{false};  // stop(true): the pending queue was discarded
  std::atomic<bool> slow_{false};
  RateLimiter log_limit_;

  std::atomic<uint64_t> received_{0}, delivered_{0}, dropped_newest_{0}, dropped_oldest_{0},
      gaps_{0}, handler_errors_{0}, malformed_{0}, dropped_close_{0};
  // Received, and held by the reader (a decoded frame not yet queued or handled) or by the
  // handler thread (the batch it popped) right now: neither delivered, dropped nor pending.
  std::atomic<uint64_t> in_hand_{0};
};

}  // namespace reqbus::detail
