// The node's HTTP API, served by a real node::Node (SQLite store in a temp dir) on an ephemeral
// 127.0.0.1 port, driven with httplib::Client, and with raw sockets for requests that a client
// library would not send (truncated bodies, truncated headers, lying Content-Length).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <boost/test/unit_test.hpp>
#include <map>
#include <regex>
#include <set>

#include "node/http_pool.hpp"
#include "node/node.hpp"
#include "node/syslog_listener.hpp"
#include "reqbus/error.hpp"
#include "tests/support/free_port.hpp"
#include "tests/support/poll.hpp"
#include "tests/support/temp_dir.hpp"

using namespace reqbus;
using namespace reqbus::node;
using reqbus::test::poll_until;
using namespace std::chrono_literals;

namespace {

std::atomic<int> g_bus_counter{0};

struct NodeFixture {
  test::TempDir dir{"reqbus-http-api"};
  std::unique_ptr<Node> node;
  Subscription sub;

  explicit NodeFixture(const std::function<void(NodeOptions&)>& configure = {}) {
    NodeOptions o;
    o.bus.name = "http-api-" + std::to_string(g_bus_counter++);
    o.bus.node_id = "api-node";
    o.store = "sqlite:" + dir.sub("api.db");
    o.spool_dir = dir.sub("spool");
    o.batcher.flush_interval = 100ms;
    o.batcher.flush_jitter = 0ms;
    o.http.host = "127.0.0.1";
    o.http.port = 0;
    o.http.threads = 4;
    o.http.max_body_bytes = 64 * 1024;
    o.http.stream_interval = 200ms;
    if (configure) configure(o);
    node = std::make_unique<Node>(o);
    SubscribeOptions so;
    so.name = "test";
    sub = node->bus().subscribe(so);  // live when it returns: sees everything published after
  }
  ~NodeFixture() {
    sub.close();
    node->close(10s);
  }

  httplib::Client client() const {
    httplib::Client c("127.0.0.1", node->http_port());
    c.set_connection_timeout(5, 0);
    c.set_read_timeout(10, 0);
    return c;
  }

  // Reads `n` messages from the test subscription (fails the test at the deadline).
  std::vector<Message> receive(size_t n, std::chrono::milliseconds timeout = 10s) {
    std::vector<Message> got;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (got.size() < n && std::chrono::steady_clock::now() < deadline)
      sub.next_batch(got, n - got.size(), 100ms);
    BOOST_REQUIRE_EQUAL(got.size(), n);
    return got;
  }
  // Nothing more arrives: a barrier message published after the request must come next.
  void expect_nothing_more() {
    RequestLog barrier;
    barrier.method = "GET";
    barrier.path = "/barrier";
    barrier.status_code = 200;
    BOOST_REQUIRE(node->bus().broadcast(barrier) == PublishStatus::ok);
    const auto next = receive(1);
    BOOST_TEST(next[0].request.path == "/barrier");
  }
  uint64_t published() const { return node->bus().stats().published; }
  // Replaces the test subscription with one that is never read (pull mode, tiny buffers), so
  // the bus fills up: with queue_max_events 8, inproc_hwm 1 and one event a frame, at once.
  Subscription stuck_subscriber() {
    sub.close();
    SubscribeOptions so;
    so.name = "stuck";
    so.max_pending = 1;
    so.rcv_hwm = 2;
    return node->bus().subscribe(so);
  }
};

nlohmann::json json_of(const httplib::Result& res) {
  BOOST_REQUIRE(res);
  auto j = nlohmann::json::parse(res->body, nullptr, false);
  BOOST_REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << res->body);
  return j;
}

std::string request_line(const std::string& path, int status, const std::string& extra = "") {
  return R"({"method":"GET","path":")" + path + R"(","status_code":)" + std::to_string(status) +
         R"(,"duration_ms":1.5,"user_agent":"test-agent","remote_ip":"192.0.2.9")" + extra + "}";
}

bool contains(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

// `n` NDJSON RequestLogs with paths <prefix>0 .. <prefix>n-1.
std::string ndjson_body(const std::string& prefix, int n) {
  std::string body;
  for (int i = 0; i < n; ++i) body += request_line(prefix + std::to_string(i), 200) + "\n";
  return body;
}

// A raw TCP connection to the node, for requests httplib::Client will not send.
class RawConnection {
 public:
  explicit RawConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    BOOST_REQUIRE(fd_ >= 0);
    timeval tv{15, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  void send(const std::string& data) {
    BOOST_REQUIRE_EQUAL(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL), ssize_t(data.size()));
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
  int fd() const { return fd_; }
  // Reads until `needle` has arrived (or the connection ends / 15 s pass).
  std::string read_until(const std::string& needle) {
    std::string got;
    char buf[4096];
    while (got.find(needle) == std::string::npos) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) break;
      got.append(buf, size_t(n));
    }
    return got;
  }
  // Reads until the server closes the connection (or the 15 s receive timeout); returns what
  // was received. `closed` tells whether it ended by EOF/reset rather than by the timeout.
  std::string read_to_end(bool& closed) {
    std::string got;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) {
        got.append(buf, size_t(n));
        continue;
      }
      closed = n == 0 || errno == ECONNRESET;
      return got;
    }
  }

 private:
  int fd_ = -1;
};

// Parses Prometheus text: metric family -> TYPE, and sample name{labels} -> value. Fails the
// test on a line that is not valid exposition format.
struct PromText {
  std::map<std::string, std::string> types;
  std::map<std::string, double> samples;

  explicit PromText(const std::string& text) {
    static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$)");
    static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
    static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$)");
    std::set<std::string> helped;
    BOOST_REQUIRE(!text.empty() && text.back() == '\n');
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      std::smatch m;
      if (std::regex_match(line, m, type)) {
        BOOST_TEST_REQUIRE(types.count(m[1]) == 0u, "TYPE twice for " << m[1]);
        types[m[1]] = m[2];
      } else if (std::regex_match(line, m, help)) {
        BOOST_TEST_REQUIRE(helped.insert(m[1]).second, "HELP twice for " << m[1]);
      } else if (std::regex_match(line, m, sample)) {
        const std::string name = m[1];
        BOOST_TEST_REQUIRE(types.count(name) == 1u, "sample before its TYPE: " << line);
        const std::string key = line.substr(0, line.rfind(' '));
        BOOST_TEST_REQUIRE(samples.count(key) == 0u, "duplicate sample: " << line);
        samples[key] = std::stod(m[5]);
      } else {
        BOOST_FAIL("not Prometheus text format: '" << line << "'");
      }
    }
  }
  double value(const std::string& key) const {
    auto it = samples.find(key);
    BOOST_TEST_REQUIRE((it != samples.end()), "no sample " << key);
    return it->second;
  }
};

// Waits for a condition on the /api/stats JSON.
bool poll_stats(httplib::Client& c, const std::function<bool(const nlohmann::json&)>& pred,
                std::chrono::milliseconds timeout = 10s) {
  return poll_until(
      [&] {
        auto res = c.Get("/api/stats");
        if (!res || res->status != 200) return false;
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        return !j.is_discarded() && pred(j);
      },
      timeout);
}

std::string str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

}  // namespace

BOOST_AUTO_TEST_SUITE(HttpApiRequests)

