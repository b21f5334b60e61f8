#pragma once
// SessionTable: the RequestLogger's sessions — a bounded LRU map from a 128-bit random session
// id to its page views and last-seen time, in two flat arrays: ~40 bytes a session in slots
// indexed by an open-addressing table (linear probing, backward-shift deletion, 4 bytes a
// bucket, at most half full). No allocation per session, and about a fifth of the memory of a
// std::list + std::unordered_map<std::string> LRU: at 100,000 sessions the old layout took
// ~19 MB of scattered nodes, and its cache misses cost a loaded web server several
// microseconds a request (web_bench).
//
// Ids are made here (never chosen by clients), so the table hashes by the id's first 64 random
// bits. Thread-safety: none; the RequestLogger holds its mutex around every call.
#include <chrono>
#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

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

  // The session with this id, or npos.
  uint32_t find(const Id& id) const {
    if (buckets_.empty()) return npos;
    for (size_t b = bucket_of(id);; b = (b + 1) & mask()) {
      const uint32_t s = buckets_[b];
      if (s == kEmpty) return npos;
      if (slots_[s - 1].id == id) return s - 1;
    }
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
    unbucket(s);
    unlink(s);
    slots_[s].next = free_;
    free_ = s;
    --live_;
  }

  // A new session with a fresh random id, one page view, seen at `now`. When the table is full
  // the least recently seen session makes room; returns true then.
  bool insert(TimePoint now, uint32_t& out) {
    bool evicted = false;
    uint32_t s;
    if (live_ >= capacity_) {
      s = tail_;
      unbucket(s);
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
      if (live_ * 2 > buckets_.size()) grow();
    }
    Slot& slot = slots_[s];
    do slot.id = Id{rng_(), rng_()};
    while (find(slot.id) != npos);  // 2^-128; but never two sessions with one id
    slot.page_views = 1;
    slot.last_seen = now;
    push_front(s);
    place(s);
    out = s;
    return evicted;
  }

  // Text form: 32 lowercase hex digits, hi first.
  static void format(const Id& id, char* out) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int i = 0; i < 16; ++i) out[i] = kHex[(id.hi >> (60 - 4 * i)) & 15];
    for (int i = 0; i < 16; ++i) out[16 + i] = kHex[(id.lo >> (60 - 4 * i)) & 15];
  }
  // Parses the text form; false if `text` is not 32 lowercase hex digits.
  static bool parse(std::string_view text, Id& id) {
    if (text.size() != kTextSize) return false;
    uint64_t half[2] = {0, 0};
    for (size_t i = 0; i < kTextSize; ++i) {
      const char c = text[i];
      uint64_t v;
      if (c >= '0' && c <= '9') v = uint64_t(c - '0');
      else if (c >= 'a' && c <= 'f') v = uint64_t(c - 'a' + 10);
      else return false;
      half[i / 16] = half[i / 16] << 4 | v;
    }
    id = Id{half[0], half[1]};
    return true;
  }

 private:
  static constexpr uint32_t kEmpty = 0;  // buckets hold slot index + 1
  struct Slot {
    Id id;
    uint32_t prev = npos, next = npos;  // LRU neighbours (next: the free list when erased)
    uint32_t page_views = 0;
    TimePoint last_seen{};
  };

  size_t mask() const { return buckets_.size() - 1; }
  size_t bucket_of(const Id& id) const { return size_t(id.hi) & mask(); }

  void place(uint32_t s) {
    size_t b = bucket_of(slots_[s].id);
    while (buckets_[b] != kEmpty) b = (b + 1) & mask();
    buckets_[b] = s + 1;
  }
  // Removes slot s from the buckets, shifting later entries of its probe run back.
  void unbucket(uint32_t s) {
    size_t b = bucket_of(slots_[s].id);
    while (buckets_[b] != s + 1) b = (b + 1) & mask();
    for (size_t next = (b + 1) & mask();; next = (next + 1) & mask()) {
      const uint32_t moving = buckets_[next];
      if (moving == kEmpty) break;
      const size_t home = bucket_of(slots_[moving - 1].id);
      // `moving` may fill the hole at b unless its home lies cyclically in (b, next].
      const bool stays = b <= next ? (b < home && home <= next) : (b < home || home <= next);
      if (!stays) {
        buckets_[b] = moving;
        b = next;
      }
    }
    buckets_[b] = kEmpty;
  }
  void grow() {
    size_t n = buckets_.empty() ? 16 : buckets_.size() * 2;
    while (n < live_ * 2) n *= 2;
    buckets_.assign(n, kEmpty);
    for (uint32_t s = head_; s != npos; s = slots_[s].next) place(s);
  }
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
  std::vector<Slot> slots_;        // grows to capacity_; erased slots are reused (free_)
  std::vector<uint32_t> buckets_;  // power of two, at least twice live_
  uint32_t head_ = npos, tail_ = npos, free_ = npos;  // most / least recently seen; free list
  size_t live_ = 0;
  std::mt19937_64 rng_{std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32)};
};

}  // namespace reqbus::examples
