// PostgresSink against a real PostgreSQL 15 server started for this binary (PostgresFixture).
// Each test uses its own database, so tests do not see each other's rows.
#include <boost/test/unit_test.hpp>

#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>  // Debian's location when the include path lacks it
#endif
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "node/node.hpp"
#include "reqbus/error.hpp"
#include "reqbus/postgres_sink.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/hanging_sink.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/temp_dir.hpp"

using namespace std::chrono_literals;
using reqbus::test::PostgresFixture;

BOOST_TEST_GLOBAL_FIXTURE(PostgresFixture);

namespace {

using Row = std::vector<std::optional<std::string>>;

// A plain libpq connection for checking what the sink stored.
class Db {
 public:
  explicit Db(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    BOOST_REQUIRE_MESSAGE(PQstatus(conn_) == CONNECTION_OK, PQerrorMessage(conn_));
  }
  ~Db() { PQfinish(conn_); }
  std::vector<Row> query(const std::string& sql) {
    PGresult* r = PQexecParams(conn_, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0);
    const ExecStatusType st = PQresultStatus(r);
    BOOST_REQUIRE_MESSAGE(st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK,
                          sql << ": " << PQresultErrorMessage(r));
    std::vector<Row> rows;
    for (int i = 0; i < PQntuples(r); ++i) {
      Row row;
      for (int j = 0; j < PQnfields(r); ++j) {
        if (PQgetisnull(r, i, j)) {
          row.emplace_back(std::nullopt);
        } else {
          row.emplace_back(std::string(PQgetvalue(r, i, j), PQgetlength(r, i, j)));
        }
      }
      rows.push_back(std::move(row));
    }
    PQclear(r);
    return rows;
  }
  std::string scalar(const std::string& sql) {
    auto rows = query(sql);
    BOOST_REQUIRE_EQUAL(rows.size(), 1u);
    return rows[0].at(0).value_or("NULL");
  }

