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

bool read_double(const msgpack::object& o, double& out) {
  switch (o.type) {
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: out = o.via.f64; return true;
    case msgpack::type::POSITIVE_INTEGER: out = double(o.via.u64); return true;
    case msgpack::type::NEGATIVE_INTEGER: out = double(o.via.i64); return true;
    default: return false;
  }
}

std::optional<DecodeError> decode_request_log(const msgpack::object* f, uint32_t n,
                                              uint64_t version, RequestLog& r) {
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

std::optional<DecodeError> decode_analytics(const msgpack::object* f, uint32_t n,
                                            AnalyticsEvent& e) {
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

}  // namespace

std::optional<DecodeError> decode_record(const msgpack::object& o, Message& out) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size < 2) return DecodeError::wrong_shape;
  const msgpack::object* f = o.via.array.ptr;
  const uint32_t n = o.via.array.size;
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

void pack_sv(detail::Packer& p, std::string_view s) {
  p.pack_str(uint32_t(s.size()));
  p.pack_str_body(s.data(), uint32_t(s.size()));
}

void pack_request_log_fields(detail::Packer& p, const RequestLog& r, std::string_view request_id,
                             int64_t inserted_at) {
  pack_sv(p, request_id);
  p.pack(r.method);
  p.pack(r.path);
  p.pack_uint16(r.status_code);
  p.pack_double(r.duration_ms);
  p.pack(r.user_agent);
  p.pack(r.remote_ip);
  p.pack(r.referer);
  p.pack(r.device_type);
  p.pack(r.session_id);
  p.pack_uint32(r.session_page_views);
  p.pack_int64(inserted_at);
}

}  // namespace

namespace detail {

void append_request_log(std::string& out, const RequestLog& r, std::string_view request_id,
                        int64_t inserted_at, std::string_view node_id, uint64_t seq) {
  StringWriter w{out};
  Packer p(w);
  p.pack_array(16);
  p.pack_uint8(uint8_t(MessageKind::request_sent));
  p.pack_uint8(uint8_t(kRequestLogVersion));
  pack_request_log_fields(p, r, request_id, inserted_at);
  pack_sv(p, node_id);
  p.pack_uint64(seq);
}

void append_analytics(std::string& out, const AnalyticsEvent& e, std::string_view message_id,
                      int64_t timestamp, std::string_view node_id, uint64_t seq) {
  StringWriter w{out};
  Packer p(w);
  p.pack_array(14);
  p.pack_uint8(uint8_t(e.type));
  p.pack_uint8(uint8_t(kAnalyticsVersion));
  pack_sv(p, message_id);
  p.pack(e.user_id);
  p.pack_int64(timestamp);
  p.pack(e.event);
  p.pack(e.email);
  p.pack(e.timezone);
  p.pack(e.account_id);
  p.pack(e.name);
  p.pack(e.traits_json);
  p.pack(e.properties_json);
  pack_sv(p, node_id);
  p.pack_uint64(seq);
}

}  // namespace detail

void append(std::string& out, const RequestLog& r) {
  detail::append_request_log(out, r, r.request_id, r.inserted_at, r.node_id, r.seq);
}

void append_v1(std::string& out, const RequestLog& r) {
  detail::StringWriter w{out};
  detail::Packer p(w);
  p.pack_array(14);
  p.pack_uint8(uint8_t(MessageKind::request_sent));
  p.pack_uint8(1);
  pack_request_log_fields(p, r, r.request_id, r.inserted_at);
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
  msgpack::object_handle handle;
  if (auto error = detail::parse(data, size, handle)) return error;
  return detail::decode_record(handle.get(), out);
}

}  // namespace reqbus::codec
