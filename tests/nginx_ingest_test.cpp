// Ingest from a real nginx (Debian's): a private nginx logs every request it serves twice —
// `access_log syslog:server=` straight to a node's syslog listener (combined + $request_time),
// and nginx `escape=json` lines to a file — and the test checks that the node saw exactly the
// requests that were sent (method, path without query, status, user agent, referer, latency),
// then feeds the JSON file through the real `reqbus ingest` program into a second node over
// HTTP, and through ingest::LineParser directly, and checks the same requests come out.
// Missing nginx is a failure, not a skip: scripts/setup.sh installs it.
#include <httplib.h>
#include <sys/wait.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "ingest/log_parse.hpp"
#include "node/node.hpp"
#include "reqbus/request_log.hpp"
#include "tests/support/nginx.hpp"
#include "tests/support/spawned_process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace std::chrono_literals;
using reqbus::RequestLog;

namespace {

// nginx's "combined" plus $request_time, as docs/CONFIG.md tells users to configure it, and the
// JSON form with nginx's variable names as keys.
const char* kHttpConfig = R"(
  log_format reqbus '$remote_addr - $remote_user [$time_local] "$request" $status '
                    '$body_bytes_sent "$http_referer" "$http_user_agent" $request_time';
  log_format reqbus_json escape=json '{"time_iso8601":"$time_iso8601","remote_addr":"$remote_addr",'
                    '"request":"$request","status":$status,"request_time":$request_time,'
                    '"http_referer":"$http_referer","http_user_agent":"$http_user_agent",'
                    '"request_id":"$request_id"}';
  server {
    listen 127.0.0.1:@PORT@;
    access_log syslog:server=127.0.0.1:@SYSLOG_PORT@,tag=nginx reqbus;
    access_log @DIR@/access.json reqbus_json;
    location = /hello { return 200 "hello\n"; }
    location = /robots.txt { return 200 "User-agent: *\nDisallow:\n"; }
    location /products/ { return 200 "product\n"; }
    location / { return 404; }
  }
)";

// One request as the test sends it, and as a node should record it.
struct Sent {
  std::string method, target, path;  // target may carry a query; path never does
  int status;
  std::string agent, referer;
};

