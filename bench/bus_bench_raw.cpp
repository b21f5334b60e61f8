// bus_bench's raw ZeroMQ cases: cppzmq XPUB -> SUB of pre-encoded msgpack RequestLogs, one
// record per ZeroMQ message, lossless (XPUB_NODROP with a blocking send), inproc and tcp.
#include <atomic>
#include <future>
#include <thread>
#include <zmq.hpp>

#include "bench/bus_bench_cases.hpp"
#include "reqbus/codec.hpp"
#include "reqbus/uuid.hpp"

namespace reqbus::bench {
namespace {

constexpr int kRawHwm = 10000;  // messages; with XPUB_NODROP the sender waits beyond it

zmq::socket_t make_raw_pub(zmq::context_t& context, const std::string& endpoint) {
  zmq::socket_t pub(context, zmq::socket_type::xpub);
  pub.set(zmq::sockopt::xpub_nodrop, 1);  // lossless: send() waits at the HWM instead of dropping
  pub.set(zmq::sockopt::sndhwm, kRawHwm);
  pub.set(zmq::sockopt::linger, 0);       // the receiver confirms what it got before we close
  pub.bind(endpoint);
  return pub;
}

zmq::socket_t make_raw_sub(zmq::context_t& context, const std::string& endpoint) {
  zmq::socket_t sub(context, zmq::socket_type::sub);
  sub.set(zmq::sockopt::rcvhwm, kRawHwm);
  sub.set(zmq::sockopt::rcvtimeo, kIdleTimeoutMs);
  sub.set(zmq::sockopt::subscribe, "");
  sub.connect(endpoint);
  return sub;
}

struct RawReceived {
  uint64_t received = 0, errors = 0, last_ns = 0;
};

// Receives until `events` records arrived or nothing came for kIdleTimeoutMs. One-byte
// messages are start-up probes: the first calls on_ready and none is counted.
template <class OnReady>
RawReceived raw_receive(zmq::socket_t& sub, uint64_t events, bool decode, OnReady on_ready) {
  RawReceived r;
  zmq::message_t msg;
  Message decoded;
  bool ready = false;
  while (r.received < events) {
    if (!sub.recv(msg)) break;  // idle timeout: the rest was lost
    if (msg.size() == 1) {
      if (!ready) on_ready();
      ready = true;
      continue;
    }
    if (decode && codec::decode(static_cast<const char*>(msg.data()), msg.size(), decoded)) ++r.errors;
    if ((++r.received & 4095) == 0) r.last_ns = now_ns();
  }
  if (r.received == events) r.last_ns = now_ns();
  return r;
}

void raw_send_all(zmq::socket_t& pub, const std::vector<std::string>& records, uint64_t events) {
  for (uint64_t i = 0; i < events; ++i) {
    const std::string& rec = records[i % records.size()];
    (void)pub.send(zmq::buffer(rec), zmq::send_flags::none);  // blocks at the HWM (NODROP)
  }
}

}  // namespace

std::vector<std::string> encode_records(const std::vector<RequestLog>& logs) {
  std::vector<std::string> records;
  records.reserve(logs.size());
  uint64_t seq = 0;
  for (RequestLog r : logs) {  // the published form: what the bus fills in is filled in here too
    r.request_id = uuid_v7();
    r.node_id = "bench-node-1";
    r.seq = seq++;
    std::string out;
    codec::append(out, r);
    records.push_back(std::move(out));
  }
  return records;
}

Throughput run_raw_inproc(const std::vector<std::string>& records, uint64_t events, bool decode) {
  zmq::context_t context(1);
  zmq::socket_t pub = make_raw_pub(context, "inproc://bus-bench-raw");
  std::atomic<bool> ready{false};
  std::promise<RawReceived> result;
  auto got = result.get_future();
  std::thread receiver([&] {
    zmq::socket_t sub = make_raw_sub(context, "inproc://bus-bench-raw");
    result.set_value(raw_receive(sub, events, decode, [&] { ready = true; }));
  });
  const char probe = 'P';
  while (!ready.load()) {
    (void)pub.send(zmq::const_buffer(&probe, 1), zmq::send_flags::dontwait);
    std::this_thread::sleep_for(std::chrono::microseconds(200));  // start-up only, not timed
  }
  const uint64_t cpu0 = cpu_now_ns();
  const uint64_t start = now_ns();
  raw_send_all(pub, records, events);
  receiver.join();
  const RawReceived r = got.get();
  Throughput t;
  t.cpu_ns = double(cpu_now_ns() - cpu0);
  t.sent = events;
  t.received = r.received;
  t.errors = r.errors;
  t.events_per_s = r.last_ns > start ? double(r.received) * 1e9 / double(r.last_ns - start) : 0;
  return t;
}


Throughput run_raw_tcp(const std::vector<std::string>& records, uint64_t events, bool decode) {
  zmq::context_t context(1);
  zmq::socket_t pub = make_raw_pub(context, "tcp://127.0.0.1:*");
  const std::string endpoint = pub.get(zmq::sockopt::last_endpoint);
  Child child({"--child", "raw", endpoint, std::to_string(events), decode ? "1" : "0"});
  const char probe = 'P';
  await_child_ready(child, [&] { (void)pub.send(zmq::const_buffer(&probe, 1), zmq::send_flags::dontwait); });
  const uint64_t cpu0 = cpu_now_ns();
  const uint64_t start = now_ns();
  raw_send_all(pub, records, events);
  return read_child_result(child, start, cpu0, events);
}

int raw_child(const std::string& endpoint, uint64_t events, bool decode) {
  zmq::context_t context(1);
  zmq::socket_t sub = make_raw_sub(context, endpoint);
  const RawReceived r = raw_receive(sub, events, decode, [] { write_line("ready"); });
  write_line("done " + std::to_string(r.received) + " 0 " + std::to_string(r.errors) + " " +
             std::to_string(r.last_ns) + " " + std::to_string(cpu_now_ns()));
  return 0;
}

}  // namespace reqbus::bench
