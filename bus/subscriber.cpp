#include "bus/subscriber.hpp"

#include <cerrno>
#include <string_view>

#include "bus/frame.hpp"
#include "bus/skip_notice.hpp"
#include "bus/thread_name.hpp"
#include "bus/tsan.hpp"
#include "reqbus/error.hpp"

namespace reqbus::detail {
namespace {

constexpr auto kPollSlice = std::chrono::milliseconds(100);

}  // namespace

Subscriber::Subscriber(SubscriberEnv env, SubscribeOptions options, Handler handler, ViewHandler view_handler)
    : env_(std::move(env)),
      options_(std::move(options)),
      handler_(std::move(handler)),
      view_handler_(std::move(view_handler)),
      inline_handler_((handler_ || view_handler_) && options_.overflow == Overflow::block),
      queued_views_(view_handler_ && options_.overflow != Overflow::block),
      // Pending events are bounded by count; bytes are bounded by count x record limits.
      pending_(options_.max_pending, SIZE_MAX),
      // Frames weigh their events; no more frames than events.
      frames_(options_.max_pending, options_.max_pending) {}

Subscriber::~Subscriber() { stop(); }

void Subscriber::start(const std::string& ready_token) {
  ready_token_ = ready_token;
  std::promise<void> started;
  auto started_future = started.get_future();
  std::promise<void> done;
  reader_done_ = done.get_future();
  reader_ = detail::named_thread("rb-sub-read", [this, p = std::move(started), d = std::move(done)]() mutable {
    reader_main(std::move(p));
    d.set_value();
  });
  try {
    started_future.get();  // socket connected and subscribed, or an exception
  } catch (...) {
    stop();
    throw;
  }
  if ((handler_ || view_handler_) && !inline_handler_) {
    std::promise<void> handler_done;
    handler_done_ = handler_done.get_future();
    handler_thread_ = detail::named_thread("rb-sub-handler", [this, d = std::move(handler_done)]() mutable {
      if (queued_views_) view_handler_main();
      else handler_main();
      d.set_value();
    });
  }
  const int acks = env_.remote_endpoint.empty() || options_.scope == Scope::local_only ? 1 : 2;
  const auto deadline = std::chrono::steady_clock::now() + options_.ready_timeout;
  if (!env_.ready->wait(ready_token, acks, deadline, env_.poke)) {
    stop();
    throw Error(ErrorCode::transport,
                "subscribe: subscription to '" + options_.topic + "' not live after " +
                    std::to_string(options_.ready_timeout.count()) + " ms");
  }
}

void Subscriber::reader_main(std::promise<void> started) {
  int expected_closes = 1;
  try {
    std::lock_guard lock(socket_mu_);
    zmq::socket_t& socket = socket_.emplace(*env_.context, zmq::socket_type::sub);
    socket.set(zmq::sockopt::rcvhwm, options_.rcv_hwm);
    socket.set(zmq::sockopt::rcvtimeo, int(kPollSlice.count()));
    socket.set(zmq::sockopt::linger, 0);
    std::string topic_prefix = options_.topic;  // "<topic>\0" matches both scopes of the topic
    topic_prefix.push_back('\0');
    socket.set(zmq::sockopt::subscribe, topic_prefix);
    socket.set(zmq::sockopt::subscribe, std::string_view(kCloseKey));
    socket.set(zmq::sockopt::subscribe, std::string(1, kReadyPrefix) + ready_token_);
    socket.connect(env_.local_endpoint);
    if (options_.scope == Scope::cluster && !env_.remote_endpoint.empty()) {
      socket.connect(env_.remote_endpoint);
      expected_closes = 2;
    }
    started.set_value();
  } catch (...) {
    {
      std::lock_guard lock(socket_mu_);  // the guard above ended with the try block
      socket_.reset();
    }
    started.set_exception(std::current_exception());
    return;
  }

  GapTracker gaps;
  FrameHeader header;
  std::vector<Message> batch;
  std::vector<MessageView> views;  // view mode: batch then holds only what views cannot point into
  int closes_seen = 0;
  zmq::message_t key, body;
  while (!stop_.load(std::memory_order_relaxed)) {
    {
      std::lock_guard lock(socket_mu_);
      if (!socket_) break;  // Bus::close discarded it past its deadline
      try {
        if (!socket_->recv(key)) continue;  // poll slice elapsed; check stop_ again
        if (!key.more()) {
          ++malformed_;
          continue;
        }
        if (!socket_->recv(body)) continue;
        while (body.more()) {  // discard unexpected extra parts
          zmq::message_t extra;
          if (!socket_->recv(extra)) break;
          body.move(extra);
        }
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;  // a signal in a program that does not block them
        break;  // context terminated
      }
    }
    tsan_acquire(body.data());  // a zero-copy payload written by the publisher thread
    const std::string_view key_view(static_cast<const char*>(key.data()), key.size());
    if (key_view == kCloseKey) {
      if (++closes_seen >= expected_closes) break;  // the bus sent everything before this
      continue;
    }
    auto note_gap = [&](uint64_t missing) {
      if (!missing) return;
      gaps_ += missing;
      log_limit_.log(LogLevel::warn, "subscriber '" + options_.name + "': " + std::to_string(missing) +
                                         " events missing from " + header.node_id);
    };
    if (key_view.back() == kScopeSkipped) {  // the receiver rejected (and counted) a peer frame
      const bool skip_read = decode_skip(static_cast<const char*>(body.data()), body.size(), header);
      tsan_release(body.data());  // done reading: see below
      if (skip_read)
        note_gap(gaps.observe(header.node_id, std::string_view(&kScopeCluster, 1), header.epoch,
                              header.first_seq, header.count));
      else
        ++malformed_;
      continue;
    }
    // Records are not validated again: the publisher validated local ones at publish and the
    // receiver remote ones on arrival (the only two senders on the local endpoint).
    const char* data = static_cast<const char*>(body.data());
    const size_t max_bytes = env_.max_message_bytes * 2;
    // Queued views read only the header here; the handler thread reads the records in place.
    // (A frame in another msgpack form than WireWriter's is read whole, to find any error now.)
    const bool header_only = queued_views_ && peek_frame_header(data, body.size(), max_bytes, header);
    std::optional<codec::DecodeError> error;
    if (!header_only)
      error = view_handler_ ? decode_frame_views(data, body.size(), max_bytes, header, views, batch, false)
                            : decode_frame(data, body.size(), max_bytes, header, batch, /*check_fields=*/false);
    // The payload is read until the frame's events are delivered (views point into it). Its
    // buffer goes back to the publisher's pool when the last subscriber lets go of it, through
    // libzmq's reference count, which TSan cannot see; the release (acquired there,
    // bus/publisher.cpp) orders these reads before the buffer's reuse.
    if (error) {  // local frames are ours and the receiver validated remote ones: a bug
      tsan_release(body.data());
      ++malformed_;
      log_limit_.log(LogLevel::error, "subscriber '" + options_.name + "': undecodable frame (" +
                                          codec::to_string(*error) + ")");
      continue;
    }
    const char scope = key_view.back();
    note_gap(gaps.observe(header.node_id, std::string_view(&scope, 1), header.epoch,
                          header.first_seq, header.count));
    const size_t n = header.count;  // batch[0..n): reused frame after frame
    in_hand_ += n;  // until deliver() has counted each one delivered, queued or dropped
    received_ += n;
    if (queued_views_) {
      tsan_release(body.data());  // the handler thread acquires it again to read the records
      queue_frame(body, n);
      continue;
    }
    for (size_t i = 0; i < n; ++i) {
      if (view_handler_)
        deliver(views[i]);
      else
        deliver(batch[i]);
      in_hand_.fetch_sub(1, std::memory_order_relaxed);
      if (stop_.load(std::memory_order_relaxed)) {
        dropped_close_ += n - i - 1;  // decoded, never queued: counted
        in_hand_ -= n - i - 1;
        break;
      }
    }
    tsan_release(body.data());
  }
  {
    std::lock_guard lock(socket_mu_);
    discard_unread();
  }
  pending_.close();  // pull readers drain what is left, then see the end
  frames_.close();
}

void Subscriber::queue_frame(zmq::message_t& body, size_t events) {
  QueuedFrame frame{std::move(body), events};
  const PushOutcome out = frames_.push(frame, events, options_.overflow, std::chrono::steady_clock::time_point::max());
  if (out.evicted) {
    dropped_oldest_ += out.evicted_bytes;
    note_pending_full();
  }
  switch (out.result) {
    case PushResult::ok:
      break;
    case PushResult::dropped_newest:
    case PushResult::timed_out:  // not with a drop policy
      dropped_newest_ += events;
      note_pending_full();
      break;
    case PushResult::closed:  // stop() or finish() closed the queue: nobody will take it
      dropped_close_ += events;
      break;
  }
  in_hand_ -= events;  // queued or dropped, each counted
}

void Subscriber::discard_unread() {
  if (!socket_) return;
  std::vector<Message> scratch;
  FrameHeader header;
  uint64_t events = 0;
  try {
    zmq::message_t key, body;
    // After the close markers this finds nothing; after stop() or a deadline, what the bus sent
    // that this subscription will never read.
    while (socket_->recv(key, zmq::recv_flags::dontwait)) {
      if (!key.more() || !socket_->recv(body, zmq::recv_flags::dontwait)) continue;
      tsan_acquire(body.data());
      const std::string_view key_view(static_cast<const char*>(key.data()), key.size());
      if (key_view != kCloseKey && key_view.back() != kScopeSkipped) {
        if (decode_frame(static_cast<const char*>(body.data()), body.size(), env_.max_message_bytes * 2, header,
                         scratch, /*check_fields=*/false))
          ++malformed_;  // as the reader would have counted it
        else
          events += header.count;
      }
      tsan_release(body.data());
    }
  } catch (const zmq::error_t&) {
    // The context is gone: nothing more can be read.
  }
  socket_.reset();
  if (events == 0) return;
  received_ += events;
  dropped_close_ += events;
  log_limit_.log(LogLevel::warn, "subscriber '" + options_.name + "': closed with " + std::to_string(events) +
                                     " events unread in its socket (counted as dropped_close)");
}

template <class Fn, class M>
void Subscriber::run_handler(const Fn& handler, const M& message) {
  try {
    handler(message);
  } catch (const std::exception& e) {
    ++handler_errors_;
    log_limit_.log(LogLevel::error, "subscriber '" + options_.name + "': handler threw: " + e.what());
  } catch (...) {
    ++handler_errors_;
    log_limit_.log(LogLevel::error, "subscriber '" + options_.name + "': handler threw");
  }
  ++delivered_;
}

void Subscriber::deliver(const MessageView& message) {
  run_handler(view_handler_, message);
}

void Subscriber::deliver(Message& message) {
  if (inline_handler_) {
    run_handler(handler_, message);
    return;
  }
  // Pull mode or a drop policy: into the bounded pending queue.
  while (true) {
    const auto deadline = std::chrono::steady_clock::now() + kPollSlice;
    const PushOutcome out = pending_.push(message, 1, options_.overflow, deadline);
    if (out.evicted) {
      dropped_oldest_ += out.evicted;
      note_pending_full();
    }
    switch (out.result) {
      case PushResult::ok:
        return;
      case PushResult::dropped_newest:
        ++dropped_newest_;
        note_pending_full();
        return;
      case PushResult::closed:  // stop() or finish() closed the queue: nobody will take it
        ++dropped_close_;
        return;
      case PushResult::timed_out:  // block policy: never drop; keep waiting unless stopping
        note_pending_full();
        if (stop_.load()) {
          ++dropped_close_;
          return;
        }
        continue;
    }
  }
}

void Subscriber::note_pending_full() {
  // nats.c's rule: report a slow consumer once when it turns slow, not on every drop.
  if (!slow_.exchange(true))
    log(LogLevel::warn, "subscriber '" + options_.name + "' is slow: its pending queue of " +
                            std::to_string(options_.max_pending) + " events is full (policy " +
                            to_string(options_.overflow) + ")");
}

// Called by the consumer (handler thread or next()) once it has taken and handled messages:
// only then has a slow subscription recovered. (Clearing it on the producer side made it flap
// while a handler was stuck holding the batch it had just popped.)
void Subscriber::note_consumed() {
  if (slow_.load(std::memory_order_relaxed) && pending_.size() + frames_.bytes() < options_.max_pending / 2)
    slow_ = false;
}

void Subscriber::handler_main() {
  std::vector<Message> batch;
  while (true) {
    const size_t n = pending_.pop(batch, 64, std::chrono::steady_clock::now() + kPollSlice);
    if (n == 0) {
      if (pending_.closed_and_empty() || stop_.load()) return;
      continue;
    }
    in_hand_ += n;  // off the queue, not yet handled: still visible in stats()
    for (size_t i = 0; i < n; ++i) {
      if (stop_.load(std::memory_order_relaxed)) {  // close(), or Bus::close past its deadline
        dropped_close_ += n - i;
        in_hand_ -= n - i;
        return;
      }
      run_handler(handler_, batch[i]);
      in_hand_.fetch_sub(1, std::memory_order_relaxed);
    }
    note_consumed();
  }
}

void Subscriber::view_handler_main() {
  std::vector<QueuedFrame> frames;
  std::vector<MessageView> views;
  std::vector<Message> owned;  // what views cannot point into (analytics events)
  FrameHeader header;
  const size_t max_bytes = env_.max_message_bytes * 2;
  while (true) {
    size_t events = 0;  // in the frames popped
    const size_t n = frames_.pop(frames, 16, std::chrono::steady_clock::now() + kPollSlice, &events);
    if (n == 0) {
      if (frames_.closed_and_empty() || stop_.load()) return;
      continue;
    }
    in_hand_ += events;  // off the queue, not yet handled: still visible in stats()
    for (size_t f = 0; f < n; ++f) {
      QueuedFrame& frame = frames[f];
      tsan_acquire(frame.body.data());
      const auto error = decode_frame_views(static_cast<const char*>(frame.body.data()), frame.body.size(),
                                            max_bytes, header, views, owned, /*check_fields=*/false);
      size_t handled = 0;
      if (error)  // the reader read this frame's header; its records are ours: a bug, counted
        log_limit_.log(LogLevel::error, "subscriber '" + options_.name + "': undecodable queued frame (" +
                                            codec::to_string(*error) + ")");
      else
        for (; handled < frame.events && handled < header.count && !stop_.load(std::memory_order_relaxed); ++handled) {
          run_handler(view_handler_, views[handled]);
          in_hand_.fetch_sub(1, std::memory_order_relaxed);
        }
      tsan_release(frame.body.data());
      frame.body.rebuild();  // its buffer goes back to the publisher's pool now
      if (error) ++malformed_;
      if (handled == frame.events) continue;
      // Undecodable (its events counted as dropped_close: the ledger has no other place for
      // them, and this cannot happen to frames the reader read), or close() (or Bus::close past
      // its deadline) came: the rest is dropped and counted, and when closing, so are the frames
      // popped with this one.
      size_t rest = frame.events - handled;
      const bool stopping = stop_.load();
      for (size_t g = f + 1; stopping && g < n; ++g) {
        rest += frames[g].events;
        frames[g].body.rebuild();
      }
      dropped_close_ += rest;
      in_hand_ -= rest;
      if (stopping) return;
    }
    note_consumed();
  }
}

std::optional<Message> Subscriber::next(std::chrono::milliseconds timeout) {
  std::vector<Message> one;
  if (next_batch(one, 1, timeout) == 0) return std::nullopt;
  return std::move(one.front());
}

size_t Subscriber::next_batch(std::vector<Message>& out, size_t max,
                              std::chrono::milliseconds timeout) {
  if (max == 0) return 0;
  std::vector<Message> tmp;
  const size_t n = pending_.pop(tmp, max, std::chrono::steady_clock::now() + timeout);
  for (size_t i = 0; i < n; ++i) out.push_back(std::move(tmp[i]));
  delivered_ += n;
  if (n > 0) note_consumed();
  return n;
}

SubscriptionStats Subscriber::stats() const {
  SubscriptionStats s;
  s.name = options_.name;
  s.topic = options_.topic;
  s.scope = options_.scope;
  s.received = received_.load();
  s.delivered = delivered_.load();
  s.dropped_newest = dropped_newest_.load();
  s.dropped_oldest = dropped_oldest_.load();
  s.dropped_close = dropped_close_.load();
  s.gaps = gaps_.load();
  s.handler_errors = handler_errors_.load();
  s.malformed = malformed_.load();
  s.pending_depth = pending_.size() + frames_.bytes();
  s.in_hand = in_hand_.load();
  s.slow = slow_.load();
  return s;
}

bool Subscriber::finish(std::chrono::steady_clock::time_point deadline) {
  bool in_time = true;
  if (reader_done_.valid() &&
      reader_done_.wait_until(deadline) != std::future_status::ready) {
    in_time = false;
    stop_ = true;
    // The reader is in a handler (it never holds the lock there) or about to see stop_ within
    // a poll slice. The bus's publisher has stopped, so what the pipes hold now is all that
    // will never be read: count it while the context still lets us read it.
    std::lock_guard lock(socket_mu_);
    discard_unread();
  }
  if (handler_done_.valid() &&
      handler_done_.wait_until(deadline) != std::future_status::ready) {
    // The handler thread drains the pending queue, then sees it closed; past the deadline
    // what is left is dropped and counted.
    in_time = false;
    stop_ = true;
    pending_.close();
    dropped_close_ += pending_.clear();
  }
  // Past the deadline, queued frames are dropped and counted now, in the close report: those
  // the handler thread left, and one a stopped reader may have queued after it left on stop_.
  if (!in_time) drop_queued_frames();
  // A thread still inside a user handler cannot be interrupted: joining it here would make
  // close(deadline) wait for the handler. It is joined later, by stop() or the destructor.
  join_finished();
  return in_time;
}

void Subscriber::stop(bool discard_pending) {
  stop_ = true;
  pending_.close();
  frames_.close();
  join();
  // In handler mode nobody will take what is still queued: count it. (In pull mode it stays
  // readable through next() while the Subscription exists.)
  if (handler_ || discard_pending) dropped_close_ += pending_.clear();
  drop_queued_frames();
  if (discard_pending) released_ = true;
  stopped_ = true;
}

// Pull mode waits for release: while the Subscription exists, next() may still be moving
// events from the queue into delivered.
void Subscriber::drop_queued_frames() {
  frames_.close();
  size_t events = 0;
  frames_.clear(&events);
  dropped_close_ += events;
}

bool Subscriber::finished() const { return stopped_.load() && (handler_ || released_.load()); }

void Subscriber::join_finished() {
  std::lock_guard lock(join_mu_);
  auto done = [](const std::future<void>& f) {
    return f.valid() && f.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  };
  if (reader_.joinable() && done(reader_done_)) reader_.join();
  if (handler_thread_.joinable() && done(handler_done_)) handler_thread_.join();
}

void Subscriber::join() {
  std::lock_guard lock(join_mu_);
  if (reader_.joinable()) reader_.join();
  if (handler_thread_.joinable()) handler_thread_.join();
}

}  // namespace reqbus::detail