const std::vector<Sent>& requests() {
  static const std::vector<Sent> r = {
      {"GET", "/hello", "/hello", 200, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "https://example.org/start"},
      {"GET", "/products/42?color=red&size=m", "/products/42", 200, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "http://127.0.0.1/hello"},
      {"GET", "/products/7", "/products/7", 200, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", ""},
      {"GET", "/missing", "/missing", 404, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36", ""},
      {"GET", "/wp-login.php", "/wp-login.php", 404, "sqlmap/1.7.2#stable (https://sqlmap.org)", ""},
      {"POST", "/products/cart", "/products/cart", 200, "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "https://example.org/products/7"},
      {"HEAD", "/hello", "/hello", 200, "curl/7.88.1", ""},
      {"GET", "/robots.txt", "/robots.txt", 200, "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", ""},
      {"GET", "/hello", "/hello", 200, "<script>alert(1)</script>", ""},
      {"DELETE", "/products/9", "/products/9", 200, "python-requests/2.31", ""},
      {"GET", "/caf%C3%A9/menu", "/caf%C3%A9/menu", 404, "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15", ""},
      {"GET", "/hello?utm_source=news", "/hello", 200, "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/126.0 Mobile Safari/537.36", "https://news.example.com/"},
  };
  return r;
}

using Key = std::tuple<std::string, std::string, int, std::string, std::string>;  // method path status agent referer
std::vector<Key> expected_keys() {
  std::vector<Key> k;
  for (const auto& s : requests()) k.emplace_back(s.method, s.path, s.status, s.agent, s.referer);
  std::sort(k.begin(), k.end());
  return k;
}
std::vector<Key> keys_of(const std::vector<RequestLog>& logs) {
  std::vector<Key> k;
  for (const auto& r : logs) k.emplace_back(r.method, r.path, r.status_code, r.user_agent, r.referer);
  std::sort(k.begin(), k.end());
  return k;
}
std::string describe(const std::vector<Key>& keys) {
  std::ostringstream o;
  for (const auto& [m, p, s, a, r] : keys) o << "\n  " << m << " " << p << " " << s << " [" << a << "] [" << r << "]";
  return o.str();
}

reqbus::node::NodeOptions node_options(const std::string& syslog_listen) {
  reqbus::node::NodeOptions o;
  o.store = "none";
  o.spool_dir = "";
  o.http.port = 0;
  o.syslog_listen = syslog_listen;
  return o;
}

// Every RequestLog published on a node's bus, collected for the test thread.
class Collector {
 public:
  explicit Collector(reqbus::Bus& bus) {
    reqbus::SubscribeOptions so;
    so.name = "test-collector";
    sub_ = bus.subscribe(so, [this](const reqbus::Message& m) {
      if (m.kind != reqbus::MessageKind::request_sent) return;
      std::lock_guard lock(mu_);
      logs_.push_back(m.request);
      cv_.notify_all();
    });
  }
  // Waits until `n` events arrived; returns them (fewer when the deadline passed).
  std::vector<RequestLog> wait_for(size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return logs_.size() >= n; });
    return logs_;
  }
  // Polls `done` (which reads state outside the bus, e.g. LiveStats) every 10 ms or on each new
  // event, until it holds or `timeout` passes.
  template <class Pred>
  bool poll(Pred done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::unique_lock lock(mu_);
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      cv_.wait_for(lock, 10ms);
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RequestLog> logs_;
  reqbus::Subscription sub_;
};

void send_requests(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(10, 0);
  for (const auto& s : requests()) {
    httplib::Headers h = {{"User-Agent", s.agent}};
    if (!s.referer.empty()) h.emplace("Referer", s.referer);
    auto send = [&]() -> httplib::Result {
      if (s.method == "HEAD") return client.Head(s.target, h);
      if (s.method == "POST") return client.Post(s.target, h, "item=7&qty=1", "application/x-www-form-urlencoded");
      if (s.method == "DELETE") return client.Delete(s.target, h);
      return client.Get(s.target, h);
    };
    const httplib::Result res = send();
    BOOST_REQUIRE_MESSAGE(res, s.method << " " << s.target << ": " << httplib::to_string(res.error()));
    BOOST_REQUIRE_EQUAL(res->status, s.status);
  }
}

// One request before the test goes on: HttpApi::stop() right after start() can miss a listen
// thread that is not yet accepting and then waits for it forever (cpp-httplib 0.11's stop()
// does nothing until listen() runs), so a test failing early would hang instead of failing.
void require_serving(reqbus::node::Node& node) {
  httplib::Client c("127.0.0.1", node.http_port());
  c.set_read_timeout(10, 0);
  auto res = c.Get("/healthz");
  BOOST_REQUIRE_MESSAGE(res && res->status == 200, "the node's HTTP API does not answer /healthz");
}

uint64_t metric(const std::string& text, const std::string& name) {
  const size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? ~0ull : std::stoull(text.substr(at + name.size() + 2));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(NginxIngest)

BOOST_AUTO_TEST_CASE(syslog_from_real_nginx_then_json_file_through_reqbus_ingest) {
  const char* bin_dir = std::getenv("REQBUS_TEST_BINARY_DIR");
  BOOST_REQUIRE_MESSAGE(bin_dir && *bin_dir, "REQBUS_TEST_BINARY_DIR is not set (ctest sets it to the build dir holding `reqbus`)");
  const std::string reqbus_bin = std::string(bin_dir) + "/reqbus";
  const size_t n = requests().size();
  // Fails here, with the reason, when nginx is missing (before any node starts).
  (void)reqbus::test::require_executable("REQBUS_NGINX", "/usr/sbin/nginx", "Debian's nginx package");

  // Node 1 takes nginx's syslog datagrams. The Node API has no accessor for a port-0 syslog
  // listener, so the test picks a free UDP port itself.
  const int syslog_port = reqbus::test::free_udp_port();
  reqbus::node::Node node(node_options("127.0.0.1:" + std::to_string(syslog_port)));
  require_serving(node);
  Collector seen(node.bus());

  reqbus::test::NginxOptions no;
  std::string config = kHttpConfig;
  config.replace(config.find("@SYSLOG_PORT@"), 13, std::to_string(syslog_port));
  no.http_config = config;
  reqbus::test::NginxServer nginx(no);
  BOOST_TEST_MESSAGE("nginx on 127.0.0.1:" << nginx.port() << ", node syslog on udp " << syslog_port);

  send_requests(nginx.port());
  const auto logs = seen.wait_for(n, 15s);
  BOOST_REQUIRE_MESSAGE(logs.size() == n, "the node got " << logs.size() << " of " << n << " requests over syslog; metrics:\n"
                                                          << node.metrics() << "\nnginx error log:\n" << nginx.error_log());
  BOOST_TEST(keys_of(logs) == expected_keys(), "got:" << describe(keys_of(logs)) << "\nwant:" << describe(expected_keys()));
  for (const auto& r : logs) {
    BOOST_TEST(r.remote_ip == "127.0.0.1");
    BOOST_TEST(r.duration_ms >= 0.0);
    BOOST_TEST(r.duration_ms < 5000.0);
    const auto now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    BOOST_TEST(std::abs(r.inserted_at - now_us) < 120 * 1000000LL, "time from nginx's $time_local is off: " << r.inserted_at);
  }
  // The live statistics (what the dashboard shows) count the same requests.
  BOOST_REQUIRE_MESSAGE(seen.poll([&] { return node.live().total() >= n; }, 10s), "live total " << node.live().total() << " of " << n);
  const auto snap = node.live().snapshot();
  BOOST_TEST(snap["total"].get<uint64_t>() == n);
  BOOST_TEST(snap["status"]["200"].get<uint64_t>() == 9u);
  BOOST_TEST(snap["status"]["404"].get<uint64_t>() == 3u);
  BOOST_TEST(snap.dump().find("\"/hello\",4]") != std::string::npos, "top_paths: " << snap["top_paths"].dump());
  const std::string metrics = node.metrics();
  BOOST_TEST(metric(metrics, "reqbus_syslog_received_total") == n, metrics);
  BOOST_TEST(metric(metrics, "reqbus_syslog_rejected_total") == 0u);

  // The JSON log file: complete once nginx stopped gracefully (it finishes and logs every request).
  BOOST_REQUIRE_MESSAGE(nginx.stop(), "nginx did not stop gracefully:\n" << nginx.error_log());
  const std::string json_file = nginx.path("access.json");
  const std::string text = reqbus::test::read_whole_file(json_file);
  BOOST_REQUIRE_EQUAL(std::count(text.begin(), text.end(), '\n'), std::ptrdiff_t(n));

  // ingest::LineParser on the file, line by line.
  {
    reqbus::ingest::LineParser parser(reqbus::ingest::LogFormat::nginx_json);
    std::vector<RequestLog> parsed;
    std::istringstream in(text);
    std::string line;
    for (uint64_t offset = 0; std::getline(in, line); offset += line.size() + 1) {
      RequestLog r;
      const std::string why = parser.parse(line, reqbus::ingest::source_id(json_file), offset, r);
      BOOST_TEST(why.empty(), why << ": " << line);
      BOOST_TEST(r.request_id.size() == 32u, "nginx's $request_id is kept: " << r.request_id);
      parsed.push_back(r);
    }
    BOOST_TEST(keys_of(parsed) == expected_keys(), "got:" << describe(keys_of(parsed)));
  }

  // The real program: `reqbus ingest FILE --node-addr` into a second node over HTTP.
  reqbus::node::Node second(node_options(""));
  require_serving(second);
  Collector seen2(second.bus());
  reqbus::test::TempDir dir("reqbus-nginx-ingest");
  reqbus::test::SpawnOptions so;
  so.argv = {reqbus_bin, "ingest", json_file, "--node-addr", "127.0.0.1:" + std::to_string(second.http_port()),
             "--format", "nginx_json"};
  so.output_file = dir.sub("ingest.out");
  reqbus::test::SpawnedProcess ingest(so);
  const auto status = ingest.wait(30s);
  BOOST_REQUIRE_MESSAGE(status.has_value(), "reqbus ingest did not finish in 30 s: " << ingest.output_tail());
  BOOST_REQUIRE_MESSAGE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0, "reqbus ingest failed: " << ingest.output_tail());
  const auto logs2 = seen2.wait_for(n, 15s);
  BOOST_REQUIRE_EQUAL(logs2.size(), n);
  BOOST_TEST(keys_of(logs2) == expected_keys(), "got:" << describe(keys_of(logs2)));
  BOOST_REQUIRE(seen2.poll([&] { return second.live().total() >= n; }, 10s));
  const auto snap2 = second.live().snapshot();
  BOOST_TEST(snap2["status"] == snap["status"]);
  BOOST_TEST(snap2["top_paths"] == snap["top_paths"]);
  BOOST_TEST(snap2["bots"] == snap["bots"]);
}

BOOST_AUTO_TEST_SUITE_END()
