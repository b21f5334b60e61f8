// reqbus forward: ZeroMQ's own XSUB/XPUB proxy, so that nodes publish to one well-known
// endpoint (the frontend: their `publish_to`) and subscribe at another (the backend: their
// `peers`) instead of connecting to every other node (docs/CLUSTER.md). With CURVE both
// endpoints are CURVE servers with the forwarder's key and admit only the allow-listed node
// keys (a ZAP handler; refusals counted and reported). SIGINT/SIGTERM stop it.
#include <cstdio>
#include <thread>
#include <zmq.hpp>

#include "app/commands.hpp"
#include "bus/curve.hpp"
#include "reqbus/bus_options.hpp"
#include "node/config.hpp"
#include "reqbus/error.hpp"
#include "reqbus/log.hpp"

namespace reqbus::app {
namespace {

struct ForwardFlags {
  std::string frontend = "tcp://0.0.0.0:7401", backend = "tcp://0.0.0.0:7402";
  std::string curve_secret;
  std::vector<std::string> allow;
  bool insecure = false;
  int hwm = 100000;  // frames per connection in each direction before ZeroMQ drops (counted as gaps downstream)
};

}  // namespace

Run add_forward(CLI::App& app) {
  auto f = std::make_shared<ForwardFlags>();
  app.add_option("--frontend", f->frontend, "Where nodes publish (their publish_to), default tcp://0.0.0.0:7401");
  app.add_option("--backend", f->backend, "Where nodes subscribe (their peers), default tcp://0.0.0.0:7402");
  app.add_option("--curve-secret", f->curve_secret, "The forwarder's CURVE secret key or `reqbus keygen --out` file");
  app.add_option("--allow", f->allow, "Public key (or key file) of a node allowed to connect (repeatable)");
  app.add_flag("--insecure", f->insecure, "Plain tcp: no authentication, no encryption");
  app.add_option("--hwm", f->hwm, "Frames queued per connection before ZeroMQ drops (default 100000)")->check(CLI::Range(1, 1 << 30));
  return [f]() -> int {
    for (const auto& [flag, endpoint] : {std::pair{"--frontend", &f->frontend}, std::pair{"--backend", &f->backend}})
      if (auto why = tcp_endpoint_problem(*endpoint); !why.empty())
        throw Error(ErrorCode::invalid_argument, std::string(flag) + ": " + why);
    detail::CurveKeys keys;
    if (!f->curve_secret.empty()) {
      if (auto e = node::read_curve_key(f->curve_secret, "secret_key", "--curve-secret", keys.secret); !e.empty())
        throw Error(ErrorCode::invalid_argument, e);
      keys.public_key = detail::curve_public_of(keys.secret);
    }
    const bool curve = !keys.secret.empty();
    if (curve == f->insecure) throw Error(ErrorCode::invalid_argument, "forward: give --curve-secret (with --allow) or --insecure");
    std::vector<std::string> allowed;
    for (const auto& a : f->allow) {
      std::string key;
      if (auto e = node::read_curve_key(a, "public_key", "--allow", key); !e.empty()) throw Error(ErrorCode::invalid_argument, e);
      allowed.push_back(key);
    }
    if (curve && allowed.empty()) throw Error(ErrorCode::invalid_argument, "forward: --allow is empty: every node would be refused");
    if (!curve) log(LogLevel::warn, "reqbus forward: --insecure: traffic is neither authenticated nor encrypted");

    zmq::context_t context(1);
    std::unique_ptr<detail::ZapHandler> zap;
    if (curve) zap = std::make_unique<detail::ZapHandler>(context, allowed, "forward");
    zmq::socket_t xsub(context, zmq::socket_type::xsub), xpub(context, zmq::socket_type::xpub);
    zmq::socket_t control_in(context, zmq::socket_type::pair), control_out(context, zmq::socket_type::pair);
    for (zmq::socket_t* s : {&xsub, &xpub}) {
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::rcvhwm, f->hwm);
      s->set(zmq::sockopt::sndhwm, f->hwm);
      if (curve) detail::make_curve_server(*s, keys);
    }
    try {
      xsub.bind(f->frontend);
      xpub.bind(f->backend);
      control_in.bind("inproc://forward-control");
      control_out.connect("inproc://forward-control");
    } catch (const zmq::error_t& e) {
      throw Error(ErrorCode::transport, std::string("forward: bind: ") + e.what());
    }
    std::printf("reqbus forward: frontend %s  backend %s  (%s)\n", xsub.get(zmq::sockopt::last_endpoint).c_str(),
                xpub.get(zmq::sockopt::last_endpoint).c_str(), curve ? "CURVE" : "insecure plaintext");
    if (curve) std::printf("  server key: %s (nodes append #%s to the endpoints)\n", keys.public_key.c_str(), keys.public_key.c_str());
    std::fflush(stdout);
    std::thread proxy([&] {
      try {
        zmq::proxy_steerable(xsub, xpub, zmq::socket_ref(), control_in);
      } catch (const zmq::error_t&) {  // context ended
      }
    });
    int sig = 0;
    while ((sig = wait_for_signal(std::chrono::milliseconds(1000))) == 0) {
    }
    control_out.send(zmq::str_buffer("TERMINATE"), zmq::send_flags::none);
    proxy.join();
    if (zap) zap->stop();
    std::printf("reqbus forward: signal %d, stopped; %llu connections admitted, %llu refused\n", sig,
                static_cast<unsigned long long>(zap ? zap->allowed() : 0),
                static_cast<unsigned long long>(zap ? zap->refused() : 0));
    return 0;
  };
}

}  // namespace reqbus::app
