#pragma once
// What the `reqbus` program's end-to-end tests share (program_cli_test, program_ingest_test,
// program_serve_test): running the program, a `reqbus serve` node on loopback ports (Served),
// read-only SQLite queries, combined log lines, ingest's counts line, and a listener that hangs
// up on every connection.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <httplib.h>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include "app/ingest_input.hpp"
#include "app/terminal_text.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/poll.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace reqbus::test {

using namespace std::chrono_literals;

struct Result {
  std::optional<int> status;
  std::string out, err;
};

inline Result run(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) {
  Process p(reqbus_binary(), args);
  p.close_stdin();
  Result r;
  r.status = p.wait(timeout);
  r.out = p.out();
  r.err = p.err();
  return r;
}

inline bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

inline std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

// A failure the user made: exactly one line on stderr that names the problem; non-zero exit.
inline void expect_one_line_error(const std::vector<std::string>& args, const std::string& names) {
  const Result r = run(args);
  BOOST_TEST_CONTEXT("reqbus " << joined(args) << "\nstderr: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status != 0);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    BOOST_TEST((!r.err.empty() && r.err.back() == '\n'));
    BOOST_TEST(contains(r.err, names));
  }
}

inline void write_file(const std::string& path, const std::string& text, std::ios::openmode mode = std::ios::trunc) {
  std::ofstream out(path, std::ios::binary | std::ios::out | mode);
  out << text;
  BOOST_REQUIRE(out.good());
}

// Read-only queries on a SQLite file.
class Db {
 public:
  explicit Db(const std::string& path) {
    BOOST_REQUIRE_MESSAGE(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK,
                          "cannot open " << path);
  }
  ~Db() { sqlite3_close(db_); }
  std::vector<std::vector<std::string>> rows(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, sqlite3_errmsg(db_));
    std::vector<std::vector<std::string>> out;
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::vector<std::string> row;
      for (int i = 0; i < sqlite3_column_count(st); ++i) {
        const auto* t = sqlite3_column_text(st, i);
        row.emplace_back(t ? reinterpret_cast<const char*>(t) : "");
      }
      out.push_back(std::move(row));
    }
    sqlite3_finalize(st);
    return out;
  }
  int64_t scalar(const std::string& sql) { return std::stoll(rows(sql).at(0).at(0)); }

 private:
  sqlite3* db_ = nullptr;
};

// `reqbus serve` on ephemeral loopback ports, learnt from what it prints.
class Served {
 public:
  // `config`: TOML for --config ("" = none). `http`: its HTTP address (a fixed port, for a node
  // started again where another was).
  Served(const TempDir& dir, const std::string& name, const std::string& config = "",
         const std::string& http = "127.0.0.1:0")
      : db(dir.sub(name + ".db")), process(reqbus_binary(), serve_args(dir, name, db, config, http)) {
    static const std::regex dashboard(R"(dashboard: http://127\.0\.0\.1:(\d+)/)");
    static const std::regex bus(R"(bus: (tcp://127\.0\.0\.1:\d+))");
    std::smatch m;
    BOOST_REQUIRE_MESSAGE(process.wait_for_stdout("dashboard:", 30s), "serve did not start: " << process.err());
    const std::string out = process.out();
    BOOST_REQUIRE(std::regex_search(out, m, dashboard));
    http_port = std::stoi(m[1]);
    BOOST_REQUIRE(std::regex_search(out, m, bus));
    endpoint = m[1];
    httplib::Client c = client();
    BOOST_REQUIRE(poll_until([&] {
      auto res = c.Get("/healthz");
      return res && res->status == 200;
    }, 20s));
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", http_port);
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(10, 0);
    return c;
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(http_port); }
  uint64_t live_total() const {
    auto c = client();
    auto res = c.Get("/api/stats");
    if (!res || res->status != 200) return 0;
    return nlohmann::json::parse(res->body).value("total", uint64_t(0));
  }
  // A counter from /metrics (its unlabelled line), or 0.
  uint64_t metric(const std::string& name) const {
    auto c = client();
    auto res = c.Get("/metrics");
    if (!res || res->status != 200) return 0;
    std::istringstream in(res->body);
    for (std::string line; std::getline(in, line);)
      if (line.rfind(name + " ", 0) == 0) return std::stoull(line.substr(name.size() + 1));
    return 0;
  }
  // SIGTERM: a graceful shutdown that must exit 0.
  void stop() {
    process.signal(SIGTERM);
    const auto status = process.wait(60s);
    BOOST_REQUIRE_MESSAGE(status.has_value(), "serve did not stop: " << process.out());
    BOOST_TEST(*status == 0, process.err());
    BOOST_TEST(contains(process.out(), "shutting down"));
  }

  std::string db;
  Process process;
  int http_port = 0;
  std::string endpoint;

