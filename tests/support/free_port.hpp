#pragma once
// port_outside_ephemeral_range: a port of 127.0.0.1 for a server a test starts, free when it
// was probed, and outside the kernel's ephemeral range (net.ipv4.ip_local_port_range), so the
// kernel never hands it out in the meantime as the local port of some outgoing connection (the
// other ctest job's, or a peer reconnecting to this very port while its server is down, which
// can connect the socket to itself). Another process picking the same way may still take it:
// a caller that can, retries on "address in use" with a new port.
// Header-only, no Boost: bench/ compiles postgres_server.cpp on its own.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

namespace reqbus::test {

namespace free_port_detail {

inline bool can_bind(int type, int port) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(uint16_t(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// What the kernel gives out with bind(port 0): the old way, when no range is left outside.
inline int kernel_port(int type) {
  const int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("cannot find a free port: " + why);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace free_port_detail

// `type`: SOCK_STREAM or SOCK_DGRAM. Throws std::runtime_error when no port can be found.
inline int port_outside_ephemeral_range(int type) {
  int ephemeral_low = 32768, ephemeral_high = 60999;  // Linux's default range
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low >> ephemeral_high;
  // 20000 up to the range; else above it; else (a range of nearly everything) what bind gives.
  int low = 20000, high = ephemeral_low - 1;
  if (high - low < 1000) low = ephemeral_high + 1, high = 65535;
  if (high - low < 1000) return free_port_detail::kernel_port(type);
  // A different start per process and per call: two test binaries rarely probe the same ports.
  static std::atomic<unsigned> calls{0};
  const unsigned span = unsigned(high - low + 1);
  const unsigned start = (unsigned(::getpid()) * 2654435761u + calls.fetch_add(1) * 7919u) % span;
  for (unsigned i = 0; i < 500; ++i) {
    const int port = low + int((start + i) % span);
    if (free_port_detail::can_bind(type, port)) return port;
  }
  throw std::runtime_error("no free port in " + std::to_string(low) + ".." + std::to_string(high));
}

}  // namespace reqbus::test
