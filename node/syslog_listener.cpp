#include "node/syslog_listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <random>

#include "bus/thread_name.hpp"
#include "ingest/log_parse.hpp"
#include "reqbus/error.hpp"

namespace reqbus::node {

SyslogListener::SyslogListener(std::string listen, Publish publish)
    : listen_(std::move(listen)), publish_(std::move(publish)) {}

SyslogListener::~SyslogListener() { stop(); }

void SyslogListener::start() {
  const size_t colon = listen_.rfind(':');
  if (colon == std::string::npos) throw Error(ErrorCode::invalid_argument, "syslog_listen: '" + listen_ + "' is not HOST:PORT");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  const std::string host = listen_.substr(0, colon);
  const std::string_view port_text = std::string_view(listen_).substr(colon + 1);
  int port = -1;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size()) port = -1;  // "5514x" is no port
  if (port < 0 || port > 65535 || inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    throw Error(ErrorCode::invalid_argument, "syslog_listen: '" + listen_ + "' is not IPv4-HOST:PORT");
  addr.sin_port = htons(uint16_t(port));
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const std::string why = std::strerror(errno);
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::transport, "syslog: cannot bind udp " + listen_ + ": " + why);
  }
  int rcvbuf = 8 << 20;  // absorb bursts: the kernel drops datagrams silently past its buffer
  setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  socklen_t len = sizeof(addr);
  getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = detail::named_thread("rb-syslog", [this] { run(); });
}

void SyslogListener::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void SyslogListener::run() {
  ingest::LineParser parser;
  // Datagrams carry no file offset: ids come from this listener's start and a sequence, so a
  // restarted listener never reuses the ids of the previous run.
  std::random_device rd;
  const uint64_t source = ingest::source_id("syslog:" + listen_ + ":" + std::to_string(rd()) + std::to_string(rd()));
  uint64_t sequence = 0;
  std::string buffer(65536, '\0');
  RequestLog log;
  while (!stop_.load()) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) continue;  // EAGAIN/EINTR; a datagram of 0 bytes is one too
    received_.fetch_add(1, std::memory_order_relaxed);
    std::string_view line;
    const std::string_view datagram(buffer.data(), size_t(n));
    std::string why;
    if (datagram.empty()) {
      why = "empty datagram";
    } else if (!ingest::unwrap_syslog(datagram, line)) {
      why = "not an RFC 3164 syslog datagram";
    } else {
      why = parser.parse(line, source, sequence++, log);
      if (why.empty() && publish_(log) != PublishStatus::ok) why = "bus refused the event";
    }
    if (!why.empty()) {
      rejected_.fetch_add(1, std::memory_order_relaxed);
      log_limit_.log(LogLevel::warn, "syslog: rejected a datagram: " + why);
    }
  }
}

}  // namespace reqbus::node
