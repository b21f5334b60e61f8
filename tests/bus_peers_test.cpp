// A peer's connection state (BusStats::peers) and the "peer unreachable" log lines: PeerHealth
// driven with monitor events and a ManualClock (which lines, when, with what reason), then a
// real Bus whose peer address nobody listens on (down, failures counted, warned) until a peer
// binds it (up, logged), and goes away again (down); and the same for a publish_to endpoint,
// with the events it missed while down.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <zmq.h>
#include <zmq.hpp>

#include <atomic>
#include <thread>
#include <mutex>
#include <string>
#include <vector>

#include "bus/frame.hpp"
#include "bus/peer_health.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/log.hpp"
#include "tests/support/bus_fixtures.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/log_lines.hpp"
#include "tests/support/poll.hpp"

using namespace reqbus;
using namespace reqbus::test;
using namespace std::chrono_literals;

namespace {

const std::string kPeer = "tcp://10.0.0.99:7400";

struct HealthFixture {
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  LogLines logs;
  detail::PeerHealth health{{kPeer, "tcp://10.0.0.2:7400", kPeer}, "bus 't': peer", 10s, 300s, 5s, clock};

  PeerStats peer(size_t i = 0) const { return health.snapshot().at(i); }
  // One refused attempt, as libzmq reports it.
  void refused() {
    health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);
    health.on_event(ZMQ_EVENT_CLOSED, kPeer);
    health.on_event(ZMQ_EVENT_CONNECT_RETRIED, kPeer);
  }
  size_t warnings() { return logs.with(LogLevel::warn, kPeer).size(); }
};

BusOptions plain(const std::string& node) {
  BusOptions o;
  o.name = "peers-" + node;
  o.node_id = node;
  o.insecure_plaintext = true;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(PeerHealth)

BOOST_FIXTURE_TEST_CASE(a_peer_that_never_connects_is_warned_about_once_then_reminded, HealthFixture) {
  BOOST_REQUIRE_EQUAL(health.snapshot().size(), 2u);  // a repeated endpoint is one peer
  for (int i = 0; i < 12; ++i) refused();
  BOOST_TEST(!peer().connected);
  BOOST_TEST(peer().connect_failures == 12u);
  BOOST_TEST(peer().last_failure == "connection refused");
  BOOST_TEST(peer().since_unix_us == clock->unix_us());
  health.tick();
  BOOST_TEST(warnings() == 0u);  // within the grace period

  clock->advance(10s);
  health.tick();
  health.tick();
  const auto lines = logs.with(LogLevel::warn, kPeer);
  BOOST_REQUIRE_EQUAL(lines.size(), 1u);
  BOOST_TEST(lines[0] == "bus 't': peer tcp://10.0.0.99:7400 unreachable for 10 s (connection refused x12); "
                         "check the address and that the peer binds it");
  BOOST_TEST(logs.with(LogLevel::warn, "tcp://10.0.0.2:7400 unreachable for 10 s (no connection attempt has answered)").size() == 1u);

  clock->advance(299s);
  health.tick();
  BOOST_TEST(warnings() == 1u);  // reminders at most every peer_unreachable_repeat
  clock->advance(1s);
  refused();
  health.tick();
  BOOST_TEST(logs.with(LogLevel::warn, "peer tcp://10.0.0.99:7400 still unreachable for 310 s (connection refused x13)").size() == 1u);

  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);
  health.on_event(ZMQ_EVENT_CONNECTED, kPeer);
  BOOST_TEST(!peer().connected);  // not before the handshake
  clock->advance(2s);
  health.on_event(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, kPeer);
  BOOST_TEST(peer().connected);
  BOOST_TEST(peer().since_unix_us == clock->unix_us());
  BOOST_TEST(peer().connect_failures == 13u);
  BOOST_TEST(logs.with(LogLevel::info, "peer tcp://10.0.0.99:7400 connected after 312 s unreachable (connection refused x13)").size() == 1u);
  clock->advance(600s);
  health.tick();
  BOOST_TEST(warnings() == 2u);  // up: nothing more about it
}

