#pragma once
// Text from requests (paths, user agents) made safe to print on a terminal, for `reqbus top`.
// Pure functions; any thread.
#include <cstddef>
#include <string>
#include <string_view>

#include "analytics/utf8.hpp"

namespace reqbus::app {

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
    const size_t length = utf8::sequence(s, i);
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
