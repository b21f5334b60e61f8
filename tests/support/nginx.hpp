#pragma once
// NginxServer: a real, private nginx (Debian's) for tests. It writes an nginx.conf into a fresh
// temporary directory — pid file, error log, every temp path inside it, `daemon off` with a
// master and one worker, `user root` when the test runs as root — listens on a free port of
// 127.0.0.1, and runs the caller's directives inside `http { }`. The destructor stops it (a
// graceful SIGQUIT, then SIGKILL to its process group) and removes the directory, also when the
// test failed.
// This file has no Boost dependency.
// Thread-safety: one object is used from one thread; port() and path() may be read from any.
#include <chrono>
#include <memory>
#include <string>

namespace reqbus::test {

class SpawnedProcess;

struct NginxOptions {
  // The nginx binary. Default: $REQBUS_NGINX when set, else Debian's /usr/sbin/nginx
  // (scripts/setup.sh installs it). A missing binary is an error, never a skipped test.
  std::string binary;
  // Directives placed inside `http { }`: log_format, server blocks, ... Every "@PORT@" is
  // replaced by the listen port and every "@DIR@" by the server's directory (no trailing /).
  std::string http_config;
  // How long nginx may take to accept connections. Default 20 s.
  std::chrono::milliseconds start_timeout{20000};
};

class NginxServer {
 public:
  // Starts nginx and waits until its port accepts connections. Throws std::runtime_error with
  // nginx's error log when it does not start (a bad config, a port taken meanwhile).
  explicit NginxServer(NginxOptions options);
  ~NginxServer();
  NginxServer(const NginxServer&) = delete;
  NginxServer& operator=(const NginxServer&) = delete;

  int port() const noexcept { return port_; }
  const std::string& directory() const noexcept { return dir_; }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string config() const;     // the nginx.conf it runs
  std::string error_log() const;  // its error.log (for failure messages)

  // Graceful stop: SIGQUIT lets the worker finish its requests and write their log lines.
  // True when nginx exited by itself before `deadline`; otherwise it is killed. Idempotent.
  bool stop(std::chrono::milliseconds deadline = std::chrono::milliseconds(10000));

 private:
  bool start_once(const std::string& binary, std::chrono::milliseconds timeout, std::string& why);

  NginxOptions options_;
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<SpawnedProcess> process_;
};

}  // namespace reqbus::test
