#pragma once
// FrameQueue: the publish queue between broadcast() callers and the publisher thread.
//
// Callers append their encoded record to the frame being filled for its channel (topic +
// scope), under one short lock: a copy of the record's bytes onto the end of one buffer. The
// publisher thread takes whole frames, writes each one's header into the room left at its front
// and sends the buffer itself as the ZeroMQ message (no copy). When ZeroMQ releases the message,
// the buffer returns to a small pool and is filled again.
//
// Why not a queue of records: each record then sat in its own buffer, the buffers circulated
// between callers, queue slots and the publisher, and every event's bytes were written into
// memory another thread had touched a thousand events earlier. Measured with both servers of
// bench/web_bench on one CPU, that push cost 2.5-3.5 % of the web server's CPU per request
// (docs/BENCHMARKS.md, session 7).
//
// Bounds and overflow policies are BoundedQueue's (bus/bounded_queue.hpp; the overflow loop in
// push() is the same): at most max_events events and max_bytes record bytes are queued (one
// oversized record still fits alone); drop_oldest evicts the oldest queued events one by one.
//
// Thread-safety: push() from any number of threads; pop() from one consumer; close(), wake(),
// clear(), size() and bytes() from any thread. A FrameBuffer's release (to_message's deleter)
// may run on any thread, also after the queue is gone.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "bus/bounded_queue.hpp"
#include "reqbus/overflow.hpp"

namespace reqbus::detail {

class FramePool;

// One frame's bytes: `room` bytes reserved for the header, then records back to back.
struct FrameBuffer {
  std::string bytes;             // [0, start) free (header room); [start, size) records
  size_t start = 0;              // first live record; moves on when drop_oldest evicts
  std::vector<uint32_t> sizes;   // record sizes in order; [first, size) are live
  size_t first = 0;
  std::string topic;
  char scope = 0;
  std::shared_ptr<FramePool> home;  // set while ZeroMQ holds it; the release returns it there

  uint32_t count() const { return uint32_t(sizes.size() - first); }
};

// Buffers kept for reuse, so their capacity is not allocated again frame after frame.
class FramePool {
 public:
  explicit FramePool(size_t keep) : keep_(keep) { idle_.reserve(keep); }
  std::unique_ptr<FrameBuffer> get();
  // Kept if fewer than `keep` are idle, else freed. Never throws (ZeroMQ's release calls it).
  void put(std::unique_ptr<FrameBuffer> buffer) noexcept;

 private:
  const size_t keep_;
  std::mutex mu_;
  std::vector<std::unique_ptr<FrameBuffer>> idle_;  // guarded by mu_
};

class FrameQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Frames hold at most frame_events records and, past the first record, frame_bytes record
  // bytes; header_room bytes are reserved at each frame's front for the publisher's header.
  FrameQueue(size_t max_events, size_t max_bytes, size_t frame_events, size_t frame_bytes,
             size_t header_room);

  // Lazy wake-ups (off by default). While events keep arriving, the consumer naps for up to
  // `nap` when it finds the queue empty, and producers wake it only once a full frame's worth
  // of events (frame_events) is waiting: a push then costs no system call, and frames fill, at
  // the price of up to `nap` of extra latency. After `idle` without events it sleeps soundly
  // again and the next push wakes it at once. Call before the first pop().
  void set_lazy_wake(Clock::duration nap, Clock::duration idle);

  // Sequence stamping (off by default): every record pushed ends with a 9-byte msgpack uint64
  // (0xcf and 8 bytes; the encoder writes kSeqToStamp there) whose 8 bytes push() overwrites,
  // under its lock, with the next sequence number: 0, 1, 2... in the order records enter the
  // queue. So callers share no counter of their own (one cache line fewer moving between CPUs
  // per event), and sequence numbers rise in frame order. Call before the first push().
  static constexpr uint64_t kSeqToStamp = ~uint64_t(0);
  void stamp_sequence();

  // Copies `record` onto the end of its channel's open frame (or a new frame).
  PushOutcome push(std::string_view record, std::string_view topic, char scope, Overflow policy,
                   Clock::time_point deadline);

  // Waits until an event is queued (or, napping, a frame's worth), the queue is closed, wake()
  // is called, or `deadline`; then moves up to `max_frames` frames into `out` (cleared first),
  // oldest first, the one being filled included. Returns the number of events taken. Taking a
  // few at a time keeps what the publisher holds outside the queue's bounds small while it
  // waits on a slow subscriber.
  size_t pop(std::vector<std::unique_ptr<FrameBuffer>>& out, size_t max_frames, Clock::time_point deadline);

  void wake();
  void close();
  bool closed_and_empty() const;
  size_t clear();  // drops everything queued; returns the number of events
  size_t size() const;
  size_t bytes() const;
  uint64_t accepted() const;  // records push() has taken (returned ok), ever

  // Where sent frames go back: the publisher sets FrameBuffer::home to it before handing a
  // frame to ZeroMQ, and the message's release puts the buffer there.
  const std::shared_ptr<FramePool>& pool() const { return pool_; }

 private:
  bool fits(size_t bytes) const {
    if (count_ == max_events_) return false;
    return count_ == 0 || bytes_ + bytes <= max_bytes_;
  }
  void evict_oldest();  // requires mu_ and count_ > 0
  std::unique_ptr<FrameBuffer> new_frame(std::string_view topic, char scope);

  const size_t max_events_, max_bytes_, frame_events_, frame_bytes_, header_room_;
  const std::shared_ptr<FramePool> pool_;

  mutable std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<std::unique_ptr<FrameBuffer>> frames_;  // guarded by mu_; back() is being filled
  size_t count_ = 0;  // guarded by mu_: events in frames_
  size_t bytes_ = 0;  // guarded by mu_: record bytes in frames_
  uint64_t accepted_ = 0;  // guarded by mu_: also the next sequence number when stamping
  bool stamp_ = false;
  size_t producers_waiting_ = 0;
  bool consumer_waiting_ = false;
  bool consumer_napping_ = false;
  Clock::duration nap_{};
  Clock::duration idle_{};
  Clock::time_point last_item_{};
  bool wake_ = false;
  bool closed_ = false;
};

}  // namespace reqbus::detail
