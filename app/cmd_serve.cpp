// reqbus serve: a long-lived node. SIGINT/SIGTERM: stop intake, drain, flush, report, exit 0.
#include <cstdio>

#include "app/commands.hpp"
#include "app/node_flags.hpp"
#include "bus/curve.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus::app {
namespace {

// Without a spool a batch the store cannot take (down, failing) has nowhere to wait: say so at
// start, not first in the drop counters.
void warn_if_no_spool(const node::NodeOptions& options) {
  if (options.spool_dir.empty() && options.store != "none")
    log(LogLevel::warn, "serve: no spool (--spool-dir / spool_dir is \"\"): events the store cannot take are "
                        "dropped, counted in reqbus_batcher_dropped_total{reason=\"no_spool\"}");
}

}  // namespace

Run add_serve(CLI::App& app) {
  auto flags = std::make_shared<NodeFlags>();
  auto close_ms = std::make_shared<int>(10000);
  flags->add_to(app, true);
  app.add_option("--close-timeout-ms", *close_ms, "Deadline for the graceful shutdown")->check(CLI::Range(0, 3600000));
  return [flags, close_ms]() -> int {
    node::NodeOptions options;
    flags->apply(options);
    node::Node node = [&] {
      try {
        return node::Node(options);
      } catch (const Error& e) {  // the Bus names its C++ fields; say which flag or key
        throw Error(e.code(), in_user_terms(e.what()));
      }
    }();
    std::printf("reqbus serve: node %s, store %s\n", node.bus().node_id().c_str(), node.store_description().c_str());
    if (!options.bus.bind.empty()) std::printf("  bus: %s\n", node.bus().bound_endpoint().c_str());
    for (const auto& p : options.bus.peers) std::printf("  peer: %s\n", p.c_str());
    for (const auto& p : options.bus.publish_to) std::printf("  publish to: %s\n", p.c_str());
    if (!options.bus.bind.empty() || !options.bus.peers.empty() || !options.bus.publish_to.empty()) {
      if (options.bus.insecure_plaintext)
        std::printf("  security: PLAIN TCP (--insecure): not authenticated, not encrypted\n");
      else
        std::printf("  security: CURVE, public key %s, %zu allowed client key(s)\n",
                    detail::curve_public_of(options.bus.curve_secret_key).c_str(),
                    options.bus.curve_allowed_clients.size());
    }
    if (options.http_enabled)
      std::printf("  dashboard: http://%s:%d/   metrics: /metrics   API: /v1/requests, /v1/batch\n",
                  options.http.host.c_str(), node.http_port());
    if (!options.syslog_listen.empty()) std::printf("  syslog: udp %s\n", options.syslog_listen.c_str());
    warn_if_no_spool(options);
    std::fflush(stdout);
    int sig = 0;
    while ((sig = wait_for_signal(std::chrono::milliseconds(1000))) == 0) {
    }
    std::printf("reqbus serve: signal %d, shutting down (deadline %d ms%s; another signal cuts it short)\n", sig,
                *close_ms,
                close_waits_for_writes(options) ? ", but a store write in progress is waited for: no spool" : "");
    std::fflush(stdout);
    int hurried_by = 0;
    const node::NodeReport report = [&] {
      const ShutdownSignals impatient("reqbus serve", [&] { node.hurry(); }, hurry_text(options),
                                      forced_exit_text(options));
      const node::NodeReport r = node.close(std::chrono::milliseconds(*close_ms));
      hurried_by = impatient.hurried_by();
      return r;
    }();
    std::printf("reqbus serve: %s\n", describe(report).c_str());
    return hurried_by ? 128 + hurried_by : 0;  // a shutdown cut short says so in its status
  };
}

}  // namespace reqbus::app
