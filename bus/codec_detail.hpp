#pragma once
// Private to bus/: msgpack helpers shared by the record codec and the frame codec.
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "bus/wire_io.hpp"
#include "reqbus/codec.hpp"

namespace reqbus::codec::detail {

// Decodes one record from an already-parsed msgpack object.
std::optional<DecodeError> decode_record(const msgpack::object& record, Message& out);
// Decodes the record at `in` (and moves past it) when it is in the forms WireWriter writes and
// valid; false otherwise, and then only msgpack-c can tell the error (see wire_io.hpp).
// check_fields = false skips validate() on the decoded fields, for bytes that were validated
// before (a subscriber's frames: see decode_frame).
bool decode_record(WireReader& in, Message& out, bool check_fields = true);
// The same into a view of the bytes read; an analytics event is decoded into `analytics`, which
// out.analytics then points to.
bool decode_record(WireReader& in, MessageView& out, AnalyticsEvent& analytics, bool check_fields);

// Parses exactly one msgpack object filling [data, data + size), referencing (not copying)
// strings in `data`. Returns the error class when it fails.
std::optional<DecodeError> parse(const char* data, size_t size, msgpack::object_handle& out);

// Encoders with the fields the bus fills at publish passed separately, so the caller's event
// is never copied or modified.
void append_request_log(std::string& out, const RequestLogView& r, std::string_view request_id,
                        int64_t inserted_at, std::string_view node_id, uint64_t seq);
void append_analytics(std::string& out, const AnalyticsEvent& e, std::string_view message_id,
                      int64_t timestamp, std::string_view node_id, uint64_t seq);

// Reads msgpack-c objects in order with WireReader's interface (the decoders take either):
// str (or nil), uint, int64 (either sign), number (float or integer).
struct ObjectCursor {
  const msgpack::object* f;
  bool str(std::string& out);
  bool uint(uint64_t& out);
  bool int64(int64_t& out);
  bool number(double& out);
};

}  // namespace reqbus::codec::detail
