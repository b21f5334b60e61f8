// reqbus::Client against a real local HTTP server: the Segment /v1/batch shape, batching by
// count and by interval (on a ManualClock), flush/close, retries and the fault matrix, the
// serverless mode and closing at process exit.
#include <sys/wait.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <future>
#include <mutex>
#include <thread>

#include "reqbus/client.hpp"
#include "reqbus/error.hpp"
#include "tests/support/http_test_server.hpp"
#include "tests/support/poll.hpp"

using namespace reqbus;
using namespace std::chrono_literals;
using reqbus::test::HttpTestServer;
using reqbus::test::poll_until;
using reqbus::test::Reply;
using nlohmann::json;

namespace {

// Collects what on_error receives.
struct Errors {
  std::mutex mu;
  std::vector<std::pair<ClientError, std::vector<AnalyticsEvent>>> calls;
  ClientErrorHandler handler() {
    return [this](const ClientError& e, const std::vector<AnalyticsEvent>& batch) {
      std::lock_guard lock(mu);
      calls.emplace_back(e, batch);
    };
  }
  size_t size() {
    std::lock_guard lock(mu);
    return calls.size();
  }
};

struct Fixture {
  HttpTestServer server;
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  Errors errors;

  // A client on the manual clock; close_timeout 0 so a failing test cannot hang in ~Client.
  ClientOptions options() {
    ClientOptions o;
    o.api_key = "wk_test";
    o.base_url = server.base_url() + "/";
    o.clock = clock;
    o.on_error = errors.handler();
    o.close_timeout = 0ms;
    o.close_at_exit = false;
    return o;
  }

  json body(size_t i) { return json::parse(server.request(i).body); }

  // Advances the manual clock in `step`s until the server has seen `n` requests; returns the
  // manual time that took. Each step waits for the server's signal, not for a fixed sleep.
  std::chrono::milliseconds advance_until_requests(size_t n, std::chrono::milliseconds step,
                                                   std::chrono::milliseconds limit = 120s) {
    std::chrono::milliseconds advanced{0};
    while (!server.wait_for_requests(n, 5ms)) {
      BOOST_REQUIRE_MESSAGE(advanced < limit, "no request " << n << " after " << advanced.count() << " ms");
      clock->advance(step);
      advanced += step;
    }
    return advanced;
  }
};

// A ManualClock that also reports when one chosen thread starts waiting on it: a flush() running
// on that thread has then read its target under the client's lock and waits for it.
class WatchedClock final : public Clock {
 public:
  time_point now() const override { return inner_.now(); }
  int64_t unix_us() const override { return inner_.unix_us(); }
  bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv, time_point deadline,
                  const std::function<bool()>& pred) const override {
    {
      std::lock_guard watch(mu_);
      if (std::this_thread::get_id() == watched_ && !waiting_) {
        waiting_ = true;
        cv_.notify_all();
      }
    }
    return inner_.wait_until(lock, cv, deadline, pred);
  }
  void advance(std::chrono::nanoseconds d) { inner_.advance(d); }
  void watch_this_thread() {
    std::lock_guard watch(mu_);
    watched_ = std::this_thread::get_id();
  }
  bool wait_for_watched(std::chrono::milliseconds timeout = 20s) {
    std::unique_lock watch(mu_);
    return cv_.wait_for(watch, timeout, [&] { return waiting_; });
  }

 private:
  ManualClock inner_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::thread::id watched_;      // guarded by mu_
  mutable bool waiting_ = false;  // guarded by mu_
};

std::string helper_program(const std::string& name) {
  if (const char* dir = std::getenv("REQBUS_TEST_BINARY_DIR"); dir && *dir) {
    const auto path = std::filesystem::path(dir) / "tests" / name;
    if (std::filesystem::exists(path)) return path.string();
  }
  return (std::filesystem::read_symlink("/proc/self/exe").parent_path() / name).string();
}

