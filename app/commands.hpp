#pragma once
// The `reqbus` program's subcommands. Each registers its flags on a CLI11 subcommand and
// returns the function that runs it (exit status).
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

namespace reqbus::app {

using Run = std::function<int()>;

Run add_demo(CLI::App& app);
Run add_serve(CLI::App& app);
Run add_ingest(CLI::App& app);
Run add_tail(CLI::App& app);
Run add_top(CLI::App& app);
Run add_keygen(CLI::App& app);
Run add_forward(CLI::App& app);
Run add_recount(CLI::App& app);

// Blocks SIGINT and SIGTERM in the calling thread and in every thread it starts afterwards,
// so that wait_for_signal() can take them synchronously. Call first thing in main().
void block_shutdown_signals();
// Waits up to `timeout` for SIGINT/SIGTERM; returns the signal number or 0.
int wait_for_signal(std::chrono::milliseconds timeout);

// While it lives, SIGINT/SIGTERM cut the graceful shutdown under way short, for an operator who
// will not wait for it (a second Ctrl-C):
//   - the first calls `hurry` (the close's deadline becomes now: the node spools what is not
//     stored yet and abandons its writes in progress; Node::hurry) and prints
//     "<program>: signal N during shutdown: finishing now: <hurrying>; another signal exits at once";
//   - the next prints "<program>: signal N: exiting now; <lost>" and ends the process at once
//     with 128 + N, running nothing more.
// Watches from its own thread (the signals are blocked everywhere, see block_shutdown_signals).
class ShutdownSignals {
 public:
  ShutdownSignals(std::string program, std::function<void()> hurry, std::string hurrying, std::string lost);
  ~ShutdownSignals();
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;
  // The signal that hurried the close, or 0.
  int hurried_by() const { return hurried_by_.load(); }

 private:
  std::atomic<bool> done_{false};
  std::atomic<int> hurried_by_{0};
  std::thread watcher_;
};

// CLI::Range for a floating-point flag, which also refuses NaN: CLI11's own compares with < and >,
// which NaN passes ("--duration nan" ran a demo of nan seconds). Says the range plainly.
inline CLI::Validator finite_range(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(text, v) || !(v >= min && v <= max))
          return "Value " + text + " not in range " + CLI::detail::to_string(min) + " to " + CLI::detail::to_string(max);
        return {};
      },
      "FLOAT in [" + CLI::detail::to_string(min) + " - " + CLI::detail::to_string(max) + "]");
}

// A progress line on stderr: rewritten in place ("\r") on a terminal, one line per update
// when stderr is a pipe or a file (CI logs, `2> file`), where "\r" piles every update onto
// one line. Returns what to print before and after the update's text.
struct ProgressLine {
  const char* begin;
  const char* end;
  bool in_place() const { return *begin != '\0'; }  // a terminal: the last update needs a "\n"
};
ProgressLine progress_line();

}  // namespace reqbus::app
