// HttpSink against a real local HTTP server: bodies, headers, and the fault matrix mapped to
// WriteResult kinds.
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <future>
#include <thread>

#include "analytics/http_transport.hpp"
#include "reqbus/error.hpp"
#include "reqbus/http_sink.hpp"
#include "tests/support/hanging_sink.hpp"
#include "tests/support/http_test_server.hpp"

using namespace reqbus;
using namespace std::chrono_literals;
using reqbus::test::HttpTestServer;
using reqbus::test::Reply;
using nlohmann::json;

namespace {

Message request_message(int i) {
  Message m;
  m.kind = MessageKind::request_sent;
  m.request.request_id = "req-" + std::to_string(i);
  m.request.method = "GET";
  m.request.path = "/p/" + std::to_string(i);
  m.request.status_code = 200;
  m.request.duration_ms = 1.5;
  m.request.inserted_at = 1'700'000'000'000'000 + i;
  return m;
}

Message track_message(int i) {
  Message m;
  m.kind = MessageKind::track;
  m.analytics.type = AnalyticsType::track;
  m.analytics.message_id = "msg-" + std::to_string(i);
  m.analytics.user_id = "user-" + std::to_string(i);
  m.analytics.event = "Clicked";
  m.analytics.properties_json = R"({"i":)" + std::to_string(i) + "}";
  m.analytics.timestamp = 1'700'000'000'000'000;
  return m;
}

std::vector<Message> requests(int n) {
  std::vector<Message> batch;
  for (int i = 0; i < n; ++i) batch.push_back(request_message(i));
  return batch;
}

struct Fixture {
  HttpTestServer server;
  HttpSink sink{{.url = server.base_url() + "/v1/requests",
                 .batch_url = server.base_url() + "/v1/batch",
                 .bearer_token = "tok-1",
                 .write_key = "wk-1",
                 .connect_timeout = 2000ms}};
};

}  // namespace

BOOST_AUTO_TEST_SUITE(HttpSinkTest)

BOOST_FIXTURE_TEST_CASE(request_logs_post_as_a_json_array_with_bearer_token, Fixture) {
  const WriteResult r = sink.write(requests(3), 5s);
  BOOST_TEST(r.ok(), r.reason);
  BOOST_REQUIRE_EQUAL(server.request_count(), 1u);
  const auto req = server.request(0);
  BOOST_TEST(req.method == "POST");
  BOOST_TEST(req.path == "/v1/requests");
  BOOST_TEST(req.header("Authorization") == "Bearer tok-1");
  BOOST_TEST(req.header("Content-Type") == "application/json");
  const json body = json::parse(req.body);
  BOOST_REQUIRE(body.is_array());
  BOOST_REQUIRE_EQUAL(body.size(), 3u);
  BOOST_TEST(body[2]["request_id"] == "req-2");  // the receiver's idempotency key
  BOOST_TEST(body[2]["path"] == "/p/2");
  BOOST_TEST(body[2]["status_code"] == 200);
  BOOST_TEST(body[2]["inserted_at"] == 1'700'000'000'000'002);
}

BOOST_FIXTURE_TEST_CASE(analytics_events_post_in_the_segment_shape, Fixture) {
  const WriteResult r = sink.write({track_message(1), track_message(2)}, 5s);
  BOOST_TEST(r.ok(), r.reason);
  BOOST_REQUIRE_EQUAL(server.request_count(), 1u);
  const auto req = server.request(0);
  BOOST_TEST(req.path == "/v1/batch");
  const json body = json::parse(req.body);
  BOOST_REQUIRE_EQUAL(body["batch"].size(), 2u);
  BOOST_TEST(body["batch"][0]["type"] == "track");
  BOOST_TEST(body["batch"][0]["messageId"] == "msg-1");
  BOOST_TEST(body["batch"][1]["properties"]["i"] == 2);
  BOOST_TEST(body.contains("sentAt"));
}

BOOST_FIXTURE_TEST_CASE(a_mixed_batch_is_two_posts_requests_first, Fixture) {
  const WriteResult r = sink.write({track_message(1), request_message(1)}, 5s);
  BOOST_TEST(r.ok(), r.reason);
  BOOST_REQUIRE_EQUAL(server.request_count(), 2u);
  BOOST_TEST(server.request(0).path == "/v1/requests");
  BOOST_TEST(server.request(1).path == "/v1/batch");
  // The second POST failing fails the write, so the caller retries the whole batch.
  server.push(Reply::ok());
  server.push(Reply::status_code(500));
  BOOST_TEST((sink.write({track_message(1), request_message(1)}, 5s).kind == WriteResult::Kind::retry));
}

BOOST_FIXTURE_TEST_CASE(status_429_and_503_honour_retry_after, Fixture) {
  server.push(Reply::retry_after_seconds(429, "7"));
  WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.retry_after.count() == 7000);
  BOOST_TEST(r.reason.find("HTTP 429") != std::string::npos, r.reason);
  server.push(Reply::retry_after_seconds(503, "2"));
  r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.retry_after.count() == 2000);
  server.push(Reply::status_code(503));  // no Retry-After: retry with no floor
  r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.retry_after.count() == 0);
}

