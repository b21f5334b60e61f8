#pragma once
// Text from requests (paths, user agents) made safe to print on a terminal, for `reqbus top`.
// Pure functions; any thread.
#include <cstddef>
#include <string>
#include <string_view>

namespace reqbus::app {

// The length of the valid UTF-8 sequence of two or more bytes at s[i], or 0 if there is none
// (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, cut short).
inline size_t utf8_sequence_length(std::string_view s, size_t i) noexcept {
  const auto byte = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  const unsigned lead = byte(0);
  size_t length = 0;
  unsigned low = 0x80, high = 0xBF;  // the range of the second byte
  if (lead >= 0xC2 && lead <= 0xDF) length = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) length = 3, low = lead == 0xE0 ? 0xA0 : 0x80, high = lead == 0xED ? 0x9F : 0xBF;
  else if (lead >= 0xF0 && lead <= 0xF4) length = 4, low = lead == 0xF0 ? 0x90 : 0x80, high = lead == 0xF4 ? 0x8F : 0xBF;
  else return 0;
  if (byte(1) < low || byte(1) > high) return 0;
  for (size_t k = 2; k < length; ++k)
    if (byte(k) < 0x80 || byte(k) > 0xBF) return 0;
  return length;
}

// `s` with every character a terminal could take for a control replaced by '?': C0 controls
// (bytes below 0x20: ESC starts escape sequences), DEL (0x7f), the C1 controls U+0080-U+009F
// (UTF-8 C2 80-C2 9F; U+009B is CSI, which many terminals obey like ESC [) and bytes that are no
// valid UTF-8 (a terminal in an 8-bit locale reads a lone 0x9b as CSI too). Other UTF-8 is kept.
// Cut to at most `width` bytes, on a character boundary, ending in '~' when it was cut.
inline std::string terminal_text(std::string_view s, size_t width) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(c < 0x20 || c == 0x7f ? '?' : char(c));
      ++i;
      continue;
    }
    const size_t length = utf8_sequence_length(s, i);
    if (length == 0 || (c == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F)) {
      out.push_back('?');
      i += length == 0 ? 1 : length;
      continue;
    }
    out.append(s.substr(i, length));
    i += length;
  }
  if (out.size() > width && width > 0) {
    size_t end = width - 1;  // room for the '~'
    while (end > 0 && (static_cast<unsigned char>(out[end]) & 0xC0) == 0x80) --end;  // not inside a character
    out.resize(end);
    out.push_back('~');
  }
  return out;
}

}  // namespace reqbus::app
