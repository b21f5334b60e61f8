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

// Blocks SIGINT and SIGTERM in the calling thread and in every thread it starts afterwards,
// so that wait_for_signal() can take them synchronously. Call first thing in main().
void block_shutdown_signals();
// Waits up to `timeout` for SIGINT/SIGTERM; returns the signal number or 0.
int wait_for_signal(std::chrono::milliseconds timeout);

// While it lives, a SIGINT/SIGTERM ends the process at once: for a graceful shutdown that an
// operator, having asked for it once, wants cut short (a second Ctrl-C). Prints
// "<program>: second signal N during shutdown: exiting now; <lost>" on stderr and exits with
// 128 + N, without running destructors or the close that is under way. Watches from its own
// thread (the signals are blocked everywhere, see block_shutdown_signals).
class SecondSignalExits {
 public:
  SecondSignalExits(std::string program, std::string lost);
  ~SecondSignalExits();
  SecondSignalExits(const SecondSignalExits&) = delete;
  SecondSignalExits& operator=(const SecondSignalExits&) = delete;

 private:
  std::atomic<bool> done_{false};
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
