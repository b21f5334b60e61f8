#include <boost/test/unit_test.hpp>

#include "ingest/log_parse.hpp"

using namespace reqbus;
using namespace reqbus::ingest;

BOOST_AUTO_TEST_SUITE(log_parse)

BOOST_AUTO_TEST_CASE(clf_time_with_zone) {
  int64_t us = 0;
  BOOST_TEST(parse_clf_time("10/Oct/2000:13:55:36 -0700", us));
  BOOST_TEST(us == int64_t(971211336) * 1000000);  // 2000-10-10T20:55:36Z
  BOOST_TEST(!parse_clf_time("10/Foo/2000:13:55:36 -0700", us));
  BOOST_TEST(!parse_clf_time("10/Oct/2000:25:55:36 -0700", us));
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

BOOST_AUTO_TEST_CASE(reqbus_ndjson) {
  LineParser p;
  RequestLog r;
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x","status_code":201,"duration_ms":3.5,"inserted_at":5})", 1, 0, r) == "");
  BOOST_TEST(r.status_code == 201);
  BOOST_TEST(r.inserted_at == 5);
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x","status_code":"201"})", 1, 0, r) == "status_code: must be an integer");
  BOOST_TEST(p.parse(R"({"method":"GET","path":"/x"})", 1, 0, r) == "status_code: missing");
}

BOOST_AUTO_TEST_CASE(syslog_envelope) {
  std::string_view msg;
  BOOST_TEST(unwrap_syslog("<190>Nov 21 06:48:03 web1 nginx: 1.2.3.4 - - [x]\n", msg));
  BOOST_TEST(msg == "1.2.3.4 - - [x]");
  BOOST_TEST(!unwrap_syslog("1.2.3.4 - - [x]", msg));
  BOOST_TEST(!unwrap_syslog("<190>short", msg));
  BOOST_TEST(!unwrap_syslog("<1x>Nov 21 06:48:03 web1 nginx: a", msg));
}

BOOST_AUTO_TEST_SUITE_END()
