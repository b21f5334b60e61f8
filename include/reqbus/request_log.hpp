#pragma once
// RequestLog: one finished web request, as a web server publishes it.
// Fields follow PhoenixAnalytics' RequestLog, plus the origin node and a per-node sequence number.
// Thread-safety: a plain value type; distinct objects may be used from different threads.
#include <cstdint>
#include <string>

namespace reqbus {

struct RequestLog {
  std::string request_id;          // UUIDv7 text, made at publish when empty. <= 64 bytes.
  std::string method;              // HTTP method token ("GET"). 1..16 bytes of RFC 9110 tchar.
  std::string path;                // request target path. 1..2048 bytes.
  uint16_t status_code = 0;        // 100..599.
  double duration_ms = 0;          // time to serve the request, milliseconds, >= 0.
  std::string user_agent;          // <= 1024 bytes.
  std::string remote_ip;           // client address. <= 64 bytes.
  std::string referer;             // <= 2048 bytes.
  std::string device_type;         // "desktop", "mobile", "tablet", "bot" or "". <= 32 bytes.
  std::string session_id;          // <= 128 bytes.
  uint32_t session_page_views = 0; // pages seen in this session so far.
  int64_t inserted_at = 0;         // when the request completed, microseconds since the Unix
                                   // epoch (never a flush time). 0 = "now", filled at publish.
  std::string node_id;             // origin node; set by the bus at publish.
  uint64_t seq = 0;                // per-node sequence number; set by the bus at publish.

  bool operator==(const RequestLog&) const = default;
};

// Field limits, in bytes. Longer values are rejected, never silently truncated.
struct RequestLogLimits {
  static constexpr size_t request_id = 64;
  static constexpr size_t method = 16;
  static constexpr size_t path = 2048;
  static constexpr size_t user_agent = 1024;
  static constexpr size_t remote_ip = 64;
  static constexpr size_t referer = 2048;
  static constexpr size_t device_type = 32;
  static constexpr size_t session_id = 128;
  static constexpr size_t node_id = 64;
};

// Checks a RequestLog before it is published. Returns "" when valid, otherwise a one-line
// message that starts with the field's name ("status_code: 700 is outside 100..599").
// request_id, inserted_at, node_id and seq may be empty/zero: the bus fills them.
[[nodiscard]] std::string validate(const RequestLog& log);

}  // namespace reqbus
