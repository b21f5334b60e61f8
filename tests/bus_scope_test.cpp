// Subscription scope across processes: three Bus instances, each in its own process, over tcp
// loopback. "peer-b" (child) publishes to this process's bus; this process's bus publishes to
// "peer-c" (child). broadcast() crosses nodes, local_broadcast() never does, and a local_only
// subscriber sees only its own node's events. Every count is exact.
#include <boost/test/unit_test.hpp>

#include <sstream>

#include "support/bus_fixtures.hpp"

using namespace reqbus;
using namespace reqbus::test;

namespace {

std::string endpoint_of(ChildProcess& child) {
  auto line = child.read_line(30s);
  BOOST_REQUIRE_MESSAGE(line && line->rfind("ready tcp://", 0) == 0,
                        "child did not report ready: " << (line ? *line : "<eof>"));
  return line->substr(6);
}

// Parses "word k=v k=v ..." into a map.
std::map<std::string, uint64_t> fields(const std::string& line) {
  std::map<std::string, uint64_t> out;
  std::istringstream in(line);
  std::string token;
  in >> token;  // the reply's name
  while (in >> token) {
    const auto eq = token.find('=');
    if (eq != std::string::npos) out[token.substr(0, eq)] = std::stoull(token.substr(eq + 1));
  }
  return out;
}

uint64_t count_paths(const std::vector<Message>& ms, const std::string& node, const std::string& prefix) {
  uint64_t n = 0;
  for (const auto& m : ms)
    if (m.request.node_id == node && m.request.path.rfind(prefix, 0) == 0) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(bus_scope)

BOOST_AUTO_TEST_CASE(broadcast_crosses_processes_local_broadcast_does_not) {
  const std::string peer = helper_program("bus_peer");
  ChildProcess peer_b({peer, "--node", "peer-b"});
  const std::string endpoint_b = endpoint_of(peer_b);

  BusOptions options;
  options.node_id = "parent";
  options.bind = "tcp://127.0.0.1:*";
  options.peers = {endpoint_b};
  options.insecure_plaintext = true;
  Bus bus(options);
  BOOST_REQUIRE(bus.bound_endpoint().rfind("tcp://127.0.0.1:", 0) == 0);
  ChildProcess peer_c({peer, "--node", "peer-c", "--peer", bus.bound_endpoint()});
  endpoint_of(peer_c);

  Collector cluster, probes;
  SubscribeOptions cluster_options;
  cluster_options.scope = Scope::cluster;
  auto cluster_sub = bus.subscribe(cluster_options, cluster.handler());
  SubscribeOptions local_options;
  local_options.scope = Scope::local_only;
  auto local_sub = bus.subscribe(local_options);  // pull mode
  SubscribeOptions probe_options;
  probe_options.topic = "probe";
  auto probe_sub = bus.subscribe(probe_options, probes.handler());

  // tcp PUB/SUB connects asynchronously: probe until each direction has carried an event.
  const auto handshake_deadline = std::chrono::steady_clock::now() + 20s;
  bool b_to_parent = false, parent_to_c = false;
  while (!(b_to_parent && parent_to_c) && std::chrono::steady_clock::now() < handshake_deadline) {
    if (!b_to_parent) {
      BOOST_REQUIRE_EQUAL(peer_b.ask("probe"), "ok");
      b_to_parent = probes.wait_for([](const Message& m) { return m.request.node_id == "peer-b"; }, 50ms);
    }
    if (!parent_to_c) {
      BOOST_REQUIRE(bus.broadcast(sample_log("/probe"), "probe") == PublishStatus::ok);
      parent_to_c = peer_c.ask("probed parent 50") == "probed yes";
    }
  }
  BOOST_REQUIRE_MESSAGE(b_to_parent, "no probe from peer-b reached this process");
  BOOST_REQUIRE_MESSAGE(parent_to_c, "no probe from this process reached peer-c");

  // peer-b: 300 broadcasts, 200 local broadcasts, then an end marker (a broadcast).
  BOOST_REQUIRE_EQUAL(peer_b.ask("publish 300 200"), "published 501");
  // This process: 100 broadcasts, 50 local broadcasts, then an end marker.
  for (int i = 0; i < 100; ++i) BOOST_REQUIRE(bus.broadcast(sample_log("/g/" + std::to_string(i))) == PublishStatus::ok);
  for (int i = 0; i < 50; ++i) BOOST_REQUIRE(bus.local_broadcast(sample_log("/l/" + std::to_string(i))) == PublishStatus::ok);
  BOOST_REQUIRE(bus.broadcast(sample_log("/end")) == PublishStatus::ok);

  // Frames of one channel arrive in order: after an end marker, that node's earlier events are in.
  auto is_end = [](const std::string& node) {
    return [node](const Message& m) { return m.request.node_id == node && m.request.path == "/end"; };
  };
  BOOST_REQUIRE(cluster.wait_for(is_end("peer-b"), 20s));
  BOOST_REQUIRE(cluster.wait_for(is_end("parent"), 20s));
  BOOST_REQUIRE_EQUAL(peer_c.ask("wait_end parent 20000"), "end yes");

  // peer-c (another process) saw this node's broadcasts, none of its local broadcasts, and
  // nothing from this node in its local_only subscription.
  auto c = fields(peer_c.ask("counts parent"));
  BOOST_TEST(c["cluster_g"] == 100u);
  BOOST_TEST(c["cluster_l"] == 0u);
  BOOST_TEST(c["cluster_end"] == 1u);
  BOOST_TEST(c["local_g"] == 0u);
  BOOST_TEST(c["local_l"] == 0u);
  BOOST_TEST(c["local_end"] == 0u);
  auto c_stats = fields(peer_c.ask("stats"));
  BOOST_TEST(c_stats["malformed"] == 0u);
  BOOST_TEST(c_stats["remote_gaps"] == 0u);
  BOOST_TEST(c_stats["gaps"] == 0u);

  // peer-b's own local_only subscription saw all of its own events.
  BOOST_REQUIRE_EQUAL(peer_b.ask("wait_local_end peer-b 20000"), "end yes");
  auto b = fields(peer_b.ask("counts peer-b"));
  BOOST_TEST(b["local_g"] == 300u);
  BOOST_TEST(b["local_l"] == 200u);
  BOOST_TEST(b["local_end"] == 1u);
  // ... and nothing from this node: peer-b has no peers.
  auto b_from_parent = fields(peer_b.ask("counts parent"));
  BOOST_TEST(b_from_parent["cluster_g"] + b_from_parent["cluster_l"] + b_from_parent["cluster_end"] == 0u);

  // Closing this bus delivers everything accepted, then the counts are final.
  const CloseReport report = bus.close(10s);
  BOOST_TEST(!report.deadline_reached);
  const auto all = cluster.messages();
  BOOST_TEST(count_paths(all, "peer-b", "/g/") == 300u);
  BOOST_TEST(count_paths(all, "peer-b", "/l/") == 0u);   // local_broadcast stays on peer-b
  BOOST_TEST(count_paths(all, "peer-b", "/end") == 1u);
  BOOST_TEST(count_paths(all, "parent", "/g/") == 100u);
  BOOST_TEST(count_paths(all, "parent", "/l/") == 50u);  // local events reach cluster subs too
  BOOST_TEST(count_paths(all, "parent", "/end") == 1u);

  std::vector<Message> local;
  while (local_sub.next_batch(local, 1024, 0ms) > 0) {
  }
  BOOST_TEST(local.size() == 151u);  // only this node's: 100 + 50 + end
  BOOST_TEST(count_paths(local, "parent", "/") == 151u);
  BOOST_TEST(count_paths(local, "peer-b", "/") == 0u);

  // The remote events kept their origin's order and sequence numbers.
  uint64_t expected = 0;
  bool in_order = true;
  for (const auto& m : all)
    if (m.request.node_id == "peer-b" && m.request.path.rfind("/g/", 0) == 0)
      in_order &= m.request.path == "/g/" + std::to_string(expected++);
  BOOST_TEST(in_order);

  const BusStats stats = bus.stats();
  uint64_t malformed = 0;
  for (uint64_t m : stats.malformed) malformed += m;
  BOOST_TEST(malformed == 0u);
  BOOST_TEST(stats.remote_gaps == 0u);
  BOOST_TEST(report.gaps == 0u);

  BOOST_TEST(peer_c.wait_exit(20s) == 0);
  BOOST_TEST(peer_b.wait_exit(20s) == 0);
}

BOOST_AUTO_TEST_SUITE_END()
