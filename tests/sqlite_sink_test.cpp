// SqliteSink against real SQLite files in a temporary directory.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <fstream>
#include <optional>
#include <thread>

#include "analytics/sinks/schema.hpp"
#include "reqbus/error.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/hanging_sink.hpp"

namespace boost::test_tools::tt_detail {
template <>
struct print_log_value<std::optional<std::string>> {
  void operator()(std::ostream& os, const std::optional<std::string>& v) {
    if (v) os << '"' << *v << '"';
    else os << "NULL";
  }
};
}  // namespace boost::test_tools::tt_detail

using namespace reqbus;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "reqbus-sqlite-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

// A second, independent connection, to look at what the sink stored.
class Db {
 public:
  explicit Db(const std::string& path) {
    BOOST_REQUIRE_EQUAL(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  ~Db() { sqlite3_close(db_); }
  void exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    std::string msg = err ? err : "";
    sqlite3_free(err);
    BOOST_REQUIRE_MESSAGE(rc == SQLITE_OK, sql << ": " << msg);
  }
  // Every row of a query, every column as text (NULL -> nullopt), embedded NULs kept.
  std::vector<std::vector<std::optional<std::string>>> rows(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK,
                          sqlite3_errmsg(db_));
    std::vector<std::vector<std::optional<std::string>>> out;
    while (sqlite3_step(s) == SQLITE_ROW) {
      auto& row = out.emplace_back();
      for (int c = 0; c < sqlite3_column_count(s); ++c) {
        if (sqlite3_column_type(s, c) == SQLITE_NULL) {
          row.emplace_back();
          continue;
        }
        auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, c));
        row.emplace_back(std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, c))));
      }
    }
    sqlite3_finalize(s);
    return out;
  }
  std::string one(const std::string& sql) {
    auto r = rows(sql);
    BOOST_REQUIRE_EQUAL(r.size(), 1u);
    return r[0][0].value_or("NULL");
  }
  int64_t count(const std::string& table) { return std::stoll(one("SELECT count(*) FROM " + table)); }

 private:
  sqlite3* db_ = nullptr;
};

RequestLog request(int i, const std::string& node = "node-a") {
  RequestLog r;
  r.request_id = uuid_v7();
  r.method = i % 3 ? "GET" : "POST";
  r.path = "/page/" + std::to_string(i);
  r.status_code = static_cast<uint16_t>(200 + i % 5);
  r.duration_ms = 1.25 + i;
  r.user_agent = "Mozilla/5.0 (X11; Linux x86_64)";
  r.remote_ip = "203.0.113." + std::to_string(i % 250);
  r.referer = "https://example.com/";
  r.device_type = "desktop";
  r.session_id = "s-" + std::to_string(i / 3);
  r.session_page_views = static_cast<uint32_t>(i % 7);
  r.inserted_at = 1'700'000'000'000'000 + i;
  r.node_id = node;
  r.seq = static_cast<uint64_t>(i + 1);
  return r;
}

Message msg(RequestLog r) {
  Message m;
  m.kind = MessageKind::request_sent;
  m.request = std::move(r);
  return m;
}

Message msg(AnalyticsEvent e) {
  Message m;
  m.kind = static_cast<MessageKind>(e.type);
  m.analytics = std::move(e);
  return m;
}

// A minimal track event with a fresh message id.
AnalyticsEvent track_event() {
  AnalyticsEvent t;
  t.type = AnalyticsType::track;
  t.message_id = uuid_v7();
  t.user_id = "u";
  t.event = "e";
  t.timestamp = 1;
  return t;
}

std::vector<Message> requests(int n, int first = 0) {
  std::vector<Message> batch;
  for (int i = first; i < first + n; ++i) batch.push_back(msg(request(i)));
  return batch;
}

SqliteSinkOptions options_for(const std::string& path) {
  SqliteSinkOptions o;
  o.path = path;
  return o;
}

// The request row as the sink stored it, in schema column order.
std::vector<std::optional<std::string>> stored_request(Db& db, const std::string& id) {
  auto r = db.rows("SELECT " + schema::column_list(schema::requests_table()) +
                   " FROM requests WHERE request_id = '" + id + "'");
  BOOST_REQUIRE_EQUAL(r.size(), 1u);
  return r[0];
}