BOOST_AUTO_TEST_CASE(ndjson_publishes_valid_lines_and_rejects_invalid_ones_by_field) {
  NodeFixture f;
  auto c = f.client();
  const std::string body = request_line("/a", 200) + "\n" +
                           R"({"method":"GET","path":"/bad-status","status_code":"200"})" + "\n" +
                           request_line("/b", 404) + "\r\n" +
                           "\n" +
                           R"({"method":"GET","status_code":200})" + "\n" +
                           "{not json\n" +
                           request_line("/c", 500, R"(,"referer":"https://example.org/")");  // no final newline
  auto res = c.Post("/v1/requests", body, "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  const auto j = json_of(res);
  BOOST_TEST(j["accepted"] == 3);
  BOOST_TEST(j["rejected"] == 3);
  BOOST_REQUIRE(j["errors"].size() == 3u);
  BOOST_TEST(j["errors"][0]["index"] == 1);
  BOOST_TEST(contains(str(j["errors"][0]["error"]), "status_code"), j["errors"][0]);
  BOOST_TEST(j["errors"][1]["index"] == 3);
  BOOST_TEST(contains(str(j["errors"][1]["error"]), "path"), j["errors"][1]);
  BOOST_TEST(j["errors"][2]["index"] == 4);
  BOOST_TEST((j["refused"].is_array() && j["refused"].empty()), j);  // invalid, not refused by the bus

  const auto got = f.receive(3);
  std::multiset<std::string> paths;
  for (const auto& m : got) {
    BOOST_TEST((m.kind == MessageKind::request_sent));
    BOOST_TEST(m.request.node_id == "api-node");
    BOOST_TEST(!m.request.request_id.empty());
    paths.insert(m.request.path + " " + std::to_string(m.request.status_code));
  }
  BOOST_TEST((paths == std::multiset<std::string>{"/a 200", "/b 404", "/c 500"}));
  f.expect_nothing_more();
}

BOOST_AUTO_TEST_CASE(a_json_array_publishes_valid_items_and_rejects_invalid_ones) {
  NodeFixture f;
  auto c = f.client();
  const std::string body = "  [" + request_line("/x", 200) + "," + R"({"method":"GET","path":"/y","status_code":700})" +
                           ",\"not an object\"," + request_line("/z", 302) + "," +
                           R"({"method":"GET","path":"/w","status_code":200,"duration_ms":"slow"})" + "]";
  auto res = c.Post("/v1/requests", body, "application/json");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  const auto j = json_of(res);
  BOOST_TEST(j["accepted"] == 2);
  BOOST_TEST(j["rejected"] == 3);
  BOOST_REQUIRE(j["errors"].size() == 3u);
  BOOST_TEST(j["errors"][0]["index"] == 1);
  BOOST_TEST(contains(str(j["errors"][0]["error"]), "status_code"), j["errors"][0]);
  BOOST_TEST(j["errors"][1]["index"] == 2);
  BOOST_TEST(j["errors"][2]["index"] == 4);
  BOOST_TEST(contains(str(j["errors"][2]["error"]), "duration_ms"), j["errors"][2]);
  const auto got = f.receive(2);
  BOOST_TEST(got[0].request.path == "/x");
  BOOST_TEST(got[1].request.path == "/z");
  f.expect_nothing_more();
}

BOOST_AUTO_TEST_CASE(bad_bodies_get_400_and_publish_nothing) {
  NodeFixture f;
  auto c = f.client();
  const uint64_t before = f.published();
  for (const std::string& body : {std::string(""), std::string("\n\n  \r\n"), std::string("[{\"method\":"),
                                 std::string("[1,2"), std::string("[] trailing")}) {
    auto res = c.Post("/v1/requests", body, "application/json");
    BOOST_REQUIRE(res);
    BOOST_TEST(res->status == 400, "body '" << body << "' -> " << res->status);
    const auto j = json_of(res);
    BOOST_TEST(!j.value("error", std::string()).empty(), res->body);
  }
  // A non-object line is an item error, not a body error.
  auto res = c.Post("/v1/requests", "42\n", "application/x-ndjson");
  BOOST_TEST(res->status == 202);
  BOOST_TEST(json_of(res)["rejected"] == 1);
  BOOST_TEST(json_of(res)["accepted"] == 0);
  BOOST_TEST(f.published() == before);
  // Invalid UTF-8 inside a string is refused, never stored as garbage.
  auto utf8 = c.Post("/v1/requests", std::string(R"({"method":"GET","path":"/)") + "\xff\xfe" + R"(","status_code":200})",
                     "application/x-ndjson");
  BOOST_REQUIRE(utf8);
  BOOST_TEST(utf8->status == 202);
  BOOST_TEST(json_of(utf8)["rejected"] == 1);
  BOOST_TEST(f.published() == before);
}

BOOST_AUTO_TEST_CASE(deeply_nested_or_huge_item_count_bodies_get_400_and_the_node_keeps_serving) {
  NodeFixture f([](NodeOptions& o) { o.http.max_body_bytes = 1 << 20; });
  auto c = f.client();
  const uint64_t before = f.published();
  // 300,000 levels, 600 KB: nlohmann copies and dumps recursively, and this used to overflow a
  // server thread's stack (a crash of the whole node) before anything looked at the value.
  const std::string deep = std::string(300'000, '[') + std::string(300'000, ']');
  auto batch = c.Post("/v1/batch", R"({"batch":[{"type":"track","userId":"u","event":"e","properties":{"x":)" +
                                       deep + "}}]}", "application/json");
  BOOST_REQUIRE(batch);
  BOOST_TEST(batch->status == 400);
  BOOST_TEST(contains(json_of(batch).value("error", std::string()), "nested deeper than 64 levels"), batch->body);
  auto array = c.Post("/v1/requests", deep, "application/json");
  BOOST_REQUIRE(array);
  BOOST_TEST(array->status == 400);
  auto line = c.Post("/v1/requests", R"({"method":"GET","x":)" + deep + "}\n", "application/x-ndjson");
  BOOST_REQUIRE(line);
  BOOST_TEST(line->status == 202);
  BOOST_TEST(json_of(line)["rejected"] == 1);
  BOOST_TEST(f.published() == before);
  // Millions of tiny items are refused before a document of them is built, array or NDJSON.
  std::string tiny = "[";
  for (int i = 0; i < 100'001; ++i) tiny += i ? ",{}" : "{}";
  tiny += "]";
  auto many = c.Post("/v1/requests", tiny, "application/json");
  BOOST_REQUIRE(many);
  BOOST_TEST(many->status == 400);
  BOOST_TEST(json_of(many)["error"] == "body: more items than the limit of 100000");
  std::string lines;
  for (int i = 0; i < 100'001; ++i) lines += "{}\n";
  auto many_lines = c.Post("/v1/requests", lines, "application/x-ndjson");
  BOOST_REQUIRE(many_lines);
  BOOST_TEST(many_lines->status == 400);
  BOOST_TEST(json_of(many_lines)["error"] == "body: more items than the limit of 100000");
  // One item of 300,000 values (600 KB; 30-40 x that in memory once parsed) is refused unparsed.
  std::string padded = R"([{"method":"GET","path":"/pad","status_code":200,"pad":[0)";
  for (int i = 1; i < 300'000; ++i) padded += ",0";
  padded += "]}]";
  auto one_huge = c.Post("/v1/requests", padded, "application/json");
  BOOST_REQUIRE(one_huge);
  BOOST_TEST(one_huge->status == 400);
  BOOST_TEST(json_of(one_huge)["error"] == "body: an item holds more than 1024 JSON values");
  BOOST_TEST(f.published() == before);
  auto ok = c.Post("/v1/requests", request_line("/after", 200), "application/x-ndjson");
  BOOST_REQUIRE(ok);
  BOOST_TEST(ok->status == 202);
  BOOST_TEST(f.receive(1)[0].request.path == "/after");
}

BOOST_AUTO_TEST_CASE(oversized_bodies_get_413) {
  NodeFixture f;  // max_body_bytes = 64 KiB
  auto c = f.client();
  std::string body;
  while (body.size() <= 64 * 1024) body += request_line("/big", 200) + "\n";
  auto res = c.Post("/v1/requests", body, "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 413);
  // A body just under the limit is fine.
  std::string fits;
  while (fits.size() + 200 < 64 * 1024) fits += request_line("/fits", 200) + "\n";
  auto ok = c.Post("/v1/requests", fits, "application/x-ndjson");
  BOOST_REQUIRE(ok);
  BOOST_TEST(ok->status == 202);

  // A declared length far over the limit is refused at once, without waiting for the bytes.
  RawConnection raw(f.node->http_port());
  raw.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           "Content-Length: 1000000000000\r\n\r\n[");
  bool closed = false;
  const auto asked = std::chrono::steady_clock::now();
  const std::string answer = raw.read_until("bytes)\"}");
  BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s));
  BOOST_TEST(answer.rfind("HTTP/1.1 413", 0) == 0, answer);
  // The client is told to go away: the unread body must not be taken for a next request.
  BOOST_TEST(contains(answer, "Connection: close\r\n"), answer);
  // The same over chunked transfer encoding.
  RawConnection chunked(f.node->http_port());
  std::string big(70 * 1024, 'x');
  char size_hex[32];
  std::snprintf(size_hex, sizeof(size_hex), "%zx", big.size());
  chunked.send(std::string("POST /v1/requests HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n") + size_hex +
               "\r\n" + big + "\r\n0\r\n\r\n");
  const std::string chunked_answer = chunked.read_to_end(closed);
  BOOST_TEST(chunked_answer.rfind("HTTP/1.1 413", 0) == 0, chunked_answer.substr(0, 200));
  BOOST_TEST(f.node->bus().stats().published == f.published());
}

// A POST or PUT with neither Content-Length nor Transfer-Encoding has an empty body: answered
// 411 at once. httplib read such a body until the client closed: one that kept the connection
// open waited 10 s, and what one that closed had sent was stored.
BOOST_AUTO_TEST_CASE(a_body_without_a_length_is_refused_at_once_and_not_stored) {
  NodeFixture f;
  for (const std::string head : {"POST /v1/requests", "POST /v1/batch", "PUT /healthz"}) {
    RawConnection raw(f.node->http_port());
    raw.send(head + " HTTP/1.1\r\nHost: x\r\n\r\n{\"method\":\"GET\",\"path\":\"/no-length\",\"status_code\":200}\n");
    const auto asked = std::chrono::steady_clock::now();
    const std::string answer = raw.read_until("}");
    BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s), head);
    BOOST_TEST(answer.rfind("HTTP/1.1 411", 0) == 0, head << ": " << answer.substr(0, 200));
    BOOST_TEST(contains(answer, "length required"), answer);
    BOOST_TEST(contains(answer, "Connection: close\r\n"), answer);
  }
  BOOST_TEST(f.node->bus().stats().published == 0u);
}

// httplib 0.11 reads a chunked body of any size into memory on a route without a body reader
// (CVE-2025-46728), /healthz included, which needs no credentials. The node refuses it from the
// headers: the test sends one chunk and never the last, and still gets its answer at once.
BOOST_AUTO_TEST_CASE(a_chunked_body_to_a_route_that_takes_none_is_refused_before_it_is_read) {
  NodeFixture f;  // no token: every route is open, as on a default (loopback) node
  for (const std::string head : {"POST /healthz", "GET /", "PUT /v1/requests", "POST /no/such/route"}) {
    RawConnection raw(f.node->http_port());
    raw.send(head + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" +
             std::string(0x400, 'x') + "\r\n");
    const auto asked = std::chrono::steady_clock::now();
    const std::string answer = raw.read_until("}");
    BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s), head);
    BOOST_TEST(answer.rfind("HTTP/1.1 411", 0) == 0, head << ": " << answer.substr(0, 200));
    BOOST_TEST(contains(answer, "Connection: close\r\n"), answer);
  }
  auto c = f.client();
  auto res = c.Get("/healthz");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(poll_until([&] {  // counted by httplib's logger, which runs after the answer is sent
    auto m = c.Get("/metrics");
    return m && contains(m->body, "\nreqbus_http_bodies_rejected_total 4\n");
  }));
}

// A full bus with the block policy makes each broadcast wait block_timeout (100 ms). One body
// must not pay that once per item: after the first timeout the rest are refused at once, and
// the reply names every refused item so the sender can resend exactly those.
BOOST_AUTO_TEST_CASE(a_full_bus_refuses_the_rest_of_a_body_after_one_timeout) {
  NodeFixture f([](NodeOptions& o) {
    o.bus.queue_max_events = 8;
    o.bus.inproc_hwm = 1;
    o.bus.max_events_per_frame = 1;
  });
  Subscription stuck = f.stuck_subscriber();
  const std::string body = ndjson_body("/full/", 300);
  auto c = f.client();
  const auto asked = std::chrono::steady_clock::now();
  auto res = c.Post("/v1/requests", body, "application/x-ndjson");
  const auto took = std::chrono::steady_clock::now() - asked;
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 503);  // not all stored: a sender reading only the status knows
  BOOST_TEST(res->get_header_value("Retry-After") == "1");
  // Without the cut: ~290 timeouts of 100 ms, about 29 s.
  BOOST_TEST((took < 5s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  const auto j = json_of(res);
  const size_t accepted = j["accepted"].get<size_t>();
  BOOST_TEST(accepted < 300u);
  BOOST_TEST(j["rejected"] == 300 - accepted);
  BOOST_REQUIRE(j["refused"].size() == 300 - accepted);
  for (size_t i = 0; i < j["refused"].size(); ++i) BOOST_TEST(j["refused"][i] == accepted + i);
  BOOST_TEST(j["errors"][0]["error"] == "bus: timed_out");
  // One timed out on the bus; the rest were refused here without asking it. None is a drop of
  // the bus's: the API offers events (Bus::offer), and the sender was told.
  BOOST_TEST(f.node->bus().stats().offers_refused == 1u);
  BOOST_TEST(f.node->bus().stats().dropped_timeout == 0u);
  const PromText m(c.Get("/metrics")->body);
  BOOST_TEST(m.value("reqbus_http_items_refused_total") == double(300 - accepted));
  BOOST_TEST(f.node->stats_json()["refused"] == 300 - accepted);
  BOOST_TEST(f.node->stats_json()["dropped"] == 0);
  stuck.close();
}

// /healthz fails while the node loses events: here the bus refuses them (a subscriber never
// reads, the publish queue fills), and it says so by name; once a window passes with nothing
// lost, the node is healthy again. Items refused to an HTTP sender are not lost (the reply names
// each to send again): they are counted apart and leave the node healthy (helper-53 F4: a
// burst made /healthz 503 for a whole window).
BOOST_AUTO_TEST_CASE(healthz_fails_while_events_are_lost_and_recovers) {
  NodeFixture f([](NodeOptions& o) {
    o.bus.queue_max_events = 8;
    o.bus.inproc_hwm = 1;
    o.bus.max_events_per_frame = 1;
    o.bus.overflow = Overflow::drop_newest;
    o.health.window = 1s;
  });
  auto c = f.client();
  BOOST_TEST(c.Get("/healthz")->status == 200);
  Subscription stuck = f.stuck_subscriber();
  auto res = c.Post("/v1/requests", ndjson_body("/full/", 300), "application/x-ndjson");
  BOOST_REQUIRE(res);
  const uint64_t refused = json_of(res)["refused"].size();
  BOOST_REQUIRE(refused > 0u);
  BOOST_TEST(f.node->bus().stats().offers_refused == refused);  // handed back: no drop
  BOOST_TEST(f.node->bus().stats().dropped_newest == 0u);
  BOOST_TEST(c.Get("/healthz")->status == 200);
  const PromText m(c.Get("/metrics")->body);
  BOOST_TEST(m.value("reqbus_http_items_refused_total") == double(refused));
  BOOST_TEST(m.value("reqbus_http_items_rejected_total") == 0);  // none was invalid
  // A publisher that is told nothing (here in-process; the syslog listener's datagrams) loses them.
  RequestLog lost;
  lost.method = "GET";
  lost.path = "/lost";
  lost.status_code = 200;
  for (int i = 0; i < 20; ++i) (void)f.node->bus().broadcast(lost);
  BOOST_REQUIRE(f.node->bus().stats().dropped_newest > 0u);
  auto health = c.Get("/healthz");
  BOOST_REQUIRE(health);
  BOOST_TEST(health->status == 503);
  BOOST_TEST(contains(health->body, "losing events: the bus's publish queue was full (+"), health->body);
  BOOST_TEST(f.node->health() != "");
  stuck.close();  // the bus drains; nothing more is lost
  BOOST_TEST(poll_until([&] { return c.Get("/healthz")->status == 200; }, 10s));
  BOOST_TEST(c.Get("/healthz")->body == "ok\n");
}

// Counter increments the StatBuffer refuses (max_keys) are lost counts: unhealthy, by name.
BOOST_AUTO_TEST_CASE(healthz_names_refused_counter_increments) {
  NodeFixture f([](NodeOptions& o) { o.counters.max_keys = 1; });  // each request counts three keys
  auto c = f.client();
  BOOST_TEST(c.Post("/v1/requests", request_line("/counted", 200), "application/x-ndjson")->status == 202);
  BOOST_REQUIRE(poll_until([&] { return c.Get("/healthz")->status == 503; }, 10s));
  BOOST_TEST(contains(c.Get("/healthz")->body, "daily counter increments were refused (max_keys) (+2"));
}

// RFC 9112 6.3: a body whose end the headers leave ambiguous is refused, not guessed at (a proxy
// in front reading it the other way is how requests are smuggled).
BOOST_AUTO_TEST_CASE(ambiguous_body_lengths_get_400_and_publish_nothing) {
  NodeFixture f;
  const uint64_t before = f.published();
  const std::string line = request_line("/smuggled", 200);
  const std::string length = std::to_string(line.size());
  for (const std::string& headers : {"Content-Length: " + length + "\r\nContent-Length: 5\r\n",
                                    "Content-Length: " + length + "\r\nTransfer-Encoding: chunked\r\n",
                                    std::string("Content-Length: -1\r\n"), "Content-Length: +" + length + "\r\n"}) {
    RawConnection raw(f.node->http_port());
    raw.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n" + headers + "\r\n" +
             line);
    bool closed = false;
    const std::string answer = raw.read_to_end(closed);
    BOOST_TEST(answer.rfind("HTTP/1.1 400", 0) == 0, headers << ": " << answer.substr(0, 200));
    BOOST_TEST(contains(answer, "ambiguous body length"), answer);
    BOOST_TEST(closed);
  }
  // A transfer coding httplib cannot read was waited on for 10 s, then called incomplete.
  RawConnection gzip(f.node->http_port());
  gzip.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + line);
  const auto asked = std::chrono::steady_clock::now();
  bool closed = false;
  const std::string answer = gzip.read_to_end(closed);
  BOOST_TEST((std::chrono::steady_clock::now() - asked < 5s));
  BOOST_TEST(answer.rfind("HTTP/1.1 501", 0) == 0, answer.substr(0, 200));
  f.expect_nothing_more();
  BOOST_TEST(f.published() == before + 1);  // the barrier
}