 private:
  PGconn* conn_;
};

// A fresh database on the shared server, and its conninfo.
std::string fresh_database(const std::string& name) {
  auto& server = PostgresFixture::server();
  server.create_database(name);
  return server.conninfo(name);
}

reqbus::PostgresSinkOptions options_for(const std::string& conninfo) {
  reqbus::PostgresSinkOptions o;
  o.conninfo = conninfo;
  o.clock = std::make_shared<reqbus::ManualClock>();
  return o;
}

// A TCP port of 127.0.0.1 that accepts connections (the kernel's backlog) and never answers:
// a server that hangs before the startup packet's reply.
struct SilentServer {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int port = 0;
  SilentServer() {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    BOOST_REQUIRE_EQUAL(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    BOOST_REQUIRE_EQUAL(::listen(fd, 8), 0);
    BOOST_REQUIRE_EQUAL(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port = ntohs(addr.sin_port);
  }
  ~SilentServer() { ::close(fd); }
  std::string conninfo() const {
    return "host=127.0.0.1 port=" + std::to_string(port) + " dbname=x user=x sslmode=disable";
  }
};

reqbus::Message request(int i, const std::string& node = "node-a") {
  reqbus::Message m;
  m.kind = reqbus::MessageKind::request_sent;
  auto& r = m.request;
  r.request_id = reqbus::uuid_v7_from(1'700'000'000'000 + i, 7, static_cast<uint64_t>(i));
  r.method = i % 3 ? "GET" : "POST";
  r.path = "/products/" + std::to_string(i);
  r.status_code = static_cast<uint16_t>(200 + i % 5);
  r.duration_ms = 1.25 + i;
  r.user_agent = "Mozilla/5.0 (X11; Linux x86_64)";
  r.remote_ip = "203.0.113." + std::to_string(i % 250);
  r.referer = i % 2 ? "https://www.example.com/" : "";
  r.device_type = "desktop";
  r.session_id = "s-" + std::to_string(i / 10);
  r.session_page_views = static_cast<uint32_t>(i % 10 + 1);
  r.inserted_at = 1'700'000'000'000'000 + i;
  r.node_id = node;
  r.seq = static_cast<uint64_t>(i + 1);
  return m;
}

reqbus::Message track(int i) {
  reqbus::Message m;
  m.kind = reqbus::MessageKind::track;
  auto& e = m.analytics;
  e.type = reqbus::AnalyticsType::track;
  e.message_id = reqbus::uuid_v7_from(1'700'000'000'000 + i, 9, static_cast<uint64_t>(i));
  e.user_id = "user-" + std::to_string(i);
  e.timestamp = 1'700'000'000'000'000 + i;
  e.event = "Order Completed";
  e.properties_json = R"({"total":)" + std::to_string(i) + "}";
  e.node_id = "node-a";
  e.seq = static_cast<uint64_t>(1000 + i);
  return m;
}

reqbus::Message identify(int i) {
  reqbus::Message m;
  m.kind = reqbus::MessageKind::identify;
  auto& e = m.analytics;
  e.type = reqbus::AnalyticsType::identify;
  e.message_id = reqbus::uuid_v7_from(1'700'000'000'000 + i, 11, static_cast<uint64_t>(i));
  e.user_id = "user-" + std::to_string(i);
  e.timestamp = 1'700'000'000'000'000 + i;
  e.email = "u" + std::to_string(i) + "@example.com";
  e.timezone = "Europe/Berlin";
  e.traits_json = R"({"plan":"pro"})";
  e.node_id = "node-b";
  e.seq = 7;
  return m;
}

std::vector<reqbus::Message> requests(int first, int count, const std::string& node = "node-a") {
  std::vector<reqbus::Message> out;
  for (int i = first; i < first + count; ++i) out.push_back(request(i, node));
  return out;
}

Row expected_row(const reqbus::RequestLog& r) {
  char duration[64];
  std::snprintf(duration, sizeof duration, "%.17g", r.duration_ms);
  return {r.request_id, r.method, r.path, std::to_string(r.status_code), std::string(duration),
          r.user_agent, r.remote_ip, r.referer, r.device_type, r.session_id,
          std::to_string(r.session_page_views), std::to_string(r.inserted_at), r.node_id,
          std::to_string(r.seq)};
}

std::vector<Row> stored_requests(Db& db) {
  return db.query(
      "SELECT request_id, method, path, status_code::text, "
      "duration_ms::text, user_agent, remote_ip, "
      "referer, device_type, session_id, session_page_views::text, inserted_at::text, node_id, "
      "seq::text FROM requests ORDER BY request_id");
}

}  // namespace

BOOST_AUTO_TEST_SUITE(PostgresSinkTest)

BOOST_AUTO_TEST_CASE(rejects_bad_options_at_construction) {
  auto o = options_for("host=127.0.0.1 dbname=x");
  o.connections = 0;
  BOOST_CHECK_THROW(reqbus::PostgresSink{o}, reqbus::Error);
  BOOST_CHECK_THROW(reqbus::PostgresSink{options_for("")}, reqbus::Error);
  BOOST_CHECK_THROW(reqbus::PostgresSink{options_for("host=127.0.0.1 nonsense_option=1")},
                    reqbus::Error);
  reqbus::PostgresSink ok(options_for("host=db.internal port=6543 dbname=analytics password=secret"));
  BOOST_CHECK_EQUAL(ok.name(), "postgres:db.internal:6543/analytics");
}

BOOST_AUTO_TEST_CASE(creates_schema_on_first_use) {
  const auto conninfo = fresh_database("schema_first_use");
  Db db(conninfo);
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'requests'"), "0");
  auto result = sink.write(requests(0, 3), 10s);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
  for (const char* table : {"requests", "events", "counters", "counter_flushes", "schema_migrations"}) {
    BOOST_CHECK_EQUAL(db.scalar(std::string("SELECT count(*) FROM pg_tables WHERE tablename = '") +
                                table + "'"),
                      "1");
  }
  BOOST_CHECK_EQUAL(db.scalar("SELECT max(version) FROM schema_migrations"), "4");
  const std::string index_kind =
      "SELECT a.amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam "
      "WHERE c.relname = 'requests_inserted_at'";
  BOOST_CHECK_EQUAL(db.scalar(index_kind), "brin");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'events_timestamp'"), "1");
  // Text keys compare byte by byte, whatever the database's locale (migration 3).
  const std::string key_collations =
      "SELECT string_agg(table_name || '.' || column_name || '=' || coalesce(collation_name, '-'), ' ' "
      "ORDER BY table_name, column_name) FROM information_schema.columns WHERE table_schema = 'public' AND "
      "(table_name, column_name) IN (('requests', 'request_id'), ('events', 'message_id'), ('counters', 'key'), "
      "('counter_flushes', 'key'), ('counter_flushes', 'node_id'))";
  const std::string all_c =
      "counter_flushes.key=C counter_flushes.node_id=C counters.key=C events.message_id=C requests.request_id=C";
  BOOST_CHECK_EQUAL(db.scalar(key_collations), all_c);
  BOOST_CHECK_EQUAL(db.scalar("SELECT collation_name IS NULL FROM information_schema.columns WHERE "
                              "table_name = 'requests' AND column_name = 'path'"),
                    "t");  // other text columns keep the database's collation
  // A second sink on the migrated database neither fails nor migrates again.
  reqbus::PostgresSink again(options_for(conninfo));
  BOOST_REQUIRE(again.write(requests(3, 1), 10s).ok());
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM schema_migrations"), "4");

  // A database left at version 1 (a B-tree on inserted_at, the database's collation on keys)
  // is migrated on first use, its rows kept.
  db.query("DELETE FROM schema_migrations WHERE version >= 2");
  db.query("DROP INDEX requests_inserted_at");
  db.query("CREATE INDEX requests_inserted_at ON requests (inserted_at)");
  db.query("ALTER TABLE requests ALTER COLUMN request_id TYPE TEXT COLLATE \"default\"");
  BOOST_CHECK_EQUAL(db.scalar(index_kind), "btree");
  BOOST_CHECK_EQUAL(db.scalar("SELECT coalesce(collation_name, '-') FROM information_schema.columns WHERE "
                              "table_name = 'requests' AND column_name = 'request_id'"),
                    "-");
  reqbus::PostgresSink upgrading(options_for(conninfo));
  BOOST_REQUIRE(upgrading.write(requests(4, 1), 10s).ok());
  BOOST_CHECK_EQUAL(db.scalar(index_kind), "brin");
  BOOST_CHECK_EQUAL(db.scalar(key_collations), all_c);
  BOOST_CHECK_EQUAL(db.scalar("SELECT max(version) FROM schema_migrations"), "4");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "5");
  // The key still refuses a duplicate after the index was rebuilt.
  BOOST_REQUIRE(upgrading.write(requests(0, 5), 10s).ok());
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "5");
}

