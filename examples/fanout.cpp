// fanout: one publisher process, K subscriber processes, tcp loopback between them.
//
//   fanout [--events 100000] [--subscribers 3] [--timeout-s 60] [--tcp-hwm FRAMES]
//
// The parent forks (before any ZeroMQ context exists, so nothing threaded is forked) and only
// coordinates, over one pipe pair per child:
//   1. the publisher binds tcp://127.0.0.1:* and reports its endpoint;
//   2. K subscribers connect to it. A tcp SUB connects asynchronously, so the publisher keeps
//      broadcasting probes on topic "probe" until every subscriber has seen one;
//   3. then it broadcasts N events on topic "fanout" and reports how many the bus accepted;
//   4. each subscriber waits for all N (or stops once nothing arrives for 3 s) and reports what
//      it received: distinct events, duplicates, and gaps (what the sequence numbers say the
//      network lost).
// Exit status 0 only if every subscriber received every event exactly once. --tcp-hwm 2 makes
// ZeroMQ drop frames on the way; the subscribers then report the loss as gaps, and it fails.
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "examples/flags.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"

using namespace reqbus;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kDataTopic = "fanout";
constexpr const char* kProbeTopic = "probe";

// One end of a line-oriented pipe conversation.
class Channel {
 public:
  Channel(int in, int out) : in_(in), out_(out) {}
  void send(const std::string& line) const {
    const std::string text = line + "\n";
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(out_, text.data() + done, text.size() - done);
      if (n <= 0) return;  // the other side is gone; it will be noticed by waitpid
      done += size_t(n);
    }
  }
  // Reads one line, waiting until `deadline`; false on timeout or a closed pipe.
  bool receive(std::string& line, Clock::time_point deadline) {
    for (;;) {
      if (const size_t nl = buffer_.find('\n'); nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return true;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{in_, POLLIN, 0};
      if (::poll(&p, 1, int(left.count())) <= 0) continue;
      char chunk[512];
      const ssize_t n = ::read(in_, chunk, sizeof chunk);
      if (n <= 0) return false;
      buffer_.append(chunk, size_t(n));
    }
  }
  // True if a line is waiting (without blocking longer than `wait`).
  bool poll_line(std::string& line, std::chrono::milliseconds wait) {
    return receive(line, Clock::now() + wait);
  }

 private:
  int in_, out_;
  std::string buffer_;
};

struct Child {
  pid_t pid = -1;
  Channel channel{-1, -1};
};

