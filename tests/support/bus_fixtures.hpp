#pragma once
// Shared fixtures for the bus tests: sample events, a thread-safe collector for handler-mode
// subscriptions, a latch to hold a handler still, a hand-built wire frame (written from
// docs/WIRE.md with msgpack-c directly, not with bus/frame.cpp, so the tests check the
// documented layout), a raw cppzmq PUB "peer", and a child process speaking a line protocol.
// Thread-safety: Collector and Latch are thread-safe; the rest belong to one test thread.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <future>
#include <msgpack.hpp>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "reqbus/bus.hpp"
#include "reqbus/codec.hpp"

extern char** environ;

// Lets Boost.Test print these in failed assertions.
namespace reqbus {
inline std::ostream& operator<<(std::ostream& os, PublishStatus s) { return os << to_string(s); }
inline std::ostream& operator<<(std::ostream& os, Overflow o) { return os << to_string(o); }
inline std::ostream& operator<<(std::ostream& os, MessageKind k) { return os << to_string(k); }
namespace codec {
inline std::ostream& operator<<(std::ostream& os, DecodeError e) { return os << to_string(e); }
inline std::ostream& operator<<(std::ostream& os, const std::optional<DecodeError>& e) {
  return e ? os << *e : os << "ok";
}
}  // namespace codec
}  // namespace reqbus

namespace reqbus::test {

using namespace std::chrono_literals;

inline RequestLog sample_log(std::string path, uint32_t n = 0, uint16_t status = 200) {
  RequestLog r;
  r.method = "GET";
  r.path = std::move(path);
  r.status_code = status;
  r.duration_ms = 1.25;
  r.user_agent = "Mozilla/5.0";
  r.remote_ip = "127.0.0.1";
  r.session_page_views = n;
  return r;
}

// Collects what a handler-mode subscription delivers; waits for a count with a timeout.
class Collector {
 public:
  Handler handler() {
    return [this](const Message& m) {
      std::lock_guard lock(mu_);
      messages_.push_back(m);
      cv_.notify_all();
    };
  }
  bool wait_for_count(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  // Waits until `pred` holds for some delivered message.
  bool wait_for(const std::function<bool(const Message&)>& pred, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] {
      for (const auto& m : messages_)
        if (pred(m)) return true;
      return false;
    });
  }
  std::vector<Message> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return messages_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Message> messages_;
};

// A one-shot gate: wait() blocks until open().
class Latch {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Opens a latch when it goes out of scope: declared after the subscription whose handler waits
// on the latch, it releases the handler before the subscription joins it, even when a
// BOOST_REQUIRE ends the test early (otherwise the test hangs instead of failing).
struct OpenOnExit {
  std::shared_ptr<Latch> latch;
  ~OpenOnExit() { latch->open(); }
};

// --- the wire, from docs/WIRE.md ---------------------------------------------------------

inline std::string envelope(std::string_view topic, char scope = 'G') {
  std::string key(topic);
  key.push_back('\0');
  key.push_back(scope);
  return key;
}

// msgpack [wire_version, node_id, epoch, first_seq, [records...]]; records as codec::append
// wrote them.
inline std::string frame_payload(const std::vector<std::string>& records, std::string_view node,
                                 uint64_t epoch, uint64_t first_seq, uint32_t wire_version = 1) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_array(5);
  p.pack_uint32(wire_version);
  p.pack_str(uint32_t(node.size()));
  p.pack_str_body(node.data(), uint32_t(node.size()));
  p.pack_uint64(epoch);
  p.pack_uint64(first_seq);
  p.pack_array(uint32_t(records.size()));
  std::string out(buf.data(), buf.size());
  for (const auto& r : records) out += r;
  return out;
}

inline std::string record_of(const RequestLog& r) {
  std::string out;
  codec::append(out, r);
  return out;
}

// A frame of `count` valid RequestLogs with paths "<path_prefix><seq>".
inline std::string valid_frame(std::string_view node, uint64_t epoch, uint64_t first_seq,
                               uint32_t count, const std::string& path_prefix = "/remote/") {
  std::vector<std::string> records;
  for (uint32_t i = 0; i < count; ++i) {
    RequestLog r = sample_log(path_prefix + std::to_string(first_seq + i));
    r.request_id = "id-" + std::to_string(first_seq + i);
    r.inserted_at = 1'700'000'000'000'000;
    r.node_id = std::string(node);
    r.seq = first_seq + i;
    records.push_back(record_of(r));
  }
  return frame_payload(records, node, epoch, first_seq);
}

// A raw ZeroMQ PUB socket playing a peer node: the bus under test connects to it.
class RawPeer {
 public:
  RawPeer() : socket_(context_, zmq::socket_type::pub) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:*");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }
  const std::string& endpoint() const { return endpoint_; }
  void send(const std::vector<std::string>& parts) {
    for (size_t i = 0; i < parts.size(); ++i) {
      zmq::message_t m(parts[i].data(), parts[i].size());
      (void)socket_.send(m, i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  void send(const std::string& key, const std::string& body) { send({key, body}); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t socket_;
  std::string endpoint_;
};

// --- child processes ---------------------------------------------------------------------

// Where the helper programs are: $REQBUS_TEST_BINARY_DIR/tests (set by ctest), else beside
// this test binary.
inline std::string helper_program(const std::string& name) {
  if (const char* dir = std::getenv("REQBUS_TEST_BINARY_DIR"); dir && *dir) {
    const auto path = std::filesystem::path(dir) / "tests" / name;
    if (std::filesystem::exists(path)) return path.string();
  }
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / name).string();
}

// A child process with its stdin and stdout on pipes, spoken to line by line. The destructor
// kills it if it is still running.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
    if (rc != 0) {
      pid_ = -1;
      throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::to_string(rc));
    }
    signal(SIGPIPE, SIG_IGN);  // a dead child must fail the test, not kill it
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() {
    if (to_child_ >= 0) ::close(to_child_);
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (from_child_ >= 0) ::close(from_child_);
  }

  void send_line(const std::string& line) {
    const std::string data = line + "\n";
    if (::write(to_child_, data.data(), data.size()) != ssize_t(data.size()))
      throw std::runtime_error("child stdin closed");
  }
  // The next line the child prints, or nullopt at EOF or after `timeout`.
  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd pfd{from_child_, POLLIN, 0};
      if (::poll(&pfd, 1, int(left.count())) <= 0) continue;
      char chunk[4096];
      const ssize_t n = ::read(from_child_, chunk, sizeof(chunk));
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, size_t(n));
    }
  }
  // Sends a command and returns the reply line (throws if none comes).
  std::string ask(const std::string& command, std::chrono::milliseconds timeout = 30s) {
    send_line(command);
    auto reply = read_line(timeout);
    if (!reply) throw std::runtime_error("no reply from child to '" + command + "'");
    return *reply;
  }
  // Closes the child's stdin and waits for it to exit; returns its exit status or -1.
  int wait_exit(std::chrono::milliseconds timeout) {
    if (to_child_ >= 0) {
      ::close(to_child_);
      to_child_ = -1;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      // Waiting for a process has no portable fd; read_line drains its output meanwhile.
      (void)read_line(10ms);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  bool exited_ = false;
  std::string buffer_;
};

}  // namespace reqbus::test
