#pragma once
// Frames: the two-part ZeroMQ messages reqbus sends (docs/WIRE.md).
//   part 1, the envelope key:  <topic> NUL <scope>   scope 'L' (local-only) or 'G' (cluster)
//                              (inproc only, receiver -> subscribers: 'S', bus/skip_notice.hpp)
//                              or a control key: 0x01 <name>
//   part 2, the payload:       msgpack [wire_version, node_id, epoch, first_seq, [record...]]
// Subscribers subscribe to "<topic>\0", a prefix that matches both scopes of that topic only.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reqbus/codec.hpp"
#include "reqbus/message.hpp"

namespace reqbus::detail {

inline constexpr char kScopeLocal = 'L';
inline constexpr char kScopeCluster = 'G';
inline constexpr char kControlPrefix = '\x01';
inline constexpr std::string_view kCloseKey = "\x01" "close";
// Subscriptions that start with this byte are readiness tokens, never message keys.
inline constexpr char kReadyPrefix = '\x02';

struct FrameHeader {
  std::string node_id;
  uint64_t epoch = 0;      // random per Bus instance: a restarted node starts a new sequence
  uint64_t first_seq = 0;  // channel sequence of the first record; the next frame continues it
  uint32_t count = 0;      // records in the frame
  uint32_t declared = 0;   // records the frame says it holds; 0 until the header above is read
};

// "" when `topic` is a valid topic name, else the reason.
std::string check_topic(std::string_view topic);
std::string envelope_key(std::string_view topic, char scope);
// Parses an envelope key; false if it is not "<valid topic>\0<L|G>".
bool parse_envelope_key(std::string_view key, std::string_view& topic, char& scope);

// Appends the payload header for a frame of `count` records; the records follow, as
// codec::append wrote them.
void append_frame_header(std::string& out, std::string_view node_id, uint64_t epoch,
                         uint64_t first_seq, uint32_t count);

// Decodes a payload into out[0..header.count). `out` is grown (by the records actually decoded,
// not by the count a frame claims) when a frame is larger than any before and never shrunk, so its Messages (and their strings' capacity) are reused frame after
// frame instead of being allocated and freed per event. Records in the v1 layout get node_id
// from the header. On error header.count is the number of records decoded before it, and
// header.declared is 0 unless the header (node_id, epoch, first_seq, record count) was read.
// Reads the forms bus/wire_io.hpp writes directly and hands anything else to
// decode_frame_reference. check_fields = false skips validate() on each record, for frames
// whose records were validated before: a subscriber's, which come from its bus's publisher
// (validated at publish) or receiver (validated on arrival). The reference path always checks.
std::optional<codec::DecodeError> decode_frame(const char* data, size_t size, size_t max_bytes,
                                               FrameHeader& header, std::vector<Message>& out,
                                               bool check_fields = true);
// decode_frame for Bus::subscribe_views: views[0..header.count) of the records in `data`
// (grown as decode_frame grows `out`). Their strings point into `data` (v1 records' node_id into
// header.node_id); analytics events are decoded into owned[i], which views[i].analytics points
// to. A frame in other msgpack forms than WireWriter's is decoded into `owned` by decode_frame
// and viewed there. The views are valid while `data`, `header` and `owned` are unchanged.
std::optional<codec::DecodeError> decode_frame_views(const char* data, size_t size, size_t max_bytes,
                                                     FrameHeader& header, std::vector<MessageView>& views,
                                                     std::vector<Message>& owned, bool check_fields = true);
// The header of a frame in WireWriter's form, and its record count, without reading the
// records: what a queued view subscription's reader needs (sequence gaps, counts) before its
// handler thread reads the records in place. False for anything else, or a frame over
// max_bytes (decode_frame_views then reads it whole and names the error).
bool peek_frame_header(const char* data, size_t size, size_t max_bytes, FrameHeader& header);
// The same through msgpack-c alone, which accepts every msgpack form and names every error:
// decode_frame's fallback, and what the fuzzer and codec_test compare it with.
std::optional<codec::DecodeError> decode_frame_reference(const char* data, size_t size, size_t max_bytes,
                                                         FrameHeader& header, std::vector<Message>& out);

}  // namespace reqbus::detail