// Runs the body with this thread's filesystem uid set to `nobody`, so that file permissions
// apply even when the test runs as root (setfsuid is per thread on Linux).
template <class F>
void as_unprivileged(F&& body) {
  const bool root = ::geteuid() == 0;
  if (root) ::setfsuid(65534);
  try {
    body();
  } catch (...) {
    if (root) ::setfsuid(0);
    throw;
  }
  if (root) ::setfsuid(0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sqlite_sink)

BOOST_AUTO_TEST_CASE(options_are_validated) {
  BOOST_CHECK_THROW(SqliteSink(SqliteSinkOptions{}), Error);
  SqliteSinkOptions o = options_for("/tmp/x.db");
  o.busy_timeout = -1ms;
  try {
    SqliteSink sink(o);
    BOOST_FAIL("negative busy_timeout accepted");
  } catch (const Error& e) {
    BOOST_TEST((e.code() == ErrorCode::invalid_argument));
    BOOST_TEST(std::string(e.what()).find("busy_timeout") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(schema_created_on_first_use_and_version_recorded) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  auto clock = std::make_shared<ManualClock>(1'700'000'000'000'000);
  SqliteSinkOptions o = options_for(path);
  o.clock = clock;
  SqliteSink sink(o);
  BOOST_TEST(!fs::exists(path));  // nothing touched before the first use
  BOOST_REQUIRE(sink.write(requests(1), 5s).ok());

  Db db(path);
  BOOST_TEST(db.one("SELECT count(*) FROM schema_migrations") == "4");
  BOOST_TEST(db.one("SELECT max(version) FROM schema_migrations") == "4");
  BOOST_TEST(db.one("SELECT count(DISTINCT applied_at) FROM schema_migrations") == "1");
  BOOST_TEST(db.one("SELECT max(applied_at) FROM schema_migrations") == "1700000000000000");
  for (const char* t : {"requests", "events", "counters", "counter_flushes"})
    BOOST_TEST(db.one(std::string("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='") +
                      t + "'") == "1");
  BOOST_TEST(db.one("SELECT count(*) FROM sqlite_master WHERE name='requests_inserted_at'") == "1");
  BOOST_TEST(db.one("SELECT count(*) FROM sqlite_master WHERE name='events_timestamp'") == "1");
  BOOST_TEST(db.one("PRAGMA journal_mode") == "wal");
  BOOST_TEST(sink.name() == "sqlite:" + path);
}

BOOST_AUTO_TEST_CASE(reopening_does_not_rerun_migrations) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  auto clock = std::make_shared<ManualClock>(1'700'000'000'000'000);
  SqliteSinkOptions o = options_for(path);
  o.clock = clock;
  {
    SqliteSink sink(o);
    BOOST_REQUIRE(sink.write(requests(3), 5s).ok());
  }
  clock->advance(std::chrono::hours(1));
  {
    SqliteSink sink(o);
    BOOST_REQUIRE(sink.open(5s).ok());
    BOOST_REQUIRE(sink.write(requests(2, 3), 5s).ok());
  }
  Db db(path);
  BOOST_TEST(db.one("SELECT count(*) FROM schema_migrations") == "4");
  BOOST_TEST(db.one("SELECT max(applied_at) FROM schema_migrations") == "1700000000000000");
  BOOST_TEST(db.count("requests") == 5);
}

BOOST_AUTO_TEST_CASE(mixed_batch_stored_exactly) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));

  RequestLog r = request(42);
  AnalyticsEvent identify;
  identify.type = AnalyticsType::identify;
  identify.message_id = uuid_v7();
  identify.user_id = "user-1";
  identify.timestamp = 1'700'000'000'123'456;
  identify.email = "ada@example.com";
  identify.timezone = "Europe/Paris";
  identify.traits_json = R"({"plan":"pro","seats":3})";
  identify.node_id = "node-a";
  identify.seq = 43;
  AnalyticsEvent group;
  group.type = AnalyticsType::group;
  group.message_id = uuid_v7();
  group.user_id = "user-1";
  group.timestamp = 1'700'000'000'223'456;
  group.account_id = "acct-9";
  group.name = "Initech";
  group.traits_json = R"({"industry":"software"})";
  group.node_id = "node-a";
  group.seq = 44;
  AnalyticsEvent track;
  track.type = AnalyticsType::track;
  track.message_id = uuid_v7();
  track.user_id = "user-2";
  track.timestamp = 1'700'000'000'323'456;
  track.event = "Signed Up";
  track.properties_json = R"({"source":"ad"})";
  track.node_id = "node-b";
  track.seq = 7;

  BOOST_REQUIRE(sink.write({msg(r), msg(identify), msg(group), msg(track)}, 5s).ok());

  Db db(path);
  BOOST_TEST(db.count("requests") == 1);
  BOOST_TEST(db.count("events") == 3);
  auto row = stored_request(db, r.request_id);
  std::vector<std::optional<std::string>> expected{
      r.request_id, r.method, r.path, std::to_string(r.status_code), "43.25", r.user_agent,
      r.remote_ip, r.referer, r.device_type, r.session_id, std::to_string(r.session_page_views),
      std::to_string(r.inserted_at), r.node_id, std::to_string(r.seq)};
  BOOST_TEST(row == expected, boost::test_tools::per_element());
  BOOST_TEST(db.one("SELECT typeof(duration_ms) FROM requests") == "real");

  auto events = db.rows("SELECT " + schema::column_list(schema::events_table()) +
                        " FROM events ORDER BY seq");
  using O = std::optional<std::string>;
  std::vector<std::vector<O>> want{
      {track.message_id, "track", "user-2", "1700000000323456", "Signed Up", O{}, O{}, O{}, O{},
       O{}, track.properties_json, "node-b", "7"},
      {identify.message_id, "identify", "user-1", "1700000000123456", O{}, "ada@example.com",
       "Europe/Paris", O{}, O{}, identify.traits_json, O{}, "node-a", "43"},
      {group.message_id, "group", "user-1", "1700000000223456", O{}, O{}, O{}, "acct-9",
       "Initech", group.traits_json, O{}, "node-a", "44"},
  };
  BOOST_REQUIRE_EQUAL(events.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    BOOST_TEST(events[i] == want[i], boost::test_tools::per_element());

  auto s = sink.stats();
  BOOST_TEST(s.batches == 1u);
  BOOST_TEST(s.rows_inserted == 4u);
  BOOST_TEST(s.duplicates == 0u);
}

// Runs of requests go 32 rows per INSERT statement: every column of every row lands in its own
// place, across full statements, the single-row remainder, an event between two runs, and rows
// that are already stored.
BOOST_AUTO_TEST_CASE(requests_in_multi_row_statements_keep_every_column) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  std::vector<Message> first = requests(40);
  BOOST_REQUIRE(sink.write(first, 5s).ok());

  std::vector<Message> batch = first;  // 40 already stored ...
  for (Message& m : requests(30, 40)) batch.push_back(std::move(m));  // ... 30 new
  batch.insert(batch.begin() + 33, msg(track_event()));  // splits the requests into runs of 33 and 37
  for (Message& m : requests(5, 70)) batch.push_back(std::move(m));
  BOOST_REQUIRE(sink.write(batch, 5s).ok());

  Db db(path);
  BOOST_TEST(db.count("requests") == 75);
  BOOST_TEST(db.count("events") == 1);
  for (const Message& m : batch) {
    if (m.kind != MessageKind::request_sent) continue;
    const RequestLog& r = m.request;
    char duration[32];
    std::snprintf(duration, sizeof duration, "%.15g", r.duration_ms);
    std::vector<std::optional<std::string>> expected{
        r.request_id, r.method, r.path, std::to_string(r.status_code), std::string(duration),
        r.user_agent, r.remote_ip, r.referer, r.device_type, r.session_id,
        std::to_string(r.session_page_views), std::to_string(r.inserted_at), r.node_id,
        std::to_string(r.seq)};
    BOOST_TEST(stored_request(db, r.request_id) == expected, boost::test_tools::per_element());
  }
  auto s = sink.stats();
  BOOST_TEST(s.rows_inserted == 40u + 36u);
  BOOST_TEST(s.duplicates == 40u);
}

BOOST_AUTO_TEST_CASE(duplicate_batch_is_stored_once) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  std::vector<Message> batch = requests(100);
  batch.push_back(msg(track_event()));

  BOOST_REQUIRE(sink.write(batch, 5s).ok());
  BOOST_REQUIRE(sink.write(batch, 5s).ok());  // a replay of the same batch

  // A batch holding a duplicate inside itself, plus one new row.
  std::vector<Message> mixed{batch[0], batch[0], msg(request(1000))};
  BOOST_REQUIRE(sink.write(mixed, 5s).ok());

  Db db(path);
  BOOST_TEST(db.count("requests") == 101);
  BOOST_TEST(db.count("events") == 1);
  auto s = sink.stats();
  BOOST_TEST(s.batches == 3u);
  BOOST_TEST(s.rows_inserted == 102u);
  BOOST_TEST(s.duplicates == 101u + 2u);
}

