// cluster_bench: how many events/s one node delivers to another node over tcp, against Redis
// pub/sub carrying the same payloads (each event's msgpack record, one PUBLISH per event,
// pipelined 256 at a time) in the same run; and what CURVE encryption and a `reqbus forward`
// forwarder (XSUB/XPUB proxy) cost, as ratios. The receiver is always a separate process.
//   cluster_bench [--events N] [--runs N] [--json] [--quick]
// Cases (medians over runs):
//   redis_pubsub       private redis-server on a free port; publisher here, subscriber child
//   node_tcp_plain     Bus (bind, insecure_plaintext) here -> Bus (peers) in a child
//   node_tcp_curve     the same with CURVE keys and the ZAP allow-list
//   node_forwarder     Bus (publish_to) here -> proxy child -> Bus (peers) child
#include <hiredis/hiredis.h>
#include <zmq.h>

#include <atomic>
#include <map>
#include <thread>
#include <zmq.hpp>

#include "bench/bench_util.hpp"
#include "bench/sample_events.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/codec.hpp"

using namespace reqbus;
using namespace reqbus::bench;

namespace {

constexpr const char* kProbePath = "/__probe__";
constexpr int kTimeoutMs = 60000;

void write_line(const std::string& s) {
  std::string l = s + "\n";
  if (::write(STDOUT_FILENO, l.data(), l.size()) < 0) std::exit(3);
}

struct Outcome {
  uint64_t received = 0, gaps = 0;
  double events_per_s = 0;
};

// "done RECEIVED GAPS LAST_NS" from a child.
Outcome read_done(Child& child, uint64_t start_ns) {
  Outcome o;
  auto line = child.read_line(kTimeoutMs);
  unsigned long long r = 0, g = 0, last = 0;
  if (!line || std::sscanf(line->c_str(), "done %llu %llu %llu", &r, &g, &last) != 3)
    throw std::runtime_error("child: no result (" + line.value_or("timeout") + ")");
  o.received = r;
  o.gaps = g;
  o.events_per_s = last > start_ns ? double(r) * 1e9 / double(last - start_ns) : 0;
  return o;
}

// Child: a Bus subscribed to `peer`; "ready" after the first probe, "done ..." after `events`
// events or 2 s without one.
int bus_child(const std::string& peer, const std::string& secret, uint64_t events) {
  BusOptions o;
  o.name = "bench-sub";
  o.peers = {peer};
  if (secret == "-") o.insecure_plaintext = true;
  else o.curve_secret_key = secret;
  o.tcp_hwm = 100000;
  Bus bus(o);
  std::atomic<uint64_t> count{0}, last_ns{0};
  std::atomic<bool> ready{false};
  Subscription sub = bus.subscribe(SubscribeOptions{}, [&](const Message& m) {
    if (m.request.path == kProbePath) {
      if (!ready.exchange(true)) write_line("ready");
      return;
    }
    count.fetch_add(1, std::memory_order_relaxed);
    last_ns.store(now_ns(), std::memory_order_relaxed);
  });
  const uint64_t start_deadline = now_ns() + uint64_t(kTimeoutMs) * 1000000u;
  while (!ready.load() && now_ns() < start_deadline) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  uint64_t seen = 0, idle_since = now_ns();
  while (count.load() < events) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (count.load() != seen) seen = count.load(), idle_since = now_ns();
    else if (now_ns() - idle_since > 2000000000u) break;  // the rest is lost
  }
  (void)bus.close();
  const BusStats s = bus.stats();
  uint64_t gaps = s.remote_gaps;
  write_line("done " + std::to_string(count.load()) + " " + std::to_string(gaps) + " " + std::to_string(last_ns.load()));
  return 0;
}

// Child: XSUB/XPUB proxy on two ephemeral ports; prints "ready FRONT BACK"; runs until killed.
int forward_child() {
  zmq::context_t ctx(1);
  zmq::socket_t xsub(ctx, zmq::socket_type::xsub), xpub(ctx, zmq::socket_type::xpub);
  for (auto* s : {&xsub, &xpub}) {
    s->set(zmq::sockopt::rcvhwm, 100000);
    s->set(zmq::sockopt::sndhwm, 100000);
  }
  xsub.bind("tcp://127.0.0.1:*");
  xpub.bind("tcp://127.0.0.1:*");
  write_line("ready " + xsub.get(zmq::sockopt::last_endpoint) + " " + xpub.get(zmq::sockopt::last_endpoint));
  zmq::proxy(xsub, xpub);
  return 0;
}

