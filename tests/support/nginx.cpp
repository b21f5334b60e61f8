#include "tests/support/nginx.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "tests/support/spawned_process.hpp"

namespace reqbus::test {
namespace {

std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
  return text;
}

bool accepts_connections(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

NginxServer::NginxServer(NginxOptions options) : options_(std::move(options)) {
  const std::string binary = require_executable(
      "REQBUS_NGINX", options_.binary.empty() ? "/usr/sbin/nginx" : options_.binary, "Debian's nginx package");
  std::string tmpl = (std::filesystem::temp_directory_path() / "reqbus-nginx-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
  dir_ = tmpl;
  std::filesystem::create_directories(dir_ + "/tmp");
  // The port was free a moment ago; another process may take it before nginx binds it.
  std::string why;
  for (int attempt = 0; attempt < 3; ++attempt)
    if (start_once(binary, options_.start_timeout, why)) return;
  const std::string message = "nginx did not start: " + why;
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  throw std::runtime_error(message);
}

bool NginxServer::start_once(const std::string& binary, std::chrono::milliseconds timeout, std::string& why) {
  port_ = free_tcp_port();
  const std::string body = replace_all(replace_all(options_.http_config, "@PORT@", std::to_string(port_)), "@DIR@", dir_);
  std::string conf;
  conf += "daemon off;\nmaster_process on;\nworker_processes 1;\n";
  if (::geteuid() == 0) conf += "user root;\n";  // workers as nobody could not enter a 0700 temp dir
  conf += "pid " + dir_ + "/nginx.pid;\nerror_log " + dir_ + "/error.log info;\n";
  conf += "events { worker_connections 256; }\n";
  conf += "http {\n";
  for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"})
    conf += std::string("  ") + t + "_temp_path " + dir_ + "/tmp/" + t + ";\n";
  conf += "  access_log off;  # each server below names its own logs\n  default_type text/plain;\n";
  conf += body + "\n}\n";
  std::ofstream(dir_ + "/nginx.conf", std::ios::trunc) << conf;

  SpawnOptions so;
  // -e: the error log from the first message on (Debian's default, /var/log/nginx, is not ours).
  so.argv = {binary, "-p", dir_ + "/", "-e", dir_ + "/error.log", "-c", dir_ + "/nginx.conf"};
  so.output_file = dir_ + "/nginx.out";
  process_ = std::make_unique<SpawnedProcess>(so);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (accepts_connections(port_)) return true;
    // Waiting on the process doubles as the pause between attempts and notices an early exit.
    if (process_->wait(std::chrono::milliseconds(20))) {
      why = "nginx exited (status " + std::to_string(*process_->status()) + "): " + process_->output_tail() + "\n" +
            error_log() + "\nconfig:\n" + conf;
      process_.reset();
      return false;
    }
  }
  why = "port " + std::to_string(port_) + " not accepting connections after " + std::to_string(timeout.count()) +
        " ms:\n" + error_log();
  process_.reset();  // kills its group
  return false;
}

NginxServer::~NginxServer() {
  stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

std::string NginxServer::config() const { return read_whole_file(dir_ + "/nginx.conf"); }
std::string NginxServer::error_log() const { return read_whole_file(dir_ + "/error.log"); }

bool NginxServer::stop(std::chrono::milliseconds deadline) {
  if (!process_) return true;
  bool graceful = false;
  if (!process_->exited()) {
    process_->signal(SIGQUIT);
    const auto status = process_->wait(deadline);
    graceful = status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0;
  } else {
    graceful = process_->status() && WIFEXITED(*process_->status()) && WEXITSTATUS(*process_->status()) == 0;
  }
  process_.reset();  // SIGKILL to whatever is left of its group (a worker that hung)
  return graceful;
}

}  // namespace reqbus::test
