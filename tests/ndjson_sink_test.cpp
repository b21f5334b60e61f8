// NdjsonSink against real files in a temporary directory (and /dev/full for a full disk).
#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "analytics/sinks/schema.hpp"
#include "reqbus/error.hpp"
#include "reqbus/ndjson_sink.hpp"
#include "reqbus/uuid.hpp"

using namespace reqbus;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "reqbus-ndjson-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

Message request(int i) {
  Message m;
  m.kind = MessageKind::request_sent;
  RequestLog& r = m.request;
  r.request_id = uuid_v7();
  r.method = "GET";
  r.path = "/p/" + std::to_string(i);
  r.status_code = 200;
  r.duration_ms = 0.5 * i;
  r.user_agent = "curl/8.0";
  r.remote_ip = "198.51.100.7";
  r.device_type = "desktop";
  r.session_id = "s1";
  r.session_page_views = 3;
  r.inserted_at = 1'700'000'000'000'000 + i;
  r.node_id = "node-a";
  r.seq = static_cast<uint64_t>(i);
  return m;
}

Message event(AnalyticsType type, int i) {
  Message m;
  m.kind = static_cast<MessageKind>(type);
  AnalyticsEvent& e = m.analytics;
  e.type = type;
  e.message_id = uuid_v7();
  e.user_id = "user-" + std::to_string(i);
  e.timestamp = 1'700'000'000'500'000 + i;
  e.node_id = "node-a";
  e.seq = static_cast<uint64_t>(i);
  switch (type) {
    case AnalyticsType::identify:
      e.email = "u@example.com";
      e.timezone = "America/New_York";
      e.traits_json = R"({"b": 2,  "a":[1,2]})";  // odd spacing and key order survive
      break;
    case AnalyticsType::group:
      e.account_id = "acct";
      e.name = "ACME";
      e.traits_json = R"({"size":10})";
      break;
    case AnalyticsType::track:
      e.event = "Clicked";
      e.properties_json = R"({"button":"buy"})";
      break;
  }
  return m;
}

void check_same(const Message& got, const Message& want) {
  BOOST_TEST(static_cast<int>(got.kind) == static_cast<int>(want.kind));
  if (want.kind == MessageKind::request_sent) BOOST_TEST((got.request == want.request));
  else BOOST_TEST((got.analytics == want.analytics));
}

NdjsonSinkOptions options_for(const std::string& path) {
  NdjsonSinkOptions o;
  o.path = path;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ndjson_sink)

BOOST_AUTO_TEST_CASE(lines_parse_back_to_the_same_events) {
  TempDir dir;
  const std::string path = dir.file("out.ndjson");
  NdjsonSink sink(options_for(path));
  std::vector<Message> batch{request(1), event(AnalyticsType::identify, 2),
                             event(AnalyticsType::group, 3), event(AnalyticsType::track, 4),
                             request(5)};
  BOOST_REQUIRE(sink.write(batch, 5s).ok());
  auto lines = lines_of(path);
  BOOST_REQUIRE_EQUAL(lines.size(), batch.size());
  for (size_t i = 0; i < batch.size(); ++i) check_same(from_ndjson(lines[i]), batch[i]);

  // Field names are the schema's column names.
  auto req = nlohmann::json::parse(lines[0]);
  for (const auto& c : schema::requests_table().columns)
    BOOST_TEST(req.contains(std::string(c.name)), c.name);
  BOOST_TEST(req["kind"] == "request_sent");
  auto track = nlohmann::json::parse(lines[3]);
  for (const auto& c : schema::events_table().columns)
    BOOST_TEST(track.contains(std::string(c.name)), c.name);
  BOOST_TEST(track["type"] == "track");
  BOOST_TEST(track["traits"].is_null());
  BOOST_TEST(sink.stats().lines_written == batch.size());
  BOOST_TEST(sink.name() == "ndjson:" + path);
}

BOOST_AUTO_TEST_CASE(appends_to_an_existing_file) {
  TempDir dir;
  const std::string path = dir.file("out.ndjson");
  {
    std::ofstream out(path);
    out << "{\"kind\":\"previous\"}\n";
  }
  NdjsonSink sink(options_for(path));
  BOOST_REQUIRE(sink.write({request(1)}, 5s).ok());
  BOOST_REQUIRE(sink.write({request(2)}, 5s).ok());
  auto lines = lines_of(path);
  BOOST_REQUIRE_EQUAL(lines.size(), 3u);
  BOOST_TEST(lines[0] == "{\"kind\":\"previous\"}");
}