// write_telling_new says which events the store did not hold yet: in a multi-row statement that
// stored some of its rows (found by rowid), also one holding one new id twice; in single-row
// statements; for events. (The node counts its daily counters from it.)
BOOST_AUTO_TEST_CASE(write_telling_new_names_what_was_stored_now) {
  TempDir dir;
  SqliteSink sink(options_for(dir.file("n.db")));
  std::vector<Message> first = requests(40);  // a 32-row statement, then 8 single rows
  first.push_back(msg(track_event()));
  std::vector<bool> is_new;
  BOOST_REQUIRE(sink.write_telling_new(first, 5s, is_new).ok());
  BOOST_TEST(std::count(is_new.begin(), is_new.end(), true) == 41);

  std::vector<Message> second;
  std::vector<int> expected;
  for (int i = 0; i < 40; ++i) {
    if (i % 3 == 0) second.push_back(msg(request(i)));  // a new id
    else if (i == 1) second.push_back(second[0]);       // that new id again: stored once
    else second.push_back(first[size_t(i)]);            // stored already
    expected.push_back(i % 3 == 0);
  }
  second.push_back(second[39]);  // in the single rows too
  expected.push_back(0);
  second.push_back(first.back());  // an event stored already, and a new one
  expected.push_back(0);
  second.push_back(msg(track_event()));
  expected.push_back(1);
  BOOST_REQUIRE(sink.write_telling_new(second, 5s, is_new).ok());
  const std::vector<int> got(is_new.begin(), is_new.end());
  BOOST_TEST(got == expected, boost::test_tools::per_element());
  BOOST_TEST(sink.stats().rows_inserted == 41u + 14u + 1u);
  Db db(dir.file("n.db"));
  BOOST_TEST(db.count("requests") == 40 + 14);
}

