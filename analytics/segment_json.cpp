// Segment /v1/batch and RequestLog JSON: encoding and strict parsing (see segment_json.hpp).
#include "analytics/segment_json.hpp"

#include "analytics/request_json.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>

namespace reqbus::segment {
namespace {

using Json = nlohmann::ordered_json;
constexpr auto kReplace = Json::error_handler_t::replace;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, kReplace); }

const char* type_name(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array";
    case Json::value_t::string: return "a string";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number";
    default: return "an unsupported value";
  }
}

std::string wrong_type(const std::string& where, const char* expected, const Json& got) {
  return where + ": expected " + expected + ", got " + type_name(got);
}

// Values a body may hold for each item it has (every number, string, literal, array and object;
// a member's key rides with its value). A parsed value costs ~50-100 bytes of memory, so
// counting them bounds what a body costs once parsed to about what a body of real items costs:
// the item count alone did not, as "[[{},{},...]]" or {"batch":[{},{},...]} hide the items
// below the top level, at ~80 bytes of memory for each "{}," of input, and a bound of the
// values the most items could hold (100,000 x 32) let one item of 3 million values ("0,0,...":
// 2 bytes each) through, at 30-40 x its size in memory. So each item is bounded on its own, and
// an array of RequestLogs by the items it really has. A RequestLog is ~15 values; a Segment event
// with its context and properties a few dozen, some many more (Segment allows 32 KB an event).
constexpr size_t kMaxValuesPerRequestLog = 32;    // on average, in an array of them
constexpr size_t kMaxValuesPerEvent = 128;        // what the most events a batch may have may hold
// One RequestLog on its own (an NDJSON line, or any one item of an array): its fields, with
// room for some it ignores.
constexpr size_t kMaxValuesPerRequest = 1024;
constexpr size_t kMaxValuesInOneEvent = 4096;     // one Segment event

struct ShapeLimits {
  size_t max_items = SIZE_MAX;   // elements of the top-level array
  size_t max_values = SIZE_MAX;  // values in the whole document
  // Items at this depth (1: a top-level array's elements; 2: also an object's arrays' elements,
  // as Segment's {"batch":[...]}); 0: none. Each may hold max_item_values values, and the
  // document (items x values_per_item + max_item_values).
  size_t item_depth = 0;
  size_t max_item_values = SIZE_MAX;
  size_t values_per_item = SIZE_MAX;
};

// nlohmann's parser and destructor do not recurse, but copying a value and dump() recurse
// once per level of nesting: a 600 KB body of 300,000 '[' would overflow a worker thread's
// stack (a crash no handler can catch). Text nested deeper than kMaxJsonDepth is refused
// before it is parsed, with one pass over its bytes. The same pass counts the top-level
// array's elements, the items' values and the document's values (upper bounds: commas + 1,
// commas + containers + 1), so a body that would cost far more memory than its bytes is
// refused before a document of it is built.
std::string check_shape(std::string_view text, std::string_view what, ShapeLimits limits = {}) {
  size_t depth = 0, items = 1, values = 1;
  size_t shaped_items = 0, item_values = 0;  // items at limits.item_depth, and the current one's values
  const size_t item_depth = limits.item_depth;
  auto too_many_in_item = [&] {
    return std::string(what) + ": an item holds more than " + std::to_string(limits.max_item_values) +
           " JSON values";
  };
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        return std::string(what) + ": nested deeper than " + std::to_string(kMaxJsonDepth) + " levels";
      if (++values > limits.max_values) break;
      if (item_depth && depth == item_depth + 1) {  // an item begins
        ++shaped_items;
        item_values = 0;
      }
      if (item_depth && depth > item_depth && ++item_values > limits.max_item_values) return too_many_in_item();
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ',') {
      if (depth == 1 && ++items > limits.max_items)
        return std::string(what) + ": more items than the limit of " + std::to_string(limits.max_items);
      if (++values > limits.max_values) break;
      if (item_depth && depth > item_depth && ++item_values > limits.max_item_values) return too_many_in_item();
    }
  }
  if (values > limits.max_values)
    return std::string(what) + ": more than " + std::to_string(limits.max_values) + " JSON values";
  if (item_depth) {
    const size_t bound = shaped_items > (SIZE_MAX - limits.max_item_values) / limits.values_per_item
                             ? SIZE_MAX
                             : shaped_items * limits.values_per_item + limits.max_item_values;
    if (values > bound)
      return std::string(what) + ": more than " + std::to_string(bound) + " JSON values for its " +
             std::to_string(shaped_items) + " items (" + std::to_string(limits.values_per_item) + " an item)";
  }
  return {};
}