// A Content-Encoding: gzip body that is not gzip was answered "incomplete request body".
BOOST_AUTO_TEST_CASE(a_body_not_in_its_content_encoding_is_named_as_such) {
  NodeFixture f;
  const uint64_t before = f.published();
  const std::string line = request_line("/not-gzip", 200);
  RawConnection raw(f.node->http_port());
  raw.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Encoding: gzip\r\n"
           "Content-Length: " + std::to_string(line.size()) + "\r\n\r\n" + line);
  bool closed = false;
  const std::string answer = raw.read_to_end(closed);
  BOOST_TEST(answer.rfind("HTTP/1.1 400", 0) == 0, answer.substr(0, 200));
  BOOST_TEST(contains(answer, "not valid gzip (its Content-Encoding)"), answer);
  f.expect_nothing_more();
  BOOST_TEST(f.published() == before + 1);  // the barrier
  // A real gzip body is read: httplib decompresses it (and max_body_bytes bounds what it inflates to).
  const std::string gzipped("\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\x03\xab\x56\xca\x4d\x2d\xc9\xc8\x4f\x51\xb2\x52\x72\x77\x0d\x51\xd2\x51\x2a\x48\x2c\xc9\x00\x72\xf4\xd3\xab\x80\x9c\xe2\x92\xc4\x92\xd2\xe2\xf8\xe4\xfc\x94\x54\x25\x2b\x23\x03\x03\x1d\xa5\x94\xd2\xa2\xc4\x92\xcc\xfc\xbc\xf8\xdc\x62\x25\x2b\xc3\x5a\x2e\x00\xfa\x81\xf2\x57\x40\x00\x00\x00", 81);  // {"method":"GET","path":"/gz",...}\n
  const auto res = f.client().Post("/v1/requests", {{"Content-Encoding", "gzip"}}, gzipped, "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202, res->body);
  BOOST_TEST(contains(res->body, "\"accepted\":1"), res->body);
}