BOOST_FIXTURE_TEST_CASE(a_lost_connection_is_down_from_then_and_warned_about_after_the_grace_period, HealthFixture) {
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);
  health.on_event(ZMQ_EVENT_CONNECTED, kPeer);
  health.on_event(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, kPeer);
  clock->advance(60s);
  health.tick();
  BOOST_TEST(warnings() == 0u);
  BOOST_TEST(logs.with(LogLevel::info, kPeer).empty());  // the first connection is not news

  health.on_event(ZMQ_EVENT_DISCONNECTED, kPeer);
  health.on_event(ZMQ_EVENT_CONNECT_RETRIED, kPeer);  // the retry after a disconnect is no failure
  BOOST_TEST(!peer().connected);
  BOOST_TEST(peer().since_unix_us == clock->unix_us());
  BOOST_TEST(peer().last_failure == "disconnected");
  BOOST_TEST(peer().connect_failures == 0u);
  clock->advance(5s);
  health.on_event(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, kPeer);  // back within the grace period: quiet
  clock->advance(60s);
  health.tick();
  BOOST_TEST(warnings() == 0u);
  BOOST_TEST(logs.with(LogLevel::info, kPeer).empty());

  health.on_event(ZMQ_EVENT_DISCONNECTED, kPeer);
  refused();
  clock->advance(9s);
  health.tick();
  BOOST_TEST(warnings() == 0u);
  clock->advance(1s);
  health.tick();
  BOOST_TEST(logs.with(LogLevel::warn, "peer tcp://10.0.0.99:7400 unreachable for 10 s (connection refused x1)").size() == 1u);
}

BOOST_FIXTURE_TEST_CASE(each_failure_is_named_with_what_to_check, HealthFixture) {
  const std::string other = "tcp://10.0.0.2:7400";
  // A host name that does not resolve: libzmq only says it retries.
  health.on_event(ZMQ_EVENT_CONNECT_RETRIED, kPeer);
  health.on_event(ZMQ_EVENT_CONNECT_RETRIED, kPeer);
  BOOST_TEST(peer().connect_failures == 2u);
  BOOST_TEST(peer().last_failure == "address not resolved");
  // A key the peer refuses: TCP connects, the handshake fails, libzmq disconnects.
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, other);
  health.on_event(ZMQ_EVENT_CONNECTED, other);
  health.on_event(ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, other);
  health.on_event(ZMQ_EVENT_DISCONNECTED, other);
  health.on_event(ZMQ_EVENT_CONNECT_RETRIED, other);
  BOOST_TEST(peer(1).connect_failures == 1u);
  BOOST_TEST(peer(1).last_failure == "handshake failed");
  BOOST_TEST(!peer(1).connected);
  // Something that is not a ZeroMQ endpoint (an HTTP server) closes before any handshake
  // result: a failed handshake too, once.
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, other);
  health.on_event(ZMQ_EVENT_CONNECTED, other);
  health.on_event(ZMQ_EVENT_DISCONNECTED, other);
  health.on_event(ZMQ_EVENT_CONNECT_RETRIED, other);
  BOOST_TEST(peer(1).connect_failures == 2u);
  BOOST_TEST(peer(1).last_failure == "handshake failed");
  // Events for endpoints that are not peers (libzmq's resolved name for its own reconnect).
  health.on_event(ZMQ_EVENT_HANDSHAKE_SUCCEEDED, "tcp://127.0.0.1:1");
  clock->advance(10s);
  health.tick();
  BOOST_TEST(logs.with(LogLevel::warn, "(address not resolved x2); check the host name").size() == 1u);
  BOOST_TEST(logs.with(LogLevel::warn, "(handshake failed x2); check that the address is a reqbus bus endpoint, "
                                       "the server key after '#'").size() == 1u);
}

// A connect that fails at once (an unreachable network: CLOSED with no CONNECT_DELAYED) is a
// failure, and the CONNECT_RETRIED that follows is its retry, not a name that does not resolve.
BOOST_FIXTURE_TEST_CASE(a_connect_that_fails_at_once_is_not_taken_for_a_bad_name, HealthFixture) {
  for (int i = 0; i < 3; ++i) {
    health.on_event(ZMQ_EVENT_CLOSED, kPeer);
    health.on_event(ZMQ_EVENT_CONNECT_RETRIED, kPeer);
  }
  BOOST_TEST(peer().connect_failures == 3u);
  BOOST_TEST(peer().last_failure == "connection failed");
}

