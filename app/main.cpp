// reqbus: the program. `reqbus --help` lists the subcommands; each has its own --help.
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string_view>
#include <unistd.h>

#include "app/commands.hpp"
#include "reqbus/error.hpp"

namespace reqbus::app {

void block_shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a closed HTTP client must not kill the node
}

int wait_for_signal(std::chrono::milliseconds timeout) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  timespec ts{time_t(timeout.count() / 1000), long(timeout.count() % 1000) * 1000000L};
  const int sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

ShutdownSignals::ShutdownSignals(std::string program, std::function<void()> hurry, std::string hurrying,
                                 std::string lost)
    : watcher_([this, program = std::move(program), hurry = std::move(hurry), hurrying = std::move(hurrying),
                lost = std::move(lost)] {
        while (!done_.load()) {
          const int sig = wait_for_signal(std::chrono::milliseconds(100));
          if (sig == 0) continue;
          if (hurried_by_.load() == 0) {
            std::fprintf(stderr, "%s: signal %d during shutdown: finishing now: %s; another signal exits at once\n",
                         program.c_str(), sig, hurrying.c_str());
            hurried_by_ = sig;
            hurry();
            continue;
          }
          // stderr is unbuffered; stdout is not flushed: a reader that stopped reading must not
          // hold the exit.
          std::fprintf(stderr, "%s: signal %d: exiting now; %s\n", program.c_str(), sig, lost.c_str());
          ::_exit(128 + sig);
        }
      }) {}

ShutdownSignals::~ShutdownSignals() {
  done_ = true;
  watcher_.join();
}

ProgressLine progress_line() {
  static const bool tty = ::isatty(STDERR_FILENO) == 1;
  return tty ? ProgressLine{"\r", "   "} : ProgressLine{"", "\n"};
}

namespace {

// CLI11 says "--http: At Most 1 required but received 2" of a flag given twice; say that.
// Other errors are kept.
std::string repeated_flag_text(const CLI::ParseError& e) {
  std::string what = e.what();
  if (!dynamic_cast<const CLI::ArgumentMismatch*>(&e)) return what;
  static constexpr std::string_view kAtMostOne = ": At Most 1 required but received ";
  const size_t at = what.find(kAtMostOne);
  if (at == std::string::npos) return what;
  const std::string times = what.substr(at + kAtMostOne.size());
  return what.substr(0, at) + " given " + (times == "2" ? std::string("twice") : times + " times") +
         " (it takes one value)";
}

}  // namespace

}  // namespace reqbus::app

int main(int argc, char** argv) {
  using namespace reqbus::app;
  block_shutdown_signals();
  CLI::App app{"reqbus: an event bus for web request analytics (ZeroMQ + msgpack)", "reqbus"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "reqbus 0.1.0");
  std::vector<std::pair<CLI::App*, Run>> commands;
  auto add = [&](const char* name, const char* help, Run (*adder)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    commands.emplace_back(sub, adder(*sub));
  };
  add("demo", "Run a node, a web server and realistic traffic for a while; print what was stored", add_demo);
  add("serve", "Run a long-lived node (TOML config and/or flags)", add_serve);
  add("ingest", "Publish access-log lines (combined, nginx JSON, NDJSON) to a node", add_ingest);
  add("tail", "Print a node's live stream as NDJSON", add_tail);
  add("keygen", "Print a new CURVE key pair for a node (docs/CLUSTER.md)", add_keygen);
  add("forward", "Run a forwarder: nodes publish to and subscribe at one endpoint instead of a full mesh", add_forward);
  add("top", "Terminal dashboard of a node: requests/s, status codes, latency, top paths", add_top);
  add("recount", "Set a store's daily counters from its stored rows (after a crash lost some counts)", add_recount);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line naming the problem; --help has the rest.
    std::string what = repeated_flag_text(e);
    if (argc > 1 && argv[1][0] != '-') {
      bool known = false;
      for (auto& [sub, run] : commands) known |= sub->get_name() == argv[1];
      if (!known) what = std::string("unknown subcommand '") + argv[1] + "'";
    } else if (argc > 1 && dynamic_cast<const CLI::RequiredError*>(&e)) {  // CLI11: "A subcommand is required"
      what = std::string("unknown option '") + argv[1] + "': the subcommand comes first (reqbus SUBCOMMAND [options])";
    }
    for (char& c : what)
      if (c == '\n') c = ' ';
    std::fprintf(stderr, "reqbus: %s (see reqbus --help)\n", what.c_str());
    return 2;
  }
  try {
    for (auto& [sub, run] : commands)
      if (sub->parsed()) return run();
  } catch (const reqbus::Error& e) {
    std::fprintf(stderr, "reqbus: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reqbus: unexpected error: %s\n", e.what());
    return 1;
  }
  return 2;
}
