#pragma once
// Options for a Bus and for one subscription. Every field has its default, unit and trade-off;
// Bus's constructor validates them once and throws Error{invalid_argument} naming the field.
#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "reqbus/overflow.hpp"

namespace reqbus {

inline constexpr const char* kDefaultTopic = "requests";

struct BusOptions {
  // The bus's name (PhoenixAnalytics' `name()`); part of its inproc endpoint. Default "reqbus".
  std::string name = "reqbus";
  // This node's id, stamped on every event it publishes. Default: "<hostname>-<pid>".
  std::string node_id;
  // tcp endpoint to bind for peers ("tcp://127.0.0.1:7400"); empty = this node serves no peers.
  std::string bind;
  // tcp endpoints of peer nodes to receive their cluster broadcasts from.
  std::vector<std::string> peers;

  // --- the publish queue between broadcast() callers and the publisher thread ---
  size_t queue_max_events = 65536;         // events; must be >= 1
  size_t queue_max_bytes = 64 << 20;       // encoded bytes (64 MiB); must be >= 64 KiB
  Overflow overflow = Overflow::block;     // what broadcast() does when the queue is full
  std::chrono::milliseconds block_timeout{100};  // longest a block-policy broadcast waits

  // --- framing and transport ---
  size_t max_events_per_frame = 64;        // events coalesced into one ZeroMQ message; 1..4096
  size_t max_frame_bytes = 256 << 10;      // soft cap on one frame's encoded records (256 KiB)
  int inproc_hwm = 256;                    // frames queued per local subscriber before the
                                           // publisher waits (XPUB_NODROP: local is lossless)
  int tcp_hwm = 10000;                     // frames queued per tcp peer; beyond it ZeroMQ drops,
                                           // and peers count the loss as sequence gaps
  size_t max_message_bytes = 1 << 20;      // frames from peers larger than this are dropped and
                                           // counted; past 2x ZeroMQ disconnects the peer
  // --- shutdown ---
  std::chrono::milliseconds close_timeout{5000};  // deadline the destructor gives close()
};

// Which events a subscription receives.
enum class Scope : uint8_t {
  local_only,  // events that originated on this node (what persistence uses)
  cluster,     // this node's events and those received from peers (what dashboards use)
};
const char* to_string(Scope scope) noexcept;

struct SubscribeOptions {
  std::string topic = kDefaultTopic;   // [A-Za-z0-9_.:-], 1..64 bytes
  Scope scope = Scope::cluster;
  std::string name;                    // shown in stats and logs; default "<topic>#<n>"
  // Decoded events held for a slow handler or an unread pull queue.
  size_t max_pending = 65536;          // events; must be >= 1
  // block: never drop (the bus slows its publishers instead); drop_*: shed load here and count it.
  Overflow overflow = Overflow::block;
  int rcv_hwm = 256;                   // frames buffered in the ZeroMQ socket
  // How long subscribe() waits for the subscription to be live (events published after it
  // returns are guaranteed to be seen).
  std::chrono::milliseconds ready_timeout{5000};
};

}  // namespace reqbus
