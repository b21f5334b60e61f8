// examples/request_logger.hpp: a real cpp-httplib server on a loopback port with a
// RequestLogger publishing onto a real in-process Bus; requests from httplib::Client; session
// time on a ManualClock. Covers the RequestLog fields, the session cookie, page views, the
// bounded session table (CLOCK eviction), idle expiry and truncation; a failing getrandom
// (injected with a seccomp filter); one worker thread serving six loggers in turn; and
// examples/bind_server.hpp's accept backlog.
#include <boost/test/unit_test.hpp>
#include <httplib.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "examples/bind_server.hpp"
#include "examples/request_logger.hpp"
#include "tests/support/bus_fixtures.hpp"

using namespace reqbus;
using namespace reqbus::test;

namespace {

struct LoggedServer {
  explicit LoggedServer(size_t max_sessions = 100'000, std::vector<std::string> trusted_proxies = {},
                        bool sessions = true) {
    BusOptions bo;
    bo.name = "request-logger-test";
    bo.node_id = "logger-node";
    bo.overflow = Overflow::drop_newest;
    bus = std::make_unique<Bus>(bo);
    SubscribeOptions so;
    so.scope = Scope::local_only;
    sub = bus->subscribe(so, logs.handler());
    examples::RequestLoggerOptions lo;
    lo.clock = clock;
    lo.max_sessions = max_sessions;
    lo.session_idle = std::chrono::seconds(60);
    lo.trusted_proxies = std::move(trusted_proxies);
    lo.sessions = sessions;
    logger = std::make_unique<examples::RequestLogger>(*bus, lo);
    server.Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("home", "text/plain"); });
    server.Get("/missing", [](const httplib::Request&, httplib::Response& res) { res.status = 404; });
    logger->install(server);
    port = server.bind_to_any_port("127.0.0.1");
    BOOST_REQUIRE(port > 0);
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~LoggedServer() {
    server.stop();
    thread.join();
    sub.close();
  }

  struct Reply {
    int status = 0;
    std::string set_cookie;  // the session id from Set-Cookie, "" if none
    RequestLog log;          // what the logger published for this request
  };
  // One request (a new connection each time); waits for its RequestLog.
  Reply get(const std::string& path, const httplib::Headers& headers = {}) {
    const size_t before = logs.size();
    httplib::Client client("127.0.0.1", port);
    const auto res = client.Get(path, headers);
    BOOST_REQUIRE(res);
    BOOST_REQUIRE(logs.wait_for_count(before + 1, std::chrono::seconds(10)));
    Reply r;
    r.status = res->status;
    const std::string cookie = res->get_header_value("Set-Cookie");
    const std::string prefix = "reqbus_sid=";
    if (!cookie.empty()) {
      BOOST_REQUIRE_EQUAL(cookie.rfind(prefix, 0), 0u);
      r.set_cookie = cookie.substr(prefix.size(), 32);
      BOOST_CHECK_EQUAL(cookie.substr(prefix.size() + 32), "; Path=/; HttpOnly; SameSite=Lax");
    }
    r.log = logs.messages().at(before).request;
    return r;
  }
  Reply get_with_session(const std::string& path, const std::string& id) {
    return get(path, {{"Cookie", "theme=dark; reqbus_sid=" + id}});
  }

  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::unique_ptr<Bus> bus;
  Collector logs;
  Subscription sub;
  std::unique_ptr<examples::RequestLogger> logger;
  httplib::Server server;
  int port = 0;
  std::thread thread;
};

#if defined(__x86_64__)
// Fault injection beside the real kernel: a seccomp filter on the calling thread, inherited by
// every thread it starts afterwards, makes getrandom(buf, 256, 0) fail with EIO. That is
// SessionTable::draw_random's pool refill and nothing else here (sanitizer runtimes and
// std::random_device ask for a few bytes). Returns false if the kernel refused the filter.
bool fail_session_getrandom_on_this_thread() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getrandom, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args) + sizeof(uint64_t)),  // buflen, low half
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 256, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EIO & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(std::size(filter)), filter};
  return ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}
