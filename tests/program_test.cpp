// The `reqbus` program end to end, as separate processes: --help, bad flags and bad config (one
// line on stderr, non-zero exit), `demo` (the database holds the rows it reported), and
// `serve` + `ingest` + `tail` on loopback (each accepted line stored exactly once, also when
// ingested twice, also from a copytruncate copy; `ingest --follow` across a rotation, also when the writer goes on appending
// to the renamed file; lines the node's bus refused are resent; SIGTERM, directories and read
// errors; ids independent of how the path is spelt; `tail | head` exits; tail prints analytics
// events; serve's close summary and no-spool warning; library and CLI11 errors named by flag;
// demo refusing a --db that is not its own; top without escapes on a dumb terminal).
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

using namespace reqbus::test;
using namespace std::chrono_literals;

namespace {

struct Result {
  std::optional<int> status;
  std::string out, err;
};

Result run(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) {
  Process p(reqbus_binary(), args);
  p.close_stdin();
  Result r;
  r.status = p.wait(timeout);
  r.out = p.out();
  r.err = p.err();
  return r;
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

// A failure the user made: exactly one line on stderr that names the problem; non-zero exit.
void expect_one_line_error(const std::vector<std::string>& args, const std::string& names) {
  const Result r = run(args);
  BOOST_TEST_CONTEXT("reqbus " << joined(args) << "\nstderr: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status != 0);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    BOOST_TEST((!r.err.empty() && r.err.back() == '\n'));
    BOOST_TEST(contains(r.err, names));
  }
}

void write_file(const std::string& path, const std::string& text, std::ios::openmode mode = std::ios::trunc) {
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
std::string combined(const std::string& ip, const std::string& path, int status, int second = 0) {
  char time[64];
  std::snprintf(time, sizeof(time), "14/Nov/2023:22:13:%02d +0000", second % 60);
  return ip + " - - [" + time + "] \"GET " + path + "?utm=x HTTP/1.1\" " + std::to_string(status) +
         " 512 \"https://ref.example/\" \"Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0\" 0.012\n";
}

struct Counts {
  uint64_t lines = 0, accepted = 0, rejected = 0, unparsable = 0;
  uint64_t parsed = 0;   // a dry run's
  bool dry_run = false;  // the line was a dry run's, which says nothing of a node
};

// ingest's final line: "reqbus ingest: N lines (R/s), A accepted, J rejected by the node, U unparsable",
// or a dry run's "reqbus ingest (dry run): N lines (R/s), P parsed, U unparsable; nothing published".
Counts ingest_counts(const std::string& err) {
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
Counts stop_follower(Process& follow) {
  follow.signal(SIGTERM);
  const auto status = follow.wait(20s);
  BOOST_REQUIRE(status.has_value());
  BOOST_TEST(*status == 0);
  return ingest_counts(follow.err());
}

// Stops the node and checks that its store holds `n` rows, each request id once.
void expect_stored_once(Served& node, int64_t n) {
  node.stop();
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests") == n);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT request_id) FROM requests") == n);
}

// "path status" of every NDJSON line of a tail's stdout whose path starts with `prefix`.
std::multiset<std::string> tailed(const std::string& out, const std::string& prefix) {
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

}  // namespace

BOOST_AUTO_TEST_SUITE(ProgramCli)

BOOST_AUTO_TEST_CASE(help_for_the_program_and_every_subcommand_exits_0) {
  const Result top = run({"--help"});
  BOOST_REQUIRE(top.status.has_value());
  BOOST_TEST(*top.status == 0);
  for (const char* sub : {"demo", "serve", "ingest", "tail", "top"}) BOOST_TEST(contains(top.out, sub), sub);
  for (const char* sub : {"demo", "serve", "ingest", "tail", "top"}) {
    const Result r = run({sub, "--help"});
    BOOST_TEST_CONTEXT(sub) {
      BOOST_REQUIRE(r.status.has_value());
      BOOST_TEST(*r.status == 0);
      BOOST_TEST(contains(r.out, "--"));
      BOOST_TEST(r.err.empty());
    }
  }
  const Result version = run({"--version"});
  BOOST_TEST(*version.status == 0);
  BOOST_TEST(contains(version.out, "reqbus"));
}

BOOST_AUTO_TEST_CASE(bad_flags_give_one_line_naming_the_problem) {
  expect_one_line_error({}, "subcommand");
  expect_one_line_error({"demo", "--bogus"}, "--bogus");
  expect_one_line_error({"demo", "--rate", "-1"}, "--rate");
  expect_one_line_error({"demo", "--duration", "soon"}, "--duration");
  // NaN passed CLI11's own range checks ("driving nan s of traffic", exit 0).
  expect_one_line_error({"demo", "--duration", "nan"}, "--duration: Value nan not in range 0.5 to 86400");
  expect_one_line_error({"keygen", "--out", ""}, "keygen: --out: empty path");  // not the secret on stdout
  expect_one_line_error({"tail", "--peer", "tcp://127.0.0.1:1", "--warn-after", "nan"}, "--warn-after");
  expect_one_line_error({"top", "--interval", "nan"}, "--interval");
  expect_one_line_error({"forward", "--hwm", "0", "--insecure"}, "--hwm: Value 0 not in range 1 to 1073741824");
  // ZeroMQ takes a port past 65535 modulo 65536: 99999 bound 34463.
  expect_one_line_error({"forward", "--frontend", "tcp://127.0.0.1:99999", "--backend", "tcp://127.0.0.1:0", "--insecure"},
                        "--frontend: 'tcp://127.0.0.1:99999': the port is not 0..65535 or *");
  expect_one_line_error({"tail", "--insecure", "--peer", "tcp://127.0.0.1:99999"}, "the port is not 0..65535");
  TempDir dir;
  expect_one_line_error({"demo", "--http", "no-port", "--db", dir.sub("d.db")}, "--http");
  expect_one_line_error({"tail"}, "--peer");
  expect_one_line_error({"tail", "--peer", "tcp://127.0.0.1:1", "--status", "7xx"}, "--status");
  expect_one_line_error({"tail", "--peer", "tcp://127.0.0.1:1", "--status", "99"}, "--status");
  expect_one_line_error({"tail", "--peer", "tcp://127.0.0.1:1", "-n", "-3"}, "--limit");
  expect_one_line_error({"ingest", "--format", "xml"}, "--format");
  expect_one_line_error({"ingest", "--batch", "0"}, "--batch");
  expect_one_line_error({"ingest", "/no/such/access.log"}, "/no/such/access.log");
  expect_one_line_error({"ingest", "-", "--follow"}, "--follow");
  expect_one_line_error({"ingest", "--node-addr", "nowhere", "/dev/null"}, "--node-addr");
  expect_one_line_error({"top", "--interval", "0"}, "--interval");
  // Nothing listens on port 1: one line saying it cannot reach the node.
  expect_one_line_error({"top", "--node-addr", "127.0.0.1:1", "--iterations", "1"}, "127.0.0.1:1");
}

BOOST_AUTO_TEST_CASE(an_unknown_subcommand_or_option_is_named) {
  expect_one_line_error({"frobnicate"}, "unknown subcommand 'frobnicate'");
  // CLI11 said "A subcommand is required", not naming what it did not know.
  expect_one_line_error({"--bogus"}, "unknown option '--bogus': the subcommand comes first");
  expect_one_line_error({}, "A subcommand is required");
}

BOOST_AUTO_TEST_CASE(bad_config_gives_one_line_naming_file_line_and_key) {
  TempDir dir;
  // serve with harmless defaults for whatever `more` does not set itself.
  auto serve = [&](const std::vector<std::string>& more) {
    std::vector<std::string> args{"serve"};
    args.insert(args.end(), more.begin(), more.end());
    auto set = [&](const std::string& flag, const std::string& value) {
      if (std::find(more.begin(), more.end(), flag) == more.end()) args.insert(args.end(), {flag, value});
    };
    set("--store", "sqlite:" + dir.sub("c.db"));
    set("--spool-dir", dir.sub("spool"));
    set("--http", "127.0.0.1:0");
    return args;
  };
  const std::string unknown = dir.sub("unknown.toml"), type = dir.sub("type.toml"), syntax = dir.sub("syntax.toml"),
                    range = dir.sub("range.toml");
  write_file(unknown, "node_id = \"n\"\n[bus]\nqueue_max_event = 5\n");
  write_file(type, "[http]\nthreads = \"four\"\n");
  write_file(syntax, "node_id = \"n\"\nstore = \n");
  write_file(range, "[batcher]\n\nflush_at = 0\n");
  expect_one_line_error(serve({"--config", unknown}), unknown + ":3: bus.queue_max_event: unknown key");
  expect_one_line_error(serve({"--config", type}), type + ":2: http.threads: must be an integer");
  expect_one_line_error(serve({"--config", syntax}), syntax + ":2: ");
  expect_one_line_error(serve({"--config", range}), range + ":3: batcher.flush_at: must be in");
  expect_one_line_error(serve({"--config", dir.sub("missing.toml")}), dir.sub("missing.toml"));
  expect_one_line_error(serve({"--store", "mysql:x"}), "mysql:x");
  expect_one_line_error(serve({"--store", "sqlite:"}), "sqlite:");
  // A database that can never be opened is refused at start (it used to take events and spool
  // them all): a missing directory, a directory, a file that is not a database.
  write_file(dir.sub("not-a.db"), "this is not a database\n");
  for (const std::string& bad : {dir.sub("no/such/dir/x.db"), dir.str(), dir.sub("not-a.db")})
    expect_one_line_error(serve({"--store", "sqlite:" + bad}), "store: sqlite:" + bad + ": ");
  expect_one_line_error(serve({"--config", "/dev/zero"}), "/dev/zero: is not a regular file or a pipe");
  expect_one_line_error(serve({"--bind", "not-an-endpoint"}), "--bind (bus.bind): 'not-an-endpoint' is not a tcp:// endpoint");
  // Named by flag and key, not as the C++ field ("BusOptions.node_id: longer than 64 bytes"),
  // combinations only the Bus checks too.
  expect_one_line_error(serve({"--node-id", std::string(65, 'n')}), "reqbus: --node-id (node_id): longer than 64 bytes");
  expect_one_line_error(serve({"--insecure", "--peer", "tcp://127.0.0.1:99999"}),
                        "--peer (bus.peers): 'tcp://127.0.0.1:99999': the port is not 0..65535");
  expect_one_line_error(serve({"--peer", "tcp://127.0.0.1:7400"}), "reqbus: --curve-secret ([security] secret_key): tcp needs CURVE keys");
  write_file(dir.sub("long-id.toml"), "node_id = \"" + std::string(65, 'n') + "\"\n");
  expect_one_line_error(serve({"--config", dir.sub("long-id.toml")}), dir.sub("long-id.toml") + ":1: node_id: must be 0..64 bytes");
  expect_one_line_error(serve({"--http", "127.0.0.1:70000"}), "--http");
  write_file(dir.sub("a-file"), "x");
  expect_one_line_error(serve({"--spool-dir", dir.sub("a-file") + "/spool"}), "spool");
}

// Errors the library checks name the flag, not the C++ field ("BusOptions.peers: ...",
// "PostgresSinkOptions.conninfo: required"), in tail as in serve; a flag given twice says so,
// not CLI11's "At Most 1 required but received 2".
BOOST_AUTO_TEST_CASE(library_and_repeated_flag_errors_are_named_by_flag) {
  TempDir dir;
  const std::string nowhere = "tcp://127.0.0.1:1";
  expect_one_line_error({"tail", "--peer", "http://x"}, "reqbus: --peer: 'http://x' is not a tcp:// endpoint");
  expect_one_line_error({"tail", "--peer", nowhere}, "reqbus: --curve-secret: tcp needs CURVE keys (`reqbus keygen`), or --insecure");
  const Result key = run({"keygen", "--out", dir.sub("tail.key")});
  BOOST_REQUIRE_MESSAGE(key.status == 0, key.err);
  expect_one_line_error({"tail", "--peer", nowhere, "--insecure", "--curve-secret", dir.sub("tail.key")},
                        "reqbus: --insecure: set together with --curve-secret; choose one");
  expect_one_line_error({"tail", "--peer", nowhere, "--curve-secret", dir.sub("tail.key")},
                        "reqbus: --peer: 'tcp://127.0.0.1:1' needs the server's public key");
  const std::vector<std::string> serve{"serve", "--spool-dir", dir.sub("spool"), "--http", "127.0.0.1:0"};
  auto with = [](std::vector<std::string> args, const std::vector<std::string>& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  expect_one_line_error(with(serve, {"--store", "postgres:"}), "reqbus: --store (store) postgres:CONNINFO: required");
  expect_one_line_error(with(serve, {"--store", "none", "--http", "127.0.0.1:0"}), "reqbus: --http given twice");
  expect_one_line_error({"tail", "--peer", nowhere, "--insecure", "-n", "1", "--limit", "2", "-n", "3"}, "reqbus: --limit given 3 times");
  for (const auto& args : {std::vector<std::string>{"tail", "--peer", "http://x"}, with(serve, {"--store", "postgres:"}),
                           with(serve, {"--store", "none", "--http", "127.0.0.1:0"})}) {
    const Result r = run(args);
    BOOST_TEST(!contains(r.err, "Options."), r.err);
    BOOST_TEST(!contains(r.err, "required but received"), r.err);
  }
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_one_line_naming_the_address) {
  TempDir dir;
  httplib::Server holder;  // holds a port for the duration of the test
  const int port = holder.bind_to_any_port("127.0.0.1");
  BOOST_REQUIRE(port > 0);
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  expect_one_line_error({"serve", "--store", "sqlite:" + dir.sub("p.db"), "--spool-dir", dir.sub("spool"), "--http", addr},
                        addr);
}

// A node that is not there, or that refuses our CURVE key, looks to `tail` like a quiet one (the
// bus keeps retrying): tail says so once on stderr and keeps trying; --timeout makes it give up.
BOOST_AUTO_TEST_CASE(tail_says_once_when_nothing_comes_and_gives_up_at_its_timeout) {
  const std::string nowhere = "tcp://127.0.0.1:1";  // nothing listens on port 1
  Process waiting(reqbus_binary(), {"tail", "--insecure", "--peer", nowhere, "--warn-after", "0.2"});
  BOOST_REQUIRE_MESSAGE(waiting.wait_for_stderr("no events from " + nowhere, 20s), waiting.err());
  BOOST_TEST(contains(waiting.err(), "is the node running"), waiting.err());
  BOOST_TEST(!waiting.wait(1s).has_value());  // still trying after the warning
  waiting.signal(SIGTERM);
  BOOST_REQUIRE(waiting.wait(10s).value_or(-1) == 0);
  const std::string err = waiting.err();
  size_t warnings = 0;
  for (size_t at = err.find("no events from"); at != std::string::npos; at = err.find("no events from", at + 1)) ++warnings;
  BOOST_TEST(warnings == 1u, err);

  const Result gave_up = run({"tail", "--insecure", "--peer", nowhere, "--timeout", "0.5"});
  BOOST_REQUIRE(gave_up.status.has_value());
  BOOST_TEST(*gave_up.status == 1);
  BOOST_TEST(contains(gave_up.err, "reqbus tail: no events from " + nowhere + " within --timeout 0.5s"), gave_up.err);
  expect_one_line_error({"tail", "--peer", nowhere, "--timeout", "-1"}, "--timeout");

  // A CURVE node whose allow-list does not hold our key: the message says the handshake failed.
  TempDir dir;
  const auto public_key = [&](const std::string& name) {
    const Result r = run({"keygen", "--out", dir.sub(name + ".key")});
    static const std::regex key(R"re(public_key = "([^"]+)")re");
    std::smatch m;
    BOOST_REQUIRE_MESSAGE(r.status == 0 && std::regex_search(r.out, m, key), "keygen: " << r.err);
    return std::string(m[1]);
  };
  const std::string node_key = public_key("node"), allowed = public_key("allowed");
  (void)public_key("stranger");
  Process node(reqbus_binary(), {"serve", "--node-id", "curve", "--store", "none", "--bind", "tcp://127.0.0.1:*", "--curve-secret",
                                 dir.sub("node.key"), "--allow", allowed, "--http", "127.0.0.1:0", "--spool-dir", dir.sub("spool")});
  BOOST_REQUIRE_MESSAGE(node.wait_for_stdout("dashboard:", 30s), "serve did not start: " << node.err());
  static const std::regex bus(R"(bus: (tcp://127\.0\.0\.1:\d+))");
  std::smatch m;
  const std::string out = node.out();
  BOOST_REQUIRE(std::regex_search(out, m, bus));
  const std::string endpoint = m[1];
  const Result refused = run({"tail", "--curve-secret", dir.sub("stranger.key"), "--peer", endpoint + "#" + node_key, "--timeout", "2"});
  BOOST_REQUIRE(refused.status.has_value());
  BOOST_TEST(*refused.status == 1);
  BOOST_TEST(contains(refused.err, "reqbus tail: no events from " + endpoint + " within --timeout 2s"), refused.err);
  BOOST_TEST(contains(refused.err, "CURVE handshake(s) failed"), refused.err);
}

BOOST_AUTO_TEST_SUITE_END()

// `reqbus ingest`'s LineReader, on a file: lines and their offsets, and the cap on a line's length.
BOOST_AUTO_TEST_SUITE(IngestLineReader)

struct ReadLines {
  std::vector<std::pair<std::string, uint64_t>> lines;     // (line, offset)
  std::vector<std::pair<uint64_t, uint64_t>> too_long;      // (offset, bytes)
  size_t max_buffered = 0;
};

ReadLines read_lines(const std::string& path) {
  using reqbus::app::ingest_cmd::LineReader;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  LineReader reader;
  ReadLines got;
  auto on_line = [&](std::string_view line, uint64_t offset) { got.lines.emplace_back(std::string(line), offset); };
  auto on_too_long = [&](uint64_t offset, uint64_t bytes) { got.too_long.emplace_back(offset, bytes); };
  ssize_t n;
  while ((n = reader.read_chunk(fd, on_line, on_too_long)) > 0) got.max_buffered = std::max(got.max_buffered, reader.buffered_bytes());
  ::close(fd);
  BOOST_REQUIRE(n == 0);
  reader.finish(on_line, on_too_long);
  return got;
}

// 5 MiB without a newline (a binary file, a writer gone wrong) used to be held whole and searched
// for a newline again on every 64 KiB read. Now its bytes are dropped as they are read, it is
// reported once as too long, and the lines after it are read as before.
BOOST_AUTO_TEST_CASE(a_line_longer_than_the_cap_is_dropped_and_reported_and_memory_stays_bounded) {
  using reqbus::app::ingest_cmd::kMaxLineBytes;
  using reqbus::app::ingest_cmd::LineReader;
  TempDir dir;
  const std::string path = dir.sub("long.log");
  const size_t huge = 5u << 20;
  const std::string fits(kMaxLineBytes, 'b');  // exactly at the cap: a line like any other
  write_file(path, std::string(huge, 'a') + "\nok 1\n" + fits + "\nok 2\n" + std::string(kMaxLineBytes + 1, 'c') +
                       "\nok 3\n" + std::string(2 * kMaxLineBytes, 'd'));  // and one cut at the end
  const ReadLines got = read_lines(path);
  const uint64_t ok1 = huge + 1, at_cap = ok1 + 5, ok2 = at_cap + kMaxLineBytes + 1, over = ok2 + 5,
                 ok3 = over + kMaxLineBytes + 2, last = ok3 + 5;
  BOOST_TEST(got.max_buffered <= kMaxLineBytes + LineReader::kChunkBytes);
  BOOST_REQUIRE(got.lines.size() == 4u);
  BOOST_TEST(got.lines[0].first == "ok 1");
  BOOST_TEST(got.lines[0].second == ok1);
  BOOST_TEST((got.lines[1].first == fits));
  BOOST_TEST(got.lines[1].second == at_cap);
  BOOST_TEST(got.lines[2].first == "ok 2");
  BOOST_TEST(got.lines[2].second == ok2);
  BOOST_TEST(got.lines[3].first == "ok 3");
  BOOST_TEST(got.lines[3].second == ok3);
  BOOST_REQUIRE(got.too_long.size() == 3u);
  BOOST_TEST(got.too_long[0].first == 0u);
  BOOST_TEST(got.too_long[0].second == huge);
  BOOST_TEST(got.too_long[1].first == over);
  BOOST_TEST(got.too_long[1].second == kMaxLineBytes + 1);
  BOOST_TEST(got.too_long[2].first == last);
  BOOST_TEST(got.too_long[2].second == 2 * kMaxLineBytes);
}

BOOST_AUTO_TEST_SUITE_END()

// `reqbus ingest` on a log with lines that broke it: each is an unparsable line, counted and named
// on stderr, and the good lines around them are read.
BOOST_AUTO_TEST_SUITE(ProgramIngestBadLines)

BOOST_AUTO_TEST_CASE(a_too_long_a_too_deep_and_an_undated_line_are_counted_unparsable) {
  TempDir dir;
  const std::string file = dir.sub("bad.log");
  const std::string good = R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /ok HTTP/1.1" 200 1)";
  const size_t deep = 100000;
  write_file(file, R"(1.2.3.4 - - [] "GET / HTTP/1.1" 200 1)" "\n" + good + "\n" +
                       R"({"status":200,"request":"GET / HTTP/1.1","remote_addr":)" + std::string(deep, '[') +
                       std::string(deep, ']') + "}\n" + good + "\n" + std::string(5u << 20, 'x') + "\n" + good + "\n");
  const Result r = run({"ingest", file, "--dry-run"}, 60s);
  BOOST_TEST_CONTEXT("ingest: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status == 0);
    const Counts n = ingest_counts(r.err);
    BOOST_TEST(n.lines == 6u);
    BOOST_TEST(n.parsed == 3u);
    BOOST_TEST(n.unparsable == 3u);
    BOOST_TEST(contains(r.err, "line at byte 0: time: not dd/Mon/yyyy:hh:mm:ss zone"));
    BOOST_TEST(contains(r.err, "JSON nested deeper than 64 levels"));
    BOOST_TEST(contains(r.err, std::to_string(5u << 20) + " bytes, longer than the limit of 1048576: skipped"));
  }
}

// A dry run posts nothing, so its counts line says what was parsed, not what "the node" accepted or
// rejected; it never connects to --node-addr (a listener there counts every connection), and it
// exits 0 when a line parsed, 1 when none did.
BOOST_AUTO_TEST_CASE(a_dry_run_counts_parsed_lines_names_no_node_and_connects_to_none) {
  TempDir dir;
  const std::string mixed = dir.sub("mixed.log"), bad = dir.sub("bad.log");
  std::string log;
  for (int i = 0; i < 5; ++i) log += combined("192.0.2.20", "/dry/" + std::to_string(i), 200, i);
  log += "not an access log line\n";
  log += combined("192.0.2.20", "/dry/5", 404, 5);
  log += "{\"status\": \"half a JSON line\n";
  write_file(mixed, log);
  write_file(bad, "not an access log line\nnor this\n");
  HangingUpNode listener;
  const Result r = run({"ingest", mixed, "--dry-run", "--node-addr", listener.addr(), "--batch", "2"});
  BOOST_TEST_CONTEXT("ingest: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status == 0);
    const Counts n = ingest_counts(r.err);
    BOOST_TEST(n.dry_run);
    BOOST_TEST(n.lines == 8u);
    BOOST_TEST(n.parsed == 6u);
    BOOST_TEST(n.unparsable == 2u);
    BOOST_TEST(!contains(r.err, "accepted"));
    BOOST_TEST(!contains(r.err, "rejected by the node"));
  }
  const Result none = run({"ingest", bad, "--dry-run", "--node-addr", listener.addr()});
  BOOST_TEST_CONTEXT("ingest: " << none.err) {
    BOOST_REQUIRE(none.status.has_value());
    BOOST_TEST(*none.status == 1);
    const Counts n = ingest_counts(none.err);
    BOOST_TEST(n.dry_run);
    BOOST_TEST(n.parsed == 0u);
    BOOST_TEST(n.unparsable == 2u);
  }
  // A connection would be counted within the listener's 50 ms poll.
  BOOST_TEST(!poll_until([&] { return listener.connections() > 0; }, 300ms));
}

BOOST_AUTO_TEST_SUITE_END()

// What `reqbus top` prints of a request's path: no byte a terminal takes for a control.
BOOST_AUTO_TEST_SUITE(TopTerminalText)

BOOST_AUTO_TEST_CASE(controls_are_replaced_and_other_utf8_is_kept) {
  using reqbus::app::terminal_text;
  BOOST_TEST(terminal_text("/a\x1b[2Jb\r\n\t", 90) == "/a?[2Jb???");           // C0 controls, ESC
  BOOST_TEST(terminal_text("/a\x7f" "b", 90) == "/a?b");                       // DEL
  BOOST_TEST(terminal_text("/a\xc2\x9b" "31mb", 90) == "/a?31mb");             // U+009B CSI
  BOOST_TEST(terminal_text("/\xc2\x80\xc2\x9f\xc2\xa0", 90) == "/??\xc2\xa0");  // C1 only, not U+00A0
  BOOST_TEST(terminal_text("/\x9b" "1m\xc3", 90) == "/?1m?");                  // not UTF-8 (an 8-bit CSI)
  BOOST_TEST(terminal_text("/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80/\xe6\x97\xa5", 90) ==
             "/caf\xc3\xa9/\xe2\x82\xac/\xf0\x9f\x98\x80/\xe6\x97\xa5");      // é € 😀 日 kept
  BOOST_TEST(terminal_text("/\xe0\x80\xaf/\xed\xa0\x80/\xf4\x90\x80\x80", 90) == "/???" "/???" "/????");  // invalid forms
  // Cut to the width, never inside a character.
  BOOST_TEST(terminal_text(std::string(100, 'a'), 90) == std::string(89, 'a') + "~");
  BOOST_TEST(terminal_text(std::string(88, 'a') + "\xc3\xa9\xc3\xa9", 90) == std::string(88, 'a') + "~");
  BOOST_TEST(terminal_text(std::string(90, 'a'), 90) == std::string(90, 'a'));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ProgramDemo)

BOOST_AUTO_TEST_CASE(demo_exits_0_and_the_database_holds_the_rows_it_reported) {
  TempDir dir;
  const std::string db = dir.sub("d.db");
  const Result r = run({"demo", "--duration", "3", "--http", "127.0.0.1:0", "--db", db}, 90s);
  BOOST_TEST_CONTEXT("stdout:\n" << r.out << "\nstderr:\n" << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_REQUIRE_EQUAL(*r.status, 0);
    std::smatch m;
    BOOST_REQUIRE(std::regex_search(r.out, m, std::regex(R"(events published on the bus +(\d+))")));
    const int64_t published = std::stoll(m[1]);
    BOOST_REQUIRE(std::regex_search(r.out, m, std::regex(R"(rows persisted for this run +(\d+))")));
    const int64_t reported = std::stoll(m[1]);
    BOOST_TEST(published > 100);  // 3 s of traffic
    BOOST_TEST(reported == published);
    BOOST_TEST(contains(r.out, "live dashboard: http://127.0.0.1:"));
    BOOST_TEST(contains(r.out, "latency p50 / p95 / p99"));
    BOOST_TEST(contains(r.out, std::filesystem::absolute(db).string()));
    BOOST_TEST(!contains(r.out, "NOTE:"));

    Db sqlite(db);
    BOOST_TEST(sqlite.scalar("SELECT count(*) FROM requests") == reported);
    BOOST_TEST(sqlite.scalar("SELECT count(DISTINCT request_id) FROM requests") == reported);
    // Realistic traffic: many paths, several status classes, bots and humans.
    BOOST_TEST(sqlite.scalar("SELECT count(DISTINCT path) FROM requests") > 10);
    BOOST_TEST(sqlite.scalar("SELECT count(DISTINCT status_code / 100) FROM requests") >= 3);
    BOOST_TEST(sqlite.scalar("SELECT count(*) FROM requests WHERE device_type = 'bot'") > 0);
  }
}

// demo empties --db first: a file that is not its own database (a text file, another node's
// store) is refused, untouched, with one line naming it (exit 2). Its own file is reused, run
// after run, with and without --keep.
BOOST_AUTO_TEST_CASE(demo_refuses_a_db_it_did_not_make_and_reuses_its_own) {
  TempDir dir;
  auto demo = [&](const std::vector<std::string>& more) {
    std::vector<std::string> args{"demo", "--duration", "0.5", "--rate", "200", "--http", "127.0.0.1:0"};
    args.insert(args.end(), more.begin(), more.end());
    return args;
  };
  auto expect_refused = [&](const std::string& file, const std::string& why, const std::vector<std::string>& more) {
    std::ifstream in(file, std::ios::binary);
    const std::string before((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Result r = run(demo(more), 60s);
    BOOST_TEST_CONTEXT("demo --db " << file << ": " << r.err) {
      BOOST_REQUIRE(r.status.has_value());
      BOOST_TEST(*r.status == 2);
      BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
      BOOST_TEST(contains(r.err, "--db " + file + " " + why));
      BOOST_TEST(contains(r.err, "give another --db path, or remove the file"));
      std::ifstream again(file, std::ios::binary);
      BOOST_TEST((std::string((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>()) == before));
    }
  };
  const std::string text = dir.sub("notes.txt");
  write_file(text, "my notes\n");
  expect_refused(text, "is not an SQLite database", {"--db", text});
  expect_refused(text, "is not an SQLite database", {"--db", text, "--keep"});
  // Another node's store: serve wrote its schema, and a row.
  const std::string store = dir.sub("other.db");
  {
    Served node(dir, "other");
    auto c = node.client();
    auto res = c.Post("/v1/requests", R"({"method":"GET","path":"/other-node","status_code":200})", "application/x-ndjson");
    BOOST_REQUIRE(res && res->status == 202);
    node.stop();
    Db db(node.db);
    BOOST_REQUIRE(db.scalar("SELECT count(*) FROM requests") == 1);
    BOOST_REQUIRE(node.db == store);
  }
  expect_refused(store, "is an SQLite database that demo did not make", {"--db", store});
  expect_refused(store, "is an SQLite database that demo did not make", {"--db", store, "--keep"});

  // Its default file, twice (starting afresh), then once more keeping the rows.
  for (const bool keep : {false, false, true}) {
    ProcessOptions o;
    o.cwd = dir.str();
    Process p(reqbus_binary(), keep ? demo({"--keep"}) : demo({}), o);
    p.close_stdin();
    const auto status = p.wait(90s);
    BOOST_TEST_CONTEXT("demo in " << dir.str() << (keep ? " --keep" : "") << ": " << p.err()) {
      BOOST_REQUIRE(status.has_value());
      BOOST_TEST(*status == 0);
    }
  }
  Db db(dir.sub("reqbus-demo.db"));
  BOOST_TEST(db.scalar("SELECT count(DISTINCT node_id) FROM requests") == 2);  // the second run's and the third's
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(ProgramServe)

BOOST_AUTO_TEST_CASE(serve_ingest_tail_store_each_accepted_line_once) {
  TempDir dir;
  Served node(dir, "srv");

  // Tails: everything; only 4xx under /site/; and one that stops after 2 lines.
  // Plain tcp on loopback (--insecure); CURVE between nodes is the bus tests' subject.
  Process all(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint});
  Process errors(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint, "--status", "4xx", "--path", "/site/"});
  Process two(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint, "-n", "2"});
  for (Process* t : {&all, &errors, &two}) BOOST_REQUIRE(t->wait_for_stderr("subscribed", 20s));
  // The tcp subscription becomes live asynchronously: publish probes until every tail shows one.
  auto c = node.client();
  int probes = 0;
  auto saw_probe = [](Process& p) { return contains(p.out(), "/site/probe/"); };
  BOOST_REQUIRE(poll_until([&] {
    const std::string probe = R"({"method":"GET","path":"/site/probe/)" + std::to_string(probes++) + R"(","status_code":404})";
    auto res = c.Post("/v1/requests", probe, "application/x-ndjson");
    BOOST_REQUIRE(res && res->status == 202);
    return saw_probe(all) && saw_probe(errors) && !two.running();
  }, 30s));
  BOOST_TEST_MESSAGE("tails live after " << probes << " probes");
  BOOST_REQUIRE(two.wait(10s).value_or(-1) == 0);
  BOOST_TEST(split_lines(two.out()).size() == 2u);
  BOOST_TEST(tailed(two.out(), "/site/probe/").size() == 2u);

  // A combined log: M good lines, 3 it cannot parse, a blank one.
  constexpr int M = 150;
  std::string log;
  std::multiset<std::string> expected, expected_4xx;
  const int statuses[] = {200, 200, 404, 500, 301, 403, 200};
  for (int i = 0; i < M; ++i) {
    const std::string path = "/site/page/" + std::to_string(i);
    const int status = statuses[i % 7];
    log += combined("192.0.2." + std::to_string(i % 50), path, status, i);
    expected.insert(path + " " + std::to_string(status));
    if (status / 100 == 4) expected_4xx.insert(path + " " + std::to_string(status));
    if (i == 10) log += "this is not an access log line\n";
    if (i == 20) log += "\n";
    if (i == 30) log += "192.0.2.1 - - [14/Nov/2023:99:99:99 +0000] \"GET /bad-time HTTP/1.1\" 200 1 \"-\" \"-\"\n";
  }
  log += "192.0.2.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /cut";  // truncated last line, no newline
  const std::string file = dir.sub("access.log");
  write_file(file, log);

  for (int round = 1; round <= 2; ++round) {
    const Result ingest = run({"ingest", file, "--node-addr", node.addr(), "--batch", "40"}, 60s);
    BOOST_TEST_CONTEXT("ingest round " << round << ": " << ingest.err) {
      BOOST_REQUIRE(ingest.status.has_value());
      BOOST_TEST(*ingest.status == 0);
      const Counts n = ingest_counts(ingest.err);
      BOOST_TEST(n.lines == uint64_t(M + 4));
      BOOST_TEST(n.accepted == uint64_t(M));
      BOOST_TEST(n.rejected == 0u);
      BOOST_TEST(n.unparsable == 3u);
    }
    // Every accepted line reaches the tails (the bus publishes each ingest; the store dedupes).
    BOOST_REQUIRE_MESSAGE(all.wait_for_output([&](const std::string& out, const std::string&) {
      return tailed(out, "/site/page/").size() >= size_t(round * M);
    }, 30s), "tail saw " << tailed(all.out(), "/site/page/").size() << " of " << round * M);
  }
  std::multiset<std::string> twice = expected;
  twice.insert(expected.begin(), expected.end());
  BOOST_TEST((tailed(all.out(), "/site/page/") == twice));
  std::multiset<std::string> twice_4xx = expected_4xx;
  twice_4xx.insert(expected_4xx.begin(), expected_4xx.end());
  BOOST_REQUIRE(errors.wait_for_output(
      [&](const std::string& out, const std::string&) { return tailed(out, "/site/page/").size() >= twice_4xx.size(); },
      30s));
  BOOST_TEST((tailed(errors.out(), "/site/page/") == twice_4xx));
  for (const auto& line : tailed(errors.out(), "")) BOOST_TEST(line.substr(line.size() - 3, 1) == "4", line);

  for (Process* t : {&all, &errors}) {
    t->signal(SIGTERM);
    BOOST_TEST(t->wait(10s).value_or(-1) == 0);
    BOOST_TEST(contains(t->err(), ", 0 missing (gaps)"), t->err());
  }
  node.stop();

  // Each accepted line stored once, with what the log said.
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/site/page/%'") == M);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT request_id) FROM requests WHERE path LIKE '/site/page/%'") == M);
  std::multiset<std::string> stored;
  for (const auto& row : db.rows("SELECT path, status_code, remote_ip, referer FROM requests WHERE path LIKE '/site/page/%'")) {
    stored.insert(row[0] + " " + row[1]);
    BOOST_TEST(row[2].rfind("192.0.2.", 0) == 0u);
    BOOST_TEST(row[3] == "https://ref.example/");
  }
  BOOST_TEST((stored == expected));
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/site/probe/%'") == probes);

  // The node's daily counters, keyed by each event's own day. They count what was stored, once:
  // the second ingest round stored nothing new, and counted nothing (it used to count 2 × M).
  auto counter = [&](const std::string& key) {
    return db.scalar("SELECT coalesce(sum(value), 0) FROM counters WHERE key LIKE '%" + key + "'");
  };
  int per_status[600] = {};
  for (int i = 0; i < M; ++i) per_status[statuses[i % 7]] += 1;
  BOOST_TEST(counter("requests:2023-11-14") == M);
  for (int status : {200, 301, 403, 404, 500})
    BOOST_TEST(counter("status:" + std::to_string(status) + ":2023-11-14") == per_status[status], status);
  BOOST_TEST(counter("device:desktop:2023-11-14") == M);
}

BOOST_AUTO_TEST_CASE(ingest_follow_reads_across_a_rotation) {
  TempDir dir;
  Served node(dir, "rot");
  const std::string file = dir.sub("access.log");
  std::string first;
  for (int i = 0; i < 20; ++i) first += combined("198.51.100.1", "/rot/old/" + std::to_string(i), 200, i);
  write_file(file, first);

  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 20; }, 30s), follow.err());

  // logrotate's "create" mode: rename, the writer finishes a line into the old file, a new file.
  std::filesystem::rename(file, file + ".1");
  std::string late;
  for (int i = 20; i < 23; ++i) late += combined("198.51.100.1", "/rot/old/" + std::to_string(i), 200, i);
  write_file(file + ".1", late, std::ios::app);
  std::string fresh;
  for (int i = 0; i < 7; ++i) fresh += combined("198.51.100.2", "/rot/new/" + std::to_string(i), 404, i);
  write_file(file, fresh);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 30; }, 30s),
                        "live total " << node.live_total() << "; " << follow.err());
  // The new file keeps growing, a line at a time.
  write_file(file, combined("198.51.100.2", "/rot/new/7", 404, 7), std::ios::app);
  write_file(file, combined("198.51.100.2", "/rot/new/8", 404, 8), std::ios::app);
  BOOST_REQUIRE(poll_until([&] { return node.live_total() == 32; }, 30s));