BOOST_AUTO_TEST_CASE(truncated_requests_do_not_crash_or_publish_and_the_server_keeps_serving) {
  NodeFixture f;
  const int port = f.node->http_port();
  const uint64_t before = f.published();
  {  // Body shorter than its Content-Length, then the client goes away.
    RawConnection raw(port);
    raw.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 5000\r\n\r\n" +
             request_line("/truncated", 200) + "\n" + R"({"method":"GET","pa)");
    raw.shutdown_write();
    bool closed = false;
    const std::string answer = raw.read_to_end(closed);
    BOOST_TEST(closed);
    BOOST_TEST(!contains(answer, "202"), answer);
  }
  {  // Headers cut in the middle.
    RawConnection raw(port);
    raw.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nContent-Le");
    raw.shutdown_write();
    bool closed = false;
    raw.read_to_end(closed);
    BOOST_TEST(closed);
  }
  {  // Garbage instead of HTTP.
    RawConnection raw(port);
    raw.send(std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) + "\r\n\r\n");
    raw.shutdown_write();
    bool closed = false;
    const std::string answer = raw.read_to_end(closed);
    BOOST_TEST(closed);
    BOOST_TEST((answer.empty() || answer.rfind("HTTP/1.1 400", 0) == 0), answer);
  }
  // A client that sends half its headers and then just sits there does not block others.
  RawConnection idle(port);
  idle.send("GET /healthz HTTP/1.1\r\nHo");
  auto c = f.client();
  for (int i = 0; i < 3; ++i) {
    auto res = c.Get("/healthz");
    BOOST_REQUIRE(res);
    BOOST_TEST(res->status == 200);
  }
  auto res = c.Post("/v1/requests", request_line("/after", 200), "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  const auto got = f.receive(1);
  BOOST_TEST(got[0].request.path == "/after");  // the truncated line was never published
  BOOST_TEST(f.published() == before + 1);
}

// Each open connection holds a server thread while httplib reads it. With a fixed pool of 16,
// 16 clients sending their headers slowly kept /healthz waiting 23 s (helper-53). Threads are
// now added while all are busy, up to max_threads.
BOOST_AUTO_TEST_CASE(slow_clients_do_not_keep_others_waiting) {
  NodeFixture f([](NodeOptions& o) { o.http.max_threads = 64; });  // 4 threads to start with
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 24; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.node->http_port()));
    slow.back()->send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nUser-Agent: slo");
  }
  auto c = f.client();
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto res = c.Get("/healthz");
    BOOST_REQUIRE(res);
    BOOST_TEST(res->status == 200);
    BOOST_TEST((std::chrono::steady_clock::now() - start < 2s));
  }
  auto metrics = c.Get("/metrics");
  BOOST_REQUIRE(metrics);
  const PromText m(metrics->body);
  BOOST_TEST(m.value("reqbus_http_threads") >= 25);  // the slow ones and the client's
  BOOST_TEST(m.value("reqbus_http_saturated_total") == 0);
}

