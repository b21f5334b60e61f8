#pragma once
// HttpTestServer: a real cpp-httplib server on 127.0.0.1 with an ephemeral port, for testing HTTP
// clients (the ingestion Client, the HTTP sink, ...). It records every request on arrival and
// answers from a script: 200, any status (e.g. 500, 400), 429 with Retry-After, a hang (until
// released, the server stops, or a bound passes) or a dropped connection (headers sent, then the
// socket closed mid-body).
//
// Tests synchronise on wait_for_requests(), which a condition variable signals the moment a
// request arrives — no sleeps.
// Thread-safety: all methods are safe from any thread; handlers run on httplib's worker threads.
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace reqbus::test {

struct RecordedRequest {
  std::string method;
  std::string path;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  // First value of a header (case-insensitive name), "" when absent.
  std::string header(const std::string& name) const;
  // The basic-auth user name of the Authorization header ("" when absent or not Basic), and the
  // password through `password`.
  std::string basic_user(std::string* password = nullptr) const;
};

struct Reply {
  enum class Kind { respond, hang, drop };
  Kind kind = Kind::respond;
  int status = 200;
  std::string body = "{}";
  std::string retry_after;                            // sent as Retry-After when not empty
  std::chrono::milliseconds hang_bound{10'000};       // hang: answers 200 after this at the latest

  static Reply ok() { return {}; }
  static Reply status_code(int status, std::string body = "{}") {
    Reply r;
    r.status = status;
    r.body = std::move(body);
    return r;
  }
  static Reply retry_after_seconds(int status, std::string retry_after) {
    Reply r = status_code(status, R"({"error":"slow down"})");
    r.retry_after = std::move(retry_after);
    return r;
  }
  static Reply hang(std::chrono::milliseconds bound = std::chrono::seconds(10)) {
    Reply r;
    r.kind = Kind::hang;
    r.hang_bound = bound;
    return r;
  }
  static Reply drop() {
    Reply r;
    r.kind = Kind::drop;
    return r;
  }
};

class HttpTestServer {
 public:
  HttpTestServer();   // listening when the constructor returns
  ~HttpTestServer();  // releases hangs, stops, joins
  HttpTestServer(const HttpTestServer&) = delete;
  HttpTestServer& operator=(const HttpTestServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const;  // "http://127.0.0.1:<port>"

  // The next requests are answered by these replies in order; after them, by the default.
  void push(Reply reply);
  void set_default(Reply reply);

  // Blocks until at least n requests have arrived or `timeout` (real time) passes.
  bool wait_for_requests(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Blocks until at least n responses have been completed (or dropped) by the handlers.
  bool wait_for_answers(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  size_t request_count() const;
  std::vector<RecordedRequest> requests() const;
  RecordedRequest request(size_t index) const;
  // Lets every hanging handler return now (they answer 200).
  void release_hangs();

 private:
  void handle(const void* request, void* response);

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<RecordedRequest> requests_;  // guarded by mu_
  std::deque<Reply> script_;               // guarded by mu_
  Reply default_reply_;                    // guarded by mu_
  size_t answered_ = 0;                    // guarded by mu_
  bool release_ = false;                   // guarded by mu_
};

}  // namespace reqbus::test
