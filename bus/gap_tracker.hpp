#pragma once
// GapTracker: counts events missing from each origin's sequence. Every frame says where its
// channel's sequence starts; a frame that starts past the expected number means ZeroMQ dropped
// the events in between (high-water mark, reconnect). A new epoch means the origin restarted:
// by default its first frame only sets the expectation (subscribers: a subscription knows
// nothing of what came before it). With count_restarts (the receiver), a new epoch of a channel
// this tracker already knew under another epoch counts the new epoch's events before that frame
// (first_seq: a new epoch starts at 0) as missing: ZeroMQ dropped them while we reconnected
// to the restarted origin. A channel never seen before is never a gap (published before we
// were there). An epoch the channel had before its current one coming back is no restart
// (a restarted process draws a fresh random epoch): two nodes publish with the same node id;
// nothing is counted missing then (epoch_flips()), since their sequences cannot be told apart.
// Bounds: origins and channels are named by peers (node ids change with every restart, and a
// hostile peer can invent one a frame), so at most max_channels are tracked; past that the
// least recently seen half is forgotten (counted: forgotten()), and a forgotten channel's next
// frame starts it afresh. A jump of more than kMaxGap is not counted as missing events but as
// a resync (resyncs()): no link drops 2^32 events, and one frame claiming so would add ~1.8e19
// to counters that only grow.
// Thread-safety: none; each owner (a subscriber, the receiver) keeps its own.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace reqbus::detail {

class GapTracker {
 public:
  static constexpr size_t kDefaultMaxChannels = 4096;
  static constexpr uint64_t kMaxGap = uint64_t(1) << 32;

  explicit GapTracker(size_t max_channels = kDefaultMaxChannels, bool count_restarts = false)
      : max_channels_(std::max<size_t>(max_channels, 2)), count_restarts_(count_restarts) {}

  // Returns how many events are missing before this frame.
  uint64_t observe(std::string_view origin, std::string_view channel, uint64_t epoch,
                   uint64_t first_seq, uint32_t count) {
    key_.assign(origin);
    key_.push_back('\0');
    key_.append(channel);
    auto [it, inserted] = next_.try_emplace(key_, State{epoch, 0, 0, 0});
    it->second.used = ++tick_;
    if (inserted && next_.size() > max_channels_) {
      forget_least_recent();  // keeps this channel: it was seen last
      it = next_.find(key_);
    }
    State& s = it->second;
    uint64_t missing = 0;
    if (!inserted && s.epoch == epoch) {
      if (first_seq > s.next) missing = first_seq - s.next;
    } else if (!inserted && s.previous_epoch != 0 && epoch == s.previous_epoch) {
      ++epoch_flips_;  // two live origins with one id: neither numbering can be followed
      s.previous_epoch = s.epoch;
    } else if (!inserted) {  // the origin restarted
      ++restarts_;
      if (count_restarts_) missing = first_seq;
      s.previous_epoch = s.epoch;
    }
    if (missing > kMaxGap) {
      missing = 0;
      ++resyncs_;
    }
    s.epoch = epoch;
    s.next = first_seq > std::numeric_limits<uint64_t>::max() - count ? std::numeric_limits<uint64_t>::max()
                                                                       : first_seq + count;
    return missing;
  }

  uint64_t forgotten() const { return forgotten_; }  // channels dropped to stay within the bound
  uint64_t resyncs() const { return resyncs_; }      // jumps past kMaxGap, not counted as missing
  uint64_t restarts() const { return restarts_; }    // frames that started a new epoch of a known channel
  uint64_t epoch_flips() const { return epoch_flips_; }  // frames back in a channel's previous epoch
  size_t channels() const { return next_.size(); }

  // Where every channel stands, as text: one "origin TAB channel-key-hex TAB epoch TAB next"
  // line per channel (the peer state file); load() takes it back after a restart, so the first
  // frame of an origin that kept running counts what this node missed while it was down (and,
  // with count_restarts, the first frame of an origin that restarted meanwhile counts its new
  // epoch's events before it). The previous epoch is not saved.
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
      if (next_.size() >= max_channels_) break;
      std::string key = origin;
      key.push_back('\0');
      key += unhex(channel);
      s.used = ++tick_;
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
    uint64_t used;            // tick_ when last seen
    uint64_t previous_epoch;  // the epoch before `epoch`, 0 if none known
  };
  // Forgets the least recently seen half: O(n) once every n/2 new channels, not per frame.
  void forget_least_recent() {
    std::vector<uint64_t> ticks;
    ticks.reserve(next_.size());
    for (const auto& [key, s] : next_) ticks.push_back(s.used);
    auto middle = ticks.begin() + long(ticks.size() / 2);
    std::nth_element(ticks.begin(), middle, ticks.end());
    const uint64_t cutoff = *middle;
    forgotten_ += std::erase_if(next_, [&](const auto& kv) { return kv.second.used < cutoff; });
  }

  const size_t max_channels_;
  const bool count_restarts_;
  std::string key_;  // scratch, reused to avoid an allocation per frame
  std::unordered_map<std::string, State> next_;
  uint64_t tick_ = 0, forgotten_ = 0, resyncs_ = 0, restarts_ = 0, epoch_flips_ = 0;
};

}  // namespace reqbus::detail