#endif

}  // namespace

BOOST_AUTO_TEST_SUITE(RequestLogger)

#if defined(__x86_64__)
BOOST_AUTO_TEST_CASE(without_random_bits_a_request_is_served_and_logged_without_a_session) {
  // The server (its bus, httplib's listener and workers) runs on a thread whose getrandom for
  // session ids fails; the test's own thread is left alone.
  bool filtered = false;
  LoggedServer::Reply first, second;
  examples::RequestLoggerStats stats;
  std::exception_ptr failure;
  std::thread server_side([&] {
    try {
      filtered = fail_session_getrandom_on_this_thread();
      if (!filtered) return;
      LoggedServer s;
      first = s.get("/");
      second = s.get_with_session("/", std::string(32, 'a'));  // unknown id: a new session is needed
      stats = s.logger->stats();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  server_side.join();
  if (failure) std::rethrow_exception(failure);
  if (!filtered) {  // a sandbox without seccomp filters: the fault cannot be injected here
    BOOST_WARN_MESSAGE(false, "skipped: the kernel refused a seccomp filter (prctl PR_SET_SECCOMP)");
    return;
  }
  for (const auto* r : {&first, &second}) {
    BOOST_CHECK_EQUAL(r->status, 200);  // answered, not failed by the logger
    BOOST_CHECK_EQUAL(r->set_cookie, "");  // no id to give
    BOOST_CHECK_EQUAL(r->log.session_id, "");
    BOOST_CHECK_EQUAL(r->log.path, "/");
  }
  BOOST_CHECK_EQUAL(stats.sessions_failed, 2u);
  BOOST_CHECK_EQUAL(stats.sessions_created, 0u);
  BOOST_CHECK_EQUAL(stats.published, 2u);
  BOOST_CHECK_EQUAL(stats.served, 2u);
}
#endif

BOOST_AUTO_TEST_CASE(header_names_match_in_any_case_and_x_forwarded_for_only_from_a_trusted_proxy) {
  const httplib::Headers headers{{"user-agent", "Mozilla/5.0 (Windows NT 10.0) Chrome/120"},
                                 {"REFERER", "https://ref.example/"},
                                 {"x-forwarded-for", "203.0.113.7, 10.0.0.2"}};
  {
    LoggedServer direct;  // no trusted proxy: the TCP peer is the client, the header is ignored
    const auto r = direct.get("/", headers);
    BOOST_CHECK_EQUAL(r.log.user_agent, "Mozilla/5.0 (Windows NT 10.0) Chrome/120");
    BOOST_CHECK_EQUAL(r.log.referer, "https://ref.example/");
    BOOST_CHECK_EQUAL(r.log.remote_ip, "127.0.0.1");
  }
  LoggedServer proxied(100'000, {"127.0.0.1"});
  const auto r = proxied.get("/", headers);
  BOOST_CHECK_EQUAL(r.log.remote_ip, "10.0.0.2");  // the address the trusted proxy saw
  BOOST_CHECK_EQUAL(r.log.device_type, "desktop");
}

BOOST_AUTO_TEST_CASE(publishes_one_log_per_response_with_a_new_session) {
  LoggedServer s;
  const auto r = s.get("/", {{"User-Agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_1 like Mac OS X) Mobile"},
                             {"Referer", "https://www.example.com/from"}});
  BOOST_CHECK_EQUAL(r.status, 200);
  BOOST_REQUIRE_EQUAL(r.set_cookie.size(), 32u);
  BOOST_CHECK(examples::detail::is_session_id(r.set_cookie));
  BOOST_CHECK_EQUAL(r.log.method, "GET");
  BOOST_CHECK_EQUAL(r.log.path, "/");
  BOOST_CHECK_EQUAL(r.log.status_code, 200);
  BOOST_CHECK_EQUAL(r.log.device_type, "mobile");
  BOOST_CHECK_EQUAL(r.log.referer, "https://www.example.com/from");
  BOOST_CHECK_EQUAL(r.log.remote_ip, "127.0.0.1");
  BOOST_CHECK_EQUAL(r.log.session_id, r.set_cookie);
  BOOST_CHECK_EQUAL(r.log.session_page_views, 1u);
  BOOST_CHECK_EQUAL(r.log.node_id, "logger-node");
  BOOST_CHECK_EQUAL(r.log.request_id.size(), 36u);
  BOOST_CHECK_EQUAL(r.log.inserted_at, s.clock->unix_us());

  // The next response on (possibly) the same worker thread carries none of this one's fields.
  const auto next = s.get("/missing", {{"User-Agent", "-"}});
  BOOST_CHECK_EQUAL(next.log.status_code, 404);
  BOOST_CHECK_EQUAL(next.log.path, "/missing");
  BOOST_CHECK_EQUAL(next.log.user_agent, "-");
  BOOST_CHECK_EQUAL(next.log.device_type, "bot");  // no user agent ("-"): not a browser
  BOOST_CHECK_EQUAL(next.log.referer, "");
  BOOST_CHECK_NE(next.log.session_id, r.log.session_id);
  BOOST_CHECK_NE(next.log.request_id, r.log.request_id);
  BOOST_CHECK_EQUAL(next.log.session_page_views, 1u);

  const auto st = s.logger->stats();
  BOOST_CHECK_EQUAL(st.served, 2u);
  BOOST_CHECK_EQUAL(st.published, 2u);
  BOOST_CHECK_EQUAL(st.sessions_created, 2u);
  BOOST_CHECK_EQUAL(st.sessions_live, 2u);
  BOOST_CHECK_EQUAL(st.not_published(), 0u);
}

BOOST_AUTO_TEST_CASE(the_cookie_counts_page_views_in_its_session) {
  LoggedServer s;
  const std::string id = s.get("/").set_cookie;
  for (uint32_t views = 2; views <= 4; ++views) {
    const auto r = s.get_with_session("/", id);
    BOOST_CHECK_EQUAL(r.set_cookie, "");  // known session: no new cookie
    BOOST_CHECK_EQUAL(r.log.session_id, id);
    BOOST_CHECK_EQUAL(r.log.session_page_views, views);
  }
  // A cookie that is not a session id of ours starts a new session.
  const auto forged = s.get_with_session("/", "not-a-session-id");
  BOOST_CHECK_EQUAL(forged.set_cookie.size(), 32u);
  BOOST_CHECK_NE(forged.set_cookie, id);
  BOOST_CHECK_EQUAL(s.logger->stats().sessions_created, 2u);
}

// Cookie-less logging: no cookie is set or read, every request is still published, without a
// session.
BOOST_AUTO_TEST_CASE(without_sessions_no_cookie_is_set_and_requests_are_still_logged) {
  LoggedServer s(100'000, {}, false);
  const auto first = s.get("/", {{"User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"}});
  BOOST_CHECK_EQUAL(first.set_cookie, "");
  BOOST_CHECK_EQUAL(first.log.session_id, "");
  BOOST_CHECK_EQUAL(first.log.session_page_views, 0u);
  BOOST_CHECK_EQUAL(first.log.device_type, "desktop");
  const auto second = s.get_with_session("/missing", std::string(32, 'a'));
  BOOST_CHECK_EQUAL(second.status, 404);
  BOOST_CHECK_EQUAL(second.set_cookie, "");
  BOOST_CHECK_EQUAL(second.log.session_id, "");
  const auto st = s.logger->stats();
  BOOST_CHECK_EQUAL(st.published, 2u);
  BOOST_CHECK_EQUAL(st.sessions_created, 0u);
  BOOST_CHECK_EQUAL(st.sessions_live, 0u);
}

// The table evicts by CLOCK (second chance): a session seen since the hand last passed is spared
// once, a new one starts without that mark.
BOOST_AUTO_TEST_CASE(a_session_not_seen_lately_is_evicted_when_full) {
  LoggedServer s(2);
  const std::string a = s.get("/").set_cookie;
  const std::string b = s.get("/").set_cookie;
  BOOST_CHECK_EQUAL(s.get_with_session("/", a).log.session_page_views, 2u);  // a is marked
  const std::string c = s.get("/").set_cookie;  // the hand spares a (clears its mark), evicts b
  BOOST_CHECK_EQUAL(s.logger->stats().sessions_evicted, 1u);
  BOOST_CHECK_EQUAL(s.logger->stats().sessions_live, 2u);

  const auto a_again = s.get_with_session("/", a);
  BOOST_CHECK_EQUAL(a_again.set_cookie, "");
  BOOST_CHECK_EQUAL(a_again.log.session_page_views, 3u);
  const auto c_again = s.get_with_session("/", c);
  BOOST_CHECK_EQUAL(c_again.set_cookie, "");
  BOOST_CHECK_EQUAL(c_again.log.session_page_views, 2u);

  // b was evicted: it starts over. a and c were both seen since, so the hand clears both marks
  // and comes round to a.
  const auto b_again = s.get_with_session("/", b);
  BOOST_REQUIRE_EQUAL(b_again.set_cookie.size(), 32u);
  BOOST_CHECK_NE(b_again.set_cookie, b);
  BOOST_CHECK_EQUAL(b_again.log.session_page_views, 1u);
  BOOST_CHECK_EQUAL(s.get_with_session("/", a).log.session_page_views, 1u);  // a evicted in turn (evicts c)
  BOOST_CHECK_EQUAL(s.get_with_session("/", b_again.set_cookie).log.session_page_views, 2u);
  // c was evicted; its new session evicts a's new one (b' is spared once).
  BOOST_CHECK_EQUAL(s.get_with_session("/", c).set_cookie.size(), 32u);

  const auto st = s.logger->stats();
  BOOST_CHECK_EQUAL(st.sessions_live, 2u);
  BOOST_CHECK_EQUAL(st.sessions_created, 6u);  // a, b, c, b', a', c'
  BOOST_CHECK_EQUAL(st.sessions_evicted, 4u);
  BOOST_CHECK_EQUAL(st.sessions_expired, 0u);
}

BOOST_AUTO_TEST_CASE(an_idle_session_starts_over) {
  LoggedServer s;
  const std::string id = s.get("/").set_cookie;
  s.clock->advance(std::chrono::seconds(60));  // exactly the idle limit: still the same session
  BOOST_CHECK_EQUAL(s.get_with_session("/", id).log.session_page_views, 2u);
  s.clock->advance(std::chrono::seconds(61));
  const auto r = s.get_with_session("/", id);
  BOOST_CHECK_EQUAL(r.set_cookie.size(), 32u);
  BOOST_CHECK_NE(r.set_cookie, id);
  BOOST_CHECK_EQUAL(r.log.session_id, r.set_cookie);
  BOOST_CHECK_EQUAL(r.log.session_page_views, 1u);
  const auto st = s.logger->stats();
  BOOST_CHECK_EQUAL(st.sessions_expired, 1u);
  BOOST_CHECK_EQUAL(st.sessions_live, 1u);
}

BOOST_AUTO_TEST_CASE(header_names_match_in_any_case) {
  using examples::detail::HeaderName;
  BOOST_CHECK(examples::detail::kUserAgent.matches("user-AGENT"));
  BOOST_CHECK(!examples::detail::kForwardedFor.matches("X-Forwarded\rFor"));  // '\r' | 0x20 == '-'
  // Every byte value at every position of each name: a match iff the reference (ASCII letters
  // equal in either case, every other byte exactly) says so.
  auto reference = [](std::string_view a, std::string_view b) {
    for (size_t i = 0; i < a.size(); ++i) {
      const auto lower = [](unsigned char c) { return c >= 'A' && c <= 'Z' ? char(c | 0x20) : char(c); };
      if (lower(a[i]) != lower(b[i])) return false;
    }
    return true;
  };
  const std::pair<const HeaderName*, std::string> names[] = {
      {&examples::detail::kUserAgent, "User-Agent"}, {&examples::detail::kReferer, "Referer"},
      {&examples::detail::kForwardedFor, "X-Forwarded-For"}, {&examples::detail::kCookie, "Cookie"}};
  for (const auto& [name, text] : names) {
    BOOST_CHECK_EQUAL(name->size(), text.size());
    for (size_t i = 0; i < text.size(); ++i)
      for (int c = 0; c < 256; ++c) {
        std::string key = text;
        key[i] = char(c);
        BOOST_TEST_REQUIRE(name->matches(key) == reference(key, text), text << " with byte " << c << " at " << i);
      }
  }
  LoggedServer s;
  const auto r = s.get("/", {{"USER-AGENT", "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)"},
                             {"referer", "https://lower.example/"}});
  BOOST_CHECK_EQUAL(r.log.user_agent, "Mozilla/5.0 (iPad; CPU OS 17_1 like Mac OS X)");
  BOOST_CHECK_EQUAL(r.log.device_type, "tablet");
  BOOST_CHECK_EQUAL(r.log.referer, "https://lower.example/");
  const auto again = s.get("/", {{"cookie", "reqbus_sid=" + r.set_cookie}});
  BOOST_CHECK_EQUAL(again.set_cookie, "");
  BOOST_CHECK_EQUAL(again.log.session_page_views, 2u);
}

BOOST_AUTO_TEST_CASE(a_cookie_name_that_is_not_a_token_is_refused) {
  // The name goes into Set-Cookie as is (no CR/LF scan there): only an HTTP token may.
  Bus bus(BusOptions{});
  for (const char* bad : {"", "sid\r\nX-Evil: 1", "my sid", "sid=1", "s;d", "caf\xc3\xa9"}) {
    examples::RequestLoggerOptions lo;
    lo.session_cookie = bad;
    BOOST_CHECK_THROW(examples::RequestLogger(bus, lo), Error);
  }
  examples::RequestLoggerOptions lo;
  lo.session_cookie = "__Host-sid_v2.x";
  BOOST_CHECK_NO_THROW(examples::RequestLogger(bus, lo));
}

// httplib runs a connection on whatever worker its TaskQueue gives it; here six servers, each
// with its own logger, share one worker thread, so that thread takes turns between six loggers
// (more than the four its slot cache holds). Each logger must count every response, on one
// slot of counters for that thread, however many turns it takes.
BOOST_AUTO_TEST_CASE(one_thread_taking_turns_between_six_loggers_keeps_one_slot_in_each) {
  struct SharedWorker : httplib::TaskQueue {  // the servers' queue: forwards to one thread
    explicit SharedWorker(httplib::ThreadPool& pool) : pool_(pool) {}
    void enqueue(std::function<void()> fn) override { pool_.enqueue(std::move(fn)); }
    void shutdown() override {}  // the pool outlives the servers and is shut down once
    httplib::ThreadPool& pool_;
  };
  httplib::ThreadPool worker(1);
  BusOptions bo;
  bo.name = "request-logger-turns";
  bo.overflow = Overflow::drop_newest;
  Bus bus(bo);
  Collector logs;
  Subscription sub = bus.subscribe(SubscribeOptions{}, logs.handler());
  constexpr int kLoggers = 6, kTurns = 5;
  std::vector<std::unique_ptr<examples::RequestLogger>> loggers;
  std::vector<std::unique_ptr<httplib::Server>> servers;
  std::vector<std::thread> listeners;
  std::vector<int> ports;
  for (int i = 0; i < kLoggers; ++i) {
    loggers.push_back(std::make_unique<examples::RequestLogger>(bus));
    auto server = std::make_unique<httplib::Server>();
    server->new_task_queue = [&worker] { return new SharedWorker(worker); };
    server->Get("/", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok", "text/plain"); });
    loggers.back()->install(*server);
    ports.push_back(server->bind_to_any_port("127.0.0.1"));
    BOOST_REQUIRE(ports.back() > 0);
    listeners.emplace_back([s = server.get()] { s->listen_after_bind(); });
    servers.push_back(std::move(server));
  }
  for (int turn = 0; turn < kTurns; ++turn)
    for (int i = 0; i < kLoggers; ++i) {
      httplib::Client client("127.0.0.1", ports[size_t(i)]);
      const auto res = client.Get("/");
      BOOST_REQUIRE(res);
      BOOST_REQUIRE(logs.wait_for_count(size_t(turn * kLoggers + i + 1), std::chrono::seconds(10)));
    }
  for (auto& server : servers) server->stop();
  for (auto& t : listeners) t.join();
  worker.shutdown();  // every connection's task has finished: each logger's counts are final
  for (const auto& logger : loggers) {
    const auto st = logger->stats();
    BOOST_CHECK_EQUAL(st.served, uint64_t(kTurns));
    BOOST_CHECK_EQUAL(st.published, uint64_t(kTurns));
    BOOST_CHECK_EQUAL(st.counting_threads, 1u);  // was one a turn once the cache of four overflowed
  }
  sub.close();
}

BOOST_AUTO_TEST_CASE(long_values_are_cut_and_counted) {
  LoggedServer s;
  const std::string agent = "Mozilla/5.0 " + std::string(2000, 'x');
  const auto r = s.get("/", {{"User-Agent", agent}, {"Referer", "https://r.example/"}});
  BOOST_CHECK_EQUAL(r.log.user_agent, agent.substr(0, RequestLogLimits::user_agent));
  BOOST_CHECK_EQUAL(r.log.referer, "https://r.example/");
  BOOST_CHECK_EQUAL(s.logger->stats().truncated, 1u);
  const auto next = s.get("/", {{"User-Agent", "curl/8.0"}});
  BOOST_CHECK_EQUAL(next.log.user_agent, "curl/8.0");
  BOOST_CHECK_EQUAL(next.log.device_type, "bot");
  BOOST_CHECK_EQUAL(s.logger->stats().truncated, 1u);
}

BOOST_AUTO_TEST_SUITE_END()

// examples/bind_server.hpp: httplib 0.11 listens with a backlog of 5; bind_server() raises it.
// Nobody accepts here (listen_after_bind() is not running), so every handshake that completes
// waits in the accept queue; with a backlog of 5 the kernel drops the SYNs of all but ~6 clients
// and they stay unconnected.
BOOST_AUTO_TEST_CASE(bind_server_queues_a_burst_of_connections_beyond_httplibs_backlog) {
  httplib::Server server;
  const int port = examples::bind_server(server, "127.0.0.1", 0);
  BOOST_REQUIRE(port > 0);
  constexpr int kClients = 64;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<pollfd> clients;
  for (int i = 0; i < kClients; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    BOOST_REQUIRE(fd >= 0);
    const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
    BOOST_REQUIRE(rc == 0 || errno == EINPROGRESS);
    clients.push_back(pollfd{fd, POLLOUT, 0});
  }
  int connected = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (connected < kClients && std::chrono::steady_clock::now() < deadline) {
    ::poll(clients.data(), clients.size(), 100);
    for (auto& c : clients) {
      if (c.fd < 0 || !(c.revents & (POLLOUT | POLLERR | POLLHUP))) continue;
      int error = 0;
      socklen_t len = sizeof error;
      ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &len);
      BOOST_CHECK_EQUAL(error, 0);
      ++connected;
      ::close(c.fd);  // closed sockets leave poll() alone (negative fd)
      c.fd = -1;
    }
  }
  for (auto& c : clients)
    if (c.fd >= 0) ::close(c.fd);
  BOOST_CHECK_EQUAL(connected, kClients);

  // SO_REUSEADDR, not httplib's SO_REUSEPORT: a second server cannot take the same port.
  httplib::Server second;
  BOOST_CHECK_EQUAL(examples::bind_server(second, "127.0.0.1", port), -1);
}