// A role that may read and write the tables but not create anything in the schema (least
// privilege, the schema made by an owner role) writes events and counters: the sink checks
// that the schema exists before it would create it (CREATE TABLE IF NOT EXISTS alone needs the
// CREATE privilege even when the table is there: every write failed with 42501).
BOOST_AUTO_TEST_CASE(a_role_without_create_writes_into_a_migrated_schema) {
  const auto conninfo = fresh_database("least_privilege");
  Db db(conninfo);
  {
    reqbus::PostgresSink owner(options_for(conninfo));
    BOOST_REQUIRE(owner.write(requests(0, 1), 10s).ok());
  }
  db.query("DO $$ BEGIN CREATE ROLE reqbus_writer LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$");
  db.query("REVOKE CREATE ON SCHEMA public FROM PUBLIC");
  db.query("GRANT USAGE ON SCHEMA public TO reqbus_writer");
  db.query("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO reqbus_writer");
  BOOST_REQUIRE_EQUAL(db.scalar("SELECT has_schema_privilege('reqbus_writer', 'public', 'CREATE')"), "f");
  reqbus::PostgresSink writer(options_for(conninfo + " user=reqbus_writer"));
  const auto result = writer.write(requests(1, 3), 10s);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
  const auto counted = writer.write_counters({{"requests:2026-12-07", 1000, "node-a", 3}}, 10s);
  BOOST_REQUIRE_MESSAGE(counted.ok(), counted.reason);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "4");
  BOOST_CHECK_EQUAL(db.scalar("SELECT value FROM counters WHERE key = 'requests:2026-12-07'"), "3");
}

// check() at start tells a mistake (no write will ever succeed) from an outage (later ones may),
// and a node refuses the first and starts through the second, spooling.
BOOST_AUTO_TEST_CASE(check_tells_a_misconfigured_store_from_an_unreachable_one) {
  const auto conninfo = fresh_database("check");
  auto& server = PostgresFixture::server();
  {
    reqbus::PostgresSink sink(options_for(conninfo));
    const auto ok = sink.check(5s);
    BOOST_REQUIRE_MESSAGE(ok.ok(), ok.reason);
    Db db(conninfo);
    BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM pg_tables WHERE tablename = 'requests'"), "1");
  }
  const std::string no_database = server.conninfo("no_such_database");
  const std::string no_role = conninfo + " user=no_such_role";
  for (const std::string& wrong : {no_database, no_role}) {
    const auto r = reqbus::PostgresSink(options_for(wrong)).check(5s);
    BOOST_TEST((r.kind == reqbus::WriteResult::Kind::permanent), wrong << ": " << r.reason);
    BOOST_TEST(r.reason.find("does not exist") != std::string::npos, r.reason);
  }
  const std::string unreachable = "host=127.0.0.1 port=" +
                                  std::to_string(reqbus::test::port_outside_ephemeral_range(SOCK_STREAM)) +
                                  " dbname=x user=postgres sslmode=disable";
  const auto down = reqbus::PostgresSink(options_for(unreachable)).check(5s);
  BOOST_TEST((down.kind == reqbus::WriteResult::Kind::retry), down.reason);

  reqbus::test::TempDir dir;
  reqbus::node::NodeOptions o;
  o.http_enabled = false;
  o.spool_dir = dir.sub("spool");
  o.store = "postgres:" + no_database;
  try {
    reqbus::node::Node refused(o);
    BOOST_FAIL("a node started on a database that does not exist");
  } catch (const reqbus::Error& e) {
    BOOST_TEST(std::string(e.what()).find("store: postgres") != std::string::npos, e.what());
  }
  o.store = "postgres:" + unreachable;
  reqbus::node::Node spooling(o);  // an outage at start: the node runs, its events wait in the spool
  BOOST_TEST(spooling.store_description().find("postgres") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(stores_a_mixed_batch_exactly) {
  const auto conninfo = fresh_database("batch_exact");
  reqbus::PostgresSink sink(options_for(conninfo));
  std::vector<reqbus::Message> batch = requests(0, 200);
  batch.push_back(track(1));
  batch.push_back(identify(2));
  std::reverse(batch.begin(), batch.end());  // order in the batch must not matter
  auto result = sink.write(batch, 10s);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);

  Db db(conninfo);
  auto rows = stored_requests(db);
  BOOST_REQUIRE_EQUAL(rows.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    const reqbus::RequestLog r = request(i).request;
    Row expected = expected_row(r);
    BOOST_TEST_CONTEXT("request " << i) {
      for (size_t c = 0; c < expected.size(); ++c) {
        if (c == 4) {  // duration_ms: compare as a number
          BOOST_CHECK_CLOSE(std::stod(*rows[i][c]), r.duration_ms, 1e-12);
        } else {
          BOOST_CHECK_EQUAL(rows[i][c].value_or("NULL"), expected[c].value_or("NULL"));
        }
      }
    }
  }
  auto events = db.query(
      "SELECT message_id, type, user_id, timestamp::text, event, email, timezone, account_id, "
      "name, traits, properties, node_id, seq::text FROM events ORDER BY type");
  BOOST_REQUIRE_EQUAL(events.size(), 2u);
  const auto id = identify(2).analytics;
  BOOST_CHECK(events[0] == (Row{id.message_id, "identify", id.user_id, std::to_string(id.timestamp),
                                "", id.email, id.timezone, "", "", id.traits_json, std::nullopt,
                                "node-b", "7"}));
  const auto tr = track(1).analytics;
  BOOST_CHECK(events[1] == (Row{tr.message_id, "track", tr.user_id, std::to_string(tr.timestamp),
                                tr.event, "", "", "", "", std::nullopt, tr.properties_json,
                                "node-a", "1001"}));
  auto stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.batches, 1u);
  BOOST_CHECK_EQUAL(stats.rows_inserted, 202u);
  BOOST_CHECK_EQUAL(stats.duplicates, 0u);
  BOOST_CHECK_EQUAL(stats.errors, 0u);
}

