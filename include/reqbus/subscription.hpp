#pragma once
// Subscription: a live subscription to one topic of a Bus, returned by Bus::subscribe().
// In handler mode the handler runs on the subscription's own worker thread, one message at a
// time, in publish order per origin. In pull mode, next()/next_batch() return messages.
// Thread-safety: next()/next_batch() may be called from one consumer thread at a time;
// stats() and close() from any thread. Move-only. Destroying it unsubscribes (close()); what a
// pull-mode subscription left unread is then counted as dropped_close.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <vector>

#include "reqbus/bus_stats.hpp"
#include "reqbus/message.hpp"

namespace reqbus {

namespace detail { class Subscriber; }

class Subscription {
 public:
  Subscription() = default;
  explicit Subscription(std::shared_ptr<detail::Subscriber> impl);
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&&) noexcept;
  ~Subscription();

  // Pull mode: the next message, or nullopt after `timeout` (or once closed and empty).
  std::optional<Message> next(std::chrono::milliseconds timeout);
  // Pull mode: appends up to `max` messages to `out`; waits up to `timeout` for the first one.
  size_t next_batch(std::vector<Message>& out, size_t max, std::chrono::milliseconds timeout);

  SubscriptionStats stats() const;
  // Unsubscribes: stops receiving and joins the worker. Messages still in the pull queue stay
  // readable. Idempotent.
  void close();
  explicit operator bool() const noexcept { return impl_ != nullptr; }

 private:
  std::shared_ptr<detail::Subscriber> impl_;
};

}  // namespace reqbus
