#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <filesystem>
#include <fstream>

#include "analytics/request_json.hpp"
#include "app/ingest_input.hpp"
#include "ingest/log_parse.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace reqbus::ingest;

BOOST_AUTO_TEST_SUITE(log_parse)

BOOST_AUTO_TEST_CASE(clf_time_with_zone) {
  int64_t us = 0;
  BOOST_TEST(parse_clf_time("10/Oct/2000:13:55:36 -0700", us));
  BOOST_TEST(us == int64_t(971211336) * 1000000);  // 2000-10-10T20:55:36Z
  BOOST_TEST(!parse_clf_time("10/Foo/2000:13:55:36 -0700", us));
  BOOST_TEST(!parse_clf_time("10/Oct/2000:25:55:36 -0700", us));
  BOOST_TEST(!parse_clf_time("31/Feb/2024:13:55:36 +0000", us));  // no such day (it read as 2 March)
  BOOST_TEST(!parse_clf_time("29/Feb/2023:13:55:36 +0000", us));
  BOOST_TEST(parse_clf_time("29/Feb/2024:00:00:00 +0000", us));
  BOOST_TEST(us == int64_t(1709164800) * 1000000);
  BOOST_TEST(!parse_iso8601("2023-04-31T00:00:00Z", us));
  BOOST_TEST(parse_iso8601("2000-10-10T20:55:36.250+00:00", us));
  BOOST_TEST(us == int64_t(971211336) * 1000000 + 250000);
  BOOST_TEST(parse_iso8601("2000-10-10T22:55:36+02:00", us));
  BOOST_TEST(us == int64_t(971211336) * 1000000);
}

BOOST_AUTO_TEST_CASE(combined_with_request_time) {
  LineParser p;
  RequestLog r;
  const std::string line =
      R"(203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /products/42?ref=x HTTP/1.1" 200 2326 "https://example.com/" "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148" 0.012)";
  BOOST_TEST(p.parse(line, 1, 0, r) == "");
  BOOST_TEST(r.remote_ip == "203.0.113.9");
  BOOST_TEST(r.method == "GET");
  BOOST_TEST(r.path == "/products/42");
  BOOST_TEST(r.status_code == 200);
  BOOST_TEST(r.referer == "https://example.com/");
  BOOST_TEST(r.device_type == "mobile");
  BOOST_TEST(r.duration_ms == 12.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(r.inserted_at == int64_t(971211336) * 1000000);
  BOOST_TEST(r.request_id.size() == 36u);
  BOOST_TEST(r.request_id[14] == '7');
  // Same source and offset: same id (idempotent re-ingest); another offset: another id.
  RequestLog again, other;
  BOOST_TEST(p.parse(line, 1, 0, again) == "");
  BOOST_TEST(p.parse(line, 1, 500, other) == "");
  BOOST_TEST(again.request_id == r.request_id);
  BOOST_TEST(other.request_id != r.request_id);
}

BOOST_AUTO_TEST_CASE(combined_without_optional_fields_and_dashes) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  BOOST_TEST(p.parse(R"(::1 - - [01/Jan/2024:00:00:00 +0000] "POST /login HTTP/1.0" 302 0 "-" "-")", 1, 0, r) == "");
  BOOST_TEST(r.referer == "");
  BOOST_TEST(r.user_agent == "");
  BOOST_TEST(r.duration_ms == 0.0);
  BOOST_TEST(p.parse(R"(::1 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 404 0)", 1, 0, r) == "");
  BOOST_TEST(r.status_code == 404);
}

