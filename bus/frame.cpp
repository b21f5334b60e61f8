#include "bus/frame.hpp"

#include "bus/codec_detail.hpp"

namespace reqbus::detail {

std::string check_topic(std::string_view topic) {
  if (topic.empty()) return "topic: empty";
  if (topic.size() > 64) return "topic: longer than 64 bytes";
  for (unsigned char c : topic) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return "topic: only [A-Za-z0-9_.:-] are allowed";
  }
  return {};
}

std::string envelope_key(std::string_view topic, char scope) {
  std::string key;
  key.reserve(topic.size() + 2);
  key.append(topic);
  key.push_back('\0');
  key.push_back(scope);
  return key;
}

bool parse_envelope_key(std::string_view key, std::string_view& topic, char& scope) {
  if (key.size() < 3 || key[key.size() - 2] != '\0') return false;
  scope = key.back();
  if (scope != kScopeLocal && scope != kScopeCluster) return false;
  topic = key.substr(0, key.size() - 2);
  return check_topic(topic).empty();
}

void append_frame_header(std::string& out, std::string_view node_id, uint64_t epoch,
                         uint64_t first_seq, uint32_t count) {
  codec::detail::StringWriter w{out};
  codec::detail::Packer p(w);
  p.pack_array(5);
  p.pack_uint32(codec::kWireVersion);
  p.pack_str(uint32_t(node_id.size()));
  p.pack_str_body(node_id.data(), uint32_t(node_id.size()));
  p.pack_uint64(epoch);
  p.pack_uint64(first_seq);
  p.pack_array(count);
}

std::optional<codec::DecodeError> decode_frame(const char* data, size_t size, size_t max_bytes,
                                               FrameHeader& header, std::vector<Message>& out) {
  using codec::DecodeError;
  header.declared = 0;
  if (size > max_bytes) return DecodeError::oversized;
  msgpack::object_handle handle;
  if (auto error = codec::detail::parse(data, size, handle)) return error;
  const msgpack::object& root = handle.get();
  if (root.type != msgpack::type::ARRAY || root.via.array.size < 1) return DecodeError::wrong_shape;
  const msgpack::object* f = root.via.array.ptr;
  uint64_t version = 0;
  if (!codec::detail::read_uint(f[0], version)) return DecodeError::wrong_shape;
  if (version == 0 || version > codec::kWireVersion) return DecodeError::unknown_version;
  if (root.via.array.size != 5) return DecodeError::wrong_shape;
  if (!codec::detail::read_string(f[1], header.node_id) || header.node_id.empty() ||
      header.node_id.size() > RequestLogLimits::node_id ||
      !codec::detail::read_uint(f[2], header.epoch) ||
      !codec::detail::read_uint(f[3], header.first_seq) || f[4].type != msgpack::type::ARRAY)
    return DecodeError::wrong_shape;
  const msgpack::object_array& records = f[4].via.array;
  header.count = 0;
  header.declared = records.size;
  if (out.size() < records.size) out.resize(records.size);
  for (uint32_t i = 0; i < records.size; ++i) {
    Message& m = out[i];
    if (auto error = codec::detail::decode_record(records.ptr[i], m)) return error;
    if (m.kind == MessageKind::request_sent && m.request.node_id.empty())
      m.request.node_id = header.node_id;  // v1 records carry no node_id
    header.count = i + 1;
  }
  return std::nullopt;
}

}  // namespace reqbus::detail
