#pragma once
// SyslogListener: takes nginx's `access_log syslog:server=HOST:PORT` datagrams (RFC 3164 over
// UDP, one log line each), parses the line (combined or nginx JSON) and publishes it.
// Bad datagrams are counted and logged at a limited rate; the listener keeps serving.
// Thread-safety: start()/stop() from one thread; stats() from any.
#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "reqbus/bus.hpp"
#include "reqbus/log.hpp"

namespace reqbus::node {

class SyslogListener {
 public:
  using Publish = std::function<PublishStatus(const RequestLog&)>;
  // `listen` is "HOST:PORT" (IPv4); port 0 picks a free one (see port()).
  SyslogListener(std::string listen, Publish publish);
  ~SyslogListener();
  void start();  // binds; throws Error{transport} when it cannot
  void stop();
  int port() const noexcept { return port_; }
  uint64_t received() const noexcept { return received_.load(); }
  uint64_t rejected() const noexcept { return rejected_.load(); }

 private:
  void run();
  std::string listen_;
  Publish publish_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0}, rejected_{0};
  RateLimiter log_limit_;
};

}  // namespace reqbus::node
