#pragma once
// Parsers for web-server access logs, one line at a time, into RequestLogs:
//   combined  nginx/Apache "combined" format, optionally followed by $request_time (seconds)
//   nginx_json  nginx `log_format ... escape=json '{...}'` with nginx variable names as keys
//   ndjson  reqbus's own RequestLog JSON (analytics/request_json.hpp)
// and the RFC 3164 envelope nginx puts around lines it sends with `access_log syslog:...`.
// Escapes inside the quoted fields of combined lines (nginx \xHH, Apache \" and \\) are decoded.
// Paths are stored without their query string. Lines that cannot be parsed are reported with
// a reason, never guessed at.
// Thread-safety: LineParser holds a small cache; use one per thread. The free functions are pure.
#include <cstdint>
#include <string>
#include <string_view>

#include "reqbus/request_log.hpp"

namespace reqbus::ingest {

enum class LogFormat : uint8_t { auto_detect, combined, nginx_json, ndjson };
const char* to_string(LogFormat format) noexcept;
bool parse_format(std::string_view name, LogFormat& out) noexcept;  // "auto", "combined", ...

// Strips "<PRI>Mmm dd hh:mm:ss host tag: " (RFC 3164, as nginx sends it; without "host " with
// nginx's `nohostname`). False if `datagram` does not start with a syslog header.
bool unwrap_syslog(std::string_view datagram, std::string_view& message) noexcept;

// Parses "10/Oct/2000:13:55:36 -0700" to microseconds since the epoch.
bool parse_clf_time(std::string_view text, int64_t& unix_us) noexcept;
// Parses "2000-10-10T13:55:36+00:00" (nginx $time_iso8601; fractional seconds allowed).
bool parse_iso8601(std::string_view text, int64_t& unix_us) noexcept;

class LineParser {
 public:
  explicit LineParser(LogFormat format = LogFormat::auto_detect) : format_(format) {}
  // Parses one line (without its newline) into `out`. Returns "" or the reason it failed.
  // request_id, when the line has none, is derived from (source_id, offset), the time and the
  // line's bytes, so re-reading the same file yields the same ids (ingest is idempotent) and
  // two streams with one source name (stdin) collide only on identical lines at the same offset.
  // A line cut inside a quoted field is an error ("user_agent: unterminated quoted field").
  std::string parse(std::string_view line, uint64_t source_id, uint64_t offset, RequestLog& out);

 private:
  std::string parse_combined(std::string_view line, RequestLog& out);
  LogFormat format_;
  std::string cached_time_text_;  // combined logs repeat the same second many times
  int64_t cached_time_us_ = 0;
  std::string request_scratch_;  // the decoded request line, reused between lines
};

// A stable 64-bit id for a source name (a log's name: app/ingest_input.hpp Input::log_name;
// "stdin"; a peer address).
uint64_t source_id(std::string_view name) noexcept;

}  // namespace reqbus::ingest
