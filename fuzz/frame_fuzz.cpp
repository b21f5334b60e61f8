// Fuzzes what a subscriber does with bytes from the network: the frame decoder
// (detail::decode_frame), the single-record codec (codec::decode) and the envelope key parser.
// Invariants: a decoded frame re-encodes (append_frame_header + codec::append) and decodes back
// to the same header and records; decoding into a reused vector (as the Receiver does, frame
// after frame) gives the same result as into a fresh one; every decoded record passes validate();
// a parsed envelope key rebuilds to the same bytes; decode_frame's direct reader
// (bus/wire_io.hpp) gives the same error, header and records as msgpack-c alone
// (decode_frame_reference); so does the view decoder (decode_frame_views).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "bus/frame.hpp"
#include "fuzz/fuzz_check.hpp"
#include "reqbus/codec.hpp"

namespace reqbus::fuzz::frame {

inline constexpr size_t kMaxFrameBytes = 1 << 20;

inline bool same(const Message& a, const Message& b) {
  if (a.kind != b.kind) return false;
  return a.kind == MessageKind::request_sent ? a.request == b.request : a.analytics == b.analytics;
}

inline void check_record(const Message& m) {
  if (m.kind == MessageKind::request_sent)
    REQBUS_FUZZ_CHECK(validate(m.request).empty(), validate(m.request));
  else
    REQBUS_FUZZ_CHECK(validate(m.analytics).empty(), validate(m.analytics));
}

inline void check_frame(std::string_view bytes) {
  detail::FrameHeader header;
  std::vector<Message> fresh;
  const auto error = detail::decode_frame(bytes.data(), bytes.size(), kMaxFrameBytes, header, fresh);

  // Decode again into a vector already full of another frame's records (a copy of this one,
  // shifted), the Receiver's steady state: the result must not depend on what was there.
  std::vector<Message> reused(fresh.size() + 1);
  for (size_t i = 0; i < fresh.size(); ++i) reused[i + 1] = fresh[i];
  detail::FrameHeader header2;
  const auto error2 = detail::decode_frame(bytes.data(), bytes.size(), kMaxFrameBytes, header2, reused);
  REQBUS_FUZZ_CHECK(error == error2, "decode into a reused vector gave a different result");
  REQBUS_FUZZ_CHECK(header.count == header2.count, "decode into a reused vector: other count");
  REQBUS_FUZZ_CHECK(header.count <= fresh.size(), "count larger than the records written");
  for (uint32_t i = 0; i < header.count; ++i) {
    REQBUS_FUZZ_CHECK(same(fresh[i], reused[i]), "record " + std::to_string(i) + " differs after reuse");
    check_record(fresh[i]);
  }

  // The view decoder (Bus::subscribe_views), into vectors left from another frame: the same
  // error and records as decode_frame.
  std::vector<MessageView> views(fresh.size() + 1);
  std::vector<Message> owned = reused;
  detail::FrameHeader header_v;
  const auto error_v = detail::decode_frame_views(bytes.data(), bytes.size(), kMaxFrameBytes, header_v, views, owned);
  REQBUS_FUZZ_CHECK(error == error_v, "decode_frame_views gave a different result");
  REQBUS_FUZZ_CHECK(header.count == header_v.count && header.declared == header_v.declared,
                    "decode_frame_views counts other records");
  for (uint32_t i = 0; i < header.count; ++i)
    REQBUS_FUZZ_CHECK(same(fresh[i], views[i].to_message()), "view of record " + std::to_string(i) + " differs");

  detail::FrameHeader ref_header;
  std::vector<Message> ref;
  const auto ref_error = detail::decode_frame_reference(bytes.data(), bytes.size(), kMaxFrameBytes, ref_header, ref);
  REQBUS_FUZZ_CHECK(error == ref_error, std::string("decode_frame says ") + (error ? codec::to_string(*error) : "ok") +
                                            ", msgpack-c says " + (ref_error ? codec::to_string(*ref_error) : "ok"));
  REQBUS_FUZZ_CHECK(header.count == ref_header.count && header.declared == ref_header.declared,
                    "decode_frame and msgpack-c count other records");
  if (!error)
    REQBUS_FUZZ_CHECK(header.node_id == ref_header.node_id && header.epoch == ref_header.epoch &&
                          header.first_seq == ref_header.first_seq,
                      "decode_frame and msgpack-c read other headers");
  for (uint32_t i = 0; i < header.count; ++i)
    REQBUS_FUZZ_CHECK(same(fresh[i], ref[i]), "record " + std::to_string(i) + " differs from msgpack-c's");
  if (error) return;

  std::string again;
  detail::append_frame_header(again, header.node_id, header.epoch, header.first_seq, header.count);
  for (uint32_t i = 0; i < header.count; ++i) codec::append(again, fresh[i]);
  detail::FrameHeader header3;
  std::vector<Message> decoded;
  const auto error3 = detail::decode_frame(again.data(), again.size(), kMaxFrameBytes + again.size(), header3, decoded);
  REQBUS_FUZZ_CHECK(!error3, std::string("re-encoded frame does not decode: ") + codec::to_string(*error3));
  REQBUS_FUZZ_CHECK(header3.node_id == header.node_id && header3.epoch == header.epoch &&
                        header3.first_seq == header.first_seq && header3.count == header.count,
                    "re-encoded frame header differs");
  for (uint32_t i = 0; i < header.count; ++i)
    REQBUS_FUZZ_CHECK(same(decoded[i], fresh[i]), "re-encoded record " + std::to_string(i) + " differs");
}

inline void check_record_bytes(std::string_view bytes) {
  Message m;
  if (codec::decode(bytes.data(), bytes.size(), m)) return;
  check_record(m);
  std::string again;
  codec::append(again, m);
  Message m2;
  const auto error = codec::decode(again.data(), again.size(), m2);
  REQBUS_FUZZ_CHECK(!error, std::string("re-encoded record does not decode: ") + codec::to_string(*error));
  REQBUS_FUZZ_CHECK(same(m, m2), "re-encoded record differs");
}

inline void check_envelope_key(std::string_view key) {
  std::string_view topic;
  char scope = 0;
  if (!detail::parse_envelope_key(key, topic, scope)) return;
  REQBUS_FUZZ_CHECK(detail::check_topic(topic).empty(), "parsed topic fails check_topic");
  REQBUS_FUZZ_CHECK(detail::envelope_key(topic, scope) == key, "envelope key does not rebuild");
}

// The whole input is tried as a frame payload, as one record and as an envelope key.
inline void run(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_frame(bytes);
  check_record_bytes(bytes);
  check_envelope_key(bytes);
}

}  // namespace reqbus::fuzz::frame

REQBUS_FUZZ_ENTRY(reqbus::fuzz::frame::run)