BOOST_FIXTURE_TEST_CASE(an_attempt_nobody_answers_is_no_failure_yet_but_is_warned_about, HealthFixture) {
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);  // a black-holed address: SYNs unanswered
  clock->advance(10s);
  health.tick();
  BOOST_TEST(peer().connect_failures == 0u);
  BOOST_TEST(logs.with(LogLevel::warn, "unreachable for 10 s (no answer to the connection attempt for 10 s); check the IP "
                                       "address, and that no firewall drops the traffic").size() == 1u);
  clock->advance(5s);
  health.on_event(ZMQ_EVENT_CLOSED, kPeer);  // the kernel gave up
  BOOST_TEST(peer().connect_failures == 1u);
  BOOST_TEST(peer().last_failure == "connection timed out");
  // TCP connects, the handshake never comes (an HTTP port, say): named as such until libzmq's
  // handshake timeout fails it.
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);
  health.on_event(ZMQ_EVENT_CONNECTED, kPeer);
  clock->advance(300s);
  health.tick();
  BOOST_TEST(logs.with(LogLevel::warn, "still unreachable for 315 s (TCP connected, no ZeroMQ handshake for 300 s; "
                                       "before: connection timed out x1); check that the address is a reqbus bus endpoint")
                 .size() == 1u);
  health.on_event(ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL, kPeer);
  health.on_event(ZMQ_EVENT_DISCONNECTED, kPeer);
  BOOST_TEST(peer().connect_failures == 2u);
  BOOST_TEST(peer().last_failure == "handshake failed");
  BOOST_TEST(!peer().connected);
  // The receiver tearing down an attempt of its own is not a failure.
  health.on_event(ZMQ_EVENT_CONNECT_DELAYED, kPeer);
  health.reconnecting(kPeer);
  health.on_event(ZMQ_EVENT_CLOSED, kPeer);
  BOOST_TEST(peer().connect_failures == 2u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(BusPeers)

BOOST_AUTO_TEST_CASE(a_peer_nobody_listens_on_is_down_and_warned_about_until_it_binds) {
  LogLines logs;
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port_outside_ephemeral_range(SOCK_STREAM));
  BusOptions o = plain("watcher");
  o.peers = {endpoint};
  o.peer_unreachable_after = 200ms;
  Bus bus(o);
  BOOST_REQUIRE_EQUAL(bus.stats().peers.size(), 1u);
  BOOST_TEST(bus.stats().peers[0].endpoint == endpoint);
  BOOST_TEST(!bus.stats().peers[0].connected);

  const std::string warning = "bus 'peers-watcher': peer " + endpoint + " unreachable for ";
  BOOST_REQUIRE(poll_until([&] { return !logs.with(LogLevel::warn, warning).empty(); }, 3s));
  const PeerStats down = bus.stats().peers[0];
  BOOST_TEST(!down.connected);
  BOOST_TEST(down.connect_failures > 0u);
  BOOST_TEST(down.last_failure == "connection refused");
  BOOST_TEST(logs.with(LogLevel::warn, "(connection refused x").size() == 1u);
  BOOST_TEST_MESSAGE(logs.with(LogLevel::warn, warning)[0]);

  BusOptions po = plain("late");
  po.bind = endpoint;
  auto peer = std::make_unique<Bus>(po);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().peers[0].connected; }, 3s));
  BOOST_TEST(bus.stats().peers[0].since_unix_us > down.since_unix_us);
  BOOST_TEST(logs.with(LogLevel::info, "bus 'peers-watcher': peer " + endpoint + " connected after ").size() == 1u);
  BOOST_TEST(logs.with(LogLevel::warn, warning).size() == 1u);  // once: reminders come after 5 min

  peer->close(1s);
  peer.reset();
  BOOST_REQUIRE(poll_until([&] { return !bus.stats().peers[0].connected; }, 3s));
  const std::string last = bus.stats().peers[0].last_failure;  // its retries may have failed since
  BOOST_TEST((last == "disconnected" || last == "connection refused"), last);
}

