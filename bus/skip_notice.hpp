#pragma once
// Skip notices: how the receiver tells this node's cluster subscribers to advance past a peer's
// frame it rejected. A rejected frame is counted once (BusStats::malformed, by reason); when
// its header was readable (origin, epoch, first_seq, record count), the receiver's gap tracker
// advances past its events and it sends a notice to the subscribers of the frame's topic, so
// their gap trackers do too and the next frame of that origin is not a "gap".
// Inproc only (receiver -> subscribers), never on the network: key "<topic>\0S" (subscribers'
// "<topic>\0" prefix matches it), payload epoch (8 bytes) first_seq (8) count (4) node_id,
// in native byte order.
#include <cstdint>
#include <cstring>
#include <string>

#include "bus/frame.hpp"

namespace reqbus::detail {

inline constexpr char kScopeSkipped = 'S';

inline std::string encode_skip(const FrameHeader& h) {
  std::string out(20 + h.node_id.size(), '\0');
  std::memcpy(out.data(), &h.epoch, 8);
  std::memcpy(out.data() + 8, &h.first_seq, 8);
  std::memcpy(out.data() + 16, &h.declared, 4);
  std::memcpy(out.data() + 20, h.node_id.data(), h.node_id.size());
  return out;
}

// Fills epoch, first_seq, node_id and count (the skipped records); false if `size` is too short.
inline bool decode_skip(const char* data, size_t size, FrameHeader& h) {
  if (size <= 20) return false;
  std::memcpy(&h.epoch, data, 8);
  std::memcpy(&h.first_seq, data + 8, 8);
  std::memcpy(&h.count, data + 16, 4);
  h.node_id.assign(data + 20, size - 20);
  return true;
}

}  // namespace reqbus::detail
