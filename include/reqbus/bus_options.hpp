#pragma once
// Options for a Bus and for one subscription. Every field has its default, unit and trade-off;
// Bus's constructor validates them once and throws Error{invalid_argument} naming the field.
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
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
  // tcp endpoints of peer nodes (or of a `reqbus forward` backend) to receive their cluster
  // broadcasts from. With CURVE each entry names the server's public key after a '#':
  // "tcp://10.0.0.2:7400#<40-char Z85 public key>"; plain "tcp://host:port" only when
  // insecure_plaintext.
  std::vector<std::string> peers;
  // tcp endpoints this node's publisher *connects* to, same form as `peers`: the frontend of a
  // `reqbus forward` forwarder, so that nodes need not know each other (docs/CLUSTER.md).
  std::vector<std::string> publish_to;

  // --- security (docs/CLUSTER.md): ZeroMQ CURVE on every tcp socket ---
  // Keys are 40-character Z85 text, as `reqbus keygen` prints them.
  std::string curve_secret_key;  // this node's secret key; required for any tcp use
  std::string curve_public_key;  // this node's public key; "" = derived from the secret key
  // Public keys of the clients (peer nodes, `reqbus tail`, forwarders) allowed to connect to
  // `bind`. A ZAP handler refuses every other key at the handshake: such a client receives
  // nothing; each refusal is counted (BusStats::auth_refused) and logged at a limited rate.
  // Must be non-empty when binding with CURVE.
  std::vector<std::string> curve_allowed_clients;
  // Plain tcp: no authentication, no encryption, a warning at start. Default false: tcp
  // without CURVE keys is an error.
  bool insecure_plaintext = false;
  // Where the receiver keeps each origin's last sequence seen, so that a node restarted after a
  // crash counts what it missed while down as remote_gaps (docs/CLUSTER.md: the window).
  // "" (default) = not kept: a restarted node only sees new gaps.
  std::string peer_state_file;
  std::chrono::milliseconds peer_state_interval{500};  // how often it is rewritten (if changed)
  // A peer not connected this long after the Bus started, or after it went down, is logged
  // once as a warning naming it, how long and why it is unreachable ("connection refused x12")
  // and what to check; then every peer_unreachable_repeat while it stays so, and at info level
  // when it connects. Default 10 s: a peer that restarts is usually back by then (the receiver
  // retries at 100 ms doubling to 5 s), and a wrong address shows soon after start.
  // Must be >= 1 ms. Its state is in BusStats::peers whatever this says.
  std::chrono::milliseconds peer_unreachable_after{10000};
  // How often the warning is repeated while the peer stays unreachable. Default 5 min; 0 = once.
  std::chrono::milliseconds peer_unreachable_repeat{300000};
  // A TCP connection attempt to a peer (or a publish_to frontend) that gets no answer this long
  // is given up and retried, and counted as a "connection timed out" failure. Default 5 s: the
  // system's own bound (~2 min on Linux) left an address that drops packets looking like one
  // attempt in progress, with no failure counted. 0 = the system's bound; else >= 100 ms (an
  // attempt closed within min(1 s, half of it) is counted as refused, later as timed out).
  std::chrono::milliseconds peer_connect_timeout{5000};

  // --- the publish queue between broadcast() callers and the publisher thread ---
  size_t queue_max_events = 65536;         // events; must be >= 1
  size_t queue_max_bytes = 64 << 20;       // encoded bytes (64 MiB); must be >= 64 KiB
  Overflow overflow = Overflow::block;     // what broadcast() does when the queue is full
  std::chrono::milliseconds block_timeout{100};  // longest a block-policy broadcast waits
  // While events keep coming, the publisher thread gathers them for up to publish_linger
  // before sending, unless max_events_per_frame are already waiting: broadcast() then never
  // has to wake a thread (no system call on the caller's side) and frames carry more events.
  // The cost is up to this much extra latency while traffic is steady; after 4x the linger
  // (at least 5 ms) without events the publisher sleeps until the next broadcast wakes it at
  // once, so a lone event is not delayed.
  // Default 20 ms (with up to 512 events a frame): every frame wakes the publisher and each
  // subscriber's reader, and a wake-up costs tens of microseconds of CPU on a 2-vCPU VM; the
  // bus threads' cost per request is about that times frames/s over requests/s. A busy web
  // server (bench/web_bench, ~20k req/s) paid ~10 us a request in bus threads at 200 us,
  // 1.2-1.6 us at 2 ms / 64, 1.25-1.5 us at 5 ms / 256 and 0.76-0.80 us at 20 ms / 256
  // (per-thread CPU; docs/BENCHMARKS.md). Frames of 1024 cut the bus threads to 0.5-0.7 us
  // but made the whole server slower in a wall-clock A/B (median 0.95x the req/s of 5 ms / 256,
  // some pairs 0.76x). With both builds' servers loaded at once (bench/web_ab.sh), 20 ms / 512
  // took 0.994x the server CPU of 20 ms / 256 pinned and 0.985x unpinned: at ~20k req/s the
  // linger ends most frames at ~400 events. 20 ms is nothing to a dashboard refreshing every
  // second or to a database writer flushing every few seconds. 0 = wake for every event.
  std::chrono::microseconds publish_linger{20000};

  // --- framing and transport ---
  size_t max_events_per_frame = 512;       // events coalesced into one ZeroMQ message; 1..4096
  size_t max_frame_bytes = 256 << 10;      // soft cap on one frame's encoded records (256 KiB)
  // ZeroMQ bounds its pipes in frames, not events. For a local subscriber the pipe holds up to
  // inproc_hwm (the publisher's side) + SubscribeOptions::rcv_hwm (the subscriber's side) frames,
  // i.e. that many times max_events_per_frame events beyond the subscription's max_pending: with
  // the defaults 16 + 128 frames of 512 for a max_pending of 65,536, about 73 k events. A block
  // policy subscription that stops reading lets the publisher run on until the pipe is full, so
  // this is events a slow sink still has to drain at close (tests/overload_test: with 128 + 256
  // frames a block-policy bus buffered ~196 k events and took ~50 s to drain into a slow sink).
  int inproc_hwm = 16;                     // frames queued per local subscriber on the publisher's
                                           // side before it waits (XPUB_NODROP: local is lossless)
  int tcp_hwm = 5000;                      // frames queued per tcp peer; beyond it ZeroMQ drops,
                                           // and peers count the loss as sequence gaps
  size_t max_message_bytes = 1 << 20;      // frames from peers larger than this are dropped and
                                           // counted; past 2x ZeroMQ disconnects the peer
  // --- shutdown ---
  std::chrono::milliseconds close_timeout{5000};  // deadline the destructor gives close()
};

// "" when `endpoint` is "tcp://HOST:PORT" (PORT 0..65535 or *), else why not. ZeroMQ itself takes
// a port past 65535 modulo 65536 ("tcp://127.0.0.1:99999" bound port 34463).
std::string tcp_endpoint_problem(std::string_view endpoint);
// The same for a peer or publish_to entry, which may name its server's CURVE key after '#'.
std::string peer_endpoint_problem(std::string_view peer);

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
  // Frames buffered in the subscription's ZeroMQ socket (see BusOptions::inproc_hwm). 0 (default)
  // = sized from max_pending: ceil(max_pending / max_events_per_frame) frames, 2..256, so the pipe
  // holds about as many events as the subscription's own queue.
  int rcv_hwm = 0;
  // How long subscribe() waits for the subscription to be live (events published after it
  // returns are guaranteed to be seen).
  std::chrono::milliseconds ready_timeout{5000};
};

}  // namespace reqbus
