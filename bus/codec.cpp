// The record codec: docs/WIRE.md is the contract this file implements.
#include "bus/codec_detail.hpp"
#include "bus/record_reader.hpp"

namespace reqbus::codec {

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
  return detail::RecordReader(size, out).run(data);
}

}  // namespace reqbus::codec