BOOST_AUTO_TEST_CASE(bad_lines_give_reasons) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  BOOST_TEST(p.parse("", 1, 0, r) == "line: empty");
  BOOST_TEST(p.parse("garbage", 1, 0, r).rfind("time:", 0) == 0u);
  BOOST_TEST(p.parse(R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "\x16\x03\x01" 400 0 "-" "-")", 1, 0, r).rfind("request:", 0) == 0u);
  BOOST_TEST(p.parse(R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" abc 0)", 1, 0, r) == "status: not a number");
  BOOST_TEST(p.parse(R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 999 0)", 1, 0, r).rfind("status_code:", 0) == 0u);
  BOOST_TEST(p.parse(R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /unterminated)", 1, 0, r).rfind("request:", 0) == 0u);
}

// The time cache of a new parser is empty: "[]" as its first line must not take the cache's 0
// (the bus would then stamp the line "now"); it is an error, and the next line has its own time.
BOOST_AUTO_TEST_CASE(combined_empty_time_first_is_an_error) {
  for (LogFormat format : {LogFormat::combined, LogFormat::auto_detect}) {
    LineParser p(format);
    RequestLog r;
    BOOST_TEST(p.parse(R"(1.2.3.4 - - [] "GET / HTTP/1.1" 200 1)", 1, 0, r) == "time: not dd/Mon/yyyy:hh:mm:ss zone");
    BOOST_TEST(p.parse(R"(1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 200 1)", 1, 40, r) == "");
    BOOST_TEST(r.inserted_at == int64_t(1704067200) * 1000000);
    BOOST_TEST(p.parse(R"(1.2.3.4 - - [] "GET / HTTP/1.1" 200 1)", 1, 100, r) == "time: not dd/Mon/yyyy:hh:mm:ss zone");
  }
}

// nginx's default `log_format combined` (escape=default) writes '"', '\' and bytes < 0x20 or
// >= 0x7f in $request, $http_referer and $http_user_agent as \xHH.
BOOST_AUTO_TEST_CASE(combined_decodes_nginx_hex_escapes) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  const std::string line =
      R"(198.51.100.23 - - [14/Nov/2023:22:13:20 +0000] "GET /files/a\x22b\x5Cc.txt?x=\x22y\x22 HTTP/1.1" 200 612 "https://example.com/search?q=\x22reqbus\x22" "Mozilla/5.0 (X11; Linux x86_64) \x22quoted\x22 caf\xC3\xA9\x09tab" 0.004)";
  BOOST_TEST(p.parse(line, 1, 0, r) == "");
  BOOST_TEST(r.method == "GET");
  BOOST_TEST(r.path == "/files/a\"b\\c.txt");
  BOOST_TEST(r.referer == "https://example.com/search?q=\"reqbus\"");
  BOOST_TEST(r.user_agent == "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" caf\xC3\xA9\ttab");
  BOOST_TEST(r.status_code == 200);
  BOOST_TEST(r.duration_ms == 4.0, boost::test_tools::tolerance(1e-9));
  // A probe that sends raw bytes as its request line: nginx logs them escaped, we decode them
  // and still refuse the line for what it is.
  BOOST_TEST(p.parse(R"(198.51.100.23 - - [14/Nov/2023:22:13:20 +0000] "\x16\x03\x01\x02\x00\x01" 400 157 "-" "-")", 1, 0, r)
                 .rfind("request:", 0) == 0u);
}

// Apache's mod_log_config writes \" and \\ (and \n, \t, ... for control bytes).
BOOST_AUTO_TEST_CASE(combined_decodes_apache_backslash_escapes) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  const std::string line =
      R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a\"b HTTP/1.1" 200 10 "-" "curl \"7.88\" C:\\agent\tx")";
  BOOST_TEST(p.parse(line, 1, 0, r) == "");
  BOOST_TEST(r.path == "/a\"b");
  BOOST_TEST(r.referer == "");
  BOOST_TEST(r.user_agent == "curl \"7.88\" C:\\agent\tx");
}

BOOST_AUTO_TEST_CASE(combined_keeps_malformed_escapes_as_written) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  const std::string head = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" )";
  const std::pair<const char*, const char*> cases[] = {
      {R"("ua \x2")", R"(ua \x2)"},          // too short at the end
      {R"("ua \xZZ end")", R"(ua \xZZ end)"},  // not hex
      {R"("ua \x4")", R"(ua \x4)"},
      {R"("\x")", R"(\x)"},
      {R"("ua \q")", R"(ua \q)"},            // unknown escape
      {R"("nul \x00 kept")", R"(nul \x00 kept)"},  // a NUL byte could not be stored in PostgreSQL
      {R"("\x4\x22")", "\\x4\""},            // malformed, then a good one
      {R"("\\x22")", R"(\x22)"},             // an escaped backslash, then plain text
  };
  for (const auto& [field, expected] : cases) {
    BOOST_TEST_CONTEXT(field) {
      BOOST_TEST(p.parse(head + field, 1, 0, r) == "");
      BOOST_TEST(r.user_agent == expected);
    }
  }
  // Unterminated: a trailing backslash escapes the closing quote, so the field never ends.
  BOOST_TEST(p.parse(head + R"("ua \")", 1, 0, r) == "user_agent: unterminated quoted field");
  BOOST_TEST(p.parse(R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET /\")", 1, 0, r).rfind("request:", 0) == 0u);
}

