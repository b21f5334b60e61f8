#pragma once
// Lowercase hex digits by table, for ids formatted and parsed once per request (UUIDv7 request
// ids, the example RequestLogger's session ids): two characters per byte in one copy, and a
// digit's value in one lookup.
// Thread-safety: constants and pure functions.
#include <array>
#include <cstdint>
#include <cstring>

namespace reqbus::hex {

// "000102...ff": the two digits of each byte value.
inline constexpr std::array<char, 512> kPairs = [] {
  std::array<char, 512> t{};
  for (int b = 0; b < 256; ++b) {
    t[2 * b] = "0123456789abcdef"[b >> 4];
    t[2 * b + 1] = "0123456789abcdef"[b & 15];
  }
  return t;
}();

// Each character's digit value; kNotDigit (high bit set) for anything but 0-9 and a-f.
inline constexpr uint8_t kNotDigit = 0x80;
inline constexpr std::array<uint8_t, 256> kValues = [] {
  std::array<uint8_t, 256> t{};
  t.fill(kNotDigit);
  for (int c = '0'; c <= '9'; ++c) t[c] = uint8_t(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = uint8_t(c - 'a' + 10);
  return t;
}();

// Writes the two digits of `byte` at out[0..2).
inline void put_byte(uint8_t byte, char* out) { std::memcpy(out, kPairs.data() + 2 * byte, 2); }

// Writes the 16 digits of `v`, most significant first, at out[0..16).
inline void put_u64(uint64_t v, char* out) {
  for (int i = 0; i < 8; ++i) put_byte(uint8_t(v >> (56 - 8 * i)), out + 2 * i);
}

}  // namespace reqbus::hex