// At max_threads a new connection waits for a free thread (in the kernel's listen backlog, not
// in memory), is counted, and is served as soon as one is free.
BOOST_AUTO_TEST_CASE(at_max_threads_a_connection_waits_for_a_free_thread) {
  NodeFixture f([](NodeOptions& o) {
    o.http.threads = 2;
    o.http.max_threads = 3;
  });
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < 3; ++i) {
    slow.push_back(std::make_unique<RawConnection>(f.node->http_port()));
    slow.back()->send("GET /healthz HTTP/1.1\r\nHo");
  }
  std::this_thread::sleep_for(200ms);  // the three are being read
  auto waiting = std::async(std::launch::async, [&] {
    auto c = f.client();
    auto res = c.Get("/healthz");
    return res ? res->status : -1;
  });
  BOOST_TEST((waiting.wait_for(500ms) == std::future_status::timeout));
  slow.front().reset();  // closes: its thread is free again
  BOOST_REQUIRE((waiting.wait_for(5s) == std::future_status::ready));
  BOOST_TEST(waiting.get() == 200);
  slow.clear();
  auto c = f.client();
  auto metrics = c.Get("/metrics");
  BOOST_REQUIRE(metrics);
  BOOST_TEST(PromText(metrics->body).value("reqbus_http_saturated_total") >= 1);
}

BOOST_AUTO_TEST_CASE(wrong_method_and_unknown_route) {
  NodeFixture f;
  auto c = f.client();
  // A route asked with a method it does not take: 405 naming the ones it takes.
  auto get = c.Get("/v1/requests");
  BOOST_REQUIRE(get);
  BOOST_TEST(get->status == 405);
  BOOST_TEST(get->get_header_value("Allow") == "POST, OPTIONS");
  BOOST_TEST(contains(get->body, "/v1/requests takes POST, OPTIONS, not GET"), get->body);
  auto post = c.Post("/metrics", "x", "text/plain");
  BOOST_REQUIRE(post);
  BOOST_TEST(post->status == 405);
  BOOST_TEST(post->get_header_value("Allow") == "GET, HEAD, OPTIONS");
  auto del = c.Delete("/healthz");
  BOOST_REQUIRE(del);
  BOOST_TEST(del->status == 405);
  auto options = c.Options("/v1/batch");
  BOOST_REQUIRE(options);
  BOOST_TEST(options->status == 204);
  BOOST_TEST(options->get_header_value("Allow") == "POST, OPTIONS");
  // Unknown paths, and unknown assets, stay 404.
  auto unknown = c.Get("/no/such/route");
  BOOST_REQUIRE(unknown);
  BOOST_TEST(unknown->status == 404);
  BOOST_TEST(c.Post("/no/such/route", "x", "text/plain")->status == 404);
  BOOST_TEST(c.Options("/no/such/route")->status == 404);
  BOOST_TEST(c.Get("/assets/nosuch.js")->status == 404);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(HttpApiBatch)

const char* kSegmentBatch = R"({
  "batch": [
    {"type": "identify", "userId": "u-1", "messageId": "m-identify-1", "timestamp": "2024-05-01T10:00:00.000Z",
     "traits": {"email": "ada@example.org", "plan": "pro"}, "context": {"library": {"name": "analytics-python"}}},
    {"type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme Inc", "seats": 12}},
    {"type": "track", "userId": "u-1", "event": "Order Completed", "properties": {"total": 30.5},
     "anonymousId": "a-9", "integrations": {"All": true}},
    {"type": "track", "userId": "u-1", "properties": {"total": 1}}
  ],
  "sentAt": "2024-05-01T10:00:01.000Z"
})";

std::string basic(const std::string& user) {
  httplib::Headers h = {httplib::make_basic_authentication_header(user, "")};
  return h.begin()->second;
}

BOOST_AUTO_TEST_CASE(segment_batches_with_a_write_key_are_published) {
  NodeFixture f([](NodeOptions& o) { o.http.write_keys = {"wk-live"}; });
  auto c = f.client();
  c.set_basic_auth("wk-live", "");
  auto res = c.Post("/v1/batch", kSegmentBatch, "application/json");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  const auto j = json_of(res);
  BOOST_TEST(j["success"] == true);
  BOOST_TEST(j["accepted"] == 3);
  BOOST_TEST(j["rejected"] == 1);
  BOOST_REQUIRE(j["errors"].size() == 1u);
  BOOST_TEST(j["errors"][0]["index"] == 3);
  BOOST_TEST(contains(str(j["errors"][0]["error"]), "event"), j["errors"][0]);

  const auto got = f.receive(3);
  BOOST_TEST((got[0].kind == MessageKind::identify));
  BOOST_TEST(got[0].analytics.user_id == "u-1");
  BOOST_TEST(got[0].analytics.email == "ada@example.org");
  BOOST_TEST(got[0].analytics.message_id == "m-identify-1");
  BOOST_TEST((got[1].kind == MessageKind::group));
  BOOST_TEST(got[1].analytics.account_id == "acme");
  BOOST_TEST(got[1].analytics.name == "Acme Inc");
  BOOST_TEST((got[2].kind == MessageKind::track));
  BOOST_TEST(got[2].analytics.event == "Order Completed");
  BOOST_TEST(nlohmann::json::parse(got[2].analytics.properties_json)["total"] == 30.5);
  f.expect_nothing_more();
}

// Events the bus refuses (here: it is closed) must not be answered 2xx, which Segment clients
// take as "stored": 503 with Retry-After, and "refused" names each one (the invalid item is not
// among them: sending it again cannot help).
BOOST_AUTO_TEST_CASE(a_batch_the_bus_refuses_gets_503_naming_every_refused_event) {
  NodeFixture f([](NodeOptions& o) { o.http.write_keys = {"wk-live"}; });
  f.sub.close();
  f.node->bus().close(5s);
  auto c = f.client();
  c.set_basic_auth("wk-live", "");
  auto res = c.Post("/v1/batch", kSegmentBatch, "application/json");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 503);
  BOOST_TEST(res->get_header_value("Retry-After") == "1");
  const auto j = json_of(res);
  BOOST_TEST(j["success"] == false);
  BOOST_TEST(j["accepted"] == 0);
  BOOST_TEST(j["rejected"] == 4);
  BOOST_TEST(j["refused"] == nlohmann::json::array({0, 1, 2}), j);
}

BOOST_AUTO_TEST_CASE(unknown_or_missing_write_keys_get_401) {
  NodeFixture f([](NodeOptions& o) { o.http.write_keys = {"wk-live"}; });
  auto c = f.client();
  const uint64_t before = f.published();
  auto none = c.Post("/v1/batch", kSegmentBatch, "application/json");
  BOOST_REQUIRE(none);
  BOOST_TEST(none->status == 401);
  httplib::Headers wrong = {{"Authorization", basic("wk-other")}};
  auto bad = c.Post("/v1/batch", wrong, kSegmentBatch, "application/json");
  BOOST_REQUIRE(bad);
  BOOST_TEST(bad->status == 401);
  BOOST_TEST(json_of(bad)["success"] == false);
  httplib::Headers garbage = {{"Authorization", "Basic !!!not-base64"}};
  auto junk = c.Post("/v1/batch", garbage, kSegmentBatch, "application/json");
  BOOST_REQUIRE(junk);
  BOOST_TEST(junk->status == 401);
  // All padding: decodes to 3 zero bytes, four of them padding (a length once wrapped to 2^64).
  for (const char* odd : {"Basic ====", "Basic =", "Basic a===", "Basic "}) {
    auto r = c.Post("/v1/batch", httplib::Headers{{"Authorization", odd}}, kSegmentBatch, "application/json");
    BOOST_REQUIRE(r);
    BOOST_TEST(r->status == 401, odd);
  }
  BOOST_TEST(f.published() == before);
}

