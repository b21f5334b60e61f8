#pragma once
// The `reqbus` program's subcommands. Each registers its flags on a CLI11 subcommand and
// returns the function that runs it (exit status).
#include <CLI/CLI.hpp>
#include <functional>

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