BOOST_AUTO_TEST_CASE(stores_duplicates_once) {
  const auto conninfo = fresh_database("duplicates");
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_REQUIRE(sink.write(requests(0, 100), 10s).ok());
  BOOST_REQUIRE(sink.write(requests(0, 100), 10s).ok());  // a replayed batch
  auto overlapping = requests(50, 100);                   // half old, half new
  overlapping.push_back(request(120));                    // a duplicate inside the batch
  overlapping.push_back(track(5));
  overlapping.push_back(track(5));
  BOOST_REQUIRE(sink.write(overlapping, 10s).ok());
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "150");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(DISTINCT request_id) FROM requests"), "150");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM events"), "1");
  auto stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.rows_inserted, 151u);
  BOOST_CHECK_EQUAL(stats.duplicates, 100u + 50u + 1u + 1u);
}

// write_telling_new says which events were new: all of a COPY; what INSERT ... RETURNING
// returned, for both kinds in one statement and for one kind, a new id twice counted once.
BOOST_AUTO_TEST_CASE(write_telling_new_names_what_was_stored_now) {
  const auto conninfo = fresh_database("telling_new");
  reqbus::PostgresSink sink(options_for(conninfo));
  std::vector<bool> is_new;
  BOOST_REQUIRE(sink.write_telling_new(requests(0, 20), 10s, is_new).ok());  // by COPY
  BOOST_TEST(std::count(is_new.begin(), is_new.end(), true) == 20);
  BOOST_REQUIRE(sink.write_telling_new({track(1)}, 10s, is_new).ok());
  BOOST_TEST(std::count(is_new.begin(), is_new.end(), true) == 1);

  std::vector<reqbus::Message> mixed;
  std::vector<int> expected;
  for (int i = 10; i < 30; ++i) {
    mixed.push_back(request(i));
    expected.push_back(i >= 20);
  }
  mixed.push_back(request(25));  // new in this batch, given twice
  expected.push_back(0);
  mixed.push_back(track(1));
  expected.push_back(0);
  mixed.push_back(track(2));
  expected.push_back(1);
  BOOST_REQUIRE(sink.write_telling_new(mixed, 10s, is_new).ok());
  std::vector<int> got(is_new.begin(), is_new.end());
  BOOST_TEST(got == expected, boost::test_tools::per_element());

  auto o = options_for(conninfo);
  o.copy = false;  // one kind by INSERT ... RETURNING
  reqbus::PostgresSink insert_only(o);
  BOOST_REQUIRE(insert_only.write_telling_new(requests(25, 10), 10s, is_new).ok());
  got.assign(is_new.begin(), is_new.end());
  BOOST_TEST(got == (std::vector<int>{0, 0, 0, 0, 0, 1, 1, 1, 1, 1}), boost::test_tools::per_element());
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "35");

  // Ids with bytes text cannot hold are returned as stored (U+FFFD): such an event is still new
  // (it was counted as not new, so the node's daily counters missed it: helper-54 F1). Two ids
  // that become one are one row: the first in row order is stored and new, the other is not,
  // whatever their order in the batch (F2).
  std::vector<reqbus::Message> hostile{request(40), request(41), request(42), track(40)};
  hostile[0].request.request_id = std::string("x-\0", 3);
  hostile[1].request.request_id = "y-\xff";
  hostile[1].request.status_code = 404;
  hostile[2].request.request_id = "y-\xEF\xBF\xBD";  // before y-\xff in row order (sorted bytes)
  hostile[2].request.status_code = 503;
  hostile[3].analytics.message_id = std::string("m-\0", 3);
  BOOST_REQUIRE(insert_only.write_telling_new(hostile, 10s, is_new).ok());
  got.assign(is_new.begin(), is_new.end());
  BOOST_TEST(got == (std::vector<int>{1, 0, 1, 1}), boost::test_tools::per_element());
  BOOST_CHECK_EQUAL(db.scalar("SELECT status_code FROM requests WHERE request_id LIKE 'y-%'"), "503");
  BOOST_REQUIRE(insert_only.write_telling_new(hostile, 10s, is_new).ok());  // again: nothing new
  BOOST_TEST(std::count(is_new.begin(), is_new.end(), true) == 0);
}

