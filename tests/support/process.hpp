#pragma once
// Process: a child program started with posix_spawn for end-to-end tests. Its stdout and stderr
// are captured through pipes by a reader thread (readable at any time while it runs), its stdin
// is a pipe the test writes to, and a waiter thread reaps it the moment it exits — so tests wait
// on conditions (output seen, exit) with a deadline instead of sleeping.
// The destructor kills (SIGKILL) a child that is still running and reaps it.
// Thread-safety: all methods are safe from any thread.
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace reqbus::test {

struct ProcessOptions {
  std::vector<std::string> extra_env;  // "NAME=value", added to (and overriding) this environment
  std::string cwd;                     // "" = this process's working directory
  bool pipe_stdin = true;              // false: the child reads /dev/null
};

class Process {
 public:
  // Starts `program` (a path) with `args` (without argv[0]); throws std::runtime_error when it
  // cannot be started.
  Process(const std::string& program, const std::vector<std::string>& args, ProcessOptions options = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const noexcept { return pid_; }

  // Writes all of `data` to the child's stdin; false if the pipe is closed (the child exited).
  bool write_stdin(std::string_view data);
  void close_stdin();

  // Sends `sig` if the child is still running (never to a reaped, possibly reused pid).
  void signal(int sig);
  void kill() { signal(9); }

  // Waits up to `timeout` for the child to exit (and its output to be fully read). Returns the
  // exit status, or 128 + signal number when a signal ended it; nullopt at the deadline.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running() const;

  // Everything captured so far.
  std::string out() const;
  std::string err() const;

  // Waits up to `timeout` until pred(stdout, stderr) holds (re-checked on every chunk of output
  // and at exit). Returns the last value of pred.
  bool wait_for_output(const std::function<bool(const std::string& out, const std::string& err)>& pred,
                       std::chrono::milliseconds timeout);
  // Shorthand: until stdout (or stderr) contains `needle`.
  bool wait_for_stdout(std::string_view needle, std::chrono::milliseconds timeout);
  bool wait_for_stderr(std::string_view needle, std::chrono::milliseconds timeout);

  // The command line, for messages.
  const std::string& describe() const noexcept { return command_; }

 private:
  void read_loop();
  void wait_loop();

  std::string command_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1, stdout_fd_ = -1, stderr_fd_ = -1;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_, err_;        // guarded by mu_
  bool exited_ = false;          // guarded by mu_: reaped, pid no longer ours
  bool output_closed_ = false;   // guarded by mu_: both pipes reached EOF
  int status_ = -1;              // guarded by mu_
  std::mutex stdin_mu_;
  std::thread reader_, waiter_;
};

// $REQBUS_TEST_BINARY_DIR/reqbus (ctest sets the variable to the build directory); falls back to
// ../reqbus relative to the test executable's directory.
std::string reqbus_binary();

// The lines of `text` (without their '\n'); a last line without '\n' is included.
std::vector<std::string> split_lines(std::string_view text);

}  // namespace reqbus::test