// Limits apply to the decoded value: 4 bytes of "\x22" are 1 byte of user agent.
BOOST_AUTO_TEST_CASE(combined_field_limits_apply_after_decoding) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  const std::string head = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" ")";
  std::string escaped;
  for (size_t i = 0; i < RequestLogLimits::user_agent; ++i) escaped += "\\x22";
  BOOST_TEST(p.parse(head + escaped + "\"", 1, 0, r) == "");
  BOOST_TEST(r.user_agent == std::string(RequestLogLimits::user_agent, '"'));
  BOOST_TEST(p.parse(head + escaped + "\\x22\"", 1, 0, r) == "user_agent: 1025 bytes exceeds the limit of 1024");
}

BOOST_AUTO_TEST_CASE(nginx_json_escape_json) {
  LineParser p;
  RequestLog r;
  const std::string line =
      R"J({"time_iso8601":"2024-01-01T00:00:01+00:00","remote_addr":"10.1.2.3","request":"GET /search?q=%22x%22 HTTP/2.0","status":"503","request_time":"0.250","http_referer":"","http_user_agent":"Googlebot/2.1 (+http://www.google.com/bot.html)","request_id":"abc"})J";
  BOOST_TEST(p.parse(line, 1, 0, r) == "");
  BOOST_TEST(r.path == "/search");
  BOOST_TEST(r.status_code == 503);
  BOOST_TEST(r.duration_ms == 250.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(r.device_type == "bot");
  BOOST_TEST(r.request_id == "abc");
  BOOST_TEST(r.inserted_at == int64_t(1704067201) * 1000000);
  BOOST_TEST(p.parse(R"({"status":200)", 1, 0, r) == "line: invalid JSON");
  BOOST_TEST(p.parse(R"({"request":"GET / HTTP/1.1"})", 1, 0, r).rfind("status:", 0) == 0u);
}

// Parsing a JSON line does not recurse, but turning a nested field value back into text does, once
// per level: {"remote_addr":[[[...]]]} 100,000 deep overflowed the stack (SIGSEGV) of `reqbus
// ingest` and of the node's syslog listener. Such a line is refused before it is parsed, with a
// reason, and the parser goes on with the next line.
BOOST_AUTO_TEST_CASE(json_nested_too_deep_is_refused_and_the_next_line_parses) {
  const std::string ok = R"({"status":200,"request":"GET /ok HTTP/1.1","time_iso8601":"2024-01-01T00:00:01+00:00"})";
  const size_t deep = 100000;
  const std::string nested = std::string(deep, '[') + std::string(deep, ']');
  for (LogFormat format : {LogFormat::auto_detect, LogFormat::nginx_json, LogFormat::ndjson}) {
    BOOST_TEST_CONTEXT("format " << to_string(format)) {
      LineParser p(format);
      RequestLog r;
      BOOST_TEST(p.parse(R"({"status":200,"request":"GET / HTTP/1.1","remote_addr":)" + nested + "}", 1, 0, r) ==
                 "line: JSON nested deeper than 64 levels");
      BOOST_TEST(p.parse(R"({"path":"/","method":"GET","status_code":200,"x":)" + nested + "}", 1, 0, r) ==
                 "line: JSON nested deeper than 64 levels");
      if (format != LogFormat::ndjson) {
        BOOST_TEST(p.parse(ok, 1, 1, r) == "");
        BOOST_TEST(r.path == "/ok");
        BOOST_TEST(r.inserted_at == int64_t(1704067201) * 1000000);
      }
    }
  }
  // 64 levels are fine (the field is not a string, so it is kept as its JSON text); brackets
  // inside strings, escaped quotes included, are text, not nesting.
  LineParser p(LogFormat::nginx_json);
  RequestLog r;
  const std::string at_limit = std::string(63, '[') + std::string(63, ']');
  BOOST_TEST(p.parse(R"({"status":200,"request":"GET / HTTP/1.1","http_referer":)" + at_limit + "}", 1, 0, r) == "");
  BOOST_TEST(r.referer == at_limit);
  const std::string in_string = "\"\\\"" + std::string(deep, '[') + "\"";
  BOOST_TEST(p.parse(R"({"status":200,"request":"GET / HTTP/1.1","http_user_agent":)" + in_string + "}", 1, 0, r)
                 .rfind("user_agent:", 0) == 0u);  // too long for the field, but parsed: not "nested"
}

BOOST_AUTO_TEST_CASE(reqbus_ndjson) {
  LineParser p;
  RequestLog r;
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x","status_code":201,"duration_ms":3.5,"inserted_at":1700000000000005})", 1, 0, r) == "");
  BOOST_TEST(r.status_code == 201);
  BOOST_TEST(r.inserted_at == 1700000000000005);
  // A log line's own time outside 2000..2999 is refused too, as its NDJSON would be.
  LineParser combined(LogFormat::combined);
  BOOST_TEST(combined.parse(R"(::1 - - [01/Jan/1970:02:00:00 +0000] "GET / HTTP/1.1" 404 - "-" "curl/8")", 1, 0, r) ==
             "time: outside the years 2000..2999");
  // Seconds, milliseconds or nanoseconds where microseconds belong: named, not stored as 1970.
  for (const char* wrong : {"1796630000", "1796630000000", "1796630000000000000"})
    BOOST_TEST(p.parse(std::string(R"({"method":"GET","path":"/x","status_code":200,"inserted_at":)") + wrong + "}", 1, 0, r)
                   .rfind("inserted_at: " + std::string(wrong) + " is not microseconds", 0) == 0u, wrong);
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x","status_code":"201"})", 1, 0, r) == "status_code: must be an integer");
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x"})", 1, 0, r) == "status_code: missing");
}

