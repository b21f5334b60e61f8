#include "bus/frame.hpp"

#include "bus/codec_detail.hpp"

#include <array>

namespace reqbus::detail {

namespace {

// [A-Za-z0-9_.:-], by table: every publish checks its topic.
constexpr std::array<bool, 256> kTopicChar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c)
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == ':' || c == '-';
  return t;
}();

}  // namespace

std::string check_topic(std::string_view topic) {
  if (topic.empty()) return "topic: empty";
  if (topic.size() > 64) return "topic: longer than 64 bytes";
  for (unsigned char c : topic)
    if (!kTopicChar[c]) return "topic: only [A-Za-z0-9_.:-] are allowed";
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
  codec::detail::WireWriter w(out, node_id.size() + 6 * codec::detail::WireWriter::kMaxPrefix);
  w.array(5);
  w.uint(codec::kWireVersion);
  w.str(node_id);
  w.uint(epoch);
  w.uint(first_seq);
  w.array(count);
  w.finish();
}

namespace {

using codec::DecodeError;

// The header's first four elements, read through a cursor (codec::detail::ObjectCursor or
// WireReader); `n` is the header array's length.
template <class Cursor>
std::optional<DecodeError> decode_header(Cursor& in, uint32_t n, FrameHeader& header) {
  uint64_t version = 0;
  if (n < 1 || !in.uint(version)) return DecodeError::wrong_shape;
  if (version == 0 || version > codec::kWireVersion) return DecodeError::unknown_version;
  if (n != 5) return DecodeError::wrong_shape;
  if (!in.str(header.node_id) || header.node_id.empty() || header.node_id.size() > RequestLogLimits::node_id ||
      !in.uint(header.epoch) || !in.uint(header.first_seq))
    return DecodeError::wrong_shape;
  return std::nullopt;
}

void fill_v1_node_id(const FrameHeader& header, Message& m) {
  if (m.kind == MessageKind::request_sent && m.request.node_id.empty())
    m.request.node_id = header.node_id;  // v1 records carry no node_id
}

// The forms WireWriter writes, straight from the bytes; false at anything else (wire_io.hpp).
bool decode_frame_fast(const char* data, size_t size, FrameHeader& header, std::vector<Message>& out,
                       bool check_fields) {
  codec::detail::WireReader in(data, size);
  uint32_t n = 0, count = 0;
  if (!in.array(n) || decode_header(in, n, header)) return false;
  // msgpack-c's limit on array lengths (codec::detail::parse) is min(size, 65536).
  if (!in.array(count) || count > in.remaining() || count > 65536) return false;
  for (uint32_t i = 0; i < count; ++i) {
    if (out.size() <= i) out.emplace_back();  // grown by records read, not by the count claimed
    if (!codec::detail::decode_record(in, out[i], check_fields)) return false;
    fill_v1_node_id(header, out[i]);
  }
  if (!in.at_end()) return false;
  header.count = header.declared = count;
  return true;
}

// decode_frame_fast's view form.
bool decode_frame_views_fast(const char* data, size_t size, FrameHeader& header, std::vector<MessageView>& out,
                             std::vector<Message>& owned, bool check_fields) {
  codec::detail::WireReader in(data, size);
  uint32_t n = 0, count = 0;
  if (!in.array(n) || decode_header(in, n, header)) return false;
  if (!in.array(count) || count > in.remaining() || count > 65536) return false;
  for (uint32_t i = 0; i < count; ++i) {
    if (out.size() <= i) out.emplace_back();
    if (owned.size() <= i) owned.emplace_back();
    if (!codec::detail::decode_record(in, out[i], owned[i].analytics, check_fields)) return false;
    if (out[i].kind == MessageKind::request_sent && out[i].request.node_id.empty())
      out[i].request.node_id = header.node_id;  // v1 records carry no node_id
  }
  if (!in.at_end()) return false;
  for (uint32_t i = 0; i < count; ++i)  // `owned` may have moved as it grew
    if (out[i].analytics) out[i].analytics = &owned[i].analytics;
  header.count = header.declared = count;
  return true;
}

}  // namespace

std::optional<codec::DecodeError> decode_frame_views(const char* data, size_t size, size_t max_bytes,
                                                     FrameHeader& header, std::vector<MessageView>& views,
                                                     std::vector<Message>& owned, bool check_fields) {
  header.declared = 0;
  if (size > max_bytes) return DecodeError::oversized;
  if (decode_frame_views_fast(data, size, header, views, owned, check_fields)) return std::nullopt;
  // The direct reader failed on these bytes, as decode_frame's would: msgpack-c's turn.
  auto error = decode_frame_reference(data, size, max_bytes, header, owned);
  if (views.size() < header.count) views.resize(header.count);
  for (uint32_t i = 0; i < header.count; ++i) {
    const Message& m = owned[i];
    views[i].kind = m.kind;
    views[i].request = m.request;
    views[i].analytics = m.kind == MessageKind::request_sent ? nullptr : &m.analytics;
  }
  return error;
}

bool peek_frame_header(const char* data, size_t size, size_t max_bytes, FrameHeader& header) {
  header.declared = header.count = 0;
  if (size > max_bytes) return false;
  codec::detail::WireReader in(data, size);
  uint32_t n = 0, count = 0;
  if (!in.array(n) || decode_header(in, n, header)) return false;
  if (!in.array(count) || count > in.remaining() || count > 65536) return false;
  header.count = header.declared = count;
  return true;
}

std::optional<codec::DecodeError> decode_frame(const char* data, size_t size, size_t max_bytes,
                                               FrameHeader& header, std::vector<Message>& out,
                                               bool check_fields) {
  header.declared = 0;
  if (size > max_bytes) return DecodeError::oversized;
  if (decode_frame_fast(data, size, header, out, check_fields)) return std::nullopt;
  return decode_frame_reference(data, size, max_bytes, header, out);
}

std::optional<codec::DecodeError> decode_frame_reference(const char* data, size_t size, size_t max_bytes,
                                                         FrameHeader& header, std::vector<Message>& out) {
  header.declared = 0;
  header.count = 0;
  if (size > max_bytes) return DecodeError::oversized;
  msgpack::object_handle handle;
  if (auto error = codec::detail::parse(data, size, handle)) return error;
  const msgpack::object& root = handle.get();
  if (root.type != msgpack::type::ARRAY) return DecodeError::wrong_shape;
  const msgpack::object* f = root.via.array.ptr;
  codec::detail::ObjectCursor cursor{f};
  if (auto error = decode_header(cursor, root.via.array.size, header)) return error;
  if (f[4].type != msgpack::type::ARRAY) return DecodeError::wrong_shape;
  const msgpack::object_array& records = f[4].via.array;
  header.declared = records.size;
  for (uint32_t i = 0; i < records.size; ++i) {
    if (out.size() <= i) out.emplace_back();  // a bogus count of tiny records grows nothing
    if (auto error = codec::detail::decode_record(records.ptr[i], out[i])) return error;
    fill_v1_node_id(header, out[i]);
    header.count = i + 1;
  }
  return std::nullopt;
}

}  // namespace reqbus::detail
