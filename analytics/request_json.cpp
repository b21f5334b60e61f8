#include "analytics/request_json.hpp"

namespace reqbus::json {
namespace {

using nlohmann::json;

std::string read_string(const json& o, const char* key, std::string& out) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_string()) return std::string(key) + ": must be a string";
  out = it->get_ref<const std::string&>();
  return {};
}

template <class Int>
std::string read_int(const json& o, const char* key, Int& out, int64_t min, int64_t max) {
  auto it = o.find(key);
  if (it == o.end() || it->is_null()) return {};
  if (!it->is_number_integer()) return std::string(key) + ": must be an integer";
  int64_t v = 0;
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > uint64_t(INT64_MAX)) return std::string(key) + ": out of range";
    v = int64_t(u);
  } else {
    v = it->get<int64_t>();
  }
  if (v < min || v > max) return std::string(key) + ": " + std::to_string(v) + " out of range";
  out = Int(v);
  return {};
}

}  // namespace

json to_json(const RequestLog& r) {
  return json{{"request_id", r.request_id},   {"method", r.method},
              {"path", r.path},               {"status_code", r.status_code},
              {"duration_ms", r.duration_ms}, {"user_agent", r.user_agent},
              {"remote_ip", r.remote_ip},     {"referer", r.referer},
              {"device_type", r.device_type}, {"session_id", r.session_id},
              {"session_page_views", r.session_page_views},
              {"inserted_at", r.inserted_at}, {"node_id", r.node_id},
              {"seq", r.seq}};
}

void append_ndjson(std::string& out, const RequestLog& r) {
  // `replace` keeps invalid UTF-8 from throwing: hostile bytes become U+FFFD.
  out += to_json(r).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string from_json(const json& o, RequestLog& r) {
  if (!o.is_object()) return "request: must be a JSON object";
  for (const char* required : {"method", "path", "status_code"})
    if (!o.contains(required)) return std::string(required) + ": missing";
  r = RequestLog{};
  std::string e;
  if (!(e = read_string(o, "request_id", r.request_id)).empty()) return e;
  if (!(e = read_string(o, "method", r.method)).empty()) return e;
  if (!(e = read_string(o, "path", r.path)).empty()) return e;
  if (!(e = read_int(o, "status_code", r.status_code, 0, 65535)).empty()) return e;
  if (auto it = o.find("duration_ms"); it != o.end() && !it->is_null()) {
    if (!it->is_number()) return "duration_ms: must be a number";
    r.duration_ms = it->get<double>();
  }
  if (!(e = read_string(o, "user_agent", r.user_agent)).empty()) return e;
  if (!(e = read_string(o, "remote_ip", r.remote_ip)).empty()) return e;
  if (!(e = read_string(o, "referer", r.referer)).empty()) return e;
  if (!(e = read_string(o, "device_type", r.device_type)).empty()) return e;
  if (!(e = read_string(o, "session_id", r.session_id)).empty()) return e;
  if (!(e = read_int(o, "session_page_views", r.session_page_views, 0, UINT32_MAX)).empty()) return e;
  if (!(e = read_int(o, "inserted_at", r.inserted_at, 0, INT64_MAX)).empty()) return e;
  if (!(e = read_string(o, "node_id", r.node_id)).empty()) return e;
  if (!(e = read_int(o, "seq", r.seq, 0, INT64_MAX)).empty()) return e;
  return validate(r);
}

}  // namespace reqbus::json
