#pragma once
// Message: what a subscriber receives, the C++ form of PhoenixAnalytics' `{:request_sent, event}`.
// `kind` says which payload is set.
// Thread-safety: a plain value type.
#include <cstdint>

#include "reqbus/analytics_event.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus {

enum class MessageKind : uint8_t {
  request_sent = 1,  // `request` holds a RequestLog
  identify = 2,      // `analytics` holds an AnalyticsEvent of that type
  group = 3,
  track = 4,
};

const char* to_string(MessageKind kind) noexcept;  // "request_sent", "identify", ...

struct Message {
  MessageKind kind = MessageKind::request_sent;
  RequestLog request;        // when kind == request_sent
  AnalyticsEvent analytics;  // when kind is identify, group or track
};

// MessageView: a received message read in place, for Bus::subscribe_views. `request`'s strings
// point into the received frame's own bytes, so nothing is copied per event; everything it
// refers to is valid only until the handler returns (copy what you keep: RequestLog has no
// implicit conversion from a view, see to_message()).
struct MessageView {
  MessageKind kind = MessageKind::request_sent;
  RequestLogView request;                     // when kind == request_sent
  const AnalyticsEvent* analytics = nullptr;  // when identify, group or track (decoded, not a view)

  Message to_message() const;  // an owning copy
};

}  // namespace reqbus