// What reqbus writes as NDJSON (sink, `reqbus tail`) must be accepted back by `reqbus ingest
// --format ndjson`, also when a field is invalid UTF-8 (from a combined log's \xHH bytes, say):
// each bad byte becomes U+FFFD (3 bytes), cut back to the field's limit on a character boundary.
BOOST_AUTO_TEST_CASE(ndjson_round_trip_of_invalid_utf8_at_the_limit) {
  RequestLog r;
  r.method = "GET";
  r.path = "/";
  r.status_code = 200;
  r.user_agent = std::string(RequestLogLimits::user_agent, '\xff');
  r.remote_ip = std::string(RequestLogLimits::remote_ip, '\xa2');
  r.referer = std::string(RequestLogLimits::referer - 1, 'a') + '\xff';  // one bad byte at the end
  r.session_id = "caf\xC3\xA9";  // valid UTF-8 is kept as it is
  BOOST_REQUIRE(validate(r) == "");
  bool replaced = false;
  (void)json::to_json(r, &replaced);
  BOOST_TEST(replaced);
  std::string line;
  json::append_ndjson(line, r);
  LineParser p(LogFormat::ndjson);
  RequestLog back;
  BOOST_TEST(p.parse(line, 1, 0, back) == "");
  // One U+FFFD per byte would pass the limits: each run of invalid bytes is one U+FFFD then.
  BOOST_TEST(back.user_agent == "\xEF\xBF\xBD");
  BOOST_TEST(back.remote_ip == "\xEF\xBF\xBD");
  BOOST_TEST(back.referer == std::string(RequestLogLimits::referer - 1, 'a'));
  BOOST_TEST(back.session_id == r.session_id);

  // Truncated, overlong, surrogate and out-of-range sequences: every byte of them is replaced.
  const std::string R = "\xEF\xBF\xBD";
  r.user_agent = "a\xE2\x9C" "b\xC0\xAF" "\xED\xA0\x80" "\xF4\x90\x80\x80" "\xE2\x9C\x93\xF0\x9F\x8E\x89";
  r.referer = "ok";
  line.clear();
  json::append_ndjson(line, r);
  BOOST_TEST(p.parse(line, 1, 0, back) == "");
  BOOST_TEST(back.user_agent == "a" + R + R + "b" + R + R + R + R + R + R + R + R + R + "\xE2\x9C\x93\xF0\x9F\x8E\x89");
  BOOST_TEST(back.referer == "ok");

  // Valid UTF-8 is never cut, and reports nothing.
  r = back;
  replaced = true;
  (void)json::to_json(r, &replaced);
  BOOST_TEST(!replaced);
}

// A scanner's path of 700 invalid bytes before readable text, within the limits as bytes: as
// JSON, one U+FFFD a byte would pass the limit and the cut took the readable part (helper-54
// F4: "/wp-login.php?user=admin" and "sqlmap/1.7" were lost). Each run is one U+FFFD then.
BOOST_AUTO_TEST_CASE(json_of_a_long_run_of_invalid_bytes_keeps_what_follows_it) {
  RequestLog r;
  r.method = "GET";
  r.path = "/" + std::string(700, '\xff') + "/wp-login.php?user=admin";
  r.status_code = 200;
  r.user_agent = std::string(400, '\xe9') + " sqlmap/1.7";
  BOOST_REQUIRE(validate(r) == "");
  std::string line;
  json::append_ndjson(line, r);
  RequestLog back;
  BOOST_TEST(LineParser(LogFormat::ndjson).parse(line, 1, 0, back) == "");
  BOOST_TEST(back.path == "/\xEF\xBF\xBD/wp-login.php?user=admin");
  BOOST_TEST(back.user_agent == "\xEF\xBF\xBD sqlmap/1.7");
}

