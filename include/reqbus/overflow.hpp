#pragma once
// What a bounded queue does when it is full. Every drop is counted under its reason.
#include <cstdint>

namespace reqbus {

enum class Overflow : uint8_t {
  block,        // wait for room up to the queue's timeout, then drop and count a timeout
  drop_newest,  // refuse the new item (counted as dropped_newest)
  drop_oldest,  // evict the oldest queued item to make room (counted as dropped_oldest)
};

const char* to_string(Overflow overflow) noexcept;  // "block", "drop_newest", "drop_oldest"

}  // namespace reqbus
