// segment_json: the Segment /v1/batch encoding of identify/group/track and RequestLog arrays,
// round trips and strict errors.
#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include "analytics/segment_json.hpp"

using namespace reqbus;
using nlohmann::json;

namespace {

AnalyticsEvent identify_event() {
  AnalyticsEvent e;
  e.type = AnalyticsType::identify;
  e.message_id = "0190163d-8694-7e3c-9d2a-2b3f1c5e7a90";
  e.user_id = "user-1";
  e.timestamp = 1'700'000'000'123'456;
  e.email = "ada@example.com";
  e.timezone = "Europe/Paris";
  e.traits_json = R"({"plan":"pro","seats":3})";
  return e;
}

AnalyticsEvent group_event() {
  AnalyticsEvent e;
  e.type = AnalyticsType::group;
  e.message_id = "m-2";
  e.user_id = "user-1";
  e.timestamp = 1'700'000'001'000'000;
  e.account_id = "acct-9";
  e.name = "Acme";
  e.traits_json = R"({"industry":"rockets"})";
  return e;
}

AnalyticsEvent track_event() {
  AnalyticsEvent e;
  e.type = AnalyticsType::track;
  e.message_id = "m-3";
  e.user_id = "user-2";
  e.timestamp = 1'700'000'002'000'001;
  e.event = "Signed Up";
  e.properties_json = R"({"referrer":"ad","nested":{"a":[1,2]}})";
  e.node_id = "node-a";
  e.seq = 42;
  return e;
}

std::string encode(const AnalyticsEvent& e) {
  std::string out;
  BOOST_REQUIRE_EQUAL(segment::append_json(out, e), "");
  return out;
}

std::string parse_error(const std::string& body) {
  segment::ParsedBatch parsed;
  auto err = segment::parse_batch(body, parsed);
  if (!err.empty()) return err;
  BOOST_REQUIRE_EQUAL(parsed.rejected.size(), 1u);
  return parsed.rejected[0].message;
}

// `s` n times, comma-separated.
std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? "," : "") + s;
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(SegmentJson)

BOOST_AUTO_TEST_CASE(identify_has_the_segment_shape) {
  const json j = json::parse(encode(identify_event()));
  BOOST_TEST(j["type"] == "identify");
  BOOST_TEST(j["userId"] == "user-1");
  BOOST_TEST(j["messageId"] == "0190163d-8694-7e3c-9d2a-2b3f1c5e7a90");
  BOOST_TEST(j["timestamp"] == "2023-11-14T22:13:20.123456Z");
  BOOST_TEST(j["traits"] == json::parse(R"({"plan":"pro","seats":3,"email":"ada@example.com"})"));
  BOOST_TEST(j["context"]["timezone"] == "Europe/Paris");
}

BOOST_AUTO_TEST_CASE(group_and_track_have_the_segment_shape) {
  const json g = json::parse(encode(group_event()));
  BOOST_TEST(g["type"] == "group");
  BOOST_TEST(g["groupId"] == "acct-9");
  BOOST_TEST(g["traits"]["name"] == "Acme");
  BOOST_TEST(g["traits"]["industry"] == "rockets");
  const json t = json::parse(encode(track_event()));
  BOOST_TEST(t["type"] == "track");
  BOOST_TEST(t["event"] == "Signed Up");
  BOOST_TEST(t["properties"]["nested"]["a"][1] == 2);
  BOOST_TEST(!t.contains("traits"));
  BOOST_TEST(t["context"]["reqbus"]["nodeId"] == "node-a");
}

