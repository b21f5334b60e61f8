#pragma once
// bind_server: binds a cpp-httplib server's listening socket the way a loaded web server needs
// it, for listen_after_bind(). Used by examples/web_server, bench/web_bench, `reqbus demo` and
// the node's HTTP API (node/http_api.cpp).
//
// - SO_REUSEADDR instead of httplib's default SO_REUSEPORT, which lets a second server bind the
//   same port and silently take part of its connections: a port in use is an error here (and a
//   quick restart over TIME_WAIT connections still works).
// - A full accept backlog. httplib 0.11 (Debian 12, compiled into libcpp-httplib, so its
//   CPPHTTPLIB_LISTEN_BACKLOG cannot be changed from here) listens with a backlog of 5. Under
//   load — 32 clients reconnecting after every 5 keep-alive requests — the kernel then drops
//   SYNs ("SYNs to LISTEN sockets dropped" in `netstat -s`) and those clients wait for a
//   retransmit, 200 ms to 1 s: web_bench's p99 swung between 5 ms and 850 ms from run to run.
//   listen() on a socket that already listens only changes its backlog (Linux), so we call it
//   again after the bind, with SOMAXCONN (the kernel caps it at net.core.somaxconn).
//
// Thread-safety: call before listen_after_bind(), from the thread that set the server up.
#include <httplib.h>
#include <sys/socket.h>

#include <memory>
#include <string>

namespace reqbus::examples {

// Binds `server` to host:port (port 0: any free port). Returns the bound port, or -1.
inline int bind_server(httplib::Server& server, const std::string& host, int port) {
  // The server keeps the callback: it must not point into this frame.
  auto listening = std::make_shared<socket_t>(INVALID_SOCKET);
  server.set_socket_options([listening](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    *listening = sock;  // httplib tries addresses in turn; the last one is the one that bound
  });
  const int bound = port == 0 ? server.bind_to_any_port(host) : (server.bind_to_port(host, port) ? port : -1);
  if (bound > 0 && *listening != INVALID_SOCKET) ::listen(*listening, SOMAXCONN);
  return bound > 0 ? bound : -1;
}

}  // namespace reqbus::examples