BOOST_AUTO_TEST_CASE(counter_flushes_are_applied_once) {
  const auto conninfo = fresh_database("counters");
  reqbus::PostgresSink sink(options_for(conninfo));
  std::vector<reqbus::CounterFlush> flushes{
      {"pages/home", 1000, "node-a", 5},
      {"pages/home", 1000, "node-b", 7},
      {"pages/cart", 1000, "node-a", 2},
  };
  BOOST_REQUIRE(sink.write_counters(flushes, 10s).ok());
  BOOST_REQUIRE(sink.write_counters(flushes, 10s).ok());  // a retried flush
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT value FROM counters WHERE key = 'pages/home'"), "12");
  BOOST_CHECK_EQUAL(db.scalar("SELECT value FROM counters WHERE key = 'pages/cart'"), "2");
  // The next window adds; a batch mixing a replayed and a new flush adds only the new one.
  BOOST_REQUIRE(sink.write_counters({{"pages/home", 2000, "node-a", 3}, flushes[0]}, 10s).ok());
  BOOST_CHECK_EQUAL(db.scalar("SELECT value FROM counters WHERE key = 'pages/home'"), "15");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM counter_flushes"), "4");
  BOOST_CHECK_EQUAL(db.scalar("SELECT updated_at FROM counters WHERE key = 'pages/home'"),
                    std::to_string(reqbus::ManualClock().unix_us()));
  auto stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.counter_flushes_applied, 4u);
  BOOST_CHECK_EQUAL(stats.counter_flushes_duplicate, 4u);
  BOOST_CHECK_EQUAL(stats.rows_inserted + stats.duplicates, 0u);  // rows are events only, as in SqliteSinkStats
}

// Both loaders: binary COPY (a batch of one kind) and INSERT ... unnest (copy = false).
BOOST_AUTO_TEST_CASE(hostile_strings_round_trip_byte_exact) {
  const std::vector<std::string> hostile = {
      "tab\there", "new\nline", "cr\rlf\r\n", "back\\slash\\", "\\N", "\\.", "quote'\"`",
      "comma,semi;pipe|", "{\"json\": [1, 2]}", "{a,b}", "NULL", "",
      "unicode: \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87",
      "$1 $$ dollar", "'); DROP TABLE requests; --", std::string(2000, '\\'), "PGCOPY\n\\377\r\n"};
  for (const bool copy : {true, false}) {
    BOOST_TEST_CONTEXT("copy " << copy) {
      const auto conninfo = fresh_database(copy ? "hostile_copy" : "hostile_insert");
      auto options = options_for(conninfo);
      options.copy = copy;
      reqbus::PostgresSink sink(options);
      std::vector<reqbus::Message> request_batch, event_batch;
      for (size_t i = 0; i < hostile.size(); ++i) {
        reqbus::Message m = request(static_cast<int>(i));
        m.request.path = "/" + hostile[i];
        m.request.user_agent = hostile[i];
        m.request.referer = hostile[hostile.size() - 1 - i];
        m.request.session_id = hostile[i];
        request_batch.push_back(m);
        reqbus::Message e = track(static_cast<int>(i));
        e.analytics.event = hostile[i];
        e.analytics.properties_json = hostile[i].empty() ? "x" : hostile[i];
        event_batch.push_back(e);
      }
      for (const auto* batch : {&request_batch, &event_batch}) {
        auto result = sink.write(*batch, 10s);
        BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
      }
      BOOST_CHECK_EQUAL(sink.stats().copies, copy ? 2u : 0u);
      Db db(conninfo);
      auto rows = db.query("SELECT path, user_agent, referer, session_id FROM requests ORDER BY request_id");
      BOOST_REQUIRE_EQUAL(rows.size(), hostile.size());
      auto events = db.query("SELECT event, properties, traits FROM events ORDER BY message_id");
      BOOST_REQUIRE_EQUAL(events.size(), hostile.size());
      for (size_t i = 0; i < hostile.size(); ++i) {
        BOOST_TEST_CONTEXT("string " << i) {
          BOOST_CHECK(rows[i][0] == "/" + hostile[i]);
          BOOST_CHECK(rows[i][1] == hostile[i]);
          BOOST_CHECK(rows[i][2] == hostile[hostile.size() - 1 - i]);
          BOOST_CHECK(rows[i][3] == hostile[i]);
          BOOST_CHECK(events[i][0] == hostile[i]);
          BOOST_CHECK(events[i][1] == (hostile[i].empty() ? "x" : hostile[i]));
          BOOST_CHECK(!events[i][2].has_value());  // "" in a JSON column is NULL
        }
      }
    }
  }
}

