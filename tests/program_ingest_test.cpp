// `reqbus ingest` end to end against a real `reqbus serve`: each accepted line stored once, also
// when ingested twice, under another spelling of its path or from a copytruncate copy; --follow
// across rotations, waiting for a missing file, quiet progress into a pipe; unfinished and
// too-long lines at SIGTERM; lines the node's bus refused are resent; SIGTERM, directories and
// read errors; bad lines counted; a dry run that connects to no node; its LineReader on a file.
#include <boost/test/unit_test.hpp>

#include "tests/support/program.hpp"

using namespace reqbus::test;
using namespace std::chrono_literals;

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
  std::string log = combined_lines("192.0.2.20", "/dry/", 0, 5);
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

BOOST_AUTO_TEST_SUITE(ProgramIngest)

BOOST_AUTO_TEST_CASE(ingest_follow_reads_across_a_rotation) {
  TempDir dir;
  Served node(dir, "rot");
  const std::string file = dir.sub("access.log");
  std::string first = combined_lines("198.51.100.1", "/rot/old/", 0, 20);
  write_file(file, first);

  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  await_total(node, 20, follow);

  // logrotate's "create" mode: rename, the writer finishes a line into the old file, a new file.
  std::filesystem::rename(file, file + ".1");
  std::string late = combined_lines("198.51.100.1", "/rot/old/", 20, 23);
  write_file(file + ".1", late, std::ios::app);
  std::string fresh = combined_lines("198.51.100.2", "/rot/new/", 0, 7, 404);
  write_file(file, fresh);
  await_total(node, 30, follow);
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
  std::string first = combined_lines("198.51.100.3", "/copy/old/", 0, 10);
  write_file(file, first);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  await_total(node, 10, follow);

  std::filesystem::copy_file(file, file + ".1");
  write_file(file, "");  // truncated in place
  std::string fresh = combined_lines("198.51.100.3", "/copy/new/", 0, 4);
  write_file(file, fresh, std::ios::app);
  await_total(node, 14, follow);
  BOOST_TEST(stop_follower(follow).accepted == 14u);

  const Result backfill = run({"ingest", file + ".1", "--node-addr", node.addr()});
  BOOST_REQUIRE_MESSAGE(backfill.status.value_or(-1) == 0, backfill.err);
  BOOST_TEST(ingest_counts(backfill.err).accepted == 10u);  // taken by the node; the store keeps one
  BOOST_REQUIRE(poll_until([&] { return node.live_total() == 24; }, 30s));
  expect_stored_once(node, 14);
}

// A log emptied and written again past where the follower had read, between two of its reads
// (a truncate and a fast writer, or a log replaced by an `>` redirect): its size never looks
// shorter. The follower used to read on from its old offset, in the middle of the new lines (lost,
// and one counted unparsable); it now sees that the bytes before its offset changed and starts over.
BOOST_AUTO_TEST_CASE(ingest_follow_starts_over_when_the_file_is_rewritten_past_its_offset) {
  TempDir dir;
  Served node(dir, "rewrite");
  const std::string file = dir.sub("access.log");
  write_file(file, combined_lines("198.51.100.5", "/rewrite/old/", 0, 10));
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr(), "--batch", "5"});
  await_total(node, 10, follow);

  write_file(file, combined_lines("198.51.100.6", "/rewrite/new/", 0, 30));  // O_TRUNC, then 3x the size
  await_total(node, 40, follow);
  const Counts n = stop_follower(follow);
  BOOST_TEST(n.accepted == 40u);
  BOOST_TEST(n.unparsable == 0u);
  expect_stored_once(node, 40);
  Db db(node.db);
  BOOST_TEST(db.scalar("SELECT count(DISTINCT path) FROM requests WHERE path LIKE '/rewrite/new/%'") == 30);
}

// logrotate's "create" mode on a busy server: the rename, a new file that is already being written
// and read, and the writer still appending to the renamed file until postrotate signals it (50-500
// ms later). Every line arrives once.
BOOST_AUTO_TEST_CASE(ingest_follow_keeps_reading_the_renamed_file_after_switching) {
  TempDir dir;
  Served node(dir, "drain");
  const std::string file = dir.sub("access.log");
  std::string first = combined_lines("198.51.100.3", "/drain/old/", 0, 10);
  write_file(file, first);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  await_total(node, 10, follow);

  std::filesystem::rename(file, file + ".1");
  std::string fresh = combined_lines("198.51.100.4", "/drain/new/", 0, 5);
  write_file(file, fresh);
  // The new file's lines arrived: ingest has switched to it.
  await_total(node, 15, follow);
  std::string late = combined_lines("198.51.100.3", "/drain/old/", 10, 14);
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
  std::string log = combined_lines("198.51.100.5", "/cut/", 0, 3);
  const std::string whole = combined("198.51.100.5", "/cut/3", 200, 3);
  log += whole.substr(0, whole.find("Firefox"));  // the writer is in the middle of the user agent
  write_file(file, log);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  await_total(node, 3, follow);
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
  std::string log = combined_lines("198.51.100.6", "/long/", 0, 3);
  log += std::string(2 << 20, 'x');  // no newline yet
  write_file(file, log);
  Process follow(reqbus_binary(), {"ingest", file, "--follow", "--node-addr", node.addr()});
  await_total(node, 3, follow);
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

  std::string first = combined_lines("198.51.100.7", "/late/", 0, 8);
  write_file(file, first);
  await_total(node, 8, follow);
  std::string more = combined_lines("198.51.100.7", "/late/", 8, 12);
  write_file(file, more, std::ios::app);
  await_total(node, 12, follow);

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
  std::string log = combined_lines("192.0.2.8", "/fifo/", 0, 20);
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
  std::string log = combined_lines("192.0.2.9", "/ids/file/", 0, 5);
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

BOOST_AUTO_TEST_SUITE_END()