 private:
  static std::vector<std::string> serve_args(const TempDir& dir, const std::string& name, const std::string& db,
                                             const std::string& config, const std::string& http) {
    std::vector<std::string> args{"serve", "--node-id", name, "--store", "sqlite:" + db, "--bind", "tcp://127.0.0.1:*",
                                  "--insecure", "--http", http, "--spool-dir", dir.sub(name + "-spool")};
    if (!config.empty()) {
      const std::string file = dir.sub(name + ".toml");
      std::ofstream(file) << config;
      args.insert(args.end(), {"--config", file});
    }
    return args;
  }
};

// A combined-format line.
inline std::string combined(const std::string& ip, const std::string& path, int status, int second = 0) {
  char time[64];
  std::snprintf(time, sizeof(time), "14/Nov/2023:22:13:%02d +0000", second % 60);
  return ip + " - - [" + time + "] \"GET " + path + "?utm=x HTTP/1.1\" " + std::to_string(status) +
         " 512 \"https://ref.example/\" \"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\" 0.012\n";
}

// Lines from..to-1 of a log: combined(ip, prefix + i, status, i) each.
inline std::string combined_lines(const std::string& ip, const std::string& prefix, int from, int to, int status = 200) {
  std::string lines;
  for (int i = from; i < to; ++i) lines += combined(ip, prefix + std::to_string(i), status, i);
  return lines;
}

struct Counts {
  uint64_t lines = 0, accepted = 0, rejected = 0, unparsable = 0;
  uint64_t parsed = 0;   // a dry run's
  bool dry_run = false;  // the line was a dry run's, which says nothing of a node
};

// ingest's final line: "reqbus ingest: N lines (R/s), A accepted, J rejected by the node, U unparsable",
// or a dry run's "reqbus ingest (dry run): N lines (R/s), P parsed, U unparsable; nothing published".
inline Counts ingest_counts(const std::string& err) {
  static const std::regex final_line(
      R"(reqbus ingest: (\d+) lines \([^)]*\), (\d+) accepted, (\d+) rejected by the node, (\d+) unparsable\n$)");
  static const std::regex dry_run_line(
      R"(reqbus ingest \(dry run\): (\d+) lines \([^)]*\), (\d+) parsed, (\d+) unparsable; nothing published\n$)");
  std::smatch m;
  Counts c;
  if (std::regex_search(err, m, dry_run_line)) {
    c.dry_run = true;
    c.lines = std::stoull(m[1]);
    c.parsed = std::stoull(m[2]);
    c.unparsable = std::stoull(m[3]);
    return c;
  }
  BOOST_REQUIRE_MESSAGE(std::regex_search(err, m, final_line), "no final count line in: " << err);
  c.lines = std::stoull(m[1]);
  c.accepted = std::stoull(m[2]);
  c.rejected = std::stoull(m[3]);
  c.unparsable = std::stoull(m[4]);
  return c;
}

// Stops a `reqbus ingest --follow` with SIGTERM (a follower exits 0) and returns its counts.
inline Counts stop_follower(Process& follow) {
  follow.signal(SIGTERM);
  const auto status = follow.wait(20s);
  BOOST_REQUIRE(status.has_value());
  BOOST_TEST(*status == 0);
  return ingest_counts(follow.err());
}

// Waits (up to 30 s) until the node's dashboard has counted `n` events; fails naming what it has
// and the stderr of `sender`, the process that sends them.
inline void await_total(const Served& node, uint64_t n, const Process& sender) {
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == n; }, 30s),
                        "live total " << node.live_total() << ", expected " << n << "; " << sender.err());
}

// Stops the node and checks that its store holds `n` rows, each request id once.
inline void expect_stored_once(Served& node, int64_t n) {
  node.stop();
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests") == n);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT request_id) FROM requests") == n);
}

// "path status" of every NDJSON line of a tail's stdout whose path starts with `prefix`.
inline std::multiset<std::string> tailed(const std::string& out, const std::string& prefix) {
  std::multiset<std::string> got;
  // Only complete lines: the pipe may have delivered part of the last one so far.
  for (const auto& line : split_lines(std::string_view(out).substr(0, out.rfind('\n') + 1))) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    BOOST_REQUIRE_MESSAGE(j.is_object(), "tail printed a line that is not a JSON object: " << line);
    const std::string path = j.value("path", std::string());
    if (path.rfind(prefix, 0) == 0) got.insert(path + " " + std::to_string(j.value("status_code", 0)));
  }
  return got;
}

// A loopback listener that accepts every connection and closes it at once: a node that cannot
// be reached, whose tries the test can count.
class HangingUpNode {
 public:
  HangingUpNode() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    BOOST_REQUIRE(fd_ >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    BOOST_REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), len) == 0);
    BOOST_REQUIRE(::listen(fd_, 16) == 0);
    BOOST_REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] {
      while (!done_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 50) <= 0) continue;
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        ::close(c);
        ++connections_;
      }
    });
  }
  ~HangingUpNode() {
    done_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_; }

 private:
  int fd_ = -1, port_ = 0;
  std::atomic<bool> done_{false};
  std::atomic<int> connections_{0};
  std::thread thread_;
};

}  // namespace reqbus::test
