#pragma once
// SpawnedProcess: a child process a test starts (a browser, nginx, the reqbus program), in its
// own process group, with its stdout and stderr in a file. The destructor kills the whole group
// (SIGKILL) and reaps the child, so nothing outlives a failed test. Waiting uses a pidfd and
// poll() with a deadline: no sleeps.
// This file has no Boost dependency.
// Thread-safety: one object is used from one thread.
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace reqbus::test {

struct SpawnOptions {
  std::vector<std::string> argv;   // argv[0] is an absolute path to the executable
  std::string output_file;         // stdout and stderr go here ("" = /dev/null)
  std::string stdin_file;          // stdin comes from here ("" = /dev/null)
  // Extra descriptors for the child: {child fd, parent fd}; the parent's stay open.
  std::vector<std::pair<int, int>> fds;
};

class SpawnedProcess {
 public:
  // Starts the process. Throws std::runtime_error when argv[0] is not executable or spawning fails.
  explicit SpawnedProcess(SpawnOptions options);
  ~SpawnedProcess();  // kill_group()
  SpawnedProcess(const SpawnedProcess&) = delete;
  SpawnedProcess& operator=(const SpawnedProcess&) = delete;

  pid_t pid() const noexcept { return pid_; }
  bool exited() const noexcept { return pid_ < 0; }
  // Waits up to `timeout` for the process to exit; its wait status (see WEXITSTATUS) or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  // Sends `sig` to the process (not its group); no-op after it exited.
  void signal(int sig);
  // SIGKILL to the whole group, then reaps the process. Idempotent.
  void kill_group();
  // The output file's content (last `bytes` bytes).
  std::string output_tail(size_t bytes = 4000) const;
  std::optional<int> status() const noexcept { return status_; }

 private:
  SpawnOptions options_;
  pid_t pid_ = -1;
  pid_t group_ = -1;
  int pidfd_ = -1;
  std::optional<int> status_;
};

// Where an executable is: $env_var when set, else `fallback`. Throws std::runtime_error naming
// both and what installs it when the file is not executable.
std::string require_executable(const char* env_var, const std::string& fallback, const std::string& what);

// A port of 127.0.0.1 that was free a moment ago, outside the kernel's ephemeral range
// (tests/support/free_port.hpp).
int free_tcp_port();
int free_udp_port();

// The whole content of a file ("" when it cannot be read).
std::string read_whole_file(const std::string& path);

}  // namespace reqbus::test
