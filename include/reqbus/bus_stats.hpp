#pragma once
// Counters a Bus and its subscriptions export (read by the metrics endpoint).
// All are totals since construction unless named *_depth.
#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "reqbus/bus_options.hpp"
#include "reqbus/codec.hpp"

namespace reqbus {

// For every subscription, received = delivered + dropped_newest + dropped_oldest +
// dropped_close + pending_depth + in_hand. Exact when the subscription is idle, stuck in its
// handler, or closed; while events flow a snapshot may be off by the few events moving between
// two counters as they are read.
struct SubscriptionStats {
  std::string name;
  std::string topic;
  Scope scope = Scope::cluster;
  uint64_t received = 0;        // events decoded from the socket
  uint64_t delivered = 0;       // events handed to the handler or returned by next()
  uint64_t dropped_newest = 0;  // refused: pending queue full (drop_newest)
  uint64_t dropped_oldest = 0;  // evicted: pending queue full (drop_oldest)
  uint64_t dropped_close = 0;   // received but never delivered: the subscription was closed
                                // (or Bus::close hit its deadline) before it was handled/read
  uint64_t gaps = 0;            // events missing from an origin's sequence (lost upstream)
  uint64_t handler_errors = 0;  // handler calls that threw
  uint64_t malformed = 0;       // frames that failed to decode (never expected locally)
  uint64_t pending_depth = 0;   // events waiting now
  uint64_t in_hand = 0;         // events received and held by the subscription's threads now
                                // (a frame being queued, the batch the handler is working on)
  bool slow = false;            // pending queue is (or was recently) full
};

// One tcp endpoint this node connects to (an entry of BusOptions::peers or publish_to), as the
// socket's ZeroMQ monitor sees it. A wrong address (nothing listens, a misspelt host) shows as
// connected = false with connect_failures growing; the Bus also logs it
// (BusOptions::peer_unreachable_after).
struct PeerStats {
  std::string endpoint;           // "tcp://host:port" as configured, without the "#key"
  // Up: a connection whose handshake (CURVE, or plain ZeroMQ) succeeded. Down until the first
  // one, after a disconnect, and while connection attempts fail.
  bool connected = false;
  int64_t since_unix_us = 0;      // when `connected` took its value (µs since the epoch); the
                                  // Bus's start for a peer that never connected
  // Connection attempts that failed: refused or timed out (TCP), an address that does not
  // resolve, a failed handshake (CURVE key, or not a ZeroMQ endpoint). A disconnect of a
  // working connection is not one (BusStats::peer_disconnects counts those).
  uint64_t connect_failures = 0;
  // The last failure: "connection refused", "connection timed out", "address not resolved",
  // "handshake failed", or "disconnected"; "" if none yet.
  std::string last_failure;
  // publish_to only: cluster-scope events ZeroMQ's PUB socket dropped for this endpoint: sent
  // before its first connection, after a failed handshake, or past tcp_hwm frames while a lost
  // connection waits to be made again (up to tcp_hwm frames wait in it and are delivered when
  // it is back; what still waits there when the Bus closes is counted then). The forwarder's
  // subscribers count them as gaps, if they saw this node before. A lower bound: frames already
  // handed to a connection that then breaks (its socket buffers) are lost uncounted. Always 0
  // for peers: what we miss from them is BusStats::remote_gaps.
  uint64_t events_unsent = 0;
};

struct BusStats {
  uint64_t published = 0;        // accepted by broadcast()/local_broadcast()
  uint64_t dropped_newest = 0;   // publish queue full, drop_newest
  uint64_t dropped_oldest = 0;   // publish queue full, drop_oldest (accepted, then evicted)
  uint64_t dropped_timeout = 0;  // publish queue full past block_timeout
  uint64_t offers_refused = 0;   // offer() refused (queue full or timed out): handed back, not lost
  uint64_t dropped_closed = 0;   // broadcast after close()
  uint64_t dropped_close_deadline = 0;  // accepted but not sent when close() hit its deadline
  uint64_t rejected_invalid = 0; // failed validation
  uint64_t frames_sent = 0;
  uint64_t events_sent = 0;      // events written to the local socket (per event, not per peer)
  uint64_t queue_depth = 0;      // events in the publish queue now
  uint64_t queue_bytes = 0;
  // From tcp peers:
  uint64_t remote_frames = 0;
  uint64_t remote_events = 0;
  uint64_t remote_gaps = 0;      // events missing from a peer's sequence at this node (also
                                 // a restarted peer's first events, sent before we reconnected)
  // Connections to peers and publish_to endpoints that closed (incl. ZeroMQ's size limit).
  uint64_t peer_disconnects = 0;
  uint64_t auth_refused = 0;     // clients refused by the ZAP allow-list at `bind`
  // Our connections to peers and publish_to endpoints that failed the handshake (CURVE).
  uint64_t handshake_failures = 0;
  uint64_t echoes_ignored = 0;   // frames of our own that came back (through a forwarder)
  // Frames with this node's node_id but another epoch than this Bus's: another node uses the
  // same id (ids must be unique). Ignored, like echoes, and logged as an error (rate-limited).
  uint64_t duplicate_node_id_frames = 0;
  std::array<uint64_t, codec::kDecodeErrorCount> malformed{};  // frames, by codec::DecodeError
  // Events in those frames, when the frame said whose they were and how many (its header was
  // readable): counted here once, and never again as remote_gaps or subscription gaps.
  uint64_t remote_rejected_events = 0;
  // A peer frame more than 2^32 events past its channel's last one: taken as a new numbering
  // (a peer that lost its state, or lies), not added to remote_gaps.
  uint64_t remote_gap_resyncs = 0;
  // Peer channels (origin node x topic) the gap tracker forgot to stay within its bound (4,096;
  // node ids change with every restart): the next frame of one starts it afresh.
  uint64_t peer_channels_forgotten = 0;
  // One entry per distinct endpoint of BusOptions::peers, in their order (empty without peers),
  // all copied at one instant (the receiver thread updates them under a lock).
  std::vector<PeerStats> peers;
  // The same for BusOptions::publish_to (the publisher thread's monitor), with events_unsent.
  std::vector<PeerStats> uplinks;
  // One entry per subscription. Closed subscriptions are forgotten once their counters are
  // final (handler mode: after close(); pull mode: when the Subscription is destroyed, which
  // counts what it left unread as dropped_close); their counters are summed into one last
  // entry named "(closed)", so sums over `subscriptions` never go backwards.
  std::vector<SubscriptionStats> subscriptions;
  uint64_t subscriptions_closed = 0;  // how many are folded into the "(closed)" entry
};

// What close() did.
struct CloseReport {
  uint64_t published = 0;
  uint64_t delivered = 0;         // sum over subscriptions
  uint64_t dropped_newest = 0;
  uint64_t dropped_oldest = 0;    // publish queue and subscriptions
  uint64_t dropped_timeout = 0;
  // Not sent from the publish queue, or sent and not handled (subscriptions' dropped_close:
  // queued, or still unread in their sockets) when the deadline passed.
  uint64_t dropped_close_deadline = 0;
  uint64_t gaps = 0;
  // Events a handler still held when close() returned past its deadline (it cannot be
  // interrupted): each ends delivered or dropped_close in its subscription's stats once the
  // handler returns. published = delivered + dropped_* + in_hand for a bus with one
  // subscription and no peers.
  uint64_t in_hand = 0;
  bool deadline_reached = false;  // true if something was still in flight at the deadline
  std::chrono::milliseconds took{0};
};

}  // namespace reqbus
