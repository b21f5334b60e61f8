#include "bus/frame.hpp"

#include "bus/codec_detail.hpp"
#include "bus/record_reader.hpp"

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
  header.count = 0;
  header.declared = 0;
  if (size > max_bytes) return codec::DecodeError::oversized;
  return codec::detail::RecordReader(size, header, out).run(data);
}

}  // namespace reqbus::detail