BOOST_AUTO_TEST_CASE(any_write_key_when_none_configured_and_bad_batches_get_400) {
  NodeFixture f;
  auto c = f.client();
  c.set_basic_auth("whatever", "");
  auto res = c.Post("/v1/batch", kSegmentBatch, "application/json");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(json_of(res)["accepted"] == 3);
  f.receive(3);
  for (const char* body : {"", "{", "[]", R"({"batch": 5})", R"({"batch": [], "sentAt": 7})"}) {
    auto r = c.Post("/v1/batch", body, "application/json");
    BOOST_REQUIRE(r);
    BOOST_TEST(r->status == 400, "body '" << body << "' -> " << r->status << " " << r->body);
  }
  f.expect_nothing_more();
}

BOOST_AUTO_TEST_CASE(with_a_token_and_no_write_keys_batches_need_the_token) {
  NodeFixture f([](NodeOptions& o) { o.http.bearer_token = "t0ken"; });
  auto c = f.client();
  const uint64_t before = f.published();
  BOOST_TEST(c.Post("/v1/batch", kSegmentBatch, "application/json")->status == 401);
  httplib::Headers other = {{"Authorization", basic("whatever")}};
  BOOST_TEST(c.Post("/v1/batch", other, kSegmentBatch, "application/json")->status == 401);
  BOOST_TEST(f.published() == before);
  httplib::Headers as_write_key = {{"Authorization", basic("t0ken")}};
  BOOST_TEST(c.Post("/v1/batch", as_write_key, kSegmentBatch, "application/json")->status == 200);
  f.receive(3);
  httplib::Headers as_bearer = {{"Authorization", "Bearer t0ken"}};
  BOOST_TEST(c.Post("/v1/batch", as_bearer, kSegmentBatch, "application/json")->status == 200);
  f.receive(3);
  f.expect_nothing_more();
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(HttpApiAuth)

BOOST_AUTO_TEST_CASE(a_bearer_token_guards_every_route_with_data) {
  NodeFixture f([](NodeOptions& o) { o.http.bearer_token = "t0ken"; });
  auto c = f.client();
  for (const char* path : {"/api/stats", "/metrics", "/api/stream"}) {
    auto res = c.Get(path);
    BOOST_REQUIRE(res);
    BOOST_TEST(res->status == 401, path);
  }
  auto post = c.Post("/v1/requests", request_line("/p", 200), "application/x-ndjson");
  BOOST_TEST(post->status == 401);
  httplib::Headers wrong = {{"Authorization", "Bearer t0ke"}};
  BOOST_TEST(c.Get("/api/stats", wrong)->status == 401);
  BOOST_TEST(c.Get("/healthz")->status == 200);
  // The dashboard's page and assets are static and hold no data: a browser opening
  // /?token=... loads them without the token, then opens the stream with it.
  for (const char* path : {"/", "/assets/dashboard.js", "/assets/dashboard.css"}) {
    auto res = c.Get(path);
    BOOST_REQUIRE(res);
    BOOST_TEST(res->status == 200, path);
  }
  // ?token= only on the stream (EventSource cannot send headers): elsewhere a token in a URL
  // would end up in access logs.
  BOOST_TEST(c.Get("/api/stats?token=t0ken")->status == 401);
  BOOST_TEST(c.Post("/v1/requests?token=t0ken", request_line("/p", 200), "application/x-ndjson")->status == 401);
  // The scheme is case-insensitive (RFC 7235).
  httplib::Headers lower = {{"Authorization", "bearer t0ken"}};
  BOOST_TEST(c.Get("/api/stats", lower)->status == 200);

  c.set_bearer_token_auth("t0ken");
  BOOST_TEST(c.Get("/api/stats")->status == 200);
  BOOST_TEST(c.Get("/metrics")->status == 200);
  auto ok = c.Post("/v1/requests", request_line("/p", 200), "application/x-ndjson");
  BOOST_TEST(ok->status == 202);
  BOOST_TEST(f.receive(1)[0].request.path == "/p");

  // ?token= is accepted (the browser's EventSource cannot set headers).
  httplib::Client browser("127.0.0.1", f.node->http_port());
  std::string first;
  auto stream = browser.Get("/api/stream?token=t0ken", [&](const char* data, size_t n) {
    first.append(data, n);
    return first.find("\n\n") == std::string::npos;
  });
  BOOST_TEST(first.rfind("data: ", 0) == 0, first.substr(0, 100));
  BOOST_TEST(browser.Get("/api/stream?token=wrong")->status == 401);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(HttpApiRead)

// A client resending a batch (its request_ids kept) is stored once, and the resent events are
// counted as duplicates, not only as persisted.
BOOST_AUTO_TEST_CASE(a_resent_batch_is_stored_once_and_counted_as_duplicates) {
  NodeFixture f;
  auto c = f.client();
  std::string body;
  for (int i = 0; i < 10; ++i) body += request_line("/r", 200, R"(,"request_id":"resend-)" + std::to_string(i) + "\"") + "\n";
  BOOST_TEST(c.Post("/v1/requests", body, "application/x-ndjson")->status == 202);
  BOOST_REQUIRE(poll_stats(c, [](const nlohmann::json& j) { return j.value("persisted", 0) == 10; }));
  BOOST_TEST(c.Post("/v1/requests", body + request_line("/new", 200) + "\n", "application/x-ndjson")->status == 202);
  BOOST_REQUIRE(poll_stats(c, [](const nlohmann::json& j) { return j.value("persisted", 0) == 21; }));
  const auto stats = nlohmann::json::parse(c.Get("/api/stats")->body);
  BOOST_TEST(stats.value("duplicates", -1) == 10);
  const PromText m(c.Get("/metrics")->body);
  BOOST_TEST(m.value("reqbus_store_duplicates_total") == 10);
  BOOST_TEST(m.value("reqbus_persisted_total") == 21);
  const NodeReport report = f.node->close(10s);
  BOOST_TEST(report.store_duplicates == 10u);
}

BOOST_AUTO_TEST_CASE(metrics_are_valid_prometheus_text_with_the_node_counters) {
  NodeFixture f;
  auto c = f.client();
  std::string body;
  for (int i = 0; i < 25; ++i) body += request_line("/m" + std::to_string(i % 3), 200) + "\n";
  BOOST_TEST(c.Post("/v1/requests", body, "application/x-ndjson")->status == 202);
  f.receive(25);
  // Wait until the Batcher has stored them (flush interval 100 ms).
  BOOST_REQUIRE(poll_stats(c, [](const nlohmann::json& j) { return j.value("persisted", 0) == 25; }));

  auto res = c.Get("/metrics");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 200);
  BOOST_TEST(contains(res->get_header_value("Content-Type"), "text/plain"));
  const PromText m(res->body);
  BOOST_TEST(m.types.at("reqbus_bus_published_total") == "counter");
  BOOST_TEST(m.value("reqbus_bus_published_total") == 25);
  for (const char* reason : {"queue_full_newest", "queue_full_oldest", "block_timeout", "closed", "close_deadline", "invalid"})
    BOOST_TEST(m.value(std::string("reqbus_bus_dropped_total{reason=\"") + reason + "\"}") == 0);
  BOOST_TEST(m.value("reqbus_bus_remote_gaps_total") == 0);
  BOOST_TEST(m.value("reqbus_subscription_gaps_total{subscription=\"persist\"}") == 0);
  BOOST_TEST(m.value("reqbus_persisted_total") == 25);
  BOOST_TEST(m.types.at("reqbus_bus_queue_depth") == "gauge");
  BOOST_TEST(m.value("reqbus_bus_queue_depth") >= 0);
  BOOST_TEST(m.value("reqbus_batcher_queue_depth") == 0);
  BOOST_TEST(m.value("reqbus_flush_latency_seconds") > 0);
  BOOST_TEST(m.value("reqbus_flush_latency_seconds") < 30);
  BOOST_TEST(m.value("reqbus_batcher_retried_total") == 0);
  BOOST_TEST(m.value("reqbus_batcher_spooled_total") == 0);
  BOOST_TEST(m.value("reqbus_subscription_delivered_total{subscription=\"persist\"}") == 25);
  BOOST_TEST(m.value("reqbus_http_items_accepted_total") == 25);
  BOOST_TEST(m.types.count("reqbus_batcher_dropped_total") == 1u);
  // Every reason of BatcherDrops, so the samples sum to dropped.total().
  for (const char* reason : {"newest", "oldest", "timeout", "closed", "spool_full", "spool_error", "no_spool", "dead_letter_error"})
    BOOST_TEST(m.value(std::string("reqbus_batcher_dropped_total{reason=\"") + reason + "\"}") == 0, reason);
}

