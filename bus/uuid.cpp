// UUIDv7 per RFC 9562 section 5.7, with the 12-bit rand_a used as a per-thread counter within a
// millisecond ("method 1"), so ids made by one thread are strictly increasing.
#include <chrono>
#include <cstring>
#include <random>

#include "reqbus/hex.hpp"
#include "reqbus/uuid.hpp"

namespace reqbus {
namespace {

struct Generator {
  uint64_t state;
  int64_t last_ms = -1;
  uint32_t counter = 0;

  Generator() {
    std::random_device rd;
    state = (uint64_t(rd()) << 32) ^ rd() ^
            uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  uint64_t next() {  // splitmix64: fast, well distributed; ids need uniqueness, not secrecy
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

thread_local Generator t_gen;

// The 128 bits as two words, then their 32 digits with the dashes put in: 8-4-4-4-12.
void write_uuid(int64_t ms, uint32_t counter, uint64_t rand_b, char out[36]) {
  const uint64_t hi = (uint64_t(ms) << 16) | 0x7000 | (counter & 0x0FFF);  // unix_ts_ms, ver, rand_a
  const uint64_t lo = (rand_b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // var, rand_b
  char d[16];
  hex::put_u32(uint32_t(hi >> 32), out);  // 0..8
  out[8] = '-';
  hex::put_u32(uint32_t(hi), d);
  std::memcpy(out + 9, d, 4);
  out[13] = '-';
  std::memcpy(out + 14, d + 4, 4);
  out[18] = '-';
  hex::put_u32(uint32_t(lo >> 32), d + 8);
  std::memcpy(out + 19, d + 8, 4);
  out[23] = '-';
  std::memcpy(out + 24, d + 12, 4);
  hex::put_u32(uint32_t(lo), out + 28);  // 28..36
}

void format(int64_t ms, char out[36]) {
  Generator& g = t_gen;
  if (ms > g.last_ms) {
    g.last_ms = ms;
    g.counter = uint32_t(g.next() & 0x3FF);  // random start, leaves room to count up
  } else if (++g.counter > 0xFFF) {          // 4096 ids in one ms: borrow the next ms
    g.last_ms += 1;
    g.counter = 0;
  }
  write_uuid(g.last_ms, g.counter, g.next(), out);
}

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void uuid_v7_into(char out[36]) { format(now_ms(), out); }
void uuid_v7_into(char out[36], int64_t unix_ms) { format(unix_ms, out); }

std::string uuid_v7_at(int64_t unix_ms) {
  std::string s(36, '\0');
  format(unix_ms, s.data());
  return s;
}

std::string uuid_v7_from(int64_t unix_ms, uint64_t bits_hi, uint64_t bits_lo) {
  std::string s(36, '\0');
  write_uuid(unix_ms, uint32_t(bits_hi & 0xFFF), bits_lo, s.data());
  return s;
}

std::string uuid_v7() { return uuid_v7_at(now_ms()); }

}  // namespace reqbus
