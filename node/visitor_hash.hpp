#pragma once
// Honest unique-visitor counting: a visitor is HMAC-SHA256(daily salt, ip NUL user agent),
// truncated to 128 bits. The salt is 32 random bytes made per UTC day and never stored, so ids
// cannot be linked across days or reversed to an IP by hashing the IPv4 space.
// Thread-safety: id() is safe from any thread.
#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string_view>

namespace reqbus::node {

struct VisitorId {
  uint64_t hi = 0, lo = 0;
  bool operator==(const VisitorId&) const = default;
};
struct VisitorIdHash {
  size_t operator()(const VisitorId& v) const noexcept { return size_t(v.hi ^ (v.lo * 0x9E3779B97F4A7C15ull)); }
};

class VisitorHasher {
 public:
  // `unix_day` = floor(unix seconds / 86400) of the event; a new day draws a new salt.
  VisitorId id(std::string_view ip, std::string_view user_agent, int64_t unix_day);

 private:
  // One salt per day, for the last few days: late events from yesterday (a peer around
  // midnight) hash with yesterday's salt instead of flipping today's.
  static constexpr size_t kDaysKept = 3;
  std::mutex mu_;
  std::map<int64_t, std::array<unsigned char, 32>> salts_;  // guarded by mu_
};

}  // namespace reqbus::node