BOOST_AUTO_TEST_CASE(counters_are_idempotent_across_retried_flushes) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  std::vector<CounterFlush> flush{{"pages//", 1000, "node-a", 5}, {"pages//about", 1000, "node-a", 2}};
  BOOST_REQUIRE(sink.write_counters(flush, 5s).ok());
  BOOST_REQUIRE(sink.write_counters(flush, 5s).ok());  // retried: same (key, window, node)
  BOOST_REQUIRE(sink.write_counters({flush[0]}, 5s).ok());
  // A new window, and the same window from another node, both count.
  BOOST_REQUIRE(sink.write_counters({{"pages//", 2000, "node-a", 3}, {"pages//", 1000, "node-b", 10}},
                                    5s).ok());

  Db db(path);
  BOOST_TEST(db.one("SELECT value FROM counters WHERE key='pages//'") == "18");
  BOOST_TEST(db.one("SELECT value FROM counters WHERE key='pages//about'") == "2");
  BOOST_TEST(db.count("counter_flushes") == 4);
  auto s = sink.stats();
  BOOST_TEST(s.counter_flushes_applied == 4u);
  BOOST_TEST(s.counter_flushes_duplicate == 3u);
}

BOOST_AUTO_TEST_CASE(locked_database_is_retry_later_then_succeeds) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  BOOST_REQUIRE(sink.write(requests(1), 5s).ok());

  Db other(path);
  other.exec("BEGIN IMMEDIATE");
  other.exec("INSERT INTO counters (key, value, updated_at) VALUES ('x', 1, 1)");

  auto batch = requests(10, 1);
  const auto start = std::chrono::steady_clock::now();
  WriteResult r = sink.write(batch, 200ms);
  const auto waited = std::chrono::steady_clock::now() - start;
  BOOST_TEST_MESSAGE("locked: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.retry_after == sink.options().retry_after);
  BOOST_TEST(r.reason.find("locked") != std::string::npos);
  BOOST_TEST(waited >= 150ms);  // it waited on the lock (busy timeout = the write's timeout)
  BOOST_TEST(waited < 10s);
  BOOST_TEST(sink.stats().retries == 1u);

  other.exec("COMMIT");
  BOOST_REQUIRE(sink.write(batch, 5s).ok());
  BOOST_TEST(other.count("requests") == 11);
  BOOST_TEST(sink.stats().errors == 0u);
}