// IPv6 addresses: libzmq needs ZMQ_IPV6 on the socket, or it reports "address not resolved"
// (a peer at tcp://[::1]:port never connected). Skipped where the machine has no IPv6 loopback.
BOOST_AUTO_TEST_CASE(peers_at_ipv6_addresses_connect) {
  const int probe = ::socket(AF_INET6, SOCK_STREAM, 0);
  sockaddr_in6 loopback{};
  loopback.sin6_family = AF_INET6;
  loopback.sin6_addr = in6addr_loopback;
  const bool has_ipv6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&loopback), sizeof(loopback)) == 0;
  if (probe >= 0) ::close(probe);
  if (!has_ipv6) {
    BOOST_TEST_MESSAGE("no IPv6 loopback here: skipped");
    return;
  }
  const std::string endpoint = "tcp://[::1]:" + std::to_string(port_outside_ephemeral_range(SOCK_STREAM));
  BusOptions po = plain("v6-bind");
  po.bind = endpoint;
  Bus publisher(po);
  BusOptions o = plain("v6-peer");
  o.peers = {endpoint};
  Bus bus(o);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return bus.stats().peers[0].connected; }, 5s),
                        "last failure: " << bus.stats().peers[0].last_failure);
  SubscribeOptions so;
  so.name = "v6";
  Subscription sub = bus.subscribe(so);
  std::vector<Message> got;
  BOOST_REQUIRE(poll_until([&] {
    (void)publisher.broadcast(sample_log("/v6"));
    sub.next_batch(got, 1, 50ms);
    return !got.empty();
  }, 5s));
  BOOST_TEST(got[0].request.path == "/v6");
}

// An address that drops the connection attempt (here a listener whose backlog is full, so the
// kernel drops our SYNs) fails each attempt after peer_connect_timeout, counted as "connection
// timed out", instead of one attempt in progress for the system's ~2 min.
BOOST_AUTO_TEST_CASE(a_peer_that_never_answers_counts_timed_out_attempts) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int filler = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(listener >= 0 && filler >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(listener, 0) == 0);  // one connection fills the queue; never accepted
  BOOST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  BOOST_REQUIRE(::connect(filler, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  LogLines logs;
  BusOptions o = plain("patient");
  o.peers = {endpoint};
  o.peer_connect_timeout = 300ms;
  o.peer_unreachable_after = 1000ms;
  Bus bus(o);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().peers[0].connect_failures >= 2; }, 10s));
  const PeerStats p = bus.stats().peers[0];
  BOOST_TEST(!p.connected);
  BOOST_TEST(p.last_failure == "connection timed out");
  BOOST_REQUIRE(poll_until([&] { return !logs.with(LogLevel::warn, endpoint + " unreachable for").empty(); }, 10s));
  const std::string warning = logs.with(LogLevel::warn, endpoint + " unreachable for")[0];
  BOOST_TEST(warning.find("(connection timed out x") != std::string::npos, warning);
  BOOST_TEST(warning.find("check the IP address, and that no firewall drops the traffic") != std::string::npos, warning);
  ::close(filler);
  ::close(listener);
}

// A publish_to endpoint (a forwarder's frontend) is watched like a peer: down, failures
// counted, warned about, up once something binds it; and what was published while it was down,
// which ZeroMQ's PUB socket drops for it, is counted as events_unsent.
BOOST_AUTO_TEST_CASE(a_publish_to_endpoint_nobody_listens_on_is_down_and_counts_what_it_missed) {
  LogLines logs;
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port_outside_ephemeral_range(SOCK_STREAM));
  BusOptions o = plain("uplinker");
  o.publish_to = {endpoint};
  o.peer_unreachable_after = 200ms;
  Bus bus(o);
  BOOST_REQUIRE_EQUAL(bus.stats().uplinks.size(), 1u);
  BOOST_TEST(bus.stats().peers.empty());
  BOOST_TEST(!bus.stats().uplinks[0].connected);

  const std::string warning = "bus 'peers-uplinker': publish_to " + endpoint + " unreachable for ";
  BOOST_REQUIRE(poll_until([&] { return !logs.with(LogLevel::warn, warning).empty(); }, 3s));
  BOOST_TEST(bus.stats().uplinks[0].connect_failures > 0u);
  BOOST_TEST(bus.stats().uplinks[0].last_failure == "connection refused");
  BOOST_TEST(logs.with(LogLevel::warn, warning)[0].find("check the address and that the forwarder binds it") !=
             std::string::npos, logs.with(LogLevel::warn, warning)[0]);  // not "the peer"
  for (int i = 0; i < 100; ++i) BOOST_REQUIRE(bus.broadcast(sample_log("/down")) == PublishStatus::ok);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().uplinks[0].events_unsent == 100; }, 3s));

  zmq::context_t context;
  zmq::socket_t frontend(context, zmq::socket_type::sub);
  frontend.set(zmq::sockopt::subscribe, "");
  frontend.bind(endpoint);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().uplinks[0].connected; }, 15s));
  // The line (logged just after the state changes: wait for it too) says what the outage cost.
  const std::string connected = "bus 'peers-uplinker': publish_to " + endpoint + " connected after ";
  BOOST_TEST(poll_until([&] { return logs.with(LogLevel::warn, connected).size() == 1u; }, 5s));
  BOOST_TEST(logs.with(LogLevel::warn, "; 100 events published meanwhile were not sent to it").size() == 1u);
  // Up: frames reach the frontend (once its subscription has reached us) and none is unsent.
  zmq::message_t part;
  BOOST_REQUIRE(poll_until([&] {
    BOOST_REQUIRE(bus.broadcast(sample_log("/up")) == PublishStatus::ok);
    return frontend.recv(part, zmq::recv_flags::dontwait).has_value();
  }, 5s));
  BOOST_TEST(bus.stats().uplinks[0].events_unsent == 100u);
  BOOST_TEST(bus.stats().uplinks[0].last_failure == "connection refused");
  frontend.close();
  BOOST_REQUIRE(poll_until([&] { return !bus.stats().uplinks[0].connected; }, 3s));
}

