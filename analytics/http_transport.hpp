#pragma once
// A small libcurl wrapper shared by the ingestion Client and the HTTP sink: one POST, its
// outcome classified (a response with a status, a timeout, a refused connection, another network
// error, or an abort requested by the caller).
// Thread-safety: HttpTransport::post() is safe from any thread. It keeps a small pool of curl easy
// handles (each used by one call at a time), so connections are kept alive and reused between
// calls. curl_global_init runs once, before the first handle is made.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace reqbus::http {

struct PostRequest {
  std::string url;
  std::string_view body;                          // must outlive post()
  std::string content_type = "application/json";
  std::string user_agent;                         // "" = curl's default
  std::string basic_user;                         // "" = no basic auth; the password is empty
  std::string bearer_token;                       // "" = no Authorization: Bearer
  std::chrono::milliseconds connect_timeout{10'000};  // TCP connect
  std::chrono::milliseconds total_timeout{20'000};    // the whole request, connect included
  // Once the body is sent: the longest wait for any response byte, and between bytes.
  // 0 = only total_timeout applies. Checked from curl's progress callback (~ms granularity).
  std::chrono::milliseconds read_timeout{0};
  const std::atomic<bool>* abort = nullptr;       // set to true to stop a transfer (~1 s latency)
};

struct PostResult {
  enum class Outcome : uint8_t {
    response,        // a complete response arrived; see status
    timeout,         // connect or total timeout
    connect_failed,  // refused / unreachable / DNS
    network,         // the connection broke (dropped, reset, truncated response...)
    aborted,         // PostRequest::abort was set
  };
  Outcome outcome = Outcome::network;
  long status = 0;          // HTTP status when outcome == response
  std::string body;         // the response body (first max_kept_body bytes)
  bool body_cut = false;    // the body was longer than max_kept_body: `body` is its start
  std::string retry_after;  // the raw Retry-After header, "" when absent
  std::string error;        // curl's message when outcome != response

  bool success() const { return outcome == Outcome::response && status >= 200 && status < 300; }
};

const char* to_string(PostResult::Outcome outcome) noexcept;

// "HTTP 500 from <url>: <first 200 bytes of the body>" / "timeout: <curl message>" ...
std::string describe(const PostResult& result, std::string_view url);

// Retry-After is either delay-seconds or an HTTP-date; `now_unix_s` anchors the date form.
// Returns nullopt when absent or unparseable; negative delays become 0; capped at `cap`.
std::optional<std::chrono::milliseconds> parse_retry_after(
    std::string_view value, int64_t now_unix_s,
    std::chrono::milliseconds cap = std::chrono::minutes(10));

// A reqbus node that took only part of a body names the items its bus refused (queue full, or
// closing) in its reply: {"refused": [indices, ascending]} (node/http_api.cpp). It stored the
// others; only these need sending again. Returns them when `body` is such a reply for a body of
// `items` items, none refused: empty; anything else (no such field, not JSON, an index out of
// range or out of order, a reply cut at max_kept_body): nullopt. What nullopt means is the
// caller's: HttpSink sends every item again when the reply was cut or names "refused" at all.
std::optional<std::vector<size_t>> parse_refused(std::string_view body, size_t items);

class HttpTransport {
 public:
  static constexpr size_t max_kept_body = 64 * 1024;  // bytes of a response body kept

  explicit HttpTransport(size_t max_idle_handles = 4);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  PostResult post(const PostRequest& request);

 private:
  void* acquire();
  void release(void* handle);

  const size_t max_idle_;
  std::mutex mu_;
  std::vector<void*> idle_;  // CURL* handles, guarded by mu_
};

}  // namespace reqbus::http