BOOST_AUTO_TEST_CASE(batch_round_trip) {
  const std::vector<AnalyticsEvent> events{identify_event(), group_event(), track_event()};
  std::string error;
  const std::string body = segment::batch_body(events, 1'700'000'003'000'000, error);
  BOOST_REQUIRE_EQUAL(error, "");
  segment::ParsedBatch parsed;
  BOOST_REQUIRE_EQUAL(segment::parse_batch(body, parsed), "");
  BOOST_TEST(parsed.rejected.empty());
  BOOST_TEST(parsed.sent_at == 1'700'000'003'000'000);
  BOOST_REQUIRE_EQUAL(parsed.events.size(), 3u);
  for (size_t i = 0; i < 3; ++i) BOOST_TEST((parsed.events[i] == events[i]), "event " << i);
}

BOOST_AUTO_TEST_CASE(timestamps_parse_offsets_and_fractions) {
  int64_t us = 0;
  BOOST_TEST(segment::parse_timestamp("2023-11-14T22:13:20Z", us));
  BOOST_TEST(us == 1'700'000'000'000'000);
  BOOST_TEST(segment::parse_timestamp("2023-11-14T23:13:20.5+01:00", us));
  BOOST_TEST(us == 1'700'000'000'500'000);
  BOOST_TEST(segment::parse_timestamp("2024-02-29T00:00:00.123456789Z", us));
  BOOST_TEST(segment::format_timestamp(us) == "2024-02-29T00:00:00.123456Z");
  for (const char* bad : {"2023-02-29T00:00:00Z", "2023-11-14 22:13:20Z", "2023-11-14T22:13:20",
                          "2023-13-01T00:00:00Z", "2023-11-14T22:13:20.Z", "1969-12-31T23:59:59Z",
                          "yesterday", "2023-11-14T22:13:20Zjunk",
                          "9999-12-31T23:59:59.999999999-05:30"})
    BOOST_TEST(!segment::parse_timestamp(bad, us), bad);
  // The last instant the four-digit year can write is accepted and written back unchanged.
  BOOST_TEST(segment::parse_timestamp("9999-12-31T23:59:59.999999Z", us));
  BOOST_TEST(segment::format_timestamp(us) == "9999-12-31T23:59:59.999999Z");
  BOOST_TEST(segment::parse_timestamp("9999-12-31T23:59:59+01:00", us));
  BOOST_TEST(segment::format_timestamp(us) == "9999-12-31T22:59:59.000000Z");
  BOOST_TEST(segment::format_timestamp(INT64_MAX) == "9999-12-31T23:59:59.999999Z");
  BOOST_TEST(segment::format_timestamp(253'402'300'800'000'000) == "9999-12-31T23:59:59.999999Z");  // 10000-01-01
}

BOOST_AUTO_TEST_CASE(strict_errors_name_the_field) {
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","event":"x"}]})") ==
             "batch[0].userId: missing (required)");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","userId":7,"event":"x"}]})") ==
             "batch[0].userId: expected a string, got an integer");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","userId":"u"}]})") ==
             "batch[0].event: missing (required)");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"group","userId":"u"}]})") ==
             "batch[0].groupId: missing (required)");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"page","userId":"u"}]})") ==
             "batch[0].type: \"page\" is not identify, group or track");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"identify","userId":"u","traits":[1]}]})") ==
             "batch[0].traits: expected an object, got an array");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"identify","userId":"u","traits":{"email":5}}]})") ==
             "batch[0].traits.email: expected a string, got an integer");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","userId":"u","event":"e","timestamp":"soon"}]})") ==
             "batch[0].timestamp: \"soon\" is not an ISO-8601 date-time");
  BOOST_TEST(parse_error(R"({"batch":[42]})") == "batch[0]: expected an object, got an integer");
  BOOST_TEST(parse_error(R"({"batch":{}})") == "batch: expected an array, got an object");
  BOOST_TEST(parse_error(R"({"events":[]})") == "batch: missing (required)");
  BOOST_TEST(parse_error(R"([1,2])") == "body: expected an object with a \"batch\" array, got an array");
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","userId":"u","event":"e"})").starts_with(
      "body: invalid JSON"));
  const std::string long_user(300, 'u');
  BOOST_TEST(parse_error(R"({"batch":[{"type":"track","userId":")" + long_user + R"(","event":"e"}]})") ==
             "batch[0].user_id: 300 bytes exceeds the limit of 256");
}

