#pragma once
// The msgpack record codec: how one RequestLog or AnalyticsEvent is written on the wire, in the
// spool and anywhere else reqbus stores a record. docs/WIRE.md describes the layout for other
// languages. Records are msgpack arrays (not maps: 4.7x faster to decode, 30% smaller):
//   [kind, record_version, field, field, ...]
// A reader accepts every record_version up to its own and rejects newer ones.
// Thread-safety: pure functions.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "reqbus/message.hpp"

namespace reqbus::codec {

inline constexpr uint32_t kWireVersion = 1;        // frame layout (docs/WIRE.md)
inline constexpr uint32_t kRequestLogVersion = 2;  // v1: PhoenixAnalytics fields; v2: + node_id, seq
inline constexpr uint32_t kAnalyticsVersion = 1;

enum class DecodeError : uint8_t {
  not_msgpack,      // the bytes are not msgpack
  truncated,        // msgpack that ends early
  oversized,        // larger than the configured limit
  unknown_version,  // a wire or record version newer than this reader
  wrong_shape,      // valid msgpack, but not the reqbus layout (types, lengths, kinds)
  invalid_field,    // the layout is right but a field fails validation (limits, status range)
};
inline constexpr size_t kDecodeErrorCount = 6;
const char* to_string(DecodeError error) noexcept;

// Appends one record to `out`.
void append(std::string& out, const RequestLog& log);
void append(std::string& out, const AnalyticsEvent& event);
void append(std::string& out, const Message& message);

// Writes a RequestLog in the older v1 layout (no node_id, no seq). Only for tests and for
// documenting what older writers send.
void append_v1(std::string& out, const RequestLog& log);

// Decodes one record that fills exactly [data, data + size).
[[nodiscard]] std::optional<DecodeError> decode(const char* data, size_t size, Message& out);

}  // namespace reqbus::codec
