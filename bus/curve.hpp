#pragma once
// CURVE support for the bus's tcp sockets (docs/CLUSTER.md): Z85 key checks, "endpoint#key"
// parsing, socket setup, and the ZAP handler that enforces the allow-list of client keys.
// Thread-safety: the functions are pure or act on one socket (its owner thread's); a
// ZapHandler owns its thread and socket, and counters() may be read from any thread.
#include <atomic>
#include <functional>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "reqbus/log.hpp"

namespace reqbus::detail {

inline constexpr size_t kZ85KeyLength = 40;

// True when `key` is 40 characters of Z85 that decode to 32 bytes.
bool valid_z85_key(std::string_view key);
// The public key of a Z85 secret key; throws Error{invalid_argument} for a bad key.
std::string curve_public_of(const std::string& secret_z85);

struct PeerEndpoint {
  std::string endpoint;    // "tcp://host:port"
  std::string server_key;  // Z85, "" in plaintext mode
};
// Parses "tcp://host:port[#key]"; the error names `field` and the entry.
// With `curve` the key is required; without it a key is an error (it would be ignored).
PeerEndpoint parse_peer(const std::string& entry, bool curve, const std::string& field);
// An endpoint with an IPv6 address ("tcp://[::1]:7400"): its socket needs ZMQ_IPV6, without
// which libzmq reports the address as not resolved. (Not set otherwise: with it, a bind to
// "tcp://*:port" would listen on IPv6 as well.)
inline bool names_ipv6(const std::string& endpoint) { return endpoint.find('[') != std::string::npos; }
inline bool names_ipv6(const std::vector<PeerEndpoint>& list) {
  for (const PeerEndpoint& p : list)
    if (names_ipv6(p.endpoint)) return true;
  return false;
}

struct CurveKeys {
  std::string secret, public_key;  // Z85
};
// Makes `socket` a CURVE server (before bind): ZAP domain "reqbus".
void make_curve_server(zmq::socket_t& socket, const CurveKeys& keys);
// Makes `socket` a CURVE client of `server_key` (before each connect: libzmq copies the
// options into the connection at connect time, so one socket can reach servers with different keys).
void make_curve_client(zmq::socket_t& socket, const CurveKeys& keys, const std::string& server_key);

// Answers ZAP requests (inproc://zeromq.zap.01 in `context`) for every CURVE server socket of
// that context: 200 for a client key on the allow-list, 400 (refused, counted, logged at a
// limited rate) for any other. Start it before binding a CURVE server: libzmq lets every
// client in when no handler is bound.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& context, const std::vector<std::string>& allowed_z85, std::string owner);
  ~ZapHandler();  // stop()
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  void stop();  // joins the thread; idempotent. Call before the context is shut down.
  uint64_t refused() const noexcept { return refused_.load(std::memory_order_relaxed); }
  uint64_t allowed() const noexcept { return allowed_.load(std::memory_order_relaxed); }

 private:
  void run(std::promise<void> started);

  zmq::context_t& context_;
  std::set<std::string> allowed_keys_;  // raw 32-byte keys
  const std::string owner_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> refused_{0}, allowed_{0};
  RateLimiter log_limit_;
  std::thread thread_;
};

}  // namespace reqbus::detail