// COPY cannot skip a stored row: the server aborts it, and the batch is loaded by the INSERT.
BOOST_AUTO_TEST_CASE(a_batch_holding_a_stored_row_falls_back_from_copy_to_insert) {
  const auto conninfo = fresh_database("copy_fallback");
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_REQUIRE(sink.write(requests(0, 100), 10s).ok());
  auto stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.copies, 1u);
  BOOST_CHECK_EQUAL(stats.rows_inserted, 100u);

  auto result = sink.write(requests(50, 100), 10s);  // half stored already
  BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
  stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.copies, 1u);
  BOOST_CHECK_EQUAL(stats.copy_fallbacks, 1u);
  BOOST_CHECK_EQUAL(stats.rows_inserted, 150u);
  BOOST_CHECK_EQUAL(stats.duplicates, 50u);
  BOOST_CHECK_EQUAL(stats.errors, 0u);
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "150");

  // The next 16 writes skip COPY (replays come in runs); the 17th uses it again.
  for (int i = 0; i < 16; ++i) BOOST_REQUIRE(sink.write(requests(150 + i, 1), 10s).ok());
  BOOST_CHECK_EQUAL(sink.stats().copies, 1u);
  BOOST_REQUIRE(sink.write(requests(166, 10), 10s).ok());
  stats = sink.stats();
  BOOST_CHECK_EQUAL(stats.copies, 2u);
  BOOST_CHECK_EQUAL(stats.rows_inserted, 176u);
  BOOST_CHECK_EQUAL(stats.batches, 19u);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "176");
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(DISTINCT request_id) FROM requests"), "176");
}

// PostgreSQL's text refuses NUL and bytes that are no UTF-8 (SQLSTATE 22021) for the whole
// statement: one such request (a scanner's \xff in a path, a Latin-1 user agent) used to fail
// its batch for good, every other row with it. Such bytes are stored as U+FFFD, and counted.
BOOST_AUTO_TEST_CASE(bytes_text_cannot_hold_become_u_fffd_and_the_batch_is_stored) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  const std::vector<std::pair<std::string, std::string>> cases = {
      {std::string("nul\0byte", 8), "nul" + r + "byte"},
      {"latin1 \xe9t\xe9", "latin1 " + r + "t" + r},
      {"/\xff\xfe" "caf\xc3\xa9", "/" + r + r + "caf\xc3\xa9"},  // valid UTF-8 kept
      {"cut \xe2\x82", "cut " + r + r},                           // a sequence cut short
      {"\xed\xa0\x80 surrogate", r + r + r + " surrogate"}};
  for (const bool copy : {true, false}) {
    BOOST_TEST_CONTEXT("copy " << copy) {
      const auto conninfo = fresh_database(copy ? "invalid_text_copy" : "invalid_text_insert");
      auto options = options_for(conninfo);
      options.copy = copy;
      reqbus::PostgresSink sink(options);
      auto batch = requests(0, 10);
      for (size_t i = 0; i < cases.size(); ++i) batch[i].request.user_agent = cases[i].first;
      batch[7].request.path = std::string("/a\0b", 4);
      batch[7].request.referer = "\x80";
      auto result = sink.write(batch, 10s);
      BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
      Db db(conninfo);
      BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "10");  // every other row too
      const auto rows = db.query("SELECT user_agent, path, referer FROM requests ORDER BY request_id");
      BOOST_REQUIRE_EQUAL(rows.size(), 10u);
      for (size_t i = 0; i < cases.size(); ++i) BOOST_CHECK(rows[i][0] == cases[i].second);
      BOOST_CHECK(rows[7][1] == "/a" + r + "b");
      BOOST_CHECK(rows[7][2] == r);
      BOOST_CHECK_EQUAL(sink.stats().text_replaced, 7u);  // values, not rows or bytes
      BOOST_CHECK_EQUAL(sink.stats().errors, 0u);
      // Written again (a replay): the same replacement, so the same key: stored once.
      BOOST_REQUIRE(sink.write(batch, 10s).ok());
      BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "10");
    }
  }
  // Events and counter keys the same way.
  const auto conninfo = fresh_database("invalid_text_events");
  reqbus::PostgresSink sink(options_for(conninfo));
  auto e = track(1);
  e.analytics.event = std::string("sign\0up", 7);
  e.analytics.properties_json = "{\"k\": \"\xff\"}";
  BOOST_REQUIRE(sink.write({e}, 10s).ok());
  BOOST_REQUIRE(sink.write_counters({{"pages/\xff", 1000, "node-a", 3}}, 10s).ok());
  Db db(conninfo);
  BOOST_CHECK(db.scalar("SELECT event FROM events") == "sign" + r + "up");
  BOOST_CHECK(db.scalar("SELECT properties FROM events") == "{\"k\": \"" + r + "\"}");
  BOOST_CHECK_EQUAL(db.scalar("SELECT value FROM counters WHERE key = 'pages/' || chr(65533)"), "3");
  BOOST_CHECK_EQUAL(sink.stats().text_replaced, 3u);
}

BOOST_AUTO_TEST_CASE(missing_database_is_a_permanent_failure) {
  reqbus::PostgresSink sink(options_for(PostgresFixture::server().conninfo("no_such_database")));
  auto result = sink.write(requests(0, 1), 10s);
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::permanent);
  BOOST_CHECK_MESSAGE(result.reason.find("does not exist") != std::string::npos, result.reason);
}