  const Counts n = stop_follower(follow);
  BOOST_TEST(n.accepted == 32u);
  BOOST_TEST(n.unparsable == 0u);
  BOOST_TEST(node.live_total() == 32u);
  expect_stored_once(node, 32);
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/rot/old/%'") == 23);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/rot/new/%'") == 9);
}

// logrotate's "copytruncate" mode: the log is copied to access.log.1 (a new file) and emptied in
// place. Ingesting the copy later (a backfill, or a second ingest that missed nothing) stores
// none of its lines again: ids follow the log's name and each line's place, not the inode.
BOOST_AUTO_TEST_CASE(ingest_of_a_copytruncate_copy_stores_nothing_twice) {
  TempDir dir;
  Served node(dir, "copy");
  const std::string file = dir.sub("access.log");
  std::string first;
  for (int i = 0; i < 10; ++i) first += combined("198.51.100.3", "/copy/old/" + std::to_string(i), 200, i);
  write_file(file, first);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 10; }, 30s), follow.err());

  std::filesystem::copy_file(file, file + ".1");
  write_file(file, "");  // truncated in place
  std::string fresh;
  for (int i = 0; i < 4; ++i) fresh += combined("198.51.100.3", "/copy/new/" + std::to_string(i), 200, i);
  write_file(file, fresh, std::ios::app);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 14; }, 30s),
                        "live total " << node.live_total() << "; " << follow.err());
  BOOST_TEST(stop_follower(follow).accepted == 14u);

  const Result backfill = run({"ingest", file + ".1", "--node-addr", node.addr()});
  BOOST_REQUIRE_MESSAGE(backfill.status.value_or(-1) == 0, backfill.err);
  BOOST_TEST(ingest_counts(backfill.err).accepted == 10u);  // taken by the node; the store keeps one
  BOOST_REQUIRE(poll_until([&] { return node.live_total() == 24; }, 30s));
  expect_stored_once(node, 14);
}

