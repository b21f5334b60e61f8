#include "analytics/request_json.hpp"

#include <algorithm>
#include <string_view>

#include "analytics/utf8.hpp"

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

// A field as a JSON string. JSON is UTF-8, so each byte of `s` that is not part of a valid
// UTF-8 sequence becomes U+FFFD, as nlohmann's error_handler_t::replace would write it. That
// character takes 3 bytes: a field of invalid bytes near its limit would come out up to 3x its
// limit, and reading our own NDJSON back (from_json -> validate) would refuse the whole event.
// So when that happens each run of invalid bytes becomes one U+FFFD instead (a scanner's path of
// 700 x \xff then keeps the readable part after it: helper-54), and what is still too long is
// cut to `limit` bytes, on a character boundary. Valid UTF-8 is never changed (a valid field
// over its limit is the validator's business, not silently cut here).
json field(const std::string& s, size_t limit, bool& replaced) {
  if (utf8::valid(s)) return s;
  replaced = true;
  std::string out = utf8::replace_invalid(s);
  if (out.size() <= limit) return out;
  out = utf8::replace_invalid(s, /*collapse_runs=*/true);
  size_t cut = std::min(limit, out.size());
  while (cut > 0 && cut < out.size() && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
  out.resize(cut);
  return out;
}

}  // namespace

json to_json(const RequestLog& r, bool* replaced) {
  using L = RequestLogLimits;
  bool bad = false;
  json j{{"request_id", field(r.request_id, L::request_id, bad)},
         {"method", field(r.method, L::method, bad)},
         {"path", field(r.path, L::path, bad)},
         {"status_code", r.status_code},
         {"duration_ms", r.duration_ms},
         {"user_agent", field(r.user_agent, L::user_agent, bad)},
         {"remote_ip", field(r.remote_ip, L::remote_ip, bad)},
         {"referer", field(r.referer, L::referer, bad)},
         {"device_type", field(r.device_type, L::device_type, bad)},
         {"session_id", field(r.session_id, L::session_id, bad)},
         {"session_page_views", r.session_page_views},
         {"inserted_at", r.inserted_at},
         {"node_id", field(r.node_id, L::node_id, bad)},
         {"seq", r.seq}};
  if (replaced) *replaced = bad;
  return j;
}

void append_ndjson(std::string& out, const RequestLog& r) {
  // to_json() already made every string valid UTF-8; `replace` is only a second guard.
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

std::string input_time_problem(const RequestLog& r) {
  if (r.inserted_at == 0 || plausible_input_time(r.inserted_at)) return {};  // 0: "now"
  return "inserted_at: " + std::to_string(r.inserted_at) +
         " is not microseconds since the Unix epoch in 2000..2999 (seconds, milliseconds or nanoseconds?)";
}

}  // namespace reqbus::json