BOOST_AUTO_TEST_CASE(newer_schema_is_a_permanent_failure) {
  const auto conninfo = fresh_database("newer_schema");
  {
    Db db(conninfo);
    db.query("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT "
             "NULL, description TEXT NOT NULL)");
    db.query("INSERT INTO schema_migrations VALUES (99, 0, 'from the future')");
  }
  reqbus::PostgresSink sink(options_for(conninfo));
  auto result = sink.write(requests(0, 1), 10s);
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::permanent);
  BOOST_CHECK_MESSAGE(result.reason.find("99") != std::string::npos, result.reason);
}

// A database that turns read-only (a primary demoted in a failover) is the store being down:
// retry_later naming SQLSTATE 25006, so a Batcher spools instead of dead-lettering; once it is
// writable again, the next write opens a new session and stores.
BOOST_AUTO_TEST_CASE(a_database_turned_read_only_is_retry_later_until_writable) {
  const auto conninfo = fresh_database("turned_read_only");
  Db db(conninfo);  // this session stays writable: it can turn the setting back
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_REQUIRE(sink.write(requests(0, 1), 10s).ok());
  db.query("ALTER DATABASE turned_read_only SET default_transaction_read_only = on");
  db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'turned_read_only' "
           "AND pid <> pg_backend_pid()");
  auto result = sink.write(requests(1, 1), 10s);
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::retry);
  BOOST_CHECK_MESSAGE(result.reason.find("25006") != std::string::npos, result.reason);
  db.query("ALTER DATABASE turned_read_only SET default_transaction_read_only = off");
  result = sink.write(requests(1, 1), 10s);
  BOOST_REQUIRE_MESSAGE(result.ok(), result.reason);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "2");
}

BOOST_AUTO_TEST_CASE(a_server_that_never_answers_is_retried_within_the_timeout) {
  SilentServer silent;
  reqbus::PostgresSink sink(options_for(silent.conninfo()));
  const auto start = std::chrono::steady_clock::now();
  auto result = sink.write(requests(0, 1), 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::retry);
  BOOST_CHECK_MESSAGE(result.reason.find("timed out") != std::string::npos, result.reason);
  BOOST_CHECK_GE(took, 300ms);
  BOOST_CHECK_LT(took, 5s);
}

// abort_writes() (what Batcher::close calls past its deadline) ends a write that would wait out
// its whole timeout: here one queued behind a lock another session holds (a migration, a long
// transaction: a store that hangs without an error). The sink writes again at once afterwards,
// each row once.
BOOST_AUTO_TEST_CASE(abort_writes_ends_a_write_waiting_on_the_server) {
  const auto conninfo = fresh_database("abort_writes");
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_REQUIRE(sink.write(requests(0, 1), 10s).ok());
  Db locker(conninfo);
  locker.query("BEGIN");
  locker.query("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE");
  auto write = std::async(std::launch::async, [&] { return sink.write(requests(1, 2), 60s); });
  BOOST_REQUIRE(write.wait_for(500ms) == std::future_status::timeout);  // waiting on the lock
  const auto start = std::chrono::steady_clock::now();
  BOOST_REQUIRE(reqbus::test::abort_until_done(sink, write));
  const auto took = std::chrono::steady_clock::now() - start;
  const reqbus::WriteResult result = write.get();
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::retry);
  BOOST_CHECK_MESSAGE(result.reason.find("abandoned") != std::string::npos, result.reason);
  BOOST_CHECK_LT(took, 5s);  // the write's timeout is a minute
  locker.query("ROLLBACK");
  const reqbus::WriteResult again = sink.write(requests(1, 2), 10s);
  BOOST_REQUIRE_MESSAGE(again.ok(), again.reason);
  BOOST_CHECK_EQUAL(Db(conninfo).scalar("SELECT count(*) FROM requests"), "3");
}

// The same while connecting to a server that accepts TCP and never answers.
BOOST_AUTO_TEST_CASE(abort_writes_ends_a_connect_that_gets_no_answer) {
  SilentServer silent;
  auto o = options_for(silent.conninfo());
  o.connect_timeout = 60s;
  reqbus::PostgresSink sink(o);
  auto write = std::async(std::launch::async, [&] { return sink.write(requests(0, 1), 60s); });
  BOOST_REQUIRE(write.wait_for(300ms) == std::future_status::timeout);
  BOOST_REQUIRE(reqbus::test::abort_until_done(sink, write));
  const reqbus::WriteResult result = write.get();
  BOOST_CHECK(result.kind == reqbus::WriteResult::Kind::retry);
  BOOST_CHECK_MESSAGE(result.reason.find("abandoned") != std::string::npos, result.reason);
}