// Parses JSON text, turning nlohmann's exception into a message.
std::string parse_text(std::string_view text, Json& out, std::string_view what, ShapeLimits limits = {}) {
  if (auto err = check_shape(text, what, limits); !err.empty()) return err;
  try {
    out = Json::parse(text.begin(), text.end());
    return {};
  } catch (const Json::exception& e) {
    return std::string(what) + ": invalid JSON (" + e.what() + ")";
  }
}

// The values a body of up to max_items items may hold.
size_t max_values_for(size_t max_items, size_t per_item) {
  return max_items > SIZE_MAX / per_item ? SIZE_MAX : std::max<size_t>(max_items, 1) * per_item;
}

// Reads an optional string member; null counts as absent.
std::string read_string(const Json& obj, const char* key, const std::string& prefix,
                        std::string& out, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return required ? prefix + key + ": missing (required)" : std::string();
  }
  if (!it->is_string()) return wrong_type(prefix + key, "a string", *it);
  out = it->get<std::string>();
  if (required && out.empty()) return prefix + key + ": empty (required)";
  return {};
}

template <typename Int>
std::string read_uint(const Json& obj, const char* key, const std::string& prefix, Int& out,
                      bool required, uint64_t max = std::numeric_limits<Int>::max()) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return required ? prefix + key + ": missing (required)" : std::string();
  }
  if (it->is_number_unsigned() || (it->is_number_integer() && it->get<int64_t>() >= 0)) {
    const uint64_t v = it->get<uint64_t>();
    if (v > max) return prefix + key + ": " + std::to_string(v) + " is out of range";
    out = static_cast<Int>(v);
    return {};
  }
  if (it->is_number_integer()) return prefix + key + ": must not be negative";
  return wrong_type(prefix + key, "a non-negative integer", *it);
}

// An optional member that must be a JSON object; stored as compact text ("" when absent/empty).
std::string read_object(const Json& obj, const char* key, const std::string& prefix, Json& out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    out = Json::object();
    return {};
  }
  if (!it->is_object()) return wrong_type(prefix + key, "an object", *it);
  out = *it;
  return {};
}

std::string object_text(const Json& j) { return j.empty() ? std::string() : dump(j); }


bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

Json event_json(const AnalyticsEvent& e, std::string& error) {
  Json j = Json::object();
  j["type"] = to_string(e.type);
  j["userId"] = e.user_id;
  if (!e.message_id.empty()) j["messageId"] = e.message_id;
  if (e.timestamp > 0) j["timestamp"] = format_timestamp(e.timestamp);
  const bool has_traits = e.type != AnalyticsType::track;
  const std::string& object_field = has_traits ? e.traits_json : e.properties_json;
  const char* object_name = has_traits ? "traits" : "properties";
  Json object = Json::object();
  if (!object_field.empty()) {
    error = parse_text(object_field, object, object_name);
    if (error.empty() && !object.is_object()) error = wrong_type(object_name, "an object", object);
    if (!error.empty()) return {};
  }
  switch (e.type) {
    case AnalyticsType::identify:
      if (!e.email.empty()) object["email"] = e.email;
      break;
    case AnalyticsType::group:
      j["groupId"] = e.account_id;
      if (!e.name.empty()) object["name"] = e.name;
      break;
    case AnalyticsType::track:
      j["event"] = e.event;
      break;
  }
  if (!object.empty()) j[object_name] = std::move(object);
  if (!e.timezone.empty() || !e.node_id.empty()) {
    Json context = Json::object();
    if (!e.timezone.empty()) context["timezone"] = e.timezone;
    if (!e.node_id.empty()) context["reqbus"] = Json{{"nodeId", e.node_id}, {"seq", e.seq}};
    j["context"] = std::move(context);
  }
  return j;
}