// logrotate's "create" mode on a busy server: the rename, a new file that is already being written
// and read, and the writer still appending to the renamed file until postrotate signals it (50-500
// ms later). Every line arrives once.
BOOST_AUTO_TEST_CASE(ingest_follow_keeps_reading_the_renamed_file_after_switching) {
  TempDir dir;
  Served node(dir, "drain");
  const std::string file = dir.sub("access.log");
  std::string first;
  for (int i = 0; i < 10; ++i) first += combined("198.51.100.3", "/drain/old/" + std::to_string(i), 200, i);
  write_file(file, first);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 10; }, 30s), follow.err());

  std::filesystem::rename(file, file + ".1");
  std::string fresh;
  for (int i = 0; i < 5; ++i) fresh += combined("198.51.100.4", "/drain/new/" + std::to_string(i), 200, i);
  write_file(file, fresh);
  // The new file's lines arrived: ingest has switched to it.
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 15; }, 30s),
                        "live total " << node.live_total() << "; " << follow.err());
  std::string late;
  for (int i = 10; i < 14; ++i) late += combined("198.51.100.3", "/drain/old/" + std::to_string(i), 200, i);
  write_file(file + ".1", late, std::ios::app);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 19; }, 20s),
                        "the lines appended to the renamed file: live total " << node.live_total() << "; " << follow.err());
  write_file(file, combined("198.51.100.4", "/drain/new/5", 200, 5), std::ios::app);
  BOOST_REQUIRE(poll_until([&] { return node.live_total() == 20; }, 20s));

  const Counts n = stop_follower(follow);
  BOOST_TEST(n.accepted == 20u);
  BOOST_TEST(n.unparsable == 0u);
  expect_stored_once(node, 20);
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/drain/old/%'") == 14);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/drain/new/%'") == 6);
}

