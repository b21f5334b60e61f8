// The record codec: docs/WIRE.md is the contract this file implements.
#include "bus/codec_detail.hpp"

#include <limits>

namespace reqbus::codec {
namespace detail {

bool read_string(const msgpack::object& o, std::string& out) {
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

bool read_uint(const msgpack::object& o, uint64_t& out) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  out = o.via.u64;
  return true;
}

bool read_string(const WireField& f, std::string& out) {
  if (f.type == WireField::Type::str) out.assign(f.str);
  else if (f.type == WireField::Type::nil) out.clear();
  else return false;
  return true;
}

bool read_uint(const WireField& f, uint64_t& out) {
  if (f.type != WireField::Type::uint) return false;
  out = f.u;
  return true;
}

namespace {

bool read_int(const msgpack::object& o, int64_t& out) {
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

bool read_int(const WireField& f, int64_t& out) {  // WireReader leaves negative integers to msgpack-c
  if (f.type != WireField::Type::uint || f.u > uint64_t(std::numeric_limits<int64_t>::max())) return false;
  out = int64_t(f.u);
  return true;
}

bool read_double(const msgpack::object& o, double& out) {
  switch (o.type) {
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: out = o.via.f64; return true;
    case msgpack::type::POSITIVE_INTEGER: out = double(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: out = double(o.via.i64); return true;
    default: return false;
  }
}

bool read_double(const WireField& f, double& out) {
  if (f.type == WireField::Type::float64) out = f.d;
  else if (f.type == WireField::Type::uint) out = double(f.u);
  else return false;
  return true;
}

// The record decoders work on an array of fields, from msgpack-c's object tree (Field =
// msgpack::object) or from WireReader (Field = WireField).
template <class Field>
std::optional<DecodeError> decode_request_log(const Field* f, uint32_t n, uint64_t version,
                                              RequestLog& r) {
  // v1 has 14 elements (kind, version, 12 PhoenixAnalytics fields); v2 adds node_id and seq.
  const uint32_t expected = version == 1 ? 14 : 16;
  if (n != expected) return DecodeError::wrong_shape;
  uint64_t status = 0, views = 0;
  bool ok = read_string(f[2], r.request_id) && read_string(f[3], r.method) &&
            read_string(f[4], r.path) && read_uint(f[5], status) &&
            read_double(f[6], r.duration_ms) && read_string(f[7], r.user_agent) &&
            read_string(f[8], r.remote_ip) && read_string(f[9], r.referer) &&
            read_string(f[10], r.device_type) && read_string(f[11], r.session_id) &&
            read_uint(f[12], views) && read_int(f[13], r.inserted_at);
  if (ok && version >= 2) ok = read_string(f[14], r.node_id) && read_uint(f[15], r.seq);
  if (!ok || status > 0xFFFF || views > 0xFFFFFFFFu) return DecodeError::wrong_shape;
  if (version == 1) {
    r.node_id.clear();
    r.seq = 0;
  }
  r.status_code = uint16_t(status);
  r.session_page_views = uint32_t(views);
  if (!validate(r).empty()) return DecodeError::invalid_field;
  return std::nullopt;
}

template <class Field>
std::optional<DecodeError> decode_analytics(const Field* f, uint32_t n, AnalyticsEvent& e) {
  if (n != 14) return DecodeError::wrong_shape;
  bool ok = read_string(f[2], e.message_id) && read_string(f[3], e.user_id) &&
            read_int(f[4], e.timestamp) && read_string(f[5], e.event) &&
            read_string(f[6], e.email) && read_string(f[7], e.timezone) &&
            read_string(f[8], e.account_id) && read_string(f[9], e.name) &&
            read_string(f[10], e.traits_json) && read_string(f[11], e.properties_json) &&
            read_string(f[12], e.node_id) && read_uint(f[13], e.seq);
  if (!ok) return DecodeError::wrong_shape;
  if (!validate(e).empty()) return DecodeError::invalid_field;
  return std::nullopt;
}

template <class Field>
std::optional<DecodeError> decode_fields(const Field* f, uint32_t n, Message& out) {
  if (n < 2) return DecodeError::wrong_shape;
  uint64_t kind = 0, version = 0;
  if (!read_uint(f[0], kind) || !read_uint(f[1], version)) return DecodeError::wrong_shape;
  switch (kind) {
    case uint64_t(MessageKind::request_sent):
      if (version == 0 || version > kRequestLogVersion) return DecodeError::unknown_version;
      out.kind = MessageKind::request_sent;
      return decode_request_log(f, n, version, out.request);
    case uint64_t(MessageKind::identify):
    case uint64_t(MessageKind::group):
    case uint64_t(MessageKind::track):
      if (version == 0 || version > kAnalyticsVersion) return DecodeError::unknown_version;
      out.kind = MessageKind(kind);
      out.analytics.type = AnalyticsType(kind);
      return decode_analytics(f, n, out.analytics);
    default:
      return DecodeError::wrong_shape;
  }
}

}  // namespace

std::optional<DecodeError> decode_record(const msgpack::object& o, Message& out) {
  if (o.type != msgpack::type::ARRAY) return DecodeError::wrong_shape;
  return decode_fields(o.via.array.ptr, o.via.array.size, out);
}

bool decode_record(WireReader& in, Message& out) {
  constexpr uint32_t kMaxFields = 16;  // the longest record layout
  WireField f[kMaxFields];
  uint32_t n = 0;
  if (!in.array(n) || n > kMaxFields) return false;
  for (uint32_t i = 0; i < n; ++i)
    if (!in.field(f[i])) return false;
  return !decode_fields(f, n, out);
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
