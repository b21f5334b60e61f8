#pragma once
// The Batcher's randomness and timing formulas, in one place so tests can compute the exact
// flush and retry times a given seed produces.
// Thread-safety: SplitMix64 is not thread-safe (the Batcher guards each generator); the
// functions are pure.
#include <algorithm>
#include <chrono>
#include <cstdint>

namespace reqbus::detail {

// splitmix64: tiny, fast, and the same sequence on every platform for a seed.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (lo when hi <= lo).
  int64_t between(int64_t lo, int64_t hi) {
    if (hi <= lo) return lo;
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }

 private:
  uint64_t state_;
};

// Flush jitter and retry backoff draw from separate generators, so one does not shift the
// other's sequence.
inline uint64_t jitter_seed(uint64_t seed) { return seed ^ 0x6A09E667F3BCC909ull; }
inline uint64_t retry_seed(uint64_t seed) { return seed; }

// Time until a buffer's next timed flush: interval + random(0..jitter).
inline std::chrono::milliseconds flush_delay(std::chrono::milliseconds interval,
                                             std::chrono::milliseconds jitter, SplitMix64& rng) {
  return interval + std::chrono::milliseconds(rng.between(0, jitter.count()));
}

// Wait before attempt `attempt + 1` (attempt counts from 1), Mxpanel's formula:
// attempt * base + random(1..base), and never less than the sink's retry_after.
inline std::chrono::milliseconds retry_wait(int attempt, std::chrono::milliseconds base,
                                            std::chrono::milliseconds retry_after,
                                            SplitMix64& rng) {
  std::chrono::milliseconds wait{0};
  if (base.count() > 0) wait = attempt * base + std::chrono::milliseconds(rng.between(1, base.count()));
  return std::max(wait, retry_after);
}

}  // namespace reqbus::detail