// At SIGTERM a follower may hold the start of a line the writer has not finished: it is not
// published (cut inside the user agent it would even parse), it is counted and reported.
BOOST_AUTO_TEST_CASE(ingest_follow_does_not_publish_an_unfinished_last_line_at_sigterm) {
  TempDir dir;
  Served node(dir, "cut");
  const std::string file = dir.sub("access.log");
  std::string log;
  for (int i = 0; i < 3; ++i) log += combined("198.51.100.5", "/cut/" + std::to_string(i), 200, i);
  const std::string whole = combined("198.51.100.5", "/cut/3", 200, 3);
  log += whole.substr(0, whole.find("Firefox"));  // the writer is in the middle of the user agent
  write_file(file, log);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 3; }, 30s), follow.err());
  const Counts n = stop_follower(follow);
  BOOST_TEST(n.lines == 3u);
  BOOST_TEST(n.accepted == 3u);
  BOOST_TEST(n.unparsable == 0u);
  BOOST_TEST(contains(follow.err(), "1 unfinished line"), follow.err());
  node.stop();
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests") == 3);
}

// A last line already past the 1 MiB limit at SIGTERM is reported as too long, not as an
// unfinished line "ingesting the file again publishes": it never will be.
BOOST_AUTO_TEST_CASE(ingest_follow_reports_a_too_long_last_line_at_sigterm_as_too_long) {
  TempDir dir;
  Served node(dir, "long");
  const std::string file = dir.sub("access.log");
  std::string log;
  for (int i = 0; i < 3; ++i) log += combined("198.51.100.6", "/long/" + std::to_string(i), 200, i);
  log += std::string(2 << 20, 'x');  // no newline yet
  write_file(file, log);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 3; }, 30s), follow.err());
  const Counts n = stop_follower(follow);
  BOOST_TEST(n.lines == 4u);
  BOOST_TEST(n.accepted == 3u);
  BOOST_TEST(n.unparsable == 1u);
  BOOST_TEST(contains(follow.err(), "longer than the limit"), follow.err());
  BOOST_TEST(!contains(follow.err(), "unfinished line"), follow.err());
}