BOOST_AUTO_TEST_CASE(valid_items_survive_invalid_neighbours) {
  segment::ParsedBatch parsed;
  BOOST_REQUIRE_EQUAL(segment::parse_batch(R"({"batch":[
      {"type":"track","userId":"a","event":"ok","anonymousId":"x","integrations":{"All":true}},
      {"type":"track","event":"no user"},
      {"type":"identify","userId":"b","traits":null}]})", parsed), "");
  BOOST_REQUIRE_EQUAL(parsed.events.size(), 2u);
  BOOST_TEST(parsed.events[0].event == "ok");
  BOOST_TEST(parsed.events[1].user_id == "b");
  BOOST_REQUIRE_EQUAL(parsed.rejected.size(), 1u);
  BOOST_TEST(parsed.rejected[0].index == 1u);
}

BOOST_AUTO_TEST_CASE(oversized_bodies_and_batches_are_refused) {
  segment::ParseLimits limits;
  limits.max_body_bytes = 64;
  segment::ParsedBatch parsed;
  const std::string body = R"({"batch":[{"type":"track","userId":"u","event":")" + std::string(100, 'e') + "\"}]}";
  BOOST_TEST(segment::parse_batch(body, parsed, limits).find("exceeds the limit of 64") != std::string::npos);
  limits = {};
  limits.max_items = 1;
  BOOST_TEST(segment::parse_batch(R"({"batch":[{},{}]})", parsed, limits) ==
             "body: 2 items exceeds the limit of 1");
  // Oversized traits are refused by validate() (32 KiB).
  const std::string traits = R"({"blob":")" + std::string(33 * 1024, 'x') + "\"}";
  BOOST_TEST(parse_error(R"({"batch":[{"type":"identify","userId":"u","traits":)" + traits + "}]}")
                 .starts_with("batch[0].traits: "));
}

