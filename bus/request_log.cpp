// Validation of RequestLog and AnalyticsEvent, the small to_string helpers, MessageView::to_message.
#include <array>
#include <cmath>
#include <string>
#include <string_view>

#include "reqbus/analytics_event.hpp"
#include "reqbus/message.hpp"
#include "reqbus/request_log.hpp"

namespace reqbus {
namespace {

// RFC 9110 token characters, the only ones a method may use (by table: every publish and
// every decode checks a method).
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[c] = true;
  for (int c = 'a'; c <= 'z'; ++c) t[c] = t[c - 'a' + 'A'] = true;
  for (unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) t[c] = true;
  return t;
}();

std::string too_long(const char* field, size_t size, size_t limit) {
  return std::string(field) + ": " + std::to_string(size) + " bytes exceeds the limit of " +
         std::to_string(limit);
}

}  // namespace

bool is_http_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!kTchar[c]) return false;
  return true;
}

std::string validate(const RequestLogView& log) {
  using L = RequestLogLimits;
  if (log.request_id.size() > L::request_id) return too_long("request_id", log.request_id.size(), L::request_id);
  if (log.method.empty()) return "method: empty";
  if (log.method.size() > L::method) return too_long("method", log.method.size(), L::method);
  if (!is_http_token(log.method)) return "method: not an HTTP token";
  if (log.path.empty()) return "path: empty";
  if (log.path.size() > L::path) return too_long("path", log.path.size(), L::path);
  if (log.status_code < 100 || log.status_code > 599)
    return "status_code: " + std::to_string(log.status_code) + " is outside 100..599";
  if (!(log.duration_ms >= 0) || !std::isfinite(log.duration_ms))
    return "duration_ms: must be a finite number >= 0";
  if (log.user_agent.size() > L::user_agent) return too_long("user_agent", log.user_agent.size(), L::user_agent);
  if (log.remote_ip.size() > L::remote_ip) return too_long("remote_ip", log.remote_ip.size(), L::remote_ip);
  if (log.referer.size() > L::referer) return too_long("referer", log.referer.size(), L::referer);
  if (log.device_type.size() > L::device_type) return too_long("device_type", log.device_type.size(), L::device_type);
  if (log.session_id.size() > L::session_id) return too_long("session_id", log.session_id.size(), L::session_id);
  if (log.node_id.size() > L::node_id) return too_long("node_id", log.node_id.size(), L::node_id);
  if (log.inserted_at < 0) return "inserted_at: negative";
  return {};
}

std::string validate(const AnalyticsEvent& e) {
  constexpr size_t kJson = 32 << 10;
  if (e.type != AnalyticsType::identify && e.type != AnalyticsType::group &&
      e.type != AnalyticsType::track)
    return "type: not identify, group or track";
  if (e.message_id.size() > 64) return too_long("message_id", e.message_id.size(), 64);
  if (e.user_id.empty()) return "user_id: empty";
  if (e.user_id.size() > 256) return too_long("user_id", e.user_id.size(), 256);
  if (e.type == AnalyticsType::track && e.event.empty()) return "event: empty (required for track)";
  if (e.event.size() > 256) return too_long("event", e.event.size(), 256);
  if (e.email.size() > 320) return too_long("email", e.email.size(), 320);
  if (e.timezone.size() > 64) return too_long("timezone", e.timezone.size(), 64);
  if (e.type == AnalyticsType::group && e.account_id.empty()) return "account_id: empty (required for group)";
  if (e.account_id.size() > 256) return too_long("account_id", e.account_id.size(), 256);
  if (e.name.size() > 256) return too_long("name", e.name.size(), 256);
  if (e.traits_json.size() > kJson) return too_long("traits", e.traits_json.size(), kJson);
  if (e.properties_json.size() > kJson) return too_long("properties", e.properties_json.size(), kJson);
  if (e.node_id.size() > RequestLogLimits::node_id) return too_long("node_id", e.node_id.size(), RequestLogLimits::node_id);
  if (e.timestamp < 0) return "timestamp: negative";
  return {};
}

const char* to_string(AnalyticsType type) noexcept {
  switch (type) {
    case AnalyticsType::identify: return "identify";
    case AnalyticsType::group: return "group";
    case AnalyticsType::track: return "track";
  }
  return "unknown";
}

const char* to_string(MessageKind kind) noexcept {
  switch (kind) {
    case MessageKind::request_sent: return "request_sent";
    case MessageKind::identify: return "identify";
    case MessageKind::group: return "group";
    case MessageKind::track: return "track";
  }
  return "unknown";
}

Message MessageView::to_message() const {
  Message m;
  m.kind = kind;
  if (kind != MessageKind::request_sent) {
    if (analytics) m.analytics = *analytics;
    return m;
  }
  RequestLog& r = m.request;
  r.request_id = request.request_id;
  r.method = request.method;
  r.path = request.path;
  r.status_code = request.status_code;
  r.duration_ms = request.duration_ms;
  r.user_agent = request.user_agent;
  r.remote_ip = request.remote_ip;
  r.referer = request.referer;
  r.device_type = request.device_type;
  r.session_id = request.session_id;
  r.session_page_views = request.session_page_views;
  r.inserted_at = request.inserted_at;
  r.node_id = request.node_id;
  r.seq = request.seq;
  return m;
}

}  // namespace reqbus