// A node's shutdown keeps its deadline while the store hangs: the Batcher's write waits on a
// lock another session holds, its batch goes to the spool at close()'s deadline, and the write
// is abandoned (through the node's own counting wrapper of the store) instead of waited out
// for import_timeout. The next node on the same spool stores it.
BOOST_AUTO_TEST_CASE(a_node_closes_within_its_deadline_while_a_lock_holds_its_write) {
  const auto conninfo = fresh_database("node_close_hung");
  reqbus::test::TempDir dir;
  reqbus::node::NodeOptions o;
  o.http_enabled = false;
  o.spool_dir = dir.sub("spool");
  o.store = "postgres:" + conninfo;
  o.bus.node_id = "closing-node";
  o.batcher.flush_at = 1;
  o.batcher.import_timeout = 60s;
  o.batcher.stall_timeout = 0ms;  // the deadline's path, not the stall check's
  Db locker(conninfo);
  {
    reqbus::node::Node node(o);  // its start makes the schema
    locker.query("BEGIN");
    locker.query("LOCK TABLE requests IN ACCESS EXCLUSIVE MODE");
    BOOST_REQUIRE(node.bus().broadcast(requests(0, 1)[0].request) == reqbus::PublishStatus::ok);
    bool waiting = false;  // the Batcher's write is queued behind the lock
    for (int i = 0; i < 200 && !waiting; ++i) {
      waiting = Db(conninfo).scalar("SELECT count(*) FROM pg_locks WHERE NOT granted") != "0";
      if (!waiting) std::this_thread::sleep_for(50ms);  // polling the server's state
    }
    BOOST_REQUIRE(waiting);
    const auto start = std::chrono::steady_clock::now();
    const reqbus::node::NodeReport report = node.close(2s);
    const auto took = std::chrono::steady_clock::now() - start;
    BOOST_CHECK_LT(took, 10s);  // not import_timeout's minute
    BOOST_CHECK_EQUAL(report.batcher.spooled, 1u);
  }
  locker.query("ROLLBACK");
  reqbus::node::Node again(o);  // replays the spool
  bool stored = false;
  for (int i = 0; i < 200 && !stored; ++i) {
    stored = Db(conninfo).scalar("SELECT count(*) FROM requests") == "1";
    if (!stored) std::this_thread::sleep_for(50ms);
  }
  BOOST_CHECK(stored);
}

BOOST_AUTO_TEST_CASE(two_nodes_writing_overlapping_batches_store_each_event_once) {
  const auto conninfo = fresh_database("two_nodes");
  reqbus::PostgresSink node_a(options_for(conninfo));
  reqbus::PostgresSink node_b(options_for(conninfo));
  // Both create the schema at the same moment, then write overlapping batches from 2 threads each.
  constexpr int kBatches = 20, kBatchSize = 500;
  std::promise<void> go;
  std::shared_future<void> started = go.get_future().share();
  auto writer = [&](reqbus::PostgresSink& sink, int offset) {
    return std::async(std::launch::async, [&sink, offset, started] {
      started.wait();
      std::vector<std::string> problems;
      for (int b = 0; b < kBatches; ++b) {
        auto r = sink.write(requests(offset + b * kBatchSize / 2, kBatchSize), 30s);
        if (!r.ok()) problems.push_back(r.reason);
      }
      return problems;
    });
  };
  auto a1 = writer(node_a, 0), a2 = writer(node_a, 100), b1 = writer(node_b, 0), b2 = writer(node_b, 50);
  go.set_value();
  for (auto* f : {&a1, &a2, &b1, &b2}) {
    auto problems = f->get();
    BOOST_CHECK_MESSAGE(problems.empty(), problems.size() << " failed writes, first: "
                                                          << (problems.empty() ? "" : problems[0]));
  }
  // Distinct ids written: offsets 0..100 + (kBatches-1)*250 + 500.
  const int expected = 100 + (kBatches - 1) * kBatchSize / 2 + kBatchSize;
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), std::to_string(expected));
  const auto a = node_a.stats(), b = node_b.stats();
  BOOST_CHECK_EQUAL(a.rows_inserted + b.rows_inserted, static_cast<uint64_t>(expected));
  BOOST_CHECK_EQUAL(a.rows_inserted + a.duplicates + b.rows_inserted + b.duplicates,
                    4u * kBatches * kBatchSize);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM schema_migrations"), "4");
}

// Last: it stops and restarts the shared server.
BOOST_AUTO_TEST_CASE(server_stopped_means_retry_later_and_restart_reconnects) {
  const auto conninfo = fresh_database("restart");
  reqbus::PostgresSink sink(options_for(conninfo));
  BOOST_REQUIRE(sink.write(requests(0, 10), 10s).ok());
  auto& server = PostgresFixture::server();
  server.stop();
  const auto start = std::chrono::steady_clock::now();
  auto down = sink.write(requests(10, 10), 2s);
  BOOST_CHECK(down.kind == reqbus::WriteResult::Kind::retry);
  BOOST_TEST_MESSAGE("while stopped: " << down.reason);
  BOOST_CHECK_LT(std::chrono::steady_clock::now() - start, 2500ms);
  auto again = sink.write(requests(10, 10), 2s);  // refused: still retry, never a crash
  BOOST_CHECK(again.kind == reqbus::WriteResult::Kind::retry);
  server.start();
  auto up = sink.write(requests(10, 10), 10s);
  BOOST_REQUIRE_MESSAGE(up.ok(), up.reason);
  Db db(conninfo);
  BOOST_CHECK_EQUAL(db.scalar("SELECT count(*) FROM requests"), "20");
  auto stats = sink.stats();
  BOOST_CHECK_GE(stats.reconnects, 1u);
  BOOST_CHECK_EQUAL(stats.errors, 2u);
  BOOST_CHECK_EQUAL(stats.batches, 2u);
}

BOOST_AUTO_TEST_SUITE_END()
