// The `reqbus` program as separate processes: --help on every subcommand, bad flags and bad
// config (one line on stderr naming the problem, non-zero exit), library and CLI11 errors named by
// flag, a port in use, tail giving up at its timeout; `demo` (the database holds the rows it
// reported; it refuses a --db that is not its own).
#include <boost/test/unit_test.hpp>

#include "tests/support/program.hpp"

using namespace reqbus::test;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(ProgramCli)

BOOST_AUTO_TEST_CASE(help_for_the_program_and_every_subcommand_exits_0) {
  const Result top = run({"--help"});
  BOOST_REQUIRE(top.status.has_value());
  BOOST_TEST(*top.status == 0);
  for (const char* sub : {"demo", "serve", "ingest", "tail", "top", "recount"}) BOOST_TEST(contains(top.out, sub), sub);
  for (const char* sub : {"demo", "serve", "ingest", "tail", "top", "recount"}) {
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

// recount: its days are checked before the store is opened; a store that is not there is not
// created. A whole run is tested in recount_test.
BOOST_AUTO_TEST_CASE(recount_refuses_bad_days_and_missing_stores) {
  TempDir dir;
  const std::string db = "sqlite:" + dir.sub("stored.db");
  expect_one_line_error({"recount", "--store", db}, "recount: which days?");
  expect_one_line_error({"recount", "--store", db, "--day", "2026-02-30"}, "recount: --day '2026-02-30': not a day");
  expect_one_line_error({"recount", "--store", db, "--from", "2026-01-02"}, "recount: --from and --to go together");
  expect_one_line_error({"recount", "--store", db, "--from", "2026-01-02", "--to", "2026-01-01"}, "is before --from");
  expect_one_line_error({"recount", "--store", db, "--day", "9999-12-31"}, "9999-12-31 has not begun (UTC)");
  expect_one_line_error({"recount", "--store", db, "--day", "2026-01-01"}, "no such database file");
  BOOST_TEST(!std::filesystem::exists(dir.sub("stored.db")));
  expect_one_line_error({"recount", "--store", "redis:x", "--day", "2026-01-01"}, "is not sqlite:PATH or postgres:CONNINFO");
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
  BOOST_TEST(contains(waiting.err(), "; not connected"), waiting.err());
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
  BOOST_TEST(contains(gave_up.err, "within --timeout 0.5s; not connected ("), gave_up.err);
  BOOST_TEST(contains(gave_up.err, "connection refused)"), gave_up.err);
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
  // An allowed key on a quiet node: connected, nothing published.
  const Result quiet = run({"tail", "--curve-secret", dir.sub("allowed.key"), "--peer", endpoint + "#" + node_key, "--timeout", "2"});
  BOOST_REQUIRE(quiet.status.has_value());
  BOOST_TEST(*quiet.status == 1);
  BOOST_TEST(contains(quiet.err, "connected, but nothing was published on topic 'requests' since"), quiet.err);
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