// Events in the frames a frontend sends us (two-part messages: envelope key, frame).
uint64_t events_received(zmq::socket_t& frontend) {
  uint64_t events = 0;
  zmq::message_t key, body;
  while (frontend.recv(key, zmq::recv_flags::dontwait)) {
    BOOST_REQUIRE(key.more());
    BOOST_REQUIRE(frontend.recv(body));
    detail::FrameHeader header;
    std::vector<Message> records;
    BOOST_REQUIRE(!detail::decode_frame(static_cast<const char*>(body.data()), body.size(), 1 << 20, header, records));
    events += header.count;
  }
  return events;
}

// A forwarder that goes away and comes back at the same address: what was published in between
// waits in the connection's pipe (up to tcp_hwm frames) and reaches it when libzmq reconnects,
// so none of it is unsent. (Our own reconnect after a disconnect, right for the receiver's SUB,
// threw that pipe and the forwarder's subscription away.)
BOOST_AUTO_TEST_CASE(what_is_published_while_a_publish_to_endpoint_restarts_reaches_it) {
  const std::string endpoint = "tcp://127.0.0.1:" + std::to_string(port_outside_ephemeral_range(SOCK_STREAM));
  BusOptions o = plain("blip");
  o.publish_to = {endpoint};
  o.publish_linger = 1ms;
  Bus bus(o);
  zmq::context_t context;
  auto frontend = std::make_unique<zmq::socket_t>(context, zmq::socket_type::sub);
  frontend->set(zmq::sockopt::subscribe, "");
  frontend->bind(endpoint);
  BOOST_REQUIRE(poll_until([&] {
    BOOST_REQUIRE(bus.broadcast(sample_log("/before")) == PublishStatus::ok);
    return events_received(*frontend) > 0;
  }, 15s));
  BOOST_REQUIRE(poll_until([&] { return bus.stats().uplinks[0].connected; }, 5s));
  const uint64_t unsent_before = bus.stats().uplinks[0].events_unsent;  // published before the first connection
  frontend->close();
  BOOST_REQUIRE(poll_until([&] { return !bus.stats().uplinks[0].connected; }, 10s));
  for (int i = 0; i < 50; ++i) BOOST_REQUIRE(bus.broadcast(sample_log("/while-away")) == PublishStatus::ok);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().events_sent >= 50; }, 5s));

  frontend = std::make_unique<zmq::socket_t>(context, zmq::socket_type::sub);
  frontend->set(zmq::sockopt::subscribe, "");
  frontend->bind(endpoint);
  uint64_t got = 0;
  BOOST_TEST(poll_until([&] { return (got += events_received(*frontend)) >= 50; }, 20s), "received " << got << " of 50");
  BOOST_TEST(poll_until([&] { return bus.stats().uplinks[0].connected; }, 5s));
  BOOST_TEST(bus.stats().uplinks[0].events_unsent == unsent_before);

  // Down again at close: what waits in the connection is discarded with the socket, and counted.
  frontend->close();
  BOOST_REQUIRE(poll_until([&] { return !bus.stats().uplinks[0].connected; }, 10s));
  for (int i = 0; i < 20; ++i) BOOST_REQUIRE(bus.broadcast(sample_log("/at-close")) == PublishStatus::ok);
  BOOST_REQUIRE(poll_until([&] { return bus.stats().events_sent >= got + 20; }, 5s));
  bus.close(2s);
  BOOST_TEST(bus.stats().uplinks[0].events_unsent == unsent_before + 20);
}

