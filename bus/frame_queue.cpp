#include "bus/frame_queue.hpp"

#include <algorithm>
#include <cstring>

#include "bus/wire_io.hpp"

namespace reqbus::detail {

std::unique_ptr<FrameBuffer> FramePool::get() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      auto b = std::move(idle_.back());
      idle_.pop_back();
      return b;
    }
  }
  return std::make_unique<FrameBuffer>();
}

void FramePool::put(std::unique_ptr<FrameBuffer> buffer) noexcept {
  buffer->home.reset();
  std::lock_guard lock(mu_);
  if (idle_.size() < keep_) idle_.push_back(std::move(buffer));  // reserved: no allocation
}

FrameQueue::FrameQueue(size_t max_events, size_t max_bytes, size_t frame_events, size_t frame_bytes,
                       size_t header_room)
    : max_events_(max_events),
      max_bytes_(max_bytes),
      frame_events_(std::max<size_t>(1, frame_events)),
      frame_bytes_(frame_bytes),
      header_room_(header_room),
      // Frames in hand at once: the one being filled, the one being sent and a few a slow
      // subscriber still holds; more are allocated when needed and freed after.
      pool_(std::make_shared<FramePool>(8)) {}

void FrameQueue::stamp_sequence() {
  std::lock_guard lock(mu_);
  stamp_ = true;
}

void FrameQueue::set_lazy_wake(Clock::duration nap, Clock::duration idle) {
  std::lock_guard lock(mu_);
  nap_ = nap;
  idle_ = idle;
}

std::unique_ptr<FrameBuffer> FrameQueue::new_frame(std::string_view topic, char scope) {
  auto f = pool_->get();
  f->bytes.assign(header_room_, '\0');
  f->start = header_room_;
  f->sizes.clear();
  f->first = 0;
  f->topic.assign(topic);
  f->scope = scope;
  return f;
}

PushOutcome FrameQueue::push(std::string_view record, std::string_view topic, char scope, Overflow policy,
                             Clock::time_point deadline) {
  const size_t size = record.size();
  std::unique_lock lock(mu_);
  PushOutcome outcome;
  while (!closed_ && !fits(size)) {
    if (policy == Overflow::drop_newest) return {PushResult::dropped_newest, 0};
    if (policy == Overflow::drop_oldest) {
      evict_oldest();
      ++outcome.evicted;
      continue;
    }
    ++producers_waiting_;
    if (consumer_waiting_) not_empty_.notify_one();  // a napping consumer must make room now
    const bool woke = not_full_.wait_until(lock, deadline, [&] { return closed_ || fits(size); });
    --producers_waiting_;
    if (!woke) return {PushResult::timed_out, 0};
  }
  if (closed_) return {PushResult::closed, outcome.evicted};
  // A queued frame is never empty (evict_oldest drops emptied ones), so a record larger than
  // frame_bytes still gets a frame of its own.
  FrameBuffer* back = frames_.empty() ? nullptr : frames_.back().get();
  if (!back || back->scope != scope || back->topic != topic || back->count() >= frame_events_ ||
      back->bytes.size() - back->start + size > frame_bytes_) {
    frames_.push_back(new_frame(topic, scope));  // from the pool: allocates only when it is empty
    back = frames_.back().get();
  }
  back->bytes.append(record);
  if (stamp_ && size >= 9) {  // big-endian, as msgpack writes a uint64
    const uint64_t seq = codec::detail::big_endian(accepted_);
    std::memcpy(back->bytes.data() + back->bytes.size() - 8, &seq, 8);
  }
  back->sizes.push_back(uint32_t(size));
  bytes_ += size;
  ++count_;
  ++accepted_;
  const bool wake_consumer = consumer_waiting_ && (!consumer_napping_ || count_ >= frame_events_);
  lock.unlock();
  // Notified after unlocking (so also in pop and in BoundedQueue). The woken thread may preempt
  // this one at once (the scheduler favours a thread that has just woken up). Notified under
  // the lock, the publisher then blocked on mu_ at once, and every producer after it, until the
  // scheduler came back to this thread: web_bench's broadcast() took 0.2-4 ms about 60 times
  // a second (once a frame), which was most of its mean time.
  if (wake_consumer) not_empty_.notify_one();
  return outcome;
}

void FrameQueue::evict_oldest() {
  FrameBuffer& f = *frames_.front();
  const uint32_t size = f.sizes[f.first++];
  f.start += size;
  bytes_ -= size;
  --count_;
  if (f.count() == 0) {
    pool_->put(std::move(frames_.front()));
    frames_.pop_front();
  }
}

size_t FrameQueue::pop(std::vector<std::unique_ptr<FrameBuffer>>& out, size_t max_frames,
                       Clock::time_point deadline) {
  out.clear();
  std::unique_lock lock(mu_);
  if (count_ == 0 && !closed_ && !wake_) {
    const Clock::time_point now = Clock::now();
    consumer_waiting_ = true;
    if (nap_ > Clock::duration::zero() && now - last_item_ < idle_) {
      consumer_napping_ = true;
      not_empty_.wait_until(lock, std::min(deadline, now + nap_),
                            [&] { return count_ >= frame_events_ || producers_waiting_ > 0 || closed_ || wake_; });
      consumer_napping_ = false;
    } else {
      not_empty_.wait_until(lock, deadline, [&] { return count_ > 0 || closed_ || wake_; });
    }
    consumer_waiting_ = false;
  }
  wake_ = false;
  size_t n = 0;
  while (!frames_.empty() && out.size() < max_frames) {  // none is empty: see evict_oldest
    FrameBuffer& f = *frames_.front();
    n += f.count();
    bytes_ -= f.bytes.size() - f.start;
    out.push_back(std::move(frames_.front()));
    frames_.pop_front();
  }
  count_ -= n;
  const bool wake_producers = n > 0 && producers_waiting_ > 0;
  if (n > 0 && nap_ > Clock::duration::zero()) last_item_ = Clock::now();
  lock.unlock();
  if (wake_producers) not_full_.notify_all();  // after unlocking: see push()
  return n;
}

void FrameQueue::wake() {
  std::lock_guard lock(mu_);
  wake_ = true;
  not_empty_.notify_all();
}

void FrameQueue::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  not_empty_.notify_all();
  not_full_.notify_all();
}

bool FrameQueue::closed_and_empty() const {
  std::lock_guard lock(mu_);
  return closed_ && count_ == 0;
}

size_t FrameQueue::clear() {
  std::lock_guard lock(mu_);
  const size_t n = count_;
  for (auto& f : frames_) pool_->put(std::move(f));
  frames_.clear();
  count_ = 0;
  bytes_ = 0;
  not_full_.notify_all();
  return n;
}

size_t FrameQueue::size() const {
  std::lock_guard lock(mu_);
  return count_;
}

uint64_t FrameQueue::accepted() const {
  std::lock_guard lock(mu_);
  return accepted_;
}

size_t FrameQueue::bytes() const {
  std::lock_guard lock(mu_);
  return bytes_;
}

}  // namespace reqbus::detail