// abort_writes() (what Batcher::close calls past its deadline) ends a write waiting on a lock
// another connection holds, long before its busy timeout; the sink writes again afterwards.
BOOST_AUTO_TEST_CASE(abort_writes_ends_a_write_waiting_on_a_lock) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSinkOptions o = options_for(path);
  o.busy_timeout = 60s;
  SqliteSink sink(o);
  BOOST_REQUIRE(sink.write(requests(1), 5s).ok());
  Db other(path);
  other.exec("BEGIN IMMEDIATE");
  other.exec("INSERT INTO counters (key, value, updated_at) VALUES ('x', 1, 1)");

  auto write = std::async(std::launch::async, [&] { return sink.write(requests(10, 1), 60s); });
  BOOST_REQUIRE(write.wait_for(300ms) == std::future_status::timeout);  // waiting on the lock
  const auto start = std::chrono::steady_clock::now();
  BOOST_REQUIRE(reqbus::test::abort_until_done(sink, write));
  const auto took = std::chrono::steady_clock::now() - start;
  const WriteResult r = write.get();
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("abandoned") != std::string::npos, r.reason);
  BOOST_TEST(took < 5s);  // the busy timeout is a minute

  other.exec("COMMIT");
  const WriteResult again = sink.write(requests(10, 1), 5s);
  BOOST_REQUIRE_MESSAGE(again.ok(), again.reason);
  BOOST_TEST(other.count("requests") == 11);
}

BOOST_AUTO_TEST_CASE(locked_during_first_use_is_retry_later_then_migrates) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  Db other(path);  // another program owns the file and is writing when the sink first opens it
  other.exec("PRAGMA journal_mode=WAL");
  other.exec("BEGIN IMMEDIATE");
  other.exec("CREATE TABLE someone_elses (x INTEGER)");

  SqliteSink sink(options_for(path));
  WriteResult r = sink.write(requests(5), 100ms);
  BOOST_TEST_MESSAGE("locked at first use: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("locked") != std::string::npos);

  other.exec("COMMIT");
  BOOST_REQUIRE(sink.write(requests(5), 5s).ok());
  BOOST_TEST(other.count("requests") == 5);
  BOOST_TEST(other.one("SELECT count(*) FROM schema_migrations") == "4");
}

BOOST_AUTO_TEST_CASE(hostile_and_unicode_strings_are_stored_verbatim) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  RequestLog r = request(1);
  r.path = "/search?q='; DROP TABLE requests; --";
  r.user_agent = std::string("quote\" 'single' ; semicolon \\ back\nnew\tline NUL:") + '\0' + "after";
  r.referer = "https://例え.jp/パス?emoji=🎉&rtl=שלום&combining=e\u0301";
  r.session_id = "\"); DELETE FROM events; SELECT (\"";
  r.remote_ip = std::string("\xff\xfe raw bytes", 12);
  BOOST_REQUIRE(sink.write({msg(r)}, 5s).ok());

  Db db(path);
  BOOST_TEST(db.count("requests") == 1);
  auto row = stored_request(db, r.request_id);
  BOOST_TEST(*row[schema::kPath] == r.path);
  BOOST_TEST(*row[schema::kUserAgent] == r.user_agent);
  BOOST_TEST(row[schema::kUserAgent]->size() == r.user_agent.size());
  BOOST_TEST(*row[schema::kReferer] == r.referer);
  BOOST_TEST(*row[schema::kSessionId] == r.session_id);
  BOOST_TEST(*row[schema::kRemoteIp] == r.remote_ip);
}

BOOST_AUTO_TEST_CASE(read_only_file_is_failure) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  {
    SqliteSink sink(options_for(path));
    BOOST_REQUIRE(sink.write(requests(1), 5s).ok());
  }
  fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  SqliteSink sink(options_for(path));
  WriteResult r;
  as_unprivileged([&] {
    int fd = ::open(path.c_str(), O_RDWR);  // the precondition: this thread cannot write it
    if (fd >= 0) ::close(fd);
    BOOST_REQUIRE_MESSAGE(fd < 0, "could not make the file read-only for this test");
    r = sink.write(requests(1, 1), 5s);
  });
  BOOST_TEST_MESSAGE("read-only: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("read-only") != std::string::npos);
  BOOST_TEST(sink.stats().errors == 1u);
}

