// `reqbus serve` with `ingest` and `tail` on loopback (each accepted line stored once, tail's
// stream and filters, `tail | head` exits, analytics events printed), serve's close summary,
// no-spool warning and refusal of a spool directory another node holds; `reqbus top` (escapes
// only on a terminal that understands them, no control bytes from request paths, riding out a
// restart of its node, 5xx waited out, 404 fatal).
#include <boost/test/unit_test.hpp>

#include "analytics/spool.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/program.hpp"

using namespace reqbus::test;
using namespace std::chrono_literals;

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

// What an earlier run left in the spool is replayed at start and said in the close summary,
// apart from what this run persisted itself.
BOOST_AUTO_TEST_CASE(serve_summary_says_what_it_replayed_from_the_spool) {
  TempDir dir;
  {
    reqbus::detail::SpoolOptions so;
    so.dir = dir.sub("replay-spool");
    reqbus::detail::Spool spool(so);
    std::vector<reqbus::Message> batch(5);
    for (size_t i = 0; i < batch.size(); ++i) {
      reqbus::RequestLog& r = batch[i].request;
      batch[i].kind = reqbus::MessageKind::request_sent;
      r.request_id = reqbus::uuid_v7();
      r.method = "GET";
      r.path = "/replayed/" + std::to_string(i);
      r.status_code = 200;
      r.inserted_at = 1'765'000'000'000'000 + int64_t(i);
      r.node_id = "earlier-run";
    }
    BOOST_REQUIRE((spool.append(batch) == reqbus::detail::SpoolAppend::ok));
  }
  Served node(dir, "replay");
  BOOST_REQUIRE(poll_until([&] { return node.metric("reqbus_batcher_replayed_total") == 5; }, 30s));
  node.stop();
  const std::string out = node.process.out();
  BOOST_TEST(contains(out, "persisted 0, spooled 0, replayed from the spool 5"), out);
  BOOST_TEST(!contains(out, "left in the spool"), out);
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(*) FROM requests WHERE path LIKE '/replayed/%'") == 5);
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

// Two nodes on one spool directory would replay and delete each other's batches. The second
// `reqbus serve` is refused with one line naming the directory and the first's pid, before it
// opens its store or binds (its --insecure bus would log a warning); the first keeps serving.
// A node killed with SIGKILL leaves its lock file, which blocks nobody.
BOOST_AUTO_TEST_CASE(a_second_serve_on_a_spool_dir_in_use_is_refused_and_the_first_keeps_serving) {
  TempDir dir;
  Served first(dir, "first");
  const std::string spool = dir.sub("first-spool"), second_db = dir.sub("second.db");
  expect_one_line_error({"serve", "--node-id", "second", "--store", "sqlite:" + second_db, "--bind",
                         "tcp://127.0.0.1:*", "--insecure", "--http", "127.0.0.1:0", "--spool-dir", spool},
                        "reqbus: spool: " + spool + " is in use by another process (pid " +
                            std::to_string(first.process.pid()) + ")");
  BOOST_TEST(!std::filesystem::exists(second_db));  // its store was never opened

  auto c = first.client();
  auto res = c.Post("/v1/requests", R"({"method":"GET","path":"/after-refusal","status_code":200})",
                    "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  BOOST_TEST(poll_until([&] { return Db(first.db).scalar("SELECT count(*) FROM requests") == 1; }, 30s));
  res = c.Get("/healthz");
  BOOST_TEST((res && res->status == 200));

  first.process.kill();
  BOOST_REQUIRE(first.process.wait(30s).has_value());
  BOOST_TEST(std::filesystem::exists(spool + "/LOCK"));
  Served restarted(dir, "first");  // the same store and spool directory
  expect_stored_once(restarted, 1);
}

// A shutdown waiting on a store that cannot take its events (a SQLite file another connection
// holds locked; a 60 s close deadline; no stall check and retries enough for the minute, so the
// batch waits in memory until the deadline). `serve` with the database locked, on Served's
// paths (so that a Served on them is its next start). The store's lock is held from before the
// events come until release().
struct LockedStore {
  static std::string config(const TempDir& dir) {
    const std::string path = dir.sub("patient.toml");
    write_file(path, "[batcher]\nstall_timeout_ms = 0\nretry_max_attempts = 1000\n");
    return path;
  }
  explicit LockedStore(const TempDir& dir)
      : db(dir.sub("n.db")),
        serve(reqbus_binary(), {"serve", "--config", config(dir), "--node-id", "n", "--store", "sqlite:" + db, "--http",
                                "127.0.0.1:0", "--spool-dir", dir.sub("n-spool"), "--close-timeout-ms", "60000"}) {
    BOOST_REQUIRE_MESSAGE(serve.wait_for_stdout("dashboard:", 30s), serve.err());
    const std::string out = serve.out();
    port = std::stoi(out.substr(out.find(':', out.find("http://") + 7) + 1));
    BOOST_REQUIRE(sqlite3_open(db.c_str(), &holder) == SQLITE_OK);
    BOOST_REQUIRE(sqlite3_exec(holder, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  ~LockedStore() { release(); }
  void release() {
    if (!holder) return;
    sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(holder);
    holder = nullptr;
  }
  void post(int n) {
    httplib::Client c("127.0.0.1", port);
    std::string body;
    for (int i = 0; i < n; ++i)
      body += R"({"method":"GET","path":"/held/)" + std::to_string(i) + R"(","status_code":200})" + "\n";
    auto res = c.Post("/v1/requests", body, "application/x-ndjson");
    BOOST_REQUIRE(res);
    BOOST_REQUIRE(res->status == 202);
  }
  // SIGTERM, then checks the close is still waiting for the store 6 s later (past SQLite's 5 s
  // busy wait: the write failed once and is retried).
  void stop_and_see_it_wait() {
    serve.signal(SIGTERM);
    BOOST_REQUIRE(serve.wait_for_stdout("another signal cuts it short", 10s));
    BOOST_REQUIRE(!serve.wait(6s).has_value());
  }

  std::string db;
  Process serve;
  int port = 0;
  sqlite3* holder = nullptr;
};

// A second signal cuts the close short: what is not stored goes to the spool at once, the
// summary says so, the status is 128 + 15, and the next start stores every event once.
BOOST_AUTO_TEST_CASE(a_second_signal_spools_what_is_unwritten_and_finishes_at_once) {
  TempDir dir;
  LockedStore node(dir);
  node.post(30);
  node.stop_and_see_it_wait();
  const auto asked = std::chrono::steady_clock::now();
  node.serve.signal(SIGTERM);
  const auto status = node.serve.wait(10s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "serve did not finish on the second signal: " << node.serve.err());
  BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s));
  BOOST_TEST(*status == 128 + SIGTERM);
  BOOST_TEST(contains(node.serve.err(), "reqbus serve: signal 15 during shutdown: finishing now: events not yet "
                                        "stored go to the spool (" + dir.sub("n-spool") + ")"),
             node.serve.err());
  BOOST_TEST(contains(node.serve.out(), "persisted 0, spooled 30"), node.serve.out());
  node.release();
  Served next(dir, "n");
  BOOST_REQUIRE(poll_until([&] { return next.metric("reqbus_batcher_replayed_total") == 30; }, 30s));
  expect_stored_once(next, 30);
}

// A third signal (the second during the shutdown's hurry) ends the process at once, saying what
// that gives up.
BOOST_AUTO_TEST_CASE(a_third_signal_exits_at_once) {
  TempDir dir;
  LockedStore node(dir);
  node.post(10);
  node.stop_and_see_it_wait();
  // Both pending at once (sent while it is stopped): the watcher takes SIGINT first (the lower
  // number), hurries, then takes SIGTERM before the hurried close can finish.
  node.serve.signal(SIGSTOP);
  node.serve.signal(SIGINT);
  node.serve.signal(SIGTERM);
  node.serve.signal(SIGCONT);
  const auto status = node.serve.wait(10s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), node.serve.err());
  BOOST_TEST(*status == 128 + SIGTERM);
  BOOST_TEST(contains(node.serve.err(), "reqbus serve: signal 2 during shutdown: finishing now"), node.serve.err());
  BOOST_TEST(contains(node.serve.err(), "reqbus serve: signal 15: exiting now; events not yet stored or spooled are "
                                        "lost; the spool (" + dir.sub("n-spool") + ") keeps what it has for the next start; no summary is printed"),
             node.serve.err());
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

// top names each of the node's peers and publish_to endpoints that is not connected, one line
// each, with what the node knows (its text made safe for the terminal), and not the ones that are.
BOOST_AUTO_TEST_CASE(top_names_the_links_that_are_down) {
  httplib::Server stats;
  stats.Get("/api/stats", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"self":"n1","total":3,
      "peers":[{"endpoint":"tcp://10.0.0.9:7400","connected":false,"since":0,"connect_failures":7,"last_failure":"connection refused"},
               {"endpoint":"tcp://10.0.0.8:7400","connected":true,"since":0,"connect_failures":0,"last_failure":""}],
      "uplinks":[{"endpoint":"tcp://fwd:7401\u001b[2J","connected":false,"since":0,"connect_failures":0,"last_failure":"disconnected","events_unsent":12}]})",
                    "application/json");
  });
  const int port = stats.bind_to_any_port("127.0.0.1");
  BOOST_REQUIRE(port > 0);
  std::thread server([&] { stats.listen_after_bind(); });
  const Result one = run({"top", "--node-addr", "127.0.0.1:" + std::to_string(port), "--iterations", "1"});
  stats.stop();
  server.join();
  BOOST_TEST_CONTEXT("stdout: " << one.out << "\nstderr: " << one.err) {
    BOOST_REQUIRE(one.status.has_value());
    BOOST_TEST(*one.status == 0);
    BOOST_TEST(std::regex_search(one.out, std::regex(R"(\n! peer tcp://10\.0\.0\.9:7400 not connected since \d\d:\d\d:\d\d \(7 failed attempts, last: connection refused\)\n)")));
    BOOST_TEST(std::regex_search(one.out, std::regex(R"(\n! publish_to tcp://fwd:7401.*not connected since \d\d:\d\d:\d\d \(disconnected\); 12 events not sent to it\n)")));
    BOOST_TEST(!contains(one.out, "10.0.0.8"));
    BOOST_TEST(!contains(one.out, "\x1b"));
  }
}

BOOST_AUTO_TEST_SUITE_END()