// Child: a hiredis SUBSCRIBE client; "ready" once subscribed; counts until `events` or 2 s idle.
int redis_child(int port, uint64_t events) {
  redisContext* c = redisConnect("127.0.0.1", port);
  if (!c || c->err) return 2;
  redisReply* r = static_cast<redisReply*>(redisCommand(c, "SUBSCRIBE requests"));
  if (!r) return 2;
  freeReplyObject(r);
  write_line("ready");
  timeval tv{2, 0};
  redisSetTimeout(c, tv);
  uint64_t count = 0, last = 0;
  while (count < events) {
    void* reply = nullptr;
    if (redisGetReply(c, &reply) != REDIS_OK || !reply) break;
    freeReplyObject(reply);
    ++count;
    last = now_ns();
  }
  write_line("done " + std::to_string(count) + " 0 " + std::to_string(last));
  redisFree(c);
  return 0;
}

Outcome run_redis(const std::vector<std::string>& payloads, uint64_t events) {
  const int port = [] {
    zmq::context_t ctx(1);  // any free port: bind, read, close
    zmq::socket_t s(ctx, zmq::socket_type::pub);
    s.bind("tcp://127.0.0.1:*");
    const std::string ep = s.get(zmq::sockopt::last_endpoint);
    return std::stoi(ep.substr(ep.rfind(':') + 1));
  }();
  const std::string cmd = "redis-server --port " + std::to_string(port) +
                          " --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile /tmp/cluster_bench_redis_" +
                          std::to_string(port) + ".pid --client-output-buffer-limit 'pubsub 0 0 0' --logfile /dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("cannot start redis-server (apt-get install redis-server)");
  redisContext* c = nullptr;
  for (int i = 0; i < 200 && (!c || c->err); ++i) {
    if (c) redisFree(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    c = redisConnect("127.0.0.1", port);
  }
  if (!c || c->err) throw std::runtime_error("redis did not start");
  Outcome o;
  {
    Child child({"--child", "redis", std::to_string(port), std::to_string(events)});
    if (!child.read_line(kTimeoutMs)) throw std::runtime_error("redis child did not subscribe");
    const uint64_t start = now_ns();
    constexpr uint64_t kPipeline = 256;
    for (uint64_t i = 0; i < events; i += kPipeline) {
      const uint64_t n = std::min(kPipeline, events - i);
      for (uint64_t k = 0; k < n; ++k) {
        const std::string& p = payloads[(i + k) % payloads.size()];
        redisAppendCommand(c, "PUBLISH requests %b", p.data(), p.size());
      }
      for (uint64_t k = 0; k < n; ++k) {
        void* reply = nullptr;
        if (redisGetReply(c, &reply) != REDIS_OK) throw std::runtime_error("redis PUBLISH failed");
        freeReplyObject(reply);
      }
    }
    o = read_done(child, start);
  }
  redisReply* r = static_cast<redisReply*>(redisCommand(c, "SHUTDOWN NOSAVE"));
  if (r) freeReplyObject(r);
  redisFree(c);
  return o;
}

struct Keys {
  std::string pub, secret;
  Keys() {
    char p[41], s[41];
    zmq_curve_keypair(p, s);
    pub = p;
    secret = s;
  }
};

Outcome run_bus(const std::vector<RequestLog>& logs, uint64_t events, bool curve, bool forwarder) {
  BusOptions o;
  o.name = "bench-pub";
  o.tcp_hwm = 100000;
  o.block_timeout = std::chrono::milliseconds(10000);
  Keys server, client;
  std::unique_ptr<Child> proxy;
  std::string peer;
  if (forwarder) {
    proxy = std::make_unique<Child>(std::vector<std::string>{"--child", "forward"});
    auto line = proxy->read_line(kTimeoutMs);
    char front[128], back[128];
    if (!line || std::sscanf(line->c_str(), "ready %127s %127s", front, back) != 2) throw std::runtime_error("proxy did not start");
    o.publish_to = {front};
    o.insecure_plaintext = true;
    peer = back;
  } else {
    o.bind = "tcp://127.0.0.1:*";
    if (curve) {
      o.curve_secret_key = server.secret;
      o.curve_allowed_clients = {client.pub};
    } else {
      o.insecure_plaintext = true;
    }
  }
  Bus bus(o);
  if (!forwarder) peer = bus.bound_endpoint() + (curve ? "#" + server.pub : "");
  Child child({"--child", "bus", peer, curve ? client.secret : "-", std::to_string(events)});
  RequestLog probe = logs.front();
  probe.path = kProbePath;
  // Probes until the child has one: its connection (and handshake) is up.
  bool ready = false;
  for (int i = 0; i < 3000 && !ready; ++i) {
    (void)bus.broadcast(probe);
    ready = child.read_line(20).has_value();
  }
  if (!ready) throw std::runtime_error("bus child never received a probe");
  const uint64_t start = now_ns();
  for (uint64_t i = 0; i < events; ++i) (void)bus.broadcast(logs[i % logs.size()]);
  Outcome out = read_done(child, start);
  (void)bus.close();
  return out;
}

Result summarize(const std::string& name, const std::vector<Outcome>& runs, uint64_t events) {
  std::vector<double> rate;
  uint64_t lost = 0, gaps = 0;
  for (const auto& r : runs) {
    rate.push_back(r.events_per_s);
    lost += events - std::min(events, r.received);
    gaps += r.gaps;
  }
  Result res;
  res.name = name;
  res.value = median(rate);
  res.unit = "events/s";
  res.add("lost", double(lost)).add("gaps", double(gaps)).add("runs", double(runs.size()));
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--child") {
    const std::string mode = argv[2];
    if (mode == "bus" && argc == 6) return bus_child(argv[3], argv[4], std::stoull(argv[5]));
    if (mode == "redis" && argc == 5) return redis_child(std::stoi(argv[3]), std::stoull(argv[4]));
    if (mode == "forward") return forward_child();
    return 2;
  }
  const CommonFlags flags = parse_common_flags(argc, argv, 100000);
  const std::vector<RequestLog> logs = sample_request_logs(4096);
  std::vector<std::string> payloads;
  for (const auto& l : logs) {
    RequestLog stamped = l;
    stamped.request_id = "0190b5c2-7d3e-7a1b-9c4d-5e6f7a8b9c0d";
    stamped.node_id = "bench-pub";
    stamped.seq = 1;
    std::string p;
    codec::append(p, stamped);
    payloads.push_back(std::move(p));
  }
  std::map<std::string, std::vector<Outcome>> runs;
  for (int r = 0; r < flags.runs; ++r) {  // interleaved, so machine load hits every case alike
    runs["redis_pubsub"].push_back(run_redis(payloads, flags.events));
    runs["node_tcp_plain"].push_back(run_bus(logs, flags.events, false, false));
    runs["node_tcp_curve"].push_back(run_bus(logs, flags.events, true, false));
    runs["node_forwarder"].push_back(run_bus(logs, flags.events, false, true));
  }
  std::vector<Result> results;
  Result redis = summarize("redis_pubsub", runs["redis_pubsub"], flags.events);
  Result plain = summarize("node_tcp_plain", runs["node_tcp_plain"], flags.events);
  plain.baseline = "redis_pubsub";
  plain.ratio = ratio(plain.value, redis.value);
  Result curve = summarize("node_tcp_curve", runs["node_tcp_curve"], flags.events);
  curve.baseline = "node_tcp_plain";
  curve.ratio = ratio(curve.value, plain.value);
  Result fwd = summarize("node_forwarder", runs["node_forwarder"], flags.events);
  fwd.baseline = "node_tcp_plain";
  fwd.ratio = ratio(fwd.value, plain.value);
  for (Result* r : {&redis, &plain, &curve, &fwd}) r->add("load", load_average());
  results = {redis, plain, curve, fwd};
  print_results(results, flags.json);
  return 0;
}