std::string event_from_json(const Json& j, const std::string& prefix, AnalyticsEvent& out) {
  if (!j.is_object()) return wrong_type(prefix.empty() ? "message" : prefix.substr(0, prefix.size() - 1), "an object", j);
  AnalyticsEvent e;
  std::string type;
  if (auto err = read_string(j, "type", prefix, type, true); !err.empty()) return err;
  if (type == "identify") e.type = AnalyticsType::identify;
  else if (type == "group") e.type = AnalyticsType::group;
  else if (type == "track") e.type = AnalyticsType::track;
  else return prefix + "type: \"" + type + "\" is not identify, group or track";
  if (auto err = read_string(j, "userId", prefix, e.user_id, true); !err.empty()) return err;
  if (auto err = read_string(j, "messageId", prefix, e.message_id, false); !err.empty()) return err;
  std::string ts;
  if (auto err = read_string(j, "timestamp", prefix, ts, false); !err.empty()) return err;
  if (!ts.empty() && !parse_timestamp(ts, e.timestamp))
    return prefix + "timestamp: \"" + ts.substr(0, 64) + "\" is not an ISO-8601 date-time";
  Json object;
  switch (e.type) {
    case AnalyticsType::identify:
    case AnalyticsType::group: {
      if (auto err = read_object(j, "traits", prefix, object); !err.empty()) return err;
      const char* moved = e.type == AnalyticsType::identify ? "email" : "name";
      std::string& target = e.type == AnalyticsType::identify ? e.email : e.name;
      if (auto err = read_string(object, moved, prefix + "traits.", target, false); !err.empty()) return err;
      object.erase(moved);
      e.traits_json = object_text(object);
      if (e.type == AnalyticsType::group) {
        if (auto err = read_string(j, "groupId", prefix, e.account_id, true); !err.empty()) return err;
      }
      break;
    }
    case AnalyticsType::track:
      if (auto err = read_string(j, "event", prefix, e.event, true); !err.empty()) return err;
      if (auto err = read_object(j, "properties", prefix, object); !err.empty()) return err;
      e.properties_json = object_text(object);
      break;
  }
  Json context;
  if (auto err = read_object(j, "context", prefix, context); !err.empty()) return err;
  if (auto err = read_string(context, "timezone", prefix + "context.", e.timezone, false); !err.empty()) return err;
  Json ours;
  if (auto err = read_object(context, "reqbus", prefix + "context.", ours); !err.empty()) return err;
  if (auto err = read_string(ours, "nodeId", prefix + "context.reqbus.", e.node_id, false); !err.empty()) return err;
  if (auto err = read_uint(ours, "seq", prefix + "context.reqbus.", e.seq, false); !err.empty()) return err;
  // A sequence number belongs to its node; encoding writes both or neither, so a seq without
  // a nodeId would be lost on the next hop (found by fuzz/http_body_fuzz.cpp).
  if (e.node_id.empty() && e.seq != 0) return prefix + "context.reqbus.seq: given without context.reqbus.nodeId";
  if (auto err = validate(e); !err.empty()) return prefix + err;
  out = std::move(e);
  return {};
}

// Shared body checks for parse_batch / parse_request_logs.
std::string too_large(size_t size, size_t limit) {
  return "body: " + std::to_string(size) + " bytes exceeds the limit of " + std::to_string(limit);
}