// nginx's escape=json writes bytes >= 0x80 as they come (it escapes only '"', '\\' and control
// bytes): a scanner's GET /\xff or a Latin-1 user agent made the line invalid JSON and the
// request was lost (helper-54 F3). They become U+FFFD, a run of them one.
BOOST_AUTO_TEST_CASE(nginx_json_with_bytes_that_are_not_utf8) {
  LineParser p;
  RequestLog r;
  const std::string line = std::string(R"({"time_iso8601":"2024-01-01T00:00:01+00:00","remote_addr":"10.1.2.3","request":"GET /caf)") +
                           "\xe9/\xff\xfe\xfd" + R"( HTTP/1.1","status":"404","request_time":"0.001","http_referer":"http://r/)" +
                           "\xc3" + R"(","http_user_agent":"Agent )" + "\xe9\xc3" + R"(","request_id":"raw"})";
  BOOST_TEST(p.parse(line, 1, 0, r) == "");
  const std::string R = "\xEF\xBF\xBD";
  BOOST_TEST(r.path == "/caf" + R + "/" + R);
  BOOST_TEST(r.referer == "http://r/" + R);
  BOOST_TEST(r.user_agent == "Agent " + R);
  BOOST_TEST(r.status_code == 404);
  // Valid UTF-8 is kept, and a line that is no JSON still says so.
  BOOST_TEST(p.parse(std::string(R"({"time_iso8601":"2024-01-01T00:00:01+00:00","request":"GET /caf)") + "\xc3\xa9" +
                         R"( HTTP/1.1","status":"200"})",
                     1, 0, r) == "");
  BOOST_TEST(r.path == "/caf\xc3\xa9");
  BOOST_TEST(p.parse("{\"status\":\xff" "200", 1, 0, r) == "line: invalid JSON");
}