// A peer address nobody listens on (a wrong --peer): /metrics and /api/stats say so per peer.
BOOST_AUTO_TEST_CASE(metrics_and_stats_show_each_peer_up_or_down_with_its_failures) {
  const std::string peer = "tcp://127.0.0.1:" + std::to_string(test::port_outside_ephemeral_range(SOCK_STREAM));
  NodeFixture f([&](NodeOptions& o) {
    o.bus.peers = {peer};
    o.bus.insecure_plaintext = true;
    o.bus.peer_unreachable_after = 200ms;
  });
  auto c = f.client();
  const std::string up = "reqbus_bus_peer_up{peer=\"" + peer + "\"}";
  const std::string failures = "reqbus_bus_peer_connect_failures_total{peer=\"" + peer + "\"}";
  BOOST_REQUIRE(poll_until([&] {
    auto res = c.Get("/metrics");
    return res && res->status == 200 && PromText(res->body).value(failures) > 0;
  }, 3s));
  const PromText m(c.Get("/metrics")->body);
  BOOST_TEST(m.types.at("reqbus_bus_peer_up") == "gauge");
  BOOST_TEST(m.types.at("reqbus_bus_peer_connect_failures_total") == "counter");
  BOOST_TEST(m.value(up) == 0);
  const auto stats = json_of(c.Get("/api/stats"));
  BOOST_REQUIRE(stats.contains("peers"));
  BOOST_REQUIRE_EQUAL(stats["peers"].size(), 1u);
  const auto& p = stats["peers"][0];
  BOOST_TEST(str(p["endpoint"]) == peer);
  BOOST_TEST(p["connected"] == false);
  BOOST_TEST(p.value("connect_failures", 0) > 0);
  BOOST_TEST(str(p["last_failure"]) == "connection refused");
  BOOST_TEST(p.value("since", int64_t(0)) > 1'600'000'000);  // unix seconds
}

BOOST_AUTO_TEST_CASE(stats_count_what_was_published_with_a_node_filter) {
  NodeFixture f;
  auto c = f.client();
  std::string body;
  for (int i = 0; i < 10; ++i) body += request_line(i < 4 ? "/missing" : "/", i < 4 ? 404 : 200) + "\n";
  BOOST_TEST(c.Post("/v1/requests", body, "application/x-ndjson")->status == 202);
  BOOST_REQUIRE(poll_stats(c, [](const nlohmann::json& j) { return j.value("total", 0) == 10; }));
  const auto j = json_of(c.Get("/api/stats"));
  BOOST_TEST(j["status"]["404"] == 4);
  BOOST_TEST(j["status"]["200"] == 6);
  BOOST_TEST(j["self"] == "api-node");
  BOOST_TEST(j["published"] == 10);
  BOOST_TEST(json_of(c.Get("/api/stats?node=api-node"))["total"] == 10);
  BOOST_TEST(json_of(c.Get("/api/stats?node=elsewhere"))["total"] == 0);
}

BOOST_AUTO_TEST_CASE(healthz_dashboard_and_assets) {
  NodeFixture f;
  auto c = f.client();
  auto health = c.Get("/healthz");
  BOOST_REQUIRE(health);
  BOOST_TEST(health->status == 200);
  BOOST_TEST(health->body == "ok\n");

  auto page = c.Get("/");
  BOOST_REQUIRE(page);
  BOOST_TEST(page->status == 200);
  BOOST_TEST(contains(page->get_header_value("Content-Type"), "text/html"));
  BOOST_TEST(contains(page->body, "<html"));
  BOOST_TEST(contains(page->body, "uPlot.iife.min.js"));
  BOOST_TEST(!page->get_header_value("Content-Security-Policy").empty());

  auto uplot = c.Get("/assets/uPlot.iife.min.js");
  BOOST_REQUIRE(uplot);
  BOOST_TEST(uplot->status == 200);
  BOOST_TEST(contains(uplot->get_header_value("Content-Type"), "javascript"));
  BOOST_TEST(uplot->body.size() > 10000u);
  BOOST_TEST(contains(uplot->body, "uPlot"));
  BOOST_TEST(c.Get("/assets/dashboard.js")->status == 200);
  BOOST_TEST(c.Get("/assets/nope.js")->status == 404);
  BOOST_TEST(c.Get("/assets/../CMakeLists.txt")->status == 404);
  BOOST_TEST(c.Get("/assets/%2e%2e%2fCMakeLists.txt")->status == 404);
}

BOOST_AUTO_TEST_CASE(the_stream_sends_a_data_line_promptly_and_then_every_interval) {
  NodeFixture f;
  httplib::Client c("127.0.0.1", f.node->http_port());
  c.set_read_timeout(5, 0);
  std::string received;
  std::vector<std::chrono::steady_clock::duration> at;
  const auto start = std::chrono::steady_clock::now();
  auto res = c.Get("/api/stream", [&](const char* data, size_t n) {
    received.append(data, n);
    size_t events = 0;
    for (size_t p = 0; (p = received.find("\n\n", p)) != std::string::npos; p += 2) ++events;
    while (at.size() < events) at.push_back(std::chrono::steady_clock::now() - start);
    return events < 2;
  });
  BOOST_REQUIRE(at.size() >= 2u);
  BOOST_TEST(received.rfind("data: ", 0) == 0);
  const std::string first = received.substr(6, received.find("\n\n") - 6);
  const auto j = nlohmann::json::parse(first, nullptr, false);
  BOOST_REQUIRE(!j.is_discarded());
  BOOST_TEST(j.contains("series"));
  BOOST_TEST(j["self"] == "api-node");
  // The client went away: the server notices and frees the slot.
  auto stream_clients = [&] {
    auto m = c.Get("/metrics");
    return m ? PromText(m->body).value("reqbus_http_stream_clients") : -1.0;
  };
  BOOST_TEST(poll_until([&] { return stream_clients() == 0; }));
}

// The first line comes on connecting, not after a period: with a 20 s period, it must come
// within 5 s (a wide bound, for sanitizer builds under load).
BOOST_AUTO_TEST_CASE(the_first_stream_line_does_not_wait_for_the_period) {
  NodeFixture f([](NodeOptions& o) { o.http.stream_interval = 20s; });
  httplib::Client c("127.0.0.1", f.node->http_port());
  c.set_read_timeout(10, 0);
  std::string received;
  const auto start = std::chrono::steady_clock::now();
  c.Get("/api/stream", [&](const char* data, size_t n) {
    received.append(data, n);
    return received.find("\n\n") == std::string::npos;  // stop after the first event
  });
  const auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST(received.rfind("data: ", 0) == 0, received.substr(0, 100));
  BOOST_TEST((took < 5s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
}

BOOST_AUTO_TEST_CASE(stream_clients_cannot_take_every_server_thread) {
  NodeFixture f([](NodeOptions& o) { o.http.max_threads = 4; });  // 4 server threads, no more
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::vector<std::promise<void>> started(2);
  for (int i = 0; i < 2; ++i)
    readers.emplace_back([&, i] {
      httplib::Client c("127.0.0.1", f.node->http_port());
      c.set_read_timeout(30, 0);
      bool first = true;
      c.Get("/api/stream", [&](const char*, size_t) {
        if (first) started[size_t(i)].set_value();
        first = false;
        return !stop.load();
      });
    });
  for (auto& s : started) BOOST_REQUIRE(s.get_future().wait_for(5s) == std::future_status::ready);
  auto c = f.client();
  c.set_read_timeout(5, 0);
  // Past the limit, a stream is refused at once instead of taking a thread...
  auto refused = c.Get("/api/stream");
  BOOST_REQUIRE(refused);
  BOOST_TEST(refused->status == 503);
  // ...and the API still answers.
  auto res = c.Post("/v1/requests", request_line("/while-streaming", 200), "application/x-ndjson");
  BOOST_REQUIRE(res);
  BOOST_TEST(res->status == 202);
  BOOST_TEST(f.receive(1)[0].request.path == "/while-streaming");
  stop = true;
  for (auto& t : readers) t.join();
}

// A client that sends its request a byte at a time, each within the read timeout, kept
// httplib's stop() waiting for its worker: the node never finished closing (SIGTERM ignored,
// helper-56). Connections still open after a short grace are cut.
BOOST_AUTO_TEST_CASE(closing_the_node_cuts_a_client_that_sends_slowly) {
  NodeFixture f;
  RawConnection slow(f.node->http_port());
  slow.send("POST /v1/requests HTTP/1.1\r\nHost: x\r\nUser-Agent: s");
  std::atomic<bool> closing{true};
  std::thread trickle([&] {
    while (closing) {
      std::this_thread::sleep_for(300ms);
      if (::send(slow.fd(), "l", 1, MSG_NOSIGNAL) != 1) break;  // cut: the node closed it
    }
  });
  const auto start = std::chrono::steady_clock::now();
  f.node->close(10s);
  const auto took = std::chrono::steady_clock::now() - start;
  closing = false;
  trickle.join();
  BOOST_TEST((took < 5s), std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  bool closed = false;
  slow.read_to_end(closed);
  BOOST_TEST(closed);
}

BOOST_AUTO_TEST_CASE(closing_the_node_ends_open_streams) {
  NodeFixture f;
  std::promise<void> first_event;
  std::atomic<bool> signalled{false};
  std::thread reader([&] {
    httplib::Client c("127.0.0.1", f.node->http_port());
    c.set_read_timeout(30, 0);
    c.Get("/api/stream", [&](const char*, size_t) {
      if (!signalled.exchange(true)) first_event.set_value();
      return true;
    });
  });
  BOOST_REQUIRE(first_event.get_future().wait_for(5s) == std::future_status::ready);
  const auto start = std::chrono::steady_clock::now();
  f.node->close(10s);
  reader.join();
  BOOST_TEST((std::chrono::steady_clock::now() - start < 9s));  // within close()'s budget
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(SyslogDatagrams)

// The node's syslog listener on a real UDP socket: every datagram is counted, and a bad one
// (empty, not syslog, not a log line) is rejected without stopping the good ones.
BOOST_AUTO_TEST_CASE(every_datagram_is_counted_and_bad_ones_do_not_stop_good_ones) {
  std::mutex mu;
  std::vector<std::string> paths;
  SyslogListener listener("127.0.0.1:0", [&](const RequestLog& r) {
    std::lock_guard lock(mu);
    paths.push_back(r.path);
    return PublishStatus::ok;
  });
  listener.start();
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  BOOST_REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(listener.port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  auto send = [&](const std::string& d) {
    BOOST_REQUIRE_EQUAL(::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
                        ssize_t(d.size()));
  };
  const std::string line = R"(1.2.3.4 - - [21/Nov/2023:06:48:03 +0000] "GET /ok HTTP/1.1" 200 5 "-" "agent/1.0")";
  send("");                                              // empty
  send("not syslog at all");                             // no envelope
  send("<190>Nov 21 06:48:03 web1 nginx: garbage");      // not a log line
  send("<190>Nov 21 06:48:03 web1 nginx: " + line);      // good
  BOOST_TEST(poll_until([&] { return listener.received() == 4; }));
  BOOST_TEST(listener.rejected() == 3u);
  {
    std::lock_guard lock(mu);
    BOOST_TEST(paths == std::vector<std::string>{"/ok"});
  }
  ::close(fd);
  listener.stop();
}

BOOST_AUTO_TEST_CASE(a_listen_address_that_is_not_ipv4_host_and_port_is_refused) {
  for (const char* bad : {"127.0.0.1:5514x", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:-1", "localhost:5514", "5514"}) {
    SyslogListener listener(bad, [](const RequestLog&) { return PublishStatus::ok; });
    BOOST_CHECK_THROW(listener.start(), Error);
  }
}

BOOST_AUTO_TEST_SUITE_END()

// The HTTP worker pool on its own (node/http_pool.hpp).
BOOST_AUTO_TEST_SUITE(HttpWorkerPool)

BOOST_AUTO_TEST_CASE(grows_to_max_waits_there_and_shrinks_under_a_trickle) {
  auto stats = std::make_shared<PoolStats>();
  ElasticPool pool(2, 8, 200ms, stats);
  BOOST_TEST(stats->threads.load() == 2u);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<int> ran{0};
  auto blocking = [&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return release; });
    ++ran;
  };
  for (int i = 0; i < 8; ++i) pool.enqueue(blocking);
  BOOST_TEST(stats->threads.load() == 8u);
  BOOST_REQUIRE(poll_until([&] { return stats->busy.load() == 8u; }, 5s));
  auto ninth = std::async(std::launch::async, [&] { pool.enqueue([&] { ++ran; }); });  // waits: all 8 busy
  BOOST_TEST((ninth.wait_for(300ms) == std::future_status::timeout));
  BOOST_TEST(stats->saturated.load() == 1u);
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  BOOST_REQUIRE((ninth.wait_for(5s) == std::future_status::ready));
  BOOST_REQUIRE(poll_until([&] { return ran.load() == 9; }, 5s));
  BOOST_TEST(stats->peak.load() == 8u);
  // One short task every 20 ms: served by the thread idle last, so the others reach their idle
  // timeout (with wake-ups in turn, each got work in time and all 8 stayed: helper-55 F4).
  const auto until = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < until) {
    pool.enqueue([&] { ++ran; });
    std::this_thread::sleep_for(20ms);
  }
  BOOST_TEST(stats->threads.load() <= 3u);
  BOOST_TEST(stats->threads.load() >= 2u);  // never below min
  pool.shutdown();
  BOOST_TEST(stats->threads.load() == 0u);
}

BOOST_AUTO_TEST_CASE(shutdown_runs_every_task_handed_over) {
  auto stats = std::make_shared<PoolStats>();
  std::atomic<int> ran{0};
  {
    ElasticPool pool(1, 4, 30s, stats);
    for (int i = 0; i < 4; ++i)
      pool.enqueue([&] {
        std::this_thread::sleep_for(50ms);
        ++ran;
      });
    pool.shutdown();  // the destructor's second shutdown() is harmless
  }
  BOOST_TEST(ran.load() == 4);
  BOOST_TEST(stats->threads.load() == 0u);
  BOOST_TEST(stats->busy.load() == 0u);
}

BOOST_AUTO_TEST_SUITE_END()
