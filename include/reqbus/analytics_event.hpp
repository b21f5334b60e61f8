#pragma once
// AnalyticsEvent: an identify / group / track call (the Segment / Letter model). These travel
// the same bus as RequestLogs, as their own message kinds.
// Thread-safety: a plain value type.
#include <cstdint>
#include <string>

namespace reqbus {

enum class AnalyticsType : uint8_t { identify = 2, group = 3, track = 4 };

struct AnalyticsEvent {
  AnalyticsType type = AnalyticsType::track;
  std::string message_id;       // idempotency key; UUIDv7 made at enqueue when empty. <= 64 bytes.
  std::string user_id;          // required. <= 256 bytes.
  int64_t timestamp = 0;        // microseconds since the epoch; 0 = "now" at enqueue.
  std::string event;            // track: the event name (required). <= 256 bytes.
  std::string email;            // identify. <= 320 bytes.
  std::string timezone;         // identify, IANA name. <= 64 bytes.
  std::string account_id;       // group: the group id (required). <= 256 bytes.
  std::string name;             // group: the account's name. <= 256 bytes.
  std::string traits_json;      // identify/group: a JSON object as text, or "". <= 32 KiB.
  std::string properties_json;  // track: a JSON object as text, or "". <= 32 KiB.
  std::string node_id;          // origin node; set by the bus at publish.
  uint64_t seq = 0;             // per-node sequence number, set by the bus (see RequestLog::seq)

  bool operator==(const AnalyticsEvent&) const = default;
};

const char* to_string(AnalyticsType type) noexcept;  // "identify", "group", "track"

// "" when valid, else a message naming the field. JSON fields are checked for size only here;
// the HTTP layer parses them.
[[nodiscard]] std::string validate(const AnalyticsEvent& event);

}  // namespace reqbus
