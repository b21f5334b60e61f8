// The persistence path end to end with the real components: Bus -> local_only subscription ->
// Batcher -> SqliteSink, on a real SQLite file. What was published is exactly what is stored.
#include <boost/test/unit_test.hpp>

#include <sqlite3.h>

#include <set>
#include <string>
#include <vector>

#include "reqbus/batcher.hpp"
#include "reqbus/bus.hpp"
#include "reqbus/sqlite_sink.hpp"
#include "reqbus/uuid.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kRequests = 3'000;
#else
constexpr int kRequests = 20'000;
#endif
constexpr int kTracks = 500;

std::set<std::string> select_ids(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  BOOST_REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK,
                        sqlite3_errmsg(db));
  std::set<std::string> ids;
  while (sqlite3_step(stmt) == SQLITE_ROW)
    ids.emplace(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)));
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return ids;
}

int64_t select_int(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  BOOST_REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  BOOST_REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK,
                        sqlite3_errmsg(db));
  BOOST_REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(pipeline_suite)

BOOST_AUTO_TEST_CASE(bus_to_batcher_to_sqlite_stores_exactly_what_was_published) {
  test::TempDir dir("reqbus-pipeline");
  const std::string db_path = dir.sub("analytics.db");
  SqliteSinkOptions sink_options;
  sink_options.path = db_path;
  auto sink = std::make_shared<SqliteSink>(sink_options);

  BatcherOptions batcher_options;
  batcher_options.pool_size = 2;
  batcher_options.flush_at = 500;
  batcher_options.flush_interval = 200ms;  // the real clock: a tail smaller than flush_at goes too
  batcher_options.spool_dir = dir.sub("spool");
  Batcher batcher(sink, batcher_options);

  BusOptions bus_options;
  bus_options.name = "pipeline-" + uuid_v7();
  bus_options.node_id = "node-pipeline";
  Bus bus(bus_options);
  SubscribeOptions sub_options;
  sub_options.scope = Scope::local_only;
  sub_options.name = "persist";
  std::atomic<uint64_t> refused{0};
  Subscription sub = bus.subscribe(sub_options, [&](const Message& m) {
    if (batcher.enqueue(m) != EnqueueStatus::ok) ++refused;
  });

  std::set<std::string> request_ids, message_ids;
  for (int i = 0; i < kRequests; ++i) {
    RequestLog r;
    r.request_id = uuid_v7();
    r.method = i % 3 == 0 ? "POST" : "GET";
    r.path = "/items/" + std::to_string(i);
    r.status_code = static_cast<uint16_t>(200 + i % 5);
    r.duration_ms = i * 0.25;
    r.user_agent = "pipeline-test";
    request_ids.insert(r.request_id);
    BOOST_REQUIRE(bus.broadcast(r) == PublishStatus::ok);
    if (i % (kRequests / kTracks) == 0) {
      AnalyticsEvent e;
      e.type = AnalyticsType::track;
      e.message_id = uuid_v7();
      e.user_id = "user-" + std::to_string(i);
      e.event = "viewed item";
      e.properties_json = R"({"item":)" + std::to_string(i) + "}";
      message_ids.insert(e.message_id);
      BOOST_REQUIRE(bus.broadcast(e) == PublishStatus::ok);
    }
  }
  const CloseReport bus_report = bus.close(30s);  // delivers everything to the subscription
  BOOST_TEST(!bus_report.deadline_reached);
  sub.close();
  const BatcherReport report = batcher.close(60s);
  BOOST_TEST(!report.deadline_reached);
  BOOST_TEST(refused.load() == 0u);
  BOOST_TEST(report.delivered == request_ids.size() + message_ids.size());
  BOOST_TEST(report.spooled == 0u);
  BOOST_TEST(report.dropped.total() == 0u);
  BOOST_TEST(batcher.stats().enqueued == request_ids.size() + message_ids.size());

  BOOST_TEST(select_int(db_path, "SELECT count(*) FROM requests") == static_cast<int64_t>(kRequests));
  BOOST_TEST((select_ids(db_path, "SELECT request_id FROM requests") == request_ids));
  BOOST_TEST((select_ids(db_path, "SELECT message_id FROM events WHERE type = 'track'") == message_ids));
  // The bus stamped every row with this node and a gap-free sequence.
  BOOST_TEST(select_int(db_path, "SELECT count(DISTINCT seq) FROM requests WHERE node_id = 'node-pipeline'") ==
             static_cast<int64_t>(kRequests));
  BOOST_TEST(select_int(db_path, "SELECT count(*) FROM requests WHERE path = '/items/7' AND status_code = 202 "
                                 "AND method = 'GET' AND user_agent = 'pipeline-test'") == 1);
}

BOOST_AUTO_TEST_SUITE_END()