BOOST_AUTO_TEST_CASE(json_nested_deeper_than_the_limit_is_refused_before_parsing) {
  // Properties nested `levels` deep (the body and the batch array add 2 levels, the message 1).
  auto batch = [](size_t levels, const std::string& inner) {
    return R"({"batch":[{"type":"track","userId":"u","event":"e","properties":{"x":)" +
           std::string(levels, '[') + inner + std::string(levels, ']') + "}}]}";
  };
  const size_t fits = segment::kMaxJsonDepth - 4;  // body, batch, message, properties
  segment::ParsedBatch parsed;
  BOOST_TEST(segment::parse_batch(batch(fits, "1"), parsed) == "");
  BOOST_TEST(parsed.events.size() == 1u);
  BOOST_TEST(segment::parse_batch(batch(fits + 1, "1"), parsed) == "body: nested deeper than 64 levels");
  // Brackets inside strings (escaped quotes included) are text, not nesting.
  BOOST_TEST(segment::parse_batch(batch(fits, R"("[[[{{{\"[[[")"), parsed) == "");
  // 300,000 levels (600 KB) used to overflow the stack in nlohmann's recursive copy: a crash.
  BOOST_TEST(segment::parse_batch(batch(300'000, ""), parsed, segment::ParseLimits{1 << 20, 10}) ==
             "body: nested deeper than 64 levels");
  segment::ParsedRequestLogs logs;
  BOOST_TEST(segment::parse_request_logs(std::string(100'000, '[') + std::string(100'000, ']'), logs,
                                         segment::ParseLimits{1 << 20, 10}) == "body: nested deeper than 64 levels");
  RequestLog one;
  BOOST_TEST(segment::parse_request_log(R"({"method":"GET","x":)" + std::string(65, '{') + std::string(65, '}') + "}",
                                        one) == "request: nested deeper than 64 levels");
}

// The item limit alone did not bound what a body costs once parsed: items below the top level
// ("[[{},{},...]]", a batch's padding field) were built into a document first, ~80 bytes of
// memory for every 3 bytes of "{},". Every value of the body now counts, before parsing.
BOOST_AUTO_TEST_CASE(a_body_of_more_values_than_its_items_may_hold_is_refused_before_parsing) {
  segment::ParsedRequestLogs logs;
  const segment::ParseLimits ten{1 << 20, 10};  // 10 items: 320 values for RequestLogs
  BOOST_TEST(segment::parse_request_logs("[[" + repeat("{}", 1000) + "]]", logs, ten) ==
             "body: more than 320 JSON values");
  BOOST_TEST(segment::parse_request_logs("[" + repeat("[" + repeat("0", 40) + "]", 10) + "]", logs, ten) ==
             "body: more than 320 JSON values");  // 10 items of 40 values
  // Ten real RequestLogs fit with room to spare.
  const std::string log = R"({"method":"GET","path":"/a","status_code":200,"duration_ms":1.5,"user_agent":"ua",)"
                          R"("remote_ip":"192.0.2.1","referer":"","device_type":"desktop","session_id":"s",)"
                          R"("session_page_views":1,"inserted_at":1700000000000000})";
  BOOST_TEST(segment::parse_request_logs("[" + repeat(log, 10) + "]", logs, ten) == "");
  BOOST_TEST(logs.logs.size() == 10u);
  // A batch of one valid event and a padding field of 2,000 values: 10 items may hold 1,280.
  segment::ParsedBatch parsed;
  const std::string event = R"({"type":"track","userId":"u","event":"e"})";
  BOOST_TEST(segment::parse_batch(R"({"batch":[)" + event + R"(],"padding":[)" + repeat("0", 2000) + "]}", parsed, ten) ==
             "body: more than 1280 JSON values");
  BOOST_TEST(segment::parse_batch(R"({"batch":[)" + repeat(event, 10) + "]}", parsed, ten) == "");
  BOOST_TEST(parsed.events.size() == 10u);
  // One NDJSON line: a RequestLog's fields, not a document of thousands of values.
  RequestLog one;
  BOOST_TEST(segment::parse_request_log("[" + repeat("{}", 5000) + "]", one) == "request: more than 1024 JSON values");
  BOOST_TEST(segment::parse_request_log(log, one) == "");
  // Commas and brackets inside strings are text, not values.
  BOOST_TEST(segment::parse_request_log(R"({"method":"GET","path":")" + std::string(5000, ',') + R"(","status_code":200})",
                                        one) != "request: more than 1024 JSON values");
}

// The body's bound is what its items really are, not what the most items could hold: one item
// of 3 million values ("0,0,...", 2 bytes each: 30-40 x the body in memory) passed under a bound
// of 100,000 x 32. Each item now holds at most 1,024 values (a Segment event 4,096), and the
// body at most 32 (128) an item it has, plus one item's worth.
BOOST_AUTO_TEST_CASE(each_item_and_the_items_a_body_has_bound_its_values) {
  segment::ParsedRequestLogs logs;
  const segment::ParseLimits defaults{8 << 20, 100000};
  BOOST_TEST(segment::parse_request_logs(R"([{"method":"GET","pad":[)" + repeat("0", 3000) + "]}]", logs, defaults) ==
             "body: an item holds more than 1024 JSON values");
  BOOST_TEST(segment::parse_request_logs("[[" + repeat("{}", 20000) + "]]", logs, defaults) ==
             "body: an item holds more than 1024 JSON values");
  BOOST_TEST(segment::parse_request_logs("[" + repeat("[" + repeat("0", 99) + "]", 200) + "]", logs, defaults) ==
             "body: more than 7424 JSON values for its 200 items (32 an item)");
  // One RequestLog with a few dozen fields it ignores is still taken.
  BOOST_TEST(segment::parse_request_logs(R"([{"method":"GET","path":"/a","status_code":200,"x":[)" + repeat("1", 60) + "]}]",
                                         logs, defaults) == "");
  BOOST_TEST(logs.logs.size() == 1u);
  segment::ParsedBatch parsed;
  BOOST_TEST(segment::parse_batch(R"({"batch":[{"type":"track","userId":"u","event":"e","properties":{"p":[)" +
                                      repeat("0", 5000) + "]}}]}",
                                  parsed, defaults) == "body: an item holds more than 4096 JSON values");
  BOOST_TEST(segment::parse_batch(R"({"batch":[{"type":"track","userId":"u","event":"e","properties":{"p":[)" +
                                      repeat("0", 300) + "]}}]}",
                                  parsed, defaults) == "");
  BOOST_TEST(parsed.events.size() == 1u);
  // Rich events are not held to an average: 100 orders of 20 products (~200 values each).
  const std::string product = R"({"sku":"s","name":"n","price":1.5,"qty":1,"cat":"c","brand":"b","variant":"v","pos":1})";
  const std::string order = R"({"type":"track","userId":"u","event":"Order Completed","properties":{"products":[)" +
                            repeat(product, 20) + "]}}";
  BOOST_TEST(segment::parse_batch(R"({"batch":[)" + repeat(order, 100) + "]}", parsed, defaults) == "");
  BOOST_TEST(parsed.events.size() == 100u);
}

BOOST_AUTO_TEST_CASE(encoding_refuses_traits_that_are_not_an_object) {
  AnalyticsEvent e = identify_event();
  e.traits_json = "{not json";
  std::string out = "unchanged";
  BOOST_TEST(segment::append_json(out, e).starts_with("traits: invalid JSON"));
  BOOST_TEST(out == "unchanged");
  e.traits_json = "[1,2]";
  BOOST_TEST(segment::append_json(out, e) == "traits: expected an object, got an array");
  BOOST_TEST(segment::check_json_object("properties", "3") == "properties: expected a JSON object, got an integer");
  BOOST_TEST(segment::check_json_object("properties", "") == "");
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_replaced_not_thrown) {
  AnalyticsEvent e = track_event();
  e.event = std::string("bad\xff") + "name";
  const json j = json::parse(encode(e));
  BOOST_TEST(j["event"] == "bad\xEF\xBF\xBDname");
}

BOOST_AUTO_TEST_CASE(request_log_arrays_round_trip_with_item_errors) {
  RequestLog r;
  r.request_id = "0190163d-8694-7e3c-9d2a-2b3f1c5e7a90";
  r.method = "GET";
  r.path = "/pricing";
  r.status_code = 200;
  r.duration_ms = 12.5;
  r.user_agent = "Mozilla/5.0";
  r.inserted_at = 1'700'000'000'000'000;
  r.node_id = "n1";
  r.seq = 7;
  const std::string body = segment::request_logs_body({r, r});
  segment::ParsedRequestLogs parsed;
  BOOST_REQUIRE_EQUAL(segment::parse_request_logs(body, parsed), "");
  BOOST_REQUIRE_EQUAL(parsed.logs.size(), 2u);
  BOOST_TEST((parsed.logs[0] == r));
  BOOST_REQUIRE_EQUAL(segment::parse_request_logs(R"([{"method":"GET","path":"/","status_code":"200"},
      {"method":"GET","path":"/","status_code":200}])", parsed), "");
  BOOST_REQUIRE_EQUAL(parsed.rejected.size(), 1u);
  BOOST_TEST(parsed.rejected[0].message.starts_with("[0].status_code"));
  BOOST_TEST(segment::parse_request_logs("{}", parsed) == "body: expected an array of request objects");
  BOOST_TEST(segment::parse_request_logs("[", parsed).starts_with("body: invalid JSON"));
}

BOOST_AUTO_TEST_SUITE_END()
