#pragma once
// PostgresServer: a real, private PostgreSQL server for tests and benchmarks. It runs initdb
// into a fresh temporary directory, starts the server with pg_ctl on a free port of 127.0.0.1
// (its Unix socket also lives in that directory), creates one database, and removes everything
// in its destructor. PostgreSQL refuses to run as root, so when the process is root the
// directory is given to the `postgres` user and initdb / pg_ctl run through
// `runuser -u postgres --`; as any other user they run directly.
// This file has no Boost dependency so that bench/ can compile it too.
// Thread-safety: one object is used from one thread at a time; conninfo() and port() may be
// read from any thread while no stop()/restart() runs.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace reqbus::test {

struct PostgresServerOptions {
  // Where initdb, pg_ctl and createdb live. Default: $REQBUS_PG_BIN when set, else Debian's
  // /usr/lib/postgresql/15/bin.
  std::string bin_dir;
  // The database created for the caller. Default: "reqbus_test".
  std::string database = "reqbus_test";
  // false (default, for tests): fsync, synchronous_commit and full_page_writes off — faster,
  // and a test cluster is thrown away anyway. true (benchmarks): PostgreSQL's durable defaults.
  bool durable = false;
  // The cluster's locale (initdb --locale): its collation is what text columns without their
  // own COLLATE compare by. Default "C"; benchmarks may ask for a language locale
  // ("en_US.UTF-8", which must be generated on the machine: Debian's locales package).
  std::string locale = "C";
  // How long initdb + start may take before the constructor gives up. Default: 120 s (the
  // machines running the sanitizer builds are slow).
  std::chrono::seconds start_timeout{120};
};

class PostgresServer {
 public:
  // Starts the server. Throws std::runtime_error with the command's output when the binaries
  // are missing or initdb / pg_ctl / createdb fail.
  explicit PostgresServer(PostgresServerOptions options = {});
  ~PostgresServer();  // stops the server (fast shutdown) and removes the directory
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // "host=127.0.0.1 port=<port> user=postgres dbname=<database> sslmode=disable"
  std::string conninfo() const;
  // The same for another database on this server (e.g. "postgres").
  std::string conninfo(const std::string& database) const;
  int port() const noexcept { return port_; }
  const std::string& directory() const noexcept { return dir_; }
  bool running() const noexcept { return running_; }

  // Stops the server (pg_ctl stop -m fast: open connections are terminated). No-op if stopped.
  void stop();
  // Starts it again on the same port and data directory. No-op if running.
  void start();
  void restart() { stop(); start(); }

  // Creates another empty database (createdb), e.g. one per test for isolation.
  void create_database(const std::string& name);

 private:
  // Runs argv (as the postgres user when `as_postgres` and we are root); throws with the
  // command's output when it exits non-zero.
  void run(const std::vector<std::string>& argv, bool as_postgres);

  PostgresServerOptions options_;
  std::string dir_;  // the temporary directory: data/, the socket, logs
  int port_ = 0;
  bool running_ = false;
};

// A lazily started server shared by every test in one test binary: startup costs seconds.
// Declare `BOOST_TEST_GLOBAL_FIXTURE(reqbus::test::PostgresFixture);` in the test file; each
// test then calls PostgresFixture::server(). When the server could not start, server() throws
// the reason, so every test that needs it fails with a clear message.
struct PostgresFixture {
  PostgresFixture();
  ~PostgresFixture();
  static PostgresServer& server();
};

}  // namespace reqbus::test
