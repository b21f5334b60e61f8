// Fuzzes the node's HTTP ingest bodies: POST /v1/requests (a JSON array of RequestLogs, or
// NDJSON split into lines exactly as node/http_api.cpp's post_requests does) and POST /v1/batch
// (a Segment batch), plus a single Segment message.
// Invariants: every accepted item passes validate(); accepted + rejected = items, and rejected
// indices are distinct and in range (the node maps accepted items back to body indices from
// them); every accepted RequestLog and AnalyticsEvent re-encodes to JSON that parses back to
// the same value.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "analytics/segment_json.hpp"
#include "fuzz/fuzz_check.hpp"

namespace reqbus::fuzz::http_body {

inline void check_log_round_trip(const RequestLog& log) {
  REQBUS_FUZZ_CHECK(validate(log).empty(), validate(log));
  const std::string body = segment::request_logs_body({log});
  segment::ParsedRequestLogs again;
  const std::string error = segment::parse_request_logs(body, again);
  REQBUS_FUZZ_CHECK(error.empty(), "re-encoded RequestLog body refused: " + error);
  REQBUS_FUZZ_CHECK(again.logs.size() == 1 && again.rejected.empty(),
                    "re-encoded RequestLog rejected: " + (again.rejected.empty() ? body : again.rejected[0].message));
  REQBUS_FUZZ_CHECK(again.logs[0] == log, "RequestLog differs after a JSON round trip: " + body);
}

inline void check_event_round_trip(const AnalyticsEvent& event) {
  REQBUS_FUZZ_CHECK(validate(event).empty(), validate(event));
  std::string json;
  const std::string error = segment::append_json(json, event);
  REQBUS_FUZZ_CHECK(error.empty(), "accepted event cannot be encoded: " + error);
  AnalyticsEvent again;
  const std::string error2 = segment::parse_event(json, again);
  REQBUS_FUZZ_CHECK(error2.empty(), "re-encoded event refused: " + error2 + " in " + json);
  REQBUS_FUZZ_CHECK(again == event, "event differs after a JSON round trip: " + json);
}

inline void check_indices(size_t accepted, const std::vector<segment::ItemError>& rejected) {
  std::set<size_t> seen;
  for (const auto& r : rejected) {
    REQBUS_FUZZ_CHECK(r.index < accepted + rejected.size(), "rejected index out of range");
    REQBUS_FUZZ_CHECK(seen.insert(r.index).second, "rejected index repeated");
    REQBUS_FUZZ_CHECK(!r.message.empty(), "rejection without a reason");
  }
}

// POST /v1/requests: the same dispatch and line split as HttpApi::Impl::post_requests.
inline void check_requests_body(std::string_view body) {
  size_t first = 0;
  while (first < body.size() && std::isspace(static_cast<unsigned char>(body[first]))) ++first;
  segment::ParseLimits limits;
  limits.max_items = 1'000'000;
  if (first < body.size() && body[first] == '[') {
    segment::ParsedRequestLogs parsed;
    if (!segment::parse_request_logs(body, parsed, limits).empty()) return;
    check_indices(parsed.logs.size(), parsed.rejected);
    for (const RequestLog& log : parsed.logs) check_log_round_trip(log);
    return;
  }
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find('\n', pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    if (line.empty()) continue;
    RequestLog log;
    if (segment::parse_request_log(line, log).empty()) check_log_round_trip(log);
  }
}

inline void check_batch_body(std::string_view body) {
  segment::ParsedBatch parsed;
  if (!segment::parse_batch(body, parsed).empty()) return;
  check_indices(parsed.events.size(), parsed.rejected);
  for (const AnalyticsEvent& e : parsed.events) check_event_round_trip(e);
  if (parsed.sent_at != 0) {
    int64_t again = 0;
    const std::string text = segment::format_timestamp(parsed.sent_at);
    REQBUS_FUZZ_CHECK(segment::parse_timestamp(text, again) && again == parsed.sent_at,
                      "sentAt does not survive format_timestamp -> parse_timestamp: " + text);
  }
}

inline void check_event_body(std::string_view body) {
  AnalyticsEvent event;
  if (segment::parse_event(body, event).empty()) check_event_round_trip(event);
}

inline void run(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  check_requests_body(body);
  check_batch_body(body);
  check_event_body(body);
}

}  // namespace reqbus::fuzz::http_body

REQBUS_FUZZ_ENTRY(reqbus::fuzz::http_body::run)
