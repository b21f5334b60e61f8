// `reqbus recount`'s library part (node/daily_counters.hpp, CounterSink::recount): a real node
// stores requests and identify/track events of two past days into a real SQLite file and a real
// PostgreSQL server, and counts them; a recount then finds nothing to change (what it computes
// from the rows is what the node counted), and after the counters are damaged (one lost, one
// short, one that counts nothing) it sets them right, touching no other counter; a dry run
// writes nothing. Also the day parsing, and a plan that names a counter it does not own.
#include <libpq-fe.h>
#include <sqlite3.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <map>
#include <string>

#include "analytics/sinks/recount.hpp"
#include "node/daily_counters.hpp"
#include "node/node.hpp"
#include "reqbus/error.hpp"
#include "tests/support/postgres_server.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace std::chrono_literals;
using reqbus::test::PostgresFixture;
using reqbus::test::TempDir;

BOOST_TEST_GLOBAL_FIXTURE(PostgresFixture);

namespace {

const int64_t kDay1 = *node::parse_day("2026-11-02");
const int64_t kDay2 = *node::parse_day("2026-11-03");

// Stores, through a node, 30 requests on day 1 (status 200/404/500 by i % 3, three devices;
// two at its first and last µs) and 13 on day 2 (one at its first µs, one without a device
// type), plus 5 identify, 4 track and 2 group events on day 1; then closes it (counters flushed).
void store_two_days(const std::string& store) {
  node::NodeOptions o;
  o.store = store;
  o.spool_dir = "";
  o.http_enabled = false;
  o.bus.node_id = "recounted";
  node::Node n(o);
  const char* devices[] = {"desktop", "mobile", "bot"};
  for (int i = 0; i < 42; ++i) {
    RequestLog r;
    r.method = "GET";
    r.path = "/r/" + std::to_string(i);
    r.status_code = uint16_t(i % 3 == 0 ? 200 : i % 3 == 1 ? 404 : 500);
    r.device_type = devices[i % 3];
    r.inserted_at = (i < 30 ? kDay1 : kDay2) * node::kDayMicros + int64_t(i) * 1'000'000;
    if (i == 0) r.inserted_at = kDay1 * node::kDayMicros;          // the day's first µs
    if (i == 29) r.inserted_at = kDay2 * node::kDayMicros - 1;     // its last
    if (i == 30) r.inserted_at = kDay2 * node::kDayMicros;         // the next day's first
    BOOST_REQUIRE(n.bus().broadcast(r) == PublishStatus::ok);
  }
  RequestLog unknown;  // a device type the node does not know: its own label
  unknown.method = "GET";
  unknown.path = "/unknown-device";
  unknown.status_code = 301;
  unknown.inserted_at = kDay2 * node::kDayMicros + 7;
  BOOST_REQUIRE(n.bus().broadcast(unknown) == PublishStatus::ok);
  for (int i = 0; i < 11; ++i) {
    AnalyticsEvent e;
    e.type = i < 5 ? AnalyticsType::identify : i < 9 ? AnalyticsType::track : AnalyticsType::group;
    if (e.type == AnalyticsType::group) e.account_id = "acct";
    e.user_id = "u" + std::to_string(i);
    if (e.type == AnalyticsType::track) e.event = "Signed Up";
    e.timestamp = kDay1 * node::kDayMicros + 3600'000'000LL + i;
    BOOST_REQUIRE(n.bus().broadcast(e) == PublishStatus::ok);
  }
  const node::NodeReport report = n.close(30s);
  BOOST_REQUIRE(!report.deadline_reached);
  BOOST_REQUIRE_EQUAL(report.batcher.delivered, 54u);
}

// What the node counted for day 1 (its counters' true values).
const std::map<std::string, int64_t> kDay1Truth{
    {"stats/requests:2026-11-02", 30},      {"stats/status:200:2026-11-02", 10}, {"stats/status:404:2026-11-02", 10},
    {"stats/status:500:2026-11-02", 10},    {"stats/device:desktop:2026-11-02", 10},
    {"stats/device:mobile:2026-11-02", 10}, {"stats/device:bot:2026-11-02", 10},
    {"stats/events:identify:2026-11-02", 5}, {"stats/events:track:2026-11-02", 4},
    {"stats/events:group:2026-11-02", 2}};

// Recounts `days` of the "stats" buffer; `force` by default: the node that stored the rows has
// just flushed its counters, which the quiet-time check refuses (tested below).
std::vector<node::DayRecount> recount(const std::string& store, std::vector<int64_t> days, bool dry_run = false,
                                      bool force = true) {
  node::RecountOptions o;
  o.dry_run = dry_run;
  o.force = force;
  o.timeout = 30s;
  std::vector<node::DayRecount> out;
  node::recount_days(store, "stats", days, o, [&](const node::DayRecount& d) { out.push_back(d); });
  return out;
}

std::map<std::string, int64_t> as_map(const node::DayRecount& d, bool after) {
  std::map<std::string, int64_t> out;
  for (const CounterChange& c : d.counters) out[c.key] = after ? c.after : c.before;
  return out;
}

size_t changed(const node::DayRecount& d) {
  size_t n = 0;
  for (const CounterChange& c : d.counters) n += c.after != c.before;
  return n;
}

// Damages day 1's counters with `exec` (SQL in either dialect): one lost, one short, one that
// counts nothing, and one of another buffer that the recount must leave alone.
const char* const kDamage[] = {
    "DELETE FROM counters WHERE key = 'stats/requests:2026-11-02'",
    "UPDATE counters SET value = value - 3 WHERE key = 'stats/status:404:2026-11-02'",
    "INSERT INTO counters (key, value, updated_at) VALUES ('stats/status:418:2026-11-02', 7, 0)",
    "INSERT INTO counters (key, value, updated_at) VALUES ('other/requests:2026-11-02', 99, 0)",
    "INSERT INTO counters (key, value, updated_at) VALUES ('stats2/requests:2026-11-02', 98, 0)",
};

// The recount sequence against one store; `value_of` reads a counter (-1: no such row).
template <class Exec, class ValueOf>
void check_recount(const std::string& store, Exec&& exec, ValueOf&& value_of) {
  store_two_days(store);
  // Right after the node flushed into them, the days are refused: it might still be counting.
  BOOST_CHECK_EXCEPTION(recount(store, {kDay1}, false, false), Error, [](const Error& e) {
    return std::string(e.what()).find("a node is still counting into this span") != std::string::npos;
  });
  auto both = recount(store, {kDay1, kDay2});
  BOOST_REQUIRE_EQUAL(both.size(), 2u);
  BOOST_TEST(changed(both[0]) == 0u);  // the node counted what the rows count
  BOOST_TEST(changed(both[1]) == 0u);
  BOOST_TEST((as_map(both[0], true) == kDay1Truth));
  const auto day2 = as_map(both[1], true);
  BOOST_TEST(day2.at("stats/requests:2026-11-03") == 13);
  BOOST_TEST(day2.at("stats/status:301:2026-11-03") == 1);
  BOOST_TEST(day2.size() == 9u);  // requests, 4 status codes, 4 device labels (one for "")

  for (const char* sql : kDamage) exec(sql);
  auto dry = recount(store, {kDay1}, true);
  BOOST_TEST(changed(dry[0]) == 3u);
  BOOST_TEST(value_of("stats/requests:2026-11-02") == -1);  // nothing written
  BOOST_TEST(value_of("stats/status:404:2026-11-02") == 7);

  auto fixed = recount(store, {kDay1});
  BOOST_REQUIRE_EQUAL(fixed.size(), 1u);
  BOOST_TEST(changed(fixed[0]) == 3u);
  const auto before = as_map(fixed[0], false);
  BOOST_TEST(before.at("stats/requests:2026-11-02") == 0);
  BOOST_TEST(before.at("stats/status:404:2026-11-02") == 7);
  BOOST_TEST(before.at("stats/status:418:2026-11-02") == 7);
  for (const auto& [key, value] : kDay1Truth) BOOST_TEST(value_of(key) == value, key);
  BOOST_TEST(value_of("stats/status:418:2026-11-02") == 0);
  BOOST_TEST(value_of("other/requests:2026-11-02") == 99);   // another buffer's
  BOOST_TEST(value_of("stats2/requests:2026-11-02") == 98);  // one whose name starts alike
  BOOST_TEST(value_of("stats/requests:2026-11-03") == 13);   // another day's
  BOOST_TEST(changed(recount(store, {kDay1})[0]) == 0u);

  // A day without rows whose counters are not 0: refused, unless forced.
  exec("INSERT INTO counters (key, value, updated_at) VALUES ('stats/requests:2026-11-05', 4, 0)");
  const int64_t day5 = *node::parse_day("2026-11-05");
  BOOST_CHECK_EXCEPTION(recount(store, {day5}, false, false), Error, [](const Error& e) {
    return std::string(e.what()).find("no rows are stored for this span, but its counters hold 4") != std::string::npos;
  });
  BOOST_TEST(value_of("stats/requests:2026-11-05") == 4);
  BOOST_TEST(changed(recount(store, {day5})[0]) == 1u);
  BOOST_TEST(value_of("stats/requests:2026-11-05") == 0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(Recount)

BOOST_AUTO_TEST_CASE(days_are_parsed_and_written_in_utc) {
  BOOST_TEST(*node::parse_day("1970-01-01") == 0);
  BOOST_TEST(node::day_of(0) == "1970-01-01");
  BOOST_TEST(node::day_of(*node::parse_day("2024-02-29") * node::kDayMicros) == "2024-02-29");
  BOOST_TEST(node::day_of(*node::parse_day("9999-12-31") * node::kDayMicros + node::kDayMicros - 1) == "9999-12-31");
  BOOST_TEST(node::day_of(-1) == "1969-12-31");
  for (const char* bad : {"2023-02-29", "2026-02-30", "2026-13-01", "2026-00-10", "2026-01-00", "1969-12-31", "2026-1-01",
                          "2026-01-1 ", "+026-01-01", "2026/01/01", "", "2026-01-011", "abcd-ef-gh"})
    BOOST_TEST(!node::parse_day(bad).has_value(), bad);
}

BOOST_AUTO_TEST_CASE(a_plan_may_only_name_counters_it_owns) {
  CounterRecount r = node::daily_recount("stats", kDay1);
  BOOST_TEST(r.owns("stats/status:200:2026-11-02"));
  BOOST_TEST(!r.owns("stats/status:200:2026-11-03"));
  BOOST_TEST(!r.owns("stats/visits:2026-11-02"));
  r.plan = [](const StoredCounts&) { return std::map<std::string, int64_t>{{"other/requests:2026-11-02", 1}}; };
  BOOST_CHECK_THROW(detail::recount_changes(r, {}, {}), Error);
}

BOOST_AUTO_TEST_CASE(sqlite_counters_are_set_from_the_rows) {
  TempDir dir;
  const std::string path = dir.sub("recount.db");
  auto with_db = [&](auto&& use) {
    sqlite3* db = nullptr;
    BOOST_REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    use(db);
    sqlite3_close(db);
  };
  check_recount(
      "sqlite:" + path,
      [&](const char* sql) { with_db([&](sqlite3* db) { BOOST_REQUIRE_MESSAGE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK, sql); }); },
      [&](const std::string& key) {
        int64_t v = -1;
        with_db([&](sqlite3* db) {
          sqlite3_stmt* s = nullptr;
          sqlite3_prepare_v2(db, "SELECT value FROM counters WHERE key = ?1", -1, &s, nullptr);
          sqlite3_bind_text(s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
          if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
          sqlite3_finalize(s);
        });
        return v;
      });
}

BOOST_AUTO_TEST_CASE(postgres_counters_are_set_from_the_rows) {
  auto& server = PostgresFixture::server();
  server.create_database("recount");
  const std::string conninfo = server.conninfo("recount");
  PGconn* db = PQconnectdb(conninfo.c_str());
  BOOST_REQUIRE_MESSAGE(PQstatus(db) == CONNECTION_OK, PQerrorMessage(db));
  check_recount(
      "postgres:" + conninfo,
      [&](const char* sql) {
        PGresult* r = PQexec(db, sql);
        BOOST_REQUIRE_MESSAGE(PQresultStatus(r) == PGRES_COMMAND_OK, sql << ": " << PQresultErrorMessage(r));
        PQclear(r);
      },
      [&](const std::string& key) {
        const char* values[] = {key.c_str()};
        PGresult* r = PQexecParams(db, "SELECT value FROM counters WHERE key = $1", 1, nullptr, values, nullptr, nullptr, 0);
        const int64_t v = PQntuples(r) == 1 ? std::stoll(PQgetvalue(r, 0, 0)) : -1;
        PQclear(r);
        return v;
      });
  PQfinish(db);
}

// A recount never creates or migrates a store: a missing file, another SQLite database, or a
// PostgreSQL database without the schema is an error, and stays as it was.
BOOST_AUTO_TEST_CASE(a_store_that_is_not_there_or_not_ours_is_an_error_and_is_left_alone) {
  TempDir dir;
  BOOST_CHECK_EXCEPTION(recount("sqlite:" + dir.sub("missing.db"), {kDay1}, true), Error,
                        [](const Error& e) { return std::string(e.what()).find("no such database file") != std::string::npos; });
  BOOST_TEST(!std::filesystem::exists(dir.sub("missing.db")));
  BOOST_CHECK_THROW(recount("none", {kDay1}), Error);

  const std::string other = dir.sub("other.db");
  sqlite3* db = nullptr;
  BOOST_REQUIRE(sqlite3_open(other.c_str(), &db) == SQLITE_OK);
  BOOST_REQUIRE(sqlite3_exec(db, "CREATE TABLE notes (t TEXT)", nullptr, nullptr, nullptr) == SQLITE_OK);
  BOOST_CHECK_EXCEPTION(recount("sqlite:" + other, {kDay1}, true), Error,
                        [](const Error& e) { return std::string(e.what()).find("not a reqbus store") != std::string::npos; });
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master", -1, &s, nullptr);
  BOOST_REQUIRE(sqlite3_step(s) == SQLITE_ROW);
  BOOST_TEST(sqlite3_column_int(s, 0) == 1);  // still just "notes"
  sqlite3_finalize(s);
  sqlite3_close(db);

  auto& server = PostgresFixture::server();
  server.create_database("recount_empty");
  BOOST_CHECK_THROW(recount("postgres:" + server.conninfo("recount_empty"), {kDay1}, true), Error);
  PGconn* pg = PQconnectdb(server.conninfo("recount_empty").c_str());
  PGresult* r = PQexec(pg, "SELECT to_regclass('counters') IS NULL");
  BOOST_TEST(std::string(PQgetvalue(r, 0, 0)) == "t");
  PQclear(r);
  PQfinish(pg);
}

BOOST_AUTO_TEST_SUITE_END()
