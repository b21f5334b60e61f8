#pragma once
// RequestLog: one finished web request, as a web server publishes it.
// Fields follow PhoenixAnalytics' RequestLog, plus the origin node and a per-node sequence number.
// Thread-safety: a plain value type; distinct objects may be used from different threads.
#include <cstdint>
#include <string>
#include <string_view>

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
  uint64_t seq = 0;                // per-node sequence number, set by the bus: 0, 1, 2... in the
                                   // order events enter its queue (refused ones take none)

  bool operator==(const RequestLog&) const = default;
};

// The same fields as views into the caller's own buffers: a web server can publish a request
// without copying its strings into a RequestLog first (Bus::broadcast copies the bytes into its
// queue before it returns, so the views need only outlive that call). A RequestLog converts to
// its view implicitly.
struct RequestLogView {
  std::string_view request_id, method, path;
  uint16_t status_code = 0;
  double duration_ms = 0;
  std::string_view user_agent, remote_ip, referer, device_type, session_id;
  uint32_t session_page_views = 0;
  int64_t inserted_at = 0;
  std::string_view node_id;
  uint64_t seq = 0;

  RequestLogView() = default;
  RequestLogView(const RequestLog& r)  // NOLINT(google-explicit-constructor): a view of r
      : request_id(r.request_id), method(r.method), path(r.path), status_code(r.status_code),
        duration_ms(r.duration_ms), user_agent(r.user_agent), remote_ip(r.remote_ip),
        referer(r.referer), device_type(r.device_type), session_id(r.session_id),
        session_page_views(r.session_page_views), inserted_at(r.inserted_at), node_id(r.node_id),
        seq(r.seq) {}
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
[[nodiscard]] std::string validate(const RequestLogView& log);
[[nodiscard]] inline std::string validate(const RequestLog& log) { return validate(RequestLogView(log)); }

// The times input may give an event (HTTP JSON, access logs, syslog): microseconds since the
// epoch in 2000..2999. Outside it a value is almost always a unit slip (seconds, milliseconds,
// nanoseconds) or a corrupt line, and would be stored and counted as a day in 1970 or centuries
// ahead; the readers of input refuse it by name. (The bus itself takes any time >= 0.)
inline constexpr int64_t kEarliestInputTimeUs = 946'684'800'000'000;     // 2000-01-01
inline constexpr int64_t kLatestInputTimeUs = 32'503'680'000'000'000;   // 3000-01-01, excluded
[[nodiscard]] constexpr bool plausible_input_time(int64_t unix_us) noexcept {
  return unix_us >= kEarliestInputTimeUs && unix_us < kLatestInputTimeUs;
}

// True if `s` is a non-empty RFC 9110 token (tchar only): an HTTP method, a header or cookie name.
[[nodiscard]] bool is_http_token(std::string_view s) noexcept;

}  // namespace reqbus
