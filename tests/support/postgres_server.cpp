#include "tests/support/postgres_server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "tests/support/free_port.hpp"

extern char** environ;

namespace reqbus::test {
namespace {

std::string tail_of_file(const std::string& path, size_t max_bytes = 4000) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > max_bytes ? "..." + text.substr(text.size() - max_bytes) : text;
}

}  // namespace

PostgresServer::PostgresServer(PostgresServerOptions options) : options_(std::move(options)) {
  if (options_.bin_dir.empty()) {
    const char* env = std::getenv("REQBUS_PG_BIN");
    options_.bin_dir = env && *env ? env : "/usr/lib/postgresql/15/bin";
  }
  for (const char* tool : {"initdb", "pg_ctl", "postgres", "createdb"}) {
    std::string path = options_.bin_dir + "/" + tool;
    if (::access(path.c_str(), X_OK) != 0) {
      throw std::runtime_error("PostgreSQL server binaries not found: " + path +
                               " is missing. Install Debian's postgresql-15 (.ci/run does) or "
                               "set REQBUS_PG_BIN to the directory holding initdb and pg_ctl.");
    }
  }
  char tmpl[] = "/tmp/reqbus-pg-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  dir_ = tmpl;
  try {
    if (::geteuid() == 0) {
      passwd* pw = ::getpwnam("postgres");
      if (pw == nullptr) {
        throw std::runtime_error(
            "running as root, but there is no `postgres` user to run the test server as "
            "(PostgreSQL refuses to run as root); install postgresql-15");
      }
      if (::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        throw std::runtime_error("chown " + dir_ + ": " + std::strerror(errno));
      }
    }
    run({options_.bin_dir + "/initdb", "-D", dir_ + "/data", "-U", "postgres", "-A", "trust",
         "-E", "UTF8", "--locale=" + options_.locale, "-N"},
        true);
    // Appending keeps the file's owner (postgres) even when we are root.
    std::ofstream conf(dir_ + "/data/postgresql.conf", std::ios::app);
    conf << "\n# reqbus test server\n"
         << "listen_addresses = '127.0.0.1'\n"
         << "unix_socket_directories = '" << dir_ << "'\n"
         << "max_connections = 60\n";
    if (!options_.durable) {
      conf << "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n";
    }
    conf.close();
    if (!conf) throw std::runtime_error("cannot write " + dir_ + "/data/postgresql.conf");
    // The port was free a moment ago; another process may take it before the server binds it.
    for (int attempt = 1;; ++attempt) {
      port_ = port_outside_ephemeral_range(SOCK_STREAM);
      std::ofstream port_conf(dir_ + "/data/postgresql.conf", std::ios::app);
      port_conf << "port = " << port_ << "\n";  // the last setting of a parameter wins
      port_conf.close();
      if (!port_conf) throw std::runtime_error("cannot write " + dir_ + "/data/postgresql.conf");
      // Only what this attempt added to the server log tells why it failed (pg_ctl -l appends).
      std::error_code ec;
      const auto log_before = std::filesystem::file_size(dir_ + "/server.log", ec);
      try {
        start();
        break;
      } catch (const std::runtime_error& e) {
        std::ifstream log(dir_ + "/server.log");
        if (!ec) log.seekg(std::streamoff(log_before));
        const std::string added((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
        if (attempt == 3 || added.find("Address already in use") == std::string::npos)
          throw std::runtime_error("attempt " + std::to_string(attempt) + ", port " + std::to_string(port_) + ": " + e.what());
      }
    }
    create_database(options_.database);
  } catch (...) {
    try {
      stop();
    } catch (...) {
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    throw;
  }
}

PostgresServer::~PostgresServer() {
  try {
    stop();
  } catch (...) {
    // Best effort: an immediate stop so no server outlives the test binary.
    try {
      run({options_.bin_dir + "/pg_ctl", "-D", dir_ + "/data", "-m", "immediate", "-w", "stop"},
          true);
    } catch (...) {
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

std::string PostgresServer::conninfo() const { return conninfo(options_.database); }

std::string PostgresServer::conninfo(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=postgres dbname=" + database +
         " sslmode=disable";
}

void PostgresServer::stop() {
  if (!running_) return;
  run({options_.bin_dir + "/pg_ctl", "-D", dir_ + "/data", "-m", "fast", "-w", "-t",
       std::to_string(options_.start_timeout.count()), "stop"},
      true);
  running_ = false;
}

void PostgresServer::start() {
  if (running_) return;
  run({options_.bin_dir + "/pg_ctl", "-D", dir_ + "/data", "-l", dir_ + "/server.log", "-w",
       "-t", std::to_string(options_.start_timeout.count()), "start"},
      true);
  running_ = true;
}

void PostgresServer::create_database(const std::string& name) {
  run({options_.bin_dir + "/createdb", "-h", "127.0.0.1", "-p", std::to_string(port_), "-U",
       "postgres", name},
      false);
}

void PostgresServer::run(const std::vector<std::string>& command, bool as_postgres) {
  std::vector<std::string> argv;
  if (as_postgres && ::geteuid() == 0) argv = {"/usr/sbin/runuser", "-u", "postgres", "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);

  const std::string output = dir_ + "/command.log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  std::string line;
  for (auto& a : argv) line += (line.empty() ? "" : " ") + a;
  if (rc != 0) throw std::runtime_error("cannot start `" + line + "`: " + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error("`" + line + "` failed (status " + std::to_string(status) +
                             "):\n" + tail_of_file(output) + "\nserver log:\n" +
                             tail_of_file(dir_ + "/server.log"));
  }
}

namespace {
std::unique_ptr<PostgresServer> g_server;
std::string g_start_error;
}  // namespace

PostgresFixture::PostgresFixture() {
  try {
    g_server = std::make_unique<PostgresServer>();
  } catch (const std::exception& e) {
    g_start_error = e.what();
  }
}

PostgresFixture::~PostgresFixture() { g_server.reset(); }

PostgresServer& PostgresFixture::server() {
  if (!g_server) {
    throw std::runtime_error("the test PostgreSQL server is not running: " +
                             (g_start_error.empty() ? std::string("PostgresFixture was not "
                                                                  "declared as a global fixture")
                                                    : g_start_error));
  }
  return *g_server;
}

}  // namespace reqbus::test
