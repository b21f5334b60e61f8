#include "tests/support/process.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

extern char** environ;

namespace reqbus::test {
namespace {

void make_pipe(int fds[2]) {
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

Process::Process(const std::string& program, const std::vector<std::string>& args, ProcessOptions options) {
  // A child that exits while we write to its stdin must give EPIPE, not kill the test.
  ::signal(SIGPIPE, SIG_IGN);
  command_ = program;
  for (const auto& a : args) command_ += " " + a;

  int in[2] = {-1, -1}, out[2], err[2];
  if (options.pipe_stdin) make_pipe(in);
  make_pipe(out);
  make_pipe(err);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (options.pipe_stdin) posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  else posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());

  // The child starts with no blocked signals and default dispositions, whatever the test did.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string name = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& x : options.extra_env) overridden |= x.substr(0, x.find('=')) == name;
    if (!overridden) env_strings.push_back(entry);
  }
  for (const auto& x : options.extra_env) env_strings.push_back(x);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);

  std::vector<std::string> argv_strings{program};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  const int rc = ::posix_spawn(&pid_, program.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (options.pipe_stdin) close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  if (rc != 0) {
    close_fd(in[1]);
    close_fd(out[0]);
    close_fd(err[0]);
    throw std::runtime_error("cannot start " + program + ": " + std::strerror(rc));
  }
  stdin_fd_ = in[1];
  stdout_fd_ = out[0];
  stderr_fd_ = err[0];
  reader_ = std::thread([this] { read_loop(); });
  waiter_ = std::thread([this] { wait_loop(); });
}

Process::~Process() {
  kill();
  waiter_.join();
  reader_.join();
  close_stdin();
  close_fd(stdout_fd_);
  close_fd(stderr_fd_);
}

void Process::read_loop() {
  pollfd fds[2] = {{stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}};
  int open = 2;
  char buf[65536];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard lock(mu_);
      if (n <= 0) {
        fds[i].fd = -1;  // poll ignores negative fds
        --open;
      } else {
        (i == 0 ? out_ : err_).append(buf, size_t(n));
      }
      cv_.notify_all();
    }
  }
  std::lock_guard lock(mu_);
  output_closed_ = true;
  cv_.notify_all();
}

void Process::wait_loop() {
  // Learn of the exit without reaping, so signal() never targets a pid the system reused.
  siginfo_t info{};
  while (::waitid(P_PID, id_t(pid_), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
  std::lock_guard lock(mu_);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
  exited_ = true;
  cv_.notify_all();
}

bool Process::write_stdin(std::string_view data) {
  std::lock_guard lock(stdin_mu_);
  while (!data.empty()) {
    if (stdin_fd_ < 0) return false;
    const ssize_t n = ::write(stdin_fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(size_t(n));
  }
  return true;
}

void Process::close_stdin() {
  std::lock_guard lock(stdin_mu_);
  close_fd(stdin_fd_);
}

void Process::signal(int sig) {
  std::lock_guard lock(mu_);
  if (!exited_) ::kill(pid_, sig);
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  cv_.wait_until(lock, deadline, [this] { return exited_ && output_closed_; });
  if (!exited_) return std::nullopt;
  return status_;
}

bool Process::running() const {
  std::lock_guard lock(mu_);
  return !exited_;
}

std::string Process::out() const {
  std::lock_guard lock(mu_);
  return out_;
}

std::string Process::err() const {
  std::lock_guard lock(mu_);
  return err_;
}

bool Process::wait_for_output(const std::function<bool(const std::string&, const std::string&)>& pred,
                              std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  return cv_.wait_until(lock, deadline, [&] { return pred(out_, err_) || (exited_ && output_closed_); }) &&
         pred(out_, err_);
}

bool Process::wait_for_stdout(std::string_view needle, std::chrono::milliseconds timeout) {
  return wait_for_output([&](const std::string& o, const std::string&) { return o.find(needle) != std::string::npos; },
                         timeout);
}

bool Process::wait_for_stderr(std::string_view needle, std::chrono::milliseconds timeout) {
  return wait_for_output([&](const std::string&, const std::string& e) { return e.find(needle) != std::string::npos; },
                         timeout);
}

std::string reqbus_binary() {
  if (const char* dir = std::getenv("REQBUS_TEST_BINARY_DIR"); dir && *dir)
    return (std::filesystem::path(dir) / "reqbus").string();
  // Run by hand from <build>/tests: the program is <build>/reqbus.
  std::error_code ec;
  const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) return (self.parent_path().parent_path() / "reqbus").string();
  return "reqbus";
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    lines.emplace_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return lines;
}

}  // namespace reqbus::test