// A publish_to address that answers with bytes libzmq takes for an old ZMTP version (an HTTP
// server's 400) is a failed handshake, counted and retried: it aborted the process inside
// libzmq (zmtp_engine.cpp:463) while we disconnected such endpoints ourselves.
BOOST_AUTO_TEST_CASE(a_publish_to_endpoint_that_is_an_http_server_is_a_failed_handshake_not_a_crash) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(listener >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  BOOST_REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(listener, 16) == 0);
  BOOST_REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread http([&] {
    const std::string reply = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n"
                              "date: Mon, 07 Dec 2026 19:50:17 GMT\r\n\r\n";
    while (!stop) {
      pollfd p{listener, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int c = ::accept(listener, nullptr, nullptr);
      if (c < 0) continue;
      char buf[100];
      pollfd r{c, POLLIN, 0};
      if (::poll(&r, 1, 1000) > 0) (void)::recv(c, buf, sizeof buf, 0);
      (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
      ++answered;
    }
  });
  LogLines logs;
  BusOptions o = plain("http-uplink");
  o.publish_to = {"tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port))};
  {
    Bus bus(o);
    BOOST_TEST(poll_until([&] {
      (void)bus.broadcast(sample_log("/to-http"));
      return bus.stats().uplinks[0].connect_failures >= 5;
    }, 15s), "failures " << bus.stats().uplinks[0].connect_failures << ", answered " << answered.load());
    BOOST_TEST(!bus.stats().uplinks[0].connected);
    BOOST_TEST(bus.stats().uplinks[0].last_failure == "handshake failed");
    BOOST_TEST(logs.with(LogLevel::warn, "ZeroMQ handshake with " + o.publish_to[0] + " failed").size() == 1u);
  }
  stop = true;
  http.join();
  ::close(listener);
}

BOOST_AUTO_TEST_CASE(peer_lists_refuse_what_only_a_bind_may_say_and_entries_listed_twice) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"tcp://127.0.0.1:*", "(* and 0 are for bind)"},
      {"tcp://127.0.0.1:0", "a peer's port must be 1..65535"},
      {"tcp://127.0.0.1:00", "without leading zeros"},
      {"tcp://127.0.0.1:07401", "without leading zeros"},
      {"tcp://*:7400", "a peer needs a host name or address"},
      {"tcp://bad\"ho\\st:7400", "the host may hold letters, digits and . - _"},
  };
  for (const auto& [entry, why] : bad)
    for (bool uplink : {false, true}) {
      BusOptions o = plain("lists");
      (uplink ? o.publish_to : o.peers) = {entry};
      BOOST_CHECK_EXCEPTION(Bus{o}, std::exception, [&](const std::exception& e) {
        return std::string(e.what()).find(why) != std::string::npos;
      });
    }
  BusOptions o = plain("lists");
  o.publish_to = {"tcp://127.0.0.1:7401", "tcp://127.0.0.1:7402", "tcp://127.0.0.1:7401"};
  BOOST_CHECK_EXCEPTION(Bus{o}, std::exception, [](const std::exception& e) {
    return std::string(e.what()).find("BusOptions.publish_to: 'tcp://127.0.0.1:7401' is listed twice") != std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(a_peer_connect_timeout_below_100_ms_is_refused) {
  for (const auto bad : {-1ms, 1ms, 99ms}) {
    BusOptions o = plain("bad");
    o.peer_connect_timeout = bad;
    BOOST_CHECK_EXCEPTION(Bus{o}, std::exception, [](const std::exception& e) {
      return std::string(e.what()).find("BusOptions.peer_connect_timeout: must be 0 (the system's) or 100 ms") !=
             std::string::npos;
    });
  }
}

BOOST_AUTO_TEST_CASE(a_bus_without_peers_lists_none) {
  Bus bus(plain("alone"));
  BOOST_TEST(bus.stats().peers.empty());
  BOOST_TEST(bus.stats().uplinks.empty());
}

BOOST_AUTO_TEST_CASE(the_grace_period_is_validated) {
  BusOptions o = plain("bad");
  o.peer_unreachable_after = 0ms;
  BOOST_CHECK_EXCEPTION(Bus{o}, std::exception, [](const std::exception& e) {
    return std::string(e.what()).find("BusOptions.peer_unreachable_after") != std::string::npos;
  });
}

BOOST_AUTO_TEST_SUITE_END()