// `tail -F`: a follower started before the log exists (nginx at boot) waits for it, saying so once,
// then reads it from its start as it appears and grows. Each line is stored once.
BOOST_AUTO_TEST_CASE(ingest_follow_waits_for_a_file_that_does_not_exist_yet) {
  TempDir dir;
  Served node(dir, "late");
  const std::string file = dir.sub("access.log");
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  BOOST_REQUIRE_MESSAGE(follow.wait_for_stderr("waiting for " + file + " to appear", 10s), follow.err());
  // Still waiting a while later (several of its 250 ms polls): not gone with "cannot open".
  BOOST_REQUIRE_MESSAGE(!follow.wait(1s).has_value(), "ingest exited: " << follow.err());

  std::string first;
  for (int i = 0; i < 8; ++i) first += combined("198.51.100.7", "/late/" + std::to_string(i), 200, i);
  write_file(file, first);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 8; }, 30s),
                        "live total " << node.live_total() << "; " << follow.err());
  std::string more;
  for (int i = 8; i < 12; ++i) more += combined("198.51.100.7", "/late/" + std::to_string(i), 200, i);
  write_file(file, more, std::ios::app);
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 12; }, 30s),
                        "live total " << node.live_total() << "; " << follow.err());

  const Counts n = stop_follower(follow);
  BOOST_TEST(n.lines == 12u);
  BOOST_TEST(n.accepted == 12u);
  BOOST_TEST(n.unparsable == 0u);
  const std::string err = follow.err();
  BOOST_TEST(err.find("waiting for") == err.rfind("waiting for"), "said more than once: " << err);
  expect_stored_once(node, 12);
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/late/%'") == 12);
}

// Into a pipe or a log file (not a terminal) a quiet follower writes a progress line only when
// there is news: under systemd it runs for days, and a line a second filled the journal.
BOOST_AUTO_TEST_CASE(a_quiet_follower_writes_progress_only_when_there_is_news) {
  TempDir dir;
  const std::string file = dir.sub("quiet.log");
  write_file(file, combined("198.51.100.8", "/quiet/0", 200, 0) + combined("198.51.100.8", "/quiet/1", 200, 1));
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--dry-run"});
  BOOST_REQUIRE_MESSAGE(follow.wait_for_stderr("2 parsed", 10s), follow.err());
  std::this_thread::sleep_for(3500ms);  // quiet: three and more seconds without a line
  const Counts n = stop_follower(follow);
  BOOST_TEST(n.parsed == 2u);
  const std::string err = follow.err();
  size_t lines = 0;
  for (size_t at = err.find("reqbus ingest (dry run):"); at != std::string::npos;
       at = err.find("reqbus ingest (dry run):", at + 1))
    ++lines;
  BOOST_TEST(lines <= 2u, "the news, then the final counts; got:\n" << err);
}

// A follower stopped while it waits for its file ends as a follower does: its counts, status 0.
// Without --follow a missing file is an error, and with it a file it cannot open still is.
BOOST_AUTO_TEST_CASE(ingest_waits_for_a_missing_file_only_with_follow) {
  TempDir dir;
  const std::string file = dir.sub("never.log");
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--dry-run"});
  BOOST_REQUIRE_MESSAGE(follow.wait_for_stderr("waiting for", 10s), follow.err());
  const Counts n = stop_follower(follow);
  BOOST_TEST(n.lines == 0u);
  expect_one_line_error({"ingest", file, "--dry-run"}, "cannot open " + file + ": No such file or directory");
  // What appears is no log file: the error it would have been at the start.
  Process waiting(reqbus_binary(), {"ingest", file, "--follow", "--dry-run"});
  BOOST_REQUIRE_MESSAGE(waiting.wait_for_stderr("waiting for", 10s), waiting.err());
  std::filesystem::create_directory(file);
  const auto status = waiting.wait(10s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "ingest did not stop: " << waiting.err());
  BOOST_TEST(*status == 1);
  BOOST_TEST(contains(waiting.err(), file + " is a directory"), waiting.err());
  if (::geteuid() != 0) {  // root opens anything
    const std::string locked = dir.sub("locked.log");
    write_file(locked, combined("198.51.100.8", "/locked", 200));
    BOOST_REQUIRE(::chmod(locked.c_str(), 0) == 0);
    expect_one_line_error({"ingest", locked, "--follow", "--dry-run"}, "cannot open " + locked + ": Permission denied");
  }
}