BOOST_FIXTURE_TEST_CASE(other_5xx_is_retry_later, Fixture) {
  server.push(Reply::status_code(500, "database on fire"));
  const WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("HTTP 500") != std::string::npos, r.reason);
  BOOST_TEST(r.reason.find("database on fire") != std::string::npos, r.reason);
}

BOOST_FIXTURE_TEST_CASE(status_408_is_retry_later, Fixture) {
  server.push(Reply::status_code(408, "request timeout"));  // a proxy, a slow upload
  const WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry), r.reason);
  BOOST_TEST(r.reason.find("HTTP 408") != std::string::npos, r.reason);
  BOOST_TEST(sink.write(requests(1), 5s).ok());
}

BOOST_FIXTURE_TEST_CASE(status_4xx_is_a_permanent_failure_with_a_body_snippet, Fixture) {
  server.push(Reply::status_code(400, R"({"error":"batch[0].userId: missing"})" + std::string(500, ' ')));
  const WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("HTTP 400") != std::string::npos, r.reason);
  BOOST_TEST(r.reason.find("userId: missing") != std::string::npos, r.reason);
  BOOST_TEST(r.reason.size() < 400u);  // a snippet, not the whole body
  server.push(Reply::status_code(401));
  BOOST_TEST((sink.write(requests(1), 5s).kind == WriteResult::Kind::permanent));
}

BOOST_FIXTURE_TEST_CASE(a_hang_past_the_write_timeout_is_retry_later, Fixture) {
  server.push(Reply::hang());
  const auto start = std::chrono::steady_clock::now();
  const WriteResult r = sink.write(requests(1), 300ms);
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("timeout") != std::string::npos, r.reason);
  BOOST_TEST(took < 5s);  // bounded by the write timeout, not by the server's hang
  server.release_hangs();
}

BOOST_FIXTURE_TEST_CASE(a_dropped_connection_is_retry_later, Fixture) {
  server.push(Reply::drop());
  const WriteResult r = sink.write(requests(2), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry), r.reason);
  BOOST_TEST(r.reason.find("network error") != std::string::npos, r.reason);
  BOOST_TEST(sink.write(requests(2), 5s).ok());  // the next write gets a fresh connection
}

BOOST_AUTO_TEST_CASE(a_refused_connection_is_retry_later) {
  std::string url;
  {
    HttpTestServer gone;
    url = gone.base_url() + "/v1/requests";
  }
  HttpSink sink({.url = url});
  const WriteResult r = sink.write(requests(1), 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("connect failed") != std::string::npos, r.reason);
}

