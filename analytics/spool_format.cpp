#include "analytics/spool_format.hpp"

#include <array>
#include <cstring>

#include "bus/codec_detail.hpp"
#include "reqbus/codec.hpp"

namespace reqbus::detail::spool_format {
namespace {

constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrcTable = make_crc_table();

// Decodes one spooled message without validating its fields (see decode_record() in the
// header). codec::append wrote it, so it is in the forms WireReader reads — except negative
// numbers, which WireReader leaves to msgpack-c; those go through codec::decode, which
// validates, so such a message (invalid anyway) still makes its record corrupt.
bool decode_message(const char* p, size_t size, Message& message) {
  codec::detail::WireReader in(p, size);
  if (codec::detail::decode_record(in, message, /*check_fields=*/false) && in.at_end()) return true;
  message = Message{};
  return !codec::decode(p, size, message);
}

// Decodes one payload into `batch`; false if any part is malformed.
bool decode_payload(const char* p, size_t size, std::vector<Message>& batch) {
  if (size < 4) return false;
  const uint32_t count = get_u32(p);
  size_t pos = 4;
  batch.clear();
  batch.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    if (size - pos < 4) return false;
    const uint32_t len = get_u32(p + pos);
    pos += 4;
    if (size - pos < len) return false;
    Message message;
    if (!decode_message(p + pos, len, message)) return false;
    batch.push_back(std::move(message));
    pos += len;
  }
  return pos == size;
}

}  // namespace

uint32_t crc32(const char* data, size_t size) noexcept {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i)
    c = kCrcTable[(c ^ static_cast<uint8_t>(data[i])) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

void put_u32(std::string& out, uint32_t value) {
  char b[4] = {static_cast<char>(value), static_cast<char>(value >> 8),
               static_cast<char>(value >> 16), static_cast<char>(value >> 24)};
  out.append(b, 4);
}

uint32_t get_u32(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} | uint32_t{u[1]} << 8 | uint32_t{u[2]} << 16 | uint32_t{u[3]} << 24;
}

std::string segment_header() {
  std::string header(kMagic, sizeof kMagic);
  put_u32(header, kVersion);
  return header;
}

void append_record(std::string& out, const std::vector<Message>& batch) {
  const size_t start = out.size();
  out.append(kRecordHeaderBytes, '\0');  // length and crc, filled in below
  put_u32(out, static_cast<uint32_t>(batch.size()));
  std::string record;
  for (const Message& message : batch) {
    record.clear();
    codec::append(record, message);
    put_u32(out, static_cast<uint32_t>(record.size()));
    out += record;
  }
  const size_t payload = out.size() - start - kRecordHeaderBytes;
  std::string prefix;
  put_u32(prefix, static_cast<uint32_t>(payload));
  put_u32(prefix, crc32(out.data() + start + kRecordHeaderBytes, payload));
  std::memcpy(out.data() + start, prefix.data(), kRecordHeaderBytes);
}

uint32_t header_version(std::string_view data) noexcept {
  if (data.size() < kHeaderBytes || std::memcmp(data.data(), kMagic, sizeof kMagic) != 0) return 0;
  return get_u32(data.data() + sizeof kMagic);
}

uint64_t index_segment(std::string_view data, std::vector<RecordSpan>& records) {
  if (data.size() < kHeaderBytes || std::memcmp(data.data(), kMagic, sizeof kMagic) != 0 ||
      get_u32(data.data() + sizeof kMagic) > kVersion) {
    return data.empty() ? 0 : 1;  // an empty file is a segment created but never written
  }
  uint64_t corrupt = 0;
  size_t pos = kHeaderBytes;
  std::vector<Message> batch;
  while (pos < data.size()) {
    const size_t left = data.size() - pos;
    if (left < kRecordHeaderBytes) return corrupt + 1;  // torn record header
    const uint32_t len = get_u32(data.data() + pos);
    const uint32_t crc = get_u32(data.data() + pos + 4);
    if (len > left - kRecordHeaderBytes) return corrupt + 1;  // torn tail (or garbage length)
    const char* payload = data.data() + pos + kRecordHeaderBytes;
    pos += kRecordHeaderBytes + len;
    if (crc32(payload, len) != crc || !decode_payload(payload, len, batch)) {
      ++corrupt;
      continue;
    }
    records.push_back({size_t(payload - data.data()), len});
  }
  return corrupt;
}

bool decode_record(std::string_view data, RecordSpan span, std::vector<Message>& batch) {
  if (span.offset > data.size() || span.size > data.size() - span.offset) return false;
  return decode_payload(data.data() + span.offset, span.size, batch);
}

}  // namespace reqbus::detail::spool_format