// A file that worked and then became read-only (a remount, a permission changed) is the store
// being down, not a bad batch: retry_later, so a Batcher spools and replays its events instead
// of dead-lettering every batch; once it is writable again, writes go on. (A file that never
// worked stays a failure: read_only_file_is_failure.)
BOOST_AUTO_TEST_CASE(a_file_that_becomes_read_only_is_retry_later_until_repaired) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  BOOST_REQUIRE(sink.write(requests(1), 5s).ok());
  sink.close();  // the next write opens the file again
  fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                fs::perms::others_read | fs::perms::others_exec);
  fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  WriteResult r;
  as_unprivileged([&] { r = sink.write(requests(1, 1), 5s); });
  BOOST_TEST_MESSAGE("read-only after working: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("read-only") != std::string::npos);
  BOOST_TEST(r.reason.find("retried meanwhile") != std::string::npos);
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add);
  BOOST_REQUIRE(sink.write(requests(1, 1), 5s).ok());  // repaired: this thread writes as root again
  Db db(path);
  BOOST_TEST(db.count("requests") == 2);
}

BOOST_AUTO_TEST_CASE(corrupt_file_is_failure) {
  TempDir dir;
  const std::string path = dir.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 1024; ++i) out << "this is not a database at all ";
  }
  SqliteSink sink(options_for(path));
  WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST_MESSAGE("garbage: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("not a database") != std::string::npos);
  BOOST_TEST(sink.stats().errors == 1u);
}

BOOST_AUTO_TEST_CASE(newer_or_foreign_schema_is_failure) {
  TempDir dir;
  const std::string newer = dir.file("newer.db");
  {
    Db db(newer);
    db.exec(schema::create_migrations_table_sql(schema::Dialect::sqlite));
    db.exec("INSERT INTO schema_migrations VALUES (99, 0, 'from the future')");
  }
  SqliteSink a(options_for(newer));
  WriteResult r = a.write(requests(1), 5s);
  BOOST_TEST_MESSAGE("newer: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("schema version 99") != std::string::npos);

  const std::string foreign = dir.file("foreign.db");
  {
    Db db(foreign);
    db.exec(schema::create_migrations_table_sql(schema::Dialect::sqlite));
    db.exec("INSERT INTO schema_migrations VALUES (1, 0, 'claims version 1')");
    db.exec("CREATE TABLE requests (request_id TEXT PRIMARY KEY, something_else TEXT)");
  }
  SqliteSink b(options_for(foreign));
  r = b.write(requests(1), 5s);
  BOOST_TEST_MESSAGE("foreign: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("schema mismatch") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(full_database_is_retry_later_and_keeps_earlier_batches) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSinkOptions o = options_for(path);
  o.max_database_bytes = 256 << 10;
  SqliteSink sink(o);
  WriteResult r;
  int stored = 0;
  for (int i = 0; i < 200 && r.ok(); ++i) {
    r = sink.write(requests(100, i * 100), 5s);
    if (r.ok()) stored += 100;
  }
  BOOST_TEST_MESSAGE("full: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("full") != std::string::npos);
  BOOST_TEST(stored > 0);
  Db db(path);
  BOOST_TEST(db.count("requests") == stored);  // the failed batch left nothing behind
}

BOOST_AUTO_TEST_CASE(batch_past_its_timeout_is_rolled_back) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  BOOST_REQUIRE(sink.open(5s).ok());
  WriteResult r = sink.write(requests(100'000), 1ms);
  BOOST_TEST_MESSAGE("timeout: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("timeout") != std::string::npos);
  Db db(path);
  BOOST_TEST(db.count("requests") == 0);
  BOOST_REQUIRE(sink.write(requests(10), 5s).ok());  // the sink recovers
  BOOST_TEST(db.count("requests") == 10);
}

BOOST_AUTO_TEST_CASE(concurrent_writers_store_everything) {
  TempDir dir;
  const std::string path = dir.file("a.db");
  SqliteSink sink(options_for(path));
  constexpr int kThreads = 4, kBatches = 20, kRows = 50;
  std::vector<std::thread> threads;
  std::atomic<int> not_ok{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b)
        if (!sink.write(requests(kRows, (t * kBatches + b) * kRows), 30s).ok()) ++not_ok;
    });
  for (auto& th : threads) th.join();
  BOOST_TEST(not_ok.load() == 0);
  Db db(path);
  BOOST_TEST(db.count("requests") == kThreads * kBatches * kRows);
  BOOST_TEST(sink.stats().rows_inserted == uint64_t{kThreads * kBatches * kRows});
}

BOOST_AUTO_TEST_SUITE_END()
