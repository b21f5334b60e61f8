#pragma once
// GapTracker: counts events missing from each origin's sequence. Every frame says where its
// channel's sequence starts; a frame that starts past the expected number means ZeroMQ dropped
// the events in between (high-water mark, reconnect). A new epoch means the origin restarted.
// Thread-safety: none; each owner (a subscriber, the receiver) keeps its own.
#include <cstdint>
#include <sstream>
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

  // Where every channel stands, as text: one "origin TAB channel-key-hex TAB epoch TAB next"
  // line per channel (the peer state file); load() takes it back after a restart, so the first
  // frame of an origin that kept running counts what this node missed while it was down.
  std::string save() const {
    std::string out;
    for (const auto& [key, s] : next_) {
      const size_t nul = key.find('\0');
      out += key.substr(0, nul) + '\t' + hex(key.substr(nul + 1)) + '\t' + std::to_string(s.epoch) + '\t' +
             std::to_string(s.next) + '\n';
    }
    return out;
  }
  // Returns the number of channels loaded; malformed lines are skipped.
  size_t load(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string origin, channel;
      State s{};
      if (!std::getline(fields, origin, '\t') || !std::getline(fields, channel, '\t') || !(fields >> s.epoch >> s.next))
        continue;
      std::string key = origin;
      key.push_back('\0');
      key += unhex(channel);
      next_[key] = s;
      ++n;
    }
    return n;
  }

 private:
  static std::string hex(std::string_view v) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : v) {
      out.push_back(digits[c >> 4]);
      out.push_back(digits[c & 15]);
    }
    return out;
  }
  static std::string unhex(std::string_view v) {
    std::string out;
    for (size_t i = 0; i + 1 < v.size(); i += 2) out.push_back(char(std::stoi(std::string(v.substr(i, 2)), nullptr, 16)));
    return out;
  }
  struct State {
    uint64_t epoch;
    uint64_t next;
  };
  std::string key_;  // scratch, reused to avoid an allocation per frame
  std::unordered_map<std::string, State> next_;
};

}  // namespace reqbus::detail