// A node whose bus queue is full refuses lines ("bus: dropped_newest"): ingest resends just those,
// with a backoff, up to --retries times; what stays refused is reported, with a non-zero exit.
BOOST_AUTO_TEST_CASE(ingest_resends_lines_the_bus_refused_and_fails_if_some_stay_refused) {
  TempDir dir;
  // 50 events of queue take a burst of N a few at a time; the node lists 50 item errors at most.
  // Having emptied the queue while events come, the publisher naps its linger before the next
  // pop: 200 ms here (the most it naps), not the default 20 ms, so that a node publishing the
  // body slowly (sanitizers, a loaded machine) still refuses most of it.
  Served node(dir, "full",
              "[bus]\nqueue_max_events = 50\noverflow = \"drop_newest\"\npublish_linger_us = 200000\n");
  constexpr int N = 250;
  std::string log;
  for (int i = 0; i < N; ++i) log += combined("192.0.2.7", "/full/" + std::to_string(i), 200, i);
  const std::string file = dir.sub("access.log");
  write_file(file, log);

  const Result once = run({"ingest", file, "--node-addr", node.addr(), "--batch", std::to_string(N), "--retries", "0"});
  BOOST_TEST_CONTEXT("ingest --retries 0: " << once.err) {
    BOOST_REQUIRE(once.status.has_value());
    BOOST_TEST(*once.status == 1);
    const Counts n = ingest_counts(once.err);
    BOOST_TEST(n.rejected > 50u);  // more refusals than the node lists as errors
    BOOST_TEST(n.accepted + n.rejected == uint64_t(N));
    BOOST_TEST(contains(once.err, "reqbus ingest: " + std::to_string(n.rejected) + " line"));
    BOOST_TEST(contains(once.err, "refused by the node's bus (bus: dropped_newest)"));
  }

  // The node names every refused line ("refused"), beyond the 50 errors it lists: ingest resends
  // exactly those, so the node accepts each line once (live stats and tail see no duplicates).
  const uint64_t accepted_before = node.metric("reqbus_http_items_accepted_total");
  const Result resent = run({"ingest", file, "--node-addr", node.addr(), "--batch", std::to_string(N), "--retries", "30"}, 120s);
  BOOST_TEST_CONTEXT("ingest --retries 30: " << resent.err) {
    BOOST_REQUIRE(resent.status.has_value());
    BOOST_TEST(*resent.status == 0);
    const Counts n = ingest_counts(resent.err);
    BOOST_TEST(n.accepted == uint64_t(N));
    BOOST_TEST(n.rejected == 0u);
    BOOST_TEST(node.metric("reqbus_http_items_accepted_total") - accepted_before == uint64_t(N));
  }
  node.stop();
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/full/%'") == N);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT request_id) FROM requests WHERE path LIKE '/full/%'") == N);
}

// A node (a fake one, to script its refusals) whose bus refuses every other line of the first
// body it is sent: more refusals than the 50 errors it lists, accepted lines in between. A
// current node names them all in "refused"; one from before that field lists only the errors.
struct EveryOtherRefusingNode {
  explicit EveryOtherRefusingNode(bool names_refused) {
    server.Post("/v1/requests", [this, names_refused](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu);
      ++posts;
      nlohmann::json errors = nlohmann::json::array(), refused = nlohmann::json::array();
      size_t index = 0, accepted = 0;
      std::istringstream in(req.body);
      for (std::string line; std::getline(in, line); ++index) {
        if (posts == 1 && index % 2 == 0) {
          if (errors.size() < 50) errors.push_back({{"index", index}, {"error", "bus: dropped_newest"}});
          refused.push_back(index);
        } else {
          ++received[line];
          ++accepted;
        }
      }
      nlohmann::json reply = {{"accepted", accepted}, {"rejected", refused.size()}, {"errors", errors}};
      if (names_refused) reply["refused"] = refused;
      res.status = 202;
      res.set_content(reply.dump(), "application/json");
    });
    port = server.bind_to_any_port("127.0.0.1");
    BOOST_REQUIRE(port > 0);
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~EveryOtherRefusingNode() { stop(); }
  void stop() {
    server.stop();
    if (thread.joinable()) thread.join();
  }
  std::string addr() const { return "127.0.0.1:" + std::to_string(port); }

  std::mutex mu;
  std::map<std::string, int> received;  // line -> times accepted
  int posts = 0;
  httplib::Server server;
  int port = 0;
  std::thread thread;
};

// Ingests N lines in one batch into `fake` (three retries at most); returns once it exited.
Result ingest_into(EveryOtherRefusingNode& fake, int n) {
  TempDir dir;
  std::string log;
  for (int i = 0; i < n; ++i) log += combined("192.0.2.8", "/every-other/" + std::to_string(i), 200, i);
  const std::string file = dir.sub("access.log");
  write_file(file, log);
  const Result r = run({"ingest", file, "--node-addr", fake.addr(), "--batch", std::to_string(n), "--retries", "3"});
  fake.stop();
  return r;
}

// ingest resends exactly the lines named in "refused": no line reaches the node twice (the store
// would keep one copy, but live stats and tail would count it twice).
BOOST_AUTO_TEST_CASE(ingest_resends_exactly_the_lines_the_node_names_refused) {
  constexpr int N = 200;
  EveryOtherRefusingNode fake(/*names_refused=*/true);
  const Result r = ingest_into(fake, N);
  BOOST_TEST_CONTEXT("ingest: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status == 0);
    BOOST_TEST(ingest_counts(r.err).accepted == uint64_t(N));
    BOOST_TEST(contains(r.err, "100 lines posted again"));
  }
  BOOST_TEST(fake.posts == 2);
  BOOST_TEST(fake.received.size() == size_t(N));
  for (const auto& [line, times] : fake.received) BOOST_TEST(times == 1, "accepted " << times << " times: " << line);
}

// A node from before "refused" lists 50 of the 100 refused lines (0, 2, ..., 98). What became of
// lines 99..199 is unknown, so ingest resends the 50 listed and all 101 after them, counts each
// line accepted once, and nothing is lost; the 51 accepted twice (101, 103, ..., 199 and 99) are
// the price of the old answer, kept once by the store's request_id key.
BOOST_AUTO_TEST_CASE(ingest_resends_every_line_an_old_node_leaves_unknown) {
  constexpr int N = 200;
  EveryOtherRefusingNode fake(/*names_refused=*/false);
  const Result r = ingest_into(fake, N);
  BOOST_TEST_CONTEXT("ingest: " << r.err) {
    BOOST_REQUIRE(r.status.has_value());
    BOOST_TEST(*r.status == 0);
    const Counts n = ingest_counts(r.err);
    BOOST_TEST(n.accepted == uint64_t(N));
    BOOST_TEST(n.rejected == 0u);
    BOOST_TEST(contains(r.err, "151 lines posted again"));
  }
  BOOST_TEST(fake.posts == 2);
  BOOST_REQUIRE(fake.received.size() == size_t(N));  // every line got in
  std::map<int, int> times_by_line;
  for (const auto& [json, times] : fake.received) {
    const std::string path = nlohmann::json::parse(json).value("path", std::string());
    times_by_line[std::stoi(path.substr(std::string("/every-other/").size()))] = times;
  }
  BOOST_REQUIRE(times_by_line.size() == size_t(N));
  for (const auto& [i, times] : times_by_line)
    BOOST_TEST(times == (i >= 99 && i % 2 == 1 ? 2 : 1), "line " << i << " accepted " << times << " times");
}

// SIGTERM while the input is open and quiet (a FIFO whose writer stays): ingest publishes what it
// parsed, prints its counts and exits with 128 + the signal, promptly.
BOOST_AUTO_TEST_CASE(ingest_stops_promptly_on_sigterm_while_its_input_is_open) {
  TempDir dir;
  Served node(dir, "fifo");
  const std::string fifo = dir.sub("access.fifo");
  BOOST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const int writer = ::open(fifo.c_str(), O_RDWR);  // read-write: opening does not wait for a reader
  BOOST_REQUIRE(writer >= 0);
  std::string log;
  for (int i = 0; i < 20; ++i) log += combined("192.0.2.8", "/fifo/" + std::to_string(i), 200, i);
  log += "192.0.2.8 - - [14/Nov/2023:22:13:";  // and the start of a line
  BOOST_REQUIRE(::write(writer, log.data(), log.size()) == ssize_t(log.size()));
  Process ingest(reqbus_binary(), {"ingest", fifo, "--node-addr", node.addr(), "--batch", "5"});
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.live_total() == 20; }, 15s), ingest.err());
  ingest.signal(SIGTERM);
  const auto status = ingest.wait(5s);
  ::close(writer);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "ingest did not stop: " << ingest.err());
  BOOST_TEST(*status == 128 + SIGTERM);
  const Counts n = ingest_counts(ingest.err());
  BOOST_TEST(n.lines == 20u);
  BOOST_TEST(n.accepted == 20u);
  BOOST_TEST(n.unparsable == 0u);
  BOOST_TEST(contains(ingest.err(), "1 unfinished line"), ingest.err());
}

// A node that cannot be reached is tried again --retries times with growing pauses (100 of them:
// ~17 minutes); SIGTERM during a pause ends the run at once, with one line saying why.
BOOST_AUTO_TEST_CASE(ingest_stops_promptly_on_sigterm_while_it_waits_to_retry_the_node) {
  TempDir dir;
  const std::string file = dir.sub("one.log");
  write_file(file, combined("192.0.2.9", "/retry", 200));
  HangingUpNode node;  // each try is seen to fail
  Process ingest(reqbus_binary(), {"ingest", file, "--node-addr", node.addr(), "--retries", "100"});
  // A second try means the first failed and its pause began: ingest is retrying.
  BOOST_REQUIRE_MESSAGE(poll_until([&] { return node.connections() >= 2; }, 60s),
                        "ingest did not retry: " << ingest.err());
  BOOST_REQUIRE(ingest.running());
  ingest.signal(SIGTERM);
  const auto status = ingest.wait(5s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "ingest did not stop: " << ingest.err());
  BOOST_TEST(*status != 0);
  BOOST_TEST(contains(ingest.err(), "cannot reach"), ingest.err());
  BOOST_TEST(contains(ingest.err(), "stopped by SIGTERM while retrying"), ingest.err());
}