// A line cut inside a quoted field (a writer caught mid-line, a truncated copy) is an error, not
// a request with an empty referer or user agent.
BOOST_AUTO_TEST_CASE(combined_cut_inside_a_quoted_field_is_an_error) {
  LineParser p(LogFormat::combined);
  RequestLog r;
  const std::string head = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 10 )";
  BOOST_TEST(p.parse(head + R"("https://r/" "Mozil)", 1, 0, r) == "user_agent: unterminated quoted field");
  BOOST_TEST(p.parse(head + R"("https://r/" ")", 1, 0, r) == "user_agent: unterminated quoted field");
  BOOST_TEST(p.parse(head + R"("https://r)", 1, 0, r) == "referer: unterminated quoted field");
  // Complete, and without the optional fields: still fine.
  BOOST_TEST(p.parse(head + R"("https://r/" "Mozilla/5.0")", 1, 0, r) == "");
  BOOST_TEST(r.user_agent == "Mozilla/5.0");
  BOOST_TEST(p.parse(head + R"("https://r/")", 1, 0, r) == "");
  BOOST_TEST(r.referer == "https://r/");
}

// Lines without a request_id get an id from (source, offset, time) and the line's own bytes:
// two streams read from stdin (same source, same offsets, combined logs' whole seconds) must not
// collide, and re-reading the same line at the same place must give the same id.
BOOST_AUTO_TEST_CASE(derived_ids_depend_on_the_line_as_well_as_its_place) {
  LineParser p(LogFormat::combined);
  const uint64_t stdin_source = source_id("stdin");
  const std::string a = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 200 10 "-" "curl/8")";
  const std::string b = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET /b HTTP/1.1" 200 10 "-" "curl/8")";
  RequestLog ra, rb, again, crlf, elsewhere;
  BOOST_REQUIRE(p.parse(a, stdin_source, 0, ra) == "");
  BOOST_REQUIRE(p.parse(b, stdin_source, 0, rb) == "");
  BOOST_TEST(ra.request_id != rb.request_id);
  BOOST_REQUIRE(p.parse(a, stdin_source, 0, again) == "");
  BOOST_TEST(again.request_id == ra.request_id);
  BOOST_REQUIRE(p.parse(a + "\r", stdin_source, 0, crlf) == "");  // the line ending is not part of it
  BOOST_TEST(crlf.request_id == ra.request_id);
  BOOST_REQUIRE(p.parse(a, stdin_source, 4096, elsewhere) == "");
  BOOST_TEST(elsewhere.request_id != ra.request_id);
  BOOST_TEST(ra.request_id.substr(0, 8) == again.request_id.substr(0, 8));  // UUIDv7: the time leads
}

// A file's ids derive from its log's name, not its inode: logrotate's generations of one log
// (renamed, dated, compressed, or a copy made by copytruncate: a new inode) name the same source,
// so a line read again from any of them gets the id it had; other logs stay other sources.
BOOST_AUTO_TEST_CASE(rotated_generations_and_copies_of_a_log_are_one_source) {
  using reqbus::app::ingest_cmd::Input;
  for (const auto& [file, log] : std::vector<std::pair<std::string, std::string>>{
           {"access.log", "access.log"},
           {"access.log.1", "access.log"},
           {"access.log-20261207", "access.log"},
           {"access.log-2026-12-07", "access.log"},
           {"access.log.2.gz", "access.log.2.gz"},  // compressed: not read by ingest as such
           {"error.log.10", "error.log"},
           {"site-1", "site-1"},          // no extension left: a name of its own, not a generation
           {"x.1", "x.1"},
           {"app.2026.log", "app.2026.log"},
           {"access.log.", "access.log."},
       })
    BOOST_TEST(Input::without_rotation_suffix(file) == log, file);

  reqbus::test::TempDir dir;
  const std::string line = R"(192.0.2.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a HTTP/1.1" 200 10 "-" "curl/8")";
  const std::string log = dir.sub("access.log");
  {
    std::ofstream(log) << line << "\n";
  }
  std::filesystem::copy_file(log, log + ".1");  // copytruncate's copy: another inode, same bytes
  std::filesystem::create_symlink(log, dir.sub("current"));
  std::filesystem::copy_file(log, dir.sub("other.log"));
  auto id_from = [&](const std::string& path) {
    std::string why;
    auto in = Input::open(path, why);
    BOOST_REQUIRE_MESSAGE(in, why);
    LineParser p(LogFormat::combined);
    RequestLog r;
    BOOST_REQUIRE(p.parse(line, in->source(), 0, r) == "");
    return r.request_id;
  };
  const std::string id = id_from(log);
  BOOST_TEST(id_from(log + ".1") == id);
  BOOST_TEST(id_from(dir.sub("current")) == id);
  BOOST_TEST(id_from(dir.str() + "/./access.log") == id);
  BOOST_TEST(id_from(dir.sub("other.log")) != id);
}

BOOST_AUTO_TEST_CASE(syslog_envelope) {
  std::string_view msg;
  BOOST_TEST(unwrap_syslog("<190>Nov 21 06:48:03 web1 nginx: 1.2.3.4 - - [x]\n", msg));
  BOOST_TEST(msg == "1.2.3.4 - - [x]");
  BOOST_TEST(!unwrap_syslog("1.2.3.4 - - [x]", msg));
  BOOST_TEST(!unwrap_syslog("<190>short", msg));
  BOOST_TEST(!unwrap_syslog("<1x>Nov 21 06:48:03 web1 nginx: a", msg));
}

// nginx's `access_log syslog:...,nohostname` leaves the hostname out: "<PRI>timestamp tag: msg".
// A hostname never ends with ':', so a first token that does is the tag.
BOOST_AUTO_TEST_CASE(syslog_envelope_with_and_without_hostname) {
  const std::string line = R"(1.2.3.4 - - [21/Nov/2023:06:48:03 +0000] "GET / HTTP/1.1" 200 5 "-" "agent: x/1.0" 0.001)";
  const std::string with_host = "<190>Nov 21 06:48:03 web1 nginx: " + line + "\n";
  const std::string without_host = "<190>Nov 21 06:48:03 nginx: " + line + "\n";
  const std::string single_digit_day = "<190>Nov  1 06:48:03 nginx: " + line;
  for (const std::string* datagram : {&with_host, &without_host, &single_digit_day}) {
    BOOST_TEST_CONTEXT(*datagram) {
      std::string_view msg;
      BOOST_REQUIRE(unwrap_syslog(*datagram, msg));
      BOOST_TEST(msg == line);
      LineParser p;
      RequestLog r;
      BOOST_TEST(p.parse(msg, 1, 0, r) == "");
      BOOST_TEST(r.path == "/");
      BOOST_TEST(r.user_agent == "agent: x/1.0");
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
