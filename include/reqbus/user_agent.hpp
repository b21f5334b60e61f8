#pragma once
// User-agent classification: bots (crawlers, scanners, HTTP libraries) vs humans, and the
// device type of a human's browser. Substring rules, case-insensitive; documented in
// analytics/user_agent.cpp. Thread-safety: pure functions.
#include <string_view>

namespace reqbus {

enum class DeviceType : uint8_t { desktop, mobile, tablet, bot, unknown };

const char* to_string(DeviceType type) noexcept;  // "desktop", "mobile", "tablet", "bot", ""

// A RequestLog's device_type as a bounded label for counting: "desktop", "mobile", "tablet" and
// "bot" as they are, "" as "unknown", anything else (a client may send any string) as "other".
const char* device_label(std::string_view device_type) noexcept;

// An empty user agent is `unknown` (and counted as a bot by is_bot: real browsers send one).
DeviceType classify_user_agent(std::string_view user_agent) noexcept;
inline bool is_bot(std::string_view user_agent) noexcept {
  const DeviceType t = classify_user_agent(user_agent);
  return t == DeviceType::bot || t == DeviceType::unknown;
}

}  // namespace reqbus