// `reqbus tail | head -n 1`: once head has its line and is gone, tail exits by itself, quietly
// (status 0), even when no further event comes to write.
BOOST_AUTO_TEST_CASE(tail_exits_quietly_when_its_reader_goes_away) {
  TempDir dir;
  Served node(dir, "pipe");
  // bash reports tail's own exit status; `timeout` ends a tail that never notices.
  Process pipeline("/bin/bash", {"-c", "timeout -s KILL 30 \"$0\" tail --insecure --peer \"$1\" | head -n 1; "
                                       "echo \"tail exit ${PIPESTATUS[0]}\" >&2",
                                 reqbus_binary(), node.endpoint});
  auto c = node.client();
  int probes = 0;
  BOOST_REQUIRE(poll_until([&] {
    const std::string probe = R"({"method":"GET","path":"/pipe/probe/)" + std::to_string(probes++) + R"(","status_code":200})";
    auto res = c.Post("/v1/requests", probe, "application/x-ndjson");
    BOOST_REQUIRE(res && res->status == 202);
    return contains(pipeline.out(), "/pipe/probe/");
  }, 30s));
  const auto status = pipeline.wait(5s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "tail did not exit after its reader went away: " << pipeline.err());
  BOOST_TEST(contains(pipeline.err(), "tail exit 0"), pipeline.err());
  BOOST_TEST(!contains(pipeline.err(), "Broken pipe"), pipeline.err());
}

// `reqbus ingest /var/log/nginx/` and read errors fail, naming the file, also with --follow.
BOOST_AUTO_TEST_CASE(ingest_fails_on_a_directory_and_on_read_errors) {
  TempDir dir;
  expect_one_line_error({"ingest", dir.str(), "--dry-run"}, dir.str() + " is a directory");
  expect_one_line_error({"ingest", dir.str(), "--follow", "--dry-run"}, dir.str() + " is a directory");
  // /proc/self/mem opens, and reading its first page fails (nothing is mapped at address 0).
  for (const bool follow : {false, true}) {
    std::vector<std::string> args{"ingest", "/proc/self/mem", "--dry-run"};
    if (follow) args.push_back("--follow");
    const Result r = run(args, 10s);
    BOOST_TEST_CONTEXT(joined(args) << ": " << r.err) {
      BOOST_REQUIRE(r.status.has_value());
      BOOST_TEST(*r.status == 1);
      BOOST_TEST(contains(r.err, "cannot read /proc/self/mem: Input/output error"));
    }
  }
}

// Ids of lines without a request_id: two different logs piped through stdin (same offsets, same
// whole seconds) are both stored; one file ingested under two spellings of its path is stored once.
BOOST_AUTO_TEST_CASE(ingest_ids_follow_the_file_not_its_spelling_and_the_line_not_only_its_place) {
  TempDir dir;
  Served node(dir, "ids");
  for (const std::string prefix : {"/ids/stdin-a/", "/ids/stdin-b/"}) {
    Process p(reqbus_binary(), {"ingest", "-", "--node-addr", node.addr()});
    std::string log;
    for (int i = 0; i < 5; ++i) log += combined("192.0.2.9", prefix + std::to_string(i), 200, i);
    BOOST_REQUIRE(p.write_stdin(log));
    p.close_stdin();
    BOOST_REQUIRE(p.wait(30s).value_or(-1) == 0);
    BOOST_TEST(ingest_counts(p.err()).accepted == 5u);
  }
  const std::string file = dir.sub("access.log");
  std::string log;
  for (int i = 0; i < 5; ++i) log += combined("192.0.2.9", "/ids/file/" + std::to_string(i), 200, i);
  write_file(file, log);
  for (const std::string& spelling : {file, dir.str() + "/./access.log"}) {
    const Result r = run({"ingest", spelling, "--node-addr", node.addr()});
    BOOST_REQUIRE_MESSAGE(r.status.value_or(-1) == 0, r.err);
    BOOST_TEST(ingest_counts(r.err).accepted == 5u);
  }
  node.stop();
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/ids/stdin-%'") == 10);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/ids/file/%'") == 5);
}

// identify / group / track events on the bus are printed too, one Segment message a line with
// its "type"; --path and --status select requests only, so they leave them out; --node selects
// them by their origin node like requests.
BOOST_AUTO_TEST_CASE(tail_prints_analytics_events_and_filters_them) {
  TempDir dir;
  Served node(dir, "seg");
  Process all(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint});
  Process by_node(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint, "--node", "seg"});
  Process by_path(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint, "--path", "/seg/"});
  Process by_status(reqbus_binary(), {"tail", "--insecure", "--peer", node.endpoint, "--status", "2xx"});
  const std::vector<Process*> tails{&all, &by_node, &by_path, &by_status};
  for (Process* t : tails) BOOST_REQUIRE(t->wait_for_stderr("subscribed", 20s));
  auto c = node.client();
  auto post_request = [&](const std::string& path) {
    auto res = c.Post("/v1/requests", R"({"method":"GET","path":")" + path + R"(","status_code":200})", "application/x-ndjson");
    BOOST_REQUIRE(res && res->status == 202);
  };
  // The tcp subscriptions become live asynchronously: probe until every tail shows one.
  int probes = 0;
  BOOST_REQUIRE(poll_until([&] {
    post_request("/seg/probe/" + std::to_string(probes++));
    return std::all_of(tails.begin(), tails.end(), [](Process* t) { return contains(t->out(), "/seg/probe/"); });
  }, 30s));
  const std::string batch = R"({"batch":[{"type":"identify","userId":"u9","traits":{"email":"x@y.z"}},)"
                            R"({"type":"group","userId":"u9","groupId":"acme"},)"
                            R"({"type":"track","userId":"u9","event":"Clicked","properties":{"button":"buy"}}]})";
  auto res = c.Post("/v1/batch", batch, "application/json");
  BOOST_REQUIRE(res);
  BOOST_REQUIRE_MESSAGE(res->status == 200, res->body);
  post_request("/seg/after");  // published after the batch: once a tail has it, it has seen the batch
  for (Process* t : tails) BOOST_REQUIRE_MESSAGE(t->wait_for_stdout("/seg/after", 30s), t->describe() << ": " << t->err());

  // The lines of a tail by kind: "type" for analytics events, "path" for requests.
  auto lines = [](Process& t) {
    std::vector<nlohmann::json> analytics;
    size_t requests = 0;
    const std::string out = t.out();
    for (const auto& line : split_lines(std::string_view(out).substr(0, out.rfind('\n') + 1))) {
      const auto j = nlohmann::json::parse(line, nullptr, false);
      BOOST_REQUIRE_MESSAGE(j.is_object(), "not a JSON object: " << line);
      if (j.contains("type")) analytics.push_back(j);
      else if (j.contains("path")) ++requests;
    }
    return std::pair{analytics, requests};
  };
  for (Process* t : {&all, &by_node}) {
    const auto [analytics, requests] = lines(*t);
    BOOST_TEST_CONTEXT(t->describe() << "\n" << t->out()) {
      BOOST_REQUIRE(analytics.size() == 3u);
      BOOST_TEST(analytics[0].value("type", "") == "identify");
      BOOST_TEST(analytics[0]["traits"].value("email", "") == "x@y.z");
      BOOST_TEST(analytics[1].value("type", "") == "group");
      BOOST_TEST(analytics[1].value("groupId", "") == "acme");
      BOOST_TEST(analytics[2].value("type", "") == "track");
      BOOST_TEST(analytics[2].value("event", "") == "Clicked");
      BOOST_TEST(analytics[2]["properties"].value("button", "") == "buy");
      for (const auto& a : analytics) {
        BOOST_TEST(a.value("userId", "") == "u9");
        BOOST_TEST(a["context"]["reqbus"].value("nodeId", "") == "seg");
      }
      BOOST_TEST(requests >= 2u);
    }
  }
  for (Process* t : {&by_path, &by_status}) {
    const auto [analytics, requests] = lines(*t);
    BOOST_TEST(analytics.empty(), t->describe() << "\n" << t->out());
    BOOST_TEST(requests >= 2u);
  }
  for (Process* t : tails) {
    t->signal(SIGTERM);
    BOOST_TEST(t->wait(10s).value_or(-1) == 0);
  }
  node.stop();
}

// The close summary counts the counter windows written over the node's life, not only those of
// the final flush at close ("counter windows 0" while /metrics said 22).
BOOST_AUTO_TEST_CASE(serve_summary_counts_counter_windows_over_the_nodes_life) {
  TempDir dir;
  Served node(dir, "windows", "[counters]\ninterval_ms = 50\njitter_ms = 0\n");
  auto c = node.client();
  uint64_t before_close = 0;
  int posted = 0;
  BOOST_REQUIRE(poll_until([&] {  // a window flushed while the node runs
    auto res = c.Post("/v1/requests", R"({"method":"GET","path":"/w/)" + std::to_string(posted++) + R"(","status_code":200})",
                      "application/x-ndjson");
    BOOST_REQUIRE(res && res->status == 202);
    before_close = node.metric("reqbus_counter_flushes_total");
    return before_close > 0;
  }, 30s, 100ms));
  node.stop();
  std::smatch m;
  const std::string out = node.process.out();
  BOOST_REQUIRE_MESSAGE(std::regex_search(out, m, std::regex(R"(counter windows (\d+) \((\d+) at close\))")), out);
  const uint64_t total = std::stoull(m[1]), at_close = std::stoull(m[2]);
  BOOST_TEST(total >= before_close + at_close, out);
  BOOST_TEST(total > at_close, out);
}

