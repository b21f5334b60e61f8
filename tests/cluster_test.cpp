// Three `reqbus serve` processes on loopback, CURVE between them, sharing one PostgreSQL
// (docs/CLUSTER.md). Each publishes through its HTTP API at its own rate (50, 10 and 1 events
// per request); every node's cluster view (/api/stats?node=ORIGIN) sees every event; PostgreSQL
// holds each event exactly once; one node is SIGKILLed mid-run and restarted: the others carry
// on, it rejoins, and its gap counter says exactly what it missed while down (peer state file),
// the others' what it sent before they had reconnected to it (its new epoch); a client whose
// key is not on the allow-list receives nothing and is counted.
#include <libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>
#include <zmq.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "reqbus/codec.hpp"
#include "tests/support/bus_fixtures.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/poll.hpp"
#include "tests/support/process.hpp"
#include "tests/support/spawned_process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus::test;
using namespace std::chrono_literals;

BOOST_TEST_GLOBAL_FIXTURE(PostgresFixture);

namespace {

struct Keys {
  std::string pub, file;
};

Keys make_keys(const TempDir& dir, const std::string& name) {
  char p[41], s[41];
  BOOST_REQUIRE(zmq_curve_keypair(p, s) == 0);
  Keys k{p, dir.sub(name + ".key")};
  std::ofstream(k.file) << "public_key = \"" << p << "\"\nsecret_key = \"" << s << "\"\n";
  return k;
}

int64_t scalar(const std::string& conninfo, const std::string& sql) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  BOOST_REQUIRE_MESSAGE(PQstatus(c) == CONNECTION_OK, PQerrorMessage(c));
  PGresult* r = PQexec(c, sql.c_str());
  BOOST_REQUIRE_MESSAGE(PQresultStatus(r) == PGRES_TUPLES_OK, PQerrorMessage(c));
  const int64_t v = std::stoll(PQgetvalue(r, 0, 0));
  PQclear(r);
  PQfinish(c);
  return v;
}

struct Node {
  std::string name;
  std::vector<std::string> args;
  std::unique_ptr<Process> process;
  int http_port = 0;
  uint64_t posted = 0;  // events with path /e/ published through this node
  uint64_t probes = 0;

  void start() {
    process = std::make_unique<Process>(reqbus_binary(), args);
    BOOST_REQUIRE_MESSAGE(process->wait_for_stdout("dashboard:", 30s), name << " did not start: " << process->err());
    static const std::regex dashboard(R"(dashboard: http://127\.0\.0\.1:(\d+)/)");
    std::smatch m;
    const std::string out = process->out();
    BOOST_REQUIRE(std::regex_search(out, m, dashboard));
    http_port = std::stoi(m[1]);
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", http_port);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(10, 0);
    return c;
  }
  nlohmann::json stats(const std::string& origin = "") const {
    auto res = client().Get(origin.empty() ? "/api/stats" : "/api/stats?node=" + origin);
    BOOST_REQUIRE_MESSAGE(res && res->status == 200, name << ": /api/stats failed");
    return nlohmann::json::parse(res->body);
  }
  uint64_t seen_from(const std::string& origin) const { return stats(origin).value("total", uint64_t(0)); }
  void post(const std::string& prefix, uint64_t n, uint64_t per_request) {
    auto c = client();
    for (uint64_t done = 0; done < n;) {
      std::string body;
      const uint64_t k = std::min(per_request, n - done);
      for (uint64_t i = 0; i < k; ++i)
        body += R"({"method":"GET","path":")" + prefix + std::to_string(done + i) + R"(","status_code":200})" "\n";
      auto res = c.Post("/v1/requests", body, "application/x-ndjson");
      BOOST_REQUIRE_MESSAGE(res && res->status == 202, name << ": POST /v1/requests failed");
      done += k;
    }
  }
  void publish(uint64_t n, uint64_t per_request) {
    post("/e/" + name + "/" + std::to_string(posted) + "-", n, per_request);
    posted += n;
  }
  void probe() {
    post("/probe/" + name + "/", 1, 1);
    ++probes;
  }
  std::string metric(const std::string& line_prefix) const {
    auto res = client().Get("/metrics");
    BOOST_REQUIRE(res && res->status == 200);
    for (const auto& line : split_lines(res->body))
      if (line.rfind(line_prefix, 0) == 0) return line.substr(line_prefix.size());
    return "";
  }
};

using Views = std::map<std::string, std::map<std::string, uint64_t>>;  // viewer -> origin -> total

Views views(const std::vector<Node*>& nodes) {
  Views v;
  for (Node* viewer : nodes)
    for (Node* origin : nodes) v[viewer->name][origin->name] = viewer->seen_from(origin->name);
  return v;
}

