#include "tests/support/spawned_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "tests/support/free_port.hpp"

extern char** environ;

namespace reqbus::test {

SpawnedProcess::SpawnedProcess(SpawnOptions options) : options_(std::move(options)) {
  if (options_.argv.empty()) throw std::runtime_error("SpawnedProcess: empty argv");
  if (::access(options_.argv[0].c_str(), X_OK) != 0)
    throw std::runtime_error("SpawnedProcess: " + options_.argv[0] + " is not executable");
  std::vector<char*> args;
  for (auto& a : options_.argv) args.push_back(a.data());
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, options_.stdin_file.empty() ? "/dev/null" : options_.stdin_file.c_str(),
                                   O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, options_.output_file.empty() ? "/dev/null" : options_.output_file.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  // dup2 clears close-on-exec on the child's copy; the parent's descriptors are CLOEXEC and
  // numbered above the targets, so no target is clobbered before it is copied.
  for (const auto& [child_fd, parent_fd] : options_.fds) posix_spawn_file_actions_adddup2(&actions, parent_fd, child_fd);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: kill_group() reaches its children too
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("posix_spawn " + options_.argv[0] + ": " + std::strerror(rc));
  pid_ = pid;
  group_ = pid;
  pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));  // -1: wait() falls back to polling
}

SpawnedProcess::~SpawnedProcess() { kill_group(); }

std::optional<int> SpawnedProcess::wait(std::chrono::milliseconds timeout) {
  if (pid_ < 0) return status_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    const pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = st;
      pid_ = -1;
      if (pidfd_ >= 0) ::close(pidfd_);
      pidfd_ = -1;
      return status_;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    // The pidfd becomes readable when the process exits; without one, look again every 10 ms.
    pollfd p{pidfd_, POLLIN, 0};
    ::poll(pidfd_ >= 0 ? &p : nullptr, pidfd_ >= 0 ? 1 : 0, pidfd_ >= 0 ? int(left.count()) : std::min(10, int(left.count())));
  }
}

void SpawnedProcess::signal(int sig) {
  if (pid_ > 0) ::kill(pid_, sig);
}

void SpawnedProcess::kill_group() {
  if (group_ > 0) ::kill(-group_, SIGKILL);  // also reaches grandchildren left in the group
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int st = 0;
    if (::waitpid(pid_, &st, 0) == pid_) status_ = st;
    pid_ = -1;
  }
  group_ = -1;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
}

std::string SpawnedProcess::output_tail(size_t bytes) const {
  const std::string all = read_whole_file(options_.output_file);
  return all.size() > bytes ? "..." + all.substr(all.size() - bytes) : all;
}

std::string require_executable(const char* env_var, const std::string& fallback, const std::string& what) {
  const char* env = std::getenv(env_var);
  const std::string path = env && *env ? std::string(env) : fallback;
  if (::access(path.c_str(), X_OK) != 0)
    throw std::runtime_error(path + " is not installed or not executable (set $" + env_var + " or install " + what +
                             " with scripts/setup.sh): this test needs the real program and does not skip");
  return path;
}

int free_tcp_port() { return port_outside_ephemeral_range(SOCK_STREAM); }
int free_udp_port() { return port_outside_ephemeral_range(SOCK_DGRAM); }

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace reqbus::test