// Without a spool (--spool-dir '' or spool_dir = "") a batch the store cannot take is dropped:
// serve says so once at start. With a spool, or without a store, it says nothing.
BOOST_AUTO_TEST_CASE(serve_without_a_spool_warns_at_start) {
  TempDir dir;
  const std::string config = dir.sub("nospool.toml");
  write_file(config, "spool_dir = \"\"\n");
  const std::string warning = "no spool (--spool-dir / spool_dir is \"\"): events the store cannot take are dropped";
  for (const auto& more : {std::vector<std::string>{"--spool-dir", ""}, std::vector<std::string>{"--config", config}}) {
    std::vector<std::string> args{"serve", "--store", "sqlite:" + dir.sub("nospool.db"), "--http", "127.0.0.1:0"};
    args.insert(args.end(), more.begin(), more.end());
    Process serve(reqbus_binary(), args);
    BOOST_TEST_CONTEXT(joined(args)) {
      BOOST_REQUIRE_MESSAGE(serve.wait_for_stdout("dashboard:", 30s), serve.err());
      BOOST_TEST(serve.wait_for_stderr(warning, 10s), serve.err());
      serve.signal(SIGTERM);
      BOOST_REQUIRE(serve.wait(30s).value_or(-1) == 0);
      const auto err = split_lines(serve.err());
      BOOST_TEST(std::count_if(err.begin(), err.end(), [](const std::string& l) { return contains(l, "no spool"); }) == 1);
    }
  }
  Served with_spool(dir, "spooled");
  with_spool.stop();
  BOOST_TEST(!contains(with_spool.process.err(), "no spool"), with_spool.process.err());
}

BOOST_AUTO_TEST_SUITE_END()

// `reqbus top` on a terminal clears the screen between frames; on a terminal that cannot
// (TERM=dumb, or no TERM) it prints plain frames, as into a pipe.
BOOST_AUTO_TEST_SUITE(ProgramTop)

// A pseudo-terminal: the child's stdout is the slave (it is a TTY there); the test reads the master.
class Pty {
 public:
  Pty() {
    master_ = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    BOOST_REQUIRE(master_ >= 0);
    BOOST_REQUIRE(::grantpt(master_) == 0);
    BOOST_REQUIRE(::unlockpt(master_) == 0);
    path_ = ::ptsname(master_);
    // Held open, so that the master never reads EIO between the child's writes and its exit.
    slave_ = ::open(path_.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    BOOST_REQUIRE(slave_ >= 0);
  }
  ~Pty() {
    ::close(slave_);
    ::close(master_);
  }
  const std::string& path() const { return path_; }
  // What was written to the slave, read until it holds `needle` (or `timeout` passed).
  std::string read_until(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!contains(read_, needle) && std::chrono::steady_clock::now() < deadline) {
      pollfd p{master_, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      char buf[4096];
      const ssize_t n = ::read(master_, buf, sizeof buf);
      if (n > 0) read_.append(buf, size_t(n));
    }
    return read_;
  }

 private:
  int master_ = -1, slave_ = -1;
  std::string path_, read_;
};

BOOST_AUTO_TEST_CASE(top_clears_the_screen_only_on_a_terminal_that_understands_it) {
  httplib::Server stats;
  stats.Get("/api/stats", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"self":"pty-node","total":7,"series":[],"status":{"200":7},"top_paths":[["/p",7]]})", "application/json");
  });
  const int port = stats.bind_to_any_port("127.0.0.1");
  BOOST_REQUIRE(port > 0);
  std::thread server([&] { stats.listen_after_bind(); });
  // The terminal's TERM: a value, or "-" for none.
  for (const std::string term : {"xterm", "dumb", "", "-"}) {
    Pty pty;
    const std::string set_term = term == "-" ? "unset TERM" : "export TERM='" + term + "'";
    Process top("/bin/sh", {"-c", set_term + "; exec \"$0\" top --node-addr \"$1\" --iterations 1 > \"$2\"",
                            reqbus_binary(), "127.0.0.1:" + std::to_string(port), pty.path()});
    BOOST_TEST_CONTEXT("TERM " << term << ": " << top.err()) {
      BOOST_REQUIRE(top.wait(30s).value_or(-1) == 0);
      // The frame's last row: the terminal is a stream, so all before it has been read too.
      const std::string out = pty.read_until("  /p", 10s);
      BOOST_REQUIRE(contains(out, "reqbus top"));
      BOOST_REQUIRE(contains(out, "  /p"));
      BOOST_TEST(contains(out, "\x1b[H\x1b[2J") == (term == "xterm"));
      BOOST_TEST(!contains(out.substr(out.find("reqbus top")), "\x1b"));
    }
  }
  stats.stop();
  server.join();
}

size_t occurrences(const std::string& s, const std::string& needle) {
  size_t n = 0;
  for (size_t at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

// The node top watches restarts: top says once (its output is a pipe) since when the node is
// unreachable, keeps asking at --interval, and shows the new node's frames once it answers.
BOOST_AUTO_TEST_CASE(top_rides_out_a_restart_of_its_node) {
  TempDir dir;
  const std::string http = "127.0.0.1:" + std::to_string(port_outside_ephemeral_range(SOCK_STREAM));
  auto before = std::make_unique<Served>(dir, "top-before", "", http);
  Process top(reqbus_binary(), {"top", "--node-addr", http, "--interval", "0.2"});
  BOOST_REQUIRE_MESSAGE(top.wait_for_stdout("node top-before", 30s), top.out() << top.err());
  before->stop();
  before.reset();
  BOOST_REQUIRE_MESSAGE(top.wait_for_stdout("node unreachable since", 30s), "stdout: " << top.out() << "\nstderr: " << top.err());
  // Some failed tries: still running, and it said so once.
  BOOST_REQUIRE_MESSAGE(!top.wait(1s).has_value(), "top exited: " << top.err());
  Served after(dir, "top-after", "", http);
  BOOST_REQUIRE_MESSAGE(top.wait_for_stdout("node top-after", 30s), "stdout: " << top.out() << "\nstderr: " << top.err());
  top.signal(SIGTERM);
  const auto status = top.wait(10s);
  BOOST_REQUIRE(status.has_value());
  BOOST_TEST(*status == 0, top.err());
  const std::string out = top.out();
  BOOST_TEST_CONTEXT("stdout: " << out << "\nstderr: " << top.err()) {
    BOOST_TEST(occurrences(out, "node unreachable since") == 1u);
    BOOST_TEST(std::regex_search(out, std::regex(R"(reqbus top — node unreachable since \d\d:\d\d:\d\d \(connection refused[^)]*\); retrying every 0\.2 s\n)")));
    BOOST_TEST(out.rfind("node top-before") < out.find("node unreachable"));
    BOOST_TEST(out.find("node unreachable") < out.find("node top-after"));
    BOOST_TEST(top.err().empty());
  }
}

// What top makes of each answer: a 5xx (a node starting or stopping, a proxy in front of it) is
// an outage to wait out, and --iterations counts those tries too; a 404 after that (a wrong
// address or --filter) is an error, as at the first refresh. Nothing listening at the first
// refresh is an error too: a wrong address fails fast.
BOOST_AUTO_TEST_CASE(top_waits_out_a_5xx_and_stops_at_a_404) {
  // The answers, in turn: a frame (n0), 503, 503 | a frame (n3), 503, a frame (n5), 404.
  std::atomic<int> gets{0};
  httplib::Server stats;
  stats.Get("/api/stats", [&](const httplib::Request&, httplib::Response& res) {
    const int n = gets++;
    if (n == 0 || n == 3 || n == 5) res.set_content(R"({"self":"n)" + std::to_string(n) + R"(","total":1})", "application/json");
    else if (n < 6) res.status = 503;
    else res.status = 404;
  });
  const int port = stats.bind_to_any_port("127.0.0.1");
  BOOST_REQUIRE(port > 0);
  std::thread server([&] { stats.listen_after_bind(); });
  const std::string addr = "127.0.0.1:" + std::to_string(port);

  const Result three = run({"top", "--node-addr", addr, "--interval", "0.1", "--iterations", "3"});
  BOOST_TEST_CONTEXT("stdout: " << three.out << "\nstderr: " << three.err) {
    BOOST_REQUIRE(three.status.has_value());
    BOOST_TEST(*three.status == 0);
    BOOST_TEST(gets == 3);
    BOOST_TEST(occurrences(three.out, "node unreachable since") == 1u);
    BOOST_TEST(contains(three.out, "(answered 503); retrying every 0.1 s\n"));
    BOOST_TEST(three.out.find("node n0") < three.out.find("node unreachable"));
  }
  const Result until_404 = run({"top", "--node-addr", addr, "--interval", "0.1"});
  BOOST_TEST_CONTEXT("stdout: " << until_404.out << "\nstderr: " << until_404.err) {
    BOOST_REQUIRE(until_404.status.has_value());
    BOOST_TEST(*until_404.status == 1);
    BOOST_TEST(until_404.err == "reqbus: top: " + addr + " answered 404\n");
    BOOST_TEST(occurrences(until_404.out, "node unreachable since") == 1u);
    BOOST_TEST(until_404.out.find("node n3") < until_404.out.find("node unreachable"));
    BOOST_TEST(until_404.out.find("node unreachable") < until_404.out.find("node n5"));
    BOOST_TEST(contains(until_404.out, "node n5"));
  }
  stats.stop();
  server.join();
  expect_one_line_error({"top", "--node-addr", addr, "--interval", "0.1"}, "top: cannot reach http://" + addr);
}

BOOST_AUTO_TEST_SUITE_END()