BOOST_AUTO_TEST_CASE(duplicates_within_the_process_are_written_once) {
  TempDir dir;
  const std::string path = dir.file("out.ndjson");
  std::vector<Message> batch{request(1), event(AnalyticsType::track, 2), request(3)};
  {
    NdjsonSink sink(options_for(path));
    BOOST_REQUIRE(sink.write(batch, 5s).ok());
    BOOST_REQUIRE(sink.write(batch, 5s).ok());                        // a retried batch
    BOOST_REQUIRE(sink.write({batch[0], batch[0], request(4)}, 5s).ok());  // dup inside a batch
    BOOST_TEST(lines_of(path).size() == 4u);
    auto s = sink.stats();
    BOOST_TEST(s.lines_written == 4u);
    BOOST_TEST(s.duplicates_skipped == 5u);
    BOOST_TEST(s.batches == 3u);
  }
  // The documented limit: a new process (a new sink) does not know what the file holds.
  NdjsonSink restarted(options_for(path));
  BOOST_REQUIRE(restarted.write(batch, 5s).ok());
  BOOST_TEST(lines_of(path).size() == 7u);
}

BOOST_AUTO_TEST_CASE(the_duplicate_filter_is_bounded) {
  TempDir dir;
  const std::string path = dir.file("out.ndjson");
  NdjsonSinkOptions o = options_for(path);
  o.dedup_capacity = 2;
  NdjsonSink sink(o);
  Message a = request(1), b = request(2), c = request(3);
  BOOST_REQUIRE(sink.write({a, b}, 5s).ok());
  BOOST_REQUIRE(sink.write({b}, 5s).ok());  // remembered: skipped, and now most recent
  BOOST_REQUIRE(sink.write({c}, 5s).ok());  // evicts a (least recently seen)
  BOOST_REQUIRE(sink.write({b, a}, 5s).ok());  // b still remembered; a was forgotten
  auto lines = lines_of(path);
  BOOST_REQUIRE_EQUAL(lines.size(), 4u);
  check_same(from_ndjson(lines[3]), a);
  BOOST_TEST(sink.stats().duplicates_skipped == 2u);
}

BOOST_AUTO_TEST_CASE(hostile_strings_keep_one_line_per_event) {
  TempDir dir;
  const std::string path = dir.file("out.ndjson");
  NdjsonSink sink(options_for(path));
  Message m = request(1);
  m.request.path = "/x?q='; DROP TABLE requests; --\"}\n{\"kind\":\"track\"}";
  m.request.user_agent = std::string("tab\tnul:") + '\0' + "end \\ 🎉 שלום";
  Message bad = request(2);
  bad.request.referer = std::string("\xff\xfe", 2);  // not UTF-8
  BOOST_REQUIRE(sink.write({m, bad}, 5s).ok());
  auto lines = lines_of(path);
  BOOST_REQUIRE_EQUAL(lines.size(), 2u);
  check_same(from_ndjson(lines[0]), m);
  Message back = from_ndjson(lines[1]);
  BOOST_TEST(back.request.referer == "\xEF\xBF\xBD\xEF\xBF\xBD");  // two U+FFFD
  BOOST_TEST(sink.stats().invalid_utf8_replaced == 1u);
}

BOOST_AUTO_TEST_CASE(full_disk_is_retry_later) {
  NdjsonSink sink(options_for("/dev/full"));
  WriteResult r = sink.write({request(1)}, 5s);
  BOOST_TEST_MESSAGE("full: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::retry));
  BOOST_TEST(r.reason.find("No space") != std::string::npos);
  BOOST_TEST(sink.stats().retries == 1u);
  BOOST_TEST(sink.stats().lines_written == 0u);
}

BOOST_AUTO_TEST_CASE(unopenable_path_is_failure) {
  TempDir dir;
  NdjsonSink sink(options_for(dir.file("missing-dir/out.ndjson")));
  WriteResult r = sink.write({request(1)}, 5s);
  BOOST_TEST_MESSAGE("missing dir: " << r.reason);
  BOOST_TEST(static_cast<int>(r.kind) == static_cast<int>(WriteResult::Kind::permanent));
  BOOST_TEST(r.reason.find("open") != std::string::npos);
  BOOST_TEST(sink.stats().errors == 1u);
  BOOST_CHECK_THROW(NdjsonSink(NdjsonSinkOptions{}), Error);
}

BOOST_AUTO_TEST_CASE(bad_lines_are_decode_errors) {
  for (const char* line : {"", "not json", "[1,2]", R"({"kind":"nope"})",
                           R"({"kind":"request_sent","method":"GET","path":"/","status_code":"x"})",
                           R"({"kind":"track","type":"identify"})",
                           R"({"kind":"track","seq":"1"})"}) {
    try {
      (void)from_ndjson(line);
      BOOST_ERROR("accepted: " << line);
    } catch (const Error& e) {
      BOOST_TEST((e.code() == ErrorCode::decode), line);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