std::string parse_body(std::string_view body, const ParseLimits& limits, Json& out) {
  if (body.size() > limits.max_body_bytes) return too_large(body.size(), limits.max_body_bytes);
  // Events vary too much in size (an order with 20 products is ~200 values) for an average:
  // each is bounded on its own, and the body as before.
  return parse_text(body, out, "body",
                    {SIZE_MAX, max_values_for(limits.max_items, kMaxValuesPerEvent), 2, kMaxValuesInOneEvent, SIZE_MAX});
}

std::string too_many(size_t n, size_t limit) {
  return "body: " + std::to_string(n) + " items exceeds the limit of " + std::to_string(limit);
}

}  // namespace

bool nested_too_deep(std::string_view text) { return !check_shape(text, "").empty(); }

std::string check_json_object(std::string_view field, std::string_view text) {
  if (text.empty()) return {};
  Json j;
  if (auto err = parse_text(text, j, field); !err.empty()) return err;
  if (!j.is_object()) return wrong_type(std::string(field), "a JSON object", j);
  return {};
}

std::string append_json(std::string& out, const AnalyticsEvent& event) {
  std::string error;
  Json j = event_json(event, error);
  if (!error.empty()) return error;
  out += dump(j);
  return {};
}

std::string batch_body(const std::vector<std::string>& encoded, int64_t sent_at_us) {
  size_t size = 64;
  for (const auto& m : encoded) size += m.size() + 1;
  std::string out;
  out.reserve(size);
  out += "{\"batch\":[";
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (i) out += ',';
    out += encoded[i];
  }
  out += "],\"sentAt\":\"";
  out += format_timestamp(sent_at_us);
  out += "\"}";
  return out;
}

std::string batch_body(const std::vector<AnalyticsEvent>& events, int64_t sent_at_us,
                       std::string& error) {
  std::vector<std::string> encoded(events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    if (auto err = append_json(encoded[i], events[i]); !err.empty()) {
      error = "batch[" + std::to_string(i) + "]." + err;
      return {};
    }
  }
  error.clear();
  return batch_body(encoded, sent_at_us);
}

std::string request_logs_body(const std::vector<RequestLog>& logs) {
  std::string out = "[";
  for (size_t i = 0; i < logs.size(); ++i) {
    if (i) out += ',';
    json::append_ndjson(out, logs[i]);
  }
  out += ']';
  return out;
}

std::string format_timestamp(int64_t unix_us) {
  int64_t secs = unix_us / 1'000'000;
  int64_t micros = unix_us % 1'000'000;
  if (micros < 0) {
    micros += 1'000'000;
    secs -= 1;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    days -= 1;
  }
  constexpr int64_t kLastDay = 2'932'896;  // 9999-12-31: ISO 8601 years have four digits
  if (days > kLastDay) days = kLastDay, rem = 86399, micros = 999'999;
  const std::chrono::year_month_day date{std::chrono::sys_days(std::chrono::days(days))};
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d.%06lldZ", int(date.year()),
                unsigned(date.month()), unsigned(date.day()), static_cast<int>(rem / 3600),
                static_cast<int>(rem / 60 % 60), static_cast<int>(rem % 60),
                static_cast<long long>(micros));
  return buf;
}

