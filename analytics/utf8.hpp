#pragma once
// UTF-8 checks for the places request fields go that take only UTF-8: JSON (request_json.cpp),
// PostgreSQL text (sinks/postgres_detail.cpp) and terminals (app/terminal_text.hpp). Request
// fields themselves are bytes: a web server logs what a client sent, and SQLite keeps it as is.
// Thread-safety: pure functions.
#include <cstddef>
#include <string>
#include <string_view>

namespace reqbus::utf8 {

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD, what invalid bytes become

// Length of the well-formed UTF-8 sequence starting at s[i] (1 for ASCII; RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0 when s[i] does not start one (a stray
// continuation byte, an invalid lead byte, a sequence cut short).
inline size_t sequence(std::string_view s, size_t i) noexcept {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEF) n = 3, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (i + n > s.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

inline bool valid(std::string_view s) noexcept {
  for (size_t i = 0, n = 0; i < s.size(); i += n)
    if ((n = sequence(s, i)) == 0) return false;
  return true;
}

// `s` as valid UTF-8: each byte that starts no valid sequence becomes U+FFFD, or with
// `collapse_runs` each run of such bytes becomes one (a scanner's 700 x \xff then takes 3 bytes,
// not 2,100, and what follows it still fits a field's limit). Valid UTF-8 is copied as is.
inline std::string replace_invalid(std::string_view s, bool collapse_runs = false) {
  std::string out;
  out.reserve(s.size() + 2);
  bool in_run = false;
  for (size_t i = 0; i < s.size();) {
    const size_t n = sequence(s, i);
    if (n) {
      out.append(s.substr(i, n));
      i += n;
      in_run = false;
      continue;
    }
    if (!(collapse_runs && in_run)) out.append(kReplacement);
    in_run = true;
    ++i;
  }
  return out;
}

}  // namespace reqbus::utf8
