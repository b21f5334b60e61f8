#pragma once
// Lowercase hex digits, for ids formatted and parsed once per request (UUIDv7 request ids, the
// example RequestLogger's session ids): eight digits at a time in one 64-bit word.
// Thread-safety: constants and pure functions.
#include <array>
#include <cstdint>
#include <cstring>

namespace reqbus::hex {

// Each character's digit value; kNotDigit (high bit set) for anything but 0-9 and a-f.
inline constexpr uint8_t kNotDigit = 0x80;
inline constexpr std::array<uint8_t, 256> kValues = [] {
  std::array<uint8_t, 256> t{};
  t.fill(kNotDigit);
  for (int c = '0'; c <= '9'; ++c) t[c] = uint8_t(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = uint8_t(c - 'a' + 10);
  return t;
}();

// The 8 digits of `v`, most significant first, as the bytes of a word to store with memcpy
// (SWAR: the nibbles are spread one a byte, ordered, and made digits in a few word operations,
// about a tenth of a table loop's instructions; a UUID is formatted for every event published).
inline uint64_t digits_u32(uint32_t v) {
  uint64_t x = v;
  x = (x | (x << 16)) & 0x0000ffff0000ffffull;
  x = (x | (x << 8)) & 0x00ff00ff00ff00ffull;
  x = (x | (x << 4)) & 0x0f0f0f0f0f0f0f0full;  // byte i: nibble i (least significant first)
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  x = __builtin_bswap64(x);  // the most significant nibble into the first byte in memory
#endif
  constexpr uint64_t kOnes = 0x0101010101010101ull;
  const uint64_t letter = ((x + kOnes * 6) >> 4) & kOnes;  // 1 where the nibble is 10..15
  return x + kOnes * '0' + letter * ('a' - '0' - 10);
}

// Writes the 8 digits of `v`, most significant first, at out[0..8).
inline void put_u32(uint32_t v, char* out) {
  const uint64_t d = digits_u32(v);
  std::memcpy(out, &d, 8);
}

// Writes the 16 digits of `v`, most significant first, at out[0..16).
inline void put_u64(uint64_t v, char* out) {
  put_u32(uint32_t(v >> 32), out);
  put_u32(uint32_t(v), out + 8);
}

// Reads the 8 lowercase hex digits at p[0..8), most significant first, into `out`; false if
// any is not 0-9 or a-f. All eight at once in one 64-bit word (SWAR): each byte is classified
// by two additions that cannot carry into its neighbour (ASCII bytes are < 0x80), then the
// nibbles are packed. A quarter of the table loop's instructions, for the session cookie
// every request carries.
inline bool parse_u32(const char* p, uint32_t& out) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  uint64_t x;
  std::memcpy(&x, p, 8);  // p[0] in the low byte
  if (x & kHigh) return false;
  const uint64_t digit = (x + kOnes * (0x80 - '0')) & ~(x + kOnes * (0x80 - '9' - 1)) & kHigh;
  const uint64_t letter = (x + kOnes * (0x80 - 'a')) & ~(x + kOnes * (0x80 - 'f' - 1)) & kHigh;
  if ((digit | letter) != kHigh) return false;
  const uint64_t v = (x & kOnes * 0x0f) + (letter >> 7) * 9;                    // a nibble a byte
  const uint64_t t = ((v << 4) | (v >> 8)) & 0x00ff00ff00ff00ffull;              // pairs -> bytes
  const uint64_t u = ((t << 8) | (t >> 16)) & 0x0000ffff0000ffffull;             // -> 16-bit halves
  out = uint32_t((u << 16) | (u >> 32));
  return true;
#else
  uint32_t v = 0;
  uint8_t bad = 0;
  for (int i = 0; i < 8; ++i) {
    const uint8_t d = kValues[static_cast<unsigned char>(p[i])];
    bad |= d;
    v = v << 4 | (d & 15);
  }
  out = v;
  return !(bad & kNotDigit);
#endif
}

}  // namespace reqbus::hex