// "viewer<-origin=count ..." for failure messages.
std::string describe(const Views& v) {
  std::string out;
  for (const auto& [viewer, row] : v)
    for (const auto& [origin, count] : row) out += viewer + "<-" + origin + "=" + std::to_string(count) + " ";
  return out;
}

// Polls (30 s at most) until every node in `nodes` has seen exactly added_from(origin) more
// events from each origin in `nodes` (itself included) than in `base`.
template <class AddedFrom>
bool views_reach_each(const std::vector<Node*>& nodes, const Views& base, AddedFrom added_from) {
  return poll_until([&] {
    const Views now = views(nodes);
    for (Node* v : nodes)
      for (Node* o : nodes)
        if (now.at(v->name).at(o->name) != base.at(v->name).at(o->name) + added_from(*o)) return false;
    return true;
  }, std::chrono::seconds(30));
}
bool views_reach(const std::vector<Node*>& nodes, const Views& base, uint64_t added) {
  return views_reach_each(nodes, base, [added](const Node&) { return added; });
}

// Probes from every node until every node has seen one from every other since `since`, then
// waits until the views stop moving: the mesh is up and nothing is in flight.
Views connect_and_settle(const std::vector<Node*>& nodes) {
  const Views before = views(nodes);
  BOOST_REQUIRE_MESSAGE(poll_until([&] {
    for (Node* n : nodes) n->probe();
    const Views now = views(nodes);
    for (Node* viewer : nodes)
      for (Node* origin : nodes)
        if (now.at(viewer->name).at(origin->name) <= before.at(viewer->name).at(origin->name)) return false;
    return true;
  }, 30s), "the cluster did not connect");
  // Settled = unchanged over 10 consecutive polls (>= 0.5 s): a probe still in flight (up to a
  // publish_linger per hop, much more under TSan on a busy machine) must not land after the
  // base the caller compares against.
  Views last = views(nodes);
  int unchanged = 0;
  BOOST_REQUIRE(poll_until([&] {
    Views now = views(nodes);
    unchanged = now == last ? unchanged + 1 : 0;
    last = std::move(now);
    return unchanged >= 10;
  }, 20s));
  return last;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(Cluster)

BOOST_AUTO_TEST_CASE(three_nodes_one_postgres_kill_and_rejoin) {
  PostgresServer& pg = PostgresFixture::server();
  pg.create_database("cluster");
  const std::string conninfo = pg.conninfo("cluster");
  TempDir dir("reqbus-cluster");
  const std::vector<std::string> names = {"n1", "n2", "n3"};
  std::map<std::string, Keys> keys;
  std::map<std::string, int> ports;
  for (const auto& n : names) {
    keys[n] = make_keys(dir, n);
    ports[n] = free_tcp_port();
  }
  const Keys tail_keys = make_keys(dir, "tail");
  std::map<std::string, Node> nodes;
  for (const auto& n : names) {
    Node& node = nodes[n];
    node.name = n;
    node.args = {"serve", "--node-id", n, "--store", "postgres:" + conninfo, "--http", "127.0.0.1:0",
                 "--bind", "tcp://127.0.0.1:" + std::to_string(ports[n]), "--curve-secret", keys[n].file,
                 "--spool-dir", dir.sub(n + "-spool"), "--peer-state-file", dir.sub(n + ".peers")};
    for (const auto& other : names) {
      if (other == n) continue;
      node.args.insert(node.args.end(), {"--peer", "tcp://127.0.0.1:" + std::to_string(ports[other]) + "#" + keys[other].pub,
                                         "--allow", keys[other].pub});
    }
    node.start();
  }
  Node &n1 = nodes["n1"], &n2 = nodes["n2"], &n3 = nodes["n3"];
  const std::vector<Node*> all = {&n1, &n2, &n3};
  const std::map<std::string, uint64_t> per_request = {{"n1", 50}, {"n2", 10}, {"n3", 1}};
  constexpr uint64_t kPhase = 100;

  // Phase 1: everybody publishes; every view sees every event.
  Views base = connect_and_settle(all);
  for (Node* n : all) n->publish(kPhase, per_request.at(n->name));
  BOOST_REQUIRE(views_reach(all, base, kPhase));
  // n2 has stored what it published, and its peer state file holds everything it received.
  BOOST_REQUIRE(poll_until([&] {
    const auto s = n2.stats();
    return s.value("persisted", uint64_t(0)) == s.value("published", uint64_t(1));
  }, 20s));
  // The state file ("origin TAB channel TAB epoch TAB next" lines) has caught up with every
  // event n1 and n3 published (all of them on channel "requests", cluster scope).
  auto saved_next = [&](const std::string& origin) {
    uint64_t next = 0;
    for (const auto& line : split_lines(read_whole_file(dir.sub("n2.peers")))) {
      std::istringstream fields(line);
      std::string o, channel;
      uint64_t epoch = 0, n = 0;
      if (std::getline(fields, o, '\t') && std::getline(fields, channel, '\t') && (fields >> epoch >> n) && o == origin)
        next += n;
    }
    return next;
  };
  BOOST_REQUIRE(poll_until([&] {
    return saved_next("n1") == n1.probes + n1.posted && saved_next("n3") == n3.probes + n3.posted;
  }, 10s));
  const uint64_t n1_probes_before_kill = n1.probes, n3_probes_before_kill = n3.probes;

  // Phase 2: n2 dies (SIGKILL: no goodbye); n1 and n3 carry on.
  n2.process->kill();
  BOOST_REQUIRE(n2.process->wait(10s).has_value());
  const std::vector<Node*> survivors = {&n1, &n3};
  base = views(survivors);
  for (Node* n : survivors) n->publish(kPhase, per_request.at(n->name));
  BOOST_REQUIRE(views_reach(survivors, base, kPhase));

  // n2 restarts with the same keys and state file and rejoins. Its new epoch's first probes
  // may go out before n1 and n3 have reconnected to it (ZeroMQ drops them): they count those.
  const uint64_t n2_probes_before_restart = n2.probes;
  const uint64_t n1_saw_n2 = n1.seen_from("n2"), n3_saw_n2 = n3.seen_from("n2");
  n2.start();
  base = connect_and_settle(all);
  // Its gap counter is exactly what n1 and n3 published since its last state save that it
  // never received: phase 2's events and the rejoin probes it did not see.
  const uint64_t sent_since = 2 * kPhase + (n1.probes - n1_probes_before_kill) + (n3.probes - n3_probes_before_kill);
  const uint64_t received_since = base["n2"]["n1"] + base["n2"]["n3"];
  BOOST_TEST(n2.stats().value("gaps", uint64_t(0)) == sent_since - received_since);
  const uint64_t n2_sent_since = n2.probes - n2_probes_before_restart;
  BOOST_TEST(n1.stats().value("gaps", uint64_t(0)) == n2_sent_since - (base["n1"]["n2"] - n1_saw_n2));
  BOOST_TEST(n3.stats().value("gaps", uint64_t(0)) == n2_sent_since - (base["n3"]["n2"] - n3_saw_n2));

  // An intruder with a key nobody allows subscribes to n1: it receives nothing, and is counted.
  Process intruder(reqbus_binary(), {"tail", "--curve-secret", tail_keys.file, "--peer",
                                     "tcp://127.0.0.1:" + std::to_string(ports["n1"]) + "#" + keys["n1"].pub});
  BOOST_REQUIRE(intruder.wait_for_stderr("subscribed", 20s));
  BOOST_REQUIRE(poll_until([&] { return n1.metric("reqbus_bus_auth_refused_total ") >= "1"; }, 20s));

  // Phase 3: everybody publishes the rest; every view (n2's too) sees all of it.
  n2.publish(2 * kPhase, per_request.at("n2"));
  for (Node* n : survivors) n->publish(kPhase, per_request.at(n->name));
  BOOST_REQUIRE(views_reach_each(all, base, [&](const Node& o) { return &o == &n2 ? 2 * kPhase : kPhase; }));
  BOOST_TEST(intruder.out().empty(), "the intruder printed: " << intruder.out().substr(0, 300));
  intruder.signal(SIGTERM);

  // Graceful stop, then PostgreSQL holds each event exactly once: 3N rows, none duplicated.
  for (Node* n : all) {
    n->process->signal(SIGTERM);
    BOOST_REQUIRE(n->process->wait(30s).value_or(-1) == 0);
  }
  const uint64_t n_events = 3 * kPhase;
  BOOST_TEST(scalar(conninfo, "SELECT count(*) FROM requests WHERE path LIKE '/e/%'") == int64_t(3 * n_events));
  BOOST_TEST(scalar(conninfo, "SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/e/%'") == int64_t(3 * n_events));
  for (const auto& n : names)
    BOOST_TEST(scalar(conninfo, "SELECT count(*) FROM requests WHERE path LIKE '/e/" + n + "/%'") == int64_t(n_events));
}

// Two nodes that know only a `reqbus forward` forwarder (CURVE both ways): each sees the
// other's events exactly once and never its own twice (the echo is dropped and counted).
BOOST_AUTO_TEST_CASE(nodes_meet_through_a_forwarder) {
  TempDir dir("reqbus-cluster-fwd");
  const Keys fwd_keys = make_keys(dir, "fwd"), a_keys = make_keys(dir, "a"), b_keys = make_keys(dir, "b");
  const int front = free_tcp_port(), back = free_tcp_port();
  const std::string front_ep = "tcp://127.0.0.1:" + std::to_string(front) + "#" + fwd_keys.pub;
  const std::string back_ep = "tcp://127.0.0.1:" + std::to_string(back) + "#" + fwd_keys.pub;
  Process forwarder(reqbus_binary(), {"forward", "--frontend", "tcp://127.0.0.1:" + std::to_string(front), "--backend",
                                      "tcp://127.0.0.1:" + std::to_string(back), "--curve-secret", fwd_keys.file,
                                      "--allow", a_keys.pub, "--allow", b_keys.pub});
  BOOST_REQUIRE_MESSAGE(forwarder.wait_for_stdout("reqbus forward: frontend", 20s), forwarder.err());
  std::map<std::string, Node> nodes;
  for (const auto& [n, k] : std::map<std::string, Keys>{{"a", a_keys}, {"b", b_keys}}) {
    Node& node = nodes[n];
    node.name = n;
    node.args = {"serve", "--node-id", n, "--store", "none", "--http", "127.0.0.1:0", "--curve-secret", k.file,
                 "--publish-to", front_ep, "--peer", back_ep};
    node.start();
  }
  const std::vector<Node*> both = {&nodes["a"], &nodes["b"]};
  const Views base = connect_and_settle(both);
  for (Node* n : both) n->publish(300, 25);
  BOOST_REQUIRE_MESSAGE(views_reach(both, base, 300), "expected base + 300 everywhere; base " << describe(base) << "now " << describe(views(both)));
  for (Node* n : both) BOOST_TEST(n->metric("reqbus_bus_remote_gaps_total ") == "0");
  forwarder.signal(SIGTERM);
  BOOST_REQUIRE(forwarder.wait(10s).value_or(-1) == 0);
  BOOST_TEST(forwarder.out().find("0 refused") != std::string::npos, forwarder.out());
}

// An older peer (wire v1 frames of v1 records, the PhoenixAnalytics field set) behind CURVE:
// a `reqbus serve` node shows its events under the frame's node id, and does not store them
// (persistence is local-only: the origin stores its own).
BOOST_AUTO_TEST_CASE(node_reads_an_older_peer_over_curve) {
  PostgresServer& pg = PostgresFixture::server();
  pg.create_database("cluster_v1");
  const std::string conninfo = pg.conninfo("cluster_v1");
  TempDir dir("reqbus-cluster-v1");
  char old_pub[41], old_secret[41];
  BOOST_REQUIRE(zmq_curve_keypair(old_pub, old_secret) == 0);
  const Keys node_keys = make_keys(dir, "node");
  zmq::context_t context(1);
  zmq::socket_t old(context, zmq::socket_type::pub);
  old.set(zmq::sockopt::curve_server, 1);
  old.set(zmq::sockopt::curve_secretkey, std::string(old_secret));
  old.bind("tcp://127.0.0.1:*");
  const std::string endpoint = old.get(zmq::sockopt::last_endpoint);
  Node node;
  node.name = "reader";
  node.args = {"serve", "--node-id", "reader", "--store", "postgres:" + conninfo, "--http", "127.0.0.1:0",
               "--curve-secret", node_keys.file, "--spool-dir", dir.sub("spool"),
               "--peer", endpoint + "#" + old_pub};
  node.start();
  uint64_t seq = 0;
  BOOST_REQUIRE(poll_until([&] {
    reqbus::RequestLog r = sample_log("/v1/" + std::to_string(seq));
    r.inserted_at = 1700000000000000;
    std::string v1;
    reqbus::codec::append_v1(v1, r);
    const std::string key = envelope("requests"), body = frame_payload({v1}, "old-node", 7, seq++);
    old.send(zmq::buffer(key), zmq::send_flags::sndmore);
    old.send(zmq::buffer(body), zmq::send_flags::none);
    return node.seen_from("old-node") >= 1;
  }, 20s));
  const auto s = node.stats();
  BOOST_TEST(s.value("gaps", uint64_t(0)) <= seq);  // frames sent before the handshake were missed
  BOOST_TEST(s.value("persisted", uint64_t(1)) == 0u);
  node.process->signal(SIGTERM);
  BOOST_REQUIRE(node.process->wait(30s).value_or(-1) == 0);
  if (scalar(conninfo, "SELECT count(*) FROM pg_tables WHERE tablename = 'requests'") > 0)
    BOOST_TEST(scalar(conninfo, "SELECT count(*) FROM requests") == 0);
}

BOOST_AUTO_TEST_SUITE_END()