// Forks a child that runs `body` with its end of the pipes and exits with its return value.
Child spawn(const std::function<int(Channel&)>& body) {
  int to_child[2], from_child[2];
  if (::pipe(to_child) != 0 || ::pipe(from_child) != 0) {
    std::perror("fanout: pipe");
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fanout: fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    Channel parent(to_child[0], from_child[1]);
    int code = 1;
    try {
      code = body(parent);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fanout child %d: %s\n", int(::getpid()), e.what());
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  return Child{pid, Channel(from_child[0], to_child[1])};
}

// --- the publisher process ---------------------------------------------------------------

int run_publisher(Channel& parent, uint64_t events, int tcp_hwm, std::chrono::seconds timeout) {
  BusOptions options;
  options.name = "fanout-pub";
  options.node_id = "fanout-publisher";
  options.bind = "tcp://127.0.0.1:*";
  options.insecure_plaintext = true;  // loopback demo; docs/CLUSTER.md sets up CURVE
  if (tcp_hwm > 0) options.tcp_hwm = tcp_hwm;
  Bus bus(options);
  parent.send("endpoint " + bus.bound_endpoint());

  RequestLog probe;
  probe.method = "GET";
  probe.path = "/probe";
  probe.status_code = 200;
  std::string line;
  uint64_t probes = 0;
  const auto deadline = Clock::now() + timeout;
  while (!parent.poll_line(line, std::chrono::milliseconds(20))) {
    if (Clock::now() > deadline) return 1;
    if (bus.broadcast(probe, kProbeTopic) == PublishStatus::ok) ++probes;
  }
  if (line != "go") return 1;

  RequestLog event;
  event.method = "GET";
  event.status_code = 200;
  event.user_agent = "fanout/1.0";
  event.device_type = "bot";
  uint64_t accepted = 0, refused = 0;
  const auto start = Clock::now();
  for (uint64_t i = 0; i < events; ++i) {
    event.path = "/fanout/" + std::to_string(i);
    event.duration_ms = double(i % 100) / 10.0;
    (bus.broadcast(event, kDataTopic) == PublishStatus::ok ? accepted : refused) += 1;
  }
  const auto took = std::chrono::duration<double>(Clock::now() - start).count();
  parent.send("published " + std::to_string(accepted) + " " + std::to_string(refused) + " " +
              std::to_string(took) + " " + std::to_string(probes));

  // Stay up until the subscribers are done: closing would cut the tcp streams short.
  parent.receive(line, Clock::now() + timeout);
  const CloseReport report = bus.close();
  parent.send("closed " + std::to_string(report.published) + " " +
              std::to_string(report.dropped_close_deadline));
  return refused == 0 ? 0 : 1;
}

// --- a subscriber process ----------------------------------------------------------------

int run_subscriber(Channel& parent, const std::string& endpoint, int index, uint64_t events,
                   std::chrono::seconds timeout) {
  BusOptions options;
  options.name = "fanout-sub";
  options.node_id = "fanout-sub-" + std::to_string(index);
  options.peers = {endpoint};
  options.insecure_plaintext = true;
  Bus bus(options);

  // The handler runs on the subscription's thread; `seen` is read only after close() joins it.
  std::vector<bool> seen(events, false);
  uint64_t duplicates = 0, foreign = 0;
  std::atomic<uint64_t> received{0};
  std::atomic<uint64_t> target{UINT64_MAX};
  std::mutex mu;
  std::condition_variable all_in;
  Clock::time_point first{}, last{};
  SubscribeOptions data_options;
  data_options.topic = kDataTopic;
  data_options.name = "fanout";
  Subscription data = bus.subscribe(data_options, [&](const Message& m) {
    const std::string& path = m.request.path;
    const uint64_t i = path.rfind("/fanout/", 0) == 0 ? std::strtoull(path.c_str() + 8, nullptr, 10) : events;
    if (i >= events) {
      ++foreign;
    } else if (seen[i]) {
      ++duplicates;
    } else {
      seen[i] = true;
    }
    last = Clock::now();
    if (first == Clock::time_point{}) first = last;
    if (received.fetch_add(1) + 1 >= target.load()) {
      std::lock_guard lock(mu);
      all_in.notify_all();
    }
  });

  SubscribeOptions probe_options;
  probe_options.topic = kProbeTopic;
  Subscription probes = bus.subscribe(probe_options);
  const auto waited_from = Clock::now();
  if (!probes.next(std::chrono::duration_cast<std::chrono::milliseconds>(timeout))) return 1;
  const auto ready_ms = std::chrono::duration<double, std::milli>(Clock::now() - waited_from).count();
  probes.close();  // unread probes must not pile up behind the data
  parent.send("ready " + std::to_string(ready_ms));

  std::string line;
  if (!parent.receive(line, Clock::now() + timeout) || line.rfind("sent ", 0) != 0) return 1;
  target = std::stoull(line.substr(5));
  {
    // Wait for every event, or until nothing has arrived for 3 s (what is missing is reported).
    std::unique_lock lock(mu);
    const auto deadline = Clock::now() + timeout;
    uint64_t before = received.load();
    while (received.load() < target.load() && Clock::now() < deadline) {
      if (all_in.wait_for(lock, std::chrono::seconds(3), [&] { return received.load() >= target.load(); }))
        break;
      if (received.load() == before) break;  // idle for 3 s
      before = received.load();
    }
  }
  data.close();  // joins the handler thread: `seen` and friends are ours now
  const SubscriptionStats stats = data.stats();
  bus.close();
  uint64_t distinct = 0;
  for (bool b : seen) distinct += b;
  const double span = std::chrono::duration<double>(last - first).count();
  std::ostringstream out;
  out << "result " << received.load() << ' ' << distinct << ' ' << duplicates << ' ' << foreign
      << ' ' << stats.gaps << ' ' << span;
  parent.send(out.str());
  return distinct == events ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  examples::Flags flags(argc, argv, "[--events 100000] [--subscribers 3] [--timeout-s 60] [--tcp-hwm FRAMES]");
  const uint64_t events = uint64_t(flags.num("events", 100'000, 1, 100'000'000));
  const int subscribers = int(flags.num("subscribers", 3, 1, 64));
  const std::chrono::seconds timeout(flags.num("timeout-s", 60, 1, 3600));
  // A small high-water mark makes ZeroMQ drop frames, to show that the loss is detected.
  const int tcp_hwm = int(flags.num("tcp-hwm", 0, 0, 1'000'000));
  flags.done();

  std::printf("fanout: 1 publisher -> %d subscriber processes over tcp loopback, %" PRIu64 " events\n",
              subscribers, events);
  Child publisher = spawn([&](Channel& c) { return run_publisher(c, events, tcp_hwm, timeout); });
  std::string line;
  const auto deadline = Clock::now() + timeout;
  if (!publisher.channel.receive(line, deadline) || line.rfind("endpoint ", 0) != 0) {
    std::fprintf(stderr, "fanout: the publisher did not start\n");
    return 1;
  }
  const std::string endpoint = line.substr(9);
  std::printf("  publisher pid %d bound %s\n", int(publisher.pid), endpoint.c_str());

  std::vector<Child> subs;
  for (int k = 0; k < subscribers; ++k)
    subs.push_back(spawn([&, k](Channel& c) { return run_subscriber(c, endpoint, k, events, timeout); }));
  bool ok = true;
  for (int k = 0; k < subscribers; ++k) {
    if (!subs[size_t(k)].channel.receive(line, deadline) || line.rfind("ready ", 0) != 0) {
      std::fprintf(stderr, "fanout: subscriber %d never saw a probe\n", k);
      ok = false;
      break;
    }
    std::printf("  subscriber %d (pid %d) live: first probe after %.1f ms\n", k,
                int(subs[size_t(k)].pid), std::stod(line.substr(6)));
  }

  uint64_t accepted = 0;
  if (ok) {
    publisher.channel.send("go");
    if (!publisher.channel.receive(line, deadline) || line.rfind("published ", 0) != 0) {
      std::fprintf(stderr, "fanout: the publisher did not report\n");
      ok = false;
    } else {
      std::istringstream in(line.substr(10));
      uint64_t refused = 0, probes = 0;
      double secs = 0;
      in >> accepted >> refused >> secs >> probes;
      std::printf("  publisher: %" PRIu64 " accepted, %" PRIu64 " refused in %.3f s (%.0f events/s); "
                  "%" PRIu64 " probes before go\n",
                  accepted, refused, secs, secs > 0 ? double(accepted) / secs : 0.0, probes);
      ok = refused == 0;
    }
  }
  for (auto& s : subs) s.channel.send("sent " + std::to_string(accepted));
  const bool published = ok;
  for (int k = 0; k < subscribers && published; ++k) {
    if (!subs[size_t(k)].channel.receive(line, deadline) || line.rfind("result ", 0) != 0) {
      std::fprintf(stderr, "fanout: subscriber %d did not report\n", k);
      ok = false;
      continue;
    }
    std::istringstream in(line.substr(7));
    uint64_t received = 0, distinct = 0, duplicates = 0, foreign = 0, gaps = 0;
    double span = 0;
    in >> received >> distinct >> duplicates >> foreign >> gaps >> span;
    const bool complete = distinct == events && duplicates == 0 && foreign == 0;
    // gaps counts holes seen between frames; a lost tail shows only in `missing`.
    std::printf("  subscriber %d: received %" PRIu64 "/%" PRIu64 ", distinct %" PRIu64 ", missing %" PRIu64
                ", duplicates %" PRIu64 ", gaps %" PRIu64 ", %.0f events/s  %s\n",
                k, received, events, distinct, events - distinct, duplicates, gaps,
                span > 0 ? double(received) / span : 0.0, complete ? "OK" : "INCOMPLETE");
    ok = ok && complete;
  }
  publisher.channel.send("exit");
  if (publisher.channel.receive(line, Clock::now() + std::chrono::seconds(10)))
    std::printf("  publisher closed: %s\n", line.c_str());

  std::vector<Child*> children{&publisher};
  for (auto& s : subs) children.push_back(&s);
  for (Child* c : children) {
    if (!ok) ::kill(c->pid, SIGTERM);  // a child still waiting on a failed run: end it now
    int status = 0;
    if (::waitpid(c->pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = false;
  }
  std::printf("fanout: %s\n", ok ? "every subscriber received every event" : "FAILED");
  return ok ? 0 : 1;
}
