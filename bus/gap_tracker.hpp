#pragma once
// GapTracker: counts events missing from each origin's sequence. Every frame says where its
// channel's sequence starts; a frame that starts past the expected number means ZeroMQ dropped
// the events in between (high-water mark, reconnect). A new epoch means the origin restarted.
// Thread-safety: none; each owner (a subscriber, the receiver) keeps its own.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

namespace reqbus::detail {

class GapTracker {
 public:
  // Returns how many events are missing before this frame.
  uint64_t observe(std::string_view origin, std::string_view channel, uint64_t epoch,
                   uint64_t first_seq, uint32_t count) {
    key_.assign(origin);
    key_.push_back('\0');
    key_.append(channel);
    auto [it, inserted] = next_.try_emplace(key_, State{epoch, 0});
    State& s = it->second;
    uint64_t missing = 0;
    if (!inserted && s.epoch == epoch && first_seq > s.next) missing = first_seq - s.next;
    s.epoch = epoch;
    s.next = first_seq + count;
    return missing;
  }

 private:
  struct State {
    uint64_t epoch;
    uint64_t next;
  };
  std::string key_;  // scratch, reused to avoid an allocation per frame
  std::unordered_map<std::string, State> next_;
};

}  // namespace reqbus::detail
