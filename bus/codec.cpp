// The record codec: docs/WIRE.md is the contract this file implements.
#include "bus/codec_detail.hpp"

#include <limits>

namespace reqbus::codec {
namespace detail {

bool ObjectCursor::str(std::string& out) {
  const msgpack::object& o = *f++;
  if (o.type == msgpack::type::STR) {
    out.assign(o.via.str.ptr, o.via.str.size);
    return true;
  }
  if (o.type == msgpack::type::NIL) {  // other writers may send nil for "absent"
    out.clear();
    return true;
  }
  return false;
}

bool ObjectCursor::uint(uint64_t& out) {
  const msgpack::object& o = *f++;
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  out = o.via.u64;
  return true;
}

bool ObjectCursor::int64(int64_t& out) {
  const msgpack::object& o = *f++;
  if (o.type == msgpack::type::POSITIVE_INTEGER) {
    if (o.via.u64 > uint64_t(std::numeric_limits<int64_t>::max())) return false;
    out = int64_t(o.via.u64);
    return true;
  }
  if (o.type == msgpack::type::NEGATIVE_INTEGER) {
    out = o.via.i64;
    return true;
  }
  return false;
}

bool ObjectCursor::number(double& out) {
  const msgpack::object& o = *f++;
  switch (o.type) {
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: out = o.via.f64; return true;
    case msgpack::type::POSITIVE_INTEGER: out = double(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: out = double(o.via.i64); return true;
    default: return false;
  }
}

namespace {

// The record decoders read a record's fields in order through a cursor: ObjectCursor over
// msgpack-c's object tree, or WireReader straight over the bytes. `n` is the record's length;
// kind and version have been read. `Log` is RequestLog, or RequestLogView (WireReader only:
// views of the bytes read).
template <class Cursor, class Log>
std::optional<DecodeError> decode_request_log(Cursor& in, uint32_t n, uint64_t version, Log& r,
                                              bool check_fields) {
  // v1 has 14 elements (kind, version, 12 PhoenixAnalytics fields); v2 adds node_id and seq.
  const uint32_t expected = version == 1 ? 14 : 16;
  if (n != expected) return DecodeError::wrong_shape;
  uint64_t status = 0, views = 0;
  bool ok = in.str(r.request_id) && in.str(r.method) && in.str(r.path) && in.uint(status) &&
            in.number(r.duration_ms) && in.str(r.user_agent) && in.str(r.remote_ip) &&
            in.str(r.referer) && in.str(r.device_type) && in.str(r.session_id) && in.uint(views) &&
            in.int64(r.inserted_at);
  if (ok && version >= 2) ok = in.str(r.node_id) && in.uint(r.seq);
  if (!ok || status > 0xFFFF || views > 0xFFFFFFFFu) return DecodeError::wrong_shape;
  if (version == 1) {
    r.node_id = decltype(r.node_id)();
    r.seq = 0;
  }
  r.status_code = uint16_t(status);
  r.session_page_views = uint32_t(views);
  if (check_fields && !validate(RequestLogView(r)).empty()) return DecodeError::invalid_field;
  return std::nullopt;
}

template <class Cursor>
std::optional<DecodeError> decode_analytics(Cursor& in, uint32_t n, AnalyticsEvent& e, bool check_fields) {
  if (n != 14) return DecodeError::wrong_shape;
  const bool ok = in.str(e.message_id) && in.str(e.user_id) && in.int64(e.timestamp) && in.str(e.event) &&
                  in.str(e.email) && in.str(e.timezone) && in.str(e.account_id) && in.str(e.name) &&
                  in.str(e.traits_json) && in.str(e.properties_json) && in.str(e.node_id) && in.uint(e.seq);
  if (!ok) return DecodeError::wrong_shape;
  if (check_fields && !validate(e).empty()) return DecodeError::invalid_field;
  return std::nullopt;
}

// `Out` is Message, or MessageView (WireReader only), whose analytics event is decoded into
// `analytics` (for a Message: its own).
template <class Cursor, class Out>
std::optional<DecodeError> decode_fields(Cursor& in, uint32_t n, Out& out, AnalyticsEvent& analytics,
                                         bool check_fields) {
  if (n < 2) return DecodeError::wrong_shape;
  uint64_t kind = 0, version = 0;
  if (!in.uint(kind) || !in.uint(version)) return DecodeError::wrong_shape;
  switch (kind) {
    case uint64_t(MessageKind::request_sent):
      if (version == 0 || version > kRequestLogVersion) return DecodeError::unknown_version;
      out.kind = MessageKind::request_sent;
      return decode_request_log(in, n, version, out.request, check_fields);
    case uint64_t(MessageKind::identify):
    case uint64_t(MessageKind::group):
    case uint64_t(MessageKind::track):
      if (version == 0 || version > kAnalyticsVersion) return DecodeError::unknown_version;
      out.kind = MessageKind(kind);
      analytics.type = AnalyticsType(kind);
      return decode_analytics(in, n, analytics, check_fields);
    default:
      return DecodeError::wrong_shape;
  }
}

}  // namespace

std::optional<DecodeError> decode_record(const msgpack::object& o, Message& out) {
  if (o.type != msgpack::type::ARRAY) return DecodeError::wrong_shape;
  ObjectCursor in{o.via.array.ptr};
  return decode_fields(in, o.via.array.size, out, out.analytics, true);
}

bool decode_record(WireReader& in, Message& out, bool check_fields) {
  uint32_t n = 0;
  return in.array(n) && !decode_fields(in, n, out, out.analytics, check_fields);
}

bool decode_record(WireReader& in, MessageView& out, AnalyticsEvent& analytics, bool check_fields) {
  uint32_t n = 0;
  if (!in.array(n) || decode_fields(in, n, out, analytics, check_fields)) return false;
  out.analytics = out.kind == MessageKind::request_sent ? nullptr : &analytics;
  return true;
}

std::optional<DecodeError> parse(const char* data, size_t size, msgpack::object_handle& out) {
  // Limits keep a hostile length prefix from allocating more than the frame could hold.
  const std::size_t cap = size < 65536 ? size : 65536;
  const msgpack::unpack_limit limit(cap, 0, size, size, size, 8);
  auto reference = [](msgpack::type::object_type, std::size_t, void*) { return true; };
  std::size_t offset = 0;
  try {
    out = msgpack::unpack(data, size, offset, reference, nullptr, limit);
  } catch (const msgpack::insufficient_bytes&) {
    return DecodeError::truncated;
  } catch (const msgpack::depth_size_overflow&) {
    return DecodeError::wrong_shape;  // nested deeper than any reqbus layout
  } catch (const msgpack::map_size_overflow&) {
    return DecodeError::wrong_shape;  // reqbus layouts have no maps
  } catch (const msgpack::size_overflow&) {
    // An array/str/bin/ext length larger than the bytes left: the data ends before what it
    // declares, i.e. it is truncated (the limits are the input's own size).
    return DecodeError::truncated;
  } catch (const std::exception&) {
    return DecodeError::not_msgpack;
  }
  if (offset != size) return DecodeError::wrong_shape;  // trailing bytes
  return std::nullopt;
}

}  // namespace detail

const char* to_string(DecodeError error) noexcept {
  switch (error) {
    case DecodeError::not_msgpack: return "not_msgpack";
    case DecodeError::truncated: return "truncated";
    case DecodeError::oversized: return "oversized";
    case DecodeError::unknown_version: return "unknown_version";
    case DecodeError::wrong_shape: return "wrong_shape";
    case DecodeError::invalid_field: return "invalid_field";
  }
  return "unknown";
}

namespace {

constexpr size_t kPrefix = detail::WireWriter::kMaxPrefix;

void write_request_log_fields(detail::WireWriter& w, const RequestLogView& r, std::string_view request_id,
                              int64_t inserted_at) {
  w.str(request_id);
  w.str(r.method);
  w.str(r.path);
  w.uint(r.status_code);
  w.float64(r.duration_ms);
  w.str(r.user_agent);
  w.str(r.remote_ip);
  w.str(r.referer);
  w.str(r.device_type);
  w.str(r.session_id);
  w.uint(r.session_page_views);
  w.int64(inserted_at);
}

size_t request_log_bound(const RequestLogView& r, std::string_view request_id, std::string_view node_id) {
  return request_id.size() + r.method.size() + r.path.size() + r.user_agent.size() + r.remote_ip.size() +
         r.referer.size() + r.device_type.size() + r.session_id.size() + node_id.size() + 17 * kPrefix;
}

}  // namespace

namespace detail {

void append_request_log(std::string& out, const RequestLogView& r, std::string_view request_id,
                        int64_t inserted_at, std::string_view node_id, uint64_t seq) {
  WireWriter w(out, request_log_bound(r, request_id, node_id));
  w.array(16);
  w.uint(uint8_t(MessageKind::request_sent));
  w.uint(kRequestLogVersion);
  write_request_log_fields(w, r, request_id, inserted_at);
  w.str(node_id);
  w.uint(seq);
  w.finish();
}

void append_analytics(std::string& out, const AnalyticsEvent& e, std::string_view message_id,
                      int64_t timestamp, std::string_view node_id, uint64_t seq) {
  WireWriter w(out, message_id.size() + e.user_id.size() + e.event.size() + e.email.size() +
                        e.timezone.size() + e.account_id.size() + e.name.size() + e.traits_json.size() +
                        e.properties_json.size() + node_id.size() + 15 * kPrefix);
  w.array(14);
  w.uint(uint8_t(e.type));
  w.uint(kAnalyticsVersion);
  w.str(message_id);
  w.str(e.user_id);
  w.int64(timestamp);
  w.str(e.event);
  w.str(e.email);
  w.str(e.timezone);
  w.str(e.account_id);
  w.str(e.name);
  w.str(e.traits_json);
  w.str(e.properties_json);
  w.str(node_id);
  w.uint(seq);
  w.finish();
}

}  // namespace detail

void append(std::string& out, const RequestLog& r) {
  detail::append_request_log(out, r, r.request_id, r.inserted_at, r.node_id, r.seq);
}

void append_v1(std::string& out, const RequestLog& r) {
  detail::WireWriter w(out, request_log_bound(r, r.request_id, {}));
  w.array(14);
  w.uint(uint8_t(MessageKind::request_sent));
  w.uint(1);
  write_request_log_fields(w, r, r.request_id, r.inserted_at);
  w.finish();
}

void append(std::string& out, const AnalyticsEvent& e) {
  detail::append_analytics(out, e, e.message_id, e.timestamp, e.node_id, e.seq);
}

void append(std::string& out, const Message& m) {
  if (m.kind == MessageKind::request_sent)
    append(out, m.request);
  else
    append(out, m.analytics);
}

std::optional<DecodeError> decode(const char* data, size_t size, Message& out) {
  detail::WireReader in(data, size);
  if (detail::decode_record(in, out) && in.at_end()) return std::nullopt;
  // Not the writer's own forms, or not valid: msgpack-c decodes it or names the error.
  msgpack::object_handle handle;
  if (auto error = detail::parse(data, size, handle)) return error;
  return detail::decode_record(handle.get(), out);
}

}  // namespace reqbus::codec