// fork + exec of the helper; returns its exit status (-1 when it did not exit normally).
int run_child(const std::string& base_url, const std::string& mode) {
  const std::string program = helper_program("client_exit_program");
  BOOST_REQUIRE_MESSAGE(std::filesystem::exists(program), program << " is not built");
  const pid_t pid = fork();
  BOOST_REQUIRE(pid >= 0);
  if (pid == 0) {
    execl(program.c_str(), program.c_str(), base_url.c_str(), mode.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  BOOST_REQUIRE(waitpid(pid, &status, 0) == pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(ClientTest)

BOOST_FIXTURE_TEST_CASE(identify_group_track_post_the_segment_shape, Fixture) {
  auto o = options();
  o.flush_at = 3;
  Client client(o);
  BOOST_TEST(client.identify("u1", "ada@example.com", R"({"plan":"pro"})", "Europe/Paris").ok());
  BOOST_TEST(client.group("u1", "acct-1", "Acme", R"({"seats":5})", {.timestamp_us = 1'600'000'000'000'000}).ok());
  const auto tracked = client.track("u1", "Signed Up", R"({"source":"ad"})", {.message_id = "my-id"});
  BOOST_TEST(tracked.message_id == "my-id");
  BOOST_REQUIRE(server.wait_for_requests(1));
  const auto req = server.request(0);
  BOOST_TEST(req.method == "POST");
  BOOST_TEST(req.path == "/v1/batch");
  std::string password = "not empty";
  BOOST_TEST(req.basic_user(&password) == "wk_test");
  BOOST_TEST(password == "");
  BOOST_TEST(req.header("Content-Type") == "application/json");
  BOOST_TEST(req.header("User-Agent").starts_with("reqbus/"));
  const json b = json::parse(req.body);
  BOOST_REQUIRE_EQUAL(b["batch"].size(), 3u);
  const json& identify = b["batch"][0];
  BOOST_TEST(identify["type"] == "identify");
  BOOST_TEST(identify["userId"] == "u1");
  BOOST_TEST(identify["traits"]["email"] == "ada@example.com");
  BOOST_TEST(identify["traits"]["plan"] == "pro");
  BOOST_TEST(identify["context"]["timezone"] == "Europe/Paris");
  BOOST_TEST(identify["timestamp"] == "2023-11-14T22:13:20.000000Z");  // the manual clock's now
  BOOST_TEST(identify["messageId"].get<std::string>().size() == 36u);   // a UUIDv7
  BOOST_TEST(identify["messageId"].get<std::string>()[14] == '7');
  const json& group = b["batch"][1];
  BOOST_TEST(group["type"] == "group");
  BOOST_TEST(group["groupId"] == "acct-1");
  BOOST_TEST(group["traits"]["name"] == "Acme");
  BOOST_TEST(group["traits"]["seats"] == 5);
  BOOST_TEST(group["timestamp"] == "2020-09-13T12:26:40.000000Z");
  const json& track = b["batch"][2];
  BOOST_TEST(track["type"] == "track");
  BOOST_TEST(track["event"] == "Signed Up");
  BOOST_TEST(track["properties"]["source"] == "ad");
  BOOST_TEST(track["messageId"] == "my-id");
  BOOST_TEST(b["sentAt"].is_string());
  BOOST_TEST(client.flush().complete);
  BOOST_TEST(client.stats().sent == 3u);
}

BOOST_FIXTURE_TEST_CASE(flush_at_sends_full_batches, Fixture) {
  auto o = options();
  o.flush_at = 5;
  Client client(o);
  for (int i = 0; i < 12; ++i) BOOST_TEST(client.track("u", "e" + std::to_string(i)).ok());
  BOOST_REQUIRE(server.wait_for_requests(2));
  const ClientReport report = client.flush();  // the 2 left over go now, not at the interval
  BOOST_TEST(report.complete);
  BOOST_REQUIRE_EQUAL(server.request_count(), 3u);
  BOOST_TEST(body(0)["batch"].size() == 5u);
  BOOST_TEST(body(1)["batch"].size() == 5u);
  BOOST_TEST(body(2)["batch"].size() == 2u);
  BOOST_TEST(body(2)["batch"][1]["event"] == "e11");
  BOOST_TEST(report.stats.sent == 12u);
  BOOST_TEST(report.stats.batches_sent == 3u);
}

BOOST_FIXTURE_TEST_CASE(flush_interval_runs_on_the_clock, Fixture) {
  Client client(options());  // flush_at 50, flush_interval 100 ms
  BOOST_TEST(client.track("u", "lonely").ok());
  BOOST_TEST(!server.wait_for_requests(1, 200ms));  // real time passes, manual time does not
  clock->advance(99ms);
  BOOST_TEST(!server.wait_for_requests(1, 100ms));
  clock->advance(1ms);
  BOOST_REQUIRE(server.wait_for_requests(1));
  BOOST_TEST(body(0)["batch"][0]["event"] == "lonely");
}

BOOST_FIXTURE_TEST_CASE(flush_blocks_until_the_batch_is_answered, Fixture) {
  server.push(Reply::hang());
  Client client(options());
  BOOST_TEST(client.track("u", "e").ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  BOOST_TEST((flushed.wait_for(100ms) == std::future_status::timeout));  // still waiting for the answer
  server.release_hangs();
  const ClientReport report = flushed.get();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.pending == 0u);
  BOOST_TEST(report.stats.sent == 1u);
}

BOOST_FIXTURE_TEST_CASE(a_500_is_retried_then_delivered_once, Fixture) {
  server.push(Reply::status_code(500));
  Client client(options());
  BOOST_TEST(client.track("u", "e", {}, {.message_id = "m-500"}).ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  const auto waited = advance_until_requests(2, 10ms);
  BOOST_TEST(waited.count() >= 100);  // retry_backoff
  const ClientReport report = flushed.get();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 1u);
  BOOST_TEST(report.stats.retried == 1u);
  BOOST_TEST(report.stats.failed == 0u);
  BOOST_TEST(server.request_count() == 2u);
  BOOST_TEST(body(1)["batch"][0]["messageId"] == "m-500");  // same id: the receiver can dedup
  BOOST_TEST(errors.size() == 0u);
}

// A reqbus node whose bus took only part of a batch answers 503 and names the events it refused:
// the others are stored, so only the refused ones are sent again (a 503 without that list, or
// from another server, resends the whole batch, as before).
BOOST_FIXTURE_TEST_CASE(a_503_naming_refused_events_resends_only_those, Fixture) {
  server.push(Reply::status_code(503, R"({"success":false,"accepted":2,"rejected":1,"refused":[1]})"));
  Client client(options());
  for (const char* id : {"m-0", "m-1", "m-2"}) BOOST_TEST(client.track("u", "e", {}, {.message_id = id}).ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  advance_until_requests(2, 10ms);
  const ClientReport report = flushed.get();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 3u);
  BOOST_TEST(report.stats.retried == 1u);
  BOOST_TEST(report.stats.failed == 0u);
  BOOST_TEST(server.request_count() == 2u);
  BOOST_TEST(body(0)["batch"].size() == 3u);
  BOOST_REQUIRE(body(1)["batch"].size() == 1u);
  BOOST_TEST(body(1)["batch"][0]["messageId"] == "m-1");
  BOOST_TEST(errors.size() == 0u);
}

BOOST_FIXTURE_TEST_CASE(retry_after_of_a_429_is_a_floor, Fixture) {
  server.push(Reply::retry_after_seconds(429, "30"));
  Client client(options());
  BOOST_TEST(client.track("u", "e").ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  const auto waited = advance_until_requests(2, 1000ms);
  BOOST_TEST(waited.count() >= 30'000);
  BOOST_TEST(waited.count() <= 32'000);
  BOOST_TEST(flushed.get().stats.sent == 1u);
}

BOOST_FIXTURE_TEST_CASE(backoff_doubles_per_attempt_then_on_error, Fixture) {
  server.set_default(Reply::status_code(502));
  auto o = options();
  o.max_retries = 3;
  Client client(o);
  BOOST_TEST(client.track("u", "e").ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  std::vector<long> waits;
  for (size_t n = 2; n <= 4; ++n) waits.push_back(advance_until_requests(n, 10ms).count());
  const ClientReport report = flushed.get();
  BOOST_TEST(waits[0] >= 100);
  BOOST_TEST(waits[1] >= 200);
  BOOST_TEST(waits[2] >= 400);
  BOOST_TEST(server.request_count() == 4u);  // 1 + max_retries
  BOOST_TEST(report.stats.failed == 1u);
  BOOST_TEST(report.stats.retried == 3u);
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  BOOST_TEST((errors.calls[0].first.kind == ClientError::Kind::http_status));
  BOOST_TEST(errors.calls[0].first.status == 502);
  BOOST_TEST(errors.calls[0].first.attempts == 4u);
  BOOST_TEST(errors.calls[0].first.message.find("gave up after 4 attempts") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(a_hang_past_read_timeout_times_out_then_retries, Fixture) {
  server.push(Reply::hang());
  auto o = options();
  o.open_timeout = 200ms;
  o.read_timeout = 200ms;
  Client client(o);
  BOOST_TEST(client.track("u", "slow").ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  advance_until_requests(2, 10ms);  // curl gives up in real time, the backoff runs on the clock
  const ClientReport report = flushed.get();
  BOOST_TEST(report.stats.sent == 1u);
  BOOST_TEST(report.stats.retried == 1u);
  server.release_hangs();
}

BOOST_FIXTURE_TEST_CASE(a_timeout_without_retries_reaches_on_error_as_timeout, Fixture) {
  server.push(Reply::hang());
  auto o = options();
  o.read_timeout = 200ms;
  o.max_retries = 0;
  Client client(o);
  BOOST_TEST(client.track("u", "slow").ok());
  const ClientReport report = client.flush();
  server.release_hangs();
  BOOST_TEST(report.stats.failed == 1u);
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  BOOST_TEST((errors.calls[0].first.kind == ClientError::Kind::timeout), errors.calls[0].first.message);
  BOOST_TEST(errors.calls[0].second.at(0).event == "slow");
}

BOOST_FIXTURE_TEST_CASE(a_dropped_connection_is_retried, Fixture) {
  server.push(Reply::drop());
  Client client(options());
  BOOST_TEST(client.track("u", "e").ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  advance_until_requests(2, 10ms);
  const ClientReport report = flushed.get();
  BOOST_TEST(report.stats.sent == 1u);
  BOOST_TEST(report.stats.retried == 1u);
  BOOST_TEST(errors.size() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_408_is_retried_then_delivered, Fixture) {
  server.push(Reply::status_code(408, R"({"error":"request timeout"})"));  // a proxy, a slow upload
  const ClientOptions o = options();
  Client client(o);
  BOOST_TEST(client.track("u", "e", {}, {.message_id = "m-408"}).ok());
  auto flushed = std::async(std::launch::async, [&] { return client.flush(); });
  BOOST_REQUIRE(server.wait_for_requests(1));
  // A retry is counted under the client's lock just before the sender waits on the clock: only
  // then is manual time advanced, by one retry_backoff, however slowly the 408 was handled.
  BOOST_REQUIRE(poll_until([&] { return client.stats().retried == 1u; }, 20s));
  clock->advance(o.retry_backoff);
  BOOST_REQUIRE(server.wait_for_requests(2));
  const ClientReport report = flushed.get();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 1u);
  BOOST_TEST(report.stats.retried == 1u);
  BOOST_TEST(report.stats.failed == 0u);
  BOOST_TEST(body(1)["batch"][0]["messageId"] == "m-408");
  BOOST_TEST(errors.size() == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_400_goes_to_on_error_without_retry, Fixture) {
  server.push(Reply::status_code(400, R"({"error":"bad batch"})"));
  auto o = options();
  o.flush_at = 2;
  Client client(o);
  BOOST_TEST(client.track("u", "a", {}, {.message_id = "id-a"}).ok());
  BOOST_TEST(client.track("u", "b", {}, {.message_id = "id-b"}).ok());
  const ClientReport report = client.flush();
  BOOST_TEST(report.complete);  // finished: handed to on_error
  BOOST_TEST(report.stats.failed == 2u);
  BOOST_TEST(report.stats.retried == 0u);
  BOOST_TEST(report.stats.sent == 0u);
  BOOST_TEST(server.request_count() == 1u);
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  const auto& [error, batch] = errors.calls[0];
  BOOST_TEST((error.kind == ClientError::Kind::http_status));
  BOOST_TEST(error.status == 400);
  BOOST_TEST(error.message.find("bad batch") != std::string::npos, error.message);
  BOOST_REQUIRE_EQUAL(batch.size(), 2u);
  BOOST_TEST(batch[0].message_id == "id-a");
  BOOST_TEST(batch[1].message_id == "id-b");
}

BOOST_FIXTURE_TEST_CASE(serverless_mode_flush_at_1_then_flush, Fixture) {
  auto o = options();
  o.clock = nullptr;  // the real clock: nothing here waits on time
  o.flush_at = 1;
  Client client(o);
  for (int i = 0; i < 3; ++i) BOOST_TEST(client.track("u", "e" + std::to_string(i)).ok());
  const ClientReport report = client.flush();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 3u);
  BOOST_TEST(report.stats.queued == 0u);
  BOOST_TEST(server.request_count() == 3u);
}

BOOST_FIXTURE_TEST_CASE(close_drains_everything_queued, Fixture) {
  auto o = options();
  o.close_timeout = 10s;  // manual clock: the deadline is not reached unless advanced
  Client client(o);
  for (int i = 0; i < 7; ++i) BOOST_TEST(client.identify("u" + std::to_string(i)).ok());
  const ClientReport report = client.close();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 7u);
  BOOST_REQUIRE_EQUAL(server.request_count(), 1u);
  BOOST_TEST(body(0)["batch"].size() == 7u);
  const auto after = client.track("u", "late");
  BOOST_TEST((after.status == EnqueueStatus::closed));
  BOOST_TEST(client.close().complete);  // idempotent
}

BOOST_FIXTURE_TEST_CASE(close_stops_at_its_deadline_and_hands_over_the_rest, Fixture) {
  server.push(Reply::hang());
  auto o = options();
  o.clock = nullptr;  // the close deadline in real time
  o.flush_at = 1;
  Client client(o);
  BOOST_TEST(client.track("u", "stuck").ok());
  BOOST_REQUIRE(server.wait_for_requests(1));
  BOOST_TEST(client.track("u", "queued").ok());
  const auto start = std::chrono::steady_clock::now();
  const ClientReport report = client.close(200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  server.release_hangs();
  BOOST_TEST(!report.complete);
  BOOST_TEST(report.pending == 2u);
  BOOST_TEST(report.stats.abandoned == 2u);
  // The deadline plus curl's abort latency (its progress callback, which sees the abort, runs
  // about once a second on an idle transfer; slower under sanitizers), not the server's 10 s hang.
  BOOST_TEST(took < 8s);
  BOOST_REQUIRE_EQUAL(errors.size(), 2u);
  BOOST_TEST((errors.calls[0].first.kind == ClientError::Kind::abandoned));
  BOOST_TEST(errors.calls[0].second.at(0).event == "stuck");
  BOOST_TEST(errors.calls[1].second.at(0).event == "queued");
}

BOOST_FIXTURE_TEST_CASE(invalid_input_is_rejected_with_a_clear_message, Fixture) {
  Client client(options());
  auto r = client.identify("u", "", "{\"plan\": pro}");
  BOOST_TEST((r.status == EnqueueStatus::invalid));
  BOOST_TEST(r.error.starts_with("traits: invalid JSON"), r.error);
  r = client.track("u", "e", "[1,2,3]");
  BOOST_TEST((r.status == EnqueueStatus::invalid));
  BOOST_TEST(r.error == "properties: expected an object, got an array");
  r = client.track("", "e");
  BOOST_TEST(r.error == "user_id: empty");
  r = client.group("u", "");
  BOOST_TEST(r.error == "account_id: empty (required for group)");
  BOOST_TEST(client.stats().rejected == 4u);
  BOOST_TEST(client.stats().enqueued == 0u);
}

BOOST_FIXTURE_TEST_CASE(a_full_queue_counts_every_drop, Fixture) {
  auto o = options();
  o.max_queue = 2;
  o.overflow = Overflow::drop_newest;
  {
    Client client(o);
    BOOST_TEST(client.track("u", "1").ok());
    BOOST_TEST(client.track("u", "2").ok());
    const auto r = client.track("u", "3");
    BOOST_TEST((r.status == EnqueueStatus::dropped));
    BOOST_TEST(client.stats().dropped == 1u);
    BOOST_TEST(client.flush().stats.sent == 2u);
  }
  o.overflow = Overflow::drop_oldest;
  Client client(o);
  BOOST_TEST(client.track("u", "1").ok());
  BOOST_TEST(client.track("u", "2").ok());
  BOOST_TEST(client.track("u", "3").ok());  // evicts "1", which goes to on_error
  const ClientReport report = client.flush();
  BOOST_TEST(report.stats.dropped == 1u);
  BOOST_TEST(report.stats.sent == 2u);
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  BOOST_TEST((errors.calls[0].first.kind == ClientError::Kind::dropped));
  BOOST_TEST(errors.calls[0].second.at(0).event == "1");
}

BOOST_FIXTURE_TEST_CASE(drop_oldest_stays_bounded_while_the_sender_is_stuck, Fixture) {
  server.push(Reply::hang());  // a collector that accepts and does not answer
  auto o = options();
  o.flush_at = 1;
  o.max_queue = 4;
  o.overflow = Overflow::drop_oldest;
  Client client(o);
  BOOST_TEST(client.track("u", "stuck").ok());
  BOOST_REQUIRE(server.wait_for_requests(1));  // the sender is inside deliver() from here on
  for (int i = 0; i < 1000; ++i) BOOST_TEST(client.track("u", "e" + std::to_string(i)).ok());
  const ClientStats stuck = client.stats();
  BOOST_TEST(stuck.enqueued == 1001u);
  BOOST_TEST(stuck.dropped == 996u);  // all but the one in flight and the 4 queued
  // Held in memory: the batch in flight, the queue, and at most max_queue victims for on_error.
  BOOST_TEST(stuck.queued <= 2 * o.max_queue + 1, "queued " << stuck.queued);
  BOOST_TEST(stuck.dropped_unreported == 992u);  // past the first max_queue victims

  server.release_hangs();
  const ClientReport report = client.flush();
  BOOST_TEST(report.complete);
  BOOST_TEST(report.stats.sent == 5u);  // "stuck" and the 4 newest
  BOOST_TEST(report.stats.queued == 0u);
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  const auto& [error, victims] = errors.calls[0];
  BOOST_TEST((error.kind == ClientError::Kind::dropped));
  BOOST_TEST(error.message.find("992 more evicted") != std::string::npos, error.message);
  BOOST_REQUIRE_EQUAL(victims.size(), o.max_queue);  // the oldest ones: the first evicted
  BOOST_TEST(victims[0].event == "e0");
  BOOST_TEST(victims[3].event == "e3");
  // Every drop is accounted for: handed to on_error or counted as unreported.
  BOOST_TEST(victims.size() + report.stats.dropped_unreported == report.stats.dropped);
}

BOOST_FIXTURE_TEST_CASE(flush_waits_for_evicted_events_to_reach_on_error, Fixture) {
  auto watched = std::make_shared<WatchedClock>();
  std::promise<void> entered;
  std::promise<void> leave;
  std::shared_future<void> may_leave = leave.get_future().share();
  server.push(Reply::hang());
  auto o = options();
  o.clock = watched;
  o.flush_at = 1;
  o.max_queue = 1;
  o.overflow = Overflow::drop_oldest;
  o.on_error = [&, handler = errors.handler()](const ClientError& e, const std::vector<AnalyticsEvent>& batch) {
    handler(e, batch);
    entered.set_value();
    may_leave.wait();
  };
  Client client(o);
  std::future<ClientReport> flushed;
  bool left = false;
  auto let_leave = [&] {
    if (!std::exchange(left, true)) leave.set_value();
  };
  // On every way out, a failed REQUIRE included: end the flush, then let on_error return.
  struct Unblock {
    std::function<void()> run;
    ~Unblock() { run(); }
  } unblock{[&] {
    watched->advance(1h);
    if (flushed.valid()) flushed.wait();
    let_leave();
  }};
  BOOST_TEST(client.track("u", "a").ok());
  BOOST_REQUIRE(server.wait_for_requests(1));  // "a" in flight, unanswered
  BOOST_TEST(client.track("u", "b").ok());     // queued
  flushed = std::async(std::launch::async, [&] {
    watched->watch_this_thread();
    return client.flush(50ms);  // on the manual clock: ends when the test advances it
  });
  BOOST_REQUIRE(watched->wait_for_watched());  // the flush covers "a" and "b"
  BOOST_TEST(client.track("u", "c").ok());     // evicts "b"
  server.release_hangs();                      // "a" is delivered, then "b" goes to on_error
  BOOST_REQUIRE((entered.get_future().wait_for(20s) == std::future_status::ready));
  watched->advance(50ms);  // the flush deadline passes while on_error still holds "b"
  const ClientReport report = flushed.get();
  let_leave();
  BOOST_TEST(!report.complete);
  BOOST_TEST(report.pending == 1u);
  BOOST_TEST(report.stats.sent == 1u);
  const ClientReport after = client.flush();
  BOOST_TEST(after.complete);
  BOOST_TEST(after.stats.sent == 2u);  // "a" and "c"
  BOOST_REQUIRE_EQUAL(errors.size(), 1u);
  BOOST_TEST(errors.calls[0].second.at(0).event == "b");
}

BOOST_AUTO_TEST_CASE(bad_options_name_the_field) {
  auto message = [](ClientOptions o) {
    try {
      Client c(std::move(o));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message({}) == "api_key: required (the write key)");
  BOOST_TEST(message({.api_key = "k", .base_url = "127.0.0.1:7480"}).starts_with("base_url: "));
  BOOST_TEST(message({.api_key = "k", .flush_at = 0}) == "flush_at: must be at least 1");
}

BOOST_FIXTURE_TEST_CASE(the_client_closes_itself_at_process_exit, Fixture) {
  BOOST_TEST(run_child(server.base_url(), "leak") == 0);
  BOOST_REQUIRE_EQUAL(server.request_count(), 1u);  // waitpid returned: the exit close is done
  BOOST_TEST(body(0)["batch"].size() == 3u);
  BOOST_TEST(server.request(0).basic_user() == "exit-key");

  BOOST_TEST(run_child(server.base_url(), "static") == 0);
  BOOST_REQUIRE_EQUAL(server.request_count(), 2u);
  BOOST_TEST(body(1)["batch"].size() == 2u);

  BOOST_TEST(run_child(server.base_url(), "destroyed") == 0);
  BOOST_REQUIRE_EQUAL(server.request_count(), 4u);
  BOOST_TEST(body(2)["batch"][0]["event"] == "first-0");
  BOOST_TEST(body(3)["batch"][0]["event"] == "second-0");
}

BOOST_AUTO_TEST_SUITE_END()