bool parse_timestamp(std::string_view s, int64_t& unix_us) {
  int y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != 't') || !digits(s, 11, 2, h) ||
      s[13] != ':' || !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, sec))
    return false;
  const std::chrono::year_month_day date{std::chrono::year(y), std::chrono::month(unsigned(mo)),
                                        std::chrono::day(unsigned(d))};
  if (!date.ok() || h > 23 || mi > 59 || sec > 59) return false;
  size_t pos = 19;
  int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t n = 0;
    int64_t scale = 100'000;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 6) {
        micros += (s[pos] - '0') * scale;
        scale /= 10;
      }
      ++pos;
      ++n;
    }
    if (n == 0 || n > 9) return false;
  }
  int64_t offset_s = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2, om) || oh > 23 || om > 59)
      return false;
    offset_s = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  const int64_t secs = int64_t(std::chrono::sys_days(date).time_since_epoch().count()) * 86400 +
                       h * 3600 + mi * 60 + sec - offset_s;
  // A UTC instant before 1970 or after year 9999 (a late local time with a negative offset can
  // land in year 10000) has no four-digit form that format_timestamp could write back.
  constexpr int64_t kYear10000 = 253'402'300'800;  // 10000-01-01T00:00:00Z
  if (secs < 0 || secs >= kYear10000) return false;
  unix_us = secs * 1'000'000 + micros;
  return true;
}

std::string parse_event(std::string_view json, AnalyticsEvent& out) {
  Json j;
  if (auto err = parse_text(json, j, "message"); !err.empty()) return err;
  return event_from_json(j, "", out);
}

std::string parse_batch(std::string_view body, ParsedBatch& out, const ParseLimits& limits) {
  out = {};
  Json j;
  if (auto err = parse_body(body, limits, j); !err.empty()) return err;
  if (!j.is_object()) return wrong_type("body", "an object with a \"batch\" array", j);
  auto batch = j.find("batch");
  if (batch == j.end()) return "batch: missing (required)";
  if (!batch->is_array()) return wrong_type("batch", "an array", *batch);
  if (batch->size() > limits.max_items) return too_many(batch->size(), limits.max_items);
  std::string sent_at;
  if (auto err = read_string(j, "sentAt", "", sent_at, false); !err.empty()) return err;
  if (!sent_at.empty() && !parse_timestamp(sent_at, out.sent_at))
    return "sentAt: \"" + sent_at.substr(0, 64) + "\" is not an ISO-8601 date-time";
  out.events.reserve(batch->size());
  for (size_t i = 0; i < batch->size(); ++i) {
    AnalyticsEvent e;
    auto err = event_from_json((*batch)[i], "batch[" + std::to_string(i) + "].", e);
    if (err.empty()) out.events.push_back(std::move(e));
    else out.rejected.push_back({i, std::move(err)});
  }
  return {};
}

std::string parse_request_log(std::string_view text, RequestLog& out) {
  if (auto err = check_shape(text, "request", {SIZE_MAX, kMaxValuesPerRequest}); !err.empty()) return err;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return std::string("request: invalid JSON (") + e.what() + ")";
  }
  RequestLog r;
  if (auto err = json::from_json(j, r); !err.empty()) return err;
  if (auto err = json::input_time_problem(r); !err.empty()) return err;
  out = std::move(r);
  return {};
}

std::string parse_request_logs(std::string_view body, ParsedRequestLogs& out,
                               const ParseLimits& limits) {
  out = {};
  if (body.size() > limits.max_body_bytes) return too_large(body.size(), limits.max_body_bytes);
  if (auto err = check_shape(body, "body", {limits.max_items, max_values_for(limits.max_items, kMaxValuesPerRequestLog), 1,
                                            kMaxValuesPerRequest, kMaxValuesPerRequestLog});
      !err.empty())
    return err;
  nlohmann::json array;  // json::from_json takes the plain (sorted) json type
  try {
    array = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& e) {
    return std::string("body: invalid JSON (") + e.what() + ")";
  }
  if (!array.is_array()) return "body: expected an array of request objects";
  if (array.size() > limits.max_items) return too_many(array.size(), limits.max_items);
  out.logs.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    RequestLog r;
    auto err = json::from_json(array[i], r);
    if (err.empty()) err = json::input_time_problem(r);
    if (err.empty()) out.logs.push_back(std::move(r));
    else out.rejected.push_back({i, "[" + std::to_string(i) + "]." + err});
  }
  return {};
}

}  // namespace reqbus::segment
