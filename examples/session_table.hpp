#pragma once
// SessionTable: the RequestLogger's sessions — a bounded map from a 128-bit session id to its
// page views and last-seen time, in flat 32-byte slots. No allocation per session and no hash
// table: the table makes the ids, and the low 32 bits of an id are its slot's index, so a
// lookup is one array access and a 128-bit compare. The other 96 bits are random, so an id is
// still unguessable, and a cookie naming a slot that now holds another session (evicted,
// expired, or forged) does not match it.
//
// A returning visitor — nine requests in ten on a typical site — costs one slot: touch() takes
// only that slot's own lock (a byte in the slot's own 32 bytes) and no table-wide one, so
// server threads counting different visitors share no cache line. (With one mutex for the
// table, that mutex's line moved between the CPUs on every request: web_bench measured 3-4 %
// of the server's CPU for sessions, against ~350 instructions of work.) New sessions, expiry
// and eviction take the table's mutex, then the slot's lock; touch() never holds the one while
// waiting for the other, so the two orders cannot deadlock.
//
// When the table is full a new session takes the slot of one not seen lately, chosen by CLOCK
// (second chance): a hand sweeps the slots, a slot touched since the hand last passed is
// spared once (its mark cleared), the first unmarked one is evicted. This is LRU's usual
// approximation — it needs no list relinked on every page view, which would be table-wide
// state again. A new session starts unmarked: one that never comes back goes first.
//
// Slots live in chunks of 4096 that never move once made, so touch() can read a slot while a
// new session grows the table; `made_` (release/acquire) publishes each slot after its chunk.
//
// Thread-safety: every member may be called from any thread at once.
#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
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
  static constexpr size_t kMaxCapacity = size_t(1) << 30;  // slot indices are 32-bit
  using TimePoint = std::chrono::steady_clock::time_point;
  using Duration = std::chrono::steady_clock::duration;

  // capacity: 1..kMaxCapacity sessions, 32 bytes each, made as they are needed. The caller
  // checks the range (the RequestLogger, to name its option in the error); nothing bigger than
  // kMaxCapacity is allocated for even so.
  explicit SessionTable(size_t capacity)
      : capacity_(capacity),
        chunks_(new std::unique_ptr<Slot[]>[(std::min(capacity, kMaxCapacity) + kChunk - 1) / kChunk]) {}

  size_t size() const {
    std::lock_guard lock(mu_);
    return live_;
  }
  size_t capacity() const { return capacity_; }

  // What touch() found.
  enum class Seen {
    returning,  // a live session, seen within `idle`: its page view is counted
    unknown,    // no such session (never made, evicted, or forged)
    expired,    // the session was idle longer than `idle`: it is removed
  };
  // Counts a page view at `now` for the session `id` (any id: it may come from a client) and
  // sets `page_views` to its count when returning.
  Seen touch(const Id& id, TimePoint now, Duration idle, uint32_t& page_views) {
    Slot* slot = find(id);
    if (!slot) return Seen::unknown;
    {
      SlotLock held(*slot);
      if (!held.matches(id)) return Seen::unknown;
      if (now - slot->last_seen <= idle) return page_views = slot->count(now), Seen::returning;
    }
    // Expired: removed under the table's lock (its free list and count). Another thread may
    // have touched or removed it meanwhile, so it is looked at again.
    std::lock_guard lock(mu_);
    SlotLock held(*slot);
    if (!held.matches(id)) return Seen::unknown;
    if (now - slot->last_seen <= idle) return page_views = slot->count(now), Seen::returning;
    slot->live = false;
    free_.push_back(uint32_t(id.lo));
    --live_;
    return Seen::expired;
  }

  // The page views of a live session, or 0. Changes nothing (not even CLOCK's mark).
  uint32_t page_views(const Id& id) const {
    Slot* slot = find(id);
    if (!slot) return 0;
    SlotLock held(*slot);
    return held.matches(id) ? slot->page_views : 0;
  }

  // The random part of a new session's id: 96 bits from the kernel's CSPRNG (getrandom), so an
  // id cannot be predicted from the ids other visitors were given, as a seeded PRNG's could.
  // Drawn from a per-thread pool refilled 256 bytes a system call, and outside the table: the
  // RequestLogger draws before insert(), so the system call (where the scheduler may switch
  // threads) never runs while a lock is held. Throws std::system_error if getrandom fails.
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

  // A new session, one page view, seen at `now`; its id (made of `random` and the slot's index)
  // goes to `id`. When the table is full a session not seen lately (CLOCK, above) makes room;
  // returns true then.
  bool insert(TimePoint now, const Random& random, Id& id) {
    std::lock_guard lock(mu_);
    uint32_t s;
    bool evicted = false;
    if (live_ >= capacity_) {
      s = victim_locked();
      evicted = true;
    } else if (!free_.empty()) {
      s = free_.back();
      free_.pop_back();
      ++live_;
    } else {
      s = made_.load(std::memory_order_relaxed);  // only insert() writes it, under mu_
      if (s % kChunk == 0) chunks_[s / kChunk].reset(new Slot[std::min(kChunk, capacity_ - s)]);
      made_.store(s + 1, std::memory_order_release);  // the slot (and its chunk) exist for find()
      ++live_;
    }
    Slot& slot = at(s);
    SlotLock held(slot);
    // 96 random bits and the slot index: live sessions never share an id, and the old id of a
    // reused slot no longer matches.
    id = Id{random.hi, (random.lo & ~uint64_t(UINT32_MAX)) | s};
    slot.id = id;
    slot.live = true;
    slot.marked = false;
    slot.page_views = 1;
    slot.last_seen = now;
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
  static constexpr size_t kChunk = 4096;  // slots a chunk (128 KiB)

  // 32 bytes, aligned: a slot never straddles two cache lines. Every field is read and written
  // only under the slot's `lock`.
  struct alignas(32) Slot {
    Id id;
    TimePoint last_seen{};
    uint32_t page_views = 0;
    std::atomic<bool> lock{false};
    bool live = false;    // false: never used, or on the free list
    bool marked = false;  // touched since CLOCK's hand last passed

    uint32_t count(TimePoint now) {
      // Two threads may count one session at once with times read in the other order:
      // last_seen never goes back.
      if (now > last_seen) last_seen = now;
      marked = true;
      return ++page_views;
    }
  };
  static_assert(sizeof(Slot) == 32);

  // A slot's spin lock: held for a few loads and stores, never across a system call, so a
  // waiter spins briefly and yields if the holder was preempted.
  class SlotLock {
   public:
    explicit SlotLock(Slot& slot) : slot_(slot) {
      for (int spins = 0; slot_.lock.exchange(true, std::memory_order_acquire);)
        while (slot_.lock.load(std::memory_order_relaxed))
          if (++spins > 64) std::this_thread::yield();
    }
    ~SlotLock() { slot_.lock.store(false, std::memory_order_release); }
    SlotLock(const SlotLock&) = delete;
    SlotLock& operator=(const SlotLock&) = delete;
    bool matches(const Id& id) const { return slot_.live && slot_.id == id; }

   private:
    Slot& slot_;
  };

  Slot& at(uint32_t s) const { return chunks_[s / kChunk][s % kChunk]; }
  // The slot an id names, if that slot has been made; whether it holds the id is for its lock.
  Slot* find(const Id& id) const {
    const uint32_t s = uint32_t(id.lo);
    return s < made_.load(std::memory_order_acquire) ? &at(s) : nullptr;
  }

  // CLOCK: the first slot from the hand on that was not touched since the hand last passed,
  // clearing the marks it passes. The table is full, so every slot is live; ends within two
  // turns. Holds mu_.
  uint32_t victim_locked() {
    for (;;) {
      const uint32_t s = hand_;
      hand_ = hand_ + 1 == capacity_ ? 0 : hand_ + 1;
      Slot& slot = at(s);
      SlotLock held(slot);
      if (!slot.marked) return s;
      slot.marked = false;
    }
  }

  const size_t capacity_;
  const std::unique_ptr<std::unique_ptr<Slot[]>[]> chunks_;  // made as needed; never move
  std::atomic<uint32_t> made_{0};  // slots made, in index order; written under mu_

  mutable std::mutex mu_;          // guards what follows
  std::vector<uint32_t> free_;     // slots of expired sessions, to reuse
  uint32_t hand_ = 0;              // CLOCK's hand
  size_t live_ = 0;
};

}  // namespace reqbus::examples
