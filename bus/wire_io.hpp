#pragma once
// Private to bus/: the msgpack writer and reader of the hot path. A reqbus record is a fixed
// array of strings and numbers (docs/WIRE.md); these move exactly that between the fields and
// the bytes, with one size check per value. msgpack-c's packer (a std::string append per piece)
// and its object tree (built, then read back) did the same work at about three times the
// instructions per event (callgrind on web_bench's server, docs/BENCHMARKS.md).
//
// WireWriter writes the bytes msgpack-c's packer writes for the same calls: the smallest form
// of each integer, string and array length; doubles as float64 unless they hold an integer
// (codec_test compares them byte for byte).
// WireReader reads the forms that writer produces — fixint and uint 8..64, float 32/64, nil,
// str 8..32, arrays — one value at a time straight into its destination, and reports false at
// anything else: another msgpack form, bad or truncated bytes. The caller then decodes the input again with msgpack-c, which accepts every
// valid form and names the error. So this reader accepts a subset of what msgpack-c accepts,
// decodes it to the same values, and never has to classify an error.
// The reader's per-value functions are always inlined: a record is ~15 calls, and their call
// overhead was a third of the decode (callgrind on web_bench: 562 -> 412 instructions an event).
// Thread-safety: none; each is used by one thread on its own buffer.
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace reqbus::codec::detail {

// `v` with its bytes in big-endian (network, msgpack) order, and back: the same function.
template <class U>
constexpr U big_endian(U v) {
  if constexpr (std::endian::native == std::endian::big || sizeof(U) == 1) return v;
  else if constexpr (sizeof(U) == 2) return U(__builtin_bswap16(v));
  else if constexpr (sizeof(U) == 4) return U(__builtin_bswap32(v));
  else return U(__builtin_bswap64(v));
}

class WireWriter {
 public:
  static constexpr size_t kMaxPrefix = 9;  // bytes one number or one length prefix takes at most

  // Appends to `out`. `max_bytes` bounds what will be written before finish(): the sum of the
  // strings' sizes plus kMaxPrefix per value and per array.
  WireWriter(std::string& out, size_t max_bytes) : out_(out) {
    const size_t at = out.size();
    out.resize(at + max_bytes);
    p_ = out.data() + at;
  }
  WireWriter(const WireWriter&) = delete;
  WireWriter& operator=(const WireWriter&) = delete;
  // Cuts `out` to what was written.
  void finish() { out_.resize(size_t(p_ - out_.data())); }

  // Each writer works on a local copy of the cursor: a store through a char* may alias any
  // object, so stores through the member would make the compiler reload it after every byte.
  void array(uint32_t n) {
    if (n < 16) p_ = byte(p_, uint8_t(0x90 | n));
    else if (n < 65536) p_ = tagged(p_, 0xdc, uint16_t(n));
    else p_ = tagged(p_, 0xdd, n);
  }
  void str(std::string_view s) {
    const size_t n = s.size();
    char* p = p_;
    if (n < 32) p = byte(p, uint8_t(0xa0 | n));
    else if (n < 256) p = tagged(p, 0xd9, uint8_t(n));
    else if (n < 65536) p = tagged(p, 0xda, uint16_t(n));
    else p = tagged(p, 0xdb, uint32_t(n));
    if (n != 0) {  // an empty view may have no data at all (memcpy from null is UB)
      std::memcpy(p, s.data(), n);
      p += n;
    }
    p_ = p;
  }
  void uint(uint64_t v) {
    if (v < 128) p_ = byte(p_, uint8_t(v));
    else if (v < 256) p_ = tagged(p_, 0xcc, uint8_t(v));
    else if (v < 65536) p_ = tagged(p_, 0xcd, uint16_t(v));
    else if (v < (uint64_t(1) << 32)) p_ = tagged(p_, 0xce, uint32_t(v));
    else p_ = tagged(p_, 0xcf, v);
  }
  void int64(int64_t v) {
    if (v >= 0) return uint(uint64_t(v));
    if (v >= -32) p_ = byte(p_, uint8_t(v));
    else if (v >= INT8_MIN) p_ = tagged(p_, 0xd0, uint8_t(v));
    else if (v >= INT16_MIN) p_ = tagged(p_, 0xd1, uint16_t(v));
    else if (v >= INT32_MIN) p_ = tagged(p_, 0xd2, uint32_t(v));
    else p_ = tagged(p_, 0xd3, uint64_t(v));
  }
  // As msgpack-c 4 does, a double that holds an integer is written as that integer (-0.0 as 0).
  void float64(double v) {
    if (v >= 0 && v < 18446744073709551616.0 && v == double(uint64_t(v))) return uint(uint64_t(v));
    if (v < 0 && v >= -9223372036854775808.0 && v == double(int64_t(v))) return int64(int64_t(v));
    p_ = tagged(p_, 0xcb, std::bit_cast<uint64_t>(v));  // also NaN and the infinities
  }

 private:
  static char* byte(char* p, uint8_t b) {
    *p = char(b);
    return p + 1;
  }
  template <class U>  // a tag byte, then `v` big-endian
  static char* tagged(char* p, uint8_t tag, U v) {
    *p = char(tag);
    const U be = big_endian(v);
    std::memcpy(p + 1, &be, sizeof(U));
    return p + 1 + sizeof(U);
  }

  std::string& out_;
  char* p_;  // the next byte to write, in out_'s buffer
};

// Reads values in order, each into its destination, like a cursor over a record's fields.
class WireReader {
 public:
  WireReader(const char* data, size_t size)
      : p_(reinterpret_cast<const uint8_t*>(data)), end_(p_ + size) {}

  size_t remaining() const { return size_t(end_ - p_); }
  bool at_end() const { return p_ == end_; }

  bool array(uint32_t& n) {
    if (p_ == end_) return false;
    const uint8_t tag = *p_;
    if ((tag & 0xf0) == 0x90) {
      ++p_;
      n = tag & 0x0f;
      return true;
    }
    uint64_t v;
    if (tag == 0xdc && tagged(2, v)) n = uint32_t(v);
    else if (tag == 0xdd && tagged(4, v)) n = uint32_t(v);
    else return false;
    return true;
  }

  // A str (or nil: "") into `out`.
  bool str(std::string& out) {
    std::string_view v;
    if (!str(v)) return false;
    // clear() + append(): the source never aliases `out`, and append's path is about half of
    // assign's (which handles overlap) — frame decoding assigns ~11 strings an event.
    out.clear();
    out.append(v.data(), v.size());
    return true;
  }

  // A str (or nil: "") as a view of the bytes being read.
  [[gnu::always_inline]] bool str(std::string_view& out) {
    if (p_ == end_) return false;
    const uint8_t tag = *p_;
    uint64_t n;
    if ((tag & 0xe0) == 0xa0) {
      ++p_;
      n = tag & 0x1f;
    } else if (tag == 0xc0) {
      ++p_;
      out = {};
      return true;
    } else if (tag < 0xd9 || tag > 0xdb || !tagged(size_t(1) << (tag - 0xd9), n)) {
      return false;
    }
    if (n > remaining()) return false;
    out = std::string_view(reinterpret_cast<const char*>(p_), size_t(n));
    p_ += n;
    return true;
  }

  // A positive fixint or uint 8..64.
  [[gnu::always_inline]] bool uint(uint64_t& v) {
    if (p_ == end_) return false;
    const uint8_t tag = *p_;
    if (tag < 0x80) {
      ++p_;
      v = tag;
      return true;
    }
    return tag >= 0xcc && tag <= 0xcf && tagged(size_t(1) << (tag - 0xcc), v);
  }

  // A non-negative integer that fits int64 (negative ones are left to msgpack-c).
  bool int64(int64_t& v) {
    uint64_t u;
    if (!uint(u) || u > uint64_t(INT64_MAX)) return false;
    v = int64_t(u);
    return true;
  }

  // float64, float32 (widened) or an unsigned integer.
  bool number(double& v) {
    if (p_ == end_) return false;
    uint64_t bits;
    if (*p_ == 0xcb) {
      if (!tagged(8, bits)) return false;
      v = std::bit_cast<double>(bits);
      return true;
    }
    if (*p_ == 0xca) {
      if (!tagged(4, bits)) return false;
      v = double(std::bit_cast<float>(uint32_t(bits)));
      return true;
    }
    if (!uint(bits)) return false;
    v = double(bits);
    return true;
  }

 private:
  // Reads the tag byte and a big-endian unsigned number of `bytes` (1, 2, 4 or 8) after it.
  [[gnu::always_inline]] bool tagged(size_t bytes, uint64_t& v) {
    if (remaining() < 1 + bytes) return false;
    const uint8_t* p = p_ + 1;
    switch (bytes) {
      case 1: v = *p; break;
      case 2: v = load<uint16_t>(p); break;
      case 4: v = load<uint32_t>(p); break;
      default: v = load<uint64_t>(p); break;
    }
    p_ = p + bytes;
    return true;
  }
  template <class U>
  static U load(const uint8_t* p) {
    U v;
    std::memcpy(&v, p, sizeof v);
    return big_endian(v);
  }

  const uint8_t* p_;
  const uint8_t* end_;
};

}  // namespace reqbus::codec::detail
