#pragma once
// Private to bus/: msgpack encoding helpers shared by the record codec and the frame codec
// (decoding: bus/record_reader.hpp).
#include <msgpack.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "reqbus/codec.hpp"

namespace reqbus::codec::detail {

// Lets msgpack::packer append to a std::string.
struct StringWriter {
  std::string& out;
  void write(const char* data, size_t size) { out.append(data, size); }
};
using Packer = msgpack::packer<StringWriter>;

// Encoders with the fields the bus fills at publish passed separately, so the caller's event
// is never copied or modified.
void append_request_log(std::string& out, const RequestLog& r, std::string_view request_id,
                        int64_t inserted_at, std::string_view node_id, uint64_t seq);
void append_analytics(std::string& out, const AnalyticsEvent& e, std::string_view message_id,
                      int64_t timestamp, std::string_view node_id, uint64_t seq);

}  // namespace reqbus::codec::detail