// abort_writes() (what Batcher::close calls past its deadline) ends a write to an API that
// hangs, instead of waiting out the write's timeout; the sink posts again afterwards.
BOOST_FIXTURE_TEST_CASE(abort_writes_ends_a_write_to_a_server_that_hangs, Fixture) {
  server.push(Reply::hang(30s));
  auto write = std::async(std::launch::async, [&] { return sink.write(requests(1), 60s); });
  BOOST_REQUIRE(write.wait_for(300ms) == std::future_status::timeout);
  const auto start = std::chrono::steady_clock::now();
  BOOST_REQUIRE(reqbus::test::abort_until_done(sink, write));
  const auto took = std::chrono::steady_clock::now() - start;
  const WriteResult r = write.get();
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("abandoned") != std::string::npos, r.reason);
  BOOST_TEST(took < 5s);  // the hang lasts 30 s, the write's timeout a minute
  server.release_hangs();
  server.push(Reply::ok());
  const WriteResult again = sink.write(requests(1), 5s);
  BOOST_TEST(again.ok(), again.reason);
}

BOOST_FIXTURE_TEST_CASE(an_event_with_invalid_json_is_a_permanent_failure, Fixture) {
  Message m = track_message(1);
  m.analytics.properties_json = "{oops";
  const WriteResult r = sink.write({m}, 5s);
  BOOST_TEST((r.kind == WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("properties: invalid JSON") != std::string::npos, r.reason);
  BOOST_TEST(server.request_count() == 0u);
}

BOOST_FIXTURE_TEST_CASE(concurrent_writes_all_arrive, Fixture) {
  std::vector<std::future<WriteResult>> results;
  for (int t = 0; t < 4; ++t)
    results.push_back(std::async(std::launch::async, [&] { return sink.write(requests(5), 10s); }));
  for (auto& f : results) BOOST_TEST(f.get().ok());
  BOOST_TEST(server.request_count() == 4u);
}

// A reqbus node whose bus refused part of a body stored the rest and names the refused items:
// only those are sent again, until all are taken. (A 202 used to count as all stored.)
BOOST_FIXTURE_TEST_CASE(items_a_node_refused_are_sent_again_alone, Fixture) {
  server.push(Reply::status_code(202, R"({"accepted":3,"rejected":0,"errors":[],"refused":[1,3]})"));
  server.push(Reply::status_code(202, R"({"accepted":1,"rejected":0,"errors":[],"refused":[1]})"));
  server.push(Reply::status_code(202, R"({"accepted":1,"rejected":0,"errors":[],"refused":[]})"));
  server.push(Reply::status_code(503, R"({"success":false,"refused":[0]})"));  // /v1/batch's form
  const WriteResult r = sink.write({request_message(0), request_message(1), request_message(2),
                                    request_message(3), request_message(4), track_message(7), track_message(8)},
                                   10s);
  BOOST_TEST(r.ok(), r.reason);
  BOOST_REQUIRE_EQUAL(server.request_count(), 5u);
  auto ids = [&](size_t n, const char* array, const char* key) {
    std::vector<std::string> out;
    json body = json::parse(server.request(n).body);
    if (*array) body = body[array];
    for (const auto& item : body) out.push_back(item[key]);
    return out;
  };
  using V = std::vector<std::string>;
  BOOST_TEST(ids(0, "", "request_id") == (V{"req-0", "req-1", "req-2", "req-3", "req-4"}), boost::test_tools::per_element());
  BOOST_TEST(ids(1, "", "request_id") == (V{"req-1", "req-3"}), boost::test_tools::per_element());
  BOOST_TEST(ids(2, "", "request_id") == (V{"req-3"}), boost::test_tools::per_element());
  BOOST_TEST(ids(3, "batch", "messageId") == (V{"msg-7", "msg-8"}), boost::test_tools::per_element());
  BOOST_TEST(ids(4, "batch", "messageId") == (V{"msg-7"}), boost::test_tools::per_element());
}

BOOST_FIXTURE_TEST_CASE(a_node_that_keeps_refusing_is_retry_later_within_the_timeout, Fixture) {
  for (int i = 0; i < 50; ++i) server.push(Reply::status_code(202, R"({"refused":[0]})"));
  const auto start = std::chrono::steady_clock::now();
  const WriteResult r = sink.write(requests(2), 3s);
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST((r.kind == WriteResult::Kind::retry), r.reason);
  BOOST_TEST(r.reason.find("1 items refused") != std::string::npos, r.reason);
  BOOST_TEST(server.request_count() >= 2u);  // 100 ms, then 200 ms, 400 ms... apart
  BOOST_TEST(took < 5s);  // the write's timeout, plus a margin for loaded sanitizer builds
}

// The sink's time is its clock's: with a ManualClock the resend of a refused item waits until
// the clock has moved the 100 ms pause, however long that takes in real time; the write's
// deadline and sentAt are the clock's too. (Before, the sink slept in real time.)
BOOST_AUTO_TEST_CASE(the_pause_between_resends_the_deadline_and_sent_at_run_on_the_sinks_clock) {
  HttpTestServer server;
  auto clock = std::make_shared<ManualClock>();  // 2023-11-14T22:13:20Z
  HttpSink sink{{.url = server.base_url() + "/v1/requests",
                 .batch_url = server.base_url() + "/v1/batch",
                 .connect_timeout = 2000ms,
                 .clock = clock}};
  server.push(Reply::status_code(202, R"({"refused":[0]})"));
  server.push(Reply::status_code(202, R"({"refused":[]})"));
  auto write = std::async(std::launch::async, [&] { return sink.write(requests(2), 10s); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  BOOST_TEST((write.wait_for(300ms) == std::future_status::timeout));  // real time passes, not the clock's
  BOOST_TEST(server.request_count() == 1u);
  // The clock moves a millisecond at a time until the resend comes: not before 100 ms.
  auto moved = 0ms;
  while (server.request_count() < 2 && moved < 5s) {
    clock->advance(1ms);
    moved += 1ms;
    std::this_thread::sleep_for(2ms);
  }
  BOOST_REQUIRE((write.wait_for(20s) == std::future_status::ready));
  const WriteResult first = write.get();
  BOOST_TEST(first.ok(), first.reason);
  BOOST_TEST(server.request_count() == 2u);
  BOOST_TEST(moved.count() >= 100, moved.count() << " ms of clock");

  // 50 ms of write timeout: a 100 ms pause would pass the deadline, so the refused item makes
  // the write retry_later at once, without waiting on a clock that does not move.
  server.push(Reply::status_code(202, R"({"refused":[1]})"));
  const WriteResult second = sink.write(requests(2), 50ms);
  BOOST_TEST((second.kind == WriteResult::Kind::retry), second.reason);
  BOOST_TEST(server.request_count() == 3u);

  BOOST_TEST(sink.write({track_message(1)}, 10s).ok());
  const json body = json::parse(server.request(3).body);
  BOOST_TEST(body["sentAt"].get<std::string>().starts_with("2023-11-14T22:13:20"), body.dump());
}

// abort_writes() also ends a pause between resends to a node that refused items: on a clock
// that never moves, as here, the pause would otherwise last until the test's safety limit.
BOOST_AUTO_TEST_CASE(abort_writes_ends_a_pause_between_resends) {
  HttpTestServer server;
  HttpSink sink{{.url = server.base_url() + "/v1/requests",
                 .connect_timeout = 2000ms,
                 .clock = std::make_shared<ManualClock>()}};
  server.push(Reply::status_code(202, R"({"refused":[0]})"));
  auto write = std::async(std::launch::async, [&] { return sink.write(requests(2), 10s); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  BOOST_REQUIRE(reqbus::test::abort_until_done(sink, write));
  const WriteResult r = write.get();
  BOOST_TEST((r.kind == WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("abandoned") != std::string::npos, r.reason);
  BOOST_TEST(server.request_count() == 1u);  // not sent again
}

// A 2xx that names "refused" but whose list cannot be read may have refused any item: the sink
// sends them all again rather than take the body as stored. (It used to return ok: a node that
// refused ~10,000 items of a big batch answered with a list past the 64 KiB the sink keeps, and
// those items were lost.) A 2xx without the field is a receiver that took everything.
BOOST_FIXTURE_TEST_CASE(a_refused_list_cut_at_64_kib_or_malformed_resends_every_item, Fixture) {
  constexpr int kItems = 20'000;
  std::string long_list = R"({"accepted":0,"rejected":0,"errors":[],"refused":[)";
  for (int i = 0; i < kItems; ++i) long_list += (i ? "," : "") + std::to_string(i);
  long_list += "]}";
  BOOST_REQUIRE_GT(long_list.size(), http::HttpTransport::max_kept_body);
  server.push(Reply::status_code(202, long_list));
  server.push(Reply::status_code(202, R"({"refused":[3,1]})"));  // out of order: not a list to trust
  server.push(Reply::status_code(202, R"({"accepted":20000,"refused":[]})"));
  const WriteResult r = sink.write(requests(kItems), 20s);
  BOOST_TEST(r.ok(), r.reason);
  BOOST_REQUIRE_EQUAL(server.request_count(), 3u);
  for (size_t n = 0; n < 3; ++n) BOOST_TEST(json::parse(server.request(n).body).size() == size_t(kItems));

  server.push(Reply::status_code(202, R"({"stored":"all of it"})"));  // no "refused": taken whole
  BOOST_TEST(sink.write(requests(2), 5s).ok());
  BOOST_TEST(server.request_count() == 4u);
}

BOOST_AUTO_TEST_CASE(refused_lists_are_trusted_only_when_well_formed) {
  using http::parse_refused;
  BOOST_TEST((parse_refused(R"({"refused":[0,2]})", 3) == std::vector<size_t>{0, 2}));
  BOOST_TEST((parse_refused(R"({"accepted":3,"refused":[]})", 3) == std::vector<size_t>{}));
  BOOST_TEST(!parse_refused(R"({"refused":[2,0]})", 3).has_value());   // out of order
  BOOST_TEST(!parse_refused(R"({"refused":[1,1]})", 3).has_value());   // repeated
  BOOST_TEST(!parse_refused(R"({"refused":[3]})", 3).has_value());     // out of range
  BOOST_TEST(!parse_refused(R"({"refused":[-1]})", 3).has_value());
  BOOST_TEST(!parse_refused(R"({"refused":["0"]})", 3).has_value());
  BOOST_TEST(!parse_refused(R"({"refused":0})", 3).has_value());
  BOOST_TEST(!parse_refused(R"({"accepted":3})", 3).has_value());      // no field: the body stands
  BOOST_TEST(!parse_refused(R"({"refused":[0,1)", 3).has_value());     // cut short
  BOOST_TEST(!parse_refused("[0]", 3).has_value());
}

BOOST_AUTO_TEST_CASE(bad_options_name_the_field) {
  BOOST_CHECK_EXCEPTION(HttpSink({}), Error,
                        [](const Error& e) { return std::string(e.what()) == "url: required"; });
  BOOST_CHECK_EXCEPTION(HttpSink({.url = "ftp://x"}), Error, [](const Error& e) {
    return std::string(e.what()).starts_with("url: \"ftp://x\"");
  });
  HttpSink ok({.url = "http://127.0.0.1:1/v1/requests"});
  BOOST_TEST(ok.name() == "http:http://127.0.0.1:1/v1/requests");
}

BOOST_AUTO_TEST_CASE(retry_after_parses_seconds_and_http_dates) {
  using http::parse_retry_after;
  BOOST_TEST(parse_retry_after("120", 0).value().count() == 120'000);
  BOOST_TEST(parse_retry_after("999999", 0).value().count() == 600'000);  // capped
  // Sun, 06 Nov 1994 08:49:37 GMT = 784111777
  BOOST_TEST(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784'111'767).value().count() == 10'000);
  BOOST_TEST(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784'111'800).value().count() == 0);
  BOOST_TEST(!parse_retry_after("", 0).has_value());
  BOOST_TEST(!parse_retry_after("soon", 0).has_value());
}

BOOST_AUTO_TEST_SUITE_END()
