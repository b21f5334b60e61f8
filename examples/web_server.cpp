// web_server: a small shop (demo_site.hpp) served by cpp-httplib that publishes one
// reqbus::RequestLog per request it serves (request_logger.hpp). With --bind, other processes
// (print_stream, another node) can subscribe to the stream over tcp.
//
//   web_server [--port 8080] [--host 127.0.0.1] [--bind tcp://127.0.0.1:7400]
//              [--node-id ID] [--topic requests] [--sessions on|off]
//
// Prints one status line per second; SIGINT or SIGTERM stops the server, closes the bus and
// prints what was served, published and dropped.
#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <thread>

#include "examples/bind_server.hpp"
#include "examples/demo_site.hpp"
#include "examples/flags.hpp"
#include "examples/request_logger.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/error.hpp"

using namespace reqbus;
using namespace reqbus::examples;

namespace {

void print_report(const RequestLoggerStats& s, const CloseReport& r, const BusStats& b) {
  std::printf("\nweb_server: stopped.\n");
  std::printf("  requests served      %" PRIu64 "\n", s.served);
  std::printf("  events published     %" PRIu64 "\n", s.published);
  std::printf("  not published        %" PRIu64 "  (queue full %" PRIu64 ", timed out %" PRIu64
              ", bus closed %" PRIu64 ", invalid %" PRIu64 ", unparsable request %" PRIu64 ")\n",
              s.not_published(), s.dropped_newest, s.timed_out, s.closed, s.invalid, s.unparsed);
  std::printf("  fields truncated     %" PRIu64 "\n", s.truncated);
  std::printf("  sessions             %" PRIu64 " created, %" PRIu64 " live, %" PRIu64
              " evicted, %" PRIu64 " expired, %" PRIu64 " failed\n",
              s.sessions_created, s.sessions_live, s.sessions_evicted, s.sessions_expired, s.sessions_failed);
  std::printf("  bus close            %lld ms%s: published %" PRIu64 ", frames sent %" PRIu64
              ", dropped at close %" PRIu64 "\n",
              static_cast<long long>(r.took.count()), r.deadline_reached ? " (deadline reached)" : "",
              r.published, b.frames_sent, r.dropped_close_deadline);
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags(argc, argv,
              "[--port 8080] [--host 127.0.0.1] [--bind tcp://HOST:PORT] [--node-id ID] [--topic requests]\n"
              "       [--sessions on|off]\n"
              "  --port 0 picks a free port and prints it; --bind lets other processes subscribe;\n"
              "  --sessions off: no session cookie (cookie-less logging, session_id empty).");
  const int port = int(flags.num("port", 8080, 0, 65535));
  const std::string host = flags.str("host", "127.0.0.1");
  BusOptions bus_options;
  bus_options.name = "web";
  bus_options.node_id = flags.str("node-id");
  bus_options.bind = flags.str("bind");
  bus_options.insecure_plaintext = true;  // examples speak plain tcp; docs/CLUSTER.md sets up CURVE
  // A full publish queue must never hold up a server thread: refuse the event and count it.
  bus_options.overflow = Overflow::drop_newest;
  RequestLoggerOptions logger_options;
  logger_options.topic = flags.str("topic", kDefaultTopic);
  const std::string sessions = flags.str("sessions", "on");
  if (sessions != "on" && sessions != "off") flags.fail("--sessions: '" + sessions + "' is not on or off");
  logger_options.sessions = sessions == "on";
  flags.done();

  // SIGINT/SIGTERM are blocked in every thread (the bus's and httplib's inherit this mask) and
  // taken synchronously by the main loop below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  try {
    Bus bus(bus_options);
    RequestLogger logger(bus, logger_options);
    httplib::Server server;
    // httplib writes a response's headers and body in separate send()s: without TCP_NODELAY
    // every keep-alive response after the first waits ~40 ms for the client's delayed ACK.
    server.set_tcp_nodelay(true);
    install_demo_site(server);
    logger.install(server);

    const int bound_port = bind_server(server, host, port);  // SO_REUSEADDR, full backlog
    if (bound_port <= 0) {
      std::fprintf(stderr, "web_server: cannot listen on %s:%d\n", host.c_str(), port);
      return 1;
    }
    std::printf("web_server: listening on http://%s:%d/  node %s  topic '%s'  bus %s\n", host.c_str(),
                bound_port, bus.node_id().c_str(), logger_options.topic.c_str(),
                bus.bound_endpoint().empty() ? "in-process only" : bus.bound_endpoint().c_str());
    std::fflush(stdout);
    std::thread http([&server] { server.listen_after_bind(); });

    const auto started = std::chrono::steady_clock::now();
    uint64_t last_served = 0;
    for (;;) {
      const timespec one_second{1, 0};
      const int sig = sigtimedwait(&stop_signals, nullptr, &one_second);
      if (sig == SIGINT || sig == SIGTERM) {
        std::printf("web_server: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
      if (sig < 0 && errno != EAGAIN) continue;  // EINTR: another signal; keep waiting
      const RequestLoggerStats s = logger.stats();
      const BusStats b = bus.stats();
      const auto secs = std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::steady_clock::now() - started).count();
      std::printf("[%4llds] served %" PRIu64 " (+%" PRIu64 "/s)  published %" PRIu64
                  "  dropped %" PRIu64 "  sessions %" PRIu64 "  bus queue %" PRIu64 "\n",
                  static_cast<long long>(secs), s.served, s.served - last_served, s.published,
                  s.not_published(), s.sessions_live, b.queue_depth);
      std::fflush(stdout);
      last_served = s.served;
    }

    server.stop();
    http.join();  // listen_after_bind() returns once in-flight requests and their logs are done
    const CloseReport report = bus.close();
    print_report(logger.stats(), report, bus.stats());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "web_server: %s\n", e.what());
    return 1;
  }
}
