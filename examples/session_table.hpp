#pragma once
// SessionTable: the RequestLogger's sessions — a bounded LRU map from a 128-bit session id to
// its page views and last-seen time, in one flat array of ~40-byte slots. No allocation per
// session, and no hash table: the table makes the ids, and the low 32 bits of an id are its
// slot's index, so find() is one array access and a 128-bit compare (one cache miss where a
// hash lookup took two; web_bench saw those misses as half of the logger's session cost).
// The other 96 bits are random, so an id is still unguessable, and a cookie naming a slot that
// now holds another session (evicted, expired, or forged) does not match it.
//
// Thread-safety: none, but for draw_random() (any thread: its pool is per thread); the
// RequestLogger holds its mutex around every other call.
#include <sys/random.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <string_view>
#include <system_error>
#include <vector>

#include "reqbus/hex.hpp"

namespace reqbus::examples {

class SessionTable {
 public:
  struct Id {
    uint64_t hi = 0, lo = 0;
    bool operator==(const Id&) const = default;
  };
  static constexpr size_t kTextSize = 32;  // an id as text: 32 lowercase hex digits
  static constexpr uint32_t npos = UINT32_MAX;
  static constexpr size_t kMaxCapacity = size_t(1) << 30;  // slot indices are 32-bit
  using TimePoint = std::chrono::steady_clock::time_point;

  explicit SessionTable(size_t capacity) : capacity_(capacity) {}

  size_t size() const { return live_; }
  size_t capacity() const { return capacity_; }

  // The session with this id, or npos. Any id may come from a client: the index is checked.
  uint32_t find(const Id& id) const {
    const uint32_t s = uint32_t(id.lo);
    if (s >= slots_.size() || !slots_[s].live || !(slots_[s].id == id)) return npos;
    return s;
  }
  uint32_t page_views(uint32_t s) const { return slots_[s].page_views; }
  TimePoint last_seen(uint32_t s) const { return slots_[s].last_seen; }
  const Id& id(uint32_t s) const { return slots_[s].id; }

  // Counts a page view at `now` and makes the session the most recently seen.
  uint32_t touch(uint32_t s, TimePoint now) {
    Slot& slot = slots_[s];
    slot.last_seen = now;
    unlink(s);
    push_front(s);
    return ++slot.page_views;
  }

  void erase(uint32_t s) {
    slots_[s].live = false;
    unlink(s);
    slots_[s].next = free_;
    free_ = s;
    --live_;
  }

  // The random part of a new session's id: 96 bits from the kernel's CSPRNG (getrandom), so an
  // id cannot be predicted from the ids other visitors were given, as a seeded PRNG's could.
  // Drawn from a per-thread pool refilled 256 bytes a system call, and outside the table: the
  // RequestLogger draws before taking its lock, so the system call (where the scheduler may
  // switch threads) never runs while it holds it. Throws std::system_error if getrandom fails.
  struct Random {
    uint64_t hi = 0, lo = 0;
  };
  static Random draw_random() {
    thread_local uint64_t pool[32];
    thread_local size_t next = std::size(pool);
    if (next + 2 > std::size(pool)) {
      size_t got = 0;
      while (got < sizeof pool) {
        const ssize_t n = ::getrandom(reinterpret_cast<char*>(pool) + got, sizeof pool - got, 0);
        if (n > 0) got += size_t(n);
        else if (errno != EINTR) throw std::system_error(errno, std::generic_category(), "getrandom");
      }
      next = 0;
    }
    const Random r{pool[next], pool[next + 1]};
    next += 2;
    return r;
  }

  // A new session, one page view, seen at `now`, its id made of `random` and the slot's index.
  // When the table is full the least recently seen session makes room; returns true then.
  bool insert(TimePoint now, const Random& random, uint32_t& out) {
    bool evicted = false;
    uint32_t s;
    if (live_ >= capacity_) {
      s = tail_;
      unlink(s);
      evicted = true;
    } else {
      if (free_ != npos) {
        s = free_;
        free_ = slots_[s].next;
      } else {
        s = uint32_t(slots_.size());
        slots_.emplace_back();
      }
      ++live_;
    }
    Slot& slot = slots_[s];
    // 96 random bits and the slot index: live sessions never share an id, and the old id of a
    // reused slot no longer matches.
    slot.id = Id{random.hi, (random.lo & ~uint64_t(UINT32_MAX)) | s};
    slot.live = true;
    slot.page_views = 1;
    slot.last_seen = now;
    push_front(s);
    out = s;
    return evicted;
  }

  // Text form: 32 lowercase hex digits, hi first.
  static void format(const Id& id, char* out) {
    hex::put_u64(id.hi, out);
    hex::put_u64(id.lo, out + 16);
  }
  // Parses the text form; false if `text` is not 32 lowercase hex digits.
  static bool parse(std::string_view text, Id& id) {
    if (text.size() != kTextSize) return false;
    uint32_t q[4];
    for (int i = 0; i < 4; ++i)
      if (!hex::parse_u32(text.data() + 8 * i, q[i])) return false;
    id = Id{uint64_t(q[0]) << 32 | q[1], uint64_t(q[2]) << 32 | q[3]};
    return true;
  }

 private:
  struct Slot {
    Id id;
    uint32_t prev = npos, next = npos;  // LRU neighbours (next: the free list when erased)
    uint32_t page_views = 0;
    bool live = false;                  // false: free (erased), on the free list
    TimePoint last_seen{};
  };

  void unlink(uint32_t s) {
    Slot& slot = slots_[s];
    (slot.prev == npos ? head_ : slots_[slot.prev].next) = slot.next;
    (slot.next == npos ? tail_ : slots_[slot.next].prev) = slot.prev;
  }
  void push_front(uint32_t s) {
    Slot& slot = slots_[s];
    slot.prev = npos;
    slot.next = head_;
    (head_ == npos ? tail_ : slots_[head_].prev) = s;
    head_ = s;
  }

  const size_t capacity_;
  std::vector<Slot> slots_;  // grows to capacity_; erased slots are reused (free_)
  uint32_t head_ = npos, tail_ = npos, free_ = npos;  // most / least recently seen; free list
  size_t live_ = 0;
};

}  // namespace reqbus::examples
